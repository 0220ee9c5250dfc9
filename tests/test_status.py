"""``django_durable.status``, the status views and ``manage.py durable_status``.

- unit: ``object_status`` in the test's own loop (in-memory layers), objects reached
  through Channels' ``WebsocketCommunicator``; the views through a request factory;
  the command's in-memory mode through ``call_command``.
- end to end: a daphne server, then the command as a separate process with ``--url``;
  with Redis (``need("redis")``), two servers and the command reading Redis directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.test import AsyncRequestFactory
from websockets.asyncio.client import connect

from django_durable.management.commands.durable_status import fetch_report, format_report
from django_durable.status import object_status, status_report
from django_durable.testing import hibernate
from django_durable.views import status, status_view
from tests.app.consumers import Room
from tests.app.routing import websocket_urlpatterns
from tests.app.storage_consumers import Vault
from tests.daphne_server import REPO_ROOT, DaphneServer, base_environment, recv_json
from tests.services import REDIS_URL, need

TIMEOUT = 10.0
OPEN_PATH = "durable/status/open/"
STAFF_PATH = "durable/status/"


def tags_path(object_id: str, tags: list[str]) -> str:
    return f"/ws/room/{object_id}/?" + urllib.parse.urlencode({"tags": json.dumps(tags)})


def find(objects: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((o for o in objects if o["key"] == key), None)


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float = TIMEOUT) -> None:
    """Await ``condition()`` until it is true; fail after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while not await condition():  # noqa: ASYNC110 (polls state nothing announces)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"condition still false after {seconds} s") from None


@contextlib.asynccontextmanager
async def kept_awake(ws: Any) -> AsyncIterator[None]:
    """Send an event every 0.2 s from ``ws``, so its object cannot hibernate meanwhile."""

    async def poke() -> None:
        while True:
            await ws.send(json.dumps({"op": "whoami"}))
            await asyncio.sleep(0.2)

    task = asyncio.create_task(poke())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# Unit: object_status in this loop -------------------------------------------------------


@pytest.fixture
async def room_sockets():
    """Connect sockets to a fresh Room object; every one is closed at teardown."""
    object_id = f"status-{uuid.uuid4().hex[:10]}"
    comms: list[WebsocketCommunicator] = []

    async def open_socket(tags: list[str]) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), tags_path(object_id, tags))
        connected, _ = await comm.connect(TIMEOUT)
        assert connected
        comms.append(comm)
        return comm

    yield object_id, open_socket, comms
    for comm in comms:
        await comm.disconnect()
    await hibernate(Room, object_id)


async def test_object_status_shows_live_then_hibernated_objects_with_sockets(
    room_sockets,
) -> None:
    object_id, open_socket, comms = room_sockets
    key = Room.object_key(object_id)
    await open_socket(["all", "red"])
    await open_socket(["all"])

    entry = find(await object_status(alarms=False), key)
    assert entry is not None
    assert entry["class"] == Room.durable_name
    assert entry["object_id"] == object_id
    assert entry["live"] is True and entry["live_here"] is True
    assert entry["sockets"] == 2
    assert entry["states"] == {"OPEN": 2}
    assert entry["tags"] == {"all": 2, "red": 1}
    assert entry["held_here"] == 2
    assert entry["owner"] is None

    await hibernate(Room, object_id)
    entry = find(await object_status(alarms=False), key)
    assert entry is not None, "a hibernated object with sockets is listed"
    assert entry["live"] is False and entry["live_here"] is False
    assert entry["sockets"] == 2
    assert entry["tags"] == {"all": 2, "red": 1}

    # Once its sockets are gone and it hibernated again, the object is not listed.
    for comm in comms:
        await comm.disconnect()
    comms.clear()

    async def gone() -> bool:
        await hibernate(Room, object_id)
        return find(await object_status(alarms=False), key) is None

    await eventually(gone)


async def test_object_status_reads_nothing_it_would_wake(room_sockets) -> None:
    object_id, open_socket, _ = room_sockets
    await open_socket(["all"])
    await hibernate(Room, object_id)
    for _ in range(3):
        await object_status(alarms=False)
    entry = find(await object_status(alarms=False), Room.object_key(object_id))
    assert entry is not None and entry["live"] is False


async def test_status_report_is_json_with_totals(room_sockets) -> None:
    object_id, open_socket, _ = room_sockets
    await open_socket(["all", "🙂"])
    report = json.loads(json.dumps(await status_report(alarms=False)))
    assert report["scope"] == "process"
    assert report["session_layer"] == "django_durable.session.memory.InMemorySessionLayer"
    assert report["process"]
    entry = find(report["objects"], Room.object_key(object_id))
    assert entry is not None and entry["tags"] == {"all": 1, "🙂": 1}
    totals = report["totals"]
    assert totals["objects"] == len(report["objects"])
    assert totals["live"] + totals["hibernated"] == totals["objects"]
    assert totals["sockets"] >= 1


def test_redis_match_escapes_glob_characters() -> None:
    from django_durable.redis.keys import RedisKeys

    assert RedisKeys("durable:").match("s") == "durable:s:*"
    assert RedisKeys("a*b?[c]\\").match("l") == "a\\*b\\?\\[c\\]\\\\l:*"


def test_format_report_lists_objects_and_owners() -> None:
    objects = [
        {
            "key": "app.Room/a",
            "live": True,
            "owner": "proc-1",
            "sockets": 3,
            "states": {"OPEN": 2, "CLOSING": 1},
            "tags": {"all": 3, "red": 1},
            "alarm": "2030-01-02T03:04:05+00:00",
        },
        {"key": "app.Room/b", "live": False, "owner": None, "sockets": 1, "tags": {}},
    ]
    text = format_report(
        {"scope": "cluster", "holder": "proc-1", "objects": objects, "source": "Redis"}
    )
    assert "2 object(s): 1 live, 1 hibernated; 4 socket(s)" in text
    assert "OWNER" in text
    row_a = next(line for line in text.splitlines() if line.startswith("app.Room/a"))
    assert "live" in row_a and "3 (1 closing)" in row_a and "proc-1 (this server)" in row_a
    assert "all=3, red=1" in row_a and "2030-01-02 03:04:05 UTC" in row_a
    row_b = next(line for line in text.splitlines() if line.startswith("app.Room/b"))
    assert "hibernated" in row_b


# Unit: the views ------------------------------------------------------------------------


def _request(user: Any = None, method: str = "get") -> Any:
    request = getattr(AsyncRequestFactory(), method)("/durable/status/")
    if user is not None:

        async def auser() -> Any:
            return user

        request.auser = auser
    return request


ANONYMOUS = SimpleNamespace(is_active=False, is_staff=False)
MEMBER = SimpleNamespace(is_active=True, is_staff=False)
STAFF = SimpleNamespace(is_active=True, is_staff=True)


@pytest.mark.parametrize("user", [None, ANONYMOUS, MEMBER])
async def test_status_view_refuses_non_staff(user: Any) -> None:
    response = await status(_request(user))
    assert response.status_code == 403
    assert json.loads(response.content)["error"] == "forbidden"


async def test_status_view_answers_staff_with_the_report(room_sockets) -> None:
    object_id, open_socket, _ = room_sockets
    await open_socket(["all"])
    response = await status(_request(STAFF))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    report = json.loads(response.content)
    assert find(report["objects"], Room.object_key(object_id)) is not None


async def test_status_view_with_a_rule_of_ones_own() -> None:
    async def allow_async(request: Any) -> bool:
        return True

    for allow in (lambda request: True, allow_async):
        response = await status_view(allow=allow)(_request())
        assert response.status_code == 200
        assert "objects" in json.loads(response.content)
    response = await status_view(allow=lambda request: False)(_request(STAFF))
    assert response.status_code == 403
    response = await status_view(allow=lambda request: True)(_request(method="post"))
    assert response.status_code == 405


# Unit: the command without a server or Redis --------------------------------------------


@pytest.mark.django_db
def test_command_with_the_in_memory_layer_says_what_it_cannot_see() -> None:
    out = StringIO()
    call_command("durable_status", stdout=out)
    text = out.getvalue()
    assert "InMemorySessionLayer" in text
    assert "cannot see which objects are live or hibernated" in text
    assert "--url http://<host>:<port>/<path>" in text  # no port of anyone's server
    assert "8000" not in text
    assert "Pending alarms: 0" in text
    assert "Objects with storage:" in text

    out = StringIO()
    call_command("durable_status", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["scope"] == "none"
    assert report["alarms"] == []


# End to end: a daphne server and the command as its own process ------------------------


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "durable_status", *args],
        cwd=REPO_ROOT,
        env=base_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def command(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the command (off the loop, so the test's sockets keep being served)."""
    result = await asyncio.to_thread(run_command, *args, env=env)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def wait_for_state(url: str, key: str, live: bool) -> dict[str, Any]:
    """Poll the status JSON until ``key`` is listed with ``live``; return its entry."""
    entry = None
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                entry = find((await asyncio.to_thread(get_json, url))["objects"], key)
                if entry is not None and entry["live"] is live:
                    return entry
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{key} not listed with live={live}; last: {entry!r}") from None


def row_of(text: str, key: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(key + " ")]
    assert rows, f"no row for {key} in:\n{text}"
    return rows[0]


async def test_command_with_url_shows_a_servers_objects(daphne_factory) -> None:
    server: DaphneServer = daphne_factory(1, env={"DURABLE_TEST_IDLE_TIMEOUT": "1"})[0]
    room = f"room-{uuid.uuid4().hex[:8]}"
    vault = f"vault-{uuid.uuid4().hex[:8]}"
    room_key, vault_key = Room.object_key(room), Vault.object_key(vault)
    url = server.http_url(OPEN_PATH)
    async with (
        connect(server.url(tags_path(room, ["all", "red"]))) as a,
        connect(server.url(tags_path(room, ["all"]))),
        connect(server.url(f"/ws/vault/{vault}/")) as v,
    ):
        await v.send(json.dumps({"op": "alarm_in", "seconds": 600}))
        assert "alarm" in await recv_json(v)

        async with kept_awake(a):
            text = await command("--url", url)
            report = json.loads(await command("--url", url, "--json"))
        assert f"Source: {url}" in text
        assert "objects of this server process only" in text
        row = row_of(text, room_key)
        assert " live " in row and "all=2, red=1" in row
        assert report["scope"] == "process"
        entry = find(report["objects"], room_key)
        assert entry is not None and entry["sockets"] == 2 and entry["live"] is True
        vault_entry = find(report["objects"], vault_key)
        assert vault_entry is not None and vault_entry["alarm"] is not None

        # Idle for IDLE_TIMEOUT: hibernated, still listed with its sockets and tags.
        await wait_for_state(url, room_key, live=False)
        row = row_of(await command("--url", url), room_key)
        assert "hibernated" in row and "all=2, red=1" in row
        assert " 2 " in row


async def test_command_with_url_explains_refusals(daphne_factory) -> None:
    server: DaphneServer = daphne_factory(1)[0]
    result = await asyncio.to_thread(run_command, "--url", server.http_url(STAFF_PATH))
    assert result.returncode != 0
    assert "403" in result.stderr and "staff" in result.stderr
    assert "The view says: the durable objects status is for active staff users" in result.stderr
    # A view with a rule of its own (the example's needs DEBUG only) is not "staff only".
    closed = await asyncio.to_thread(
        run_command, "--url", server.http_url("durable/status/closed/")
    )
    assert closed.returncode != 0
    assert "403" in closed.stderr
    assert "The view says: this status view's rule refused the request." in closed.stderr
    for path, expected in [("no/such/path/", "404"), ("health/", "did not answer JSON")]:
        with pytest.raises(CommandError, match=expected):
            await asyncio.to_thread(fetch_report, server.http_url(path), [], 10.0)
    with pytest.raises(CommandError, match="Name: value"):
        fetch_report(server.http_url(OPEN_PATH), ["no colon"], 10.0)
    with pytest.raises(CommandError, match="http"):
        fetch_report("file:///etc/passwd", [], 10.0)
    report = await asyncio.to_thread(
        fetch_report, server.http_url(OPEN_PATH), ["X-Anything: 1"], 10.0
    )
    assert report["scope"] == "process"


# End to end with Redis: the command reads Redis itself ---------------------------------


async def _delete_prefix(prefix: str) -> None:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        names = [name async for name in client.scan_iter(match=f"{prefix}*", count=500)]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()


async def test_command_reads_objects_and_owners_from_redis(daphne_factory) -> None:
    need("redis")
    prefix = f"status-{uuid.uuid4().hex[:10]}"
    env = {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_IDLE_TIMEOUT": "1",
        # Short leases: events caught in a hand-over are re-sent sooner.
        "DURABLE_TEST_LEASE_TIME": "2",
    }
    first, second = daphne_factory(2, env=env)
    room = f"room-{uuid.uuid4().hex[:8]}"
    key = Room.object_key(room)
    try:
        async with (
            connect(first.url(tags_path(room, ["all", "red"]))) as a,
            connect(second.url(tags_path(room, ["all"]))) as b,
        ):
            await a.send(json.dumps({"op": "whoami"}))
            await b.send(json.dumps({"op": "whoami"}))
            await recv_json(a)
            await recv_json(b)

            async with kept_awake(a):
                report = json.loads(await command("--json", env=env))
                text = await command(env=env)
                served = await asyncio.to_thread(get_json, first.http_url(OPEN_PATH))
            assert report["scope"] == "cluster"
            entry = find(report["objects"], key)
            assert entry is not None, report
            assert entry["live"] is True and entry["owner"]
            assert entry["sockets"] == 2
            assert entry["tags"] == {"all": 2, "red": 1}
            assert len(entry["holders"]) == 2, "one socket held by each process"

            assert "OWNER" in text and "every process (Redis session layer)" in text
            row = row_of(text, key)
            assert " live " in row and entry["owner"] in row

            # A server's own view of the cluster says which process owns the object.
            assert served["scope"] == "cluster"
            served_entry = find(served["objects"], key)
            assert served_entry is not None and served_entry["owner"] == entry["owner"]
            assert served_entry["live_here"] is (served["holder"] == entry["owner"])

            # Idle: the lease is released, the sockets stay.
            await wait_for_state(first.http_url(OPEN_PATH), key, live=False)
            report = json.loads(await command("--json", env=env))
            entry = find(report["objects"], key)
            assert entry is not None and entry["live"] is False and entry["owner"] is None
            assert entry["sockets"] == 2
            assert "hibernated" in row_of(await command(env=env), key)

        # Both sockets closed: once their close events ran, the object is gone.
        async def gone() -> bool:
            report = json.loads(await command("--json", env=env))
            entry = find(report["objects"], key)
            return entry is None or (not entry["live"] and entry["sockets"] == 0)

        await eventually(gone, TIMEOUT * 2)
    finally:
        await _delete_prefix(prefix)


@pytest.mark.django_db
def test_pending_alarms_read_naive_times_in_the_projects_time_zone() -> None:
    """With USE_TZ = False the database holds naive local times of TIME_ZONE, not UTC."""
    from datetime import datetime

    from django.test import override_settings

    from django_durable.models import Alarm
    from django_durable.status import _pending_alarms

    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        Alarm.objects.create(object_key="c/naive", scheduled_at=datetime(2026, 1, 15, 12, 0))
        found = _pending_alarms(["c/naive"], "default")
    assert found == {"c/naive": "2026-01-15T17:00:00+00:00"}  # noon in New York (UTC-5)


@pytest.mark.django_db
def test_command_reads_naive_alarm_times_in_the_projects_time_zone() -> None:
    """The command's database report, too: one normalisation of database times (it
    printed a naive time as if it were UTC, five hours off in New York)."""
    from datetime import datetime

    from django.test import override_settings

    from django_durable.models import Alarm

    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        Alarm.objects.create(object_key="c/naive", scheduled_at=datetime(2026, 1, 15, 12, 0))
        out = StringIO()
        call_command("durable_status", "--json", stdout=out)
    alarms = json.loads(out.getvalue())["alarms"]
    assert [(a["key"], a["at"]) for a in alarms] == [("c/naive", "2026-01-15T17:00:00+00:00")]
