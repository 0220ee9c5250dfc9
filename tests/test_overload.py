"""Message size and overload end to end (SPEC section 11), over real daphne processes.

Servers run ``tests.app.consumers.Room`` with small bounds (``MAX_MESSAGE_BYTES`` 64 KiB,
daphne's own limit 256 KiB, a few dozen queued events) so the sizes stay modest; the
defaults are the same code with bigger numbers. An object is held busy by a handler
waiting for a signal (``{"op": "wait"}``), which the ``ws/monitor/`` consumer gives, so
a backlog builds without any timing. Close events reach the sockets tagged
``observers``; what a socket's messages did is read back from the object's memory.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster_harness import redis_cluster
from tests.daphne_server import DaphneServer, recv_json, recv_json_until
from tests.metrics_support import scrape
from tests.storage_support import http_json
from tests.waiting import wait_until

TIMEOUT = 10.0
MAX_MESSAGE = 65_536
SERVER_LIMIT = 262_144
SIZE_ENV = {"DURABLE_TEST_MAX_MESSAGE_BYTES": str(MAX_MESSAGE)}
SIZE_ARGS = [
    "--websocket-max-message-size",
    str(SERVER_LIMIT),
    "--websocket-max-frame-size",
    str(SERVER_LIMIT),
]


def logged(server: DaphneServer, text: str) -> int:
    """How many times ``text`` was logged (daphne's own handler prints each record too)."""
    return sum(text in line for line in server.output().splitlines() if "WARNING" in line)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def tags(*names: str) -> str:
    return quote(json.dumps(list(names)))


async def open_socket(server: DaphneServer, room: str, *tag_names: str) -> ClientConnection:
    query = f"?tags={tags(*tag_names)}" if tag_names else ""
    return await connect(
        server.url(f"ws/room/{room}/{query}"), open_timeout=TIMEOUT, proxy=None, max_size=None
    )


async def ask(ws: ClientConnection, command: dict[str, Any], key: str) -> Any:
    await ws.send(json.dumps(command))
    return await recv_json_until(ws, lambda m: isinstance(m, dict) and key in m, TIMEOUT)


async def closed_code(ws: ClientConnection) -> int | None:
    """Wait (bounded) for the server to close ``ws``; the code it sent."""
    try:
        while True:
            await recv_json(ws, TIMEOUT)
    except ConnectionClosed:
        pass
    assert ws.close_code is not None
    return ws.close_code


async def close_event(observer: ClientConnection, socket_id: str) -> dict[str, Any]:
    return await recv_json_until(
        observer, lambda m: m.get("event") == "close" and m.get("id") == socket_id, TIMEOUT
    )


async def flood(ws: ClientConnection, count: int) -> int:
    """Send ``remember`` 0..count-1 until the server closes the socket; how many went."""
    for n in range(count):
        try:
            await ws.send(json.dumps({"op": "remember", "value": n}))
        except ConnectionClosed:
            return n
    return count


@pytest.fixture
def size_server(daphne_factory) -> DaphneServer:
    return daphne_factory(1, SIZE_ENV, extra_args=SIZE_ARGS)[0]


# Incoming size ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "x" * (MAX_MESSAGE + 1),
        b"\x00" * (MAX_MESSAGE + 1),
        "é" * (MAX_MESSAGE // 2 + 1),  # fewer characters than the limit, more bytes
    ],
    ids=["text", "binary", "multibyte-text"],
)
async def test_an_incoming_message_over_max_message_bytes_closes_with_1009(
    size_server: DaphneServer, message: str | bytes
) -> None:
    room = new_id()
    observer = await open_socket(size_server, room, "observers")
    sender = await open_socket(size_server, room)
    sender_id = (await ask(sender, {"op": "whoami"}, "id"))["id"]
    # Exactly at the limit is delivered.
    at_limit = json.dumps({"op": "remember", "value": ""})
    at_limit = at_limit.replace('""', '"' + "y" * (MAX_MESSAGE - len(at_limit)) + '"')
    assert len(at_limit.encode()) == MAX_MESSAGE
    assert len((await ask(sender, json.loads(at_limit), "memory"))["memory"]) == 1

    await sender.send(message)
    assert await closed_code(sender) == 1009
    event = await close_event(observer, sender_id)
    assert (event["code"], event["was_clean"]) == (1009, True)
    # The object never saw the message, and got one final event for the socket.
    memory = (await ask(observer, {"op": "memory"}, "memory"))["memory"]
    assert len(memory) == 1
    await observer.send(json.dumps({"op": "whoami"}))
    assert "id" in await recv_json(observer, TIMEOUT)  # no second close event came first
    assert logged(size_server, f"socket {sender_id} closed with 1009") == 1
    assert scrape(size_server)["durable_oversize_closes_total"] == 1
    await observer.close()


# Outgoing size ----------------------------------------------------------------------------


async def test_an_outgoing_message_over_the_server_limit_raises_and_the_socket_stays_open(
    size_server: DaphneServer,
) -> None:
    room = new_id()
    other = await open_socket(size_server, room)
    ws = await open_socket(size_server, room)
    await ask(other, {"op": "whoami"}, "id")
    for op in ("big", "broadcast_big"):
        reply = await ask(
            ws, {"op": "error_of", "command": {"op": op, "n": SERVER_LIMIT + 1}}, "error"
        )
        assert reply["error"] == "MessageTooLarge"
        assert str(SERVER_LIMIT) in reply["message"]
    status, body = await http_json(
        size_server.http_url(f"room/{room}/call/shout/?args=[{SERVER_LIMIT + 1}]")
    )
    assert (status, body["error"]) == (500, "MessageTooLarge")
    assert str(SERVER_LIMIT) in body["message"]
    # Nothing reached anyone (the next message is the answer, not a broadcast); both
    # sockets are open; a message at the limit is sent.
    await other.send(json.dumps({"op": "whoami"}))
    assert "id" in await recv_json(other, TIMEOUT)
    await ws.send(json.dumps({"op": "big", "n": SERVER_LIMIT}))
    assert await ws.recv() == "x" * SERVER_LIMIT
    assert await recv_json(ws, TIMEOUT) == {"sent": SERVER_LIMIT}
    await ws.close()
    await other.close()


# Overload ---------------------------------------------------------------------------------


async def test_a_flooding_socket_is_closed_with_1013_and_the_others_keep_being_served(
    daphne_factory,
) -> None:
    bound = 40
    (server,) = daphne_factory(1, {"DURABLE_TEST_MAX_SOCKET_QUEUED_EVENTS": str(bound)})
    room, signal = new_id(), new_id()
    observer = await open_socket(server, room, "observers")
    flooder = await open_socket(server, room)
    other = await open_socket(server, room)
    monitor = await connect(server.url("ws/monitor/"), open_timeout=TIMEOUT, proxy=None)
    flooder_id = (await ask(flooder, {"op": "whoami"}, "id"))["id"]
    await ask(other, {"op": "whoami"}, "id")

    # The object is busy until signalled: the flooder's messages wait for it.
    await observer.send(json.dumps({"op": "wait", "name": signal, "timeout": 60}))
    await recv_json_until(observer, lambda m: m.get("waiting") == signal, TIMEOUT)
    sent = await flood(flooder, 10 * bound)
    for n in range(5):
        await other.send(json.dumps({"op": "seq", "n": n}))
    assert await closed_code(flooder) == 1013
    assert sent > bound

    await monitor.send(json.dumps({"op": "signal", "name": signal}))
    # The other socket is served, in its order; the flooder gets its final event.
    for n in range(5):
        assert (await recv_json_until(other, lambda m: "seq" in m, TIMEOUT))["seq"] == n
    event = await close_event(observer, flooder_id)
    assert event["code"] == 1013
    # Nothing that was queued was dropped: exactly the first `bound` messages ran.
    memory = (await ask(other, {"op": "memory"}, "memory"))["memory"]
    assert memory == list(range(bound))
    await wait_until(
        lambda: f"socket {flooder_id} closed with 1013" in server.output(), message="the log line"
    )
    assert logged(server, f"socket {flooder_id} closed with 1013") == 1
    assert scrape(server)["durable_overload_closes_total"] == 1
    for ws in (observer, other, monitor):
        await ws.close()


async def test_an_overloaded_object_closes_the_heaviest_socket_and_refuses_stub_calls(
    daphne_factory,
) -> None:
    bound = 30
    (server,) = daphne_factory(1, {"DURABLE_TEST_MAX_QUEUED_EVENTS": str(bound)})
    room, signal = new_id(), new_id()
    observer = await open_socket(server, room, "observers")
    flooder = await open_socket(server, room)
    light = await open_socket(server, room)
    monitor = await connect(server.url("ws/monitor/"), open_timeout=TIMEOUT, proxy=None)
    flooder_id = (await ask(flooder, {"op": "whoami"}, "id"))["id"]
    await ask(light, {"op": "whoami"}, "id")

    await observer.send(json.dumps({"op": "wait", "name": signal, "timeout": 60}))
    await recv_json_until(observer, lambda m: m.get("waiting") == signal, TIMEOUT)
    await light.send(json.dumps({"op": "seq", "n": 0}))
    await flood(flooder, 10 * bound)
    assert await closed_code(flooder) == 1013

    status, body = await http_json(server.http_url(f"room/{room}/call/count_sockets/"))
    assert (status, body["error"]) == (500, "Overloaded")
    assert str(bound) in body["message"]

    await monitor.send(json.dumps({"op": "signal", "name": signal}))
    assert (await recv_json_until(light, lambda m: "seq" in m, TIMEOUT))["seq"] == 0
    event = await close_event(observer, flooder_id)
    assert event["code"] == 1013
    memory = (await ask(light, {"op": "memory"}, "memory"))["memory"]
    assert memory == list(range(len(memory)))
    assert 0 < len(memory) <= bound  # (the light socket's event counted too)
    # Once the backlog drained, calls run again.
    status, body = await http_json(server.http_url(f"room/{room}/call/count_sockets/"))
    assert (status, body) == (200, {"result": 2})
    assert logged(server, f"socket {flooder_id} closed with 1013") == 1
    assert logged(server, "call refused") == 1
    counters = scrape(server)
    assert counters["durable_overload_closes_total"] == 1
    assert counters["durable_overload_refusals_total"] == 1
    for ws in (observer, light, monitor):
        await ws.close()


async def test_with_redis_a_flooder_on_another_process_is_closed_by_its_own_gateway(
    daphne_factory,
) -> None:
    """The owner acknowledges what it handled; the flooder's process counts the rest."""
    bound = 40
    c = redis_cluster(daphne_factory, 2, DURABLE_TEST_MAX_SOCKET_QUEUED_EVENTS=str(bound))
    s0, s1 = c.servers
    room, signal = new_id(), new_id()
    observer = await open_socket(s0, room, "observers")  # first: s0 owns the object
    flooder = await open_socket(s1, room)
    other = await open_socket(s1, room)
    # (Not the Channels consumer ws/monitor/: on channels_redis its receive loop holds
    # the process's receive lock for seconds at a time, delaying forwarded events.)
    monitor = await connect(s0.url("ws/cluster-monitor/"), open_timeout=TIMEOUT, proxy=None)
    flooder_id = (await ask(flooder, {"op": "whoami"}, "id"))["id"]
    await ask(other, {"op": "whoami"}, "id")
    try:
        await observer.send(json.dumps({"op": "wait", "name": signal, "timeout": 60}))
        await recv_json_until(observer, lambda m: m.get("waiting") == signal, TIMEOUT)
        await flood(flooder, 10 * bound)
        await other.send(json.dumps({"op": "seq", "n": 0}))
        assert await closed_code(flooder) == 1013
        await monitor.send(json.dumps({"op": "signal", "name": signal}))
        assert (await recv_json_until(observer, lambda m: "waited" in m, TIMEOUT))["signalled"]
        assert (await recv_json_until(other, lambda m: "seq" in m, TIMEOUT))["seq"] == 0
        assert (await close_event(observer, flooder_id))["code"] == 1013
        memory = (await ask(other, {"op": "memory"}, "memory"))["memory"]
        assert memory == list(range(bound))
    finally:
        for ws in (observer, other, monitor):
            await ws.close()
        await c.close()
