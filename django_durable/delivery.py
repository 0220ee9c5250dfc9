"""Sending to another process's channel without dropping anything.

channels_redis refuses a message to a channel already holding ``capacity`` messages
(``ChannelFull``, 100 by default). A frame an object sends to a socket held by another
process must not vanish because that process is a little behind, and the handler that
sent it must not believe it was sent if it could not be: so the owner waits (with a
growing pause, bounded by :data:`SEND_TIMEOUT`) and tries again, which also slows the
object down to the pace of the slowest process it sends to (its mailbox then fills up,
and the overload rules of the dispatcher apply to the sockets that flood it). A send
that still fails raises :class:`~django_durable.exceptions.DeliveryFailed` in the
handler (from ``await ws.send()`` or ``broadcast()``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from channels.exceptions import ChannelFull

from . import metrics
from .exceptions import DeliveryFailed, SessionLayerUnavailable

#: Seconds an owner keeps trying a full channel of another process before giving up.
SEND_TIMEOUT = 30.0
#: Seconds between two looks at whether the process behind a full channel is gone.
GONE_CHECK_INTERVAL = 0.5
_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.25


#: Exceptions of the Redis client (``redis.exceptions``) that mean "unreachable", by name:
#: this module must not need the client, which only the ``redis`` extra installs.
REDIS_CONNECTION_ERRORS = ("ConnectionError", "TimeoutError", "BusyLoadingError")


def is_connection_error(exc: BaseException) -> bool:
    """A lost connection to Redis (the channel layer's or the session layer's server):
    the one classification every caller uses, whatever its client."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    return any(
        klass.__module__.startswith("redis.") and klass.__name__ in REDIS_CONNECTION_ERRORS
        for klass in type(exc).__mro__
    )


class HolderGone(Exception):
    """The process behind the full channel is dead: its sockets are being closed."""


async def send_waiting(
    channel_layer: Any,
    channel: str,
    message: Mapping[str, Any],
    timeout: float = SEND_TIMEOUT,  # noqa: ASYNC109 (a deadline over several tries)
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """``channel_layer.send()``, waiting while ``channel`` is full; raises on failure.

    ``gone()``, looked at now and then while waiting, says whether the process behind
    the channel died (nobody will ever read it): then :class:`HolderGone` is raised at
    once rather than after ``timeout``.
    """
    start = time.monotonic()
    deadline = start + timeout
    next_look = start  # a process already known dead is given up at the first refusal
    pause = _FIRST_PAUSE
    while True:
        try:
            await channel_layer.send(channel, message)
            return
        except ChannelFull:
            now = time.monotonic()
            if gone is not None and now >= next_look:
                next_look = now + GONE_CHECK_INTERVAL
                if await gone():
                    raise HolderGone(channel) from None
            if now + pause > deadline:
                metrics.inc("remote_send_failures")
                raise DeliveryFailed(
                    f"the channel of process {channel} stayed full for {timeout:.0f} s"
                ) from None
            metrics.inc("remote_send_retries")
        except Exception as exc:
            if is_connection_error(exc):
                metrics.inc("remote_send_failures")
                raise SessionLayerUnavailable(f"the channel layer is unreachable: {exc}") from exc
            raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)
