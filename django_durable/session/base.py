"""What a session layer stores, and the interface every backend implements.

The session layer is the memory that survives hibernation: for each object, its
sockets (id, tags, attachment, auto-response timestamp, ready state, holder process)
and its settings (auto-response pair, event timeout). It is a pluggable backend built
from ``DURABLE_OBJECTS["SESSION_LAYER"]`` exactly as Channels builds ``CHANNEL_LAYERS``.

``DurableState``'s methods are synchronous (as in Cloudflare's API), so a live object
works on an in-memory :class:`ObjectSession` loaded at wake-up and sends its changes
to the layer with the ``async`` write methods after each handler. A backend may hand
out its own stored objects from :meth:`load` (the in-memory one does); writes must
therefore be idempotent re-statements of the new values, never increments.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..autoresponse import WebSocketRequestResponsePair

CONNECTING = 0
OPEN = 1
CLOSING = 2
CLOSED = 3
#: Each ready state's name, as ``WebSocket.readyState`` constants are named.
READY_STATE_NAMES = {CONNECTING: "CONNECTING", OPEN: "OPEN", CLOSING: "CLOSING", CLOSED: "CLOSED"}

#: No socket set aside: shared by every session (a set each would cost 216 bytes per
#: object, hibernated ones included, for what almost never happens).
NOTHING_SET_ASIDE: frozenset[str] = frozenset()


class SocketRecord:
    """One accepted socket, as every process may need to see it."""

    __slots__ = ("attachment", "auto_response_at", "holder", "id", "seq", "state", "tags")

    def __init__(
        self,
        id: str,
        tags: tuple[str, ...] = (),
        attachment: bytes | None = None,
        auto_response_at: float | None = None,
        holder: str = "",
        state: int = CONNECTING,
        seq: int = 0,
    ) -> None:
        self.id = id
        self.tags = tags
        self.attachment = attachment
        self.auto_response_at = auto_response_at
        self.holder = holder
        self.state = state
        #: The last event of this socket the object has handled (gateways number them).
        self.seq = seq

    def __repr__(self) -> str:
        return f"<SocketRecord {self.id} tags={self.tags!r} state={self.state}>"


class ObjectSession:
    """An object's sockets (in accept order) and settings."""

    __slots__ = ("auto_response", "event_timeout_ms", "key", "set_aside", "sockets")

    def __init__(self, key: str) -> None:
        self.key = key
        self.sockets: dict[str, SocketRecord] = {}
        #: Ids of sockets whose record could not be decoded at load (set aside, logged):
        #: their connections are closed when they next send.
        self.set_aside: frozenset[str] = NOTHING_SET_ASIDE
        self.auto_response: WebSocketRequestResponsePair | None = None
        self.event_timeout_ms: int | None = None

    def put_aside(self, socket_id: str) -> None:
        """Set a socket aside (its record was corrupt); rare, so a new frozenset each."""
        self.set_aside = self.set_aside | {socket_id}

    def is_empty(self) -> bool:
        """Whether nothing was stored for the object."""
        return not self.sockets and self.auto_response is None and self.event_timeout_ms is None


# A handler's changes, queued by the live object and stored after the handler ------------


@dataclass(frozen=True, slots=True)
class AddSocket:
    """``accept_websocket()``: a new socket record."""

    record: SocketRecord


@dataclass(frozen=True, slots=True)
class UpdateSocket:
    """A record changed (tags, attachment, ready state, event number)."""

    record: SocketRecord


@dataclass(frozen=True, slots=True)
class RemoveSocket:
    """A socket's final event was handled: forget it."""

    socket_id: str


@dataclass(frozen=True, slots=True)
class SaveSettings:
    """The object's auto-response pair or event timeout changed (read from the session)."""


SessionWrite = AddSocket | UpdateSocket | RemoveSocket | SaveSettings


class StoredObject(NamedTuple):
    """An object as a session layer alone knows it, for the status views."""

    #: Its socket records (None when this layer has none to show).
    records: list[SocketRecord] | None
    #: The process holding its lease (live there), or None.
    owner: str | None = None


def new_epoch() -> str:
    """A fresh history epoch: a history that starts again never reuses the old name."""
    return secrets.token_hex(6)


class HistoryEntry:
    """One kept broadcast: whom it was for (tag, excluded socket ids) and its payload."""

    __slots__ = ("exclude", "offset", "payload", "tag")

    def __init__(
        self, offset: int, tag: str | None, exclude: tuple[str, ...], payload: str | bytes
    ) -> None:
        self.offset = offset
        self.tag = tag
        self.exclude = exclude
        self.payload = payload

    def reaches(self, tags: tuple[str, ...], socket_ids: tuple[str, ...]) -> bool:
        """Whether a socket with ``tags`` (known by ``socket_ids``) was meant to get it."""
        if self.tag is not None and self.tag not in tags:
            return False
        return not any(sid in self.exclude for sid in socket_ids)


class HistorySnapshot:
    """An object's history as read at one moment: its epoch, the offset of its last
    broadcast (``head``), the oldest offset still kept (``first``) and the entries
    after the offset asked for."""

    __slots__ = ("entries", "epoch", "first", "head")

    def __init__(self, epoch: str, head: int, first: int, entries: list[HistoryEntry]) -> None:
        self.epoch = epoch
        self.head = head
        self.first = first
        self.entries = entries


class BaseSessionLayer(abc.ABC):
    """The interface of a session layer; see the module docstring for the contract."""

    #: True when sockets of one object may be held by several processes.
    distributed: bool = False
    #: The dotted path of the transport a distributed layer needs (built by the
    #: runtime with the runtime as its argument); None: the single-process one. A path,
    #: not the class, so a layer never imports the transport that sits above it.
    transport_class: str | None = None

    def __init__(self, **config: Any) -> None:
        self.config = config
        #: This process's name among the processes sharing the layer ("" alone).
        self.holder = ""

    # The object's side (the owner of a live instance) ------------------------------

    @abc.abstractmethod
    async def load(self, key: str) -> ObjectSession:
        """Everything known about ``key``; an empty session for an unknown object."""

    @abc.abstractmethod
    async def add_socket(self, key: str, record: SocketRecord) -> None:
        """Register an accepted socket."""

    @abc.abstractmethod
    async def update_socket(self, key: str, record: SocketRecord) -> None:
        """Store a socket's attachment and ready state as they are now in ``record``."""

    @abc.abstractmethod
    async def remove_socket(self, key: str, socket_id: str) -> None:
        """Forget a socket once its final event has been dispatched."""

    @abc.abstractmethod
    async def save_settings(self, session: ObjectSession) -> None:
        """Store the object's auto-response pair and event timeout."""

    async def apply(
        self, key: str, writes: list[SessionWrite], session: ObjectSession, release: bool = False
    ) -> None:
        """Store a handler's changes in order; a backend may do it in one round trip.

        With ``release``, these are the last writes before the object hibernates: give
        up what :meth:`load` took too (a backend may do it in the same round trip).
        """
        for write in writes:
            match write:
                case AddSocket(record):
                    await self.add_socket(key, record)
                case UpdateSocket(record):
                    await self.update_socket(key, record)
                case RemoveSocket(socket_id):
                    await self.remove_socket(key, socket_id)
                case SaveSettings():
                    await self.save_settings(session)
        if release:
            await self.release(key, session)

    # The gateway's side (any process holding a socket) ---------------------------

    @abc.abstractmethod
    def auto_response(self, key: str) -> WebSocketRequestResponsePair | None:
        """The object's auto-response pair, answered without I/O on every frame."""

    def settings_announced(self, key: str, packed_pair: Any) -> None:
        """Another process's object announced its auto-response pair (packed by that
        backend) through the fan-out; a backend whose gateways cache it stores it."""

    @abc.abstractmethod
    async def touch_auto_response(self, key: str, socket_id: str, when: float) -> None:
        """Record when a socket's message was last answered by the auto-response."""

    # Broadcast history (classes with ``history = N``) ---------------------------------

    async def append_history(
        self,
        key: str,
        limit: int,
        tag: str | None,
        exclude: tuple[str, ...],
        payload: str | bytes,
    ) -> tuple[str, int]:
        """Keep a broadcast (and at most ``limit`` in all): its ``(epoch, offset)``.

        Offsets grow by one per broadcast; the epoch changes whenever the history could
        have been lost, and offsets start again at 1 in a new epoch.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no broadcast history")

    async def read_history(self, key: str, after: int | None) -> HistorySnapshot:
        """The history's position, with the entries after offset ``after`` (None: none).

        Starts an epoch when there is none, so that every client gets a position.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no broadcast history")

    # Ownership -------------------------------------------------------------------------

    async def release(self, key: str, session: ObjectSession) -> None:
        """The object hibernated in this process: give up whatever :meth:`load` took."""

    def fence_token(self, key: str) -> int | None:
        """The fencing token this process holds for ``key`` (None: no fencing)."""
        return None

    async def stored_objects(self, known: Iterable[str] = ()) -> dict[str, StoredObject]:
        """Every object with sockets (or, distributed, a lease) in this layer, and any of
        ``known`` it has: what the status views list beyond this process's live ones."""
        return {}

    async def close(self) -> None:
        """Release connections; the default has none."""
