#!/usr/bin/env python
"""Core benchmark: memory per idle socket and broadcast latency on ONE daphne process.

Runs, in one invocation, one daphne process per variant of the same protocol (see
``bench/benchapp``):

  raw             (a) a bare ASGI app that accepts and awaits ``receive`` (the floor);
  channels        (b) a stock Channels ``AsyncWebsocketConsumer`` in one group of the
                      in-memory channel layer;
  durable         (c) a ``django_durable.DurableConsumer``: every socket on one object,
                      one tag, behind ``ProtocolTypeRouter``/``URLRouter``; hibernated for
                      the memory figure;
  raw_routed      (a') diagnostic: (a) behind the same routers as (b) and (c);
  durable_direct  (c') diagnostic: (c) without routers (object id from an override).

Memory, one variant after another: start ``python -m daphne -b 127.0.0.1 -p PORT
--websocket_timeout -1 -v 0 benchapp.asgi_<variant>:application`` (fd limit raised),
open and close one warm-up connection (the durable object is then hibernated), read
VmRSS of the daphne process from ``/proc/<pid>/status`` after a ``gc.collect()`` inside
it and a settle (``--mem-samples`` times), connect ``--sockets`` idle sockets from
``--clients`` separate client processes (``websockets`` asyncio client), hibernate the
durable object (``live_object_ids`` must be empty), read VmRSS again the same way.
Memory per socket = (median after - median before) / sockets. Every server stays up.

Broadcast, interleaved across variants (a, b, c, a', c', a, b, ...) so that a change
in the machine's load hits every variant alike: one client socket sends ``bcast:<n>``;
the server sends ``b:<n>`` to every socket; each client process timestamps each
socket's arrival (``time.monotonic_ns``: one clock for the whole machine); a round's
time is the latest arrival minus the moment the trigger was sent. One discarded
warm-up round per variant, then ``--rounds`` measured rounds: median and p90. Then
``--cold-rounds`` rounds for the durable variants with the object hibernated before
each (the broadcast wakes it). The servers also report the wall and CPU time of their
own broadcast call.

Prints a table and writes ``bench/results/core-<timestamp>.json`` (and
``core-latest.json``); ``bench/results/`` is not in git.

    python bench/core_bench.py --sockets 2000
    python bench/core_bench.py --sockets 500 --variants raw,durable --tracemalloc 16 \
        --concurrency 8        # where the per-socket memory goes (slow; skips broadcasts)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
WS_PATH = "/ws/room/room/"  # the bare app ignores the path

VARIANTS: dict[str, dict[str, str]] = {
    "raw": {"label": "(a) raw ASGI", "app": "benchapp.asgi_raw:application"},
    "channels": {
        "label": "(b) channels consumer + group",
        "app": "benchapp.asgi_channels:application",
    },
    "durable": {"label": "(c) DurableConsumer", "app": "benchapp.asgi_durable:application"},
    # Diagnostics: tell Channels' routing cost from django_durable's own.
    "raw_routed": {
        "label": "(a') raw ASGI behind URLRouter",
        "app": "benchapp.asgi_raw_routed:application",
    },
    "durable_direct": {
        "label": "(c') DurableConsumer, no router",
        "app": "benchapp.asgi_durable_direct:application",
    },
    # bench/history_bench.py: (c) with ``history = 100``, plain and resuming clients.
    "durable_history": {
        "label": "(c) with history = 100, plain clients",
        "app": "benchapp.asgi_durable_history:application",
    },
    "durable_history_resume": {
        "label": "(c) with history = 100, resuming clients",
        "app": "benchapp.asgi_durable_history:application",
        "query": "?durable_resume=1",
    },
}
DURABLE_VARIANTS = {"durable", "durable_direct", "durable_history", "durable_history_resume"}
DEFAULT_VARIANTS = "raw,channels,durable,raw_routed,durable_direct"

MEMORY_TARGET = 1.1  # (c) per socket <= 1.1 x (a)
BROADCAST_TARGET = 1.3  # (c) median broadcast <= 1.3 x raw


# -- helpers --------------------------------------------------------------------------


def raise_nofile(target: int = 65536) -> int:
    """Raise RLIMIT_NOFILE to ``target`` (the hard limit too when allowed); the new soft."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((target, max(target, hard)), (min(target, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the server under test --------------------------------------------------------------


class Server:
    def __init__(self, variant: str, env: dict[str, str] | None = None) -> None:
        self.variant = variant
        self.app = VARIANTS[variant]["app"]
        self.extra_env = env or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"bench-daphne-{variant}-", suffix=".log", delete=False
        )
        self.command: list[str] = []
        #: More daphne options (``bench/many_objects.py --ping-interval``).
        self.extra_args: list[str] = []

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.command = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            HOST,
            "-p",
            str(self.port),
            "--websocket_timeout",
            "-1",
            "-v",
            "0",
            *self.extra_args,
            self.app,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
        )
        env["DJANGO_SETTINGS_MODULE"] = "benchapp.settings"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.output()}")
            try:
                self.get("/bench/status", timeout=1.0)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not answer:\n{self.output()}") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def nofile(self) -> int:
        with open(f"/proc/{self.pid}/limits") as limits:
            for line in limits:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        return -1

    def get(self, path: str, timeout: float = 120.0) -> dict[str, Any]:
        url = f"http://{HOST}:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())

    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}{WS_PATH}{VARIANTS[self.variant].get('query', '')}"

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


# -- client processes -----------------------------------------------------------------


def worker_main(conn: Any, index: int) -> None:
    raise_nofile()
    try:
        asyncio.run(_worker(conn, index))
    finally:
        conn.close()


async def _worker(conn: Any, index: int) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    sockets: list[Any] = []
    readers: list[asyncio.Task[None]] = []
    st = SimpleNamespace(expected=None, count=0, first=0, last=0, done=asyncio.Event())

    async def reader(ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                # (A resuming client's frame: "b <epoch> <offset>\n" then the message.)
                if message == st.expected or (
                    message[:2] == "b " and message.partition("\n")[2] == st.expected
                ):
                    now = time.monotonic_ns()
                    st.count += 1
                    if st.count == 1:
                        st.first = now
                    st.last = now
                    if st.count >= len(sockets):
                        st.done.set()

    async def open_one(url: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            ws = await connect(url, ping_interval=None, compression=None, open_timeout=120)
        sockets.append(ws)
        readers.append(loop.create_task(reader(ws)))

    while True:
        command = await loop.run_in_executor(None, conn.recv)
        op = command[0]
        try:
            if op == "connect":
                _, url, count, concurrency = command
                gate = asyncio.Semaphore(concurrency)
                started = time.monotonic()
                await asyncio.gather(*(open_one(url, gate) for _ in range(count)))
                conn.send(("ok", time.monotonic() - started, len(sockets)))
            elif op == "arm":
                st.expected, st.count, st.first, st.last = command[1], 0, 0, 0
                st.done = asyncio.Event()
                conn.send(("ok",))
            elif op == "fire":
                sent_at = time.monotonic_ns()
                await sockets[0].send(command[1])
                conn.send(("ok", sent_at))
            elif op == "wait":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(st.done.wait(), command[1])
                conn.send(("ok", st.count, st.first, st.last))
            elif op == "close":
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
                await asyncio.gather(*readers, return_exceptions=True)
                conn.send(("ok",))
                return
            else:
                conn.send(("error", f"unknown command {op!r}"))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Clients:
    """``count`` client processes, each holding a share of the sockets."""

    #: What each client process runs (a module-level function: processes are spawned).
    worker = staticmethod(worker_main)

    def __init__(self, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=self.worker, args=(child, index), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def ask(self, index: int, command: tuple[Any, ...], timeout: float = 300.0) -> tuple:
        self.pipes[index].send(command)
        return self._answer(index, timeout)

    def _answer(self, index: int, timeout: float) -> tuple:
        if not self.pipes[index].poll(timeout):
            raise RuntimeError(f"client process {index} did not answer within {timeout} s")
        answer = self.pipes[index].recv()
        if answer[0] != "ok":
            raise RuntimeError(f"client process {index}: {answer[1]}")
        return answer

    def ask_all(self, commands: list[tuple[Any, ...]], timeout: float = 300.0) -> list[tuple]:
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return [self._answer(i, timeout) for i in range(len(self.pipes))]

    def connect(self, url: str, total: int, concurrency: int) -> float:
        n = len(self.pipes)
        shares = [total // n + (1 if i < total % n else 0) for i in range(n)]
        per_proc = max(1, concurrency // n)
        started = time.monotonic()
        answers = self.ask_all([("connect", url, share, per_proc) for share in shares])
        assert sum(a[2] for a in answers) == total, answers
        return time.monotonic() - started

    def broadcast_round(self, number: int, timeout: float = 60.0) -> dict[str, Any]:
        expected = f"b:{number}"
        self.ask_all([("arm", expected)] * len(self.pipes))
        sent_at = self.ask(0, ("fire", f"bcast:{number}"))[1]
        answers = self.ask_all([("wait", timeout)] * len(self.pipes), timeout=timeout + 30)
        received = sum(a[1] for a in answers)
        lasts = [a[3] for a in answers if a[1]]
        firsts = [a[2] for a in answers if a[1]]
        return {
            "ms": (max(lasts) - sent_at) / 1e6 if lasts else None,
            "first_ms": (min(firsts) - sent_at) / 1e6 if firsts else None,
            "received": received,
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask_all([("close",)] * len(self.pipes), timeout=120)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


async def _warmup(url: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, ping_interval=None, compression=None) as ws:
        await ws.send("warmup")
        async with asyncio.timeout(30):
            reply = await ws.recv()
            if reply.startswith("h "):  # a resuming client is first told its position
                reply = (await ws.recv()).removeprefix("m\n")
        assert reply == "warm", reply


# -- one variant ------------------------------------------------------------------------


def measure_rss(server: Server, samples: int, settle: float) -> list[int]:
    values = []
    for _ in range(samples):
        server.get("/bench/gc")
        time.sleep(settle)
        values.append(server.rss_kib())
    return values


def wait_for_sockets(server: Server, expected: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = server.get("/bench/status")
        if status["sockets"] == expected:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"server reports {status['sockets']} sockets, expected {expected}")
        time.sleep(0.2)


def hibernate(server: Server) -> dict[str, Any]:
    status = server.get("/bench/hibernate")
    if status["live_object_ids"]:
        # A last event may still have been queued: ask again once.
        time.sleep(0.2)
        status = server.get("/bench/hibernate")
    if status["live_object_ids"]:
        raise RuntimeError(f"object still live after hibernate: {status['live_object_ids']}")
    return status


def summarize(rounds: list[dict[str, Any]], sockets: int) -> dict[str, Any]:
    times = [r["ms"] for r in rounds if r["ms"] is not None]
    server = [r["server_ms"] for r in rounds if r.get("server_ms") is not None]
    server_cpu = [r["server_cpu_ms"] for r in rounds if r.get("server_cpu_ms") is not None]
    return {
        "median_ms": statistics.median(times) if times else None,
        "p90_ms": p90(times) if times else None,
        "min_ms": min(times) if times else None,
        "max_ms": max(times) if times else None,
        "server_median_ms": statistics.median(server) if server else None,
        "server_cpu_median_ms": statistics.median(server_cpu) if server_cpu else None,
        "all_received": all(r["received"] == sockets for r in rounds),
        "rounds": rounds,
    }


class Variant:
    """One server under test with its client processes, kept up for the whole run."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        self.label = VARIANTS[name]["label"]
        self.durable = name in DURABLE_VARIANTS
        env = {"BENCH_TRACEMALLOC": str(args.tracemalloc)} if args.tracemalloc else {}
        self.server = Server(name, env)
        self.clients: Clients | None = None
        self.counter = 0
        self.rounds: dict[str, list[dict[str, Any]]] = {"warmup": [], "warm": [], "woken": []}
        self.result: dict[str, Any] = {"variant": name, "label": self.label}

    def setup_and_measure_memory(self) -> None:
        args, server, label = self.args, self.server, self.label
        log(f"{label}: starting daphne")
        server.start()
        self.result.update(
            command=" ".join(["python", *server.command[1:]]),
            app=server.app,
            server_nofile=server.nofile(),
        )
        asyncio.run(_warmup(server.ws_url()))
        time.sleep(0.3)
        if self.durable:
            hibernate(server)
        before = measure_rss(server, args.mem_samples, args.settle)
        if args.tracemalloc:
            server.get("/bench/snapshot?name=before")
        log(f"{label}: RSS before {before} KiB; connecting {args.sockets} sockets")
        self.clients = Clients(args.clients)
        connect_s = self.clients.connect(server.ws_url(), args.sockets, args.concurrency)
        status = wait_for_sockets(server, args.sockets)
        if self.durable:
            status = hibernate(server)
        after = measure_rss(server, args.mem_samples, args.settle)
        status = server.get("/bench/status")
        if self.durable and status["live_object_ids"]:
            raise RuntimeError(f"{label}: the object woke during the measurement: {status}")
        per_socket = (statistics.median(after) - statistics.median(before)) * 1024 / args.sockets
        self.result["memory"] = {
            "rss_before_kib": before,
            "rss_after_kib": after,
            "per_socket_bytes": per_socket,
            "per_socket_kib": per_socket / 1024,
            "live_object_ids_when_measured": status["live_object_ids"],
            "sockets_when_measured": status["sockets"],
            "connect_seconds": connect_s,
        }
        log(
            f"{label}: RSS after {after} KiB -> {per_socket / 1024:.2f} KiB/socket "
            f"(connect {connect_s:.1f} s)"
        )
        if args.tracemalloc:
            server.get("/bench/snapshot?name=after")
            self.result["tracemalloc"] = server.get(
                f"/bench/diff?a=before&b=after&limit={args.top}"
            )

    def broadcast_round(self, series: str) -> dict[str, Any]:
        assert self.clients is not None
        self.counter += 1
        if series == "woken":
            hibernate(self.server)
        time.sleep(self.args.gap)
        result = self.clients.broadcast_round(self.counter)
        status = self.server.get("/bench/status")
        result["server_ms"] = status["server_ms"][-1] if status["server_ms"] else None
        result["server_cpu_ms"] = status["server_cpu_ms"][-1] if status["server_cpu_ms"] else None
        self.rounds[series].append(result)
        return result

    def finish(self) -> dict[str, Any]:
        args = self.args
        try:
            if self.rounds["warm"]:
                self.result["broadcast"] = summarize(self.rounds["warm"], args.sockets)
                self.result["broadcast"]["warmup_rounds"] = self.rounds["warmup"]
            if self.rounds["woken"]:
                self.result["broadcast_from_hibernation"] = summarize(
                    self.rounds["woken"], args.sockets
                )
            if self.rounds["warm"] and self.server.process is not None:
                if self.durable:
                    hibernate(self.server)
                self.result["rss_after_broadcasts_kib"] = measure_rss(self.server, 1, args.settle)[
                    0
                ]
            output = self.server.output().strip() if self.server.process else ""
            if output:
                self.result["server_output_tail"] = output[-4000:]
        finally:
            self.close()
        return self.result

    def close(self) -> None:
        if self.clients is not None:
            self.clients.close()
            self.clients = None
        self.server.stop()


def run_all(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Memory of each variant in turn; then broadcast rounds interleaved across variants
    (a, b, c, a, b, c, ...) so that a change in the machine's load hits all of them."""
    variants = [Variant(name, args) for name in names]
    try:
        for variant in variants:
            variant.setup_and_measure_memory()
        if args.rounds and not args.tracemalloc:
            log(f"broadcast: {args.rounds} rounds per variant, interleaved")
            for variant in variants:
                variant.broadcast_round("warmup")
            for number in range(args.rounds):
                line = []
                for variant in variants:
                    r = variant.broadcast_round("warm")
                    line.append(f"{variant.name} {r['ms']:.0f}")
                log(f"round {number + 1}: " + ", ".join(line) + " ms")
            for number in range(args.cold_rounds):
                line = []
                for variant in variants:
                    if variant.durable:
                        r = variant.broadcast_round("woken")
                        line.append(f"{variant.name} woken {r['ms']:.0f}")
                if line:
                    log(f"woken round {number + 1}: " + ", ".join(line) + " ms")
        return {variant.name: variant.finish() for variant in variants}
    finally:
        for variant in variants:
            variant.close()


# -- report ---------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import channels
    import daphne
    import django
    import websockets

    versions = {
        "python": platform.python_version(),
        "django": django.__version__,
        "channels": channels.__version__,
        "daphne": daphne.__version__,
        "websockets": websockets.__version__,
    }
    for module in ("twisted", "autobahn"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    dirty = ""
    with contextlib.suppress(Exception):
        dirty = subprocess.run(
            ["git", "status", "--short", "django_durable"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return {
        "django_durable_uncommitted_changes": dirty.splitlines(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "commit": commit,
        "versions": versions,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> str:
    variants = results["variants"]
    raw = variants.get("raw")
    n = results["args"]["sockets"]
    raw_mem = raw["memory"]["per_socket_bytes"] if raw and "memory" in raw else None
    lines = [f"Memory per idle socket ({n} sockets, one daphne process; VmRSS after gc)"]
    lines.append(
        f"{'variant':38} {'RSS before KiB':>15} {'RSS after KiB':>15} "
        f"{'KiB/socket':>11} {'x (a)':>7}  samples after (KiB)"
    )
    for res in variants.values():
        mem = res.get("memory")
        if not mem:
            continue
        r = ratio(mem["per_socket_bytes"], raw_mem)
        lines.append(
            f"{res['label']:38} {statistics.median(mem['rss_before_kib']):>15.0f} "
            f"{statistics.median(mem['rss_after_kib']):>15.0f} "
            f"{mem['per_socket_kib']:>11.2f} {fmt(r, '.3f'):>7}  {mem['rss_after_kib']}"
        )
    raw_b = raw.get("broadcast", {}).get("median_ms") if raw else None
    if any("broadcast" in res for res in variants.values()):
        lines.append("")
        lines.append(
            f"Broadcast of one message to {n} sockets (client sends trigger -> last client "
            f"receives), {results['args']['rounds']} rounds"
        )
        lines.append(
            f"{'variant':38} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8} "
            f"{'x (a)':>7} {'server ms':>10} {'srv CPU ms':>10} {'all recv':>9}"
        )
        rows = []
        for res in variants.values():
            if "broadcast" in res:
                rows.append((res["label"], res["broadcast"]))
            if "broadcast_from_hibernation" in res:
                rows.append((res["label"] + ", woken", res["broadcast_from_hibernation"]))
        for label, b in rows:
            r = ratio(b["median_ms"], raw_b)
            lines.append(
                f"{label:38} {fmt(b['median_ms']):>10} {fmt(b['p90_ms']):>8} "
                f"{fmt(b['min_ms']):>8} {fmt(b['max_ms']):>8} {fmt(r, '.3f'):>7} "
                f"{fmt(b.get('server_median_ms')):>10} "
                f"{fmt(b.get('server_cpu_median_ms')):>10} {b['all_received']!s:>9}"
            )
        lines.append(
            "server ms / srv CPU ms: median wall / event-loop-thread CPU time of the server's "
            "own broadcast call\n(the send loop for (a), group_send only for (b): its consumers "
            "send later, state.broadcast() for (c))"
        )
    lines.append("")
    for key, t in results["targets"].items():
        verdict = "" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        target = "-" if t["target"] is None else f"<= {t['target']}"
        lines.append(f"{key:44} {fmt(t['value'], '.3f'):>7}  target {target:>7}  {verdict}")
    return "\n".join(lines)


def compute_targets(variants: dict[str, Any]) -> dict[str, Any]:
    def mem(name: str) -> float | None:
        res = variants.get(name)
        return res["memory"]["per_socket_bytes"] if res and "memory" in res else None

    def bc(name: str, stat: str, key: str = "broadcast") -> float | None:
        res = variants.get(name)
        return res[key][stat] if res and key in res else None

    def entry(value: float | None, target: float | None) -> dict[str, Any]:
        met = None if value is None or target is None else value <= target
        return {"value": value, "target": target, "met": met}

    return {
        "memory (c)/(a)": entry(ratio(mem("durable"), mem("raw")), MEMORY_TARGET),
        "memory (b)/(a)": entry(ratio(mem("channels"), mem("raw")), None),
        "memory (c)/(a') [both behind URLRouter]": entry(
            ratio(mem("durable"), mem("raw_routed")), None
        ),
        "memory (c')/(a) [neither routed]": entry(ratio(mem("durable_direct"), mem("raw")), None),
        "broadcast median (c)/(a)": entry(
            ratio(bc("durable", "median_ms"), bc("raw", "median_ms")), BROADCAST_TARGET
        ),
        "broadcast p90 (c)/(a)": entry(ratio(bc("durable", "p90_ms"), bc("raw", "p90_ms")), None),
        "broadcast median (c)/(b)": entry(
            ratio(bc("durable", "median_ms"), bc("channels", "median_ms")), None
        ),
        "broadcast p90 (c)/(b)": entry(
            ratio(bc("durable", "p90_ms"), bc("channels", "p90_ms")), None
        ),
        "broadcast median (c woken)/(a)": entry(
            ratio(
                bc("durable", "median_ms", "broadcast_from_hibernation"),
                bc("raw", "median_ms"),
            ),
            None,
        ),
        "server-side broadcast call, wall (c)/(a)": entry(
            ratio(bc("durable", "server_median_ms"), bc("raw", "server_median_ms")), None
        ),
        "server-side broadcast call, CPU (c)/(a)": entry(
            ratio(bc("durable", "server_cpu_median_ms"), bc("raw", "server_cpu_median_ms")), None
        ),
    }


def migrate() -> None:
    """A fresh, migrated SQLite database for the servers (django_durable's alarm poller
    queries it every ALARM_POLL_INTERVAL; nothing else in the benchmark touches it)."""
    db = RESULTS_DIR / "bench.sqlite3"
    with contextlib.suppress(OSError):
        db.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(BENCH_DIR), env.get("PYTHONPATH", "")) if p
    )
    env["BENCH_SQLITE"] = str(db)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "migrate",
            "--settings=benchapp.settings",
            "--noinput",
            "-v",
            "0",
        ],
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument(
        "--variants", default=DEFAULT_VARIANTS, help="comma-separated, from: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    parser.add_argument("--rounds", type=int, default=10, help="measured broadcast rounds")
    parser.add_argument(
        "--cold-rounds",
        type=int,
        default=5,
        help="durable rounds that wake the object from hibernation (0: none)",
    )
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between rounds")
    parser.add_argument("--mem-samples", type=int, default=3, help="RSS readings per state")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds between gc.collect() and reading VmRSS"
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="profile mode: trace allocations in daphne with FRAMES frames, "
        "print where the per-socket memory goes, skip the broadcasts "
        "(RSS figures are then inflated by tracemalloc itself)",
    )
    parser.add_argument("--top", type=int, default=30, help="rows of the tracemalloc diff")
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")
    args = parser.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}")
    nofile = raise_nofile()
    log(f"client fd limit {nofile}; {args.clients} client processes; {args.sockets} sockets")

    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "argv": " ".join(["python", *sys.argv]),
        "variants": {},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    log("migrating the bench database")
    migrate()
    started = time.monotonic()
    results["loadavg_before"] = os.getloadavg()
    results["variants"] = run_all(names, args)
    results["loadavg_after"] = os.getloadavg()
    results["elapsed_seconds"] = time.monotonic() - started
    results["targets"] = compute_targets(results["variants"])

    print()
    print(report(results))
    if args.tracemalloc:
        for res in results["variants"].values():
            tm = res.get("tracemalloc")
            if not tm:
                continue
            print(
                f"\ntracemalloc, {res['label']}: {tm['total_bytes'] / args.sockets:.0f} B "
                f"and {tm['total_blocks'] / args.sockets:.1f} blocks per socket traced"
            )
            print("  by layer (innermost frame of django_durable, benchapp or channels):")
            for row in tm["by_package"]:
                print(
                    f"  {row['bytes'] / args.sockets:9.1f} B/socket "
                    f"{row['blocks'] / args.sockets:6.2f} blk  {row['where']}"
                )
            print("  by innermost frame in django_durable/benchapp (else a server package):")
            for row in tm["by_owner"]:
                print(
                    f"  {row['bytes'] / args.sockets:9.1f} B/socket "
                    f"{row['blocks'] / args.sockets:6.2f} blk  {row['where']}"
                )
            print("  every application-side line (django_durable, channels, benchapp):")
            for row in tm["app_owners"]:
                print(
                    f"  {row['bytes'] / args.sockets:9.1f} B/socket "
                    f"{row['blocks'] / args.sockets:6.2f} blk  {row['where']}"
                )
            print("  by allocating line:")
            for row in tm["by_line"]:
                print(
                    f"  {row['bytes'] / args.sockets:9.1f} B/socket "
                    f"{row['blocks'] / args.sockets:6.2f} blk  {row['where']}"
                )
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = "tracemalloc" if args.tracemalloc else "core"
    path = args.output or RESULTS_DIR / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    if not args.output:
        (RESULTS_DIR / f"{kind}-latest.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path} ({results['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
