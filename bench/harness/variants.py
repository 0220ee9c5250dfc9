"""One daphne process per variant of the same protocol: memory per socket, broadcasts.

The runner of ``core_bench.py`` (and ``history_bench.py``). Every variant serves
``/ws/room/room/`` (see ``bench/benchapp``): on ``bcast:<n>`` the server sends
``b:<n>`` to every socket; on ``warmup`` it answers ``warm``.

Memory, one variant after another: start the server, open and close one warm-up
connection (a durable object is then hibernated), read VmRSS (:func:`measure_rss`),
connect ``--sockets`` idle sockets from ``--clients`` client processes, hibernate the
durable object (``live_object_ids`` must be empty), read VmRSS again. Per socket =
(median after - median before) / sockets. Every server stays up.

Broadcast, interleaved across variants (a, b, c, a, b, c, ...) so that a change in the
machine's load hits every variant alike: one discarded warm-up round per variant, then
``--rounds`` measured rounds, then ``--cold-rounds`` for the durable variants with the
object hibernated before each (the broadcast wakes it). The servers also report the
wall and CPU time of their own broadcast call (``/bench/status``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from harness.clients import Clients
from harness.measure import p90
from harness.report import log
from harness.servers import bench_server, hibernate, measure_rss, wait_sockets

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


async def warmup(url: str) -> None:
    """One connection that sends ``warmup`` and gets ``warm`` (imports, the runtime)."""
    from websockets.asyncio.client import connect

    async with connect(url, ping_interval=None, compression=None) as ws:
        await ws.send("warmup")
        async with asyncio.timeout(30):
            reply = str(await ws.recv())
            if reply.startswith("h "):  # a resuming client is first told its position
                reply = str(await ws.recv()).removeprefix("m\n")
        assert reply == "warm", reply


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
        self.server = bench_server(VARIANTS[name]["app"], env, name)
        self.clients: Clients | None = None
        self.counter = 0
        self.rounds: dict[str, list[dict[str, Any]]] = {"warmup": [], "warm": [], "woken": []}
        self.result: dict[str, Any] = {"variant": name, "label": self.label}

    def ws_url(self) -> str:
        return self.server.url(WS_PATH + VARIANTS[self.name].get("query", ""))

    def setup_and_measure_memory(self) -> None:
        args, server, label = self.args, self.server, self.label
        log(f"{label}: starting daphne")
        server.start()
        self.result.update(
            command=" ".join(["python", *server.command[1:]]),
            app=server.app,
            server_nofile=server.nofile(),
        )
        asyncio.run(warmup(self.ws_url()))
        time.sleep(0.3)
        if self.durable:
            hibernate(server)
        before = measure_rss(server, args.mem_samples, args.settle)
        if args.tracemalloc:
            server.get("/bench/snapshot?name=before")
        log(f"{label}: RSS before {before} KiB; connecting {args.sockets} sockets")
        self.clients = Clients(args.clients)
        connect_s = self.clients.connect(self.ws_url(), args.sockets, args.concurrency)
        wait_sockets(server, args.sockets)
        if self.durable:
            hibernate(server)
        after = measure_rss(server, args.mem_samples, args.settle)
        status = server.status()
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
        status = self.server.status()
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
            if self.rounds["warm"] and self.server.running:
                if self.durable:
                    hibernate(self.server)
                after = measure_rss(self.server, 1, args.settle)
                self.result["rss_after_broadcasts_kib"] = after[0]
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
        self.server.close()


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
