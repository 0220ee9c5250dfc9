"""HTTP control endpoints shared by the three benchmark applications (bare ASGI, no Django).

They run inside the daphne process under test, on its event loop:

- ``GET /bench/status``: ``{"pid", "rss_kib", "sockets", "live_object_ids", "server_ms",
  "tasks", "timers", "gc_collections"}``;
- ``GET /bench/gc``: ``gc.collect()`` (all generations, twice), then the status;
- ``GET /bench/hibernate``: hibernate the durable bench object (durable app only), then
  the status (``live_object_ids`` must be empty afterwards);
- ``GET /bench/wake?n=N``: wake the durable objects ``o0`` .. ``o<N-1>`` once each (a
  stub call), from inside the server (``bench/many_objects.py``);
- ``GET /bench/trim``: glibc ``malloc_trim(0)``, then the status (diagnostics only);
- ``GET /bench/snapshot?name=X``: keep a tracemalloc snapshot under ``X`` (only when the
  server was started with ``BENCH_TRACEMALLOC=<frames>`` in its environment);
- ``GET /bench/diff?a=X&b=Y&limit=N``: where the memory between snapshots ``X`` and ``Y``
  was allocated, by line and by the innermost frame of a watched package.

``server_ms`` (wall clock) and ``server_cpu_ms`` (CPU time of the event-loop thread)
list the durations the application measured around its own broadcast call, most
recent last: the sending loop for the bare app, ``group_send`` for
Channels (the consumers send later), ``state.broadcast()`` for the durable object.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

_TRACE_FRAMES = int(os.environ.get("BENCH_TRACEMALLOC", "0") or 0)
if _TRACE_FRAMES and not tracemalloc.is_tracing():
    tracemalloc.start(_TRACE_FRAMES)

# bench/many_objects.py --gc-threshold: the cyclic GC's first threshold (700 by
# default). Idle daphne makes temporaries for every connection each second, enough to
# promote them and set off full collections of the whole heap (see docs/benchmarks.md).
_GC_THRESHOLD = int(os.environ.get("BENCH_GC_THRESHOLD", "0") or 0)
if _GC_THRESHOLD:
    gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])

#: Durations (ms) of the application's own broadcast calls, most recent last: wall
#: clock, and CPU time of the event-loop thread (less sensitive to other processes).
SERVER_MS: list[float] = []
SERVER_CPU_MS: list[float] = []

_hooks: dict[str, Callable[..., Any]] = {}
_snapshots: dict[str, tracemalloc.Snapshot] = {}

WATCHED = ("channels", "daphne", "autobahn", "twisted", "txaio", "asyncio", "django")


def register(
    *,
    sockets: Callable[[], int],
    live_object_ids: Callable[[], list[str]] | None = None,
    hibernate: Callable[[], Awaitable[None]] | None = None,
    wake: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    _hooks["sockets"] = sockets
    if wake is not None:
        _hooks["wake"] = wake
    if live_object_ids is not None:
        _hooks["live_object_ids"] = live_object_ids
    if hibernate is not None:
        _hooks["hibernate"] = hibernate


class timed:
    """``with control.timed():`` records the block's wall and thread CPU time."""

    __slots__ = ("cpu", "wall")

    def __enter__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()

    def __exit__(self, *exc: object) -> None:
        SERVER_CPU_MS.append((time.thread_time() - self.cpu) * 1000)
        SERVER_MS.append((time.perf_counter() - self.wall) * 1000)
        del SERVER_MS[:-200], SERVER_CPU_MS[:-200]


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def status() -> dict[str, Any]:
    live = _hooks.get("live_object_ids")
    return {
        "pid": os.getpid(),
        "rss_kib": rss_kib(),
        "sockets": _hooks["sockets"]() if "sockets" in _hooks else None,
        "live_object_ids": None if live is None else sorted(live()),
        "server_ms": list(SERVER_MS),
        "server_cpu_ms": list(SERVER_CPU_MS),
        "tracemalloc": tracemalloc.is_tracing(),
        # Every asyncio task of the server's event loop (bench/many_objects.py).
        "tasks": _tasks(),
        # Timers (call_later, sleeps) scheduled on it, and the cyclic GC's collections
        # so far by generation (bench/many_objects.py: none may be per object).
        "timers": _timers(),
        "gc_collections": [generation["collections"] for generation in gc.get_stats()],
        # django-durable's counters (wakes, hibernations, forwarded events, ...).
        "metrics": _metrics(),
    }


def _metrics() -> dict[str, int] | None:
    try:
        from django_durable import metrics
    except ImportError:
        return None
    return metrics.snapshot()


def _tasks() -> int | None:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        return None


def _timers() -> int | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return len(getattr(loop, "_scheduled", ()))


def _owner(frames: tracemalloc.Traceback) -> str:
    """The innermost frame in a watched package (or the innermost frame at all)."""
    recent_first = list(frames)[::-1]  # a Traceback lists the oldest frame first
    for frame in recent_first:
        name = frame.filename
        if "django_durable" in name or "benchapp" in name:
            return f"{_short(name)}:{frame.lineno}"
    for frame in recent_first:
        name = frame.filename
        if any(f"/{pkg}/" in name for pkg in WATCHED):
            return f"{_short(name)}:{frame.lineno}"
    return f"{_short(recent_first[0].filename)}:{recent_first[0].lineno}" if frames else "?"


def _package(frames: tracemalloc.Traceback) -> str:
    """Which layer asked for the memory: the innermost frame of django_durable, the bench
    app or Channels' routing/consumers; else the server stack below the application."""
    for frame in list(frames)[::-1]:
        name = frame.filename
        for marker in ("django_durable", "benchapp", "/channels/"):
            if marker in name:
                return marker.strip("/")
    return "server (daphne/twisted/autobahn/asyncio)"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def diff(a: str, b: str, limit: int) -> dict[str, Any]:
    before, after = _snapshots[a], _snapshots[b]
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
    ]
    before = before.filter_traces(filters)
    after = after.filter_traces(filters)
    by_line = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in by_line)
    count = sum(s.count_diff for s in by_line)
    owners: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in after.compare_to(before, "traceback"):
        entry = owners[_owner(stat.traceback)]
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    top_owners = sorted(owners.items(), key=lambda item: -item[1][0])[:limit]
    packages: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in after.compare_to(before, "traceback"):
        entry = packages[_package(stat.traceback)]
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    return {
        "total_bytes": total,
        "total_blocks": count,
        "by_line": [
            {
                "where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                "bytes": s.size_diff,
                "blocks": s.count_diff,
            }
            for s in by_line[:limit]
        ],
        "by_package": [
            {"where": where, "bytes": size, "blocks": blocks}
            for where, (size, blocks) in sorted(packages.items(), key=lambda i: -i[1][0])
        ],
        "by_owner": [
            {"where": where, "bytes": size, "blocks": blocks}
            for where, (size, blocks) in top_owners
        ],
        # Every line of the application side (django_durable, channels, benchapp), unabridged.
        "app_owners": [
            {"where": where, "bytes": size, "blocks": blocks}
            for where, (size, blocks) in sorted(owners.items(), key=lambda i: -i[1][0])
            if any(m in where for m in ("django_durable", "channels/", "benchapp"))
        ],
    }


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    # Read (and ignore) the request body.
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    path = scope["path"]
    code, body = 200, None
    try:
        if path == "/bench/status":
            body = status()
        elif path == "/bench/gc":
            gc.collect()
            gc.collect()
            body = status()
        elif path == "/bench/hibernate":
            hook = _hooks.get("hibernate")
            if hook is None:
                code, body = 404, {"error": "this application has no durable object"}
            else:
                await hook()
                body = status()
        elif path == "/bench/wake":
            # Wake objects o0 .. o<n-1> once each from inside the server (no client in
            # the loop): ``seconds`` from the first wake to the last hibernation.
            hook = _hooks.get("wake")
            if hook is None:
                code, body = 404, {"error": "this application has no durable object"}
            else:
                wall, cpu = time.perf_counter(), time.thread_time()
                await hook(int(query.get("n", "1")))
                body = {
                    "seconds": time.perf_counter() - wall,
                    "cpu_seconds": time.thread_time() - cpu,
                    **status(),
                }
        elif path == "/bench/trim":
            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            body = status()
        elif path == "/bench/snapshot":
            if not tracemalloc.is_tracing():
                code, body = 409, {"error": "start the server with BENCH_TRACEMALLOC=<frames>"}
            else:
                gc.collect()
                _snapshots[query.get("name", "default")] = tracemalloc.take_snapshot()
                body = status()
        elif path == "/bench/diff":
            body = diff(query["a"], query["b"], int(query.get("limit", "40")))
        else:
            code, body = 404, {"error": f"no endpoint {path}"}
    except Exception as exc:  # report, never kill the server under test
        code, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
