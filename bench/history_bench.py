#!/usr/bin/env python
"""What ``history = N`` costs: broadcast time and Redis memory per object.

Broadcast: ``core_bench.py``'s runner (``harness.variants``: its servers, client
processes and rounds, interleaved across variants in the same run) on three variants
of the same durable object, every socket on one object, in-memory layers:

  durable                 (c) as in the core benchmark: no history;
  durable_history         (c) with ``history = 100``, clients that did not opt in;
  durable_history_resume  (c) with ``history = 100``, every client resuming
                          (``?durable_resume=1``: each broadcast framed with its offset).

Redis memory: a ``RedisSessionLayer`` keeps ``--appends`` broadcasts of ``--payload``
bytes for one object with ``history = N`` for each N of ``--histories``; ``MEMORY USAGE``
of its two keys (``hm:K`` and ``h:K``) after the history is full and again after many
more broadcasts (bounded: the same), then the keys are deleted. Needs a Redis at
``--redis`` (default ``redis://127.0.0.1:6379/9``) and a key prefix of its own.

    python bench/history_bench.py --sockets 2000 --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from typing import Any

from harness.databases import fresh_bench_sqlite
from harness.measure import raise_nofile
from harness.report import run_header, write_results
from harness.variants import run_all

VARIANTS = ["durable", "durable_history", "durable_history_resume"]
TARGET = 1.10  # history = 100 at most 10 % slower


async def redis_memory(
    url: str, histories: list[int], payload: int, appends: int
) -> list[dict[str, Any]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
    import django

    django.setup()
    from django_durable.session.redis import RedisSessionLayer

    prefix = f"bench-history-{uuid.uuid4().hex[:8]}:"
    layer = RedisSessionLayer(hosts=[url], prefix=prefix)
    rows = []
    message = "x" * payload
    try:
        for limit in histories:
            key = f"bench.Room/{limit}"
            meta, entries = layer._history_keys(key)

            async def usage(meta: str = meta, entries: str = entries) -> int:
                return int(await layer.redis.memory_usage(meta, samples=0) or 0) + int(
                    await layer.redis.memory_usage(entries, samples=0) or 0
                )

            for _ in range(limit):
                await layer.append_history(key, limit, None, (), message)
            full = await usage()
            for _ in range(appends):
                await layer.append_history(key, limit, None, (), message)
            after = await usage()
            length = await layer.redis.llen(entries)
            rows.append(
                {
                    "history": limit,
                    "payload_bytes": payload,
                    "bytes_when_full": full,
                    "bytes_after_more": after,
                    "appends_after_full": appends,
                    "entries_kept": length,
                    "bytes_per_entry": full / limit,
                }
            )
    finally:
        keys = await layer.redis.keys(f"{prefix}*")
        if keys:
            await layer.redis.delete(*keys)
        await layer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    parser.add_argument("--rounds", type=int, default=15, help="measured broadcast rounds")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between rounds")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--histories", default="10,100,1000")
    parser.add_argument("--payload", type=int, default=100, help="bytes per broadcast")
    parser.add_argument("--appends", type=int, default=5000)
    args = parser.parse_args()
    results: dict[str, Any] = run_header(args)
    # What the variants runner reads; memory per socket is not what this measures.
    args.mem_samples, args.settle, args.tracemalloc, args.cold_rounds, args.top = 1, 0.5, 0, 0, 0

    raise_nofile()
    fresh_bench_sqlite()
    variants = run_all(VARIANTS, args)
    results["loadavg_after"] = os.getloadavg()
    results["broadcast"] = {
        name: {k: v for k, v in res["broadcast"].items() if k != "rounds"}
        for name, res in variants.items()
    }
    base = variants["durable"]["broadcast"]["median_ms"]
    print()
    print(f"broadcast to {args.sockets} sockets, {args.rounds} rounds (median, p90 ms):")
    for name in VARIANTS:
        b = variants[name]["broadcast"]
        ratio = b["median_ms"] / base
        print(
            f"  {variants[name]['label']:<42} {b['median_ms']:7.1f} {b['p90_ms']:7.1f}"
            f"   x{ratio:.3f}   server {b['server_median_ms']:.1f} ms"
            f"   all received: {b['all_received']}"
        )
        results["broadcast"][name]["ratio_to_no_history"] = ratio
    histories = [int(h) for h in args.histories.split(",")]
    rows = asyncio.run(redis_memory(args.redis, histories, args.payload, args.appends))
    results["redis_memory"] = rows
    print()
    print(f"Redis memory per object ({args.payload}-byte broadcasts):")
    for row in rows:
        print(
            f"  history = {row['history']:>5}: {row['bytes_when_full']:>8} bytes when full, "
            f"{row['bytes_after_more']:>8} after {row['appends_after_full']} more "
            f"({row['entries_kept']} kept; {row['bytes_per_entry']:.0f} bytes per entry)"
        )
    out = write_results(results, "history")
    load = f"{results['loadavg_before']} -> {results['loadavg_after']}"
    print(f"\nwritten {out}; load average {load}")


if __name__ == "__main__":
    main()
