"""Crafted bytes written straight into Redis: one bad record never takes an object down.

Before: one corrupt socket record made every wake of its object fail (no replies, new
connections refused, a traceback every ~1.7 s) until it was removed by hand. Now the
record is set aside (moved to ``x:K``), logged once and counted
(``corrupt_records``); the object serves its other sockets and new connections, and the
socket whose record it was is closed with 1011 so its client can reconnect. The same
for a corrupt settings value (the auto-response pair, the event timeout).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.app.cluster_consumers import Census
from tests.cluster_harness import WAIT, Cluster, oid
from tests.waiting import wait_until

GARBAGE = b"\xc1 not msgpack"


def _key(c: Cluster, kind: str, room: str) -> str:
    return f"{c.prefix}:durable:{kind}:{Census.object_key(room)}"


def _log_count(c: Cluster, fragment: str) -> int:
    """Log records (daphne's handler's lines: the test settings print each twice)."""
    return sum(
        1
        for server in c.servers
        for line in server.output().splitlines()
        if " ERROR " in line and fragment in line
    )


async def _metric(c: Cluster, name: str) -> int:
    total = 0
    for server in c.servers:
        monitor = await c.monitor(server)
        total += (await monitor.ask({"op": "metrics"}, "metrics"))["metrics"][name]
    return total


async def _hibernate_everywhere(c: Cluster, room: str) -> None:
    for server in c.servers:
        monitor = await c.monitor(server)
        await monitor.ask({"op": "hibernate", "id": room}, "live")
    await c.wait_unowned(Census, room)


@pytest.mark.parametrize(
    "record",
    [GARBAGE, b"\x95\xc0\xc0\xc0\xc0\xc0", b"\xdd\xff\xff\xff\xff"],
    ids=["not-msgpack", "wrong-types", "huge-length"],
)
async def test_a_corrupt_socket_record_is_set_aside_and_the_object_keeps_serving(
    cluster,
    record: bytes,
) -> None:
    c = cluster(2)
    room = oid()
    victim = await c.census(c.servers[0], room)
    victim_id = (await victim.ask({"op": "whoami"}, "id"))["id"]
    other = await c.census(c.servers[1], room)
    await _hibernate_everywhere(c, room)
    await c.redis.hset(_key(c, "s", room), victim_id, record)

    # The other socket wakes the object and is served; new connections are accepted.
    assert (await other.ask({"op": "n", "n": 0}, "n"))["n"] == 0
    newcomer = await c.census(c.servers[0], room)
    listed = (await newcomer.ask({"op": "sockets"}, "sockets"))["sockets"]
    assert victim_id not in [entry[0] for entry in listed]
    assert len(listed) == 2

    # Set aside where an operator can look at it, not deleted.
    assert await c.redis.hget(_key(c, "x", room), victim_id) == record
    assert not await c.redis.hexists(_key(c, "s", room), victim_id)

    # The socket whose record it was is closed with 1011 when it next sends.
    await victim.send({"op": "whoami"})
    async with __import__("asyncio").timeout(WAIT):
        await victim.ended.wait()
    assert victim.closed_by is not None and victim.closed_by.rcvd is not None
    assert victim.closed_by.rcvd.code == 1011

    # Logged and counted once, however often the object wakes again.
    await _hibernate_everywhere(c, room)
    assert (await other.ask({"op": "n", "n": 1}, "n"))["n"] == 1
    assert _log_count(c, "set aside in Redis") == 1
    assert await _metric(c, "corrupt_records") == 1


async def test_corrupt_settings_are_set_aside_and_the_object_keeps_serving(
    cluster,
) -> None:
    c = cluster(2)
    room = oid()
    first = await c.census(c.servers[0], room)
    await _hibernate_everywhere(c, room)
    await c.redis.hset(_key(c, "c", room), mapping={"auto": GARBAGE, "timeout": b"soon"})

    second = await c.census(c.servers[1], room)  # a new connection: accepted
    assert (await first.ask({"op": "n", "n": 0}, "n"))["n"] == 0
    assert (await second.ask({"op": "n", "n": 0}, "n"))["n"] == 0
    # The object still takes new settings and they work.
    await first.ask({"op": "auto", "request": "ping", "response": "pong"}, "auto")
    await wait_until(
        lambda: _answers(second, "ping", "pong"),
        message="the new auto-response to answer",
        timeout=WAIT,
    )
    assert await c.redis.hget(_key(c, "x", room), "auto") == GARBAGE
    assert await c.redis.hget(_key(c, "x", room), "timeout") == b"soon"
    assert _log_count(c, "corrupt settings value set aside") == 2
    assert await _metric(c, "corrupt_records") == 2


async def _answers(client, request: str, response: str) -> bool:
    mark = len(client.messages)
    await client.send(request)
    try:
        await client.wait_for(lambda m: m == response, mark, timeout=1.0)
    except AssertionError:
        return False
    return True


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=512))
def test_fuzz_socket_records_and_pairs_decode_or_are_corrupt(data: bytes) -> None:
    """Whatever bytes a record holds: a record, or CorruptRecord (then set aside)."""
    from django_durable.session.redis import CorruptRecord, unpack_pair, unpack_record

    with contextlib.suppress(CorruptRecord):
        record = unpack_record("sid", data)
        assert all(isinstance(tag, str) for tag in record.tags)
    with contextlib.suppress(CorruptRecord):
        unpack_pair(data)


def test_records_this_package_writes_still_decode() -> None:
    from django_durable.autoresponse import WebSocketRequestResponsePair
    from django_durable.session.base import OPEN, SocketRecord
    from django_durable.session.redis import pack_pair, pack_record, unpack_pair, unpack_record

    record = SocketRecord("sid", ("a", ""), b"\x01\x90", None, "holder", OPEN, 7)
    back = unpack_record("sid", pack_record(record))
    assert (back.tags, back.attachment, back.holder, back.state, back.seq) == (
        ("a", ""),
        b"\x01\x90",
        "holder",
        OPEN,
        7,
    )
    pair = WebSocketRequestResponsePair("ping", b"pong")
    assert unpack_pair(pack_pair(pair)) == pair
