#!/usr/bin/env python
"""Cluster scenario 1: one broadcast to 2,000 sockets held by two daphne processes.

``python bench/cluster_broadcast.py`` (``cluster_bench.py`` runs it with the other
two scenarios). 2,000 sockets on one durable object, 1,000 held by each of two daphne
processes of ``clusterapp`` on Redis (the first owns the object). A client socket held
by the *other* process sends ``bcast:<n>``; the handler runs ``await
self.state.broadcast("b:<n>", tag="members")``. Against that, stock Channels on two
other daphne processes (``BENCH_APP=channels``: django_durable not even installed):
2,000 ``AsyncWebsocketConsumer``s, 1,000 on each, in one group of
``RedisChannelLayer``; the trigger consumer ``group_send``s and each consumer's handler
sends to its socket.

A round takes from the moment the client sends the trigger until the last of the 2,000
sockets has the message (``--clients`` client processes timestamp every arrival with
``time.monotonic_ns``, one clock for the whole machine). One warm-up round, then
``--rounds`` rounds, variants interleaved. The servers mark the stages (handler start,
local send loop, the other process's ``durable.send``, Channels consumers' sends) on the
same clock, and the CPU time of each server process per round is read from ``/proc``.
``--py-spy DIR``: ``--profile-rounds`` more rounds per variant under py-spy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from harness import cluster
from harness.clients import Clients, shares
from harness.measure import proc_cpu_ms, quantile
from harness.profile import Profiler
from harness.report import fmt, log
from harness.servers import DaphneServer, wait_sockets

BROADCAST_TARGET = 0.3  # durable median <= 0.3 x channels median


class BroadcastVariant:
    def __init__(self, name: str, label: str, path: str, servers: list[DaphneServer]) -> None:
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
    n = len(clients)
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
    cpu_before: list[float] = []

    def before_fire() -> None:
        for server in variant.servers:
            server.get("/bench/stages")  # forget marks from before
        cpu_before.extend(proc_cpu_ms(s.pid) for s in variant.servers)

    sent_at, received, per_server = clients.round(
        variant.name, f"b:{number}", f"bcast:{number}", 1, timeout, before_fire
    )
    cpu = [proc_cpu_ms(s.pid) - b for s, b in zip(variant.servers, cpu_before, strict=True)]

    def rel(t: int | None) -> float | None:
        return None if t is None else (t - sent_at) / 1e6

    stages: dict[str, Any] = {}
    for index, server in enumerate(variant.servers):
        taken = server.get("/bench/stages")
        marks: dict[str, Any] = {}
        for mark in taken["marks"]:
            marks.setdefault(mark["stage"], rel(mark["t"]))
        consumers = taken["consumers"]
        if consumers["count"]:
            marks["consumers_first_send"] = rel(consumers["first"])
            marks["consumers_last_send"] = rel(consumers["last"])
            marks["consumers"] = consumers["count"]
        stages[f"server{index}"] = marks
    return {
        "ms": rel(max(e[2] for e in per_server.values())) if received else None,
        "first_ms": rel(min(e[1] for e in per_server.values())) if received else None,
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
    stage_values: dict[str, dict[str, list[float]]] = {}
    for r in rounds:
        for server, marks in r["stages"].items():
            for stage, value in marks.items():
                if isinstance(value, (int, float)):
                    stage_values.setdefault(server, {}).setdefault(stage, []).append(value)
        for server, e in r["per_server"].items():
            for key in ("first_ms", "last_ms"):
                stage_values.setdefault(server, {}).setdefault(f"clients_{key}", []).append(e[key])
    result["stage_medians_ms"] = {
        server: {stage: statistics.median(vals) for stage, vals in marks.items()}
        for server, marks in stage_values.items()
    }
    return result


def run(args: argparse.Namespace, servers: cluster.Cluster) -> dict[str, Any]:
    variants = [
        BroadcastVariant(
            "durable", "django-durable, state.broadcast(tag=)", "/ws/durable/bc/", servers.durable
        ),
        BroadcastVariant(
            "channels", "Channels consumers + group_send", "/ws/plain/bc/", servers.plain
        ),
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
        statuses = [s.status() for s in servers.durable]
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


def report(b: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"1. Broadcast of one message to {b['sockets']} sockets on two daphne processes "
        f"(trigger sent -> last socket has it), {args.rounds} rounds",
        f"{'variant':40} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8} "
        f"{'all recv':>9} {'server CPU ms/round':>20}",
    ]
    for v in b["variants"].values():
        cpu = " + ".join(f"{c:.0f}" for c in v["server_cpu_ms_median"])
        lines.append(
            f"{v['label']:40} {fmt(v['median_ms']):>10} {fmt(v['p90_ms']):>8} "
            f"{fmt(v['min_ms']):>8} {fmt(v['max_ms']):>8} {v['all_complete']!s:>9} {cpu:>20}"
        )
    if args.remote_first:
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
    s0, s1 = d.get("server0", {}), d.get("server1", {})
    c0, c1 = c.get("server0", {}), c.get("server1", {})
    durable_stages = (
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
    channels_stages = (
        c1.get("group_send_start"),
        c1.get("group_send_returned"),
        c0.get("consumers_first_send"),
        c0.get("consumers_last_send"),
        c1.get("consumers_first_send"),
        c1.get("consumers_last_send"),
        c0.get("clients_last_ms"),
        c1.get("clients_last_ms"),
    )
    lines.append("stages, median ms after the trigger was sent:")
    lines.append(
        "  durable: owner got event {} | handler {} | local send loop {}..{} | broadcast() "
        "returned {} | other process got durable.send {} | its send loop {}..{} | last "
        "arrival: owner's sockets {}, other's {}".format(*(fmt(x) for x in durable_stages))
    )
    lines.append(
        "  channels: group_send {}..{} | consumers' sends: process 0 {}..{}, process 1 {}..{} "
        "| last arrival: process 0 {}, process 1 {}".format(*(fmt(x) for x in channels_stages))
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sockets", type=int, default=2000, help="broadcast: sockets in all")
    parser.add_argument("--rounds", type=int, default=10, help="broadcast: measured rounds")
    parser.add_argument("--gap", type=float, default=0.3, help="broadcast: seconds between rounds")
    parser.add_argument("--clients", type=int, default=2, help="broadcast: client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    parser.add_argument("--profile-rounds", type=int, default=10)


SCENARIO = cluster.Scenario(
    "broadcast", 1, add_arguments, run, report, needs=frozenset({"durable", "plain"})
)

if __name__ == "__main__":
    cluster.main([SCENARIO], __doc__ or "", "cluster-broadcast")
