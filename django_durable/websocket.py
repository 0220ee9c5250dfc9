"""``DurableWebSocket``: the handle an object uses for one of its sockets.

A handle is a view of the socket's record in the session layer, not the connection
itself: the connection is held by a gateway (possibly in another process), and the
instance using the handle may be dropped and re-created while the socket stays open.
Handles are cheap and made anew for each event; they compare equal by socket id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import conf
from .asgi_server import check_outgoing
from .encoding import decode, encode
from .exceptions import (
    AttachmentTooLarge,
    ScopeUnavailable,
    WebSocketClosed,
    WebSocketNotAccepted,
)
from .limits import validate_close
from .session.base import CLOSED, CLOSING, CONNECTING, OPEN, READY_STATE_NAMES, SocketRecord

if TYPE_CHECKING:
    from .ports import LiveObjectPort


def asgi_send_message(data: str | bytes) -> dict[str, Any]:
    """The ASGI ``websocket.send`` message of a text or binary payload."""
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    if isinstance(data, (bytes, bytearray, memoryview)):
        return {"type": "websocket.send", "bytes": bytes(data)}
    raise TypeError(f"a WebSocket message must be str or bytes; got {type(data).__name__}")


class DurableWebSocket:
    """One socket of a durable object: send, close, tags and an attachment."""

    CONNECTING = CONNECTING
    OPEN = OPEN
    CLOSING = CLOSING
    CLOSED = CLOSED

    __slots__ = ("_live", "_record", "_scope")

    def __init__(
        self, record: SocketRecord, live: LiveObjectPort, scope: dict[str, Any] | None = None
    ) -> None:
        self._record = record
        self._live = live
        self._scope = scope

    @property
    def id(self) -> str:
        """A string naming the socket, stable across hibernation and processes."""
        return self._record.id

    @property
    def ready_state(self) -> int:
        """CONNECTING (in ``connect()`` before accepting), OPEN, CLOSING or CLOSED."""
        return self._record.state

    @property
    def scope(self) -> dict[str, Any]:
        """The ASGI scope: only in ``connect()``, since it cannot survive hibernation."""
        if self._scope is None:
            raise ScopeUnavailable(
                "ws.scope is available only in connect(); keep what must survive "
                "hibernation in the attachment or in storage"
            )
        return self._scope

    async def send(self, data: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message.

        Raises ``WebSocketClosed`` once the socket was closed by either side, also when
        the close happened before the object hibernated, and ``MessageTooLarge`` (the
        socket stays open) for a message over the server's limit.
        """
        message = asgi_send_message(data)
        state = self._record.state
        if state == CONNECTING:
            raise WebSocketNotAccepted(f"socket {self.id} has not been accepted")
        if state != OPEN:
            raise WebSocketClosed(f"socket {self.id} is closed; cannot send")
        check_outgoing(data, self._live.runtime.outgoing_limit)
        await self._live.send([self._record], message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (codes 1000 and 3000-4999; reason <= 123 bytes).

        The peer's answer arrives as ``websocket_close`` with the peer's code; closing a
        closed socket does nothing. daphne drops close reasons on the wire.
        """
        validate_close(code, reason)
        state = self._record.state
        if state == CONNECTING:
            raise WebSocketNotAccepted(
                f"socket {self.id} has not been accepted; return from connect() "
                "without accepting to reject it"
            )
        if state != OPEN:
            return
        self._record.state = CLOSING
        self._live.write_socket(self._record)
        await self._live.close_socket(self._record, code, reason)

    def serialize_attachment(self, value: Any) -> None:
        """Keep ``value`` with the socket across hibernation (and processes).

        Encoded at once (never pickled); over ``ATTACHMENT_MAX_BYTES`` it raises
        ``AttachmentTooLarge`` and the previous attachment stays.
        """
        data = encode(value)
        limit = conf.get("ATTACHMENT_MAX_BYTES")
        if len(data) > limit:
            raise AttachmentTooLarge(
                f"an attachment may be at most {limit} bytes encoded; got {len(data)} bytes"
            )
        self._record.attachment = data
        self._live.write_socket(self._record)

    def deserialize_attachment(self) -> Any:
        """A fresh copy of the attachment, or None when none was set."""
        data = self._record.attachment
        return None if data is None else decode(data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DurableWebSocket):
            return self._record.id == other._record.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._record.id)

    def __repr__(self) -> str:
        return f"<DurableWebSocket {self.id} {READY_STATE_NAMES.get(self.ready_state, '?')}>"
