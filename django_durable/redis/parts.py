"""The state the parts of the Redis transport share, and what each part is given.

:class:`~django_durable.redis.transport.RedisTransport` is one object made of parts,
each in its own module: forwarding (gateways -> owners), delivery to sockets (owners
-> gateways), remote calls and maintenance. Each part subclasses this class, so the
parts cooperate through ``super()`` and the local transport below them. Sending to
another process (through its courier, :mod:`~django_durable.redis.couriers`), which
every part does, is here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from ..exceptions import SessionLayerUnavailable
from ..transport import LocalTransport
from .copies import RecordCopies
from .couriers import Couriers
from .held import HeldEvents

if TYPE_CHECKING:
    from ..classes import DurableClass
    from ..events import Event
    from ..ports import Host, LiveObjectPort
    from ..session.base import SocketRecord
    from ..sockets import LocalSocket
    from .layer import RedisSessionLayer

logger = logging.getLogger(__name__)

#: Forwarding hops before a message is dropped (the gateway's outbox re-sends it).
MAX_HOPS = 3
#: Capacity of a process's inbox when the channel layer names none (channels_redis's).
DEFAULT_CAPACITY = 100


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
        #: Object key -> the answer of the lease script on its way (``_owner_elsewhere``).
        self._acquiring: dict[str, asyncio.Future[tuple[bool, str, int]]] = {}
        #: Sockets whose connection ended but whose last events are not acknowledged.
        self._draining: dict[str, LocalSocket] = {}
        #: Object key -> the sockets (by id) with events not yet acknowledged, open or
        #: draining: what a re-send looks at, instead of every socket of the process.
        self.unacked: dict[str, dict[str, LocalSocket]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = time.monotonic()
        #: Set when Redis lost this process's data, until its sockets are back there.
        self._reregistering = False
        #: Holders whose heartbeat this process found missing: [first seen, last seen].
        self._missing: dict[str, list[float]] = {}
        #: Holders whose heartbeat this process last found alive: when (see ``_dead_holders``).
        self._alive_at: dict[str, float] = {}
        #: Attachments and tags of this process's sockets, to put back if Redis loses them.
        self.copies = RecordCopies(self)
        self.layer.on_written = self.copies.written
        #: Events that gateways could not hand on at once (Redis away or slow).
        self.held = HeldEvents(self._deliver_held)
        #: Messages to other processes' inboxes, one courier per process.
        self.couriers = Couriers(self.layer, self._inbox_capacity, self._holder_gone)
        #: Object key -> the process owning it, as this process's gateways last found it
        #: (see ``Forwarding._event_target``), for objects with a socket held here.
        self.owners: dict[str, str] = {}
        #: (process, object key) -> when this process last told it the object does
        #: not run here (see ``Forwarding._not_live_here``).
        self._bounced: dict[tuple[str, str], float] = {}
        #: (process, object key) pairs to tell that again once ``BOUNCE_EVERY`` is over.
        self._bounce_later: set[tuple[str, str]] = set()
        #: Background work of the process channel's readers (never awaited by them).
        self._chores: set[asyncio.Task[None]] = set()
        #: Object key -> process -> the ``durable.send`` messages a running handler sent
        #: there, to be pushed with the handler's writes (``redis/pending_frames.py``).
        self._pending: dict[str, dict[str, list[Any]]] = {}
        #: Object key -> set when another task's push of those frames is done.
        self._pushing: dict[str, asyncio.Event] = {}
        #: Object key -> the timer that pushes its held frames if its handler runs on.
        self._late: dict[str, asyncio.TimerHandle] = {}
        #: Object key -> why such a push failed, for the handler's next send.
        self._late_failure: dict[str, Exception] = {}
        #: Processes whose inbox such a push left past its bound: sends to them wait.
        self._over_bound: set[str] = set()

    def _inbox_capacity(self, channel: str) -> int:
        """The bound of ``channel``'s inbox: the channel layer's capacity for it."""
        get_capacity = getattr(self.channel_layer, "get_capacity", None)
        if get_capacity is None:
            return DEFAULT_CAPACITY
        return int(get_capacity(channel))

    async def _send_retrying(self, channel: str, message: Any, watch: bool = False) -> None:
        """Send, trying again while the connection to Redis is lost: a frame the object
        sent must not be dropped for an outage (the first command on each pooled
        connection after Redis restarted fails too). The handler waits meanwhile, as
        the object would for its session writes. A full inbox is waited for by the
        courier (bounded: ``DeliveryFailed``; ``HolderGone`` for a dead process, with
        ``watch``)."""
        delay = 0.05
        warned = False
        while True:
            try:
                await self.couriers.send(channel, message, watch=watch)
                return
            except SessionLayerUnavailable as exc:
                if not warned and delay >= 0.4:
                    logger.warning("sending to %s: Redis unreachable (%s); retrying", channel, exc)
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _send_or_unavailable(self, channel: str, message: Any) -> None:
        """Send once (waiting while ``channel``'s inbox is full); raises on failure."""
        await self.couriers.send(channel, message)

    def _chore(self, work: Awaitable[None]) -> None:
        """Run ``work`` in a task of its own: a reader must never wait on Redis for it
        (the process it waits for might be waiting for this one's reader)."""
        task = asyncio.ensure_future(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

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

        async def _not_live_here(
            self, cls: DurableClass, object_id: str, key: str, event: Event, holder: str
        ) -> None: ...

        async def _dead_socket_closes(self, live: LiveObjectPort) -> list[Event]: ...

        async def _dead_holders(self, holders: set[str]) -> set[str]: ...

        async def _holder_gone(self, holder: str) -> bool: ...

        def _trim(self, sock: Any, seq: int) -> None: ...

        def _rejoin(self, key: str, records: list[SocketRecord]) -> None: ...
