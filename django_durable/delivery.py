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
from typing import Any

from channels.exceptions import ChannelFull

from . import metrics
from .exceptions import DeliveryFailed, SessionLayerUnavailable
from .outside import is_connection_error

#: Seconds an owner keeps trying a full channel of another process before giving up.
SEND_TIMEOUT = 30.0
_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.25


async def send_waiting(
    channel_layer: Any,
    channel: str,
    message: dict[str, Any],
    timeout: float = SEND_TIMEOUT,  # noqa: ASYNC109 (a deadline over several tries)
) -> None:
    """``channel_layer.send()``, waiting while ``channel`` is full; raises on failure."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        try:
            await channel_layer.send(channel, message)
            return
        except ChannelFull:
            if time.monotonic() + pause > deadline:
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
