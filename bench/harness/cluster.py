"""The driver of the cluster scenarios: daphne processes of ``clusterapp`` on one Redis.

Each scenario script (``cluster_broadcast.py``, ``cluster_latency.py``,
``cluster_failover.py``) describes itself as a :class:`Scenario`: its options, what it
runs against a :class:`Cluster` (or its own servers), and its part of the report.
:func:`main` runs one or several of them in one invocation (``cluster_bench.py``
runs all three, as the published figures were measured), prints the report and the
``--py-spy`` profiles and writes ``bench/results/<kind>-<timestamp>.json``.

Every server is ``clusterapp.asgi:application`` with both Redis layers configured as
``docs/deployment.md`` says, under a fresh key prefix per run; the run deletes its keys
(by prefix) when done and never flushes Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.databases import fresh_cluster_sqlite
from harness.measure import raise_nofile
from harness.profile import profile_report
from harness.redis_tools import REDIS_URL, delete_prefix
from harness.report import log, run_header, write_results
from harness.servers import DaphneServer, cluster_server, start_all, stop_all


@dataclass
class Cluster:
    """The shared servers of the broadcast and latency scenarios (those asked for)."""

    prefix: str
    durable: list[DaphneServer] = field(default_factory=list)
    #: Stock Channels consumers on RedisChannelLayer (django_durable not installed).
    plain: list[DaphneServer] = field(default_factory=list)
    #: One process with the in-memory layers (the reference).
    memory: DaphneServer | None = None

    @property
    def servers(self) -> list[DaphneServer]:
        return [*self.durable, *self.plain, *([self.memory] if self.memory else [])]


@dataclass
class Scenario:
    name: str
    #: Position in the report (1: broadcast, 2: latency, 3: failover).
    number: int
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Cluster], dict[str, Any]]
    report: Callable[[dict[str, Any], argparse.Namespace], str]
    #: Servers of the shared cluster it runs against: "durable", "plain", "memory"
    #: (none: it starts its own).
    needs: frozenset[str] = frozenset()


def start_cluster(args: argparse.Namespace, needs: set[str]) -> Cluster:
    """2 durable, 2 plain-Channels and 1 in-memory server, as far as ``needs`` asks."""
    cluster = Cluster(prefix=f"bench-cluster-{uuid.uuid4().hex[:12]}")
    experiment = {"BENCH_REMOTE_FIRST": "1"} if getattr(args, "remote_first", False) else {}
    if "durable" in needs:
        cluster.durable = [
            cluster_server(f"durable-{i}", cluster.prefix, REDIS_URL, **experiment)
            for i in range(2)
        ]
    if "plain" in needs:
        cluster.plain = [
            cluster_server(f"channels-{i}", cluster.prefix, REDIS_URL, BENCH_APP="channels")
            for i in range(2)
        ]
    if "memory" in needs:
        cluster.memory = cluster_server("memory", cluster.prefix, REDIS_URL, BENCH_LAYER="memory")
    log(
        f"starting {len(cluster.servers)} daphne processes ({len(cluster.durable)} durable, "
        f"{len(cluster.plain)} channels, {1 if cluster.memory else 0} in-memory)"
    )
    start_all(cluster.servers)
    return cluster


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the measurements, profile the servers with py-spy (raw stacks in DIR): "
        "--echoes non-owner echoes, --profile-rounds broadcast rounds per variant",
    )
    parser.add_argument(
        "--remote-first",
        action="store_true",
        help="EXPERIMENT: the durable servers send other processes' durable.send before "
        "their own sockets (RedisTransport.send patched from the bench app)",
    )
    parser.add_argument("--output", type=Path, default=None)


def main(scenarios: list[Scenario], description: str, kind: str) -> None:
    """Parse the options of ``scenarios``, run them (those ``--only`` names, if there
    are several), print their report and write ``bench/results/<kind>-*.json``."""
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    for scenario in scenarios:
        scenario.add_arguments(parser)
    add_common_arguments(parser)
    names = ",".join(s.name for s in scenarios)
    if len(scenarios) > 1:
        parser.add_argument("--only", default=names, help="comma-separated parts to run")
    args = parser.parse_args()
    parts = {p.strip() for p in getattr(args, "only", names).split(",") if p.strip()}
    chosen = [s for s in scenarios if s.name in parts]

    nofile = raise_nofile()
    log(f"fd limit {nofile} (clients and servers inherit it)")
    fresh_cluster_sqlite()
    started = time.monotonic()
    results: dict[str, Any] = run_header(args, REDIS_URL)
    results["fd_limit"] = nofile
    shared = [s for s in chosen if s.needs]
    if shared:
        cluster = start_cluster(args, set().union(*(s.needs for s in shared)))
        results["server_commands"] = {s.name: s.command_line() for s in cluster.servers}
        results["server_fd_limit"] = cluster.servers[0].nofile()
        try:
            for scenario in shared:
                results[scenario.name] = scenario.run(args, cluster)
        except BaseException:
            for server in cluster.servers:
                print(server.output_tail(), file=sys.stderr)
            raise
        finally:
            stop_all(cluster.servers)
            delete_prefix(cluster.prefix)
    for scenario in chosen:
        if not scenario.needs:
            results[scenario.name] = scenario.run(args, Cluster(prefix=""))
    results["loadavg_after"] = os.getloadavg()
    results["elapsed_seconds"] = time.monotonic() - started

    print()
    reports = [s.report(results[s.name], args) for s in sorted(chosen, key=lambda s: s.number)]
    print("\n\n".join(reports))
    profiles = {k: v for s in chosen for k, v in results[s.name].get("profiles", {}).items()}
    if profiles:
        print()
        print(profile_report(profiles))
    path = write_results(results, kind, args.output)
    print(f"\nresults: {path} ({results['elapsed_seconds']:.0f} s)")
