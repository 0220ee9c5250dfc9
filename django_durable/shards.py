"""Process-local channel names that channels_redis delivers with several hosts.

channels_redis 4.3 picks the host of ``send()`` to a process-local channel
(``prefix.client!suffix``) by hashing the *whole* name, but its receive loop reads the
host of the part before ``!`` (``group_send`` hashes that part too). With one host
both are 0; with several, a message to such a channel lands on the wrong server about
half of the time and is never read: that is why connections to a second process hung
and were dropped. Until channels_redis hashes the same thing on both sides, this
module draws names for which both hashes agree (about ``len(hosts)`` draws each).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

#: Draws before giving up (with n hosts, a draw fits with probability about 1/n).
MAX_DRAWS = 1000


async def new_deliverable_channel(channel_layer: Any, prefix: str) -> str:
    """``channel_layer.new_channel(prefix)``, drawn until ``send()`` and ``receive()``
    of channels_redis agree on its host."""
    name: str = await channel_layer.new_channel(prefix)
    hash_of = getattr(channel_layer, "consistent_hash", None)
    local_part = getattr(channel_layer, "non_local_name", None)
    if hash_of is None or local_part is None or getattr(channel_layer, "ring_size", 1) <= 1:
        return name
    for _ in range(MAX_DRAWS):
        if hash_of(name) == hash_of(local_part(name)):
            return name
        name = await channel_layer.new_channel(prefix)
    logger.error("no channel name of %s found whose host both sides agree on", prefix)
    return name
