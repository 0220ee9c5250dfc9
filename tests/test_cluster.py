"""Across processes, end to end: daphne servers sharing one Redis, clients on all of them.

Every test starts real ``python -m daphne`` processes with the Redis session layer and
``channels_redis`` (a fresh key prefix per test, so tests sharing the Redis never see
each other's objects) and spreads WebSocket clients across them. The objects are
``tests.app.cluster_consumers.Census`` (a ``Ledger`` that also reports its instance,
its process and its sockets) and ``Room``; ``ClusterMonitor`` answers questions about a
server process (live objects, stubs, ``broadcast_to``) without a durable object or the
channel layer, so it answers while Redis is down.

What is proved is read from where it is stored: a Census socket's attachment counts its
numbered messages and is written in the same fenced Redis script as the fact that the
message was handled, so after a failover it says whether any was lost, repeated or
reordered; Census instances log their starts and ticks to a Redis list, in which two
live instances at once would interleave.

Waits are for events (a reply, a key in Redis), each bounded; nothing asserts on time.
The recovery time after ``kill -9`` is measured and printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.app.cluster_consumers import Census, census_key
from tests.cluster_harness import LEASE_TIME, WAIT, Client, gather, oid, parse_json, run_python
from tests.redis_server import PrivateRedis
from tests.waiting import wait_until

# One object, many processes ------------------------------------------------------------


async def test_every_process_sees_every_socket_and_gets_every_broadcast(cluster) -> None:
    c = cluster(3)
    room = oid()
    colours = {}
    clients = {}
    for server in c.servers:
        for colour in ("red", "blue"):
            client = await c.census(server, room, f"?tags={colour}")
            ident = (await client.ask({"op": "whoami"}, "id"))["id"]
            clients[ident] = client
            colours[ident] = colour
    by_colour = {
        col: sorted(i for i, c_ in colours.items() if c_ == col) for col in ("red", "blue")
    }

    # One instance answers every socket, on the process of the first connection.
    wheres = await gather(*(cl.ask({"op": "where"}, "where") for cl in clients.values()))
    assert {(w["where"]["pid"], w["where"]["instance"]) for w in wheres} == {
        (c.servers[0].pid, wheres[0]["where"]["instance"])
    }

    # get_websockets(tag), asked from a socket on the last process, lists all of them.
    asker = next(cl for i, cl in clients.items() if cl.server is c.servers[2])
    for colour, ids in by_colour.items():
        listed = (await asker.ask({"op": "sockets", "tag": colour}, "sockets"))["sockets"]
        assert [entry[0] for entry in listed] == ids
        assert all(entry[1] == ["all", colour] for entry in listed)
    everything = (await asker.ask({"op": "sockets"}, "sockets"))["sockets"]
    assert sorted(entry[0] for entry in everything) == sorted(colours)

    # Broadcasts from the object reach every socket of the tag, wherever it is held.
    sender = next(cl for i, cl in clients.items() if cl.server is c.servers[1])
    assert (await sender.ask({"op": "broadcast", "tag": "blue", "text": "b1"}, "sent"))["sent"] == 3
    assert (await sender.ask({"op": "broadcast", "text": "end"}, "sent"))["sent"] == 6
    for ident, client in clients.items():
        await client.wait_for(lambda m: m == "end")
        expected = ["b1", "end"] if colours[ident] == "blue" else ["end"]
        assert client.texts() == expected, (ident, colours[ident])


async def test_at_most_one_live_instance_and_hibernation_moves_it(cluster) -> None:
    """Ticks from every process, hibernations under load: one instance at a time."""
    c = cluster(3)
    room = oid()
    clients = [await c.census(server, room) for server in c.servers]
    monitors = [await c.monitor(server) for server in c.servers]
    ticks_per_client = 20
    sent = 0

    async def hibernate_owner() -> None:
        where = (await clients[0].ask({"op": "where"}, "where"))["where"]
        owner = c.servers.index(c.server_of(where["pid"]))
        await monitors[owner].ask({"op": "hibernate", "id": room}, "live")
        await c.wait_unowned(Census, room)

    await hibernate_owner()
    for rnd in range(3):
        # Hibernated, the object is taken by the process of the next event.
        where = (await clients[rnd].ask({"op": "where"}, "where"))["where"]
        assert where["pid"] == c.servers[rnd].pid
        assert where["events"] == 1  # a fresh instance
        marks = [len(cl.messages) for cl in clients]
        for n in range(ticks_per_client):
            for cl in clients:
                await cl.send({"op": "tick", "n": sent + n})
            if n == ticks_per_client // 2:
                # Hibernate the owner while every process keeps sending.
                await monitors[rnd].ask({"op": "hibernate", "id": room}, "live")
        last = sent + ticks_per_client - 1
        for cl, mark in zip(clients, marks, strict=True):
            await cl.wait_json(lambda m, last=last: m.get("tick") == last, mark)
        sent += ticks_per_client
        # All answer from the same instance now.
        wheres = await gather(*(cl.ask({"op": "where"}, "where") for cl in clients))
        assert len({(w["where"]["pid"], w["where"]["instance"]) for w in wheres}) == 1
        await hibernate_owner()

    log = [
        entry.decode().split() for entry in await c.redis.lrange(census_key(room, c.prefix), 0, -1)
    ]
    current = None
    started: list[tuple[str, int]] = []
    ticks: Counter[str] = Counter()
    for entry in log:
        if entry[0] == "start":
            assert entry[1] not in dict(started), f"instance {entry[1]} started twice"
            current = entry[1]
            started.append((entry[1], int(entry[2])))
        else:
            # Every tick is from the instance that started last: none from an older one.
            assert entry[1] == current, f"tick from {entry[1]} while {current} was live: {log}"
            ticks[entry[1]] += 1
    assert sum(ticks.values()) == 3 * 3 * ticks_per_client
    pids = [pid for _, pid in started]
    assert {s.pid for s in c.servers} <= set(pids)


async def test_hibernated_object_wakes_on_another_process_with_tags_and_attachments(
    cluster,
) -> None:
    c = cluster(3, idle_timeout="0.5")
    room = oid()
    clients = [await c.census(s, room, f"?tags=p{i},x{i}") for i, s in enumerate(c.servers)]
    expected = {}
    for i, client in enumerate(clients):
        ident = (await client.ask({"op": "whoami"}, "id"))["id"]
        note = {"i": i, "text": "žluťoučký", "nested": [1, {"k": None}]}
        await client.ask({"op": "attach", "value": note}, "attached")
        expected[ident] = (["all", f"p{i}", f"x{i}"], note)
    previous = (await clients[0].ask({"op": "where"}, "where"))["where"]["instance"]

    for target in (1, 2, 0):
        await c.wait_unowned(Census, room)  # hibernated by idleness
        listed = (await clients[target].ask({"op": "sockets"}, "sockets"))["sockets"]
        where = (await clients[target].ask({"op": "where"}, "where"))["where"]
        assert where["pid"] == c.servers[target].pid
        assert where["instance"] != previous
        previous = where["instance"]
        assert {sid: (tags, att["note"]) for sid, tags, att in listed} == expected


# Failover ---------------------------------------------------------------------------------


async def test_kill_9_of_the_owner_under_load_loses_and_repeats_nothing(cluster) -> None:
    """Incoming and outgoing: every numbered message is handled once, in order per socket,
    and every frame its handler sends (two to the sender, two broadcast to the observers)
    reaches each client once, in order, although the owner is killed in the middle of a
    handler (it sent half its frames) and the new owner runs that handler again."""
    c = cluster(3)
    s0, s1, s2 = c.servers
    room = oid()
    doomed = [await c.census(s0, room), await c.census(s0, room)]  # first: s0 owns
    # One observer per surviving process: whichever takes the object over, one of them is
    # a socket of its own and the other one is reached through the other's channel.
    observers = [await c.census(s2, room, "?observe=1"), await c.census(s1, room, "?observe=1")]
    observer = observers[0]
    senders = [await c.census(s1, room), await c.census(s2, room)]
    sender_ids = [(await s.ask({"op": "whoami"}, "id"))["id"] for s in senders]
    doomed_ids = {(await d.ask({"op": "whoami"}, "id"))["id"] for d in doomed}
    assert (await senders[0].ask({"op": "where"}, "where"))["where"]["pid"] == s0.pid

    total, kill_after = 300, 100
    marks = [len(s.messages) for s in senders]
    observer_marks = [len(o.messages) for o in observers]
    killed_at = 0.0
    for n in range(total):
        for i, sender in enumerate(senders):
            command: dict[str, Any] = {"op": "frames", "n": n}
            if n == kill_after and i == 0:
                command["hold_in"] = s0.pid  # s0 stops inside this handler
            await sender.send(command)
        if n == kill_after:
            # Half the held handler's frames are out (to the sender and, through the
            # process channels, to both observers): kill its process now.
            await senders[0].wait_json(lambda m: m.get("n") == kill_after and m.get("part") == 1)
            for o in observers:
                await o.wait_json(
                    lambda m: (
                        m.get("from") == sender_ids[0] and (m["n"], m["part"]) == (kill_after, 2)
                    )
                )
            s0.kill()
            killed_at = time.monotonic()
        await asyncio.sleep(0.01)  # the load's pace, not a synchronisation

    recoveries = []
    for sender, mark in zip(senders, marks, strict=True):
        await sender.wait_json(lambda m: (m.get("n"), m.get("part")) == (total - 1, 3), mark, 30)
        replies = [
            (json.loads(m), t)
            for m, t in zip(sender.messages[mark:], sender.arrived[mark:], strict=True)
            if "part" in (parse_json(m) or {})
        ]
        # Outgoing: each frame once, in order (the re-run's first frame was dropped).
        frames = [(r["n"], r["part"]) for r, _ in replies]
        assert frames == [(n, p) for n in range(total) for p in (1, 3)], _first_difference(
            frames, [(n, p) for n in range(total) for p in (1, 3)]
        )
        recoveries.append(
            next(t for r, t in replies if t > killed_at and r["pid"] != s0.pid) - killed_at
        )
        # Incoming: each message handled once, in order.
        ledger = (await sender.ask({"op": "ledger"}, "ledger"))["ledger"]
        assert ledger["count"] == total
        assert ledger["bad"] == 0
        assert ledger["last"] == total - 1
    expected = [(n, p) for n in range(total) for p in (2, 4)]
    for o, mark in zip(observers, observer_marks, strict=True):
        for ident in sender_ids:
            await o.wait_json(
                lambda m, i=ident: m.get("from") == i and (m["n"], m["part"]) == (total - 1, 4),
                mark,
                30,
            )
            got = [
                (m["n"], m["part"])
                for m in map(parse_json, o.messages[mark:])
                if m is not None and m.get("from") == ident
            ]
            assert got == expected, (o.server.name, ident, _first_difference(got, expected))

    # The dead process's sockets got their final event: 1006, not clean; no other did.
    # (Each observer is waited for: the one on the new owner's process gets the
    # broadcast first, the other one with the new owner's write of the close.)
    for ident, o in itertools.product(doomed_ids, observers):
        event = await o.wait_json(lambda m, i=ident: m.get("event") == "close" and m["id"] == i)
        assert (event["code"], event["was_clean"]) == (1006, False)
    for o in observers:
        closes = [
            (m["id"], t)
            for m, t in zip(map(parse_json, o.messages), o.arrived, strict=True)
            if m is not None and m.get("event") == "close"
        ]
        assert sorted(sid for sid, _ in closes) == sorted(doomed_ids)
    new_owner = (await observer.ask({"op": "where"}, "where"))["where"]["pid"]
    assert new_owner in (s1.pid, s2.pid)
    print(
        f"recovery after kill -9 of the owner (lease {LEASE_TIME} s): "
        + ", ".join(f"{r:.2f} s" for r in recoveries)
        + "; 1006 closes after "
        + ", ".join(f"{t - killed_at:.2f} s" for _, t in closes)
    )


def _first_difference(got: list[Any], expected: list[Any]) -> str:
    """Where two sequences part, for an assertion message short enough to read."""
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    return (
        f"{len(got)} items, {len(expected)} expected; first difference at {at}: "
        f"got {got[at : at + 4]}, expected {expected[at : at + 4]}"
    )


# Redis going away --------------------------------------------------------------------------


async def test_redis_restart_without_its_data_re_registers_sockets(
    cluster, private_redis_server: PrivateRedis
) -> None:
    c = cluster(2, redis_url=private_redis_server.url())
    s0, s1 = c.servers
    room = oid()
    a = await c.census(s0, room, "?tags=a")
    b = await c.census(s1, room, "?tags=b")
    ids = {(await cl.ask({"op": "whoami"}, "id"))["id"]: cl for cl in (a, b)}
    tags = {sid: ["all", "a" if cl is a else "b"] for sid, cl in ids.items()}
    monitor = await c.monitor(s1)

    private_redis_server.restart()  # empty: no persistence
    # (Not dbsize() == 0: a process's clock tick or heartbeat may land at once, and did
    # under load. The lease is written only when an event takes the object.)
    assert not await c.redis.exists(c.lease_key(Census, room))

    # Messages sent at once are answered (whichever process takes the object first).
    for reply in await gather(*(cl.ask({"op": "echo", "value": "x"}, "echo") for cl in (a, b))):
        assert reply["echo"] == "x"

    # Each process puts its sockets back; the object sees all of them again.
    async def listed() -> dict[str, list[str]]:
        reply = await b.ask({"op": "sockets"}, "sockets")
        return {sid: t for sid, t, _ in reply["sockets"]}

    await wait_until(
        listed,
        accept=lambda found: found == tags,
        message="every socket listed again with its tags",
        timeout=WAIT,
    )
    # One instance serves both processes' sockets (the old owner stopped).
    wheres = await gather(*(cl.ask({"op": "where"}, "where") for cl in (a, b)))
    assert len({(w["where"]["pid"], w["where"]["instance"]) for w in wheres}) == 1
    # Sends reach both processes again: from the object, and through the groups.
    assert (await a.ask({"op": "broadcast", "text": "from-object"}, "sent"))["sent"] == 2
    assert (await monitor.ask({"op": "broadcast_to", "id": room, "text": "outside"}, "ok"))["ok"]
    for cl in (a, b):
        await cl.wait_for(lambda m: m == "outside")
        assert cl.texts() == ["from-object", "outside"]


#: How long the tests keep Redis stopped or frozen: longer than two leases, so that
#: every lease and heartbeat would have expired without the live clock.
OUTAGE = 2.5 * LEASE_TIME
LOST_DATA = "Redis lost this process's data"


def replies_by_n(client: Client, since: int) -> Counter[int]:
    """How many replies each numbered message got: one per handler run."""
    return Counter(m["n"] for m in map(parse_json, client.messages[since:]) if m and "n" in m)


async def test_redis_outage_gives_clear_errors_then_recovers_running_no_handler_twice(
    cluster, persistent_redis_server: PrivateRedis
) -> None:
    """Redis stopped for two leases and back with its data: nothing lost, and no handler
    run twice (each message has one reply), though the owner's session writes failed.
    The owner holds its events meanwhile and keeps the object; nobody is taken for dead
    and no process thinks Redis lost its data."""
    redis_server = persistent_redis_server
    c = cluster(2, redis_url=redis_server.url())
    s0, s1 = c.servers
    room = oid()
    a = await c.census(s0, room)  # s0 owns
    b = await c.census(s1, room, "?observe=1")
    m0, m1 = await c.monitor(s0), await c.monitor(s1)
    half = 30
    marks = [len(a.messages), len(b.messages)]
    for n in range(half):
        await a.send({"op": "n", "n": n})
        await b.send({"op": "n", "n": n})
    for cl in (a, b):
        # Handled and stored: the ledger is read after the last message was flushed.
        assert (await cl.ask({"op": "ledger"}, "ledger"))["ledger"]["count"] == half

    redis_server.stop()
    call = await m1.ask({"op": "call", "name": "pid", "id": room}, "error")
    assert call["error"] == "SessionLayerUnavailable", call
    assert "ConnectionError" in call["mro"]
    assert "Redis" in call["message"] and "unreachable" in call["message"]
    outside = await m1.ask({"op": "broadcast_to", "id": room, "text": "x"}, "error")
    assert outside["error"] == "SessionLayerUnavailable", outside
    assert "unreachable" in outside["message"]

    # Messages sent while Redis is down wait: in their gateways' process, or (the
    # owner's own sockets) in the object, which runs one and holds the rest.
    for n in range(half, 2 * half):
        await a.send({"op": "n", "n": n})
        await b.send({"op": "n", "n": n})
    await asyncio.sleep(OUTAGE)  # the outage
    kept = (await m0.ask({"op": "live", "id": room}, "live"))["live"]

    redis_server.start()
    for cl, mark in zip((a, b), marks, strict=True):
        await cl.wait_json(lambda m: m.get("n") == 2 * half - 1, mark, timeout=30)
        ledger = (await cl.ask({"op": "ledger"}, "ledger"))["ledger"]
        assert (ledger["count"], ledger["bad"], ledger["last"]) == (2 * half, 0, 2 * half - 1)
        assert replies_by_n(cl, mark) == dict.fromkeys(range(2 * half), 1)
    # The owner kept the object (it held its events; it did not give it up).
    assert kept
    pid = (await m1.ask({"op": "call", "name": "pid", "id": room}, "result"))["result"]
    assert pid == s0.pid
    # Nobody was taken for dead, and nobody thought Redis had lost its data.
    assert [m for m in b.json_messages() if m.get("event") == "close"] == []
    for server in c.servers:
        assert LOST_DATA not in server.output(), server.name


async def test_a_frozen_redis_is_not_taken_for_one_that_lost_its_data(
    cluster, private_redis_server: PrivateRedis
) -> None:
    """Redis frozen (SIGSTOP) for two leases while clients send: afterwards every
    message was handled once, the owner kept the object, and no process logged that
    Redis lost its data (which it had not)."""
    c = cluster(2, redis_url=private_redis_server.url())
    s0, s1 = c.servers
    room = oid()
    a = await c.census(s0, room)
    b = await c.census(s1, room, "?observe=1")
    marks = [len(a.messages), len(b.messages)]
    private_redis_server.freeze()
    try:
        for n in range(20):
            await a.send({"op": "n", "n": n})
            await b.send({"op": "n", "n": n})
        await asyncio.sleep(OUTAGE)  # the freeze
    finally:
        private_redis_server.thaw()
    for cl, mark in zip((a, b), marks, strict=True):
        await cl.wait_json(lambda m: m.get("n") == 19, mark, timeout=30)
        assert replies_by_n(cl, mark) == dict.fromkeys(range(20), 1)
    for server in c.servers:
        assert LOST_DATA not in server.output(), server.name
    where = (await b.ask({"op": "where"}, "where"))["where"]
    assert where["pid"] == s0.pid
    assert [m for m in b.json_messages() if m.get("event") == "close"] == []
    for server in c.servers:
        assert LOST_DATA not in server.output(), server.name


async def test_a_client_that_disconnects_while_redis_is_frozen_loses_nothing(
    cluster, private_redis_server: PrivateRedis
) -> None:
    """A client sends five messages and closes while Redis is frozen for longer than
    daphne's application_close_timeout (2 s here; 10 s by default), which cancels a
    connection's task that has not ended by then: every message and the close reach
    the object once Redis is back, and the socket's record is gone from Redis."""
    c = cluster(2, redis_url=private_redis_server.url(), args=("--application-close-timeout", "2"))
    s0, s1 = c.servers
    room = oid()
    observer = await c.census(s0, room, "?observe=1")  # s0 owns
    leaving = await c.census(s1, room)
    ident = (await leaving.ask({"op": "whoami"}, "id"))["id"]
    mark = len(observer.messages)
    private_redis_server.freeze()
    try:
        for n in range(2, 7):
            await leaving.send({"op": "broadcast", "text": f"m{n}", "tag": "observers"})
        await leaving.close()
        await asyncio.sleep(2 + OUTAGE)  # the freeze: past the application close timeout
    finally:
        private_redis_server.thaw()
    closed = await observer.wait_json(lambda m: m.get("event") == "close", mark, timeout=30)
    assert closed["id"] == ident
    assert observer.texts() == [f"m{n}" for n in range(2, 7)]
    sockets = await c.redis.hkeys(f"{c.prefix}:durable:s:{Census.object_key(room)}")
    assert ident.encode() not in sockets
    assert "took too long to shut down and was killed" not in s1.output()


async def test_events_held_past_the_bound_close_the_socket_with_1013_keeping_what_came_before(
    cluster, private_redis_server: PrivateRedis
) -> None:
    """While Redis is frozen a process holds what its clients send, up to MAX_HELD_BYTES
    (4 KiB here): the socket whose frame passes it is closed with 1013 (Try Again
    Later); every frame it had sent up to that one, and its close, still reach the
    object (what it sends after the server's Close is not for the object)."""
    c = cluster(2, redis_url=private_redis_server.url(), max_held_bytes="4096")
    s0, s1 = c.servers
    room = oid()
    observer = await c.census(s0, room, "?observe=1")
    flooder = await c.census(s1, room)
    ident = (await flooder.ask({"op": "whoami"}, "id"))["id"]
    mark = len(observer.messages)
    texts = [f"f{n}-" + "x" * 1000 for n in range(8)]
    private_redis_server.freeze()
    try:
        for text in texts:
            await flooder.send({"op": "broadcast", "text": text, "tag": "observers"})
        async with asyncio.timeout(WAIT):
            await flooder.ended.wait()
    finally:
        private_redis_server.thaw()
    assert flooder.closed_by is not None and flooder.closed_by.rcvd is not None
    assert flooder.closed_by.rcvd.code == 1013
    closed = await observer.wait_json(lambda m: m.get("event") == "close", mark, timeout=30)
    assert closed["id"] == ident
    got = observer.texts()
    assert 1 <= len(got) < len(texts)
    assert got == texts[: len(got)]


# Auto-response ------------------------------------------------------------------------------


async def test_auto_response_set_on_one_process_answers_on_another_without_waking(
    cluster,
) -> None:
    c = cluster(2, idle_timeout="0.5")
    s0, s1 = c.servers
    room = oid()
    a = await c.census(s0, room)
    b = await c.census(s1, room)
    monitor1 = await c.monitor(s1)
    assert (await a.ask({"op": "auto", "request": "ping", "response": "pong"}, "auto"))["auto"]
    before = (await a.ask({"op": "where"}, "where"))["where"]

    # The gateways of the other process learn the pair (it travels through the group).
    async def known_there() -> bool:
        return (await monitor1.ask({"op": "auto", "id": room}, "auto"))["auto"] == ["ping", "pong"]

    await wait_until(known_there, message="the pair to reach the other process", timeout=WAIT)
    await c.wait_unowned(Census, room)

    mark = len(b.messages)
    await b.send("ping")
    assert await b.wait_for(lambda m: True, mark) == "pong"
    # The first event after it is the first the new instance handles: "ping" never was.
    where = (await b.ask({"op": "where"}, "where"))["where"]
    assert where["instance"] != before["instance"]
    assert where["events"] == 1
    assert where["pid"] == s1.pid

    # Gateways write timestamps about twice a second: the owner sees it within a second.
    async def stamped() -> bool:
        return (await b.ask({"op": "timestamp"}, "timestamp"))["timestamp"] is not None

    await wait_until(stamped, message="the auto-response timestamp", timeout=WAIT)


# Reaching sockets from outside ----------------------------------------------------------

OUTSIDE_SCRIPT = """
import sys
import django
django.setup()
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django_durable import broadcast_event
from tests.app.consumers import Room

room = sys.argv[1]

async def main():
    layer = get_channel_layer()
    vip, everyone = Room.tag_group(room, "vip"), Room.tag_group(room, None)
    await layer.group_send(vip, broadcast_event(vip, "vip"))
    await Room.broadcast_to(room, "vip-too", tag="vip")
    await layer.group_send(everyone, broadcast_event(everyone, "all"))
    await Room.broadcast_to(room, b"bytes")
    await layer.group_send(everyone, broadcast_event(everyone, "end"))

async_to_sync(main)()
print("sent")
"""


async def test_code_outside_the_object_reaches_sockets_on_every_process(cluster) -> None:
    c = cluster(3)
    room = oid()
    vip_query = "?tags=" + quote(json.dumps(["all", "vip"]))
    vips, others = [], []
    for server in c.servers:
        vips.append(await c.client(server, f"/ws/room/{room}/{vip_query}"))
        others.append(await c.client(server, f"/ws/room/{room}/"))
    for client in vips + others:
        await client.ask({"op": "whoami"}, "id")  # its gateway is serving: groups joined

    assert "sent" in await run_python(OUTSIDE_SCRIPT, room, env=c.env)

    for client in vips + others:
        await client.wait_for(lambda m: m == "end")
    for client in vips:
        assert sorted(map(repr, client.messages[1:])) == sorted(
            map(repr, ["vip", "vip-too", "all", b"bytes", "end"])
        )
    for client in others:
        assert client.messages[1:] == ["all", b"bytes", "end"]


# The scope connect() sees --------------------------------------------------------------

SESSION_SCRIPT = """
import django
django.setup()
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore

user = get_user_model().objects.create_user("alice", password="not-secret")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


async def test_connect_sees_the_same_scope_whichever_process_took_the_connection(
    cluster, durable_sqlite: Path
) -> None:
    c = cluster(3)
    room = oid()
    await c.census(c.servers[0], room)  # the first process owns the object
    made = await run_python(SESSION_SCRIPT, env={"DURABLE_TEST_SQLITE": str(durable_sqlite)})
    session_key = made.split()[-1]

    for route, user in (("census", None), ("census-auth", "alice")):
        reports = []
        for server in c.servers:
            client = await c.client(
                server,
                f"/ws/{route}/{room}/?scope=1&q=%C3%A9+x",
                additional_headers={"X-Test": "durable", "Cookie": f"sessionid={session_key}"},
                subprotocols=["chat.v1", "chat.v2"],
            )
            reply = await client.wait_json(lambda m: "scope" in m)
            report = reply["scope"]
            assert reply["connect_pid"] == c.servers[0].pid
            # The real peer and the process the connection arrived on, not the owner's.
            host, port = client.ws.local_address[:2]
            assert report.pop("client") == repr((host, port))
            assert report.pop("server") == repr(("127.0.0.1", server.port))
            headers = report["headers"]
            assert ["host", f"127.0.0.1:{server.port}"] in headers
            report["headers"] = [h for h in headers if h[0] not in ("host", "sec-websocket-key")]
            reports.append(report)
        first = reports[0]
        assert all(report == first for report in reports[1:]), reports
        assert first["type"] == "websocket"
        assert first["path"] == f"/ws/{route}/{room}/"
        assert first["raw_path"] == repr(f"/ws/{route}/{room}/".encode())
        assert first["query_string"] == repr(b"scope=1&q=%C3%A9+x")
        assert first["url_route"] == repr({"args": (), "kwargs": {"room": room}})
        assert first["subprotocols"] == repr(["chat.v1", "chat.v2"])
        assert first["header_types"] == ["list/tuple/bytes/bytes"]
        assert ["x-test", "durable"] in first["headers"]
        assert ["cookie", f"sessionid={session_key}"] in first["headers"]
        if user is None:
            assert first["user"] is None
        else:
            assert first["user"] == {"authenticated": True, "username": user}
            assert first["session"] == session_key
