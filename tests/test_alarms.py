"""Alarms end to end on real daphne processes, on SQLite and on PostgreSQL.

Objects are ``tests.app.storage_consumers.Safe``: ``set_alarm``/``get_alarm``/
``delete_alarm`` over WebSocket, and an ``alarm(info)`` handler that records every run
in storage (a list, plus one key per run so that overlapping runs cannot hide each
other), broadcasts it to the object's sockets, sets the alarm again once when told to
(``rearm``) and raises while ``retry_count < fail``.

Servers poll every 50 ms and retry after 0.1 s doubling (``ALARM_POLL_INTERVAL`` and
``ALARM_RETRY_BASE_DELAY`` shortened); nothing asserts how long anything took. Every wait
is for a message, a log line or a row, with a timeout.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.storage_consumers import Safe
from tests.daphne_server import DaphneServer, start_servers
from tests.storage_support import (
    E2EDatabase,
    Peer,
    database_fixture,
    http_json,
    new_id,
    object_key,
    redis_env,
)
from tests.waiting import wait_until

BASE_DELAY = 0.1
FAST = {
    "DURABLE_TEST_ALARM_POLL_INTERVAL": "0.05",
    "DURABLE_TEST_ALARM_RETRY_BASE_DELAY": str(BASE_DELAY),
}
#: Six retries wait 0.1 + 0.2 + ... + 3.2 = 6.3 s in all.
RETRIES_TIMEOUT = 30.0

database = database_fixture()


@pytest.fixture(scope="module")
def shared_server(database: E2EDatabase) -> Iterator[DaphneServer]:
    """One server for the tests that need nothing special (each uses its own objects)."""
    (server,) = start_servers(1, {**database.env, **FAST}, first_index=90)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(report_server_output, shared_server: DaphneServer) -> DaphneServer:
    report_server_output(shared_server)
    return shared_server


@pytest.fixture
def start(daphne_factory, database: E2EDatabase):
    """``start(count, **env)``: servers of this test on this module's database."""

    def start_some(count: int = 1, server: str = "daphne", **env: str) -> list[DaphneServer]:
        # Every test that starts servers has two processes on the database at some point.
        return daphne_factory(count, {**database.env_for(2), **FAST, **env}, server=server)

    return start_some


def runs_of(database: E2EDatabase, oid: str) -> list[dict[str, Any]]:
    return database.storage(object_key(Safe, oid)).get("runs", [])


def run_keys(database: E2EDatabase, oid: str) -> dict[str, Any]:
    return database.storage(object_key(Safe, oid), "run:")


async def gone(database: E2EDatabase, oid: str) -> None:
    """Wait until the object's alarm row is deleted (the scheduler finished it)."""
    await wait_until(
        lambda: database.alarm(object_key(Safe, oid)) is None, message=f"{oid}: alarm row gone"
    )


# Waking, surviving restarts --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_an_alarm_set_by_an_object_that_then_hibernated_wakes_it(
    start, database: E2EDatabase, kind: str
) -> None:
    # HIBERNATE_EAGERLY: the instance is dropped after every event, so the alarm finds
    # the object hibernated and must create it again (on_start first).
    (server,) = start(server=kind, DURABLE_TEST_HIBERNATE_EAGERLY="1")
    oid = new_id()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    # Every event so far had an instance of its own: the connect, then this one.
    assert (await peer.ask({"op": "starts"}))["starts"] == 2
    monitor = await Peer.open(server, "/ws/storage-monitor/")
    assert (await monitor.ask({"op": "live", "id": oid}))["live"] is False

    mark = await peer.send({"op": "set_alarm", "in": 2.0})  # instance 3
    # The object hibernates after that event (before the alarm is due, unless the machine
    # is too loaded to: then the alarm would find instance 3 and the test would not say
    # what it means to). Wait for it rather than assume it.
    await wait_until(
        lambda: monitor.ask({"op": "live", "id": oid}),
        accept=lambda answer: answer["live"] is False,
        message="the object to hibernate after set_alarm",
    )
    run = await peer.wait(lambda m: "alarm" in m and "op" not in m, mark)
    assert run["alarm"] == 0 and run["is_retry"] is False
    assert run["starts"] == 4, "the alarm ran without creating the object again"
    assert run["pid"] == server.pid
    await gone(database, oid)
    assert [r["alarm"] for r in runs_of(database, oid)] == [0]
    await peer.close()
    await monitor.close()


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_an_alarm_survives_restarting_every_process(
    start, database: E2EDatabase, kind: str
) -> None:
    old = start(2, server=kind)
    oid = new_id()
    key = object_key(Safe, oid)
    peer = await Peer.open(old[0], f"/ws/safe/{oid}/")
    await peer.ask({"op": "set_alarm", "in": 3.0})
    await peer.close()
    for server in old:
        server.stop()
    row = database.alarm(key)
    assert row is not None, "the alarm fired before every server stopped: give it more time"
    assert row["retry_count"] == 0 and row["claimed_until"] is None
    assert runs_of(database, oid) == []

    # New processes, and not one request to them: their pollers start with daphne's
    # reactor, or with ASGI lifespan under uvicorn.
    new = start(2, server=kind)
    await gone(database, oid)
    runs = await wait_until(lambda: runs_of(database, oid), message="the alarm's run")
    assert [(r["alarm"], r["is_retry"]) for r in runs] == [(0, False)]
    assert runs[0]["pid"] in {s.pid for s in new}
    assert runs[0]["starts"] == 1
    assert len(run_keys(database, oid)) == 1


# Exactly once with two processes -----------------------------------------------------------


async def test_two_processes_run_each_alarm_exactly_once(start, database: E2EDatabase) -> None:
    """Sixty alarms falling due over one second, two pollers racing to claim them (with
    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a compare-and-set claim on both)."""
    servers = start(2)
    oids = [new_id() for _ in range(60)]
    first_due = time.time() + 1.5
    peers = [await Peer.open(servers[i % 2], f"/ws/safe/{oid}/") for i, oid in enumerate(oids)]
    for i, peer in enumerate(peers):
        await peer.ask({"op": "set_alarm", "at": first_due + i / 60})
    for oid in oids:
        await gone(database, oid)
    for oid in oids:
        assert len(run_keys(database, oid)) == 1, f"{oid}: {run_keys(database, oid)}"
        assert [r["alarm"] for r in runs_of(database, oid)] == [0]
    for peer in peers:
        assert len(peer.alarms()) <= 1
        await peer.close()


async def test_with_redis_an_alarm_claimed_elsewhere_runs_once_on_the_object_s_owner(
    start, database: E2EDatabase
) -> None:
    """Objects live on server A (their sockets are there); A's poller looks once an hour,
    so B claims every alarm: each runs once, on A, where B forwarded it."""
    redis = redis_env()
    (a,) = start(1, **redis, DURABLE_TEST_ALARM_POLL_INTERVAL="3600")
    (b,) = start(1, **redis)
    oids = [new_id() for _ in range(20)]
    due = time.time() + 1.0
    peers = [await Peer.open(a, f"/ws/safe/{oid}/") for oid in oids]
    for peer in peers:
        await peer.ask({"op": "set_alarm", "at": due})
    for peer in peers:
        run = await peer.wait(lambda m: "alarm" in m and "op" not in m)
        assert run["pid"] == a.pid != b.pid
    for oid, peer in zip(oids, peers, strict=True):
        await gone(database, oid)
        assert len(run_keys(database, oid)) == 1
        assert len(peer.alarms()) == 1
        await peer.close()


async def test_with_redis_two_processes_run_each_alarm_of_hibernated_objects_once(
    start, database: E2EDatabase
) -> None:
    """No socket anywhere, so no owner: whichever process claims an alarm takes the
    object's lease and runs it there, once. The alarms are set through stub calls (a
    view on each server in turn), so that no socket comes or goes while they fire."""
    servers = start(2, **redis_env())
    oids = [new_id() for _ in range(30)]
    first_due = time.time() + 2.0
    for i, oid in enumerate(oids):
        query = urllib.parse.urlencode({"args": json.dumps([first_due + i / 30 - time.time()])})
        status, body = await http_json(servers[i % 2].http_url(f"/safe/{oid}/call/arm/?{query}"))
        assert status == 200, body
    for oid in oids:
        await gone(database, oid)
    for oid in oids:
        assert len(run_keys(database, oid)) == 1, f"{oid}: {run_keys(database, oid)}"
        (run,) = runs_of(database, oid)
        assert run["pid"] in {s.pid for s in servers}
        assert run["starts"] >= 1


# Retries -------------------------------------------------------------------------------------


def retry_log(server: DaphneServer, oid: str) -> list[tuple[int, float]]:
    """``(retry number, delay)`` of each "alarm handler raised" warning about ``oid``."""
    pattern = re.compile(
        rf"object {re.escape(object_key(Safe, oid))}: alarm handler raised .*?; "
        r"retry (\d+) in ([\d.]+) s"
    )
    found = [(int(n), float(d)) for n, d in pattern.findall(server.output())]
    # The test settings log to the console twice over (handler + propagation): dedupe.
    return sorted(set(found))


async def test_a_failing_alarm_is_retried_with_backoff(
    server: DaphneServer, database: E2EDatabase
) -> None:
    oid = new_id()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    await peer.ask({"op": "configure", "fail": 3})
    await peer.ask({"op": "set_alarm", "in": 0})
    await peer.wait(lambda m: m.get("alarm") == 3 and "op" not in m, timeout=RETRIES_TIMEOUT)
    await gone(database, oid)
    runs = [(r["alarm"], r["is_retry"]) for r in peer.alarms()]
    assert runs == [(0, False), (1, True), (2, True), (3, True)]
    assert [(r["alarm"], r["is_retry"]) for r in runs_of(database, oid)] == runs
    assert (await peer.ask({"op": "get_alarm"}))["alarm"] is None
    assert retry_log(server, oid) == [(1, BASE_DELAY), (2, BASE_DELAY * 2), (3, BASE_DELAY * 4)]
    await peer.close()


async def test_an_alarm_is_dropped_after_six_retries_with_an_error_in_the_log(
    server: DaphneServer, database: E2EDatabase
) -> None:
    oid = new_id()
    key = object_key(Safe, oid)
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    await peer.ask({"op": "configure", "fail": 100})
    await peer.ask({"op": "set_alarm", "in": 0})
    dropped = f"object {key}: alarm failed after 6 retries; dropped"
    await wait_until(
        lambda: dropped in server.output(), message="the error log", timeout=RETRIES_TIMEOUT
    )
    assert database.alarm(key) is None  # so nothing can ever run it again
    assert [r["alarm"] for r in runs_of(database, oid)] == [0, 1, 2, 3, 4, 5, 6]
    assert [r["is_retry"] for r in runs_of(database, oid)] == [False] + [True] * 6
    assert retry_log(server, oid) == [(n, BASE_DELAY * 2 ** (n - 1)) for n in range(1, 7)]
    # The error carries the handler's exception.
    assert "alarm failing on purpose (retry_count 6)" in server.output().split(dropped, 1)[1]
    assert (await peer.ask({"op": "get_alarm"}))["alarm"] is None
    await peer.close()


# Setting again, deleting -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"rearm": 0.2}, [(0, False), (0, False)]),
        # The first run sets the alarm again and then raises: the handler's own alarm
        # wins over the retry, so the next run is that alarm, not retry 1.
        ({"rearm": 0.2, "fail": 1}, [(0, False), (0, False), (1, True)]),
    ],
    ids=["kept", "kept-over-the-retry"],
)
async def test_an_alarm_set_again_during_its_own_handler_is_kept(
    server: DaphneServer, database: E2EDatabase, config: dict[str, Any], expected: list[Any]
) -> None:
    oid = new_id()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    await peer.ask({"op": "configure", **config})
    await peer.ask({"op": "set_alarm", "in": 0})
    await wait_until(
        lambda: len(peer.alarms()) >= len(expected), message="every run", timeout=RETRIES_TIMEOUT
    )
    await gone(database, oid)
    assert [(r["alarm"], r["is_retry"]) for r in runs_of(database, oid)] == expected
    assert [(r["alarm"], r["is_retry"]) for r in peer.alarms()] == expected
    await peer.close()


async def test_delete_alarm_cancels_it(server: DaphneServer, database: E2EDatabase) -> None:
    cancelled, witness = new_id(), new_id()
    peer = await Peer.open(server, f"/ws/safe/{cancelled}/")
    other = await Peer.open(server, f"/ws/safe/{witness}/")
    await peer.ask({"op": "set_alarm", "in": 0.5})
    assert database.alarm(object_key(Safe, cancelled)) is not None
    assert await peer.ask({"op": "delete_alarm"}) == {"op": "delete_alarm", "alarm": None}
    assert (await peer.ask({"op": "get_alarm"}))["alarm"] is None
    assert database.alarm(object_key(Safe, cancelled)) is None
    # Deleting again is a no-op.
    assert (await peer.ask({"op": "delete_alarm"}))["alarm"] is None

    # An alarm due after the cancelled one would have been: once it has run, the
    # cancelled one would have run before it.
    await other.ask({"op": "set_alarm", "in": 1.0})
    await other.wait(lambda m: "alarm" in m and "op" not in m)
    await gone(database, witness)
    assert peer.alarms() == []
    assert runs_of(database, cancelled) == []
    await peer.close()
    await other.close()


async def test_setting_replaces_the_alarm_and_a_past_time_fires_at_once(
    server: DaphneServer, database: E2EDatabase
) -> None:
    oid = new_id()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    later = time.time() + 3_600
    assert (await peer.ask({"op": "set_alarm", "at": later}))["alarm"] == pytest.approx(later)
    assert (await peer.ask({"op": "get_alarm"}))["alarm"] == pytest.approx(later)
    mark = await peer.send({"op": "set_alarm", "at": time.time() - 60})
    await peer.wait(lambda m: "alarm" in m and "op" not in m, mark)
    await gone(database, oid)
    assert [r["alarm"] for r in runs_of(database, oid)] == [0]
    assert (await peer.ask({"op": "get_alarm"}))["alarm"] is None
    await peer.close()
