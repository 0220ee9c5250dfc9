"""The database hanging or going away, end to end: PostgreSQL behind a TCP proxy.

A daphne server reaches PostgreSQL through ``tests.tcp_proxy.TcpProxy``, which the
test freezes (the database hangs: connections stay open, nothing answers). Storage
calls then fail with ``StorageTimeout`` after ``STORAGE_TIMEOUT`` (1.5 s here), saying
what a timed-out write means (it may still commit); the status view still answers.
Nothing here asserts on time: the waits are bounded and the frozen proxy would make any
unbounded call hang past them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.storage_consumers import Safe
from tests.services import PG_HOST, PG_PORT, need
from tests.storage_support import E2EDatabase, Peer, http_json, new_id, object_key
from tests.tcp_proxy import TcpProxy

STORAGE_TIMEOUT = 1.5
#: Bound on a reply while the database hangs: a few storage timeouts.
WAIT = 15.0


@pytest.fixture
def postgres(migrated_sqlite_template: Path, tmp_path: Path) -> Iterator[E2EDatabase]:
    need("postgres")
    sqlite_path = tmp_path / "db.sqlite3"
    shutil.copyfile(migrated_sqlite_template, sqlite_path)
    db = E2EDatabase("postgres", sqlite_path)
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = TcpProxy(PG_HOST, PG_PORT).start()
    try:
        yield server
    finally:
        server.close()


async def test_a_hanging_database_times_storage_out_clearly_and_the_status_answers(
    daphne_factory, postgres: E2EDatabase, proxy: TcpProxy
) -> None:
    env = {
        **postgres.env,
        "DURABLE_TEST_PG_HOST": "127.0.0.1",
        "DURABLE_TEST_PG_PORT": str(proxy.port),
        "DURABLE_TEST_STORAGE_TIMEOUT": str(STORAGE_TIMEOUT),
    }
    (server,) = daphne_factory(1, env)
    oid = new_id()
    peer = await Peer.open(server, f"/ws/safe/{oid}/")
    other = await Peer.open(server, f"/ws/safe/{new_id()}/")
    try:
        assert await peer.ask({"op": "put", "key": "k", "value": "before"}) == {
            "op": "put",
            "ok": True,
        }

        proxy.freeze()  # the database hangs from here on
        write = await peer.ask({"op": "put", "key": "k", "value": "during"}, timeout=WAIT)
        assert write["error"] == "StorageTimeout", write
        assert "STORAGE_TIMEOUT" in write["message"]
        assert "may still be applied" in write["message"]
        read = await other.ask({"op": "get", "key": "k"}, timeout=WAIT)
        assert read["error"] == "StorageTimeout", read
        assert "nothing was written" in read["message"]

        # The status view answers (without the alarms it could not read).
        status, report = await http_json(server.http_url("durable/status/open/"), timeout=WAIT)
        assert status == 200, report
        assert object_key(Safe, oid) in {entry["key"] for entry in report["objects"]}

        proxy.thaw()
        # The timed-out write was in flight: the database applied it after all, as the
        # error said it might.
        assert (await peer.ask({"op": "get", "key": "k"}, timeout=WAIT))["value"] == "during"
        assert postgres.storage(object_key(Safe, oid)) == {"k": "during"}
    finally:
        proxy.thaw()
        await peer.close()
        await other.close()
