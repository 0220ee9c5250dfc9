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
``storage.transaction()`` blocks of ``batch`` puts. One discarded warm-up run first.
puts/s = k / the wall time of the k sequential puts (one object: turn-based, so
sequential is what one object can do); keys/s (batched) = keys written / the summed
time of the batch calls.

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
One discarded warm-up call series first.

Prints a table; ``--markdown PATH`` also writes it with the command and the machine.

    python bench/storage_bench.py --markdown docs/benchmarks-storage.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from tests.daphne_server import DaphneServer, migrate_sqlite, start_servers  # noqa: E402
from tests.storage_support import E2EDatabase, Peer  # noqa: E402


def get_json(url: str, timeout: float = 600.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def ms(ns: float) -> float:
    return ns / 1e6


def pct(samples: list[int], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(samples: list[int]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median_ms": ms(statistics.median(samples)),
        "p99_ms": ms(pct(samples, 99)),
        "mean_ms": ms(statistics.fmean(samples)),
    }


def redis_env() -> dict[str, str]:
    return {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": os.environ.get(
            "DURABLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9"
        ),
        "DURABLE_TEST_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
    }


# Storage ------------------------------------------------------------------------------


def bench_storage(server: DaphneServer, k: int, size: int, batch: int) -> dict[str, Any]:
    room = uuid.uuid4().hex[:10]
    query = f"k={k}&size={size}&batch={batch}"
    get_json(server.http_url(f"/safe/{room}/bench-storage/?k={max(50, k // 10)}&size={size}"))
    raw = get_json(server.http_url(f"/safe/{room}/bench-storage/?{query}"))
    batch_keys = batch * len(raw["batch"])
    return {
        "put": summary(raw["put"]),
        "get": summary(raw["get"]),
        "puts_per_s": k / (raw["put_total"] / 1e9),
        "batch": summary(raw["batch"]),
        "batch_keys_per_s": batch_keys / (sum(raw["batch"]) / 1e9),
        "txn": summary(raw["txn"]),
        "txn_keys_per_s": batch * len(raw["txn"]) / (sum(raw["txn"]) / 1e9),
    }


# Stubs --------------------------------------------------------------------------------


def bench_stub(view_server: DaphneServer, room: str, n: int, hibernate: bool) -> dict[str, Any]:
    flag = "1" if hibernate else "0"
    get_json(
        view_server.http_url(f"/safe/{room}/bench-stub/?n={max(10, n // 10)}&hibernate={flag}")
    )
    raw = get_json(view_server.http_url(f"/safe/{room}/bench-stub/?n={n}&hibernate={flag}"))
    return {**summary(raw["samples"]), "object_pids": raw["object_pids"], "view_pid": raw["pid"]}


async def hold_socket(server: DaphneServer, room: str) -> Peer:
    return await Peer.open(server, f"/ws/safe/{room}/")


# Runs ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="durable-storage-bench-"))
    template = workdir / "template.sqlite3"
    migrate_sqlite(template)
    results: dict[str, Any] = {"storage": {}, "stub": {}}
    for backend in args.backends:
        sqlite_path = workdir / f"{backend}.sqlite3"
        sqlite_path.write_bytes(template.read_bytes())
        database = E2EDatabase(backend, sqlite_path)
        try:
            for conn in args.connections:
                for layer in args.layers:
                    env = dict(database.env)
                    if conn == "persistent":
                        env["DURABLE_TEST_CONN_MAX_AGE"] = "none"
                    if layer == "redis":
                        env.update(redis_env())
                    servers = start_servers(2 if layer == "redis" else 1, env)
                    try:
                        label = f"{backend}, {layer}, connection {CONNECTIONS[conn]}"
                        print(f"storage: {label} ...", flush=True)
                        results["storage"][label] = bench_storage(
                            servers[0], args.k, args.size, args.batch
                        )
                        if backend == args.backends[0] and conn == args.connections[0]:
                            print(f"stubs: {layer} ...", flush=True)
                            results["stub"].update(bench_stubs(layer, servers, args.calls))
                    finally:
                        for server in servers:
                            server.close()
        finally:
            database.drop()
    return results


CONNECTIONS = {"per-call": "per call", "persistent": "kept"}


def bench_stubs(layer: str, servers: list[DaphneServer], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if layer == "memory":
        (server,) = servers
        room = uuid.uuid4().hex[:10]
        out["memory, live (same process)"] = bench_stub(server, room, n, hibernate=False)
        out["memory, hibernated (same process)"] = bench_stub(server, room, n, hibernate=True)
        return out
    a, b = servers

    async def live() -> dict[str, Any]:
        room = uuid.uuid4().hex[:10]
        peer = await hold_socket(a, room)
        try:
            return await asyncio.to_thread(bench_stub, b, room, n, False)
        finally:
            await peer.close()

    out["redis, live on another process"] = asyncio.run(live())
    out["redis, hibernated, woken by the caller"] = bench_stub(
        b, uuid.uuid4().hex[:10], n, hibernate=False
    )
    return out


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
        where = "view's process" if r["object_pids"] == [r["view_pid"]] else "another process"
        lines.append(
            f"| {label} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} "
            f"| {r['n']} | {where} |"
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
    parser.add_argument("--k", type=int, default=2000, help="sequential puts and gets")
    parser.add_argument("--size", type=int, default=100, help="value size (bytes of str)")
    parser.add_argument("--batch", type=int, default=100, help="entries per batched put")
    parser.add_argument("--calls", type=int, default=1000, help="stub calls per case")
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
    results = run(args)
    text = table(results)
    print()
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(
            "# Benchmarks: storage and stub calls\n\n"
            f"Measured {time.strftime('%Y-%m-%d', time.gmtime(started))} with\n\n"
            f"```\n{command}\n```\n\n"
            f"{machine()}\n"
            f"- k={args.k} sequential puts and gets of {args.size}-byte values, "
            f"batches of B={args.batch}, {args.calls} stub calls per case; one "
            "discarded warm-up run of each. How each figure is taken: the docstring of "
            "`bench/storage_bench.py`.\n\n"
            f"{text}\n"
        )
        print(f"\nwrote {args.markdown}")


if __name__ == "__main__":
    main()
