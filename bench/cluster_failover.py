#!/usr/bin/env python
"""Cluster scenario 3: failover after ``kill -9`` of an object's owner.

``python bench/cluster_failover.py`` (``cluster_bench.py`` runs it with the other two
scenarios). Three daphne processes of ``clusterapp`` on Redis; the object's owner
holds ``--victims`` sockets; the two others hold ``--loaders`` sockets that each send a
numbered message every ``--load-interval`` seconds, and an observer socket. ``kill -9``
of the owner at a random point of the lease cycle; then the time until the first reply
from a handler in another process, until every loader has replies within 0.25 s again,
and until the observer has the ``websocket_close(1006)`` of the first and the last of
the dead process's sockets. Every loader's replies are checked for loss, duplicates
and order. ``--failovers`` runs with the default ``LEASE_TIME`` (5 s) and as many with
``--short-lease`` (1.5 s), fresh processes and key prefix each time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import statistics
import sys
import time
import uuid
from typing import Any

from harness import cluster
from harness.measure import quantile, spread
from harness.redis_tools import REDIS_URL, delete_prefix
from harness.report import fmt, log
from harness.servers import DaphneServer, cluster_server, start_all, stop_all

#: A loader has caught up once a reply comes within this many seconds.
CAUGHT_UP = 0.25
PATH = "/ws/durable/fo/"

Reply = tuple[int, int, int]  # (k, pid of the process that answered, monotonic_ns)


async def failover_once(
    args: argparse.Namespace, servers: list[DaphneServer], lease: float
) -> dict[str, Any]:
    """Load the object from the survivors, kill its owner, watch the takeover."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    opts: dict[str, Any] = {"ping_interval": None, "compression": None, "open_timeout": 60}
    owner, survivors = servers[0], servers[1:]
    owner_pid = owner.pid
    victims = [await connect(owner.url(PATH), **opts)]  # takes the object for the owner
    victims += await asyncio.gather(
        *(connect(owner.url(PATH), **opts) for _ in range(args.victims - 1))
    )
    observer = await connect(survivors[0].url(PATH + "?observe=1"), **opts)
    loaders = [
        await connect(survivors[i % len(survivors)].url(PATH), **opts) for i in range(args.loaders)
    ]
    status = owner.status()
    if "fo" not in status["live"]:
        raise RuntimeError(f"the object is not live on the first server: {status}")

    closes: list[tuple[int, str]] = []  # (monotonic_ns, socket id)
    replies: list[list[Reply]] = [[] for _ in loaders]
    sent: list[list[int]] = [[] for _ in loaders]  # send time of k
    stop_load = asyncio.Event()

    async def observe() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in observer:
                if isinstance(message, str) and message.startswith("closed:1006:"):
                    closes.append((time.monotonic_ns(), message.rsplit(":", 1)[1]))

    async def read(i: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in loaders[i]:
                body, pid = str(message)[2:].rsplit(":", 1)  # r:<i>.<k>:<pid>
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

    def takeover() -> tuple[int, int] | None:
        found = [(t, pid) for r in replies for _, pid, t in r if pid != owner_pid]
        return min(found) if found else None

    tasks = [asyncio.create_task(observe())]
    tasks += [asyncio.create_task(read(i)) for i in range(len(loaders))]
    loads = [asyncio.create_task(load(i)) for i in range(len(loaders))]
    try:
        # A random extra wait, so that the kill falls anywhere in the lease renewal,
        # heartbeat and maintenance cycles (every LEASE_TIME / 3).
        extra_wait = random.uniform(0, lease)
        await asyncio.sleep(args.load_warmup + extra_wait)
        if not any(replies) or any(pid != owner_pid for r in replies for _, pid, _ in r):
            raise RuntimeError("before the kill, replies did not all come from the owner")
        killed_at = time.monotonic_ns()
        owner.kill()  # SIGKILL
        deadline = time.monotonic() + 6 * lease + 20
        while time.monotonic() < deadline:
            if takeover() is not None and len({sid for _, sid in closes}) >= args.victims:
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
        run = analyse(args, replies, sent, closes, owner_pid, killed_at, takeover())
        run["lease_time"] = lease
        run["kill_after_s"] = args.load_warmup + extra_wait
        run["new_owner_server"] = [s.name for s in survivors if s.pid in run["new_owner_pids"]]
        return run
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


def analyse(
    args: argparse.Namespace,
    replies: list[list[Reply]],
    sent: list[list[int]],
    closes: list[tuple[int, str]],
    owner_pid: int,
    killed_at: int,
    first: tuple[int, int] | None,
) -> dict[str, Any]:
    """Loss, duplicates, order, the takeover and the 1006 closes of one failover."""

    def since_kill(t: int) -> float:
        return (t - killed_at) / 1e9

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
                        "at_s": [since_kill(t) for kk, _, t in r if kk == k],
                        "sent_s": since_kill(s[k]),
                    }
                    for k in sorted({k for k in ks if ks.count(k) > 1})
                ],
            }
        )
    old_last = max((t for r in replies for _, pid, t in r if pid == owner_pid), default=None)
    # The longest wait for a reply among messages answered after the kill.
    waits = []
    for r, s in zip(replies, sent, strict=True):
        got: dict[int, int] = {}
        for k, _, t in r:
            got.setdefault(k, t)
        after = [(k, t_sent) for k, t_sent in enumerate(s) if got.get(k, 0) >= killed_at]
        waits += [(got[k] - t_sent) / 1e9 for k, t_sent in after]
    # Reply latency in the steady state before the kill; and when the new owner had
    # caught up: per loader, the first reply from it that came within CAUGHT_UP of its
    # message (replies come in order, so every earlier one had come too).
    pre = [
        (t - s[k]) / 1e6
        for r, s in zip(replies, sent, strict=True)
        for k, _, t in r
        if s[k] < killed_at and t < killed_at
    ]
    caught_up = []
    for r, s in zip(replies, sent, strict=True):
        times = [t for k, pid, t in r if pid != owner_pid and (t - s[k]) / 1e9 < CAUGHT_UP]
        caught_up.append(since_kill(min(times)) if times else None)
    first_close: dict[str, int] = {}
    for t, sid in closes:
        first_close.setdefault(sid, t)
    close_times = sorted(first_close.values())
    return {
        "load_msgs_per_s": len(replies) / args.load_interval,
        "pre_kill_reply_ms": {
            "median": statistics.median(pre),
            "p99": quantile(pre, 0.99),
            "max": max(pre),
            "n": len(pre),
        },
        "caught_up_s": None if None in caught_up else max(caught_up),  # type: ignore[type-var]
        "distinct_closed": len(first_close),
        "duplicate_close_events": len(closes) - len(first_close),
        "takeover_s": None if first is None else since_kill(first[0]),
        "first_1006_s": since_kill(close_times[0]) if close_times else None,
        "last_1006_s": since_kill(close_times[-1]) if len(close_times) >= args.victims else None,
        "closes_1006": len(closes),
        "victims": args.victims,
        "old_owner_pid": owner_pid,
        "new_owner_pids": sorted({pid for r in replies for _, pid, _ in r if pid != owner_pid}),
        "last_reply_from_old_owner_s": None if old_last is None else since_kill(old_last),
        "longest_reply_wait_after_kill_s": max(waits) if waits else None,
        "loaders": per_loader,
        "unanswered": sum(p["unanswered"] for p in per_loader),
        "duplicated": sum(p["duplicates"] for p in per_loader),
        "reordered": sum(p["out_of_order"] for p in per_loader),
        "messages_sent": sum(p["sent"] for p in per_loader),
    }


def run(args: argparse.Namespace, _: cluster.Cluster) -> dict[str, Any]:
    """``--failovers`` runs per lease time, each on fresh processes and key prefix."""
    result: dict[str, Any] = {"series": {}}
    for lease in (None, args.short_lease):
        name = "default" if lease is None else f"{lease:g}"
        effective = 5.0 if lease is None else lease
        runs = []
        for rep in range(args.failovers):
            prefix = f"bench-cluster-fo-{uuid.uuid4().hex[:12]}"
            extra = {} if lease is None else {"BENCH_LEASE_TIME": str(lease)}
            servers = [cluster_server(f"fo-{i}", prefix, REDIS_URL, **extra) for i in range(3)]
            start_all(servers)
            try:
                one = asyncio.run(failover_once(args, servers, effective))
            except BaseException:
                for server in servers:
                    print(server.output_tail(), file=sys.stderr)
                raise
            finally:
                stop_all(servers)
                delete_prefix(prefix)
            log(
                f"failover LEASE_TIME={effective:g} #{rep + 1}: takeover "
                f"{fmt(one['takeover_s'], '.2f')} s, 1006 first "
                f"{fmt(one['first_1006_s'], '.2f')} s last {fmt(one['last_1006_s'], '.2f')} s "
                f"({one['distinct_closed']}/{one['victims']}); caught up "
                f"{fmt(one['caught_up_s'], '.2f')} s; reply before the kill "
                f"{one['pre_kill_reply_ms']['median']:.1f} ms; unanswered {one['unanswered']}, "
                f"duplicated {one['duplicated']}, reordered {one['reordered']} "
                f"of {one['messages_sent']}"
            )
            runs.append(one)
        summary: dict[str, Any] = {"lease_time": effective, "runs": runs}
        for key in (
            "takeover_s",
            "first_1006_s",
            "last_1006_s",
            "caught_up_s",
            "longest_reply_wait_after_kill_s",
        ):
            summary[key] = spread([r[key] for r in runs if r[key] is not None])
        for key in ("unanswered", "duplicated", "reordered", "messages_sent"):
            summary[key] = sum(r[key] for r in runs)
        result["series"][name] = summary
    return result


def report(fo: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "3. Failover after kill -9 of the owner (3 processes), seconds after the kill: "
        "min / median / max",
        f"{'LEASE_TIME':>10} {'runs':>5} {'first reply by new owner':>26} "
        f"{'first 1006 close':>22} {'last 1006 close':>22} {'caught up':>22} "
        f"{'unans/dup/reord of sent':>24}",
    ]

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
    run0 = runs[0]
    lines.append(
        f"load: {run0['load_msgs_per_s']:.0f} messages/s from {len(run0['loaders'])} "
        f"sockets on the survivors; reply before the kill: median "
        f"{statistics.median(pre):.1f} ms; "
        f"caught up: when each loader again had replies within {CAUGHT_UP} s; "
        f"duplicate 1006 events: {duplicates}"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--failovers", type=int, default=5, help="failover: runs per lease time")
    parser.add_argument("--short-lease", type=float, default=1.5)
    parser.add_argument("--victims", type=int, default=20, help="failover: sockets on the owner")
    parser.add_argument("--loaders", type=int, default=8, help="failover: loaded sockets")
    parser.add_argument(
        "--load-interval", type=float, default=0.1, help="seconds between a loader's messages"
    )
    parser.add_argument("--load-warmup", type=float, default=1.5)


SCENARIO = cluster.Scenario("failover", 3, add_arguments, run, report)

if __name__ == "__main__":
    cluster.main([SCENARIO], __doc__ or "", "cluster-failover")
