"""Storage end to end on real daphne processes, on SQLite and on PostgreSQL.

Each test module gets a fresh database of each kind (``tests.storage_support``); the
servers of every test share it. Objects are ``tests.app.storage_consumers.Safe``
(storage commands over WebSocket, errors sent back as replies) and ``ReentrantSafe``.
Tables are read directly from the test process, which wakes no object. Nothing sleeps:
every wait is for a message or a row, with a timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.storage_consumers import Safe
from tests.daphne_server import DaphneServer, start_servers
from tests.storage_support import E2EDatabase, Peer, database_fixture, new_id, object_key

database = database_fixture()


@pytest.fixture
def start(daphne_factory, database: E2EDatabase):
    """``start(**env)``: one server of this test's own on this module's database."""

    def start_one(**env: str) -> DaphneServer:
        return daphne_factory(1, {**database.env, **env})[0]

    return start_one


@pytest.fixture(scope="module")
def shared_server(database: E2EDatabase) -> Iterator[DaphneServer]:
    """One server for the tests that never stop it (each uses objects of its own)."""
    (server,) = start_servers(1, database.env, first_index=70)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(report_server_output, shared_server: DaphneServer) -> DaphneServer:
    report_server_output(shared_server)
    return shared_server


# Crashes --------------------------------------------------------------------------------


async def test_kill_9_inside_a_transaction_keeps_what_was_committed_and_nothing_else(
    start, database: E2EDatabase
) -> None:
    server = start()
    oid = new_id()
    key = object_key(Safe, oid)
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    fill = {"op": "fill", "prefix": "committed:", "n": 300, "size": 100}
    assert await peer.ask(fill) == {"op": "fill", "committing": True}
    assert (await peer.wait(lambda m: "committed" in m))["committed"] == 300
    # A second transaction writes 300 more keys and stops before its block ends.
    await peer.send({"op": "fill", "prefix": "pending:", "n": 300, "size": 100, "stall": True})
    await peer.wait(lambda m: m.get("stalled"))
    server.kill()
    await peer.close()

    assert len(database.storage(key, "committed:")) == 300
    assert database.storage(key, "pending:") == {}

    # A new process serves the object from what the database kept.
    server = start()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    assert (await peer.ask({"op": "count", "prefix": "committed:"}))["count"] == 300
    assert (await peer.ask({"op": "count", "prefix": "pending:"}))["count"] == 0
    assert (await peer.ask({"op": "get", "key": "committed:000299"}))["value"] == "v" * 100
    assert (await peer.ask({"op": "put", "key": "after", "value": 1}))["ok"] is True
    await peer.close()


@pytest.mark.parametrize("attempt", range(3))
async def test_kill_9_while_a_transaction_commits_leaves_all_of_it_or_none(
    start, database: E2EDatabase, attempt: int
) -> None:
    """The kill lands while the commit of a large transaction is in flight (or just
    after it): whichever it was, the table holds every key of it or none."""
    n = 2_000
    server = start()
    oid = new_id()
    key = object_key(Safe, oid)
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    assert (await peer.ask({"op": "put", "key": "before", "value": attempt}))["ok"] is True
    await peer.send({"op": "fill", "prefix": "big:", "n": n, "size": 2_000})
    await peer.wait(lambda m: m.get("committing"))
    server.kill()
    await peer.close()

    stored = database.storage(key)
    big = [k for k in stored if k.startswith("big:")]
    assert len(big) in (0, n), f"{len(big)} of {n} keys of one transaction survived the crash"
    assert stored["before"] == attempt
    if big:
        assert all(stored[k] == "v" * 2_000 for k in big)

    server = start()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    assert (await peer.ask({"op": "count", "prefix": "big:"}))["count"] == len(big)
    await peer.close()


# Bad input over the WebSocket path -------------------------------------------------------


BAD_COMMANDS = [
    pytest.param(
        {"op": "put", "key": "é" * 1_025, "value": 1},
        "InvalidStorageKey",
        ["2,050 bytes", "2,048"],
        id="key-over-2048-utf8-bytes",
    ),
    pytest.param(
        {"op": "put", "key": "big", "value": "x" * 131_067},
        "InvalidStorageValue",
        ["131,073 bytes", "131,072", "128 KiB"],
        id="value-over-128KiB",
    ),
    pytest.param(
        {"op": "put", "key": "k", "value": None},
        "InvalidStorageValue",
        ["None is not a storage value"],
        id="none-value",
    ),
    pytest.param(
        {"op": "put_many", "entries": {"a": 1, "b": None, "c": 3}},
        "InvalidStorageValue",
        ["None is not a storage value"],
        id="none-among-many",
    ),
    pytest.param(
        {"op": "put_many", "entries": {"a": 1, "k" * 2_049: 2}},
        "InvalidStorageKey",
        ["2,049 bytes"],
        id="long-key-among-many",
    ),
    pytest.param(
        {"op": "txn_put_many", "entries": {"a": 1, "b": None}},
        "InvalidStorageValue",
        ["None is not a storage value"],
        id="none-in-transaction",
    ),
]


@pytest.mark.parametrize(("command", "error", "fragments"), BAD_COMMANDS)
async def test_bad_input_over_websocket_is_a_clear_error_and_writes_nothing(
    server: DaphneServer, database: E2EDatabase, command, error: str, fragments: list[str]
) -> None:
    oid = new_id()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    reply = await peer.ask(command)
    assert reply["error"] == error, reply
    for fragment in fragments:
        assert fragment in reply["message"], reply["message"]
    assert database.storage(object_key(Safe, oid)) == {}
    # The object goes on: the edges themselves are accepted.
    assert (await peer.ask({"op": "put", "key": "k" * 2_048, "value": "ok"}))["ok"] is True
    assert (await peer.ask({"op": "put", "key": "edge", "value": "x" * 131_066}))["ok"] is True
    assert sorted(database.storage(object_key(Safe, oid))) == ["edge", "k" * 2_048]
    await peer.close()


# Reentrant objects and the input gate -------------------------------------------------------


@pytest.mark.parametrize("kind", ["put", "get"])
@pytest.mark.parametrize(
    ("route", "gated"),
    [("reentrant-safe", True), ("ungated-safe", False)],
    ids=["gated", "control-without-gate"],
)
async def test_no_event_reaches_a_reentrant_object_while_a_storage_call_is_in_flight(
    server: DaphneServer, database: E2EDatabase, kind: str, route: str, gated: bool
) -> None:
    """Socket A's handler starts a storage call that the test holds up by locking the
    table; socket B sends an event meanwhile, then a ping whose pong proves the event is
    in the object's mailbox; only then is the table released. B's handler reports whether
    A's storage call was in flight when it ran: never, with the gate.

    The control run removes the storage's gate (``UngatedReentrantSafe``): B's event then
    runs during the call, which shows the test can see the difference.
    """
    oid = new_id()
    a = await Peer.open(server, f"/ws/{route}/{oid}/")
    b = await Peer.open(server, f"/ws/{route}/{oid}/")
    mark = await b.send("ping")
    await b.wait(lambda m: m == "pong", mark)  # on_start ran: the auto-response is set

    with database.locked():
        mark_a = await a.send({"op": "hold", "kind": kind})
        await a.wait(lambda m: m.get("started"), mark_a)
        mark_b = await b.send({"op": "peek"})
        await b.send("ping")
        await b.wait(lambda m: m == "pong", mark_b)
        if gated:
            assert not [m for m in b.messages[mark_b:] if isinstance(m, dict)], (
                "an event reached the object while its storage call was held up"
            )
    peek = await b.wait(lambda m: isinstance(m, dict) and m.get("op") == "peek", mark_b)
    await a.wait(lambda m: m.get("done"), mark_a)
    assert peek["in_storage"] is (not gated)
    await a.close()
    await b.close()
