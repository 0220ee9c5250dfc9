#!/usr/bin/env python
"""Failing Redis at the issue's scale: counts of lost and repeated handler runs.

``python bench/faults_bench.py`` (about two minutes) starts three daphne processes of
the test application (``tests.settings``, Redis session and channel layers on a private
``redis-server`` with an append-only file, the default ``LEASE_TIME`` of 5 s) and
spreads ``--clients`` Census sockets of one object over them, each sending a numbered
message every ``--interval`` seconds. Three scenarios, each on fresh processes:

1. ``outage``: Redis stopped for ``--outage`` seconds (10) and started again with its
   data, while the clients keep sending.
2. ``freeze``: Redis frozen with SIGSTOP for ``--outage`` seconds, then SIGCONT.
3. ``disconnect``: Redis frozen for ``--stall`` seconds (15, past daphne's
   ``application_close_timeout`` of 10 s); meanwhile a client sends five messages and
   closes. An observer counts the messages and the close that reach the object.

For each: messages sent, handled (a reply), repeated (more than one reply: a handler
that ran twice), missing, and the log lines of the servers that matter. These are
counts, not timings: a good run has 0 repeated and 0 missing whatever the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from harness.databases import migrate_test_sqlite
from harness.redis_tools import PrivateRedis
from harness.servers import DaphneServer, start_all, test_app_server
from websockets.asyncio.client import connect

LOG_LINES = {
    "objects held (writes failed)": "writing to the session layer failed",
    "lost data (wrongly)": "Redis lost this process's data",
    "cancelled by daphne": "took too long to shut down and was killed",
    "sends failed": "sockets on",
    "dropped": "dropped",
}


def servers_for(redis: PrivateRedis, sqlite: Path, args: Any) -> list[DaphneServer]:
    env = {
        "DURABLE_TEST_SQLITE": str(sqlite),
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": redis.url(),
        "DURABLE_TEST_REDIS_PREFIX": f"faults-{uuid.uuid4().hex[:8]}",
    }
    # (Verbose, as the test suite runs them: the log lines below are counted.)
    return start_all([test_app_server(env, f"daphne-{i}", verbose=True) for i in range(3)])


async def sender(url: str, stop: asyncio.Event, interval: float) -> dict[str, int]:
    replies: Counter[int] = Counter()
    sent = 0
    async with connect(url, max_size=None) as ws:

        async def read() -> None:
            async for message in ws:
                value = json.loads(message)
                if "n" in value:
                    replies[value["n"]] += 1

        reader = asyncio.create_task(read())
        while not stop.is_set():
            await ws.send(json.dumps({"op": "n", "n": sent}))
            sent += 1
            await asyncio.sleep(interval)  # the load's pace
        deadline = time.monotonic() + 240
        while len(replies) < sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # bounded wait for the last replies
        reader.cancel()
    return {
        "sent": sent,
        "handled": len(replies),
        "repeated": sum(1 for c in replies.values() if c > 1),
        "missing": sent - len(replies),
    }


async def load_scenario(name: str, args: Any, sqlite: Path) -> dict[str, Any]:
    redis = PrivateRedis(persistent=True).start()
    servers = servers_for(redis, sqlite, args)
    try:
        room = uuid.uuid4().hex[:10]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                sender(servers[i % 3].url(f"/ws/census/{room}/"), stop, args.interval)
            )
            for i in range(args.clients)
        ]
        await asyncio.sleep(3)
        if name == "outage":
            redis.stop()
            await asyncio.sleep(args.outage)
            redis.start()
        else:
            redis.freeze()
            await asyncio.sleep(args.outage)
            redis.thaw()
        await asyncio.sleep(5)
        stop.set()
        results = await asyncio.gather(*tasks)
        totals = {k: sum(r[k] for r in results) for k in results[0]}
        return {**totals, **logs(servers)}
    finally:
        for server in servers:
            server.close()
        redis.close()


async def disconnect_scenario(args: Any, sqlite: Path) -> dict[str, Any]:
    redis = PrivateRedis(persistent=True).start()
    servers = servers_for(redis, sqlite, args)
    try:
        room = uuid.uuid4().hex[:10]
        seen: list[Any] = []
        async with connect(servers[0].url(f"/ws/census/{room}/?observe=1")) as observer:
            await observer.send(json.dumps({"op": "whoami"}))
            await observer.recv()
            leaving = await connect(servers[1].url(f"/ws/census/{room}/"))
            await leaving.send(json.dumps({"op": "whoami"}))
            await leaving.recv()
            redis.freeze()
            for n in range(2, 7):
                text = f"m{n}"
                await leaving.send(
                    json.dumps({"op": "broadcast", "text": text, "tag": "observers"})
                )
            await leaving.close()
            await asyncio.sleep(args.stall)
            redis.thaw()
            try:
                async with asyncio.timeout(30):
                    async for message in observer:
                        seen.append(message)
                        if "close" in message:
                            break
            except TimeoutError:
                pass
        handled = [m for m in seen if isinstance(m, str) and m.startswith("m")]
        return {
            "sent": 5,
            "handled": len(handled),
            "missing": 5 - len(handled),
            "close delivered": int(any("close" in m for m in seen)),
            **logs(servers),
        }
    finally:
        for server in servers:
            server.close()
        redis.close()


LOG_DIR: Path | None = None


def logs(servers: list[DaphneServer]) -> dict[str, int]:
    output = "".join(server.output() for server in servers)
    if LOG_DIR is not None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        for server in servers:
            (LOG_DIR / f"{server.name}-{time.time_ns()}.log").write_text(server.output())
    return {label: output.count(text) for label, text in LOG_LINES.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--interval", type=float, default=0.04)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--stall", type=float, default=15.0)
    parser.add_argument("--only", choices=["outage", "freeze", "disconnect"])
    parser.add_argument("--log-dir", help="copy the servers' logs there")
    args = parser.parse_args()
    global LOG_DIR
    LOG_DIR = Path(args.log_dir) if args.log_dir else None
    sqlite = Path(tempfile.mkdtemp(prefix="faults-bench-")) / "db.sqlite3"
    migrate_test_sqlite(sqlite)
    results = {}
    for name in ("outage", "freeze", "disconnect"):
        if args.only in (None, name):
            if name == "disconnect":
                results[name] = await disconnect_scenario(args, sqlite)
            else:
                results[name] = await load_scenario(name, args, sqlite)
    for name, result in results.items():
        print(f"{name:>10}: " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    asyncio.run(main())
