"""``DurableState`` (``self.state``): the object's sockets, settings and storage.

Its methods are synchronous like Cloudflare's: they work on the session loaded when
the object woke, and the dispatcher writes their changes to the session layer after
each handler. Every method validates completely before changing anything, so a call
that raises leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from . import conf
from .asgi_server import check_outgoing
from .autoresponse import WebSocketRequestResponsePair
from .exceptions import (
    InvalidSubprotocol,
    TooManyWebSockets,
    WebSocketAlreadyAccepted,
    WebSocketNotAccepted,
)
from .framing import POSITION
from .limits import (
    loggable,
    validate_auto_response_part,
    validate_event_timeout,
    validate_tags,
)
from .session.base import CONNECTING, OPEN
from .websocket import DurableWebSocket, asgi_send_message

if TYPE_CHECKING:
    from .ports import LiveObjectPort
    from .storage import DurableStorage


class DurableState:
    """The state of one durable object, shared by every handler of its instance."""

    __slots__ = ("_live", "_storage")

    def __init__(self, live: LiveObjectPort) -> None:
        self._live = live
        self._storage: DurableStorage | None = None

    # Sockets ------------------------------------------------------------------------

    def accept_websocket(
        self,
        ws: DurableWebSocket,
        tags: Iterable[str] | None = None,
        subprotocol: str | None = None,
    ) -> None:
        """Accept ``ws`` (in ``connect()``) with its tags, fixed from now on.

        Tags are validated completely first (at most 10 distinct, 256 bytes each) so a
        failing accept registers nothing; they become the socket's channel-layer groups.
        ``subprotocol``, one of those the client offered (``ws.scope["subprotocols"]``),
        is sent in the handshake's ``Sec-WebSocket-Protocol``; any other is a
        ``ValueError`` (``InvalidSubprotocol``).
        """
        record = ws._record
        if record.state != CONNECTING or record.id in self._live.session.sockets:
            raise WebSocketAlreadyAccepted(f"socket {record.id} was already accepted")
        if subprotocol is not None:
            offered = list((ws._scope or {}).get("subprotocols") or ())
            if not isinstance(subprotocol, str) or subprotocol not in offered:
                raise InvalidSubprotocol(
                    f"subprotocol {loggable(subprotocol)} was not offered by the client; "
                    f"it offered {offered!r}"
                )
        distinct = validate_tags(tags)
        limit = conf.get("MAX_WEBSOCKETS")
        count = len(self._live.session.sockets)
        if count >= limit:
            raise TooManyWebSockets(
                f"an object may have at most {limit} accepted sockets; it has {count}"
            )
        record.tags = distinct
        record.state = OPEN
        self._live.add_socket(record, subprotocol)

    def get_websockets(self, tag: str | None = None) -> list[DurableWebSocket]:
        """Every socket of the object (with ``tag``), wherever its connection is held.

        A socket stays listed until its final event has been dispatched, so a socket
        being closed shows up as CLOSING (or CLOSED inside its own close handler).
        """
        live = self._live
        records = live.session.sockets.values()
        if tag is None:
            return [DurableWebSocket(r, live) for r in records]
        return [DurableWebSocket(r, live) for r in records if tag in r.tags]

    def get_tags(self, ws: DurableWebSocket) -> list[str]:
        """The socket's tags, distinct and in the order they were given at accept."""
        record = self._live.session.sockets.get(ws.id)
        if record is None:
            raise WebSocketNotAccepted(f"socket {ws.id} was never accepted by this object")
        return list(record.tags)

    async def broadcast(
        self,
        message: str | bytes,
        tag: str | None = None,
        exclude: Iterable[DurableWebSocket | str] = (),
    ) -> int:
        """Send to every OPEN socket (of ``tag``) except ``exclude``; return how many.

        With ``history = N`` on the class the broadcast is kept first, and the sockets
        are listed after that: a socket accepted meanwhile is then either listed here or
        finds the broadcast in the history it replays (docs/reconnecting.md).

        A message over the server's limit raises ``MessageTooLarge`` before anything is
        sent to anyone.
        """
        asgi_message = asgi_send_message(message)
        check_outgoing(message, self._live.runtime.outgoing_limit)
        excluded = {e.id if isinstance(e, DurableWebSocket) else e for e in exclude}
        live = self._live
        if live.cls.history:
            payload = asgi_message.get("text")
            if payload is None:
                payload = asgi_message["bytes"]
            asgi_message[POSITION] = await live.runtime.layer.append_history(
                live.key, live.cls.history, tag, tuple(sorted(excluded)), payload
            )
        records = [
            r
            for r in live.session.sockets.values()
            if r.state == OPEN and (tag is None or tag in r.tags) and r.id not in excluded
        ]
        return await live.send(records, asgi_message)

    # Auto-response ----------------------------------------------------------------

    def set_websocket_auto_response(self, pair: WebSocketRequestResponsePair | None = None) -> None:
        """Let gateways answer ``pair.request`` with ``pair.response`` themselves.

        Matching frames never reach (or wake) the object; the setting survives
        hibernation. No argument clears it and keeps the recorded timestamps.
        """
        if pair is not None:
            if not isinstance(pair, WebSocketRequestResponsePair):
                raise TypeError(
                    f"expected a WebSocketRequestResponsePair or None; got {type(pair).__name__}"
                )
            validate_auto_response_part("request", pair.request)
            validate_auto_response_part("response", pair.response)
        self._live.session.auto_response = pair
        self._live.write_settings()

    def get_websocket_auto_response(self) -> WebSocketRequestResponsePair | None:
        """The object's auto-response pair, or None."""
        return self._live.session.auto_response

    def get_websocket_auto_response_timestamp(self, ws: DurableWebSocket) -> datetime | None:
        """When the gateway last answered this socket's auto-response (aware UTC).

        With the Redis layer, a ping answered by another process's gateway shows here
        within about a second: gateways batch their timestamps (one Redis write per
        process about twice a second) and tell the live owner, never waking the object.
        """
        record = self._live.session.sockets.get(ws.id)
        when = None if record is None else record.auto_response_at
        return None if when is None else datetime.fromtimestamp(when, UTC)

    # Event timeout -------------------------------------------------------------------

    def set_hibernatable_websocket_event_timeout(self, timeout_ms: int | None = None) -> None:
        """Cancel handlers that run longer than ``timeout_ms`` (None or 0: no limit).

        A handler past it is cancelled, the instance is discarded and the socket whose
        event it was is closed with 1011; the other sockets stay connected.
        """
        self._live.session.event_timeout_ms = validate_event_timeout(timeout_ms)
        self._live.write_settings()

    def get_hibernatable_websocket_event_timeout(self) -> int | None:
        """The event timeout in milliseconds, or None."""
        return self._live.session.event_timeout_ms

    # Storage ----------------------------------------------------------------------------

    @property
    def storage(self) -> DurableStorage:
        """The object's transactional key-value storage (and its alarm), in the database."""
        if self._storage is None:
            self._storage = self._live.make_storage()
        return self._storage

    def __repr__(self) -> str:
        return f"<DurableState {self._live.key}>"
