"""What a connect costs in Redis, counted (not timed), end to end.

Two real daphne processes on a private ``redis-server`` with ``HIBERNATE_EAGERLY``,
watched with ``MONITOR`` (see ``tests/test_cluster_forwarding.py``). Every connect
wakes its object, runs ``connect()``, stores the accepted socket and hibernates it
again; the socket's process joins the object's tag groups. Counted: the commands
naming the objects' keys, the tag groups' keys, a process's inbox or heartbeat (what a
wake asks about the processes holding the object's other sockets).

Before (``docs/benchmarks.md``, "Redis connect path"), a connect to a new object cost
11 commands in 9 round trips: the auto-response pair (``HGET``), the lease script, the
session (three ``HGETALL``), the fenced write, the release, and ``ZADD`` + ``EXPIRE``
for each of its two groups. Now the lease script reads the session, the fenced write
releases the lease when the object hibernates right after it, the pair comes with the
session, and both groups are joined in one pipeline: 6 commands in 3 round trips. A
connect that wakes an object whose other sockets are held by the other process cost
9.6 (lease, three ``HGETALL``, write, release, a heartbeat script asking whether that
process is alive, and at each hibernation a ``durable.released`` message pushed into
and popped from that process's inbox); now 3. (Both counted by these tests, run on the
code before, at ``39a6049``.)
"""

from __future__ import annotations

from tests.app.consumers import Room
from tests.cluster_harness import WAIT, oid
from tests.redis_server import PrivateRedis, monitored
from tests.waiting import wait_until

#: Connects counted.
CONNECTS = 30


def _group_keys(prefix: str, room: str) -> list[str]:
    groups = [Room.tag_group(room, None), Room.tag_group(room, "all")]
    return [f"{prefix}:asgi:group:{group}" for group in groups]


def _names(prefix: str, rooms: list[str]) -> tuple[str, ...]:
    # EXISTS is the test's own polling (the servers send none): not counted below.
    return (
        *(Room.object_key(room) for room in rooms),
        f"{prefix}:asgi:group:",
        f"{prefix}:durable:q:",
        f"{prefix}:durable:p:",
    )


def _per_connect(counts: dict[str, int]) -> float:
    return sum(n for command, n in counts.items() if command != "EXISTS") / CONNECTS


async def test_a_connect_to_a_new_object_costs_at_most_6_redis_commands(
    cluster, private_redis_server: PrivateRedis
) -> None:
    # A long lease: the maintenance (every third of it) stays out of the count.
    c = cluster(2, redis_url=private_redis_server.url(), lease_time="60", hibernate_eagerly="1")
    for server in c.servers:  # warm-up: each process serving, its inbox read
        await c.client(server, f"/ws/room/{oid()}/")
    rooms = [oid() for _ in range(CONNECTS)]
    leases = [c.lease_key(Room, room) for room in rooms]
    groups = [key for room in rooms for key in _group_keys(c.prefix, room)]

    async def settled() -> bool:
        # Every object hibernated (its lease given up) and every group joined.
        return await c.redis.exists(*leases) == 0 and await c.redis.exists(*groups) == len(groups)

    async with monitored(private_redis_server, _names(c.prefix, rooms)) as counts:
        for i, room in enumerate(rooms):
            await c.client(c.servers[i % 2], f"/ws/room/{room}/")
        await wait_until(settled, message="objects hibernated, groups joined", timeout=WAIT)
    per_connect = _per_connect(counts)
    print(f"Redis commands per connect to a new object: {per_connect:.2f} {dict(counts)}")
    assert per_connect <= 6, dict(counts)
    for client in c.clients:
        assert client.closed_by is None


async def test_a_connect_that_wakes_an_object_with_sockets_costs_3_redis_commands(
    cluster, private_redis_server: PrivateRedis
) -> None:
    c = cluster(2, redis_url=private_redis_server.url(), lease_time="60", hibernate_eagerly="1")
    room = oid()
    for server in c.servers:  # warm-up: each process holds a socket (its groups joined)
        await c.client(server, f"/ws/room/{room}/")
        await c.wait_unowned(Room, room)

    async def both_joined() -> bool:
        # A gateway joins its groups once its socket is accepted, so the client can be
        # answered first: wait for both processes' joins, or they would be counted.
        return all([await c.redis.zcard(key) == 2 for key in _group_keys(c.prefix, room)])

    await wait_until(both_joined, message="both processes in the room's groups", timeout=WAIT)
    async with monitored(private_redis_server, _names(c.prefix, [room])) as counts:
        for i in range(CONNECTS):
            await c.client(c.servers[i % 2], f"/ws/room/{room}/")
            await c.wait_unowned(Room, room)  # hibernated again: the next connect wakes it
    per_connect = _per_connect(counts)
    print(f"Redis commands per connect waking an object: {per_connect:.2f} {dict(counts)}")
    # The lease script with the session, the fenced write, the release (an object with
    # this many sockets does not release with its last write: live.py), and a share of
    # a fourth script asking whether the other process is alive (once per third of a
    # lease, 20 s here). No message to the other process: it sent the object none.
    assert set(counts) <= {"EVALSHA", "EXISTS"}, dict(counts)
    assert counts["EVALSHA"] <= 3 * CONNECTS + 3, dict(counts)
    sockets = await c.redis.hlen(f"{c.prefix}:durable:s:{Room.object_key(room)}")
    assert sockets == CONNECTS + 2
