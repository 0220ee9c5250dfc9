"""What a forwarded event costs in Redis, counted (not timed), end to end.

Two real daphne processes on a private ``redis-server``, watched with ``MONITOR``. A
socket on the process that does not own the object sends events that the owner handles
without answering that process (it relays them to a socket on its own process, which
is how the test knows each was handled before sending the next). Each such event is
forwarded, handled, stored and acknowledged; in the steady state (the owner known, the
copies of the socket's record told) it must cost at most 4 Redis commands: the push
into the owner's inbox, the owner's pop, the owner's fenced write, and a share of the
acknowledgements' push and pop. channels_redis spent 8 commands on each of the event
and its acknowledgement, plus a lease script per event (18 in all).

Only the commands about this traffic are counted: those naming the object's keys, a
process's inbox or the channel layer's keys (through which processes sent each other
messages before they had inboxes, and still read their tag groups). What a process does
on its own clock about itself (its heartbeat, the live clock) is not a cost of the events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from redis import asyncio as aioredis

from tests.app.cluster_consumers import Census
from tests.redis_server import PrivateRedis
from tests.test_cluster import (  # noqa: F401 (fixtures)
    Client,
    cluster,
    oid,
    private_redis_server,
)

#: Events counted, after the warm-up.
EVENTS = 300


@contextlib.asynccontextmanager
async def monitored(server: PrivateRedis, names: tuple[str, ...]) -> AsyncIterator[Counter[str]]:
    """Count, by command, what clients send the server (not what scripts run inside it)
    about any of ``names``, while the block runs."""
    client = aioredis.Redis.from_url(server.url())
    counts: Counter[str] = Counter()
    started = asyncio.Event()

    async def listen(monitor: aioredis.client.Monitor) -> None:
        await client.ping()  # (seen by MONITOR once it listens: then it counts)
        async for info in monitor.listen():
            command = info["command"]
            if info.get("client_type") == "lua":
                continue
            if not started.is_set():
                started.set()
                continue
            if any(name in command for name in names):
                counts[command.split(" ", 1)[0].upper()] += 1

    try:
        async with client.monitor() as monitor:
            task = asyncio.create_task(listen(monitor))
            async with asyncio.timeout(15):
                await started.wait()
            try:
                yield counts
                # What follows the last event in the same stream (its write and its
                # acknowledgement) is part of it: counted until the servers are quiet.
                await _quiet(counts)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        await client.aclose()


async def _quiet(counts: Counter[str]) -> None:
    """Wait (bounded) until nothing more is counted for a while."""
    seen = -1
    for _ in range(100):
        total = sum(counts.values())
        if total == seen:
            return
        seen = total
        await asyncio.sleep(0.3)  # a look at a count, not a synchronisation


async def _relay(sender: Client, observer: Client, text: str) -> None:
    """One event from ``sender``, handled: the observer got what the handler relayed."""
    mark = len(observer.messages)
    await sender.send({"op": "relay", "text": text, "tag": "observers"})
    await observer.wait_for(lambda m: m == text, mark)


async def test_a_forwarded_event_costs_at_most_4_redis_commands_in_the_steady_state(
    cluster,  # noqa: F811
    private_redis_server: PrivateRedis,  # noqa: F811
) -> None:
    # A long lease: the maintenance (every third of it) stays out of the count.
    c = cluster(2, redis_url=private_redis_server.url(), lease_time="60")
    s0, s1 = c.servers
    room = oid()
    observer = await c.census(s0, room, "?observe=1")  # s0 owns the object
    sender = await c.census(s1, room)
    assert (await sender.ask({"op": "where"}, "where"))["where"]["pid"] == s0.pid
    for n in range(20):  # warm-up: the owner found and remembered, the copies told
        await _relay(sender, observer, f"warm-{n}")

    names = (Census.object_key(room), f"{c.prefix}:durable:q:", f"{c.prefix}:asgi")
    async with monitored(private_redis_server, names) as counts:
        for n in range(EVENTS):
            await _relay(sender, observer, f"e-{n}")
    per_event = sum(counts.values()) / EVENTS
    print(f"Redis commands per forwarded event: {per_event:.2f} {dict(counts)}")
    assert per_event <= 4, dict(counts)
    # Every event still reached the object once, in order (the ledger is unchanged by
    # relays: it counts numbered messages), and the object never moved.
    assert (await sender.ask({"op": "where"}, "where"))["where"]["pid"] == s0.pid
    assert observer.texts()[-EVENTS:] == [f"e-{n}" for n in range(EVENTS)]


async def test_the_inbox_of_a_dead_process_expires(
    cluster,  # noqa: F811
    private_redis_server: PrivateRedis,  # noqa: F811
) -> None:
    c = cluster(2, redis_url=private_redis_server.url(), lease_time="60")
    s0, s1 = c.servers
    room = oid()
    owner = await c.census(s0, room)
    await c.census(s1, room)
    s1.kill()
    # A broadcast to every socket puts a frame in the dead process's inbox: nobody reads it.
    assert (await owner.ask({"op": "broadcast", "text": "anyone?"}, "sent"))["sent"] == 2
    inboxes = [k async for k in c.redis.scan_iter(match=f"{c.prefix}:durable:q:*")]
    assert len(inboxes) == 1, inboxes
    # Redis drops it a lease plus RIDE_THROUGH (600 s) after the last push.
    ttl_ms = await c.redis.pttl(inboxes[0])
    assert 0 < ttl_ms <= (60 + 600) * 1000
