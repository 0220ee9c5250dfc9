#!/usr/bin/env python
"""Storage and stub benchmark: storage latency and throughput, stub-call round trips.

Everything is measured inside a daphne process (``python -m daphne ...
tests.app.asgi:application`` with the test settings), on the same code path as users':

Storage, per database (SQLite file, PostgreSQL on 127.0.0.1), database connection
(``CONN_MAX_AGE=0``, Django's default: Django closes and reopens the connection around
every storage call; or ``None``: kept) and session layer (in-memory: no fencing; Redis:
every write also locks the object's fence row and the first call claims it): an async
view calls ``StorageBench(room).measure(k, size, batch)`` (an @rpc method of
``tests.app.storage_consumers.StorageBench``), which times inside the object, with
``time.perf_counter_ns``, ``k`` sequential ``put(key, value)`` of ``size``-byte strings,
then ``k`` ``get(key)``, then ``k / batch`` ``put({batch entries})`` and as many
``storage.transaction()`` blocks of ``batch`` puts. puts/s = puts / the wall time of
the sequential puts (one object: turn-based, so sequential is what one object can do);
keys/s (batched) = keys written / the summed time of the batch calls.

Stub calls: an async view (``/safe/<room>/bench-stub/``) times ``n`` sequential
``await Safe.get(room).pid()`` calls in its own process:
  memory, live         the object is live in the same process;
  memory, hibernated   ``django_durable.testing.hibernate()`` before each call (not
                       timed): each call re-creates the instance (on_start) first;
  redis, live          two servers; the object's socket is on A, the view on B: each
                       call crosses the channel layer to A and back;
  redis, hibernated    two servers, no socket anywhere: B takes the object's lease,
                       wakes it, runs the call and hibernates it again (B serves no
                       socket), every call.

Every case has servers of its own, all started first; one discarded warm-up of each
case, then ``--repeat`` rounds that measure every case in turn (so a change in the
machine's load falls on all of them alike); medians and p99s are over the samples of
every round. Prints a table; ``--markdown PATH`` also writes it with the command and
the machine.

    python bench/storage_bench.py --markdown docs/benchmarks-storage.md
    python bench/storage_bench.py --k 200 --calls 100 --repeat 1 --backends sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness.databases import ServerDatabase, migrate_test_sqlite
from harness.measure import nearest_rank
from harness.redis_tools import delete_prefix
from harness.servers import DaphneServer, start_all, test_app_server


def ms(ns: float) -> float:
    return ns / 1e6


def summary(samples: list[int]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median_ms": ms(statistics.median(samples)),
        "p99_ms": ms(nearest_rank(samples, 99)),
        "mean_ms": ms(statistics.fmean(samples)),
    }


def start_servers(count: int, env: dict[str, str]) -> list[DaphneServer]:
    return start_all([test_app_server(env, f"daphne-{i}", verbose=True) for i in range(count)])


class Holder:
    """A socket kept open on an object (so that it is live in that process); whatever
    the object sends to it is read and dropped."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._reader = asyncio.get_running_loop().create_task(self._drain())

    @classmethod
    async def open(cls, server: DaphneServer, path: str) -> Holder:
        from websockets.asyncio.client import connect

        return cls(await asyncio.wait_for(connect(server.url(path), max_size=None), 10))

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            async for _ in self.ws:
                pass

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def redis_env() -> dict[str, str]:
    return {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": os.environ.get(
            "DURABLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9"
        ),
        "DURABLE_TEST_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
    }


# Storage ------------------------------------------------------------------------------


class StorageCase:
    """One database / connection / session-layer combination, with its own servers."""

    def __init__(self, label: str, servers: list[DaphneServer]) -> None:
        self.label = label
        self.servers = servers
        self.raw: dict[str, list[int]] = {"put": [], "get": [], "batch": [], "txn": []}
        self.put_total = 0

    def measure(self, k: int, size: int, batch: int, warm_up: bool = False) -> None:
        room = uuid.uuid4().hex[:10]
        k = max(50, k // 10) if warm_up else k
        url = f"/safe/{room}/bench-storage/?k={k}&size={size}&batch={batch}"
        raw = self.servers[0].get(url, timeout=600.0)
        if warm_up:
            return
        for name in self.raw:
            self.raw[name].extend(raw[name])
        self.put_total += raw["put_total"]

    def result(self, batch: int) -> dict[str, Any]:
        raw = self.raw
        return {
            "put": summary(raw["put"]),
            "get": summary(raw["get"]),
            "puts_per_s": len(raw["put"]) / (self.put_total / 1e9),
            "batch": summary(raw["batch"]),
            "batch_keys_per_s": batch * len(raw["batch"]) / (sum(raw["batch"]) / 1e9),
            "txn": summary(raw["txn"]),
            "txn_keys_per_s": batch * len(raw["txn"]) / (sum(raw["txn"]) / 1e9),
        }


# Stubs --------------------------------------------------------------------------------


class StubCase:
    """Calls from ``view_server``'s async view to ``Safe(room)``."""

    def __init__(self, label: str, view_server: DaphneServer, room: str, hibernate: bool):
        self.label = label
        self.view_server = view_server
        self.room = room
        self.flag = "1" if hibernate else "0"
        self.samples: list[int] = []
        self.object_pids: set[int] = set()
        self.view_pid = 0

    def measure(self, n: int, warm_up: bool = False) -> None:
        n = max(10, n // 10) if warm_up else n
        url = f"/safe/{self.room}/bench-stub/?n={n}&hibernate={self.flag}"
        raw = self.view_server.get(url, timeout=600.0)
        if warm_up:
            return
        self.samples.extend(raw["samples"])
        self.object_pids.update(raw["object_pids"])
        self.view_pid = raw["pid"]

    def result(self) -> dict[str, Any]:
        where = "view's process" if self.object_pids == {self.view_pid} else "another process"
        return {**summary(self.samples), "ran_in": where}


# Runs ---------------------------------------------------------------------------------

CONNECTIONS = {"per-call": "per call", "persistent": "kept"}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start every case's servers, then measure the cases in turn, ``--repeat`` rounds,
    so that a change in the machine's load falls on every case alike."""
    workdir = Path(tempfile.mkdtemp(prefix="durable-storage-bench-"))
    template = workdir / "template.sqlite3"
    migrate_test_sqlite(template)
    databases: list[ServerDatabase] = []
    servers: list[DaphneServer] = []
    peers: list[Holder] = []
    prefixes: list[str] = []
    storage_cases: list[StorageCase] = []
    stub_cases: list[StubCase] = []
    try:
        for backend in args.backends:
            sqlite_path = workdir / f"{backend}.sqlite3"
            sqlite_path.write_bytes(template.read_bytes())
            database = ServerDatabase(backend, sqlite_path)
            databases.append(database)
            for conn in args.connections:
                for layer in args.layers:
                    env = dict(database.env)
                    if conn == "persistent":
                        env["DURABLE_TEST_CONN_MAX_AGE"] = "none"
                    if layer == "redis":
                        env.update(redis_env())
                        prefixes.append(env["DURABLE_TEST_REDIS_PREFIX"])
                    started = start_servers(2 if layer == "redis" else 1, env)
                    servers.extend(started)
                    label = f"{backend}, {layer}, connection {CONNECTIONS[conn]}"
                    storage_cases.append(StorageCase(label, started))
                    if backend != args.backends[0] or conn != args.connections[0]:
                        continue
                    if layer == "memory":
                        room = uuid.uuid4().hex[:10]
                        stub_cases.append(StubCase("memory, live", started[0], room, False))
                        stub_cases.append(StubCase("memory, hibernated", started[0], room, True))
                    else:
                        a, b = started
                        room = uuid.uuid4().hex[:10]
                        peers.append(await Holder.open(a, f"/ws/safe/{room}/"))
                        label = "redis, live in another process"
                        stub_cases.append(StubCase(label, b, room, False))
                        label = "redis, hibernated, woken by the calling process"
                        stub_cases.append(StubCase(label, b, uuid.uuid4().hex[:10], False))
        for case in storage_cases:
            print(f"warm-up: {case.label}", flush=True)
            await asyncio.to_thread(case.measure, args.k, args.size, args.batch, True)
        for stub_case in stub_cases:
            await asyncio.to_thread(stub_case.measure, args.calls, True)
        for round_ in range(args.repeat):
            for case in storage_cases:
                print(f"round {round_ + 1}/{args.repeat}: {case.label}", flush=True)
                await asyncio.to_thread(case.measure, args.k, args.size, args.batch)
            for stub_case in stub_cases:
                print(f"round {round_ + 1}/{args.repeat}: stubs, {stub_case.label}", flush=True)
                await asyncio.to_thread(stub_case.measure, args.calls)
        return {
            "storage": {case.label: case.result(args.batch) for case in storage_cases},
            "stub": {case.label: case.result() for case in stub_cases},
        }
    finally:
        for peer in peers:
            await peer.close()
        for server in servers:
            server.close()
        for database in databases:
            database.drop()
        for prefix in prefixes:
            delete_prefix(prefix, redis_env()["DURABLE_TEST_REDIS_URL"])


# Report -------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = [
        "Storage, measured inside the object (ms per call; one object, sequential):",
        "",
        "| database / session layer | get median | get p99 | put median | put p99 "
        "| puts/s | put(dict of B) median | keys/s batched | transaction of B median "
        "| keys/s in transactions |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results["storage"].items():
        lines.append(
            f"| {label} | {r['get']['median_ms']:.3f} | {r['get']['p99_ms']:.3f} "
            f"| {r['put']['median_ms']:.3f} | {r['put']['p99_ms']:.3f} "
            f"| {r['puts_per_s']:,.0f} | {r['batch']['median_ms']:.2f} "
            f"| {r['batch_keys_per_s']:,.0f} | {r['txn']['median_ms']:.2f} "
            f"| {r['txn_keys_per_s']:,.0f} |"
        )
    lines += [
        "",
        "Stub call round trip, timed in an async view (ms; `await Safe.get(id).pid()`):",
        "",
        "| case | median | p99 | mean | calls | ran in |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in results["stub"].items():
        lines.append(
            f"| {label} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} "
            f"| {r['n']} | {r['ran_in']} |"
        )
    return "\n".join(lines)


def machine() -> str:
    def version(command: list[str]) -> str:
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return "?"

    pg = version(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"])
    fsync = version(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW synchronous_commit"]
    )
    tmp_fs = version(["df", "-T", tempfile.gettempdir()]).splitlines()[-1:] or ["?"]
    return (
        f"- {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version} (file in {tempfile.gettempdir()}: "
        f"{' '.join(tmp_fs[0].split()[:2])}), PostgreSQL {pg} on 127.0.0.1 "
        f"(synchronous_commit={fsync}), Redis on 127.0.0.1\n"
        f"- daphne, test settings (`tests.settings`); the load average when it ran: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=1000, help="puts and gets per round")
    parser.add_argument("--size", type=int, default=100, help="value size (bytes of str)")
    parser.add_argument("--batch", type=int, default=100, help="entries per batched put")
    parser.add_argument("--calls", type=int, default=500, help="stub calls per case and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every case")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--layers", default="memory,redis")
    parser.add_argument(
        "--connections",
        default="per-call,persistent",
        help="per-call: CONN_MAX_AGE=0 (Django's default); persistent: CONN_MAX_AGE=None",
    )
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args()
    args.backends = args.backends.split(",")
    args.layers = args.layers.split(",")
    args.connections = args.connections.split(",")
    command = "python bench/storage_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = time.time()
    results = asyncio.run(run(args))
    text = table(results)
    print()
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(
            "# Benchmarks: storage and stub calls\n\n"
            f"Measured {time.strftime('%Y-%m-%d', time.gmtime(started))} with\n\n"
            f"```\n{command}\n```\n\n"
            f"{machine()}\n"
            f"- {args.repeat} rounds over every case (interleaved), each of k={args.k} "
            f"sequential puts and gets of {args.size}-byte values and k/B batches of "
            f"B={args.batch}, and {args.calls} stub calls per case; one discarded warm-up "
            "of each case first. Percentiles are over the samples of every round. How each "
            "figure is taken: the docstring of `bench/storage_bench.py`.\n\n"
            f"{text}\n"
        )
        print(f"\nwrote {args.markdown}")


if __name__ == "__main__":
    main()
