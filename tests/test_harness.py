"""The end-to-end harness itself: servers start, answer, die and report their output."""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from tests.daphne_server import (
    DaphneFactory,
    DaphneServer,
    DaphneServerError,
    port_accepts,
    recv_json,
    recv_json_until,
    recv_until,
)
from tests.waiting import wait_until_sync


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def test_server_serves_http(daphne_server: DaphneServer) -> None:
    assert daphne_server.running
    assert http_get(daphne_server.http_url("/health/")) == "ok"
    assert daphne_server.url("ws/x/") == f"ws://127.0.0.1:{daphne_server.port}/ws/x/"


def test_killed_server_stops_answering(daphne_server: DaphneServer) -> None:
    pid, port = daphne_server.pid, daphne_server.port
    assert port is not None
    assert http_get(daphne_server.http_url("/health/")) == "ok"

    assert daphne_server.kill() == -9
    assert not daphne_server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    wait_until_sync(
        lambda: not port_accepts(port), message=f"port {port} to refuse", timeout=5, interval=0.05
    )
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        http_get(daphne_server.http_url("/health/"), timeout=2)


def test_factory_starts_several_servers_on_one_database(
    daphne_factory: DaphneFactory, durable_sqlite: Path
) -> None:
    servers = daphne_factory(2, env={"DURABLE_HARNESS_CHECK": "1"})
    assert len({server.port for server in servers}) == 2
    assert len({server.pid for server in servers}) == 2
    for server in servers:
        assert http_get(server.http_url("/health/")) == "ok"
    # The database they share was migrated.
    with sqlite3.connect(durable_sqlite) as db:
        assert db.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0

    assert servers[0].stop() is not None
    assert not servers[0].running
    assert http_get(servers[1].http_url("/health/")) == "ok"


@pytest.mark.e2e  # a daphne process that fails to start
def test_startup_failure_reports_server_output() -> None:
    server = DaphneServer(application="tests.app.no_such_module:application", startup_timeout=20)
    try:
        with pytest.raises(DaphneServerError) as excinfo:
            server.start()
    finally:
        server.close()
    message = str(excinfo.value)
    assert "exited with code" in message
    assert "no_such_module" in message


async def test_recv_helpers() -> None:
    async def handler(ws):  # type: ignore[no-untyped-def]
        for message in ["pong", '{"n": 1}', "not json", '{"n": 2}', b"\x00bin"]:
            await ws.send(message)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            assert await recv_until(ws, lambda m: m == "pong") == "pong"
            assert await recv_json(ws) == {"n": 1}
            assert await recv_json_until(ws, lambda v: v["n"] == 2) == {"n": 2}
            assert await recv_until(ws, lambda m: isinstance(m, bytes)) == b"\x00bin"
            with pytest.raises(AssertionError, match="no matching message"):
                await recv_until(ws, lambda m: False, timeout=0.2)
