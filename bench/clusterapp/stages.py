"""Timestamps of the stages of a broadcast, read back by the benchmark after each round.

``time.monotonic_ns()`` is CLOCK_MONOTONIC, one clock for every process of the machine,
so the benchmark can line up what the client processes and each server recorded.
Recording costs a few hundred nanoseconds per mark, a handful of marks per round (and,
for Channels, one counter update per consumer).
"""

from __future__ import annotations

import time
from typing import Any

MARKS: list[dict[str, Any]] = []
#: Channels consumers' sends of the broadcast, in this process.
CONSUMERS: dict[str, Any] = {"count": 0, "first": None, "last": None}


def mark(stage: str, **extra: Any) -> None:
    MARKS.append({"stage": stage, "t": time.monotonic_ns(), **extra})
    del MARKS[:-1000]


def consumer_sent() -> None:
    now = time.monotonic_ns()
    if CONSUMERS["first"] is None:
        CONSUMERS["first"] = now
    CONSUMERS["last"] = now
    CONSUMERS["count"] += 1


def take() -> dict[str, Any]:
    """Every mark since the last call, then forget them."""
    result = {"marks": list(MARKS), "consumers": dict(CONSUMERS)}
    MARKS.clear()
    CONSUMERS.update(count=0, first=None, last=None)
    return result
