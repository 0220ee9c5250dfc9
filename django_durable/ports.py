"""The contracts between the object core and what it runs on, as protocols.

The core (the dispatcher and its live objects, ``DurableState``, ``DurableWebSocket``,
the backlog) is written against these shapes, not against the runtime or the concrete
transports, so it imports none of them and they are free to import it. The composition
root (:mod:`django_durable.runtime`) builds the concrete pieces and wires them.

The :class:`Transport` is the one seam between "one process" and "many": the local
transport delivers straight to this process's dispatcher and gateways; the Redis
transport forwards events to the owning process and frames to the holding ones. The
dispatcher and the gateways only ever talk to this interface.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .classes import DurableClass

if TYPE_CHECKING:
    import asyncio

    from .events import Event
    from .mailbox import Mailbox
    from .session.base import BaseSessionLayer, ObjectSession, SessionWrite, SocketRecord
    from .sockets import LocalSocket
    from .storage import DurableStorage


class Ack(NamedTuple):
    """A socket's events up to ``seq`` were handled and their effects stored."""

    #: The process holding the socket (its gateway keeps the unacknowledged events).
    holder: str
    socket_id: str
    seq: int


class Transport(Protocol):
    """How events reach an object, and how an object reaches its sockets' connections.

    Gateways call the first group (in the process holding the socket); live objects
    call the second and third (in the process owning the object). Every method may
    raise :class:`~django_durable.exceptions.SessionLayerUnavailable` when the shared
    services are away.
    """

    async def start(self) -> None:
        """Called by a gateway before its first connection is handled (idempotent)."""

    async def group_channel(self) -> str | None:
        """The process channel tag groups are joined with, when this transport reads
        one and hands group messages to the fan-out; None: the fan-out reads its own."""

    # Gateways -> objects ------------------------------------------------------------

    async def connect(self, sock: LocalSocket, scope: dict[str, Any]) -> tuple[str, ...] | None:
        """Run the object's ``connect(ws)``; the accepted socket's tags, or None."""

    async def route(self, sock: LocalSocket, event: Event) -> None:
        """Queue a socket's event for its object, wherever it lives; never waits on the
        handler (the gateway goes back to reading its socket)."""

    async def call(self, cls: DurableClass, object_id: str, name: str, payload: bytes) -> Any:
        """Run ``name`` (an ``@rpc`` method or the alarm) on the live instance; its result."""

    def gone(self, sock: LocalSocket) -> None:
        """A gateway's connection ended (after its final event was routed)."""

    # Objects -> sockets ---------------------------------------------------------------

    async def send(
        self, key: str, records: list[SocketRecord], message: dict[str, Any], hold: bool = False
    ) -> int:
        """Send ``message`` to each record's connection, wherever held; how many. With
        ``hold`` (from the handler of a socket event of a turn-based object), frames for
        other processes may wait to be stored with the handler's writes (:meth:`store`)."""

    async def store(
        self,
        key: str,
        writes: list[SessionWrite],
        session: ObjectSession,
        release: bool = False,
    ) -> None:
        """Store an object's writes in the session layer (``apply``), with the frames
        its running handler held: in one step, all or nothing (``release``: and give
        the object up, see :meth:`stopping`)."""

    async def push_held(self, key: str) -> None:
        """Send what the object's handler held and no write took (it is done)."""

    async def send_local(self, socket_ids: list[str], message: dict[str, Any]) -> int:
        """Send ``message`` to the sockets of this process among ``socket_ids``."""

    async def close(self, key: str, record: SocketRecord, code: int, reason: str) -> None:
        """Close a socket's connection with ``code`` (the object asked)."""

    async def kill(self, key: str, record: SocketRecord, error: BaseException) -> None:
        """End a socket's connection with 1011 after ``error`` (a handler failed it)."""

    async def verdict(self, key: str, sock: Any, record: SocketRecord | None) -> None:
        """Tell the gateway whether ``connect()`` accepted (``record``) or rejected."""

    # The object's own bookkeeping -------------------------------------------------------

    async def on_wake(self, live: LiveObjectPort) -> None:
        """The object was loaded; a distributed transport closes sockets of dead peers."""

    async def ack(self, acks: list[Ack]) -> None:
        """Numbered events were handled and stored: their gateways may forget them."""

    async def scope_for(self, sock: Any, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope ``connect(ws)`` sees (a distributed transport rebuilds it)."""

    def stopping(self, live: LiveObjectPort) -> bool:
        """The object hibernates after its next write (``HIBERNATE_EAGERLY``, nothing
        else to do). True: the transport stopped sending it events, and that write gives
        the object up too (``apply(release=True)``), saving the release's round trip.
        False: nothing changes (the worker decides after the write, as without this)."""

    async def released(self, live: LiveObjectPort) -> None:
        """The object hibernated (or stopped) in this process."""

    async def settings_changed(self, live: LiveObjectPort) -> None:
        """The object's auto-response or event timeout changed (tell other gateways)."""

    async def reroute(self, live: LiveObjectPort, event: Event) -> None:
        """An event the object could not handle here (it stopped): give it to a new one."""


class DispatcherPort(Protocol):
    """What transports and live objects need of this process's dispatcher."""

    @property
    def live(self) -> Mapping[str, Any]:
        """The objects awake in this process, by key."""

    def put(self, cls: DurableClass, object_id: str, key: str, event: Event) -> None:
        """Queue ``event`` for the object, waking it."""

    def forget(self, live: Any) -> None:
        """A live object's worker ended."""

    async def connect(self, sock: LocalSocket, scope: dict[str, Any]) -> tuple[str, ...] | None:
        """Run ``connect(ws)``; the accepted socket's tags, or None when rejected."""

    async def call(
        self, cls: DurableClass, object_id: str, key: str, fn: Callable[[Any], Awaitable[Any]]
    ) -> Any:
        """Run ``fn(instance)`` as an event of the object (waking it); its result."""

    async def hibernate(self, key: str) -> None:
        """Drop the object's instance now if it is idle."""


class AlarmsPort(Protocol):
    """What storage needs of the alarm scheduler."""

    def start(self, object_key: str | None = None) -> None:
        """Make sure this process polls for due alarms (of ``object_key``)."""


class FanoutPort(Protocol):
    """What a transport that reads the process channel needs of the fan-out."""

    async def handle(self, message: dict[str, Any]) -> None:
        """A group message that reached the process channel."""

    async def resubscribe(self) -> None:
        """Join every group this process holds sockets of again (Redis lost them)."""


class Host(Protocol):
    """The process a live object runs in, as the core and the transports see it.

    Read-only properties, so the runtime's concrete pieces satisfy it.
    """

    #: This process's name among processes (the Redis transport sets its channel).
    process_id: str

    @property
    def layer(self) -> BaseSessionLayer:
        """The session layer."""

    @property
    def transport(self) -> Transport:
        """How events and frames move."""

    @property
    def dispatcher(self) -> DispatcherPort:
        """The live objects of this process."""

    @property
    def fanout(self) -> FanoutPort:
        """The tag groups of this process."""

    @property
    def alarms(self) -> AlarmsPort:
        """The alarm poller."""

    @property
    def sockets(self) -> dict[str, LocalSocket]:
        """The sockets held by this process's gateways, by socket id."""

    @property
    def outgoing_limit(self) -> int | None:
        """The ASGI server's limit on sent messages, once a gateway saw it."""

    @property
    def shutting_down(self) -> bool:
        """Set by a graceful shutdown: no new connection, no new object taken."""


class LiveObjectPort(Protocol):
    """What ``DurableState``, ``DurableWebSocket`` and the backlog need of a live object."""

    @property
    def runtime(self) -> Host:
        """The process it runs in."""

    @property
    def cls(self) -> DurableClass:
        """Its class."""

    #: Events to handle before the mailbox's (the transport puts closes of sockets
    #: found dead at wake here).
    front: deque[Event]
    #: Set (by :meth:`Transport.stopping`) while the object's release is on its way.
    releasing: asyncio.Future[None] | None
    #: Other processes that sent this live object events (``Event.holder``).
    senders: set[str]
    #: Set when this process lost the object's lease.
    lost: bool
    object_id: str
    key: str
    session: ObjectSession
    queue: Mailbox

    def add_socket(self, record: SocketRecord, subprotocol: str | None = None) -> None:
        """Accept a socket: written after the handler."""

    def write_socket(self, record: SocketRecord) -> None:
        """Write a changed record after the handler."""

    def write_settings(self) -> None:
        """Write the settings after the handler."""

    async def send(self, records: list[SocketRecord], message: dict[str, Any]) -> int:
        """Send to the sockets' connections, wherever held."""

    async def close_socket(self, record: SocketRecord, code: int, reason: str) -> None:
        """Close a socket's connection."""

    def make_storage(self) -> DurableStorage:
        """The object's storage."""
