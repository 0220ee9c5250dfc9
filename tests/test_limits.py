"""The contract's limits (SPEC §3, §4), each at its edge and one past it.

Everything goes through the public API inside a live object (``tests.probe``): a limit
checked only by a helper nobody calls would not count. A failing call must raise the
documented class (a ``DurableError`` that is also a ``ValueError`` or ``RuntimeError``),
name the limit and the value given, and leave no trace.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.test import override_settings

from django_durable import CLOSING, CONNECTING, OPEN, WebSocketRequestResponsePair
from django_durable import exceptions as exc
from django_durable.encoding import encode
from tests.probe import ProbeObject


@pytest.fixture
async def probe():
    obj = ProbeObject()
    yield obj
    await obj.close()


def tags_query(tags: list[str]) -> str:
    return urlencode({"tags": json.dumps(tags)})


def settings_with(**values):
    return override_settings(DURABLE_OBJECTS={"IDLE_TIMEOUT": 10, **values})


def catch(fn, *args, **kwargs) -> BaseException | None:
    try:
        fn(*args, **kwargs)
    except Exception as error:
        return error
    return None


async def catch_async(fn, *args, **kwargs) -> BaseException | None:
    try:
        await fn(*args, **kwargs)
    except Exception as error:
        return error
    return None


# Error classes (SPEC §3) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [
        exc.InvalidTags,
        exc.AttachmentTooLarge,
        exc.AutoResponseTooLarge,
        exc.InvalidEventTimeout,
        exc.InvalidCloseCode,
        exc.InvalidCloseReason,
    ],
)
def test_invalid_argument_errors_are_value_errors(cls) -> None:
    assert issubclass(cls, exc.DurableError)
    assert issubclass(cls, ValueError)
    assert not issubclass(cls, RuntimeError)


@pytest.mark.parametrize(
    "cls",
    [
        exc.TooManyWebSockets,
        exc.WebSocketAlreadyAccepted,
        exc.WebSocketNotAccepted,
        exc.WebSocketClosed,
    ],
)
def test_invalid_state_errors_are_runtime_errors(cls) -> None:
    assert issubclass(cls, exc.DurableError)
    assert issubclass(cls, RuntimeError)
    assert not issubclass(cls, ValueError)


# Tags ----------------------------------------------------------------------------------


async def test_ten_distinct_tags_are_accepted(probe) -> None:
    tags = [f"tag-{chr(ord('a') + i)}" for i in range(10)]
    client = await probe.connect(tags_query(tags))
    assert await client.run(lambda self, ws: self.state.get_tags(ws)) == tags


async def test_eleventh_distinct_tag_fails_and_leaves_no_trace(probe) -> None:
    outcome = {}

    def connect(self, ws):
        tags = [f"tag-{chr(ord('a') + i)}" for i in range(11)]
        outcome["error"] = catch(self.state.accept_websocket, ws, tags)
        outcome["count"] = len(self.state.get_websockets())
        outcome["ready_state"] = ws.ready_state
        outcome["tagged"] = len(self.state.get_websockets("tag-a"))
        # Nothing was registered: the same socket can still be accepted.
        self.state.accept_websocket(ws, ["tag-a"])

    probe.on_connect(connect)
    client = await probe.connect()
    error = outcome["error"]
    assert isinstance(error, exc.InvalidTags)
    assert isinstance(error, ValueError)
    assert isinstance(error, exc.DurableError)
    assert "10" in str(error)
    assert "tag-k" in str(error)  # the value given
    assert outcome["count"] == 0
    assert outcome["tagged"] == 0
    assert outcome["ready_state"] == CONNECTING
    assert await client.run(lambda self, ws: self.state.get_tags(ws)) == ["tag-a"]


async def test_duplicate_tags_are_dropped_and_do_not_count(probe) -> None:
    # 10 distinct tags spread over 15 entries: duplicates count neither against the
    # limit nor in the order (the first occurrence keeps its place).
    distinct = [f"t{i}" for i in range(10)]
    given = ["t3", "t0", "t3", "t1", "t0", *distinct, "t9"]
    client = await probe.connect(tags_query(given))
    expected = ["t3", "t0", "t1", "t2", "t4", "t5", "t6", "t7", "t8", "t9"]
    assert await client.run(lambda self, ws: self.state.get_tags(ws)) == expected


@pytest.mark.parametrize(
    "tag",
    [
        "a" * 256,
        "é" * 128,  # 2 bytes each: 256 bytes in 128 characters
        "😀" * 64,  # 4 bytes each
        "",  # the empty string is a valid tag
    ],
    ids=["ascii-256", "e-acute-256-bytes", "emoji-256-bytes", "empty"],
)
async def test_tag_at_the_byte_limit_is_accepted(probe, tag: str) -> None:
    client = await probe.connect(tags_query([tag, "other"]))
    result = await client.run(
        lambda self, ws: (self.state.get_tags(ws), [s.id for s in self.state.get_websockets(tag)])
    )
    assert result == ([tag, "other"], [client.id])


@pytest.mark.parametrize(
    "tag",
    ["a" * 257, "é" * 128 + "a", "😀" * 64 + "a", "é" * 129],
    ids=["ascii-257", "e-acute-257-bytes", "emoji-257-bytes", "e-acute-258-bytes"],
)
async def test_tag_past_the_byte_limit_fails_and_leaves_no_trace(probe, tag: str) -> None:
    outcome = {}

    def connect(self, ws):
        outcome["error"] = catch(self.state.accept_websocket, ws, ["fine", tag])
        outcome["fine"] = len(self.state.get_websockets("fine"))
        outcome["all"] = len(self.state.get_websockets())
        outcome["ready_state"] = ws.ready_state
        # A rejected accept leaves the socket CONNECTING: returning rejects the handshake.

    probe.on_connect(connect)
    await probe.connect(expect_accept=False)
    error = outcome["error"]
    assert isinstance(error, exc.InvalidTags)
    assert isinstance(error, ValueError)
    size = len(tag.encode())
    assert "256" in str(error)
    assert str(size) in str(error)
    assert outcome == {"error": error, "fine": 0, "all": 0, "ready_state": CONNECTING}


@pytest.mark.parametrize(
    "tags", [["ok", "\ud800"], ["ok", 7], ["ok", b"bytes"], "a-single-str"], ids=repr
)
async def test_tags_that_are_not_strs_of_utf8_fail(probe, tags) -> None:
    outcome = {}

    def connect(self, ws):
        outcome["error"] = catch(self.state.accept_websocket, ws, tags)
        outcome["count"] = len(self.state.get_websockets())

    probe.on_connect(connect)
    await probe.connect(expect_accept=False)
    assert isinstance(outcome["error"], exc.InvalidTags)
    assert isinstance(outcome["error"], ValueError)
    assert outcome["count"] == 0


# MAX_WEBSOCKETS ---------------------------------------------------------------------------


async def test_max_websockets_refuses_the_next_accept_and_the_count_stays(probe) -> None:
    failures = []

    def connect(self, ws):
        before = len(self.state.get_websockets())
        try:
            self.state.accept_websocket(ws, ["member"])
        except Exception as error:
            failures.append(
                (error, before, len(self.state.get_websockets("member")), ws.ready_state)
            )

    probe.on_connect(connect)
    with settings_with(MAX_WEBSOCKETS=3):
        clients = [await probe.connect() for _ in range(3)]
        assert failures == []
        await probe.connect(expect_accept=False)  # the 4th is rejected at the handshake
        assert len(failures) == 1
        error, before, after, ready_state = failures[0]
        assert isinstance(error, exc.TooManyWebSockets)
        assert isinstance(error, RuntimeError)
        assert isinstance(error, exc.DurableError)
        assert "3" in str(error)
        assert (before, after, ready_state) == (3, 3, CONNECTING)
        assert await clients[0].run(lambda self, ws: len(self.state.get_websockets())) == 3

        # Once a socket's final event has been dispatched, its place is free again.
        await clients[2].disconnect(1000)
        await probe.wait_event(lambda e: e[0] == "close" and e[1] == clients[2].id)
        await probe.connect()
        assert len(failures) == 1
        assert await clients[0].run(lambda self, ws: len(self.state.get_websockets())) == 3


async def test_max_websockets_counts_sockets_until_their_final_event(probe) -> None:
    refused = []

    def connect(self, ws):
        try:
            self.state.accept_websocket(ws)
        except exc.TooManyWebSockets as error:
            refused.append(error)

    probe.on_connect(connect)
    with settings_with(MAX_WEBSOCKETS=2):
        a = await probe.connect()
        b = await probe.connect()

        async def close_b(self, ws):
            (other,) = [s for s in self.state.get_websockets() if s.id == b.id]
            await other.close(4000)
            return other.ready_state

        assert await a.run(close_b) == CLOSING
        assert (await b.receive())["code"] == 4000
        # b is closing but its final event has not been dispatched: it still counts.
        await probe.connect(expect_accept=False)
        assert len(refused) == 1
        await b.disconnect(4000)
        await probe.wait_event(lambda e: e[0] == "close" and e[1] == b.id)
        await probe.connect()
        assert len(refused) == 1


# Attachment ----------------------------------------------------------------------------


def value_encoding_to(size: int, make) -> object:
    """The value ``make(n)`` whose encoding is exactly ``size`` bytes."""
    for n in range(size + 1):
        value = make(n)
        if len(encode(value)) == size:
            return value
    raise AssertionError(f"no n makes an encoding of {size} bytes")


@pytest.mark.parametrize(
    "make",
    [lambda n: "a" * n, lambda n: b"\xff" * n, lambda n: {"name": "x" * n, "ok": True}],
    ids=["str", "bytes", "dict"],
)
async def test_attachment_at_the_limit_fits_and_one_byte_more_fails(probe, make) -> None:
    """The default limit is 16,384 bytes encoded (SPEC §3, Cloudflare's since 2026)."""
    limit = 16_384
    at_limit = value_encoding_to(limit, make)
    over = value_encoding_to(limit + 1, make)
    client = await probe.connect()

    def attach(self, ws):
        ws.serialize_attachment(at_limit)
        first = ws.deserialize_attachment()
        error = catch(ws.serialize_attachment, over)
        return first, error, ws.deserialize_attachment()

    first, error, kept = await client.run(attach)
    assert first == at_limit
    assert isinstance(error, exc.AttachmentTooLarge)
    assert isinstance(error, ValueError)
    assert isinstance(error, exc.DurableError)
    assert "16384" in str(error)
    assert "16385" in str(error)
    assert kept == at_limit  # the previous attachment is kept


async def test_attachment_limit_follows_the_setting(probe) -> None:
    client = await probe.connect()
    at_limit = value_encoding_to(100, lambda n: "a" * n)
    over = value_encoding_to(101, lambda n: "a" * n)
    with settings_with(ATTACHMENT_MAX_BYTES=100):

        def attach(self, ws):
            ws.serialize_attachment("before")
            error = catch(ws.serialize_attachment, over)
            ws.serialize_attachment(at_limit)
            return error, ws.deserialize_attachment()

        error, kept = await client.run(attach)
    assert isinstance(error, exc.AttachmentTooLarge)
    assert "100" in str(error)
    assert "101" in str(error)
    assert kept == at_limit


# Auto-response ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at_limit", "over"),
    [
        ("a" * 2048, "a" * 2049),
        ("é" * 1024, "é" * 1024 + "a"),
        (b"\x00" * 2048, b"\x00" * 2049),
    ],
    ids=["ascii", "multibyte", "bytes"],
)
@pytest.mark.parametrize("part", ["request", "response"])
async def test_auto_response_parts_at_the_limit_and_past_it(probe, part, at_limit, over) -> None:
    client = await probe.connect()
    previous = WebSocketRequestResponsePair("ping", "pong")

    def pair(value):
        other = "x" if isinstance(value, str) else b"x"
        return (
            WebSocketRequestResponsePair(value, other)
            if part == "request"
            else WebSocketRequestResponsePair(other, value)
        )

    def configure(self, ws):
        self.state.set_websocket_auto_response(pair(at_limit))
        accepted = self.state.get_websocket_auto_response()
        self.state.set_websocket_auto_response(previous)
        error = catch(self.state.set_websocket_auto_response, pair(over))
        return accepted, error, self.state.get_websocket_auto_response()

    accepted, error, kept = await client.run(configure)
    assert accepted == pair(at_limit)
    assert isinstance(error, exc.AutoResponseTooLarge)
    assert isinstance(error, ValueError)
    assert isinstance(error, exc.DurableError)
    assert "2048" in str(error)
    assert "2049" in str(error)
    assert kept == previous


# Event timeout -----------------------------------------------------------------------


async def test_event_timeout_range(probe) -> None:
    client = await probe.connect()

    def configure(self, ws):
        state = self.state
        seen = {}
        state.set_hibernatable_websocket_event_timeout(604_800_000)
        seen["max"] = state.get_hibernatable_websocket_event_timeout()
        state.set_hibernatable_websocket_event_timeout(1)
        seen["one"] = state.get_hibernatable_websocket_event_timeout()
        state.set_hibernatable_websocket_event_timeout(0)
        seen["zero"] = state.get_hibernatable_websocket_event_timeout()
        state.set_hibernatable_websocket_event_timeout(5000)
        state.set_hibernatable_websocket_event_timeout(None)
        seen["none"] = state.get_hibernatable_websocket_event_timeout()
        state.set_hibernatable_websocket_event_timeout(5000)
        state.set_hibernatable_websocket_event_timeout()
        seen["no_argument"] = state.get_hibernatable_websocket_event_timeout()
        state.set_hibernatable_websocket_event_timeout(7000)
        seen["errors"] = [
            catch(state.set_hibernatable_websocket_event_timeout, value)
            for value in (604_800_001, -1)
        ]
        seen["kept"] = state.get_hibernatable_websocket_event_timeout()
        return seen

    seen = await client.run(configure)
    assert seen["max"] == 604_800_000
    assert seen["one"] == 1
    assert seen["zero"] is None
    assert seen["none"] is None
    assert seen["no_argument"] is None
    for error, value in zip(seen["errors"], ("604800001", "-1"), strict=True):
        assert isinstance(error, exc.InvalidEventTimeout)
        assert isinstance(error, ValueError)
        assert isinstance(error, exc.DurableError)
        assert "604800000" in str(error)
        assert value in str(error)
    assert seen["kept"] == 7000


# Close codes and reasons -------------------------------------------------------------


@pytest.mark.parametrize("code", [1005, 1006, 1015, 2999, 5000, 1001, 1011, 0, -1])
async def test_invalid_close_codes_fail_and_the_socket_stays_open(probe, code) -> None:
    client = await probe.connect()

    async def close(self, ws):
        return await catch_async(ws.close, code), ws.ready_state

    error, ready_state = await client.run(close)
    assert isinstance(error, exc.InvalidCloseCode)
    assert isinstance(error, ValueError)
    assert isinstance(error, exc.DurableError)
    assert str(code) in str(error)
    assert "1000" in str(error)
    assert ready_state == OPEN
    await client.send("still open")
    assert await client.receive_data() == "echo:still open"


@pytest.mark.parametrize("code", [1000, 3000, 4999])
async def test_valid_close_codes_close_the_socket(probe, code) -> None:
    client = await probe.connect()

    async def close(self, ws):
        await ws.close(code, "r" * 123)
        return ws.ready_state

    assert await client.run(close) == CLOSING
    message = await client.receive()
    assert message["type"] == "websocket.close"
    assert message["code"] == code
    # The peer answers; the close ends in the object's websocket_close with that code.
    await client.disconnect(code)
    event = await probe.wait_event(lambda e: e[0] == "close" and e[1] == client.id)
    assert event[2:5] == (code, "", True)


@pytest.mark.parametrize(
    ("reason", "ok"),
    [
        ("r" * 123, True),
        ("é" * 61 + "a", True),  # 123 bytes
        ("r" * 124, False),
        ("é" * 62, False),  # 124 bytes in 62 characters
    ],
    ids=["ascii-123", "multibyte-123", "ascii-124", "multibyte-124"],
)
async def test_close_reason_limit(probe, reason, ok) -> None:
    client = await probe.connect()

    async def close(self, ws):
        return await catch_async(ws.close, 4000, reason), ws.ready_state

    error, ready_state = await client.run(close)
    if ok:
        assert error is None
        assert ready_state == CLOSING
        assert (await client.receive())["code"] == 4000
    else:
        assert isinstance(error, exc.InvalidCloseReason)
        assert isinstance(error, ValueError)
        assert isinstance(error, exc.DurableError)
        assert "123" in str(error)
        assert "124" in str(error)
        assert ready_state == OPEN
