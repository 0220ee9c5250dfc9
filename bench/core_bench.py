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
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from harness.databases import fresh_bench_sqlite
from harness.measure import raise_nofile
from harness.report import fmt, log, machine_info, ratio, write_results
from harness.variants import VARIANTS, run_all

DEFAULT_VARIANTS = "raw,channels,durable,raw_routed,durable_direct"

MEMORY_TARGET = 1.1  # (c) per socket <= 1.1 x (a)
BROADCAST_TARGET = 1.3  # (c) median broadcast <= 1.3 x raw


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


def tracemalloc_report(results: dict[str, Any], sockets: int) -> str:
    """Where the per-socket memory goes (``--tracemalloc``), per variant."""
    lines = []
    sections = (
        ("by_package", "by layer (innermost frame of django_durable, benchapp or channels):"),
        ("by_owner", "by innermost frame in django_durable/benchapp (else a server package):"),
        ("app_owners", "every application-side line (django_durable, channels, benchapp):"),
        ("by_line", "by allocating line:"),
    )
    for res in results["variants"].values():
        tm = res.get("tracemalloc")
        if not tm:
            continue
        lines.append(
            f"\ntracemalloc, {res['label']}: {tm['total_bytes'] / sockets:.0f} B "
            f"and {tm['total_blocks'] / sockets:.1f} blocks per socket traced"
        )
        for key, title in sections:
            lines.append(f"  {title}")
            for row in tm[key]:
                lines.append(
                    f"  {row['bytes'] / sockets:9.1f} B/socket "
                    f"{row['blocks'] / sockets:6.2f} blk  {row['where']}"
                )
    return "\n".join(lines)


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
    log("migrating the bench database")
    fresh_bench_sqlite()
    started = time.monotonic()
    results["loadavg_before"] = os.getloadavg()
    results["variants"] = run_all(names, args)
    results["loadavg_after"] = os.getloadavg()
    results["elapsed_seconds"] = time.monotonic() - started
    results["targets"] = compute_targets(results["variants"])

    print()
    print(report(results))
    if args.tracemalloc:
        print(tracemalloc_report(results, args.sockets))
    path = write_results(results, "tracemalloc" if args.tracemalloc else "core", args.output)
    print(f"\nresults: {path} ({results['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
