"""The state the parts of the Redis transport share, and what each part is given.

:class:`~django_durable.redis.transport.RedisTransport` is one object made of parts,
each in its own module: forwarding (gateways -> owners), delivery to sockets (owners
-> gateways), remote calls and maintenance. Each part subclasses this class, so the
parts cooperate through ``super()`` and the local transport below them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from ..transport import LocalTransport
from .copies import RecordCopies
from .held import HeldEvents

if TYPE_CHECKING:
    from ..classes import DurableClass
    from ..events import Event
    from ..ports import Host, LiveObjectPort
    from ..session.base import SocketRecord
    from ..sockets import LocalSocket
    from .layer import RedisSessionLayer

#: Forwarding hops before a message is dropped (the gateway's outbox re-sends it).
MAX_HOPS = 3


class RemoteSocket:
    """A socket held by another process's gateway, as its owner knows it."""

    __slots__ = ("holder", "id", "subprotocol")

    def __init__(self, socket_id: str, holder: str) -> None:
        self.id = socket_id
        self.holder = holder
        self.subprotocol: str | None = None


class TransportParts(LocalTransport):
    """The Redis transport's shared state (set up once, by this ``__init__``)."""

    def __init__(self, runtime: Host) -> None:
        super().__init__(runtime)
        self.layer: RedisSessionLayer = runtime.layer  # type: ignore[assignment]
        self.channel_layer = get_channel_layer()
        if self.channel_layer is None:
            raise ImproperlyConfigured(
                "RedisSessionLayer needs a channel layer: set CHANNEL_LAYERS to "
                "channels_redis.core.RedisChannelLayer on the same Redis"
            )
        self.channel = ""
        #: True once a gateway of this process took a connection: only serving
        #: processes take objects that have sockets elsewhere.
        self.serving = False
        self._start_lock = asyncio.Lock()
        self._connects: dict[str, asyncio.Future[Any]] = {}
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self._releasing: dict[str, asyncio.Future[None]] = {}
        #: Sockets whose connection ended but whose last events are not acknowledged.
        self._draining: dict[str, LocalSocket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = time.monotonic()
        #: Set when Redis lost this process's data, until its sockets are back there.
        self._reregistering = False
        #: Holders whose heartbeat this process found missing: [first seen, last seen].
        self._missing: dict[str, list[float]] = {}
        #: Attachments and tags of this process's sockets, to put back if Redis loses them.
        self.copies = RecordCopies(self)
        self.layer.on_written = self.copies.written
        #: Events that gateways could not hand on at once (Redis away or slow).
        self.held = HeldEvents(self._deliver_held)

    if TYPE_CHECKING:  # each defined by one part, used by others

        async def _deliver(
            self,
            cls: DurableClass,
            object_id: str,
            key: str,
            event: Event,
            holder: str,
            hops: int = 0,
        ) -> str: ...

        async def _deliver_held(self, sock: LocalSocket, event: Event) -> str: ...

        async def _owner_elsewhere(self, key: str) -> str | None: ...

        async def _send_or_unavailable(self, channel: str, message: Any) -> None: ...

        async def _send_retrying(
            self,
            channel: str,
            message: Any,
            gone: Callable[[], Awaitable[bool]] | None = None,
        ) -> None: ...

        async def _dead_socket_closes(self, live: LiveObjectPort) -> list[Event]: ...

        async def _dead_holders(self, holders: set[str]) -> set[str]: ...

        def _trim(self, sock: Any, seq: int) -> None: ...

        def _rejoin(self, key: str, records: list[SocketRecord]) -> None: ...
