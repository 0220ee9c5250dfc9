#!/usr/bin/env python
"""Many objects: N sockets on N objects against N sockets on one object (SPEC §12).

Every server runs ``benchapp.asgi_durable`` (``BenchRoom``: the object of
``/ws/room/<id>/``, one tag) with ``HIBERNATE_EAGERLY``, or the raw ASGI app
(``benchapp.asgi_raw``, the floor of the connect path), started by the shared
harness (``harness.servers.bench_server``: fd limits raised, control endpoints under
``/bench/``). Layouts, in one run:

  raw    the bare ASGI app: what a handshake costs without django-durable;
  one    N sockets on one object (``/ws/room/room/``);
  many   N sockets on N objects (``/ws/room/o<i>/``), one socket each;
  channels  a stock Channels consumer (``benchapp.asgi_channels``) per socket, each
         joining a group of its own (``bench.o<i>``): what a connect costs a plain
         Channels application on the same channel layer. Run by default with
         ``--layer redis`` only: on the in-memory layer its receive scans every group
         (the cost SPEC §12 removes from django-durable), so 10,000 groups take minutes.

``--layer memory``: in-memory layers, one daphne process. ``--layer redis``: the Redis
session and channel layers (a fresh prefix per run) and two daphne processes; socket
``i`` connects to process ``i % 2``.

For each layout, one after another (one server set up at a time):

- connect: sockets in batches of ``--batch`` (1,000), ``--concurrency`` handshakes in
  flight from ``--clients`` client processes; per batch the wall time (handshake sent
  to accepted, for the whole batch) and the CPU time the servers spent meanwhile
  (``/proc/<pid>/stat``, less sensitive to the other processes on the machine);
- memory per socket: VmRSS (after ``gc.collect()``) with every socket connected and
  every object hibernated, minus VmRSS before the first socket, over N. ``many - one``
  is what a hibernated object costs beyond its socket;
- tasks: ``len(asyncio.all_tasks())`` in each server, then;
- idle CPU: the servers' CPU time over ``--idle`` (10) seconds with nothing happening,
  as a share of one core; with the timers then scheduled on each server's loop and the
  garbage collector's collections meanwhile (``--gc-threshold`` sets the servers' first
  GC threshold, ``--ping-interval`` daphne's pings);
- wake: every socket sends ``warmup`` at once and the time until every ``warm`` reply
  arrived (``many``: every object is woken once; ``one``: one object, N events); and
  for ``many``, from inside the first server (``GET /bench/wake``): a stub call to each
  object, 200 at a time, from the first wake to the last hibernation, no client frames
  (after a ``gc.collect()``, so that a full collection owed by the clients' wake does not
  fall in it; the collections during the wake are printed).

Prints a table and writes ``bench/results/many-<layer>-<timestamp>.json``;
``--plot`` draws ``docs/img/bench-many-objects.png`` from one or more result files.

    python bench/many_objects.py --layer memory --sockets 10000
    python bench/many_objects.py --layer redis --sockets 10000
    python bench/many_objects.py --layer memory --sockets 1000
    python bench/many_objects.py --plot bench/results/many-memory-latest.json ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from harness.clients import Clients
from harness.databases import fresh_bench_sqlite
from harness.measure import proc_cpu_seconds, raise_nofile
from harness.profile import Profiler, profile_report
from harness.redis_tools import delete_prefix
from harness.report import log, run_header, write_results
from harness.servers import RESULTS_DIR, DaphneServer, bench_server, measure_rss
from harness.variants import warmup

APPS = {
    "raw": "benchapp.asgi_raw:application",
    "channels": "benchapp.asgi_channels:application",
    "durable": "benchapp.asgi_durable:application",
}
LAYOUTS = {"memory": ("raw", "one", "many"), "redis": ("raw", "channels", "one", "many")}
#: Batches at each end of the run whose median is compared (``last/first``): one batch
#: of 1,000 varies by a third from the next on this shared machine, the raw app's too.
END_BATCHES = 3

TARGETS = {
    "connect last/first batch (many)": 1.2,
    "hibernated object, bytes beyond its socket": 1024,
    "idle CPU, share of one core (many)": 0.01,
    "connect per socket, durable/raw": 1.3,
}


# -- one layout -------------------------------------------------------------------------


def url_for(layout: str, servers: list[DaphneServer], i: int) -> str:
    room = f"o{i}" if layout in ("many", "channels") else "room"
    return servers[i % len(servers)].url(f"/ws/room/{room}/")


def wait_settled(
    servers: list[DaphneServer], sockets: int, timeout: float = 600.0
) -> list[dict[str, Any]]:
    """Until the servers hold ``sockets`` sockets and no live object."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [s.get("/bench/status") for s in servers]
        held = sum(st["sockets"] for st in statuses)
        live = sum(len(st["live_object_ids"] or ()) for st in statuses)
        if held == sockets and not live:
            return statuses
        if time.monotonic() > deadline:
            raise RuntimeError(f"servers hold {held} sockets and {live} live objects")
        time.sleep(0.2)


def run_layout(layout: str, args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    env = {"BENCH_HIBERNATE_EAGERLY": "1", "BENCH_IDLE_TIMEOUT": "10"}
    if os.environ.get("BENCH_LOG_LEVEL"):
        env["BENCH_LOG_LEVEL"] = os.environ["BENCH_LOG_LEVEL"]
    if args.gc_threshold:
        env["BENCH_GC_THRESHOLD"] = str(args.gc_threshold)
    if args.layer == "redis":
        env.update(BENCH_LAYER="redis", BENCH_PREFIX=prefix, BENCH_REDIS_URL=args.redis_url)
    kind = layout if layout in ("raw", "channels") else "durable"
    if kind == "channels":
        # Plain Channels, as without django-durable: daphne's own connection checks.
        env["BENCH_DAPHNE_CHECKS"] = "daphne"
    app = APPS[kind]
    processes = 2 if args.layer == "redis" else 1
    servers = []
    for _ in range(processes):
        server = bench_server(app, env, kind)
        if args.ping_interval:
            server.extra_args = ["--ping-interval", str(args.ping_interval)]
        servers.append(server)
    clients: Clients | None = None
    result: dict[str, Any] = {"layout": layout, "processes": processes}
    try:
        for server in servers:
            server.start()
        result["command"] = " ".join(["python", *servers[0].command[1:]])
        durable = kind == "durable"
        if durable:
            # Warm up (imports, the runtime, the process channel) on an object of its own.
            for server in servers:
                asyncio.run(warmup(server.url("/ws/room/warmup/")))
            wait_settled(servers, 0)
        rss_before = [statistics.median(measure_rss(s, 3, args.settle)) for s in servers]
        tasks_before = [s.get("/bench/status").get("tasks") for s in servers]
        clients = Clients(args.clients)
        profiler = Profiler(servers, args.py_spy, layout) if args.py_spy else None
        batches = []
        for start in range(0, args.sockets, args.batch):
            urls = [url_for(layout, servers, i) for i in range(start, start + args.batch)]
            gc0 = [s.get("/bench/status")["gc_collections"][2] for s in servers]
            cpu0 = sum(proc_cpu_seconds(s.pid) for s in servers)
            t0 = time.monotonic()
            clients.connect_urls(urls, args.concurrency)
            wall = time.monotonic() - t0
            cpu = sum(proc_cpu_seconds(s.pid) for s in servers) - cpu0
            # Full collections meanwhile (each walks the whole heap, which grows with
            # the sockets): what makes single batches dearer than their neighbours.
            full = sum(s.get("/bench/status")["gc_collections"][2] for s in servers) - sum(gc0)
            batches.append({"wall_s": wall, "server_cpu_s": cpu, "full_gc": full})
            log(
                f"{layout}: sockets {start + 1}-{start + args.batch}: {wall:.2f} s, "
                f"cpu {cpu:.2f} s, full collections {full}"
            )
        result["batches"] = batches
        if profiler is not None:
            result["py_spy"] = profiler.stop()
            log(profile_report({f"{layout} connect": result["py_spy"]}))
        statuses = wait_settled(servers, args.sockets) if durable else None
        rss_after = [statistics.median(measure_rss(s, 3, args.settle)) for s in servers]
        statuses = [s.get("/bench/status") for s in servers]
        result["metrics"] = [st.get("metrics") for st in statuses]
        log(f"{layout}: metrics {result['metrics']}")
        result["memory"] = {
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "per_socket_bytes": (sum(rss_after) - sum(rss_before)) * 1024 / args.sockets,
        }
        result["tasks"] = {"before": tasks_before, "after": [st["tasks"] for st in statuses]}
        gc0 = [st["gc_collections"] for st in statuses]
        cpu0 = sum(proc_cpu_seconds(s.pid) for s in servers)
        time.sleep(args.idle)
        result["idle_cpu_share"] = (sum(proc_cpu_seconds(s.pid) for s in servers) - cpu0) / (
            args.idle
        )
        idle_statuses = [s.get("/bench/status") for s in servers]
        # What ran meanwhile: timers scheduled on each loop, and the garbage collector's
        # collections by generation (a full one walks every object of the process).
        result["idle_timers"] = [st["timers"] for st in idle_statuses]
        result["idle_gc_collections"] = [
            [b - a for a, b in zip(before, st["gc_collections"], strict=True)]
            for before, st in zip(gc0, idle_statuses, strict=True)
        ]
        if durable and not args.no_wake:
            cpu0 = sum(proc_cpu_seconds(s.pid) for s in servers)
            profiler = Profiler(servers, args.py_spy, f"{layout}-frames") if args.py_spy else None
            result["wake_s"] = clients.wake()
            if profiler is not None:
                result["py_spy_frames"] = profiler.stop()
            result["wake_server_cpu_s"] = sum(proc_cpu_seconds(s.pid) for s in servers) - cpu0
            wait_settled(servers, args.sockets)
        if layout == "many" and not args.no_wake:
            # The same from inside the first server (a stub call per object): the cost
            # of a wake without the clients' frames.
            profiler = Profiler(servers[:1], args.py_spy, f"{layout}-wake") if args.py_spy else None
            # A full collection owed by what ran before (the clients' wake above leaves
            # objects to the oldest generation) would fall in this one and walk the whole
            # heap: collect first, and count the collections the wake itself sets off.
            gc0 = servers[0].get("/bench/gc")["gc_collections"]
            woke = servers[0].get(f"/bench/wake?n={args.sockets}", timeout=1800)
            gc1 = servers[0].get("/bench/status")["gc_collections"]
            if profiler is not None:
                result["py_spy_wake"] = profiler.stop()
            result["wake_inside"] = {
                "seconds": woke["seconds"],
                "cpu": woke["cpu_seconds"],
                "gc_collections": [b - a for a, b in zip(gc0, gc1, strict=True)],
            }
            log(f"{layout}: wake from inside {woke['seconds']:.2f} s, {result['wake_inside']}")
            wait_settled(servers, args.sockets)
        log(
            f"{layout}: {result['memory']['per_socket_bytes'] / 1024:.2f} KiB/socket, "
            f"tasks {result['tasks']}, idle CPU {result['idle_cpu_share'] * 100:.2f} % "
            f"(timers {result['idle_timers']}, gc {result['idle_gc_collections']}), "
            f"wake {result.get('wake_s', 0):.2f} s"
        )
        for server in servers:
            tail = server.output().strip()
            if tail:
                result.setdefault("server_output_tail", []).append(tail[-2000:])
    except BaseException:
        for server in servers:  # what the servers said, before they go
            log(server.output_tail(30000))
        raise
    finally:
        if clients is not None:
            clients.close()
        for server in servers:
            server.close()
    return result


# -- report -----------------------------------------------------------------------------


def drift(values: list[float], ends: int) -> float | None:
    """The median of the last ``ends`` values over that of the first ``ends``."""
    if len(values) < max(2, 2 * ends):
        return None
    first = statistics.median(values[:ends])
    return statistics.median(values[-ends:]) / first if first else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    layouts = results["layouts"]

    def per_socket(name: str) -> float | None:
        res = layouts.get(name)
        return res["memory"]["per_socket_bytes"] if res else None

    def ends_ratio(name: str, key: str, ends: int = 1) -> float | None:
        # The last batch over the first (or the medians of ``ends`` batches at each end).
        res = layouts.get(name)
        return drift([b[key] for b in res["batches"]], ends) if res else None

    def per_object_drift(key: str) -> float | None:
        # many / one batch by batch (the same sockets so far, on N objects or on one):
        # what the objects add, without what every socket adds as the heap grows.
        many, one = layouts.get("many"), layouts.get("one")
        if not many or not one:
            return None
        ratios = [
            a[key] / b[key] for a, b in zip(many["batches"], one["batches"], strict=True) if b[key]
        ]
        return drift(ratios, END_BATCHES)

    def connect_ratio(name: str, key: str, base: str = "raw") -> float | None:
        res, raw = layouts.get(name), layouts.get(base)
        if not res or not raw:
            return None
        a = statistics.median(b[key] for b in res["batches"])
        r = statistics.median(b[key] for b in raw["batches"])
        return a / r if r else None

    many, one = per_socket("many"), per_socket("one")
    summary = {
        "connect last/first batch (many), wall": ends_ratio("many", "wall_s"),
        "connect last/first batch (many), server CPU": ends_ratio("many", "server_cpu_s"),
        "connect last/first batch (one), wall": ends_ratio("one", "wall_s"),
        f"connect last {END_BATCHES}/first {END_BATCHES} batches, median (many), server CPU": (
            ends_ratio("many", "server_cpu_s", END_BATCHES)
        ),
        f"connect last {END_BATCHES}/first {END_BATCHES} batches, median (raw), server CPU": (
            ends_ratio("raw", "server_cpu_s", END_BATCHES)
        ),
        f"many/one per batch, last {END_BATCHES}/first {END_BATCHES} (medians), server CPU": (
            per_object_drift("server_cpu_s")
        ),
        "hibernated object, bytes beyond its socket": None
        if many is None or one is None
        else many - one,
        "idle CPU, share of one core (many)": layouts.get("many", {}).get("idle_cpu_share"),
        "idle CPU, share of one core (one)": layouts.get("one", {}).get("idle_cpu_share"),
        "idle CPU, share of one core (raw)": layouts.get("raw", {}).get("idle_cpu_share"),
        "connect per batch, many/raw, wall": connect_ratio("many", "wall_s"),
        "connect per batch, one/raw, wall": connect_ratio("one", "wall_s"),
        "connect per batch, many/raw, server CPU": connect_ratio("many", "server_cpu_s"),
        "connect per batch, one/raw, server CPU": connect_ratio("one", "server_cpu_s"),
        "connect per batch, channels/raw, server CPU": connect_ratio("channels", "server_cpu_s"),
        "connect per batch, many/channels, server CPU": connect_ratio(
            "many", "server_cpu_s", "channels"
        ),
        "connect per batch, one/channels, server CPU": connect_ratio(
            "one", "server_cpu_s", "channels"
        ),
        "wake every object once (many), s": layouts.get("many", {}).get("wake_s"),
        "N events to one object (one), s": layouts.get("one", {}).get("wake_s"),
        "wake every object once from inside (many), s": layouts.get("many", {})
        .get("wake_inside", {})
        .get("seconds"),
    }
    return summary


def report(results: dict[str, Any]) -> str:
    args = results["args"]
    lines = [
        f"{args['sockets']} sockets, layer {args['layer']}, "
        f"{results['layouts'][next(iter(results['layouts']))]['processes']} process(es)"
    ]
    lines.append(
        f"{'layout':8} {'first batch s':>13} {'last batch s':>12} {'median s':>9} "
        f"{'srv CPU first':>13} {'srv CPU last':>12} {'KiB/socket':>10} {'tasks':>12} "
        f"{'idle CPU %':>10} {'wake s':>7}"
    )
    for name, res in results["layouts"].items():
        b = res["batches"]
        lines.append(
            f"{name:8} {b[0]['wall_s']:>13.2f} {b[-1]['wall_s']:>12.2f} "
            f"{statistics.median(x['wall_s'] for x in b):>9.2f} "
            f"{b[0]['server_cpu_s']:>13.2f} {b[-1]['server_cpu_s']:>12.2f} "
            f"{res['memory']['per_socket_bytes'] / 1024:>10.2f} "
            f"{'+'.join(str(t) for t in res['tasks']['after']):>12} "
            f"{res['idle_cpu_share'] * 100:>10.2f} "
            f"{res.get('wake_s', float('nan')):>7.2f}"
        )
    lines.append("")
    for key, value in results["summary"].items():
        lines.append(f"{key:60} {'-' if value is None else format(value, '.3f')}")
    return "\n".join(lines)


def plot(paths: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    batch = 1000
    for path in paths:
        data = json.loads(path.read_text())
        tag = data.get("label") or f"{data['args']['layer']}"
        batch = data["args"]["batch"]
        for name in ("many", "one", "raw", "channels"):
            res = data["layouts"].get(name)
            if res is None:
                continue
            xs = [(i + 1) * batch for i in range(len(res["batches"]))]
            ys = [b["server_cpu_s"] for b in res["batches"]]
            style = {"many": "-o", "one": "--s", "raw": ":^", "channels": ":v"}[name]
            ax.plot(xs, ys, style, markersize=3, label=f"{tag}: {name}")
    ax.set_xlabel("sockets connected (one per object for 'many', all on one for 'one')")
    ax.set_ylabel(f"server CPU seconds per {batch:,} connects")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Connect cost per 1,000 sockets as objects accumulate (HIBERNATE_EAGERLY)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", choices=("memory", "redis"), default="memory")
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--layouts",
        default="",
        help="comma-separated, of raw, channels, one, many (default: raw,one,many with "
        "--layer memory; raw,channels,one,many with --layer redis)",
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument(
        "--ping-interval",
        type=int,
        default=0,
        help="daphne's --ping-interval (default: daphne's own, 20 s); a long one keeps "
        "its pings of every socket out of the idle CPU figure",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="the servers' first cyclic-GC threshold (default: Python's, 700); a large "
        "one keeps daphne's per-connection temporaries from setting off full collections",
    )
    parser.add_argument(
        "--no-wake",
        action="store_true",
        help="skip the wake measurements (connect, memory, tasks and idle CPU only)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile the servers with py-spy during each layout's connects, and the first "
        "server during the wake from inside (raw stacks in DIR)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--label", default="", help="a name for this run in the plot")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--plot", type=Path, nargs="*", default=None, metavar="JSON")
    parser.add_argument(
        "--plot-out", type=Path, default=RESULTS_DIR.parent.parent / "docs/img/bench-many.png"
    )
    args = parser.parse_args()
    if args.plot is not None:
        plot(args.plot, args.plot_out)
        return
    if args.sockets % args.batch:
        parser.error("--sockets must be a multiple of --batch")
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()] or list(LAYOUTS[args.layer])
    if unknown := set(layouts) - {"raw", "channels", "one", "many"}:
        parser.error(f"unknown layouts: {', '.join(sorted(unknown))}")
    raise_nofile()
    fresh_bench_sqlite()
    prefix = f"bench-many-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {**run_header(args), "label": args.label, "layouts": {}}
    started = time.monotonic()
    try:
        for layout in layouts:
            results["layouts"][layout] = run_layout(layout, args, f"{prefix}-{layout}")
    finally:
        if args.layer == "redis":
            delete_prefix(prefix, args.redis_url)
    results["loadavg_after"] = os.getloadavg()
    results["elapsed_seconds"] = time.monotonic() - started
    results["summary"] = summarize(results)
    results["targets"] = TARGETS
    print()
    print(report(results))
    path = write_results(results, f"many-{args.layer}", args.output)
    print(f"\nresults: {path} ({results['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
