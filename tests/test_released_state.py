"""Per-object state nothing needs any more is released (SPEC §11), with Redis.

Before: each object id a process ever saw left an auto-response cache entry in the
process and a fencing-token key (``f:K``) in Redis for ever (1.3-3 KiB of process
memory per id over 9,000 ids, measured by the issue). Now the cache entry goes with
the last local socket of the object once it is not live here, and ``f:K`` expires a
short while after the acquisition that set it. (Counting entries, not timing: the
memory per id is measured by ``bench/released_state_bench.py``.)
"""

from __future__ import annotations

from tests.app.cluster_consumers import Census
from tests.cluster_harness import LEASE_TIME, WAIT, Cluster, oid
from tests.waiting import wait_until

OBJECTS = 30


async def _memory(c: Cluster, index: int) -> dict[str, int]:
    monitor = await c.monitor(c.servers[index])
    return (await monitor.ask({"op": "memory"}, "memory"))["memory"]


async def _settled(c: Cluster) -> bool:
    for index in range(len(c.servers)):
        memory = await _memory(c, index)
        if memory["auto_cache"] or memory["gateways"] or memory["owned"] or memory["live"]:
            return False
    return True


async def test_hibernated_objects_leave_nothing_in_the_processes_or_in_redis(
    cluster,
) -> None:
    c = cluster(2, idle_timeout="0.3")
    rooms = [oid() for _ in range(OBJECTS)]
    for i, room in enumerate(rooms):
        # Owned by the process of the first socket; a second socket on the other one.
        first = await c.census(c.servers[i % 2], room)
        second = await c.census(c.servers[(i + 1) % 2], room)
        await first.ask({"op": "auto", "request": "ping", "response": "pong"}, "auto")
        if i == 0:  # while sockets are open, both processes keep the object's pair
            assert (await _memory(c, 0))["auto_cache"] == 1
            assert (await _memory(c, 1))["auto_cache"] == 1
        await second.close()
        await first.close()

    await wait_until(
        lambda: _settled(c), message="every process to release its objects", timeout=WAIT
    )

    # In Redis: no lease, no socket; the settings stay (they are the object's state),
    # and each fencing-token key expires on its own.
    prefix = f"{c.prefix}:durable:"
    for room in rooms:
        key = Census.object_key(room)
        assert not await c.redis.exists(f"{prefix}l:{key}", f"{prefix}s:{key}")
        assert await c.redis.hget(f"{prefix}c:{key}", "auto")
        ttl = await c.redis.pttl(f"{prefix}f:{key}")
        assert ttl == -2 or 0 < ttl <= max(60, 10 * LEASE_TIME) * 1000, ttl
