"""What the ASGI server under a gateway allows: close codes and message sizes.

The package closes sockets with codes an application may not send through daphne's
ASGI path (1009 for a message over ``MAX_MESSAGE_BYTES``, 1012 at shutdown, 1013 for
overload): autobahn's ``sendClose`` accepts only 1000 and 3000-4999 from applications.
Under daphne the close frame is therefore sent through the connection's protocol
object, the way daphne itself sends 1011; under uvicorn and hypercorn the ASGI
``websocket.close`` message carries any code.

Daphne also applies ``--websocket-max-message-size`` to what the application sends:
the protocol's limit is read here so that ``ws.send()`` and ``broadcast()`` refuse an
oversized message before sending anything, with an error that names the limit.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

logger = logging.getLogger(__name__)

#: Close codes the package sends on its own, with the reason sent along.
MESSAGE_TOO_BIG = 1009
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013
CLOSE_REASONS = {
    MESSAGE_TOO_BIG: "Message is too large",
    SERVICE_RESTART: "Service Restart",
    TRY_AGAIN_LATER: "Try Again Later",
}

_warned_incoming = False


def utf8_size(data: str | bytes) -> int:
    """The size of a message on the wire (UTF-8 bytes for text), cheaply when it can."""
    if isinstance(data, str):
        return len(data) if data.isascii() else len(data.encode())
    return len(data)


def check_outgoing(data: str | bytes, limit: int | None) -> None:
    """Refuse a message the server would not send (``MessageTooLarge``, naming the limit)."""
    if limit is None:
        return
    size = utf8_size(data)
    if size > limit:
        from .exceptions import MessageTooLarge

        raise MessageTooLarge(
            f"a message may be at most {limit} bytes, the server's limit (daphne's "
            f"--websocket-max-message-size); got {size} bytes; nothing was sent"
        )


def daphne_protocol(asgi_send: Any) -> Any | None:
    """daphne's WebSocket protocol behind an ASGI ``send`` (``partial(handle_reply, p)``)."""
    if isinstance(asgi_send, functools.partial) and asgi_send.args:
        protocol = asgi_send.args[0]
        if hasattr(protocol, "sendCloseFrame") and hasattr(protocol, "factory"):
            return protocol
    return None


def outgoing_limit(asgi_send: Any) -> int | None:
    """The largest message the server will send, or None for no limit of its own."""
    protocol = daphne_protocol(asgi_send)
    if protocol is None:
        return None
    limit = getattr(protocol.factory, "maxMessagePayloadSize", 0) or 0
    return int(limit) or None


def warn_if_server_limit_decides(asgi_send: Any, max_message_bytes: int) -> None:
    """Say once when daphne's incoming limit would drop messages before the package's
    own limit could close their socket with 1009."""
    global _warned_incoming
    if _warned_incoming:
        return
    protocol = daphne_protocol(asgi_send)
    if protocol is None:
        return
    _warned_incoming = True
    factory = protocol.factory
    limits = [
        int(getattr(factory, "maxMessagePayloadSize", 0) or 0),
        int(getattr(factory, "maxFramePayloadSize", 0) or 0),
    ]
    if any(0 < limit <= max_message_bytes for limit in limits):
        logger.warning(
            "daphne drops messages over %d bytes without a Close frame (1006) before "
            "MAX_MESSAGE_BYTES (%d) can close them with 1009: start daphne with "
            "--websocket-max-message-size and --websocket-max-frame-size above %d",
            min(limit for limit in limits if limit > 0),
            max_message_bytes,
            max_message_bytes,
        )


async def close_with_code(asgi_send: Any, code: int, reason: str = "") -> None:
    """Send a Close frame with ``code`` (any valid code, 1009/1012/1013 included)."""
    protocol = daphne_protocol(asgi_send)
    if protocol is not None:
        # daphne's handle_reply ignores a connection that is already gone: so do we.
        server = getattr(protocol, "server", None)
        details = getattr(server, "connections", {}).get(protocol)
        if details is None or details.get("disconnected"):
            return
        protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123] or None)
        return
    await asgi_send({"type": "websocket.close", "code": code, "reason": reason})
