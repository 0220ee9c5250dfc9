#!/usr/bin/env python
"""Cluster benchmark: django-durable across daphne processes sharing one Redis.

Three measurements in one run (``python bench/cluster_bench.py``, a few minutes on 2
cores), against the application ``clusterapp.asgi:application`` (see
``bench/clusterapp``), every daphne started as

    PYTHONPATH=.:bench DJANGO_SETTINGS_MODULE=clusterapp.settings BENCH_PREFIX=<fresh> \\
        python -m daphne -b 127.0.0.1 -p PORT --websocket_timeout -1 -v 0 \\
        clusterapp.asgi:application

with ``channels_redis.core.RedisChannelLayer`` and ``RedisSessionLayer`` configured as
``docs/deployment.md`` says (hosts as dicts with ``socket_timeout: None`` and
``max_connections: 1000``, ``capacity: 10000``), under a key prefix of its own, and the
open-file limit raised (clients and servers inherit it from this process).

1. **Broadcast across two processes.** 2,000 sockets on one durable object, 1,000 held
   by each of two daphne processes (the first owns the object). A client socket held by
   the *other* process sends ``bcast:<n>``; the handler runs
   ``await self.state.broadcast("b:<n>", tag="members")``. Against that, stock Channels
   on two other daphne processes (``BENCH_APP=channels``: django_durable not even
   installed): 2,000 ``AsyncWebsocketConsumer``s, 1,000 on each, in one group of
   ``RedisChannelLayer``; the trigger consumer ``group_send``s and each consumer's
   handler sends to its socket. A round takes from the moment the client sends the
   trigger until the last of the 2,000 sockets has the message (``--clients`` client
   processes timestamp every arrival with ``time.monotonic_ns``, one clock for the whole
   machine). One warm-up round, then ``--rounds`` rounds, variants interleaved. The
   servers mark the stages (handler start, local send loop, the other process's
   ``durable.send``, Channels consumers' sends) on the same clock, and the CPU time of
   each server process per round is read from ``/proc``.
2. **Round-trip latency.** One socket sends ``echo:<i>`` and waits for ``e:<i>`` from the
   handler, ``--echoes`` times in sequence: from a socket held by a process that is not
   the object's owner (forwarded through Redis both ways), from a socket on the owner
   process, a ``relay:<i>`` from the non-owner socket that the handler sends on to an
   observer socket on the owner's process (a forwarded event with nothing sent back to
   the sender's process), and, as references, from a single daphne with the in-memory layers, from a
   stock Channels consumer on the Redis layer, and a bare Redis ``PING``. Paths
   interleaved in blocks of 100. Then ``--burst`` echoes sent back to back (throughput
   of one object).
3. **Failover.** Three daphne processes; the object's owner holds ``--victims``
   sockets; the two others hold ``--loaders`` sockets that each send a numbered message
   every ``--load-interval`` seconds, and an observer socket. ``kill -9`` of the owner
   at a random point of the lease cycle; then the time until the first reply from a
   handler in another process, until every loader has replies within 0.25 s again, and
   until the observer has the ``websocket_close(1006)`` of the first and the last of the
   dead process's sockets. Every loader's replies are checked for loss, duplicates and
   order. ``--failovers`` runs with the default ``LEASE_TIME`` (5 s) and as many with
   ``--short-lease`` (1.5 s), fresh processes and key prefix each time.

Diagnostics (not in the default run): ``--py-spy DIR`` profiles the servers after the
measurements; ``--redis-commands N`` counts, with ``MONITOR``, the Redis commands that
N round trips of the non-owner, owner and relay paths cause.

Prints a table and writes ``bench/results/cluster-<timestamp>.json`` (and
``cluster-latest.json``); ``bench/results/`` is not in git. It deletes its own Redis
keys (by prefix) when done and never flushes Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SQLITE = RESULTS_DIR / "cluster.sqlite3"
APPLICATION = "clusterapp.asgi:application"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
BROADCAST_TARGET = 0.3  # durable median <= 0.3 x channels median
#: Failover: a loader has caught up once a reply comes within this many seconds.
CAUGHT_UP = 0.25

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.daphne_server import DaphneServer  # noqa: E402

# -- helpers --------------------------------------------------------------------------


def raise_nofile(target: int = 65536) -> int:
    """Raise RLIMIT_NOFILE towards ``target`` (children inherit it); the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((target, max(target, hard)), (min(target, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far, in ms (resolution 1 / CLK_TCK)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quantile(values: list[float], q: float) -> float:
    """Inclusive quantile (``q`` in 0..1) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def server_env(prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "clusterapp.settings",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
        ),
        "BENCH_PREFIX": prefix,
        "BENCH_REDIS_URL": REDIS_URL,
        "BENCH_SQLITE": str(SQLITE),
    }
    env.update(extra)
    return env


class Server(DaphneServer):
    """A daphne process of the cluster (the test harness's, with the bench app)."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        super().__init__(
            env,
            application=APPLICATION,
            extra_args=["-v", "0"],
            startup_timeout=90.0,
            name=name,
        )

    def get(self, path: str, timeout: float = 30.0) -> Any:
        with urllib.request.urlopen(self.http_url(path), timeout=timeout) as response:
            return json.loads(response.read())

    def status(self) -> dict[str, Any]:
        return self.get("/bench/status")  # type: ignore[no-any-return]

    def nofile(self) -> int:
        with open(f"/proc/{self.pid}/limits") as limits:
            for line in limits:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        return -1

    def command_line(self) -> str:
        return (
            "PYTHONPATH=.:bench DJANGO_SETTINGS_MODULE=clusterapp.settings "
            + " ".join(
                f"{k}=..." if k == "BENCH_PREFIX" else f"{k}={v}"
                for k, v in self.env.items()
                if k.startswith("BENCH_") and k not in ("BENCH_SQLITE", "BENCH_REDIS_URL")
            )
            + f" python -m daphne -b 127.0.0.1 -p PORT --websocket_timeout -1 -v 0 {APPLICATION}"
        )


def start(servers: list[Server]) -> list[Server]:
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
        for server in servers:
            server.status()  # the application answers
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


def stop(servers: list[Server]) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


def wait_sockets(server: Server, expected: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = server.status()
        if status["sockets"] == expected:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} holds {status['sockets']} sockets, not {expected}")
        time.sleep(0.2)


def delete_prefix(prefix: str) -> int:
    """Delete this run's Redis keys (never anything else: no FLUSHALL)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    finally:
        client.close()
    return deleted


def migrate() -> None:
    """A fresh migrated SQLite file: the servers' alarm pollers read it (nothing else does)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        SQLITE.unlink()
    env = dict(os.environ)
    env.update(server_env("bench-cluster-migrate", BENCH_LAYER="memory"))
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )


# -- client processes (broadcast) ----------------------------------------------------------


def worker_main(conn: Any) -> None:
    raise_nofile()
    try:
        asyncio.run(_worker(conn))
    finally:
        conn.close()


async def _worker(conn: Any) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    #: variant -> server index -> sockets
    sockets: dict[str, dict[int, list[Any]]] = {}
    states: dict[str, SimpleNamespace] = {}
    readers: list[asyncio.Task[None]] = []

    def state(variant: str) -> SimpleNamespace:
        if variant not in states:
            states[variant] = SimpleNamespace(
                expected=None, total=0, count=0, per_server={}, done=asyncio.Event()
            )
        return states[variant]

    async def reader(ws: Any, st: SimpleNamespace, index: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if message == st.expected:
                    now = time.monotonic_ns()
                    st.count += 1
                    entry = st.per_server.setdefault(index, [0, now, now])
                    entry[0] += 1
                    entry[2] = now
                    if st.count >= st.total:
                        st.done.set()

    async def open_one(variant: str, index: int, url: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            ws = await connect(url, ping_interval=None, compression=None, open_timeout=120)
        st = state(variant)
        sockets.setdefault(variant, {}).setdefault(index, []).append(ws)
        st.total += 1
        readers.append(loop.create_task(reader(ws, st, index)))

    while True:
        command = await loop.run_in_executor(None, conn.recv)
        op = command[0]
        try:
            if op == "connect":
                # ("connect", variant, [(server index, url, count), ...], concurrency)
                _, variant, plan, concurrency = command
                gate = asyncio.Semaphore(concurrency)
                started = time.monotonic()
                await asyncio.gather(
                    *(
                        open_one(variant, index, url, gate)
                        for index, url, count in plan
                        for _ in range(count)
                    )
                )
                conn.send(("ok", time.monotonic() - started, state(variant).total))
            elif op == "arm":
                st = state(command[1])
                st.expected, st.count, st.per_server = command[2], 0, {}
                st.done = asyncio.Event()
                conn.send(("ok",))
            elif op == "fire":
                _, variant, index, text = command
                sent_at = time.monotonic_ns()
                await sockets[variant][index][0].send(text)
                conn.send(("ok", sent_at))
            elif op == "wait":
                _, variant, timeout = command
                st = state(variant)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(st.done.wait(), timeout)
                conn.send(("ok", st.count, st.per_server))
            elif op == "close":
                every = [
                    ws for by_server in sockets.values() for s in by_server.values() for ws in s
                ]
                await asyncio.gather(*(ws.close() for ws in every), return_exceptions=True)
                for task in readers:
                    task.cancel()
                conn.send(("ok",))
                return
            else:
                conn.send(("error", f"unknown command {op!r}"))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Clients:
    def __init__(self, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def _answer(self, index: int, timeout: float) -> tuple[Any, ...]:
        if not self.pipes[index].poll(timeout):
            raise RuntimeError(f"client process {index} did not answer within {timeout} s")
        answer = self.pipes[index].recv()
        if answer[0] != "ok":
            raise RuntimeError(f"client process {index}: {answer[1]}")
        return answer  # type: ignore[no-any-return]

    def ask(self, index: int, command: tuple[Any, ...], timeout: float = 300.0) -> tuple[Any, ...]:
        self.pipes[index].send(command)
        return self._answer(index, timeout)

    def ask_all(
        self, commands: list[tuple[Any, ...]], timeout: float = 300.0
    ) -> list[tuple[Any, ...]]:
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return [self._answer(i, timeout) for i in range(len(self.pipes))]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask_all([("close",)] * len(self.pipes), timeout=120)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


# -- profiling (--py-spy DIR) ------------------------------------------------------------------

CATEGORIES = (
    ("(django_durable/", "django_durable"),
    ("clusterapp/", "bench app"),
    ("(channels_redis/", "channels_redis"),
    ("(channels/", "channels"),
    ("(asgiref/", "asgiref"),
    ("(redis/", "redis-py"),
    ("(msgpack", "msgpack"),
    ("(autobahn/", "autobahn"),
    ("(twisted/", "twisted"),
    ("(txaio/", "twisted"),
    ("(daphne/", "daphne"),
    ("(asyncio/", "asyncio"),
    ("(concurrent/", "threads"),
    ("(threading.py", "threads"),
    ("(selectors.py", "selectors (epoll)"),
    ("(django/", "django"),
)
WATCHED = ("django_durable", "channels_redis", "channels", "asgiref", "bench app")


#: Leaf frames that are (mostly) a system call.
SYSCALLS = (
    ("_SelectorSocketTransport.write (asyncio/", "socket send (syscall)"),
    ("untilConcludes (twisted/", "socket send (syscall)"),
    ("_read_ready__data_received (asyncio/", "socket recv (syscall)"),
    ("Connection.doRead (twisted/", "socket recv (syscall)"),
    ("EpollSelector.select (selectors.py", "epoll_wait (syscall)"),
    ("_PollLikeSelector.modify (selectors.py", "epoll_ctl (syscall)"),
)


def _category(frame: str) -> str:
    for marker, name in CATEGORIES:
        if marker in frame:
            return name
    return "other"


def _self_category(frames: list[str]) -> str:
    """A system call for the leaves that are one; else the package of the innermost
    frame that has one (stdlib helpers such as namedtuple count for their caller)."""
    for marker, name in SYSCALLS:
        if marker in frames[-1]:
            return name
    for frame in reversed(frames):
        category = _category(frame)
        if category != "other":
            return "epoll_ctl (syscall)" if "(selectors.py" in frame else category
    return "other"


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Self time by package and inclusive time by function, from py-spy's raw output.

    Each line is ``frame;frame;...;frame count``, outermost first; a frame reads
    ``function (file:line)``.
    """
    total = 0
    by_package: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf = _self_category(frames)
        by_package[leaf] = by_package.get(leaf, 0) + count
        seen = set()
        for frame in frames:
            if _category(frame) not in WATCHED:
                continue
            name = frame.split(":", 1)[0].replace(str(REPO_ROOT) + "/", "")
            name = name.split("site-packages/", 1)[-1]
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + count
    return {
        "samples": total,
        "self_by_package_pct": {
            k: 100 * v / total for k, v in sorted(by_package.items(), key=lambda i: -i[1])
        }
        if total
        else {},
        "inclusive_pct": [
            [name, 100 * count / total]
            for name, count in sorted(inclusive.items(), key=lambda i: -i[1])[:top]
        ]
        if total
        else [],
    }


class Profiler:
    """``py-spy record`` attached to server processes while a workload runs."""

    def __init__(self, servers: list[Server], directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.name = name
        self.runs: list[tuple[Server, Path, subprocess.Popen[bytes]]] = []
        for server in servers:
            path = directory / f"{name}-{server.name}.txt"
            command = [exe, "record", "--pid", str(server.pid), "--format", "raw"]
            command += ["--output", str(path), "--rate", "250", "--nonblocking"]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.runs.append((server, path, proc))
        time.sleep(1.5)  # attached

    def stop(self) -> dict[str, Any]:
        for _, _, proc in self.runs:
            proc.send_signal(signal.SIGINT)
        result = {}
        for server, path, proc in self.runs:
            _, err = proc.communicate(timeout=60)
            if not path.exists():
                result[server.name] = {"error": err.decode(errors="replace")[-2000:]}
                continue
            result[server.name] = {"file": str(path), **summarize_profile(path)}
        return result


def profile_report(profiles: dict[str, Any]) -> str:
    lines = []
    for workload, servers in profiles.items():
        for server, p in servers.items():
            if "error" in p:
                lines.append(f"py-spy {workload} {server}: {p['error'].strip()[-300:]}")
                continue
            lines.append(f"py-spy {workload}, {server}: {p['samples']} samples")
            lines.append(
                "  self time by package: "
                + ", ".join(f"{k} {v:.0f}%" for k, v in p["self_by_package_pct"].items())
            )
            lines.append("  inclusive, application side:")
            for name, pct in p["inclusive_pct"][:15]:
                lines.append(f"    {pct:5.1f}%  {name}")
    return "\n".join(lines)


# -- 1. broadcast ---------------------------------------------------------------------------


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class BroadcastVariant:
    def __init__(self, name: str, label: str, path: str, servers: list[Server]) -> None:
        self.name = name
        self.label = label
        self.path = path
        self.servers = servers
        self.rounds: list[dict[str, Any]] = []
        self.warmup: list[dict[str, Any]] = []

    def url(self, index: int) -> str:
        return self.servers[index].url(self.path)


def connect_variant(
    clients: Clients, variant: BroadcastVariant, per_server: int, concurrency: int
) -> float:
    """``per_server`` sockets on each server, split over the client processes.

    The first socket goes to server 0 alone, before the others, so that for the durable
    variant server 0 takes the object (the first event's process does) and owns it.
    """
    n = len(clients.pipes)
    started = time.monotonic()
    clients.ask(0, ("connect", variant.name, [(0, variant.url(0), 1)], 1))
    plans: list[list[tuple[int, str, int]]] = [[] for _ in range(n)]
    for index in range(len(variant.servers)):
        counts = shares(per_server, n)
        if index == 0:
            counts[0] -= 1  # the first socket, connected above
        for worker, count in enumerate(counts):
            plans[worker].append((index, variant.url(index), count))
    per_worker = max(1, concurrency // n)
    clients.ask_all([("connect", variant.name, plan, per_worker) for plan in plans])
    for server in variant.servers:
        wait_sockets(server, per_server)
    return time.monotonic() - started


def broadcast_round(
    clients: Clients, variant: BroadcastVariant, number: int, sockets: int, timeout: float = 60.0
) -> dict[str, Any]:
    expected = f"b:{number}"
    clients.ask_all([("arm", variant.name, expected)] * len(clients.pipes))
    for server in variant.servers:
        server.get("/bench/stages")  # forget marks from before
    cpu_before = [proc_cpu_ms(s.pid) for s in variant.servers]
    sent_at = clients.ask(0, ("fire", variant.name, 1, f"bcast:{number}"))[1]
    answers = clients.ask_all(
        [("wait", variant.name, timeout)] * len(clients.pipes), timeout=timeout + 30
    )
    cpu = [proc_cpu_ms(s.pid) - b for s, b in zip(variant.servers, cpu_before, strict=True)]
    received = sum(a[1] for a in answers)
    per_server: dict[int, list[int]] = {}
    for answer in answers:
        for index, (count, first, last) in answer[2].items():
            entry = per_server.get(int(index))
            if entry is None:
                per_server[int(index)] = [count, first, last]
            else:
                entry[0] += count
                entry[1] = min(entry[1], first)
                entry[2] = max(entry[2], last)

    def rel(t: int | None) -> float | None:
        return None if t is None else (t - sent_at) / 1e6

    lasts = [e[2] for e in per_server.values()]
    firsts = [e[1] for e in per_server.values()]
    stages: dict[str, Any] = {}
    for index, server in enumerate(variant.servers):
        taken = server.get("/bench/stages")
        marks = {}
        for mark in taken["marks"]:
            marks.setdefault(mark["stage"], rel(mark["t"]))
        consumers = taken["consumers"]
        if consumers["count"]:
            marks["consumers_first_send"] = rel(consumers["first"])
            marks["consumers_last_send"] = rel(consumers["last"])
            marks["consumers"] = consumers["count"]
        stages[f"server{index}"] = marks
    return {
        "ms": rel(max(lasts)) if received else None,
        "first_ms": rel(min(firsts)) if received else None,
        "received": received,
        "complete": received == sockets,
        "server_cpu_ms": cpu,
        "loadavg1": os.getloadavg()[0],
        "per_server": {
            f"server{index}": {"received": e[0], "first_ms": rel(e[1]), "last_ms": rel(e[2])}
            for index, e in sorted(per_server.items())
        },
        "stages": stages,
    }


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["ms"] for r in rounds if r["ms"] is not None]
    result: dict[str, Any] = {
        "median_ms": statistics.median(times) if times else None,
        "p90_ms": quantile(times, 0.9) if times else None,
        "min_ms": min(times) if times else None,
        "max_ms": max(times) if times else None,
        "all_complete": all(r["complete"] for r in rounds),
        "server_cpu_ms_median": [
            statistics.median(r["server_cpu_ms"][i] for r in rounds)
            for i in range(len(rounds[0]["server_cpu_ms"]))
        ],
        "loadavg1_median": statistics.median(r["loadavg1"] for r in rounds),
    }
    # Median of each stage across rounds.
    stage_medians: dict[str, dict[str, float]] = {}
    for r in rounds:
        for server, marks in r["stages"].items():
            for stage, value in marks.items():
                if isinstance(value, (int, float)):
                    stage_medians.setdefault(server, {}).setdefault(stage, []).append(value)  # type: ignore[arg-type]
        for server, e in r["per_server"].items():
            for key in ("first_ms", "last_ms"):
                stage_medians.setdefault(server, {}).setdefault(f"clients_{key}", []).append(e[key])  # type: ignore[arg-type]
    result["stage_medians_ms"] = {
        server: {stage: statistics.median(vals) for stage, vals in marks.items()}  # type: ignore[arg-type]
        for server, marks in stage_medians.items()
    }
    return result


def run_broadcast(
    args: argparse.Namespace, durable: list[Server], plain: list[Server]
) -> dict[str, Any]:
    variants = [
        BroadcastVariant(
            "durable", "django-durable, state.broadcast(tag=)", "/ws/durable/bc/", durable
        ),
        BroadcastVariant("channels", "Channels consumers + group_send", "/ws/plain/bc/", plain),
    ]
    per_server = args.sockets // 2
    clients = Clients(args.clients)
    result: dict[str, Any] = {"sockets": per_server * 2, "variants": {}}
    try:
        for variant in variants:
            log(
                f"broadcast: connecting {per_server} sockets to each of 2 processes "
                f"({variant.name})"
            )
            seconds = connect_variant(clients, variant, per_server, args.concurrency)
            log(f"broadcast: {variant.name} connected in {seconds:.1f} s")
            result["variants"][variant.name] = {"label": variant.label, "connect_seconds": seconds}
        statuses = [s.status() for s in durable]
        owner_ok = "bc" in statuses[0]["live"] and "bc" not in statuses[1]["live"]
        result["durable_status"] = statuses
        if not owner_ok:
            raise RuntimeError(f"the durable object is not owned by server 0 alone: {statuses}")
        total = per_server * 2
        for variant in variants:
            variant.warmup.append(broadcast_round(clients, variant, 0, total))
        counter = 0
        for number in range(args.rounds):
            line = []
            for variant in variants:
                counter += 1
                time.sleep(args.gap)
                r = broadcast_round(clients, variant, counter, total)
                variant.rounds.append(r)
                line.append(f"{variant.name} {fmt(r['ms'], '.0f')} ms ({r['received']})")
            log(f"broadcast round {number + 1}: " + ", ".join(line))
        if args.py_spy:
            result["profiles"] = {}
            for variant in variants:
                log(f"broadcast: {args.profile_rounds} more {variant.name} rounds under py-spy")
                profiler = Profiler(variant.servers, args.py_spy, f"broadcast-{variant.name}")
                for _ in range(args.profile_rounds):
                    counter += 1
                    time.sleep(args.gap)
                    broadcast_round(clients, variant, counter, total)
                result["profiles"][f"broadcast-{variant.name}"] = profiler.stop()
        for variant in variants:
            entry = result["variants"][variant.name]
            entry.update(summarize_rounds(variant.rounds))
            entry["rounds"] = variant.rounds
            entry["warmup"] = variant.warmup
        d, c = result["variants"]["durable"], result["variants"]["channels"]
        result["ratio_median"] = d["median_ms"] / c["median_ms"]
        result["ratio_p90"] = d["p90_ms"] / c["p90_ms"]
        result["target"] = BROADCAST_TARGET
        result["met"] = result["ratio_median"] <= BROADCAST_TARGET
    finally:
        clients.close()
    return result


# -- 2. latency -------------------------------------------------------------------------------


def echo_over(ws: Any) -> Any:
    async def round_trip(i: int) -> None:
        await ws.send(f"echo:{i}")
        reply = await ws.recv()
        if reply != f"e:{i}":
            raise RuntimeError(f"unexpected reply {reply!r} to echo:{i}")

    return round_trip


def relay_over(ws: Any, observer: Any) -> Any:
    """A forwarded event with no reply to the sender's process: ``relay:<i>`` from a
    socket on the non-owner process, relayed by the handler to an observer socket on
    the owner's process (so the round trip is forward + handle + local send)."""

    async def round_trip(i: int) -> None:
        await ws.send(f"relay:{i}")
        reply = await observer.recv()
        if reply != f"r:{i}":
            raise RuntimeError(f"unexpected relay {reply!r} for relay:{i}")

    return round_trip


async def _block(round_trip: Any, start: int, count: int, out: list[float]) -> None:
    for i in range(start, start + count):
        t0 = time.perf_counter_ns()
        await round_trip(i)
        out.append((time.perf_counter_ns() - t0) / 1e6)


async def _latency(
    args: argparse.Namespace, durable: list[Server], memory: Server, plain: Server
) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    opts = {"ping_interval": None, "compression": None}
    # The owner's socket first: its connect takes the object for server 0.
    owner_ws = await connect(durable[0].url("/ws/durable/lat/"), **opts)
    observer_ws = await connect(durable[0].url("/ws/durable/lat/?observe=1"), **opts)
    remote_ws = await connect(durable[1].url("/ws/durable/lat/"), **opts)
    memory_ws = await connect(memory.url("/ws/durable/lat/"), **opts)
    plain_ws = await connect(plain.url("/ws/plain/lat/"), **opts)
    from redis import asyncio as aioredis

    redis_client = aioredis.Redis.from_url(REDIS_URL)
    paths = {
        "non_owner": (
            "socket on the non-owner process -> owner's handler -> back (Redis)",
            echo_over(remote_ws),
        ),
        "owner": (
            "socket on the owner process (owner-local path, Redis layers)",
            echo_over(owner_ws),
        ),
        "relay": (
            "non-owner socket -> owner's handler -> a socket on the owner's process",
            relay_over(remote_ws, observer_ws),
        ),
        "memory": ("single process, in-memory layers (reference)", echo_over(memory_ws)),
        "channels": ("stock Channels consumer echo, Redis layer (reference)", echo_over(plain_ws)),
        "redis_ping": (
            "one Redis PING from asyncio redis-py (reference)",
            lambda i: redis_client.ping(),
        ),
    }
    try:
        statuses = [durable[0].status(), durable[1].status()]
        if "lat" not in statuses[0]["live"] or "lat" in statuses[1]["live"]:
            raise RuntimeError(f"'lat' is not owned by server 0 alone: {statuses}")
        samples: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, float] = {name: 0.0 for name in paths}
        watched = {
            "non_owner": durable,
            "owner": durable,
            "relay": durable,
            "memory": [memory],
            "channels": [plain],
            "redis_ping": [],
        }
        for _, round_trip in paths.values():
            await _block(round_trip, 0, args.echo_warmup, [])
        block = 100
        done = 0
        while done < args.echoes:
            count = min(block, args.echoes - done)
            for name, (_, round_trip) in paths.items():
                before = sum(proc_cpu_ms(s.pid) for s in watched[name])
                await _block(round_trip, done, count, samples[name])
                cpu[name] += sum(proc_cpu_ms(s.pid) for s in watched[name]) - before
            done += count
        result: dict[str, Any] = {"echoes": args.echoes, "paths": {}}
        for name, (label, _) in paths.items():
            values = samples[name]
            result["paths"][name] = {
                "label": label,
                "median_ms": statistics.median(values),
                "p90_ms": quantile(values, 0.90),
                "p99_ms": quantile(values, 0.99),
                "min_ms": min(values),
                "max_ms": max(values),
                "mean_ms": statistics.fmean(values),
                "server_cpu_ms_per_round_trip": cpu[name] / len(values) if watched[name] else None,
            }
        if args.py_spy:
            log(f"latency: {args.echoes} more non-owner echoes under py-spy")
            profiler = Profiler(durable, args.py_spy, "echo-non-owner")
            await _block(echo_over(remote_ws), 0, args.echoes, [])
            result["profiles"] = {"echo-non-owner": profiler.stop()}
        if args.redis_commands:
            prefix = durable[0].env["BENCH_PREFIX"]
            result["redis_commands"] = {}
            counted = (
                ("non_owner", echo_over(remote_ws)),
                ("owner", echo_over(owner_ws)),
                ("relay", relay_over(remote_ws, observer_ws)),
            )
            for name, round_trip in counted:
                log(f"latency: counting Redis commands of {args.redis_commands} {name} echoes")
                result["redis_commands"][name] = await _count_commands(
                    prefix, round_trip, args.redis_commands
                )
        # Throughput: one socket sends --burst messages without waiting; the handler
        # answers each (turn-based: one event at a time).
        result["burst"] = {}
        for name, ws in (("non_owner", remote_ws), ("owner", owner_ws), ("memory", memory_ws)):
            before = sum(proc_cpu_ms(s.pid) for s in watched[name])
            seconds = await _burst(ws, args.burst)
            spent = sum(proc_cpu_ms(s.pid) for s in watched[name]) - before
            result["burst"][name] = {
                "messages": args.burst,
                "seconds": seconds,
                "per_second": args.burst / seconds,
                "server_cpu_ms_per_message": spent / args.burst,
            }
        return result
    finally:
        for ws in (owner_ws, observer_ws, remote_ws, memory_ws, plain_ws):
            with contextlib.suppress(Exception):
                await ws.close()
        await redis_client.aclose()


async def _monitor(prefix: str, seconds: float, during: Any = None) -> dict[str, int]:
    """Commands on this run's keys that clients sent to Redis (not those run by scripts)
    while ``during`` runs, or for ``seconds``; counted by command name."""
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    counts: dict[str, int] = {}

    async def listen(monitor: Any) -> None:
        async for info in monitor.listen():
            if info["client_type"] == "lua" or prefix not in info["command"]:
                continue
            name = info["command"].split(" ", 1)[0].upper()
            counts[name] = counts.get(name, 0) + 1

    try:
        async with client.monitor() as monitor:
            task = asyncio.create_task(listen(monitor))
            await asyncio.sleep(0.3)
            if during is not None:
                await during
            else:
                await asyncio.sleep(seconds)
            await asyncio.sleep(0.5)  # the writes and acknowledgements after the last reply
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    finally:
        await client.aclose()
    return counts


async def _count_commands(prefix: str, round_trip: Any, count: int) -> dict[str, Any]:
    """Redis commands per round trip, less those of an idle window as long (maintenance)."""
    started = time.monotonic()
    busy = await _monitor(prefix, 0, _block(round_trip, 0, count, []))
    idle = await _monitor(prefix, time.monotonic() - started - 0.8)
    per = {k: (busy.get(k, 0) - idle.get(k, 0)) / count for k in busy}
    return {
        "round_trips": count,
        "per_round_trip": {k: v for k, v in sorted(per.items(), key=lambda i: -i[1]) if v > 0},
        "total_per_round_trip": sum(v for v in per.values() if v > 0),
        "idle_window": idle,
    }


async def _burst(ws: Any, count: int) -> float:
    """Send ``count`` echoes back to back; seconds until the last reply."""
    started = time.perf_counter_ns()

    async def sender() -> None:
        for i in range(count):
            await ws.send(f"echo:burst{i}")

    task = asyncio.create_task(sender())
    reply = None
    for _ in range(count):
        reply = await ws.recv()
    await task
    if reply != f"e:burst{count - 1}":
        raise RuntimeError(f"burst: last reply {reply!r}")
    return (time.perf_counter_ns() - started) / 1e9


def run_latency(
    args: argparse.Namespace, durable: list[Server], memory: Server, plain: Server
) -> dict[str, Any]:
    log(f"latency: {args.echoes} sequential echoes per path")
    result = asyncio.run(_latency(args, durable, memory, plain))
    for name, p in result["paths"].items():
        log(f"latency {name}: median {p['median_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms")
    for name, b in result["burst"].items():
        log(f"burst {name}: {b['per_second']:.0f} messages/s")
    return result


# -- 3. failover ------------------------------------------------------------------------------


async def _failover_once(
    args: argparse.Namespace, servers: list[Server], lease: float
) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    opts = {"ping_interval": None, "compression": None, "open_timeout": 60}
    path = "/ws/durable/fo/"
    owner, survivors = servers[0], servers[1:]
    owner_pid = owner.pid
    victims = [await connect(owner.url(path), **opts)]  # takes the object for the owner
    victims += await asyncio.gather(
        *(connect(owner.url(path), **opts) for _ in range(args.victims - 1))
    )
    observer = await connect(survivors[0].url(path + "?observe=1"), **opts)
    loaders = [
        await connect(survivors[i % len(survivors)].url(path), **opts) for i in range(args.loaders)
    ]
    status = owner.status()
    if "fo" not in status["live"]:
        raise RuntimeError(f"the object is not live on the first server: {status}")

    closes: list[int] = []
    closed_ids: list[str] = []
    replies: list[list[tuple[int, int, int]]] = [[] for _ in loaders]  # (k, pid, t)
    sent: list[list[int]] = [[] for _ in loaders]  # send time of k
    stop_load = asyncio.Event()

    async def observe() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in observer:
                if isinstance(message, str) and message.startswith("closed:1006:"):
                    closes.append(time.monotonic_ns())
                    closed_ids.append(message.rsplit(":", 1)[1])

    async def read(i: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in loaders[i]:
                # r:<i>.<k>:<pid>
                body, pid = message[2:].rsplit(":", 1)
                replies[i].append((int(body.split(".", 1)[1]), int(pid), time.monotonic_ns()))

    async def load(i: int) -> None:
        k = 0
        # Spread the loaders' sends over the interval.
        await asyncio.sleep(args.load_interval * i / len(loaders))
        next_at = time.monotonic()
        while not stop_load.is_set():
            sent[i].append(time.monotonic_ns())
            await loaders[i].send(f"n:{i}.{k}")
            k += 1
            next_at += args.load_interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    tasks = [asyncio.create_task(observe())]
    tasks += [asyncio.create_task(read(i)) for i in range(len(loaders))]
    loads = [asyncio.create_task(load(i)) for i in range(len(loaders))]
    try:
        # A random extra wait, so that the kill falls anywhere in the lease renewal,
        # heartbeat and maintenance cycles (every LEASE_TIME / 3) rather than always at
        # the same point of them.
        extra_wait = random.uniform(0, lease)
        await asyncio.sleep(args.load_warmup + extra_wait)
        before = sum(len(r) for r in replies)
        if not before or any(pid != owner_pid for r in replies for _, pid, _ in r):
            raise RuntimeError("before the kill, replies did not all come from the owner")
        killed_at = time.monotonic_ns()
        owner.process.kill()  # SIGKILL
        owner.process.wait()
        deadline = time.monotonic() + 6 * lease + 20

        def takeover() -> tuple[int, int] | None:
            first = None
            for r in replies:
                for _, pid, t in r:
                    if pid != owner_pid and (first is None or t < first[0]):
                        first = (t, pid)
            return first

        while time.monotonic() < deadline:
            if takeover() is not None and len(set(closed_ids)) >= args.victims:
                break
            await asyncio.sleep(0.02)
        # Keep the load a little longer after everything happened, then drain.
        await asyncio.sleep(0.5)
        stop_load.set()
        await asyncio.gather(*loads)
        drain_deadline = time.monotonic() + 2 * lease + 30
        while time.monotonic() < drain_deadline:
            if all(len({k for k, _, _ in r}) >= len(s) for r, s in zip(replies, sent, strict=True)):
                break
            await asyncio.sleep(0.05)
        first = takeover()
        new_pids = sorted({pid for r in replies for _, pid, _ in r if pid != owner_pid})
        per_loader = []
        for r, s in zip(replies, sent, strict=True):
            ks = [k for k, _, _ in r]
            per_loader.append(
                {
                    "sent": len(s),
                    "replies": len(ks),
                    "unanswered": len(set(range(len(s))) - set(ks)),
                    "duplicates": len(ks) - len(set(ks)),
                    "out_of_order": sum(1 for a, b in itertools.pairwise(ks) if b < a),
                    # Each message answered twice: by which process, how long after the kill.
                    "duplicate_detail": [
                        {
                            "k": k,
                            "by_old_owner": [pid == owner_pid for kk, pid, _ in r if kk == k],
                            "at_s": [(t - killed_at) / 1e9 for kk, _, t in r if kk == k],
                            "sent_s": (s[k] - killed_at) / 1e9,
                        }
                        for k in sorted({k for k in ks if ks.count(k) > 1})
                    ],
                }
            )
        # The longest wait for a reply among messages sent after the kill, and the last
        # message answered by the old owner.
        old_last = max((t for r in replies for _, pid, t in r if pid == owner_pid), default=None)
        waits = []
        for r, s in zip(replies, sent, strict=True):
            got: dict[int, int] = {}
            for k, _, t in r:
                got.setdefault(k, t)
            for k, t_sent in enumerate(s):
                if k in got and got[k] >= killed_at:
                    waits.append((got[k] - t_sent) / 1e9)
        # Reply latency in the steady state before the kill, and when the new owner had
        # caught up: per loader, the first reply from it that came within CAUGHT_UP of
        # its message (replies come in order, so every earlier one had come too).
        pre = [
            (t - s[k]) / 1e6
            for r, s in zip(replies, sent, strict=True)
            for k, _, t in r
            if s[k] < killed_at and t < killed_at
        ]
        caught_up = []
        for r, s in zip(replies, sent, strict=True):
            times = [t for k, pid, t in r if pid != owner_pid and (t - s[k]) / 1e9 < CAUGHT_UP]
            caught_up.append((min(times) - killed_at) / 1e9 if times else None)
        first_close = {}
        for t, sid in zip(closes, closed_ids, strict=True):
            first_close.setdefault(sid, t)
        close_times = sorted(first_close.values())
        return {
            "lease_time": lease,
            "load_msgs_per_s": len(loaders) / args.load_interval,
            "kill_after_s": args.load_warmup + extra_wait,
            "pre_kill_reply_ms": {
                "median": statistics.median(pre),
                "p99": quantile(pre, 0.99),
                "max": max(pre),
                "n": len(pre),
            },
            "caught_up_s": None if None in caught_up else max(caught_up),  # type: ignore[type-var]
            "distinct_closed": len(first_close),
            "duplicate_close_events": len(closed_ids) - len(first_close),
            "takeover_s": None if first is None else (first[0] - killed_at) / 1e9,
            "first_1006_s": (close_times[0] - killed_at) / 1e9 if close_times else None,
            "last_1006_s": (close_times[-1] - killed_at) / 1e9
            if len(close_times) >= args.victims
            else None,
            "closes_1006": len(closes),
            "victims": args.victims,
            "old_owner_pid": owner_pid,
            "new_owner_pids": new_pids,
            "new_owner_server": [s.name for s in survivors if s.pid in new_pids],
            "last_reply_from_old_owner_s": None
            if old_last is None
            else (old_last - killed_at) / 1e9,
            "longest_reply_wait_after_kill_s": max(waits) if waits else None,
            "loaders": per_loader,
            "unanswered": sum(p["unanswered"] for p in per_loader),
            "duplicated": sum(p["duplicates"] for p in per_loader),
            "reordered": sum(p["out_of_order"] for p in per_loader),
            "messages_sent": sum(p["sent"] for p in per_loader),
        }
    finally:
        stop_load.set()
        for task in tasks + loads:
            task.cancel()
        await asyncio.gather(*tasks, *loads, return_exceptions=True)
        for ws in [observer, *loaders]:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close()
        for ws in victims:
            with contextlib.suppress(Exception):
                ws.transport.abort()


def run_failover(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"series": {}}
    for lease in (None, args.short_lease):
        name = "default" if lease is None else f"{lease:g}"
        effective = 5.0 if lease is None else lease
        runs = []
        for rep in range(args.failovers):
            prefix = f"bench-cluster-fo-{uuid.uuid4().hex[:12]}"
            extra = {} if lease is None else {"BENCH_LEASE_TIME": str(lease)}
            servers = [Server(f"fo-{i}", server_env(prefix, **extra)) for i in range(3)]
            start(servers)
            try:
                run = asyncio.run(_failover_once(args, servers, effective))
            except BaseException:
                for server in servers:
                    print(server.output_tail(4000), file=sys.stderr)
                raise
            finally:
                stop(servers)
                delete_prefix(prefix)
            log(
                f"failover LEASE_TIME={effective:g} #{rep + 1}: takeover "
                f"{fmt(run['takeover_s'], '.2f')} s, 1006 first "
                f"{fmt(run['first_1006_s'], '.2f')} s last {fmt(run['last_1006_s'], '.2f')} s "
                f"({run['distinct_closed']}/{run['victims']}); caught up "
                f"{fmt(run['caught_up_s'], '.2f')} s; reply before the kill "
                f"{run['pre_kill_reply_ms']['median']:.1f} ms; unanswered {run['unanswered']}, "
                f"duplicated {run['duplicated']}, reordered {run['reordered']} "
                f"of {run['messages_sent']}"
            )
            runs.append(run)
        summary: dict[str, Any] = {"lease_time": effective, "runs": runs}
        for key in (
            "takeover_s",
            "first_1006_s",
            "last_1006_s",
            "caught_up_s",
            "longest_reply_wait_after_kill_s",
        ):
            values = [r[key] for r in runs if r[key] is not None]
            summary[key] = (
                {
                    "min": min(values),
                    "median": statistics.median(values),
                    "max": max(values),
                    "n": len(values),
                }
                if values
                else None
            )
        for key in ("unanswered", "duplicated", "reordered", "messages_sent"):
            summary[key] = sum(r[key] for r in runs)
        result["series"][name] = summary
    return result


# -- report ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import channels
    import channels_redis
    import daphne
    import django
    import msgpack
    import redis
    import websockets

    versions = {
        "python": platform.python_version(),
        "django": django.__version__,
        "channels": channels.__version__,
        "channels_redis": getattr(channels_redis, "__version__", "?"),
        "daphne": daphne.__version__,
        "redis-py": redis.__version__,
        "websockets": websockets.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
    }
    for module in ("twisted", "autobahn"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(REDIS_URL)
        versions["redis-server"] = client.info("server")["redis_version"]
        client.close()
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--short", "django_durable"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "commit": commit,
        "django_durable_uncommitted_changes": [d for d in dirty if d],
        "versions": versions,
    }


def report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    b = results.get("broadcast")
    if b:
        lines.append(
            f"1. Broadcast of one message to {b['sockets']} sockets on two daphne processes "
            f"(trigger sent -> last socket has it), {results['args']['rounds']} rounds"
        )
        lines.append(
            f"{'variant':40} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8} "
            f"{'all recv':>9} {'server CPU ms/round':>20}"
        )
        for v in b["variants"].values():
            cpu = " + ".join(f"{c:.0f}" for c in v["server_cpu_ms_median"])
            lines.append(
                f"{v['label']:40} {fmt(v['median_ms']):>10} {fmt(v['p90_ms']):>8} "
                f"{fmt(v['min_ms']):>8} {fmt(v['max_ms']):>8} {v['all_complete']!s:>9} {cpu:>20}"
            )
        if results["args"].get("remote_first"):
            lines.append(
                "EXPERIMENT --remote-first: RedisTransport.send patched to send to other "
                "processes before its own sockets"
            )
        verdict = "MET" if b["met"] else "MISSED"
        lines.append(
            f"durable / channels: median {b['ratio_median']:.3f}, p90 {b['ratio_p90']:.3f}  "
            f"(target <= {b['target']}: {verdict})"
        )
        d = b["variants"]["durable"]["stage_medians_ms"]
        c = b["variants"]["channels"]["stage_medians_ms"]
        lines.append("stages, median ms after the trigger was sent:")
        s0, s1 = d.get("server0", {}), d.get("server1", {})
        lines.append(
            "  durable: owner got event {} | handler {} | local send loop {}..{} | broadcast() "
            "returned {} | other process got durable.send {} | its send loop {}..{} | last "
            "arrival: owner's sockets {}, other's {}".format(
                *(
                    fmt(x)
                    for x in (
                        s0.get("event_received"),
                        s0.get("handler_start"),
                        s0.get("send_local_start"),
                        s0.get("send_local_done"),
                        s0.get("broadcast_returned"),
                        s1.get("remote_received"),
                        s1.get("send_local_start"),
                        s1.get("send_local_done"),
                        s0.get("clients_last_ms"),
                        s1.get("clients_last_ms"),
                    )
                )
            )
        )
        c0, c1 = c.get("server0", {}), c.get("server1", {})
        lines.append(
            "  channels: group_send {}..{} | consumers' sends: process 0 {}..{}, process 1 {}..{} "
            "| last arrival: process 0 {}, process 1 {}".format(
                *(
                    fmt(x)
                    for x in (
                        c1.get("group_send_start"),
                        c1.get("group_send_returned"),
                        c0.get("consumers_first_send"),
                        c0.get("consumers_last_send"),
                        c1.get("consumers_first_send"),
                        c1.get("consumers_last_send"),
                        c0.get("clients_last_ms"),
                        c1.get("clients_last_ms"),
                    )
                )
            )
        )
        lines.append("")
    lat = results.get("latency")
    if lat:
        lines.append(
            f"2. Round trip socket -> handler -> same socket, {lat['echoes']} sequential "
            "echoes per path"
        )
        lines.append(
            f"{'path':68} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'srv CPU ms':>10}"
        )
        for p in lat["paths"].values():
            lines.append(
                f"{p['label']:68} {p['median_ms']:>10.3f} {p['p90_ms']:>8.3f} "
                f"{p['p99_ms']:>8.3f} {p['max_ms']:>8.2f} "
                f"{fmt(p['server_cpu_ms_per_round_trip'], '.3f'):>10}"
            )
        lines.append(
            "srv CPU ms: CPU time of the server processes involved, per round trip (resolution "
            "of /proc: 10 ms per 100-echo block)"
        )
        burst = lat.get("burst", {})
        if burst:
            lines.append(
                f"Throughput, {next(iter(burst.values()))['messages']} echoes sent back to back "
                "from one socket: "
                + ", ".join(
                    f"{name} {b['per_second']:.0f}/s "
                    f"({b['server_cpu_ms_per_message']:.2f} ms CPU/msg)"
                    for name, b in burst.items()
                )
            )
        for name, c in lat.get("redis_commands", {}).items():
            lines.append(
                f"Redis commands per {name} round trip: {c['total_per_round_trip']:.1f} ("
                + ", ".join(f"{k} {v:.2f}" for k, v in c["per_round_trip"].items())
                + ")"
            )
        lines.append("")
    fo = results.get("failover")
    if fo:
        lines.append(
            "3. Failover after kill -9 of the owner (3 processes), seconds after the kill: "
            "min / median / max"
        )
        lines.append(
            f"{'LEASE_TIME':>10} {'runs':>5} {'first reply by new owner':>26} "
            f"{'first 1006 close':>22} {'last 1006 close':>22} {'caught up':>22} "
            f"{'unans/dup/reord of sent':>24}"
        )

        def mmm(s: dict[str, Any] | None) -> str:
            return "-" if not s else f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f}"

        for s in fo["series"].values():
            lines.append(
                f"{s['lease_time']:>10g} {len(s['runs']):>5} {mmm(s['takeover_s']):>26} "
                f"{mmm(s['first_1006_s']):>22} {mmm(s['last_1006_s']):>22} "
                f"{mmm(s['caught_up_s']):>22} "
                f"{s['unanswered']}/{s['duplicated']}/{s['reordered']} of {s['messages_sent']:>6}"
            )
        runs = [r for s in fo["series"].values() for r in s["runs"]]
        pre = [r["pre_kill_reply_ms"]["median"] for r in runs]
        duplicates = sum(r["duplicate_close_events"] for r in runs)
        any_series = next(iter(fo["series"].values()))
        run0 = any_series["runs"][0]
        lines.append(
            f"load: {run0['load_msgs_per_s']:.0f} messages/s from {len(run0['loaders'])} "
            f"sockets on the survivors; reply before the kill: median "
            f"{statistics.median(pre):.1f} ms; "
            f"caught up: when each loader again had replies within {CAUGHT_UP} s; "
            f"duplicate 1006 events: {duplicates}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=2000, help="broadcast: sockets in all")
    parser.add_argument("--rounds", type=int, default=10, help="broadcast: measured rounds")
    parser.add_argument("--gap", type=float, default=0.3, help="broadcast: seconds between rounds")
    parser.add_argument("--clients", type=int, default=2, help="broadcast: client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    parser.add_argument("--echoes", type=int, default=3000, help="latency: round trips per path")
    parser.add_argument("--echo-warmup", type=int, default=200)
    parser.add_argument(
        "--burst", type=int, default=1000, help="latency: messages sent back to back (throughput)"
    )
    parser.add_argument("--failovers", type=int, default=5, help="failover: runs per lease time")
    parser.add_argument("--short-lease", type=float, default=1.5)
    parser.add_argument("--victims", type=int, default=20, help="failover: sockets on the owner")
    parser.add_argument("--loaders", type=int, default=8, help="failover: loaded sockets")
    parser.add_argument(
        "--load-interval", type=float, default=0.1, help="seconds between a loader's messages"
    )
    parser.add_argument("--load-warmup", type=float, default=1.5)
    parser.add_argument(
        "--only", default="broadcast,latency,failover", help="comma-separated parts to run"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the measurements, profile the servers with py-spy (raw stacks in DIR): "
        "--echoes non-owner echoes, --profile-rounds broadcast rounds per variant",
    )
    parser.add_argument("--profile-rounds", type=int, default=10)
    parser.add_argument(
        "--redis-commands",
        type=int,
        default=0,
        metavar="N",
        help="after the latency measurement, count (Redis MONITOR) the commands that N "
        "non-owner and N owner echoes send to Redis",
    )
    parser.add_argument(
        "--remote-first",
        action="store_true",
        help="EXPERIMENT: the durable servers send other processes' durable.send before "
        "their own sockets (RedisTransport.send patched from the bench app)",
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}

    nofile = raise_nofile()
    log(f"fd limit {nofile} (clients and servers inherit it)")
    migrate()
    started = time.monotonic()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": " ".join(["python", *sys.argv]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "fd_limit": nofile,
        "loadavg_before": os.getloadavg(),
    }
    if parts & {"broadcast", "latency"}:
        prefix = f"bench-cluster-{uuid.uuid4().hex[:12]}"
        experiment = {"BENCH_REMOTE_FIRST": "1"} if args.remote_first else {}
        durable = [Server(f"durable-{i}", server_env(prefix, **experiment)) for i in range(2)]
        plain = [
            Server(f"channels-{i}", server_env(prefix, BENCH_APP="channels")) for i in range(2)
        ]
        memory = Server("memory", server_env(prefix, BENCH_LAYER="memory"))
        servers = [*durable, *plain, memory]
        log("starting 5 daphne processes (2 durable, 2 channels, 1 in-memory)")
        start(servers)
        results["server_commands"] = {s.name: s.command_line() for s in servers}
        results["server_fd_limit"] = servers[0].nofile()
        try:
            if "latency" in parts:
                results["latency"] = run_latency(args, durable, memory, plain[0])
            if "broadcast" in parts:
                results["broadcast"] = run_broadcast(args, durable, plain)
        except BaseException:
            for server in servers:
                print(server.output_tail(4000), file=sys.stderr)
            raise
        finally:
            stop(servers)
            delete_prefix(prefix)
    if "failover" in parts:
        results["failover"] = run_failover(args)
    results["loadavg_after"] = os.getloadavg()
    results["elapsed_seconds"] = time.monotonic() - started

    print()
    print(report(results))
    profiles = {
        **results.get("latency", {}).get("profiles", {}),
        **results.get("broadcast", {}).get("profiles", {}),
    }
    if profiles:
        print()
        print(profile_report(profiles))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = args.output or RESULTS_DIR / f"cluster-{stamp}.json"
    text = json.dumps(results, indent=2)
    path.write_text(text)
    if not args.output:
        (RESULTS_DIR / "cluster-latest.json").write_text(text)
    print(f"\nresults: {path} ({results['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
