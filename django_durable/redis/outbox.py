"""A socket's outbox: its events forwarded and not yet acknowledged by the owner.

Delivery is at least once on the wire and exactly once at the object: each gateway
numbers its socket's events and keeps them here until the owner has handled them and
stored the fact (the socket record's ``seq``); the owner admits each number once and
in order. Whoever sends them again (a dead owner, a hand-over, Redis back after losing
its data, held events) goes through :func:`hand_on`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..events import Event


@dataclass(slots=True)
class OutboxEntry:
    """One forwarded event of a socket."""

    seq: int
    event: Event
    #: When it was last handed on (``time.monotonic()``).
    sent_at: float
    #: The process it was last handed to ("" while it is held in this process).
    owner: str = ""


async def hand_on(
    sock: Any,
    entries: Iterable[OutboxEntry],
    deliver: Callable[[Any, Event], Awaitable[str]],
) -> None:
    """(Re-)send ``entries`` of ``sock``'s outbox in order, noting to whom and when."""
    for entry in list(entries):
        entry.owner = await deliver(sock, entry.event)
        entry.sent_at = time.monotonic()


def trim(sock: Any, seq: int) -> bool:
    """Forget the entries up to ``seq`` (acknowledged); True when none is left."""
    outbox = sock.outbox
    while outbox and outbox[0].seq <= seq:
        outbox.popleft()
    if outbox:
        return False
    sock.outbox = None
    return True
