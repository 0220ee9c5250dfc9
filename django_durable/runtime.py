"""The composition root: everything django-durable keeps per process (strictly: per
event loop), built and wired here and nowhere else.

Every component is written against the protocols of :mod:`django_durable.ports` and
receives this runtime (a :class:`~django_durable.ports.Host`); only the public edges
(gateways, stubs, ``broadcast_to``, the testing helpers, status) find it with
:func:`get_runtime`, so nothing below this module imports it.

Daphne runs one event loop, so in production there is one runtime per process. Tests
and ``async_to_sync`` may run several loops; asyncio objects cannot cross loops, so
each loop gets its own runtime rather than sharing broken state.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from . import conf
from .dispatcher import Dispatcher
from .fanout import Fanout
from .scheduler import AlarmScheduler
from .session import BaseSessionLayer, build_session_layer
from .transport import LocalTransport

if TYPE_CHECKING:
    from .ports import Transport
    from .sockets import LocalSocket


class Runtime:
    """One process's (one event loop's) engine, built and wired here."""

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex[:16]
        self.layer: BaseSessionLayer = build_session_layer(conf.get("SESSION_LAYER"))
        #: The sockets held by this process's gateways, by socket id.
        self.sockets: dict[str, LocalSocket] = {}
        self.dispatcher = Dispatcher(self)
        self.fanout = Fanout(self)
        self.transport = self._make_transport()
        self.alarms = AlarmScheduler(self)
        #: Set by a graceful shutdown: no new connection, no new object taken.
        self.shutting_down = False
        #: The ASGI server's limit on sent messages (daphne's), once a gateway saw it.
        self.outgoing_limit: int | None = None

    def _make_transport(self) -> Transport:
        make = getattr(self.layer, "make_transport", None)  # a backend's own factory
        if make is not None:
            transport: Transport = make(self)
            return transport
        if self.layer.transport_class is not None:
            transport = import_string(self.layer.transport_class)(self)
            return transport
        return LocalTransport(self)


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = (
    weakref.WeakKeyDictionary()
)


def get_runtime() -> Runtime:
    """The runtime of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is None:
        runtime = _runtimes[loop] = Runtime()
    return runtime


def existing_runtime() -> Runtime | None:
    """The running event loop's runtime, or None if nothing created it yet."""
    return _runtimes.get(asyncio.get_running_loop())


def all_runtimes() -> list[Runtime]:
    """Every runtime of this process (for metrics and tests)."""
    return list(_runtimes.values())
