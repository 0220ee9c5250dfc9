#!/usr/bin/env python
"""Overload and shutdown benchmark (issue 10): a flood, and a rolling restart.

``python bench/overload_bench.py`` (a couple of minutes on 2 cores; the rolling restart
needs Redis on 127.0.0.1:6379 and is skipped without it).

1. **Flood.** One daphne process serving ``benchapp.asgi_overload:application``
   (``FloodRoom``: 5 ms per message, no answer, ``ping:<n>`` echoed at once). One
   client sends ``--frames`` frames of 1 KiB as fast as it can to one object; a second
   socket on the same object sends ``ping:<n>`` every 20 ms and times each echo. The
   server's RSS (``/proc/<pid>/status``) is sampled every 20 ms. Measured: the peak RSS
   growth over the idle server, the time from the first flood frame until the server
   closed the flooder (1013), and the other socket's round trips meanwhile. Against
   the same server with the bounds lifted (``BENCH_UNBOUNDED=1``), where the flood is
   stopped after ``--unbounded-seconds`` (draining it would take 200,000 x 5 ms).
2. **Rolling restart.** Two daphne processes on Redis (``tests.app.asgi``, the default
   ``LEASE_TIME`` of 5 s); the object is owned by the first; a client on the second
   sends a numbered message every 10 ms. SIGTERM to the owner; measured: the time from
   the signal to the first answer from the surviving process, and that the object's
   ledger lost and repeated nothing. ``--restarts`` times, fresh processes each.

Prints the figures; writes nothing else. It deletes its own Redis keys (by prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from harness.databases import fresh_bench_sqlite, migrate_test_sqlite
from harness.measure import proc_rss_kib as rss_kib
from harness.redis_tools import REDIS_URL, delete_prefix, redis_available
from harness.servers import DaphneServer, bench_server, test_app_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def flood_server(unbounded: bool) -> DaphneServer:
    env = {"BENCH_UNBOUNDED": "1"} if unbounded else {}
    return bench_server(
        "benchapp.asgi_overload:application",
        env,
        name="flood-unbounded" if unbounded else "flood-bounded",
        ready_path=None,
    )


async def flood(unbounded: bool, frames: int, stop_after: float) -> dict[str, Any]:
    server = flood_server(unbounded).start()
    try:
        url = server.url("ws/flood/one/")
        other = await connect(url, proxy=None)
        flooder = await connect(url, proxy=None, write_limit=2**20)
        await other.send("ping:warm")
        await other.recv()
        baseline = rss_kib(server.pid)
        peak = baseline
        done = asyncio.Event()
        rtts: list[float] = []
        closed_after: float | None = None
        close_code: int | None = None

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(server.pid))
                await asyncio.sleep(0.02)

        async def ping() -> None:
            n = 0
            while not done.is_set():
                sent = time.perf_counter()
                await other.send(f"ping:{n}")
                while await other.recv() != f"ping:{n}":
                    pass
                rtts.append(time.perf_counter() - sent)
                n += 1
                await asyncio.sleep(0.02)

        async def send_flood() -> None:
            nonlocal closed_after, close_code
            frame = "x" * 1024
            start = time.perf_counter()
            try:
                for _ in range(frames):
                    await flooder.send(frame)
                    if time.perf_counter() - start > stop_after:
                        return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(stop_after):
                        await flooder.wait_closed()
            except ConnectionClosed:
                pass
            if flooder.close_code is not None:
                closed_after = time.perf_counter() - start
                close_code = flooder.close_code

        tasks = [asyncio.ensure_future(sample()), asyncio.ensure_future(ping())]
        await send_flood()
        # Keep measuring the other socket for a second after the flood ended.
        await asyncio.sleep(1.0)
        done.set()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        return {
            "variant": "unbounded" if unbounded else "bounded (defaults)",
            "rss_growth_mib": (peak - baseline) / 1024,
            "flooder_closed_after_s": closed_after,
            "close_code": close_code,
            "pings": len(rtts),
            "rtt_median_ms": statistics.median(rtts) * 1000 if rtts else None,
            "rtt_max_ms": max(rtts) * 1000 if rtts else None,
        }
    finally:
        server.close()


async def rolling_restart(total: int) -> dict[str, Any]:
    prefix = f"overload-bench-{uuid.uuid4().hex[:8]}"
    database = Path(f"/tmp/{prefix}.sqlite3")
    migrate_test_sqlite(database)
    env = {
        "DURABLE_TEST_SQLITE": str(database),
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
    }
    servers = [test_app_server(env, f"restart-{i}") for i in range(2)]
    for server in servers:
        server.start()
    s0, s1 = servers
    try:
        owner = await connect(s0.url("ws/census/room/"), proxy=None)
        await owner.send(json.dumps({"op": "whoami"}))
        await owner.recv()
        loader = await connect(s1.url("ws/census/room/"), proxy=None)
        replies: list[tuple[float, dict[str, Any]]] = []
        last_reply, ledger_reply = asyncio.Event(), asyncio.Event()

        async def read() -> None:
            async for message in loader:
                value = json.loads(message)
                replies.append((time.perf_counter(), value))
                if value.get("n") == total - 1:
                    last_reply.set()
                if "ledger" in value:
                    ledger_reply.set()

        reader = asyncio.ensure_future(read())
        signalled = 0.0
        for n in range(total):
            await loader.send(json.dumps({"op": "n", "n": n}))
            if n == total // 3:
                s0.terminate()
                signalled = time.perf_counter()
            await asyncio.sleep(0.01)
        async with asyncio.timeout(60):
            await last_reply.wait()
        await loader.send(json.dumps({"op": "ledger"}))
        async with asyncio.timeout(30):
            await ledger_reply.wait()
        ledger = next(v["ledger"] for _, v in replies if "ledger" in v)
        survivor = next(t for t, v in replies if t > signalled and v.get("pid") == s1.pid)
        reader.cancel()
        numbers = [v["n"] for _, v in replies if "n" in v]
        return {
            "takeover_s": survivor - signalled,
            "lost": total - len(set(numbers)),
            "ledger_ok": ledger["count"] == total and ledger["bad"] == 0,
            "owner_exit": s0.wait(),
        }
    finally:
        for server in servers:
            server.close()
        with contextlib.suppress(OSError):
            os.unlink(database)
        delete_prefix(prefix)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--unbounded-seconds", type=float, default=4.0)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    fresh_bench_sqlite()
    for unbounded in (False, True):
        result = await flood(unbounded, args.frames, args.unbounded_seconds)
        print(json.dumps(result))
    if not redis_available():
        print("rolling restart skipped: no Redis on 127.0.0.1:6379")
        return
    for _ in range(args.restarts):
        print(json.dumps(await rolling_restart(args.messages)))


if __name__ == "__main__":
    asyncio.run(main())
