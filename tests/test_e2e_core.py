"""The core contract end to end: real daphne processes, real WebSocket clients.

Three servers serve this whole module (each test uses its own object ids): one with
the test settings, one with a short ``IDLE_TIMEOUT`` and one with ``HIBERNATE_EAGERLY``.
Objects are ``tests.app.consumers.Room`` (JSON commands); close and error events are
reported to the room's sockets tagged ``observers``; ``ws/monitor/`` is a plain Channels
consumer that answers questions about its process without waking any object.
Everything waits on the event it expects, with a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.app.consumers import Room
from tests.daphne_server import HOST, DaphneServer, recv_json, recv_json_until

TIMEOUT = 5.0
IDLE_TIMEOUT = 0.3


# Servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def servers(
    request: pytest.FixtureRequest,
    migrated_sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DaphneServer]]:
    """The module's servers, under daphne, then again under uvicorn (ASGI lifespan)."""
    database = tmp_path_factory.mktemp("e2e-core") / "db.sqlite3"
    shutil.copyfile(migrated_sqlite_template, database)
    base = {"DURABLE_TEST_SQLITE": str(database)}
    envs = {
        "default": base,
        "idle": {**base, "DURABLE_TEST_IDLE_TIMEOUT": str(IDLE_TIMEOUT)},
        "eager": {**base, "DURABLE_TEST_HIBERNATE_EAGERLY": "1"},
    }
    kind = request.param
    started = {
        name: DaphneServer(env, name=f"core-{kind}-{name}", server=kind)
        for name, env in envs.items()
    }
    try:
        for server in started.values():
            server.launch()
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.close()


@pytest.fixture(autouse=True)
def _report_server_output(report_server_output, servers) -> None:
    report_server_output(*servers.values())


@pytest.fixture
def server(servers) -> DaphneServer:
    return servers["default"]


# Clients -----------------------------------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def room_path(room: str, *, kind: str = "room", **query: Any) -> str:
    params = {k: json.dumps(v) if k == "tags" else v for k, v in query.items()}
    suffix = f"?{urlencode(params)}" if params else ""
    return f"ws/{kind}/{room}/{suffix}"


async def open_ws(server: DaphneServer, path: str) -> ClientConnection:
    return await connect(server.url(path), open_timeout=TIMEOUT, close_timeout=TIMEOUT)


async def join(server: DaphneServer, room: str, **query: Any) -> tuple[ClientConnection, str]:
    """Connect to ``room`` and return the connection and its socket id."""
    ws = await open_ws(server, room_path(room, greet=1, **query))
    hello = await recv_json_until(ws, lambda m: "hello" in m)
    return ws, hello["hello"]


async def observe(server: DaphneServer, room: str) -> tuple[ClientConnection, str]:
    return await join(server, room, tags=["observers"])


async def ask(ws: ClientConnection, command: dict[str, Any], key: str) -> dict[str, Any]:
    """Send a command and return the first reply that has ``key``."""
    await ws.send(json.dumps(command))
    return await recv_json_until(ws, lambda m: key in m)


async def collect_until(ws: ClientConnection, predicate: Callable[[Any], bool]) -> list[Any]:
    """Every JSON message up to and including the first one matching ``predicate``."""
    seen: list[Any] = []

    async def read() -> list[Any]:
        while True:
            message = json.loads(await ws.recv())
            seen.append(message)
            if predicate(message):
                return seen

    try:
        async with asyncio.timeout(TIMEOUT):
            return await read()
    except TimeoutError:
        raise AssertionError(f"no matching message within {TIMEOUT} s; got {seen!r}") from None


async def listed(observer: ClientConnection) -> list[Any]:
    """Ask for get_websockets(); every message up to the answer (the last one)."""
    await observer.send(json.dumps({"op": "list"}))
    return await collect_until(observer, lambda m: "sockets" in m)


def final_events(messages: list[Any], socket_id: str) -> list[Any]:
    return [m for m in messages if m.get("event") in ("close", "error") and m["id"] == socket_id]


async def wait_closed(ws: ClientConnection) -> None:
    async with asyncio.timeout(TIMEOUT):
        await ws.wait_closed()


async def monitor(server: DaphneServer, command: dict[str, Any]) -> dict[str, Any]:
    async with await open_ws(server, "ws/monitor/") as ws:
        await ws.send(json.dumps(command))
        return await recv_json(ws, TIMEOUT)


class RawClient:
    """A hand-written WebSocket client, for frames a well-behaved client never sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: DaphneServer, path: str) -> RawClient:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection(HOST, server.port)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET /{path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        assert status == b"101", head
        return cls(reader, writer)

    def send_frame(self, opcode: int, payload: bytes, *, rsv: int = 0) -> None:
        mask = os.urandom(4)
        first = 0x80 | rsv | opcode
        size = len(payload)
        if size < 126:
            header = bytes([first, 0x80 | size])
        else:
            header = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def send_close(self, code: int | None) -> None:
        self.send_frame(0x8, b"" if code is None else code.to_bytes(2, "big"))

    async def recv_frame(self) -> tuple[int, bytes]:
        async with asyncio.timeout(TIMEOUT):
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await self.reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await self.reader.readexactly(8), "big")
            assert not second & 0x80, "server frames are never masked"
            return first & 0x0F, await self.reader.readexactly(size)

    async def recv_json(self) -> Any:
        opcode, payload = await self.recv_frame()
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    async def recv_close(self) -> tuple[str, int | None]:
        """Read up to the end: ``("close", code or None)`` for the server's Close frame,
        ``("dropped", None)`` when the TCP connection ended without one."""
        try:
            while True:
                opcode, payload = await self.recv_frame()
                if opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    return "close", code
        except (ConnectionResetError, asyncio.IncompleteReadError):
            return "dropped", None

    async def at_eof(self) -> bool:
        """Whether the server ended the TCP connection (FIN or reset)."""
        try:
            async with asyncio.timeout(TIMEOUT):
                return await self.reader.read() == b""
        except ConnectionResetError:
            return True

    def abort(self) -> None:
        self.writer.transport.abort()


# Delivery ------------------------------------------------------------------------------------


async def test_text_arrives_as_str_and_binary_as_bytes(server) -> None:
    ws, socket_id = await join(server, new_id())
    async with ws:
        await ws.send("héllo")
        assert await ws.recv() == "text:héllo"
        await ws.send(b"\x00\xff")
        reply = await ws.recv()
        assert isinstance(reply, bytes)
        assert reply == b"bytes:\x00\xff"
        assert await ask(ws, {"op": "whoami"}, "id") == {
            "id": socket_id,
            "tags": ["all"],
            "ready_state": 1,
        }
    ws, socket_id = await join(server, new_id(), tags=["a", "b", "a"])
    async with ws:
        assert await ask(ws, {"op": "whoami"}, "id") == {
            "id": socket_id,
            "tags": ["a", "b"],
            "ready_state": 1,
        }


async def test_empty_frames_are_delivered_with_their_type(server) -> None:
    ws, _ = await join(server, new_id())
    async with ws:
        await ws.send("")
        assert await ws.recv() == "text:"
        await ws.send(b"")
        assert await ws.recv() == b"bytes:"


async def test_one_sockets_messages_are_handled_in_order(server) -> None:
    ws, _ = await join(server, new_id())
    async with ws:
        for n in range(200):
            await ws.send(json.dumps({"op": "seq", "n": n}))
        replies = [(await recv_json(ws, TIMEOUT))["seq"] for _ in range(200)]
    assert replies == list(range(200))


# Final events ----------------------------------------------------------------------------------


async def close_no_status(ws: ClientConnection) -> None:
    # websockets sends a Close frame without a status code when the code is None.
    await ws.close(None)  # type: ignore[arg-type]


CLIENT_CLOSES = {
    "1000": (lambda ws: ws.close(1000), 1000, True),
    "4000": (lambda ws: ws.close(4000, "bye"), 4000, True),
    "1005-no-status": (close_no_status, 1005, True),
}


@pytest.mark.parametrize("how", list(CLIENT_CLOSES))
async def test_client_close_gives_one_final_event(server, how: str) -> None:
    close, code, was_clean = CLIENT_CLOSES[how]
    room = new_id()
    observer, observer_id = await observe(server, room)
    async with observer:
        ws, socket_id = await join(server, room)
        await close(ws)
        await wait_closed(ws)
        event = await recv_json_until(
            observer, lambda m: m.get("event") == "close" and m["id"] == socket_id
        )
        assert event["code"] == code
        assert event["was_clean"] is was_clean
        assert event["reason"] == ""  # daphne drops close reasons
        assert event["listed_during"] is True  # listed during its own close handler...
        assert event["ready_state"] == 3  # ...as CLOSED
        before = await listed(observer)
        # ...and gone after it; no second final event came meanwhile.
        assert [s[0] for s in before[-1]["sockets"]] == [observer_id]
        assert final_events(before, socket_id) == []


async def test_dropped_connection_gives_1006_not_clean(server) -> None:
    if server.server == "uvicorn":
        pytest.xfail("uvicorn reports a dropped connection as 1005 (docs/deployment.md)")
    room = new_id()
    observer, observer_id = await observe(server, room)
    async with observer:
        ws, socket_id = await join(server, room)
        ws.transport.abort()  # no Close frame
        event = await recv_json_until(
            observer, lambda m: m.get("event") == "close" and m["id"] == socket_id
        )
        assert event["code"] == 1006
        assert event["was_clean"] is False
        assert event["reason"]  # says what happened
        assert event["listed_during"] is True
        before = await listed(observer)
        assert [s[0] for s in before[-1]["sockets"]] == [observer_id]
        assert final_events(before, socket_id) == []


async def test_server_close_ends_in_websocket_close_with_the_peers_code(server) -> None:
    room = new_id()
    observer, observer_id = await observe(server, room)
    async with observer:
        ws, socket_id = await join(server, room)
        await ws.send(json.dumps({"op": "close", "code": 4001, "reason": "done"}))
        await wait_closed(ws)
        assert ws.close_code == 4001  # the client saw the server's code (and echoed it)
        messages = await collect_until(
            observer, lambda m: m.get("event") == "close" and m["id"] == socket_id
        )
        assert {"event": "send_after_close", "error": "WebSocketClosed"} in messages
        assert messages[-1]["code"] == 4001
        assert messages[-1]["was_clean"] is True
        after = await listed(observer)
        assert [s[0] for s in after[-1]["sockets"]] == [observer_id]
        assert final_events(after, socket_id) == []


async def test_server_close_reports_the_code_the_peer_answered(server) -> None:
    if server.server == "uvicorn":
        pytest.xfail("uvicorn reports the code it sent, not the peer's (docs/deployment.md)")
    room = new_id()
    observer, _ = await observe(server, room)
    async with observer:
        raw = await RawClient.open(server, room_path(room, greet=1))
        socket_id = (await raw.recv_json())["hello"]
        raw.send_text(json.dumps({"op": "close", "code": 4001}))
        assert await raw.recv_close() == ("close", 4001)
        raw.send_close(4002)  # the peer answers with a code of its own
        assert await raw.at_eof()
        event = await recv_json_until(
            observer, lambda m: m.get("event") == "close" and m["id"] == socket_id
        )
        assert event["code"] == 4002
        assert event["was_clean"] is True


async def test_close_frame_without_status_is_reported_as_1005(server) -> None:
    room = new_id()
    observer, _ = await observe(server, room)
    async with observer:
        raw = await RawClient.open(server, room_path(room, greet=1))
        socket_id = (await raw.recv_json())["hello"]
        raw.send_close(None)
        # The server completes the close handshake.
        assert await raw.recv_close() in (("close", None), ("close", 1000), ("close", 1005))
        event = await recv_json_until(
            observer, lambda m: m.get("event") == "close" and m["id"] == socket_id
        )
        assert (event["code"], event["was_clean"]) == (1005, True)


@pytest.mark.parametrize(
    "frame",
    [(0x1, b"\xff\xfe invalid UTF-8", 0), (0x1, b"reserved bit", 0x40), (0x3, b"opcode", 0)],
    ids=["invalid-utf8", "rsv1-without-extension", "reserved-opcode"],
)
async def test_a_malformed_frame_closes_only_that_socket(server, frame) -> None:
    opcode, payload, rsv = frame
    room = new_id()
    observer, observer_id = await observe(server, room)
    async with observer:
        other, other_id = await join(server, room)
        async with other:
            raw = await RawClient.open(server, room_path(room, greet=1))
            socket_id = (await raw.recv_json())["hello"]
            raw.send_frame(opcode, payload, rsv=rsv)
            # Autobahn fails the connection: a Close frame (protocol error, invalid
            # payload) or, by default, by dropping the TCP connection at once.
            ended = await raw.recv_close()
            assert ended in (("close", 1002), ("close", 1007), ("dropped", None)), ended
            event = await recv_json_until(
                observer, lambda m: m.get("event") in ("close", "error") and m["id"] == socket_id
            )
            after = await listed(observer)
            assert sorted(s[0] for s in after[-1]["sockets"]) == sorted([observer_id, other_id])
            assert final_events(after, socket_id) == []  # exactly one final event
            # The object hears how it ended: 1006 (not clean) when the server dropped it.
            assert event["event"] == "close"
            if ended[0] == "dropped":
                assert (event["code"], event["was_clean"]) == (1006, False)
            else:
                assert (event["code"], event["was_clean"]) == (ended[1], True)
            # The others are untouched.
            assert await ask(other, {"op": "memory"}, "memory") == {"memory": [], "start": 1}


# Handlers ----------------------------------------------------------------------------------


async def test_a_handler_that_raises_keeps_the_socket_and_the_instance(server) -> None:
    ws, _ = await join(server, new_id())
    async with ws:
        assert await ask(ws, {"op": "remember", "value": "x"}, "memory") == {
            "memory": ["x"],
            "start": 1,
        }
        await ws.send(json.dumps({"op": "raise"}))
        assert await ask(ws, {"op": "memory"}, "memory") == {"memory": ["x"], "start": 1}
    assert "handler failed on purpose" in server.output()


async def test_missing_handlers_ignore_events(server) -> None:
    room = new_id()
    log_start = len(server.output())
    ws = await open_ws(server, room_path(room, kind="silent"))  # the default connect accepts
    await ws.send("hello")
    await ws.send(b"\x00")
    live = await monitor(server, {"op": "live", "class": "silent"})
    assert room in live["live"]
    await ws.close()
    await wait_closed(ws)
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosed):
        await ws.recv()  # nothing was ever sent back
    drained = await monitor(server, {"op": "drain", "class": "silent", "id": room})
    assert drained == {"drained": room, "ok": True}  # every event was handled...
    log = server.output()[log_start:]
    assert "Traceback" not in log  # ...and ignored without an error
    assert "ERROR" not in log


# Hibernation -------------------------------------------------------------------------------------


async def test_testing_hibernate_drops_the_instance_and_state_survives(server) -> None:
    room = new_id()
    ws, socket_id = await join(server, room, tags=["x", "", "y"], name="ada")
    async with ws:
        await ask(ws, {"op": "remember", "value": "m"}, "memory")
        await ask(ws, {"op": "attach", "value": {"name": "ada", "n": 1}}, "ok")
        await ask(ws, {"op": "auto", "request": "ping", "response": "pong"}, "ok")
        await ask(ws, {"op": "timeout", "ms": 5000}, "timeout")
        await ws.send("ping")
        assert await ws.recv() == "pong"
        stamp = (await ask(ws, {"op": "timestamp"}, "timestamp"))["timestamp"]
        assert stamp is not None

        assert await monitor(server, {"op": "hibernate", "id": room}) == {
            "hibernated": room,
            "live": False,
        }
        assert room not in (await monitor(server, {"op": "live"}))["live"]
        assert (await monitor(server, {"op": "starts", "id": room}))["starts"] == 1

        assert await ask(ws, {"op": "memory"}, "memory") == {"memory": [], "start": 2}
        assert (await monitor(server, {"op": "starts", "id": room}))["starts"] == 2
        assert await ask(ws, {"op": "whoami"}, "id") == {
            "id": socket_id,
            "tags": ["x", "", "y"],
            "ready_state": 1,
        }
        assert await ask(ws, {"op": "attachment"}, "attachment") == {
            "attachment": {"name": "ada", "n": 1}
        }
        assert (await ask(ws, {"op": "timestamp"}, "timestamp"))["timestamp"] == stamp
        assert await ask(ws, {"op": "settings"}, "settings") == {
            "settings": {"timeout": 5000, "auto": ["'ping'", "'pong'"]}
        }
        await ws.send("ping")
        assert await ws.recv() == "pong"  # the pair survived


async def test_idle_objects_hibernate_and_come_back(servers) -> None:
    server = servers["idle"]
    room = new_id()
    ws, socket_id = await join(server, room, tags=["t"], name="ada")
    async with ws:
        # (With so short an idle time the object may already have hibernated once.)
        first = await ask(ws, {"op": "remember", "value": "m"}, "memory")
        assert first["memory"] == ["m"]
        waited = await monitor(server, {"op": "wait_hibernated", "id": room, "timeout": TIMEOUT})
        assert waited["ok"] is True
        starts = await monitor(server, {"op": "starts", "id": room})
        assert starts["starts"] == first["start"]  # hibernated, not re-created
        again = await ask(ws, {"op": "memory"}, "memory")
        assert again["memory"] == []  # in-memory fields reset
        assert again["start"] > first["start"]  # on_start ran again
        assert await ask(ws, {"op": "attachment"}, "attachment") == {
            "attachment": {"name": "ada", "path": f"/ws/room/{room}/"}
        }
        whoami = await ask(ws, {"op": "whoami"}, "id")
        assert (whoami["id"], whoami["tags"]) == (socket_id, ["t"])


async def test_hibernate_eagerly_recreates_the_instance_for_every_event(servers) -> None:
    server = servers["eager"]
    ws, _ = await join(server, new_id())
    async with ws:
        first = await ask(ws, {"op": "remember", "value": "lost"}, "memory")
        assert first["memory"] == ["lost"]
        second = await ask(ws, {"op": "memory"}, "memory")
        assert second["memory"] == []  # memory did not survive the event
        assert second["start"] > first["start"]
        third = await ask(ws, {"op": "memory"}, "memory")
        assert third["start"] > second["start"]


# Auto-response -------------------------------------------------------------------------------


async def test_auto_response_does_not_wake_or_create_a_hibernated_object(server) -> None:
    room = new_id()
    ws, _ = await join(server, room)
    async with ws:
        await ask(ws, {"op": "auto", "request": "ping", "response": "pong"}, "ok")
        await monitor(server, {"op": "hibernate", "id": room})
        before = datetime.now(UTC)
        for _ in range(3):
            await ws.send("ping")
            assert await ws.recv() == "pong"
        after = datetime.now(UTC)
        assert room not in (await monitor(server, {"op": "live"}))["live"]
        assert (await monitor(server, {"op": "starts", "id": room}))["starts"] == 1

        reply = await ask(ws, {"op": "timestamp"}, "timestamp")  # this wakes it
        stamp = datetime.fromisoformat(reply["timestamp"])
        assert stamp.utcoffset() == timedelta(0)
        slack = timedelta(milliseconds=1)  # clock resolution, not a performance bound
        assert before - slack <= stamp <= after + slack
        assert (await monitor(server, {"op": "starts", "id": room}))["starts"] == 2

        # A binary pair answers binary frames, also while hibernated.
        await ask(ws, {"op": "auto_bytes"}, "ok")
        await monitor(server, {"op": "hibernate", "id": room})
        await ws.send(b"\x00ping")
        assert await ws.recv() == b"\x00pong"
        await ws.send("\x00ping")  # a text frame is not the binary request
        assert await ws.recv() == "text:\x00ping"
        assert (await monitor(server, {"op": "starts", "id": room}))["starts"] == 3
        reply = await ask(ws, {"op": "timestamp"}, "timestamp")
        second = datetime.fromisoformat(reply["timestamp"])
        assert second >= stamp

        # Clearing keeps the timestamps; the request is then an ordinary message.
        await ask(ws, {"op": "auto"}, "ok")
        assert (await ask(ws, {"op": "timestamp"}, "timestamp"))["timestamp"] == second.isoformat()
        await ws.send(b"\x00ping")
        assert await ws.recv() == b"bytes:\x00ping"


async def test_auto_response_is_answered_while_the_object_is_busy(server) -> None:
    room = new_id()
    busy, _ = await join(server, room)
    pinger, _ = await join(server, room)
    name = new_id()
    async with busy, pinger:
        await ask(pinger, {"op": "auto", "request": "ping", "response": "pong"}, "ok")
        await ask(busy, {"op": "wait", "name": name, "timeout": TIMEOUT}, "waiting")
        await pinger.send("ping")
        assert await pinger.recv() == "pong"  # answered while busy's handler still runs
        await monitor(server, {"op": "signal", "name": name})
        # busy's handler was still waiting when the pong came back: the signal reached it.
        assert await recv_json(busy, TIMEOUT) == {"waited": name, "signalled": True}


# Event timeout -------------------------------------------------------------------------------


async def test_event_timeout_closes_only_the_offending_socket_with_1011(server) -> None:
    room = new_id()
    observer, observer_id = await observe(server, room)
    async with observer:
        slow, slow_id = await join(server, room)
        other, other_id = await join(server, room)
        async with other:
            await ask(other, {"op": "remember", "value": "lost"}, "memory")
            assert await ask(other, {"op": "timeout", "ms": 200}, "timeout") == {"timeout": 200}
            await slow.send(json.dumps({"op": "sleep", "seconds": 30}))
            await wait_closed(slow)
            assert slow.close_code == 1011
            event = await recv_json_until(
                observer, lambda m: m.get("event") in ("close", "error") and m["id"] == slow_id
            )
            assert event == {"event": "error", "id": slow_id, "error": "HandlerTimeout"}
            # The next event re-created the instance; the others stayed connected.
            assert await ask(other, {"op": "memory"}, "memory") == {"memory": [], "start": 2}
            after = await listed(observer)
            assert sorted(s[0] for s in after[-1]["sockets"]) == sorted([observer_id, other_id])
            assert final_events(after, slow_id) == []  # exactly one final event


# Handshakes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("ws/no-such-route/", (403, 404, 500)),
        ("ws/two/a/b/", (403,)),  # two kwargs and no object_id_kwarg: no object id
        (f"ws/room/{'x' * 300}/", (403,)),  # an object id over 256 bytes
        (room_path("rejected", reject=1), (403,)),  # connect() returned without accepting
    ],
    ids=["unknown-route", "ambiguous-object-id", "object-id-too-long", "not-accepted"],
)
async def test_refused_handshakes_are_clean_and_the_server_keeps_serving(
    server, path: str, statuses: tuple[int, ...]
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(server, path)
    assert refused.value.response.status_code in statuses
    ws, _ = await join(server, new_id())
    async with ws:
        assert await ask(ws, {"op": "memory"}, "memory") == {"memory": [], "start": 1}


# Broadcast and outside code ------------------------------------------------------------------


async def test_broadcast_with_tag_and_exclude_returns_the_count(server) -> None:
    room = new_id()
    a, _ = await join(server, room, tags=["red"])
    b, _ = await join(server, room, tags=["red", "blue"])
    c, _ = await join(server, room, tags=["blue"])
    async with a, b, c:
        reply = await ask(
            a, {"op": "broadcast", "text": "red-not-a", "tag": "red", "exclude_self": True}, "sent"
        )
        assert reply == {"sent": 1}
        assert await b.recv() == "red-not-a"
        assert await ask(b, {"op": "broadcast", "text": "blue", "tag": "blue"}, "sent") == {
            "sent": 2
        }
        assert await c.recv() == "blue"
        assert await ask(c, {"op": "broadcast", "text": "none", "tag": "green"}, "sent") == {
            "sent": 0
        }
        assert await ask(c, {"op": "broadcast", "text": "all"}, "sent") == {"sent": 3}
        # Nothing else reached anybody before the broadcast to all.
        assert await a.recv() == "all"
        assert await b.recv() == "all"


async def test_outside_code_reaches_tagged_sockets_without_waking_the_object(server) -> None:
    room = new_id()
    a, _ = await join(server, room, tags=["red"])
    b, _ = await join(server, room, tags=["red", "blue"])
    c, _ = await join(server, room, tags=["blue"])
    async with a, b, c:
        await monitor(server, {"op": "hibernate", "id": room})
        sent = await monitor(server, {"op": "group_send", "id": room, "tag": "red", "text": "red!"})
        # The server named the same group this process does: names are not per process.
        assert sent == {"sent": Room.tag_group(room, "red")}
        assert await a.recv() == "red!"
        assert await b.recv() == "red!"
        await monitor(server, {"op": "group_send", "id": room, "tag": "blue", "bytes_hex": "00ff"})
        assert await b.recv() == b"\x00\xff"
        assert await c.recv() == b"\x00\xff"
        await monitor(server, {"op": "broadcast_to", "id": room, "tag": "blue", "text": "to blue"})
        assert await b.recv() == "to blue"
        assert await c.recv() == "to blue"
        await monitor(server, {"op": "broadcast_to", "id": room, "text": "to all"})
        for ws in (a, b, c):
            assert await ws.recv() == "to all"  # and nothing before it
        assert room not in (await monitor(server, {"op": "live"}))["live"]
        assert (await monitor(server, {"op": "starts", "id": room}))["starts"] == 1


# Concurrency ---------------------------------------------------------------------------------


async def test_turn_based_objects_run_one_handler_at_a_time(server) -> None:
    room = new_id()
    a, _ = await join(server, room)
    b, _ = await join(server, room)
    name = new_id()
    async with a, b:
        await ask(a, {"op": "wait", "name": name, "timeout": 0.3}, "waiting")
        await b.send(json.dumps({"op": "signal", "name": name}))
        # b's handler could not run while a's waited: the wait ran out.
        assert await recv_json(a, TIMEOUT) == {"waited": name, "signalled": False}
        assert await recv_json(b, TIMEOUT) == {"signalled": name}


async def test_reentrant_objects_interleave_sockets_and_keep_each_in_order(server) -> None:
    room = new_id()
    a, _ = await join(server, room, kind="reentrant")
    b, _ = await join(server, room, kind="reentrant")
    name = new_id()
    async with a, b:
        await ask(a, {"op": "wait", "name": name, "timeout": TIMEOUT}, "waiting")
        # b runs while a's handler waits, and releases it.
        assert await ask(b, {"op": "signal", "name": name}, "signalled") == {"signalled": name}
        assert await recv_json(a, TIMEOUT) == {"waited": name, "signalled": True}

        for n in range(100):
            command = {"op": "seq", "n": n, "yields": (n * 7) % 5}
            await a.send(json.dumps(command))
            await b.send(json.dumps(command))
        for ws in (a, b):
            replies = [(await recv_json(ws, TIMEOUT))["seq"] for _ in range(100)]
            assert replies == list(range(100))
