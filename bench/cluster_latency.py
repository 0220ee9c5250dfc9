#!/usr/bin/env python
"""Cluster scenario 2: the round trip socket -> handler -> same socket, and throughput.

``python bench/cluster_latency.py`` (``cluster_bench.py`` runs it with the other two
scenarios). One socket sends ``echo:<i>`` and waits for ``e:<i>`` from the handler,
``--echoes`` times in sequence: from a socket held by a daphne process that is not the
object's owner (forwarded through Redis both ways), from a socket on the owner process,
a ``relay:<i>`` from the non-owner socket that the handler sends on to an observer
socket on the owner's process (a forwarded event with nothing sent back to the sender's
process), and, as references, from a single daphne with the in-memory layers, from a stock
Channels consumer on the Redis layer, and a bare Redis ``PING``. Paths interleaved in
blocks of 100; the CPU time of the server processes involved is read from ``/proc``
around each block. Then ``--burst`` echoes sent back to back (throughput of one
object).

Diagnostics: ``--py-spy DIR`` profiles the two durable servers during ``--echoes``
more non-owner echoes; ``--redis-commands N`` counts, with ``MONITOR``, the Redis
commands that N round trips of the non-owner, owner and relay paths cause.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from harness import cluster
from harness.measure import proc_cpu_ms, quantile
from harness.profile import Profiler
from harness.redis_tools import REDIS_URL, count_commands
from harness.report import fmt, log
from harness.servers import DaphneServer

RoundTrip = Callable[[int], Awaitable[Any]]


def echo_over(ws: Any) -> RoundTrip:
    async def round_trip(i: int) -> None:
        await ws.send(f"echo:{i}")
        reply = await ws.recv()
        if reply != f"e:{i}":
            raise RuntimeError(f"unexpected reply {reply!r} to echo:{i}")

    return round_trip


def relay_over(ws: Any, observer: Any) -> RoundTrip:
    """A forwarded event with no reply to the sender's process: ``relay:<i>`` from a
    socket on the non-owner process, relayed by the handler to an observer socket on
    the owner's process (so the round trip is forward + handle + local send)."""

    async def round_trip(i: int) -> None:
        await ws.send(f"relay:{i}")
        reply = await observer.recv()
        if reply != f"r:{i}":
            raise RuntimeError(f"unexpected relay {reply!r} for relay:{i}")

    return round_trip


async def block(round_trip: RoundTrip, start: int, count: int, out: list[float]) -> None:
    for i in range(start, start + count):
        t0 = time.perf_counter_ns()
        await round_trip(i)
        out.append((time.perf_counter_ns() - t0) / 1e6)


def cpu_ms(servers: list[DaphneServer]) -> float:
    return sum(proc_cpu_ms(s.pid) for s in servers)


async def burst(ws: Any, count: int) -> float:
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


async def measure(args: argparse.Namespace, servers: cluster.Cluster) -> dict[str, Any]:
    from redis import asyncio as aioredis
    from websockets.asyncio.client import connect

    durable, memory, plain = servers.durable, servers.memory, servers.plain[0]
    assert memory is not None
    opts: dict[str, Any] = {"ping_interval": None, "compression": None}
    # The owner's socket first: its connect takes the object for server 0.
    owner_ws = await connect(durable[0].url("/ws/durable/lat/"), **opts)
    observer_ws = await connect(durable[0].url("/ws/durable/lat/?observe=1"), **opts)
    remote_ws = await connect(durable[1].url("/ws/durable/lat/"), **opts)
    memory_ws = await connect(memory.url("/ws/durable/lat/"), **opts)
    plain_ws = await connect(plain.url("/ws/plain/lat/"), **opts)
    redis_client = aioredis.Redis.from_url(REDIS_URL)
    paths: dict[str, tuple[str, RoundTrip, list[DaphneServer]]] = {
        "non_owner": (
            "socket on the non-owner process -> owner's handler -> back (Redis)",
            echo_over(remote_ws),
            durable,
        ),
        "owner": (
            "socket on the owner process (owner-local path, Redis layers)",
            echo_over(owner_ws),
            durable,
        ),
        "relay": (
            "non-owner socket -> owner's handler -> a socket on the owner's process",
            relay_over(remote_ws, observer_ws),
            durable,
        ),
        "memory": (
            "single process, in-memory layers (reference)",
            echo_over(memory_ws),
            [memory],
        ),
        "channels": (
            "stock Channels consumer echo, Redis layer (reference)",
            echo_over(plain_ws),
            [plain],
        ),
        "redis_ping": (
            "one Redis PING from asyncio redis-py (reference)",
            lambda i: redis_client.ping(),
            [],
        ),
    }
    try:
        statuses = [durable[0].status(), durable[1].status()]
        if "lat" not in statuses[0]["live"] or "lat" in statuses[1]["live"]:
            raise RuntimeError(f"'lat' is not owned by server 0 alone: {statuses}")
        samples: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, float] = {name: 0.0 for name in paths}
        for _, round_trip, _ in paths.values():
            await block(round_trip, 0, args.echo_warmup, [])
        done = 0
        while done < args.echoes:
            count = min(100, args.echoes - done)
            for name, (_, round_trip, watched) in paths.items():
                before = cpu_ms(watched)
                await block(round_trip, done, count, samples[name])
                cpu[name] += cpu_ms(watched) - before
            done += count
        result: dict[str, Any] = {"echoes": args.echoes, "paths": {}}
        for name, (label, _, watched) in paths.items():
            values = samples[name]
            result["paths"][name] = {
                "label": label,
                "median_ms": statistics.median(values),
                "p90_ms": quantile(values, 0.90),
                "p99_ms": quantile(values, 0.99),
                "min_ms": min(values),
                "max_ms": max(values),
                "mean_ms": statistics.fmean(values),
                "server_cpu_ms_per_round_trip": cpu[name] / len(values) if watched else None,
            }
        if args.py_spy:
            log(f"latency: {args.echoes} more non-owner echoes under py-spy")
            profiler = Profiler(durable, args.py_spy, "echo-non-owner")
            await block(echo_over(remote_ws), 0, args.echoes, [])
            result["profiles"] = {"echo-non-owner": profiler.stop()}
        if args.redis_commands:
            result["redis_commands"] = {}
            counted = ("non_owner", "owner", "relay")
            for name in counted:
                log(f"latency: counting Redis commands of {args.redis_commands} {name} trips")
                trips = paths[name][1]

                def echoes(trips: RoundTrip = trips) -> Awaitable[None]:
                    return block(trips, 0, args.redis_commands, [])

                result["redis_commands"][name] = await count_commands(
                    servers.prefix, echoes, args.redis_commands
                )
        # Throughput: one socket sends --burst messages without waiting; the handler
        # answers each (turn-based: one event at a time).
        result["burst"] = {}
        for name, ws in (("non_owner", remote_ws), ("owner", owner_ws), ("memory", memory_ws)):
            watched = paths[name][2]
            before = cpu_ms(watched)
            seconds = await burst(ws, args.burst)
            spent = cpu_ms(watched) - before
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


def run(args: argparse.Namespace, servers: cluster.Cluster) -> dict[str, Any]:
    log(f"latency: {args.echoes} sequential echoes per path")
    result = asyncio.run(measure(args, servers))
    for name, p in result["paths"].items():
        log(f"latency {name}: median {p['median_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms")
    for name, b in result["burst"].items():
        log(f"burst {name}: {b['per_second']:.0f} messages/s")
    return result


def report(lat: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"2. Round trip socket -> handler -> same socket, {lat['echoes']} sequential "
        "echoes per path",
        f"{'path':68} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'srv CPU ms':>10}",
    ]
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
    bursts = lat.get("burst", {})
    if bursts:
        lines.append(
            f"Throughput, {next(iter(bursts.values()))['messages']} echoes sent back to back "
            "from one socket: "
            + ", ".join(
                f"{name} {b['per_second']:.0f}/s ({b['server_cpu_ms_per_message']:.2f} ms CPU/msg)"
                for name, b in bursts.items()
            )
        )
    for name, c in lat.get("redis_commands", {}).items():
        lines.append(
            f"Redis commands per {name} round trip: {c['total_per_round_trip']:.1f} ("
            + ", ".join(f"{k} {v:.2f}" for k, v in c["per_round_trip"].items())
            + ")"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--echoes", type=int, default=3000, help="latency: round trips per path")
    parser.add_argument("--echo-warmup", type=int, default=200)
    parser.add_argument(
        "--burst", type=int, default=1000, help="latency: messages sent back to back (throughput)"
    )
    parser.add_argument(
        "--redis-commands",
        type=int,
        default=0,
        metavar="N",
        help="after the latency measurement, count (Redis MONITOR) the commands that N "
        "round trips of the non-owner, owner and relay paths send to Redis",
    )


SCENARIO = cluster.Scenario(
    "latency", 2, add_arguments, run, report, needs=frozenset({"durable", "plain", "memory"})
)

if __name__ == "__main__":
    cluster.main([SCENARIO], __doc__ or "", "cluster-latency")
