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

from typing import Any

from tests.app.cluster_consumers import Census
from tests.cluster_harness import Client, Cluster, oid
from tests.redis_server import PrivateRedis, monitored

#: Events counted, after the warm-up.
EVENTS = 300


async def _owned_by_the_first(
    cluster: Any, redis_server: PrivateRedis, query: str = ""
) -> tuple[Cluster, str, Client, Client]:
    """Two processes on ``redis_server`` and an object owned by the first, with a Census
    socket on each (the owner's with ``query``): ``(cluster, room, near, far)``. A long
    lease: the maintenance (every third of it) stays out of the counts."""
    c = cluster(2, redis_url=redis_server.url(), lease_time="60")
    s0, s1 = c.servers
    room = oid()
    near = await c.census(s0, room, query)  # s0 owns the object
    far = await c.census(s1, room)
    assert (await far.ask({"op": "where"}, "where"))["where"]["pid"] == s0.pid
    return c, room, near, far


def _watched(c: Cluster, room: str) -> tuple[str, ...]:
    """What the counts watch: the object's keys, the inboxes, the channel layer's keys."""
    return (Census.object_key(room), f"{c.prefix}:durable:q:", f"{c.prefix}:asgi")


async def _relay(sender: Client, observer: Client, text: str) -> None:
    """One event from ``sender``, handled: the observer got what the handler relayed."""
    mark = len(observer.messages)
    await sender.send({"op": "relay", "text": text, "tag": "observers"})
    await observer.wait_for(lambda m: m == text, mark)


async def test_a_forwarded_event_costs_at_most_4_redis_commands_in_the_steady_state(
    cluster,
    private_redis_server: PrivateRedis,
) -> None:
    c, room, observer, sender = await _owned_by_the_first(
        cluster, private_redis_server, "?observe=1"
    )
    s0 = c.servers[0]
    for n in range(20):  # warm-up: the owner found and remembered, the copies told
        await _relay(sender, observer, f"warm-{n}")

    async with monitored(private_redis_server, _watched(c, room)) as counts:
        for n in range(EVENTS):
            await _relay(sender, observer, f"e-{n}")
        # The acknowledgement of the last event rides on this reply: counted with it.
        await sender.ask({"op": "where"}, "where")
    per_event = sum(counts.values()) / EVENTS
    print(f"Redis commands per forwarded event: {per_event:.2f} {dict(counts)}")
    assert per_event <= 4, dict(counts)
    # Every event still reached the object once, in order (the ledger is unchanged by
    # relays: it counts numbered messages), and the object never moved.
    assert (await sender.ask({"op": "where"}, "where"))["where"]["pid"] == s0.pid
    assert observer.texts()[-EVENTS:] == [f"e-{n}" for n in range(EVENTS)]


async def test_a_reply_to_a_socket_of_another_process_goes_with_the_owners_write(
    cluster,
    private_redis_server: PrivateRedis,
) -> None:
    """An echo from the non-owner process: the event's push and pop, one script that
    stores the handler's writes and pushes the reply (with the acknowledgements waiting
    for that process), and that process's pop. It was 5: the reply's push was a script
    of its own, waited for before the write (redis/pending_frames.py)."""
    c, room, _, far = await _owned_by_the_first(cluster, private_redis_server)

    async def echo(n: int) -> None:
        mark = len(far.messages)
        await far.send({"op": "echo", "value": n})
        await far.wait_json(lambda m: m.get("echo") == n, mark)

    for n in range(20):  # warm-up, as above
        await echo(n)
    async with monitored(private_redis_server, _watched(c, room)) as counts:
        for n in range(20, 20 + EVENTS):
            await echo(n)
    per_event = sum(counts.values()) / EVENTS
    print(f"Redis commands per non-owner echo: {per_event:.2f} {dict(counts)}")
    assert per_event <= 4, dict(counts)
    assert counts["EVALSHA"] <= 2 * EVENTS, dict(counts)
    echoes = [m["echo"] for m in far.json_messages() if "echo" in m]
    assert echoes == list(range(20 + EVENTS))


async def test_the_inbox_of_a_dead_process_expires(
    cluster,
    private_redis_server: PrivateRedis,
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
