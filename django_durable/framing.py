"""The frames a resuming client gets (protocol version 1; docs/reconnecting.md).

A socket that opted in (``?durable_resume=1``) gets every frame with a one-line header,
so that a client in any language can tell a broadcast kept in the object's history
(with its epoch and offset) from any other message, without guessing:

- ``b <epoch> <offset>\\n<payload>``: a broadcast kept in history;
- ``m\\n<payload>``: any other message (``ws.send``, the auto-response, broadcasts of a
  class without history);
- ``h <epoch> <offset> <socket id>\\n``: "you are live from here" (after any replay);
- ``r <epoch> <offset> <socket id>\\n``: "resync": what was missed is gone.

A text payload travels in a text frame, a binary one in a binary frame with the same
header in ASCII. Sockets that did not opt in get plain frames, exactly as before: the
position travels in the internal message under :data:`POSITION` and :func:`plain`
drops it.
"""

from __future__ import annotations

from typing import Any

#: The protocol version a client asks for with ``?durable_resume=<version>``.
VERSION = "1"
#: Key of an internal send message holding ``(epoch, offset)`` of a kept broadcast.
POSITION = "pos"


def plain(message: dict[str, Any]) -> dict[str, Any]:
    """The ASGI message for a socket that did not opt in (the same dict when it can be)."""
    if POSITION not in message:
        return message
    return {k: v for k, v in message.items() if k != POSITION}


def offset_of(message: dict[str, Any]) -> int | None:
    """A broadcast's history offset, if it has one."""
    position = message.get(POSITION)
    return None if position is None else int(position[1])


def frame(message: dict[str, Any]) -> dict[str, Any]:
    """The ASGI message for a socket that opted in: the payload behind its header line."""
    position = message.get(POSITION)
    header = "m" if position is None else f"b {position[0]} {position[1]}"
    text = message.get("text")
    if text is not None:
        return {"type": "websocket.send", "text": f"{header}\n{text}"}
    return {"type": "websocket.send", "bytes": f"{header}\n".encode() + message["bytes"]}


def live(epoch: str, offset: int, socket_id: str) -> dict[str, Any]:
    """The line telling a resuming client its replay is done."""
    return {"type": "websocket.send", "text": f"h {epoch} {offset} {socket_id}\n"}


def resync(epoch: str, offset: int, socket_id: str) -> dict[str, Any]:
    """The line telling a resuming client it missed too much."""
    return {"type": "websocket.send", "text": f"r {epoch} {offset} {socket_id}\n"}
