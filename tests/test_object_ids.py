"""Object ids (SPEC §2): 1 to 256 UTF-8 bytes, no control character; anything else is
refused at the handshake (403) and logged safely (repr, cut), end to end on daphne.

Before: ``%0A`` and ANSI escapes in an id wrote forged lines into the log, a NUL made
every storage call fail on PostgreSQL (``DataError``), and a rejected 8 KiB path was
logged in full.
"""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from django_durable.exceptions import InvalidObjectId
from django_durable.limits import loggable, validate_object_id
from tests.app.consumers import Room
from tests.daphne_server import DaphneServer, recv_json

TIMEOUT = 10


@pytest.mark.parametrize(
    "object_id",
    ["a", "é" * 128, "x" * 256, "room 1", "ünïcødé/\u0080\u200b", "\U0001f600" * 64],
    ids=["one-byte", "256-bytes-2-byte-chars", "256-bytes", "space", "non-ascii", "emoji"],
)
def test_valid_ids(object_id):
    assert validate_object_id(object_id) == object_id
    assert repr(Room.get(object_id)) == f"<DurableStub Room({object_id!r})>"


@pytest.mark.parametrize(
    ("object_id", "fragment"),
    [
        ("", "non-empty"),
        (None, "<NoneType>"),
        ("x" * 257, "at most 256 bytes; got 257"),
        ("é" * 128 + "x", "at most 256 bytes; got 257"),
        ("a\x00b", "control character"),
        ("a\nFORGED", "control character"),
        ("\x1b[31mred", "control character"),
        ("del\x7f", "control character"),
        ("tab\t", "control character"),
        ("\ud800", "not valid UTF-8"),
    ],
    ids=[
        "empty",
        "none",
        "257",
        "257-multibyte",
        "nul",
        "newline",
        "ansi",
        "del",
        "tab",
        "lone-surrogate",
    ],
)
def test_invalid_ids_are_refused_naming_them_safely(object_id, fragment):
    with pytest.raises(InvalidObjectId, match=fragment) as info:
        validate_object_id(object_id)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.isprintable(), message
    assert len(message) < 300
    # Stubs and broadcast_to take the same ids.
    with pytest.raises(InvalidObjectId):
        Room.get(object_id)  # type: ignore[arg-type]


def test_loggable_quotes_escapes_and_cuts():
    assert loggable("a\nb") == "'a\\nb'"
    assert loggable("\x1b[2J") == "'\\x1b[2J'"
    long = loggable("/" + "x" * 8192)
    assert len(long) < 150 and long.endswith("(8,193 characters)")
    assert loggable(b"\xff\n") == "'\\\\xff\\n'"
    assert loggable(object()) == "<object>"


async def refused(server: DaphneServer, path: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(server.url(path), open_timeout=TIMEOUT, proxy=None):
            pass
    return info.value.response.status_code


async def test_hostile_ids_are_refused_at_the_handshake_and_logged_on_one_short_line(
    daphne_server: DaphneServer,
) -> None:
    hostile = {
        "newline": "/ws/room/ok%0A2026-01-01%20ERROR%20FORGED%20by%20the%20client/",
        "crlf": "/ws/room/ok%0D%0AFORGED2/",
        "ansi": "/ws/room/%1B%5B31mRED%1B%5B0m/",
        "nul": "/ws/room/a%00b/",
        "long": "/ws/room/" + "x" * 8192 + "/",
    }
    for name, path in hostile.items():
        assert await refused(daphne_server, path) == 403, name

    # Valid ids at the edges still connect.
    async with connect(
        daphne_server.url("/ws/room/" + "%C3%A9" * 128 + "/?greet=1"), open_timeout=TIMEOUT
    ) as ws:
        assert "hello" in await recv_json(ws, TIMEOUT)

    output = daphne_server.output()
    lines = output.splitlines()
    rejections = [line for line in lines if "rejecting WebSocket" in line]
    assert rejections, output[-3000:]
    assert not any(line.startswith(("2026-01-01 ERROR FORGED", "FORGED")) for line in lines)
    assert "\x1b[" not in output
    assert "\x00" not in output
    assert max(len(line) for line in rejections) < 1_000
    assert sum("8,202 characters" in line for line in rejections) >= 1
