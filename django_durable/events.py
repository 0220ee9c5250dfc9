"""Events queued for a durable object, in the order they must be delivered."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

CONNECT = "connect"
MESSAGE = "message"
CLOSE = "close"
ERROR = "error"
CALL = "call"
HIBERNATE = "hibernate"
#: Sockets put back in Redis after it lost its data (``data``: their records).
REJOIN = "rejoin"


class ConnectData(NamedTuple):
    """``data`` of a ``CONNECT``: the gateway's socket (or, across processes, a
    ``RemoteSocket`` naming its process) and the connection's scope."""

    sock: Any
    scope: dict[str, Any]


class CloseData(NamedTuple):
    """``data`` of a ``CLOSE``: what ``websocket_close(ws, code, reason, was_clean)`` gets."""

    code: int
    reason: str
    was_clean: bool


class Event:
    """One thing for the object to handle.

    ``socket_id`` is set for socket events (they are ordered per socket); ``future``
    is set when someone waits for the outcome (a connect verdict, a call's result).
    ``data`` by kind: ``MESSAGE`` the text or bytes; ``CONNECT`` a :class:`ConnectData`;
    ``CLOSE`` a :class:`CloseData`; ``ERROR`` the exception; ``CALL`` a function of the
    instance; ``REJOIN`` a list of socket records; ``HIBERNATE`` nothing.
    """

    __slots__ = ("data", "future", "holder", "kind", "seq", "socket_id")

    def __init__(
        self,
        kind: str,
        socket_id: str | None = None,
        data: Any = None,
        future: asyncio.Future[Any] | None = None,
        seq: int | None = None,
    ) -> None:
        self.kind = kind
        #: The socket's event number, set when events can arrive twice or out of order
        #: (forwarded between processes); None for events that cannot.
        self.seq = seq
        self.socket_id = socket_id
        self.data = data
        self.future = future
        #: The process holding the socket, when the event came from another one.
        self.holder = ""

    def resolve(self, result: Any) -> None:
        """Give the waiter its result (once)."""
        if self.future is not None and not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        """Give the waiter an error (once)."""
        if self.future is not None and not self.future.done():
            self.future.set_exception(error)

    def __repr__(self) -> str:
        return f"<Event {self.kind} socket={self.socket_id}>"
