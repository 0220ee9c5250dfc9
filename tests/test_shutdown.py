"""Graceful shutdown end to end (SPEC section 13): SIGTERM to real server processes.

On one process (in-memory layers) every client sees 1012 and the process exits. On
Redis, with a lease time far longer than any wait here (so only a hand-over can explain
a prompt takeover): the stopping owner's sockets get 1012 and their final events, the
object answers on the surviving process, and a rolling restart under steady load loses
and repeats nothing (the ``Ledger`` attachment counts each socket's messages in the same
fenced write that records them handled; see tests/test_cluster.py). The same under
uvicorn, through ASGI lifespan. Time from SIGTERM to the survivor answering is printed
(``pytest -s``); nothing asserts on it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.cluster_harness import Client, oid, parse_json, redis_cluster
from tests.daphne_server import recv_json

WAIT = 15.0
#: Exit codes of a server stopped by SIGTERM: daphne exits 0; uvicorn, once shut down,
#: raises the signal again so that its status says what stopped it.
STOPPED = (0, -signal.SIGTERM, -signal.SIGINT)


async def ended(client: Client) -> int | None:
    """Wait (bounded) until the server closed the client's connection; the close code."""
    async with asyncio.timeout(WAIT):
        await client.ended.wait()
    assert client.closed_by is not None
    return client.closed_by.rcvd.code if client.closed_by.rcvd is not None else None


@pytest.mark.parametrize(
    ("server", "signum"),
    [
        ("daphne", signal.SIGTERM),
        ("daphne", signal.SIGINT),
        ("uvicorn", signal.SIGTERM),
        ("hypercorn", signal.SIGTERM),
    ],
    ids=["daphne-SIGTERM", "daphne-SIGINT", "uvicorn-SIGTERM", "hypercorn-SIGTERM"],
)
async def test_a_stop_signal_closes_every_socket_with_1012_and_the_process_exits(
    daphne_factory, server: str, signum: int
) -> None:
    (process,) = daphne_factory(1, server=server)
    room = oid()
    sockets = [
        await connect(process.url(f"ws/room/{room}/"), open_timeout=WAIT, proxy=None)
        for _ in range(3)
    ]
    for ws in sockets:
        await ws.send(json.dumps({"op": "whoami"}))
        assert "id" in await recv_json(ws, WAIT)
    process.terminate(signum)
    for ws in sockets:
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws, WAIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
    assert process.wait(WAIT) in STOPPED
    if server == "daphne":  # (uvicorn closes them itself, before lifespan shutdown)
        lines = [line for line in process.output().splitlines() if "WARNING" in line]
        assert sum(f"Room/{room}: 3 sockets closed with 1012" in line for line in lines) == 1


@pytest.mark.parametrize("server", ["daphne", "uvicorn", "hypercorn"])
async def test_sigterm_hands_the_object_over_at_once_with_final_events(
    daphne_factory, server: str
) -> None:
    c = redis_cluster(daphne_factory, 2, server)
    s0, s1 = c.servers
    room = oid()
    try:
        leaving = await c.census(s0, room)  # first: s0 owns the object
        leaving_id = (await leaving.ask({"op": "whoami"}, "id"))["id"]
        observer = await c.census(s1, room, "?observe=1")
        staying = await c.census(s1, room)
        assert (await staying.ask({"op": "where"}, "where"))["where"]["pid"] == s0.pid

        s0.terminate()
        stopped_at = time.monotonic()
        assert await ended(leaving) == 1012
        event = await observer.wait_json(
            lambda m: m.get("event") == "close" and m["id"] == leaving_id, timeout=WAIT
        )
        assert (event["code"], event["was_clean"]) == (1012, True)
        # (uvicorn closes the sockets itself, then sends lifespan shutdown: the object
        # may answer on s0 until then.) Once s0 is gone, the survivor takes the object
        # long before the lease (60 s) could run out.
        assert await asyncio.to_thread(s0.wait, WAIT) in STOPPED
        where = (await staying.ask({"op": "where"}, "where", timeout=WAIT))["where"]
        assert where["pid"] == s1.pid
        print(
            f"{server}: the object answered on the survivor "
            f"{time.monotonic() - stopped_at:.2f} s after SIGTERM"
        )
    finally:
        await c.close()


async def test_a_rolling_restart_under_load_loses_and_repeats_nothing(daphne_factory) -> None:
    c = redis_cluster(daphne_factory, 2)
    s0, s1 = c.servers
    room = oid()
    try:
        await c.census(s0, room)  # s0 owns the object
        senders = [await c.census(s1, room), await c.census(s1, room)]
        total, stop_after = 200, 60
        marks = [len(s.messages) for s in senders]
        for n in range(total):
            for sender in senders:
                await sender.send({"op": "n", "n": n})
            if n == stop_after:
                s0.terminate()
            await asyncio.sleep(0.01)  # the load's pace, not a synchronisation
        for sender, mark in zip(senders, marks, strict=True):
            await sender.wait_json(lambda m: m.get("n") == total - 1, mark, timeout=30)
            replies = [parse_json(m) for m in sender.messages[mark:]]
            numbers = [r["n"] for r in replies if r is not None and "n" in r]
            assert sorted(set(numbers)) == list(range(total))
            ledger = (await sender.ask({"op": "ledger"}, "ledger"))["ledger"]
            assert (ledger["count"], ledger["bad"], ledger["last"]) == (total, 0, total - 1)
        assert s0.wait(WAIT) in STOPPED
        # The restarted process serves again, alongside.
        (s2,) = daphne_factory(1, env=c.env)
        late = await c.census(s2, room)
        assert (await late.ask({"op": "where"}, "where"))["where"]["pid"] == s1.pid
    finally:
        await c.close()


def test_under_uvicorn_bad_settings_stop_the_server_at_lifespan_startup(daphne_factory) -> None:
    """As daphne's command line does (SPEC section 10), through ASGI lifespan."""
    from tests.daphne_server import DaphneServerError

    with pytest.raises(DaphneServerError) as failed:
        daphne_factory(1, {"DURABLE_TEST_MAX_MESSAGE_BYTES": "0"}, server="uvicorn")
    assert "MAX_MESSAGE_BYTES" in str(failed.value)
    assert "Traceback" not in str(failed.value)
