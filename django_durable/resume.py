"""Resuming clients: replay what a reconnecting socket missed, then let it go live.

A client opts in with ``?durable_resume=1`` and, when it reconnects, adds the last
position it saw (``durable_epoch``, ``durable_offset``) and its previous socket's id
(``durable_socket``). From its accept until the replay is done, everything sent to the
socket is *held*; then the gateway, without waking the object:

1. reads the history (after the ``connect()`` verdict, and after the socket joined its
   groups, so that every broadcast kept after this read is also sent to it live);
2. sends the kept broadcasts after the client's offset that were meant for it, in
   order, or ``r`` (resync) when the epoch changed or the history no longer reaches
   back that far;
3. sends ``h`` (live from here), then the held frames, then lets frames through as they
   come, except broadcasts the replay already sent (same offset), whenever they arrive.
   The last broadcasts missed that also reached the socket live (they are held) are
   sent from the held frames, so they keep their place among the socket's other frames.

So nothing is missed and nothing comes twice: a broadcast is either kept before the
read (replayed, and dropped if it also arrived live) or kept after it (then the socket
was already among its recipients: ``state.broadcast()`` lists sockets after keeping the
broadcast, and ``broadcast_to()`` keeps it before sending to the groups).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol
from urllib.parse import parse_qs

from . import framing, metrics
from .framing import POSITION
from .session.base import BaseSessionLayer

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The epoch a class without history reports: every reconnect of such a socket resyncs.
NO_HISTORY = "-"


class Resume:
    """What a resuming socket asked for, and the frames held until its replay is done."""

    __slots__ = ("epoch", "held", "offset", "previous", "replayed")

    def __init__(self, epoch: str | None, offset: int, previous: str | None) -> None:
        self.epoch = epoch
        self.offset = offset
        self.previous = previous
        #: (offset or None, framed message) sent before the socket went live.
        self.held: list[tuple[int | None, dict[str, Any]]] | None = []
        #: Offsets the replay sent: the same broadcast arriving live later is a duplicate.
        self.replayed: set[int] | None = None

    def duplicate(self, offset: int | None) -> bool:
        """Whether a live broadcast at ``offset`` was already sent by the replay.

        It can still be on its way after the replay: a socket held by another process
        than the object's owner gets its broadcasts through the channel layer, and one
        kept just before the replay read the history may arrive after the replay.
        """
        return offset is not None and self.replayed is not None and offset in self.replayed


class ResumingSocket(Protocol):
    """What this module needs of a gateway's socket (``gateway.LocalSocket``)."""

    id: str
    key: str
    tags: tuple[str, ...]
    resume: Resume | None

    @property
    def cls(self) -> Any:
        """The socket's class."""

    async def asgi_send(self, message: dict[str, Any]) -> None:
        """The connection's ASGI send."""

    async def close(self, code: int) -> None:
        """Close the connection."""


def requested(scope: dict[str, Any]) -> Resume | None:
    """The resume request in the query string, or None; ``ValueError`` when malformed."""
    query = scope.get("query_string") or b""
    if b"durable_" not in query:
        return None
    params = parse_qs(query.decode("latin-1"))
    version = params.get("durable_resume", [None])[-1]
    if version is None:
        return None
    if version != framing.VERSION:
        raise ValueError(
            f"durable_resume={version[:16]!r}: this server speaks version {framing.VERSION}"
        )
    epoch = params.get("durable_epoch", [None])[-1]
    offset_text = params.get("durable_offset", [None])[-1]
    previous = params.get("durable_socket", [None])[-1]
    if (epoch is None) != (offset_text is None):
        raise ValueError("durable_epoch and durable_offset go together")
    if epoch is not None and not _TOKEN.fullmatch(epoch):
        raise ValueError(f"durable_epoch={epoch[:70]!r} is not an epoch")
    offset = 0
    if offset_text is not None:
        if not offset_text.isascii() or not offset_text.isdigit() or len(offset_text) > 18:
            raise ValueError(f"durable_offset={offset_text[:20]!r} is not an offset")
        offset = int(offset_text)
    if previous is not None and not _TOKEN.fullmatch(previous):
        raise ValueError(f"durable_socket={previous[:70]!r} is not a socket id")
    return Resume(epoch, offset, previous)


async def go_live(layer: BaseSessionLayer, sock: ResumingSocket) -> None:
    """Replay (or resync), then the held frames; from then on frames go straight out."""
    resume = sock.resume
    assert resume is not None
    history = sock.cls.history
    asked = resume.epoch is not None
    replayed: set[int] = set()
    if history:
        try:
            snapshot = await layer.read_history(sock.key, resume.offset if asked else None)
        except Exception as exc:
            # Without the history nothing can be promised: close (the client reconnects,
            # from the position it had) rather than send what was held out of order.
            logger.warning("socket %s: cannot read the history of %s: %s", sock.id, sock.key, exc)
            resume.held = None
            await sock.close(1013)
            return
        epoch, head = snapshot.epoch, snapshot.head
        reaches = epoch == resume.epoch and snapshot.first <= resume.offset + 1 <= head + 1
    else:
        snapshot, epoch, head, reaches = None, NO_HISTORY, 0, False
    try:
        if not asked:
            await sock.asgi_send(framing.live(epoch, _position(resume, head), sock.id))
        elif reaches and snapshot is not None:
            ids = (sock.id,) if resume.previous is None else (sock.id, resume.previous)
            missed = [
                entry
                for entry in snapshot.entries
                if entry.offset <= head and entry.reaches(sock.tags, ids)
            ]
            # The last ones may have reached this socket live already (they are held):
            # those keep their place among its other held frames (a ws.send from
            # connect(), say). Only a tail: replayed broadcasts stay in offset order.
            held = {offset for offset, _ in resume.held or () if offset is not None}
            end = len(missed)
            while end and missed[end - 1].offset in held:
                end -= 1
            for entry in missed[:end]:
                message = _payload_message(entry.payload)
                message[POSITION] = (epoch, entry.offset)
                await sock.asgi_send(framing.frame(message))
                replayed.add(entry.offset)
            metrics.inc("resume_replays")
            resume.replayed = replayed or None
            await sock.asgi_send(framing.live(epoch, _position(resume, head), sock.id))
        else:
            metrics.inc("resume_resyncs")
            await sock.asgi_send(framing.resync(epoch, head, sock.id))
        await release_held(sock)
    except Exception:
        # The client went away meanwhile: its disconnect is next in the gateway's loop.
        logger.debug("socket %s: going live failed", sock.id, exc_info=True)
        resume.held = None


async def release_held(sock: ResumingSocket) -> None:
    """Send what was held, in order, except broadcasts the replay already sent."""
    resume = sock.resume
    if resume is None:
        return
    held = resume.held
    while held:
        offset, message = held.pop(0)
        if not resume.duplicate(offset):
            await sock.asgi_send(message)
    resume.held = None


def _position(resume: Resume, head: int) -> int:
    """The offset the client has everything up to once it read ``h``: ``head``, or less
    while held broadcasts up to ``head`` are still to come (they move it on)."""
    pending = [
        offset
        for offset, _ in resume.held or ()
        if offset is not None and offset <= head and not resume.duplicate(offset)
    ]
    return min(head, min(pending) - 1) if pending else head


def _payload_message(payload: str | bytes) -> dict[str, Any]:
    if isinstance(payload, str):
        return {"type": "websocket.send", "text": payload}
    return {"type": "websocket.send", "bytes": payload}
