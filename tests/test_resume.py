"""Resuming clients (SPEC §14): history, framing, replay and resync.

Unit tests of the framing, the query parameters and both session layers' history, then
end-to-end tests with the ``websockets`` client against real daphne processes: on the
in-memory layers (one process) and on Redis (two processes, a reconnect landing on the
other one, the owner killed, Redis losing the history). ``Resumer`` is a client that
keeps its position exactly as ``durable-socket.js`` does, so what it receives across
reconnects is what a page would get. The race tests reconnect a client again and again
while another floods broadcasts: every broadcast must arrive once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from redis import asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from django_durable import framing
from django_durable.resume import requested
from django_durable.session.memory import InMemorySessionLayer
from tests.daphne_server import DaphneFactory, DaphneServer
from tests.services import REDIS_URL, need
from tests.waiting import wait_until

WAIT = 15.0


# Units ------------------------------------------------------------------------------------


def test_frames_carry_a_header_line_and_keep_the_frame_type() -> None:
    text = {"type": "websocket.send", "text": "hi\nthere", framing.POSITION: ("e1", 7)}
    assert framing.frame(text) == {"type": "websocket.send", "text": "b e1 7\nhi\nthere"}
    assert framing.plain(text) == {"type": "websocket.send", "text": "hi\nthere"}
    binary = {"type": "websocket.send", "bytes": b"\x00\n"}
    assert framing.frame(binary) == {"type": "websocket.send", "bytes": b"m\n\x00\n"}
    assert framing.plain(binary) is binary
    assert framing.live("e1", 7, "s")["text"] == "h e1 7 s\n"
    assert framing.resync("e2", 0, "s")["text"] == "r e2 0 s\n"


@pytest.mark.parametrize(
    "query",
    [
        b"durable_resume=2",
        b"durable_resume=1&durable_epoch=abc",
        b"durable_resume=1&durable_offset=3",
        b"durable_resume=1&durable_epoch=a%20b&durable_offset=3",
        b"durable_resume=1&durable_epoch=abc&durable_offset=-1",
        b"durable_resume=1&durable_epoch=abc&durable_offset=1&durable_socket=x%0A",
    ],
)
def test_a_malformed_resume_request_is_an_error(query: bytes) -> None:
    with pytest.raises(ValueError):
        requested({"query_string": query})


def test_resume_requests_are_parsed() -> None:
    assert requested({"query_string": b"name=x"}) is None
    fresh = requested({"query_string": b"durable_resume=1"})
    assert fresh is not None and fresh.epoch is None
    back = requested(
        {"query_string": b"durable_resume=1&durable_epoch=ab12&durable_offset=9&durable_socket=s-1"}
    )
    assert back is not None and (back.epoch, back.offset, back.previous) == ("ab12", 9, "s-1")


def test_history_must_be_a_non_negative_int() -> None:
    from django_durable import DurableConsumer

    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(TypeError, match="history must be an int >= 0"):
            type("Bad", (DurableConsumer,), {"history": bad, "durable_name": "tests.Bad"})


async def test_memory_history_expires_after_its_ttl(settings: Any) -> None:
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "HISTORY_TTL": 0.05}
    layer = InMemorySessionLayer()
    await layer.append_history("K", 3, None, (), "m")
    assert "K" in layer.histories
    await wait_until(
        lambda: "K" not in layer.histories,
        message="the layer's own timer to remove K's history",
        timeout=WAIT,
        interval=0.01,
    )
    assert (await layer.read_history("K", None)).head == 0


async def test_memory_history_is_bounded_and_numbered() -> None:
    layer = InMemorySessionLayer()
    positions = [await layer.append_history("K", 3, None, (), f"m{i}") for i in range(1, 6)]
    epoch = positions[0][0]
    assert positions == [(epoch, i) for i in range(1, 6)]
    snapshot = await layer.read_history("K", 1)
    assert (snapshot.epoch, snapshot.head, snapshot.first) == (epoch, 5, 3)
    assert [(e.offset, e.payload) for e in snapshot.entries] == [(3, "m3"), (4, "m4"), (5, "m5")]
    assert (await layer.read_history("K", None)).entries == []
    other = await layer.read_history("other", None)
    assert other.epoch != epoch and other.head == 0


async def test_redis_history_is_bounded_numbered_and_changes_epoch_when_lost() -> None:
    need("redis")
    from django_durable.session.redis import RedisSessionLayer

    prefix = f"resume-{uuid.uuid4().hex[:12]}:"
    layer = RedisSessionLayer(hosts=[REDIS_URL], prefix=prefix)
    try:
        positions = [
            await layer.append_history("K", 3, "t" if i % 2 else None, ("x",), f"m{i}")
            for i in range(1, 6)
        ]
        epoch = positions[0][0]
        assert positions == [(epoch, i) for i in range(1, 6)]
        snapshot = await layer.read_history("K", 3)
        assert (snapshot.epoch, snapshot.head, snapshot.first) == (epoch, 5, 3)
        assert [(e.offset, e.tag, e.exclude, e.payload) for e in snapshot.entries] == [
            (4, None, ("x",), "m4"),
            (5, "t", ("x",), "m5"),
        ]
        assert await layer.redis.llen(f"{prefix}h:K") == 3
        for key in ("hm", "h"):  # both expire HISTORY_TTL after their last use
            assert 0 < await layer.redis.pttl(f"{prefix}{key}:K") <= 3600 * 1000
        await layer.append_history("K", 3, None, (), b"\x00bin")
        assert (await layer.read_history("K", 5)).entries[0].payload == b"\x00bin"
        # Redis loses the history: a new epoch, offsets from 1 again.
        await layer.redis.delete(f"{prefix}hm:K")
        fresh = await layer.read_history("K", None)
        assert fresh.epoch != epoch and fresh.head == 0
        assert await layer.append_history("K", 3, None, (), "n") == (fresh.epoch, 1)
    finally:
        keys = await layer.redis.keys(f"{prefix}*")
        if keys:
            await layer.redis.delete(*keys)
        await layer.close()


# A client that resumes like durable-socket.js ---------------------------------------------


def parse(frame: str | bytes) -> tuple[str, list[str], str | bytes]:
    if isinstance(frame, bytes):
        end = frame.index(b"\n")
        header, payload_b = frame[:end].decode(), frame[end + 1 :]
        kind, *fields = header.split(" ")
        return kind, fields, payload_b
    end = frame.index("\n")
    kind, *fields = frame[:end].split(" ")
    return kind, fields, frame[end + 1 :]


class Resumer:
    """Keeps the position and socket id, reconnects with them; records what it got."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.epoch: str | None = None
        self.offset = 0
        self.socket: str | None = None
        #: Payloads of broadcasts and messages, in arrival order, over all connections.
        self.received: list[str | bytes] = []
        self.kinds: list[str] = []
        self.log: list[Any] = []
        self.ws: ClientConnection | None = None

    def url(self, server: DaphneServer, **query: str) -> str:
        params = {**query, "durable_resume": "1"}
        if self.epoch is not None:
            params.update(durable_epoch=self.epoch, durable_offset=str(self.offset))
        if self.socket is not None:
            params["durable_socket"] = self.socket
        return f"{server.url(self.path)}?{urlencode(params)}"

    async def open(self, server: DaphneServer, **query: str) -> str:
        """Connect and read up to the ``h`` or ``r`` frame; returns its kind."""
        self.ws = await connect(self.url(server, **query), open_timeout=WAIT, proxy=None)
        while True:
            kind = await self.read()
            if kind in ("h", "r"):
                return kind

    async def read(self, timeout: float = WAIT) -> str:  # noqa: ASYNC109
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            frame = await self.ws.recv()
        kind, fields, payload = parse(frame)
        self.kinds.append(kind)
        self.log.append((kind, fields, payload))
        if kind == "b":
            if fields[0] == self.epoch:
                self.offset = max(self.offset, int(fields[1]))
            else:
                self.epoch, self.offset = fields[0], int(fields[1])
            self.received.append(payload)
        elif kind == "m":
            self.received.append(payload)
        elif kind in ("h", "r"):
            if kind == "r" or self.epoch != fields[0]:
                self.epoch, self.offset = fields[0], int(fields[1])
            else:
                self.offset = max(self.offset, int(fields[1]))
            self.socket = fields[2]
        return kind

    async def read_payloads(self, count: int) -> list[str | bytes]:
        start = len(self.received)
        while len(self.received) < start + count:
            await self.read()
        return self.received[start:]

    async def drop(self) -> None:
        """Go away without a word (the server sees 1006), as a phone losing its network."""
        assert self.ws is not None
        self.ws.transport.abort()
        with contextlib.suppress(Exception):
            await self.ws.wait_closed()
        self.ws = None


async def plain(server: DaphneServer, path: str) -> ClientConnection:
    return await connect(server.url(path), open_timeout=WAIT, proxy=None)


async def say(ws: ClientConnection, text: str, **extra: Any) -> None:
    await ws.send(json.dumps({"op": "say", "text": text, **extra}))


async def recv_text(ws: ClientConnection, expected: str) -> None:
    async with asyncio.timeout(WAIT):
        while (await ws.recv()) != expected:
            pass


async def monitor_ask(server: DaphneServer, command: dict[str, Any]) -> Any:
    async with connect(server.url("/ws/monitor/"), proxy=None) as ws:
        await ws.send(json.dumps(command))
        async with asyncio.timeout(WAIT):
            return json.loads(await ws.recv())


def room() -> str:
    return uuid.uuid4().hex[:10]


# In memory, one process ---------------------------------------------------------------------


async def test_plain_sockets_see_plain_frames_and_resuming_ones_framed(
    daphne_server: DaphneServer,
) -> None:
    path = f"/ws/chronicle/{room()}/"
    other = await plain(daphne_server, path)
    resumer = Resumer(path)
    assert await resumer.open(daphne_server) == "h"
    assert resumer.offset == 0 and resumer.socket
    await say(other, "one")
    await recv_text(other, "one")  # the plain socket: exactly the payload, no header
    assert await resumer.read() == "b"
    assert resumer.received == ["one"] and resumer.offset == 1
    await other.send(json.dumps({"op": "bytes", "text": "two"}))
    assert await other.recv() == b"two"
    assert await resumer.read_payloads(1) == [b"two"]
    # ws.send and the auto-response reach a resuming socket as "m" frames.
    assert resumer.ws is not None
    await resumer.ws.send(json.dumps({"op": "direct", "text": "just you"}))
    await resumer.ws.send("ping")
    # (The gateway answers "ping" at once, maybe before the object answered "direct".)
    assert sorted(await resumer.read_payloads(2)) == ["just you", "pong"]
    assert resumer.kinds[-2:] == ["m", "m"]
    await other.close()
    await resumer.drop()


async def test_a_reconnecting_socket_gets_what_it_missed_once_in_order(
    daphne_server: DaphneServer,
) -> None:
    path = f"/ws/chronicle/{room()}/"
    other = await plain(daphne_server, f"{path}?tags=blue")
    resumer = Resumer(path)
    await resumer.open(daphne_server, tags="red")
    await say(other, "before")
    await resumer.read_payloads(1)
    await resumer.drop()
    # While it is away: to everyone, to its tag, to another tag, and from outside.
    await say(other, "all-1")
    await say(other, "red-1", tag="red")
    await say(other, "blue-1", tag="blue")
    await recv_text(other, "blue-1")
    reply = await monitor_ask(
        daphne_server,
        {"op": "broadcast_to", "class": "chronicle", "id": path.split("/")[3], "text": "outside"},
    )
    assert reply
    await recv_text(other, "outside")
    # Back (to the same tags). connect() sends to it and broadcasts: those are live, not
    # missed, and come after the replay, in the order connect() sent them.
    assert await resumer.open(daphne_server, tags="red", greet="again") == "h"
    replayed = resumer.received[1:]
    assert replayed == ["all-1", "red-1", "outside"]
    assert await resumer.read_payloads(2) == ["welcome", "joined again"]
    # Then live traffic, and a second reconnect that missed nothing replays nothing.
    await say(other, "live")
    assert await resumer.read_payloads(1) == ["live"]
    await resumer.drop()
    assert await resumer.open(daphne_server, tags="red") == "h"
    assert resumer.kinds[-1] == "h" and resumer.received[-1] == "live"
    await other.close()
    await resumer.drop()


async def test_a_broadcast_that_excluded_the_previous_socket_is_not_replayed(
    daphne_server: DaphneServer,
) -> None:
    path = f"/ws/chronicle/{room()}/"
    other = await plain(daphne_server, path)
    resumer = Resumer(path)
    await resumer.open(daphne_server)
    assert resumer.ws is not None
    await say(resumer.ws, "mine", exclude_self=True)
    await recv_text(other, "mine")
    await resumer.drop()
    await say(other, "theirs")
    await recv_text(other, "theirs")
    await resumer.open(daphne_server)
    assert resumer.received == ["theirs"]
    await other.close()
    await resumer.drop()


async def test_history_too_short_or_another_epoch_yields_resync(
    daphne_server: DaphneServer,
) -> None:
    path = f"/ws/chronicle/{room()}/"
    other = await plain(daphne_server, path)
    resumer = Resumer(path)
    await resumer.open(daphne_server)
    await resumer.drop()
    for i in range(7):  # history = 5: the first two missed are gone
        await say(other, f"m{i}")
    await recv_text(other, "m6")
    assert await resumer.open(daphne_server) == "r"
    assert resumer.received == [] and resumer.offset == 7
    # From the new position it resumes normally.
    await resumer.drop()
    await say(other, "m7")
    await recv_text(other, "m7")
    assert await resumer.open(daphne_server) == "h"
    assert resumer.received == ["m7"]
    await resumer.drop()
    # An epoch the server does not know (a history that was lost) resyncs too.
    resumer.epoch = "000000000000"
    assert await resumer.open(daphne_server) == "r"
    await resumer.drop()
    await other.close()


async def test_a_class_without_history_frames_but_always_resyncs(
    daphne_server: DaphneServer,
) -> None:
    path = f"/ws/forgetful/{room()}/"
    other = await plain(daphne_server, path)
    resumer = Resumer(path)
    assert await resumer.open(daphne_server) == "h"
    assert (resumer.epoch, resumer.offset) == ("-", 0)
    await say(other, "x")
    assert await resumer.read() == "m" and resumer.received == ["x"]
    await resumer.drop()
    assert await resumer.open(daphne_server) == "r"
    await resumer.drop()
    await other.close()


async def test_a_malformed_resume_request_is_refused_at_the_handshake(
    daphne_server: DaphneServer,
) -> None:
    url = daphne_server.url(f"/ws/chronicle/{room()}/") + "?durable_resume=1&durable_offset=x"
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, open_timeout=WAIT, proxy=None)
    assert refused.value.response.status_code == 403
    assert "durable_epoch and durable_offset go together" in daphne_server.output()


async def churn(
    servers: list[DaphneServer], path: str, count: int, seed: int
) -> tuple[Resumer, list[str]]:
    """A writer floods ``count`` numbered broadcasts while a resumer keeps dropping its
    connection (after a few frames, at random) and coming back, to a random server."""
    rng = random.Random(seed)
    writer = await plain(servers[0], path)
    resumer = Resumer(path)
    await resumer.open(rng.choice(servers))

    async def flood() -> None:
        # Two in flight at a time, each next one sent when one came back: broadcasts
        # keep coming for as long as the resumer keeps reconnecting.
        await say(writer, "1")
        for n in range(2, count + 1):
            await say(writer, str(n))
            await recv_text(writer, str(n - 1))

    flooding = asyncio.create_task(flood())
    reconnects = 0
    try:
        async with asyncio.timeout(90):
            while not resumer.received or resumer.received[-1] != str(count):
                for _ in range(rng.randint(1, 6)):
                    await resumer.read()
                    if resumer.received and resumer.received[-1] == str(count):
                        break
                else:
                    await resumer.drop()
                    reconnects += 1
                    assert await resumer.open(rng.choice(servers)) == "h", resumer.kinds[-5:]
        await flooding
    finally:
        flooding.cancel()
        await writer.close()
    assert reconnects > 0
    return resumer, [str(n) for n in range(1, count + 1)]


async def test_reconnecting_during_a_flood_misses_nothing_and_repeats_nothing(
    daphne_server: DaphneServer,
) -> None:
    resumer, expected = await churn([daphne_server], f"/ws/long-chronicle/{room()}/", 300, 1)
    assert resumer.received == expected
    await resumer.drop()


# Redis, two processes ---------------------------------------------------------------------


@pytest.fixture
async def redis_pair(daphne_factory: DaphneFactory) -> AsyncIterator[tuple[list[Any], str]]:
    need("redis")
    prefix = f"resume-{uuid.uuid4().hex[:12]}"
    env = {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_LEASE_TIME": "1.5",
    }
    servers = daphne_factory(2, env=env)
    yield servers, prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = await client.keys(f"{prefix}*")
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_redis_reconnect_to_another_process_after_the_owner_died(
    redis_pair: tuple[list[DaphneServer], str],
) -> None:
    (first, second), prefix = redis_pair
    name = room()
    path = f"/ws/chronicle/{name}/"
    resumer = Resumer(path)
    await resumer.open(first)  # the object is owned by the first process
    other = await plain(second, path)
    await say(other, "seen")
    await resumer.read_payloads(1)
    await resumer.drop()
    await say(other, "missed-1")
    await other.send(json.dumps({"op": "bytes", "text": "missed-2"}))
    # Handled and stored (the next event of the socket runs after that): a handler that
    # had not stored its result when its process died would run again.
    await other.send(json.dumps({"op": "direct", "text": "stored"}))
    await recv_text(other, "stored")
    first.kill()  # the owner (and the first connection's process) dies
    await say(other, "missed-3")  # taken over by the second process
    await recv_text(other, "missed-3")
    assert await resumer.open(second) == "h"
    assert resumer.received == ["seen", "missed-1", b"missed-2", "missed-3"]
    await say(other, "live")
    assert await resumer.read_payloads(1) == ["live"]
    await resumer.drop()
    # Redis loses the history: the next reconnect is told to resync.
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        key = f"{prefix}:durable:hm:tests.app.resume_consumers.Chronicle/{name}"
        assert await client.delete(key) == 1
    finally:
        await client.aclose()
    assert await resumer.open(second) == "r"
    await resumer.drop()
    await other.close()


@pytest.mark.slow
async def test_redis_reconnecting_between_processes_during_a_flood(
    redis_pair: tuple[list[DaphneServer], str],
) -> None:
    servers, _ = redis_pair
    resumer, expected = await churn(servers, f"/ws/long-chronicle/{room()}/", 200, 2)
    assert resumer.received == expected
    await resumer.drop()
