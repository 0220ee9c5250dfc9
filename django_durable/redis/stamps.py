"""Auto-response timestamps, seen by the owner whichever process answered the ping.

A gateway answers the auto-response itself and only notes the time
(``RedisSessionLayer.touch_auto_response``). About twice a second this process writes
what it noted in one Redis pipeline, which also says who owns each object, and tells
each owner in one ``durable.stamps`` message, so a live owner's
``get_websocket_auto_response_timestamp()`` is at most about a second behind, with no
Redis write per ping and no object woken (a hibernated object has no owner: it reads
the timestamps from Redis when it wakes).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from ..exceptions import SessionLayerUnavailable
from .messages import StampsMessage

#: The cluster's ``RedisTransport`` (not imported: this module stays out of its cycle).
RedisTransport = Any

logger = logging.getLogger(__name__)

#: Seconds between two writes of the noted timestamps.
STAMP_INTERVAL = 0.5


async def flush_stamps_forever(transport: RedisTransport) -> None:
    """Write and hand on noted timestamps about twice a second."""
    while True:
        await asyncio.sleep(STAMP_INTERVAL)
        try:
            await flush_stamps(transport)
        except SessionLayerUnavailable as exc:
            logger.warning("auto-response timestamps kept for later: %s", exc)
        except Exception:
            logger.exception("writing auto-response timestamps failed")


async def flush_stamps(transport: RedisTransport) -> None:
    """Write the noted timestamps; tell each owner its objects'."""
    written = await transport.layer.flush_stamps()
    by_owner: dict[str, dict[str, list[list[Any]]]] = defaultdict(dict)
    for key, (owner, stamps) in written.items():
        if owner is None:
            continue
        if owner == transport.channel:
            apply_stamps(transport, key, stamps.items())
        else:
            by_owner[owner][key] = [[sid, when] for sid, when in stamps.items()]
    for owner, stamps_by_key in by_owner.items():
        # Not waited for: if it is lost, Redis has them, and the owner reads them at its
        # next wake.
        transport.couriers.post(
            owner, StampsMessage(type="durable.stamps", stamps=stamps_by_key), wait=False
        )


def apply_stamps(transport: RedisTransport, key: str, stamps: Any) -> None:
    """Update a live object's records (never waking one)."""
    live = transport.runtime.dispatcher.live.get(key)
    if live is None or live.lost:
        # Taken, not yet woken: the session read with the lease lacks these.
        transport.layer.forget_preloaded(key)
        return
    sockets = live.session.sockets
    for sid, when in stamps:
        record = sockets.get(sid)
        if record is not None and (record.auto_response_at or 0.0) < when:
            record.auto_response_at = when


async def on_stamps_message(transport: RedisTransport, message: dict[str, Any]) -> None:
    """Apply a ``durable.stamps`` message to live objects here."""
    for key, pairs in message["stamps"].items():
        apply_stamps(transport, key, pairs)
