"""The suite's one polling helper: wait, bounded, for state that no event announces.

Prefer awaiting the event itself with a timeout (a WebSocket message with
``recv_json_until``, a future, an ``asyncio.Event``). Polling is for state that only a
question can show: a row in a table, a key in Redis, a line of a status page, a set of
live objects. Both helpers ask ``predicate`` until its answer is truthy (or passes
``accept``, for an answer worth showing even when it is not the awaited one: a status
entry, a count) and return that answer, so a test can go on with what it waited for.
After ``timeout`` seconds they fail the test with an ``AssertionError`` that names what
was awaited (``message``) and the last answer, instead of hanging or failing later for
a reason that hides the first.

- ``await wait_until(predicate, message=...)`` in a test's event loop; ``predicate``
  may be a plain function or return an awaitable (``lambda: layer.owner(key)``). The
  timeout also bounds a predicate that hangs.
- ``wait_until_sync(predicate, message=...)`` in synchronous tests (Playwright, a
  killed server's port); a predicate that hangs is bounded by its own timeouts.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Default bound, in seconds: generous, since a pass usually takes milliseconds and a
#: loaded machine (or a server under test) can be slow to get there.
WAIT = 10.0
#: Seconds between two questions: short enough not to slow the test down, long enough
#: not to keep a core busy asking.
INTERVAL = 0.02


def _failure(message: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"waited {timeout} s for {message}; last answer: {last!r}")


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    message: str,
    timeout: float = WAIT,  # noqa: ASYNC109 (the helper owns its bounded wait)
    interval: float = INTERVAL,
    accept: Callable[[T], object] = bool,
) -> T:
    """Ask ``predicate()`` until ``accept(answer)``; return the answer, or fail after
    ``timeout`` seconds."""
    last: object = None
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            while True:
                answer = predicate()
                if inspect.isawaitable(answer):
                    answer = await answer
                last = answer
                if accept(answer):
                    return answer
                await asyncio.sleep(interval)
    except TimeoutError:
        if not scope.expired():  # the predicate's own timeout: its error says more
            raise
        raise _failure(message, timeout, last) from None


def wait_until_sync(
    predicate: Callable[[], T],
    *,
    message: str,
    timeout: float = WAIT,
    interval: float = INTERVAL,
    accept: Callable[[T], object] = bool,
) -> T:
    """Ask ``predicate()`` until ``accept(answer)``; return the answer, or fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        answer = predicate()
        if accept(answer):
            return answer
        if time.monotonic() > deadline:
            raise _failure(message, timeout, answer)
        time.sleep(interval)
