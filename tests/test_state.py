"""``DurableState``, socket handles, hibernation and fan-out, in the test's own loop.

Objects are ``tests.app.consumers.Probe`` instances driven through Channels'
``WebsocketCommunicator`` (``tests.probe``): each test gets a fresh object id and, being
its own event loop, its own django_durable runtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from django_durable import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    WebSocketRequestResponsePair,
    broadcast_event,
)
from django_durable import exceptions as exc
from django_durable.testing import hibernate, live_object_ids
from tests.app.consumers import Probe, Room, Silent
from tests.app.routing import websocket_urlpatterns
from tests.probe import TIMEOUT, ProbeObject, wait_for
from tests.waiting import wait_until

GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+$")


@pytest.fixture
async def probe():
    obj = ProbeObject()
    yield obj
    await obj.close()


@pytest.fixture
async def reentrant_probe():
    obj = ProbeObject(reentrant=True)
    yield obj
    await obj.close()


def tags_query(tags: list[str]) -> str:
    return urlencode({"tags": json.dumps(tags)})


def ids(sockets) -> list[str]:
    return sorted(s.id for s in sockets)


# Sockets: accept, get_websockets, get_tags -------------------------------------------


async def test_get_websockets_lists_accepted_sockets_by_tag(probe) -> None:
    a = await probe.connect(tags_query(["red", "all"]))
    b = await probe.connect(tags_query(["blue", "all"]))
    c = await probe.connect()

    def look(self, ws):
        state = self.state
        return {
            "all": ids(state.get_websockets()),
            "red": ids(state.get_websockets("red")),
            "tag all": ids(state.get_websockets("all")),
            "missing": ids(state.get_websockets("missing")),
            "tags": [state.get_tags(s) for s in sorted(state.get_websockets(), key=lambda s: s.id)],
            "states": {s.ready_state for s in state.get_websockets()},
        }

    seen = await c.run(look)
    assert seen["all"] == sorted([a.id, b.id, c.id])
    assert seen["red"] == [a.id]
    assert seen["tag all"] == sorted([a.id, b.id])
    assert seen["missing"] == []
    by_id = {a.id: ["red", "all"], b.id: ["blue", "all"], c.id: []}
    assert seen["tags"] == [by_id[i] for i in sorted(by_id)]
    assert seen["states"] == {OPEN}


async def test_handles_compare_and_hash_by_socket_id(probe) -> None:
    a = await probe.connect()
    await probe.connect()

    def look(self, ws):
        listed = self.state.get_websockets()
        mine = [s for s in listed if s == ws]
        return len(mine), hash(mine[0]) == hash(ws), mine[0].id == ws.id, len(set(listed))

    assert await a.run(look) == (1, True, True, 2)


async def test_get_tags_of_an_unaccepted_socket_fails(probe) -> None:
    seen = {}

    def connect(self, ws):
        seen["state before"] = ws.ready_state
        try:
            self.state.get_tags(ws)
        except Exception as error:
            seen["error"] = error
        self.state.accept_websocket(ws, ["t"])
        seen["state after"] = ws.ready_state
        seen["tags after"] = self.state.get_tags(ws)

    probe.on_connect(connect)
    await probe.connect()
    error = seen["error"]
    assert isinstance(error, exc.WebSocketNotAccepted)
    assert isinstance(error, RuntimeError)
    assert isinstance(error, exc.DurableError)
    assert seen["state before"] == CONNECTING
    assert seen["state after"] == OPEN
    assert seen["tags after"] == ["t"]


async def test_second_accept_fails_and_changes_nothing(probe) -> None:
    seen = {}

    def connect(self, ws):
        self.state.accept_websocket(ws, ["first"])
        try:
            self.state.accept_websocket(ws, ["second"])
        except Exception as error:
            seen["error"] = error

    probe.on_connect(connect)
    client = await probe.connect()
    error = seen["error"]
    assert isinstance(error, exc.WebSocketAlreadyAccepted)
    assert isinstance(error, RuntimeError)
    assert isinstance(error, exc.DurableError)

    def later(self, ws):
        try:
            self.state.accept_websocket(ws, ["third"])
        except Exception as error:
            return error, self.state.get_tags(ws), len(self.state.get_websockets())
        return None, self.state.get_tags(ws), len(self.state.get_websockets())

    later_error, tags, count = await client.run(later)
    assert isinstance(later_error, exc.WebSocketAlreadyAccepted)
    assert tags == ["first"]
    assert count == 1


async def test_returning_from_connect_without_accepting_rejects_the_handshake(probe) -> None:
    probe.on_connect(lambda self, ws: None)
    await probe.connect(expect_accept=False)
    probe.on_connect(None)
    client = await probe.connect()
    assert await client.run(lambda self, ws: ids(self.state.get_websockets())) == [client.id]


async def test_connect_that_raises_before_accepting_rejects_cleanly(probe, caplog) -> None:
    def connect(self, ws):
        raise RuntimeError("connect failed on purpose")

    probe.on_connect(connect)
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        await probe.connect(expect_accept=False)
    assert "connect failed on purpose" in caplog.text
    probe.on_connect(None)
    client = await probe.connect()
    seen = await client.run(lambda self, ws: (ids(self.state.get_websockets()), self.start_number))
    assert seen == ([client.id], 1)  # nothing registered; the same instance


async def test_connect_that_raises_after_accepting_keeps_the_socket(probe, caplog) -> None:
    def connect(self, ws):
        self.state.accept_websocket(ws, ["t"])
        raise RuntimeError("connect failed on purpose")

    probe.on_connect(connect)
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        client = await probe.connect()
    assert "connect failed on purpose" in caplog.text
    seen = await client.run(lambda self, ws: (ids(self.state.get_websockets("t")), ws.ready_state))
    assert seen == ([client.id], OPEN)


async def test_scope_is_available_only_in_connect(probe) -> None:
    seen = {}

    def connect(self, ws):
        seen["path"] = ws.scope["path"]
        self.state.accept_websocket(ws)

    probe.on_connect(connect)
    client = await probe.connect()
    assert seen["path"] == f"/ws/probe/{probe.id}/"

    def later(self, ws):
        try:
            ws.scope  # noqa: B018
        except Exception as error:
            return error
        return None

    error = await client.run(later)
    assert isinstance(error, exc.ScopeUnavailable)
    assert isinstance(error, exc.DurableError)


async def test_a_socket_cannot_send_or_close_before_it_is_accepted(probe) -> None:
    seen = {}

    async def connect(self, ws):
        for name, call in (("send", ws.send("early")), ("close", ws.close(4000))):
            try:
                await call
            except Exception as error:
                seen[name] = error
        self.state.accept_websocket(ws)
        await ws.send("welcome")  # fine once accepted, still inside connect()

    probe.on_connect(connect)
    client = await probe.connect()
    assert isinstance(seen["send"], exc.WebSocketNotAccepted)
    assert isinstance(seen["close"], exc.WebSocketNotAccepted)
    assert await client.receive_data() == "welcome"


async def test_deserialize_attachment_returns_a_fresh_copy(probe) -> None:
    client = await probe.connect()

    def attach(self, ws):
        before = ws.deserialize_attachment()
        ws.serialize_attachment({"items": [1, 2], "tags": {"a"}})
        copy = ws.deserialize_attachment()
        copy["items"].append(3)
        copy["tags"].add("b")
        again = ws.deserialize_attachment()
        return before, again, copy is again

    before, again, same = await client.run(attach)
    assert before is None  # nothing set yet
    assert again == {"items": [1, 2], "tags": {"a"}}
    assert same is False


# Delivery ------------------------------------------------------------------------------


async def test_text_arrives_as_str_and_binary_as_bytes(probe) -> None:
    client = await probe.connect()
    await client.send("héllo")
    assert await client.receive_data() == "echo:héllo"
    await client.send(b"\x00\xff")
    assert await client.receive_data() == b"echo:\x00\xff"
    messages = [e[2] for e in probe.events if e[0] == "message"]
    assert messages == ["héllo", b"\x00\xff"]
    assert [type(m) for m in messages] == [str, bytes]


async def test_a_handler_that_raises_keeps_the_socket_and_the_instance(probe, caplog) -> None:
    client = await probe.connect()

    def remember(self, ws):
        self.memory.append("kept")
        return self.start_number

    assert await client.run(remember) == 1
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        await client.send("raise")
        result = await client.run(lambda self, ws: (self.memory, self.start_number, ws.ready_state))
    assert result == (["kept"], 1, OPEN)
    assert probe.starts == 1
    assert any(
        r.levelno >= logging.ERROR and r.exc_info and "on purpose" in str(r.exc_info[1])
        for r in caplog.records
    ), caplog.text
    await client.send("after")
    assert await client.receive_data() == "echo:after"


async def test_missing_handlers_ignore_events(caplog) -> None:
    object_id = f"silent-{uuid.uuid4().hex[:12]}"
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/silent/{object_id}/")
    with caplog.at_level(logging.WARNING, logger="django_durable"):
        accepted, _ = await comm.connect()
        assert accepted  # the default connect accepts
        await comm.send_input({"type": "websocket.receive", "text": "hello"})
        await comm.send_input({"type": "websocket.receive", "bytes": b"\x01"})
        # The gateway took both frames (and queued them for the object in that same step).
        await wait_until(
            comm.input_queue.empty, message="the gateway to take both frames", timeout=TIMEOUT
        )
        assert object_id in live_object_ids(Silent)
        # Queued after the two messages: once it is done, they were dispatched.
        await hibernate(Silent, object_id)
        assert object_id not in live_object_ids(Silent)
        assert comm.output_queue.empty()
        await comm.disconnect(1000)
        await hibernate(Silent, object_id)
    # (Only this object's records: other runtimes of this process may log meanwhile.)
    about_it = [r for r in caplog.records if object_id in r.getMessage()]
    assert not [r for r in about_it if r.levelno >= logging.WARNING], caplog.text


async def test_one_sockets_events_are_delivered_in_order(probe) -> None:
    client = await probe.connect()
    for n in range(200):
        await client.send(f"n{n}")
    received = [await client.receive_data() for _ in range(200)]
    assert received == [f"echo:n{n}" for n in range(200)]


# Final events ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "was_clean"),
    [(1000, True), (4000, True), (1005, True), (1001, True), (1006, False)],
)
async def test_client_close_gives_exactly_one_final_event(probe, code, was_clean) -> None:
    client = await probe.connect()
    other = await probe.connect()
    await client.disconnect(code)
    event = await probe.wait_event(lambda e: e[0] == "close" and e[1] == client.id)
    _, _, got_code, reason, got_clean, listed_during, ready_state = event
    assert (got_code, got_clean) == (code, was_clean)
    assert isinstance(reason, str)
    if code == 1006:
        assert reason  # says what happened
    assert listed_during  # still listed during its own close handler...
    assert ready_state == CLOSED  # ...as CLOSED
    # ...and gone after it.
    assert await other.run(lambda self, ws: ids(self.state.get_websockets())) == [other.id]
    assert probe.final_events(client.id) == [event]


async def test_server_close_ends_in_websocket_close_with_the_peers_code(probe) -> None:
    client = await probe.connect()
    other = await probe.connect()

    async def close(self, ws):
        await ws.close(4001, "bye")
        return ws.ready_state, [(s.id, s.ready_state) for s in self.state.get_websockets()]

    ready_state, listed = await client.run(close)
    assert ready_state == CLOSING
    assert (client.id, CLOSING) in listed  # a socket the server is closing is listed
    message = await client.receive()
    assert (message["type"], message["code"]) == ("websocket.close", 4001)
    assert probe.final_events(client.id) == []  # nothing until the peer answers

    # Still listed (CLOSING) from another socket's handler, until the final event.
    states = await other.run(
        lambda self, ws: {s.id: s.ready_state for s in self.state.get_websockets()}
    )
    assert states == {client.id: CLOSING, other.id: OPEN}

    await client.disconnect(4002)  # the peer's answer
    event = await probe.wait_event(lambda e: e[0] == "close" and e[1] == client.id)
    assert event[2] == 4002
    assert event[4] is True
    assert await other.run(lambda self, ws: ids(self.state.get_websockets())) == [other.id]
    assert len(probe.final_events(client.id)) == 1


async def test_closing_a_closed_socket_is_a_no_op(probe) -> None:
    client = await probe.connect()

    async def close_twice(self, ws):
        await ws.close(4000)
        await ws.close(4001)
        return ws.ready_state

    assert await client.run(close_twice) == CLOSING
    assert (await client.receive())["code"] == 4000
    assert client.comm.output_queue.empty()  # no second close frame
    await client.disconnect(4000)
    await probe.wait_event(lambda e: e[0] == "close" and e[1] == client.id)
    assert len(probe.final_events(client.id)) == 1


async def test_send_after_close_raises_also_across_hibernation(probe) -> None:
    a = await probe.connect()
    b = await probe.connect()

    async def close_then_send(self, ws):
        await ws.close(4000)
        try:
            await ws.send("too late")
        except Exception as error:
            return ws, error
        return ws, None

    handle, error = await a.run(close_then_send)
    assert isinstance(error, exc.WebSocketClosed)
    assert isinstance(error, RuntimeError)
    assert isinstance(error, exc.DurableError)
    assert (await a.receive())["code"] == 4000

    await hibernate(Probe, probe.id)
    assert probe.id not in live_object_ids(Probe)

    async def from_new_instance(self, ws):
        closing = [s for s in self.state.get_websockets() if s.id == a.id]
        assert len(closing) == 1
        results = [self.start_number, closing[0].ready_state]
        try:
            await closing[0].send("too late")
        except Exception as error:
            results.append(error)
        await closing[0].close(4003)  # a no-op on a closing socket
        return results

    start, state, error = await b.run(from_new_instance)
    assert start == 2
    assert state == CLOSING
    assert isinstance(error, exc.WebSocketClosed)
    assert a.comm.output_queue.empty()
    # The handle kept from before hibernation refuses too.
    with pytest.raises(exc.WebSocketClosed):
        await handle.send("too late")

    await a.disconnect(4000)
    await probe.wait_event(lambda e: e[0] == "close" and e[1] == a.id)
    with pytest.raises(exc.WebSocketClosed):
        await handle.send("too late")


async def test_send_to_a_socket_the_client_closed_raises(probe) -> None:
    a = await probe.connect()
    b = await probe.connect()
    handle = await a.run(lambda self, ws: ws)
    await a.disconnect(1000)
    await probe.wait_event(lambda e: e[0] == "close" and e[1] == a.id)
    with pytest.raises(exc.WebSocketClosed):
        await handle.send("too late")
    assert await b.run(lambda self, ws: ids(self.state.get_websockets())) == [b.id]


# Hibernation ------------------------------------------------------------------------------


async def test_hibernate_drops_the_instance_and_state_survives(probe) -> None:
    a = await probe.connect(tags_query(["x", "", "y"]))
    b = await probe.connect()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def prepare(self, ws):
        self.memory.append("in memory only")
        ws.serialize_attachment({"name": "ada", "when": when, "raw": b"\x00", "set": {1, 2}})
        self.state.set_websocket_auto_response(WebSocketRequestResponsePair("ping", "pong"))
        self.state.set_hibernatable_websocket_event_timeout(5000)
        return self.start_number

    assert await a.run(prepare) == 1
    await a.send("ping")
    assert await a.receive_data() == "pong"
    stamp = await b.run(
        lambda self, ws: self.state.get_websocket_auto_response_timestamp(handle(self, a.id))
    )
    assert stamp is not None

    assert probe.id in live_object_ids(Probe)
    await hibernate(Probe, probe.id)
    assert probe.id not in live_object_ids(Probe)
    assert probe.starts == 1

    def after(self, ws):
        me = handle(self, a.id)
        return {
            "memory": self.memory,
            "start": self.start_number,
            "tags": self.state.get_tags(ws),
            "attachment": ws.deserialize_attachment(),
            "listed": ids(self.state.get_websockets()),
            "pair": self.state.get_websocket_auto_response(),
            "timeout": self.state.get_hibernatable_websocket_event_timeout(),
            "stamp": self.state.get_websocket_auto_response_timestamp(me),
            "state": ws.ready_state,
        }

    seen = await a.run(after)
    assert seen["memory"] == []  # in-memory fields reset
    assert seen["start"] == 2  # on_start ran again, before the event
    assert seen["tags"] == ["x", "", "y"]
    assert seen["attachment"] == {"name": "ada", "when": when, "raw": b"\x00", "set": {1, 2}}
    assert seen["listed"] == sorted([a.id, b.id])
    assert seen["pair"] == WebSocketRequestResponsePair("ping", "pong")
    assert seen["timeout"] == 5000
    assert seen["stamp"] == stamp
    assert seen["state"] == OPEN
    assert probe.starts == 2
    assert [e for e in probe.events if e[0] == "start"] == [("start", 1), ("start", 2)]


def handle(instance, socket_id):
    """The object's handle of socket ``socket_id``."""
    (found,) = [s for s in instance.state.get_websockets() if s.id == socket_id]
    return found


async def test_hibernate_of_a_hibernated_object_is_a_no_op(probe) -> None:
    client = await probe.connect()
    await hibernate(Probe, probe.id)
    await hibernate(Probe, probe.id)
    assert probe.id not in live_object_ids(Probe)
    assert await client.run(lambda self, ws: self.start_number) == 2


async def test_hibernate_does_not_wait_for_events_queued_behind_it(probe) -> None:
    client = await probe.connect()
    gate = asyncio.Event()

    async def blocked(self, ws):
        await gate.wait()  # released by the test once hibernate() has returned
        return self.start_number

    job = await client.submit(blocked)  # reaches the mailbox just after the hibernation
    await wait_for(hibernate(Probe, probe.id))  # drops the instance; must not wait for job
    gate.set()
    assert await wait_for(job) == 2  # the queued event re-created the instance


async def test_hibernate_eagerly_drops_the_instance_after_every_event(probe) -> None:
    with override_settings(DURABLE_OBJECTS={"IDLE_TIMEOUT": 10, "HIBERNATE_EAGERLY": True}):
        client = await probe.connect()

        def remember(self, ws):
            self.memory.append("lost")
            ws.serialize_attachment("kept")
            return list(self.memory), self.start_number

        first = await client.run(remember)
        await wait_until(
            lambda: probe.id not in live_object_ids(Probe),
            message="the probe to hibernate after its event",
            timeout=TIMEOUT,
        )
        second = await client.run(lambda self, ws: (self.memory, self.start_number))
        attachment = await client.run(lambda self, ws: ws.deserialize_attachment())
    assert first[0] == ["lost"]
    assert second == ([], first[1] + 1)
    assert attachment == "kept"


async def test_hibernate_eagerly_applies_to_reentrant_objects(reentrant_probe) -> None:
    probe = reentrant_probe
    with override_settings(DURABLE_OBJECTS={"IDLE_TIMEOUT": 10, "HIBERNATE_EAGERLY": True}):
        client = await probe.connect()

        def remember(self, ws):
            self.memory.append("lost")
            return list(self.memory), self.start_number

        first = await client.run(remember)
        await wait_until(
            lambda: probe.id not in live_object_ids(probe.cls),
            message="the probe to hibernate after its event",
            timeout=TIMEOUT,
        )
        second = await client.run(lambda self, ws: (self.memory, self.start_number))
    assert first[0] == ["lost"]
    assert second == ([], first[1] + 1)


# Auto-response ---------------------------------------------------------------------------


async def test_auto_response_neither_wakes_nor_creates_a_hibernated_object(probe) -> None:
    a = await probe.connect()
    b = await probe.connect()
    await a.run(
        lambda self, ws: self.state.set_websocket_auto_response(
            WebSocketRequestResponsePair("ping", "pong")
        )
    )
    await hibernate(Probe, probe.id)
    assert probe.id not in live_object_ids(Probe)

    before = datetime.now(UTC)
    for _ in range(3):
        await a.send("ping")
        assert await a.receive_data() == "pong"
    after = datetime.now(UTC)
    assert probe.id not in live_object_ids(Probe)
    assert probe.starts == 1
    assert not [e for e in probe.events if e[0] == "message"]

    def stamps(self, ws):
        state = self.state
        return [
            (s.id, state.get_websocket_auto_response_timestamp(s)) for s in state.get_websockets()
        ]

    seen = dict(await b.run(stamps))
    assert probe.starts == 2  # b's event, not the pings, woke it
    stamp = seen[a.id]
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    slack = timedelta(milliseconds=1)
    assert before - slack <= stamp <= after + slack
    assert seen[b.id] is None  # b never sent the request


async def test_auto_response_is_answered_while_a_handler_runs(probe) -> None:
    busy = await probe.connect()
    pinger = await probe.connect()
    await busy.run(
        lambda self, ws: self.state.set_websocket_auto_response(
            WebSocketRequestResponsePair("ping", "pong")
        )
    )
    gate = asyncio.Event()

    async def blocked(self, ws):
        await gate.wait()
        return "released"

    job = await busy.submit(blocked)
    await pinger.send("ping")
    assert await pinger.receive_data() == "pong"
    assert not job.done()  # the handler was still running when the pong was sent
    gate.set()
    assert await wait_for(job) == "released"


async def test_auto_response_matches_exactly_and_by_frame_type(probe) -> None:
    client = await probe.connect()
    await client.run(
        lambda self, ws: self.state.set_websocket_auto_response(
            WebSocketRequestResponsePair("ping", b"\x00pong")
        )
    )
    await client.send("ping")
    assert await client.receive_data() == b"\x00pong"
    for near_miss in (" ping", "ping\n", "PING", "pin"):
        await client.send(near_miss)
        assert await client.receive_data() == "echo:" + near_miss
    await client.send(b"ping")  # a binary frame never matches a text request
    assert await client.receive_data() == b"echo:ping"

    await client.run(
        lambda self, ws: self.state.set_websocket_auto_response(
            WebSocketRequestResponsePair(b"\x00ping", "pong")
        )
    )
    await client.send(b"\x00ping")
    assert await client.receive_data() == "pong"
    await client.send("\x00ping")  # a text frame never matches a bytes request
    assert await client.receive_data() == "echo:\x00ping"
    delivered = [e[2] for e in probe.events if e[0] == "message"]
    assert delivered == [" ping", "ping\n", "PING", "pin", b"ping", "\x00ping"]


async def test_auto_response_timestamp_updates_and_clearing_keeps_it(probe) -> None:
    client = await probe.connect()
    await client.run(
        lambda self, ws: self.state.set_websocket_auto_response(
            WebSocketRequestResponsePair("ping", "pong")
        )
    )
    stamp_of = lambda self, ws: self.state.get_websocket_auto_response_timestamp(ws)  # noqa: E731
    assert await client.run(stamp_of) is None
    await client.send("ping")
    assert await client.receive_data() == "pong"
    first = await client.run(stamp_of)
    assert first is not None

    await wait_until(
        lambda: datetime.now(UTC) > first + timedelta(milliseconds=2),
        message="the clock to pass the first timestamp",
        timeout=TIMEOUT,
    )
    await client.send("ping")
    assert await client.receive_data() == "pong"
    second = await client.run(stamp_of)
    assert second > first

    def clear(self, ws):
        self.state.set_websocket_auto_response()
        return self.state.get_websocket_auto_response()

    assert await client.run(clear) is None
    assert await client.run(stamp_of) == second  # clearing keeps the timestamps
    await client.send("ping")  # no longer answered: delivered to the handler
    assert await client.receive_data() == "echo:ping"
    await hibernate(Probe, probe.id)
    assert await client.run(stamp_of) == second
    assert await client.run(lambda self, ws: self.state.get_websocket_auto_response()) is None


# Broadcast -------------------------------------------------------------------------------


async def test_broadcast_with_tag_and_exclude_returns_the_count(probe) -> None:
    a = await probe.connect(tags_query(["red", "all"]))
    b = await probe.connect(tags_query(["red", "all"]))
    c = await probe.connect(tags_query(["blue", "all"]))

    async def send(self, ws):
        state = self.state
        return [
            await state.broadcast("red-not-a", tag="red", exclude=[ws]),
            await state.broadcast(b"all-not-b", exclude=[b.id]),
            await state.broadcast("nobody", tag="green"),
            await state.broadcast("nobody", tag="blue", exclude=[c.id]),
        ]

    assert await a.run(send) == [1, 2, 0, 0]
    assert await b.receive_data() == "red-not-a"
    assert await a.receive_data() == b"all-not-b"
    assert await c.receive_data() == b"all-not-b"
    # A final broadcast to everyone proves nothing else reached anybody.
    assert await c.run(lambda self, ws: self.state.broadcast("end")) == 3
    for client in (a, b, c):
        assert await client.receive_data() == "end"


async def test_broadcast_skips_sockets_that_are_closing(probe) -> None:
    a = await probe.connect()
    b = await probe.connect()

    async def close_b_then_broadcast(self, ws):
        await handle(self, b.id).close(4000)
        return await self.state.broadcast("hi")

    assert await a.run(close_b_then_broadcast) == 1
    assert await a.receive_data() == "hi"
    assert (await b.receive())["type"] == "websocket.close"
    assert b.comm.output_queue.empty()


async def test_outside_code_reaches_tagged_sockets_without_waking_the_object(probe) -> None:
    a = await probe.connect(tags_query(["red"]))
    b = await probe.connect(tags_query(["red", "blue"]))
    c = await probe.connect(tags_query(["blue"]))
    await hibernate(Probe, probe.id)

    layer = get_channel_layer()
    red, blue = Probe.tag_group(probe.id, "red"), Probe.tag_group(probe.id, "blue")
    await layer.group_send(red, broadcast_event(red, "group red"))
    assert await a.receive_data() == "group red"
    assert await b.receive_data() == "group red"
    await layer.group_send(blue, broadcast_event(blue, b"\x01blue"))
    assert await b.receive_data() == b"\x01blue"
    assert await c.receive_data() == b"\x01blue"

    await Probe.broadcast_to(probe.id, "to blue", tag="blue")
    assert await b.receive_data() == "to blue"
    assert await c.receive_data() == "to blue"
    await Probe.broadcast_to(probe.id, b"to all")
    for client in (a, b, c):
        assert await client.receive_data() == b"to all"

    for client in (a, b, c):
        assert client.comm.output_queue.empty()
    assert probe.id not in live_object_ids(Probe)
    assert probe.starts == 1
    assert not [e for e in probe.events if e[0] == "message"]


def test_tag_groups_are_valid_channels_group_names_and_deterministic() -> None:
    layer = get_channel_layer()
    tags = [None, "", "😀", "é" * 128, "a" * 256, "a b/c:d#e", "members", "Members"]
    object_ids = ["room", "ünïcödé room/1", "x" * 256]
    names = set()
    for object_id in object_ids:
        for tag in tags:
            name = Room.tag_group(object_id, tag)
            assert len(name) < 100, name
            assert GROUP_NAME.match(name), name
            layer.require_valid_group_name(name)  # raises if not
            assert Room.tag_group(object_id, tag) == name  # deterministic
            names.add(name)
    assert len(names) == len(tags) * len(object_ids)  # distinct per object and tag
    assert Probe.tag_group("room", "members") != Room.tag_group("room", "members")


def test_tag_group_names_cannot_collide_whatever_the_names_ids_and_tags() -> None:
    """The hashed input is length-prefixed: separators inside parts change nothing.

    With the old ``name NUL id NUL #tag`` input these pairs hashed the same text.
    """
    from django_durable.consumer import group_name

    ambiguous = [
        (("N", "a\x00#b", "c"), ("N", "a", "b\x00#c")),
        (("N\x00a", "b", None), ("N", "a\x00b", None)),
        (("N", "a", "\x00*"), ("N", "a\x00#", "*")),
        (("N", "a", None), ("N", "a", "")),
        (("N", "a", "*"), ("N", "a", None)),
    ]
    for first, second in ambiguous:
        assert group_name(*first) != group_name(*second), (first, second)
    # NUL and every other character in tags still give valid, distinct group names.
    tags = ["", "\x00", "\x00\x00", "#", "*", "a\x00b", "\x7f", "\n"]
    names = {Room.tag_group("room", tag) for tag in tags}
    assert len(names) == len(tags)
    for name in names:
        get_channel_layer().require_valid_group_name(name)


# Concurrency -----------------------------------------------------------------------------


async def test_turn_based_objects_run_one_handler_at_a_time(probe) -> None:
    a = await probe.connect()
    b = await probe.connect()
    order = []

    async def waits(self, ws):
        # b's handler cannot run while this one waits: the wait runs out.
        self.gate = asyncio.Event()
        try:
            async with asyncio.timeout(0.3):
                await self.gate.wait()
        except TimeoutError:
            order.append("a timed out")
            return False
        order.append("a signalled")
        return True

    def signals(self, ws):
        order.append("b runs")
        self.gate.set()

    waiting = await a.submit(waits)
    signalling = await b.submit(signals)
    assert await wait_for(waiting) is False
    await wait_for(signalling)
    assert order == ["a timed out", "b runs"]


async def test_reentrant_objects_interleave_handlers_of_different_sockets(
    reentrant_probe,
) -> None:
    a = await reentrant_probe.connect()
    b = await reentrant_probe.connect()
    gate = asyncio.Event()

    async def waits(self, ws):
        async with asyncio.timeout(3):
            await gate.wait()
        return "a done"

    def signals(self, ws):
        gate.set()
        return "b done"

    waiting = await a.submit(waits)
    assert await b.run(signals) == "b done"  # ran while a's handler was waiting
    assert await wait_for(waiting) == "a done"


async def test_reentrant_objects_keep_one_sockets_events_in_order(reentrant_probe) -> None:
    a = await reentrant_probe.connect()
    b = await reentrant_probe.connect()
    seen: dict[str, list[int]] = {a.id: [], b.id: []}

    def job(n):
        async def run(self, ws):
            for _ in range((n * 7) % 5):  # unequal await points: interleaving would reorder
                await asyncio.sleep(0)
            seen[ws.id].append(n)

        return run

    futures = []
    for n in range(60):
        futures.append(await a.submit(job(n)))
        futures.append(await b.submit(job(n)))
    await wait_for(asyncio.gather(*futures))
    assert seen[a.id] == list(range(60))
    assert seen[b.id] == list(range(60))


async def test_reentrant_close_is_the_last_event_of_its_socket(reentrant_probe) -> None:
    a = await reentrant_probe.connect()
    b = await reentrant_probe.connect()
    done = []

    def job(n):
        async def run(self, ws):
            for _ in range(3):
                await asyncio.sleep(0)
            done.append(n)

        return run

    for n in range(10):
        await a.submit(job(n))
    await a.disconnect(1000)
    await reentrant_probe.wait_event(lambda e: e[0] == "close" and e[1] == a.id)
    assert done == list(range(10))  # every message handled before the close
    assert await b.run(lambda self, ws: ids(self.state.get_websockets())) == [b.id]


# Event timeout -----------------------------------------------------------------------------


async def test_event_timeout_discards_the_instance_and_ends_only_that_socket(probe) -> None:
    a = await probe.connect()
    b = await probe.connect()

    def configure(self, ws):
        self.memory.append("lost with the instance")
        self.state.set_hibernatable_websocket_event_timeout(100)

    await b.run(configure)

    async def too_slow(self, ws):
        await asyncio.sleep(30)

    await a.submit(too_slow)
    event = await probe.wait_event(lambda e: e[0] in ("close", "error") and e[1] == a.id)
    assert event[0] == "error"
    assert event[2] == "HandlerTimeout"
    assert probe.final_events(a.id) == [event]
    # a's connection ends with 1011: under daphne the gateway raises the error (daphne's
    # only path to 1011); under other servers, like this communicator, it says so in the
    # ASGI close message.
    while True:
        output = await a.comm.receive_output(3)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == 1011
    await a.comm.wait(3)
    a.connected = False

    seen = await b.run(
        lambda self, ws: (self.memory, self.start_number, ids(self.state.get_websockets()))
    )
    assert seen == ([], 2, [b.id])  # re-created; b untouched; a gone
    assert (
        await b.run(lambda self, ws: self.state.get_hibernatable_websocket_event_timeout()) == 100
    )


async def test_a_connect_past_the_event_timeout_is_rejected(probe) -> None:
    a = await probe.connect()
    await a.run(lambda self, ws: self.state.set_hibernatable_websocket_event_timeout(100))

    async def slow_connect(self, ws):
        await asyncio.sleep(30)
        self.state.accept_websocket(ws)

    probe.on_connect(slow_connect)
    await probe.connect(expect_accept=False)
    probe.on_connect(None)
    # The instance was discarded: the next event re-creates it; a stayed connected.
    seen = await a.run(lambda self, ws: (self.start_number, ids(self.state.get_websockets())))
    assert seen == (2, [a.id])
