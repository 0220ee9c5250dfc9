"""What a process and Redis keep per object id once its objects have hibernated.

One daphne process (the test app, Redis session and channel layers, a key prefix of
its own, ``IDLE_TIMEOUT`` 0.2 s) is sent one short connection per object id: connect,
one message, close. After every object hibernated and tag groups were left (35 s) and
a ``gc.collect()`` in the server, the bench reads the server's VmRSS
(``/proc/<pid>/status``) and counts the keys left in Redis under the prefix, by kind.
Memory per id = (VmRSS after N ids - VmRSS after N warm-up ids) / N: the warm-up
brings the allocator to its high-water mark, so what grows after it is what is kept.

    python bench/released_state_bench.py --ids 9000
    python bench/released_state_bench.py --ids 9000 --repo /path/to/another/checkout

``--repo`` runs the server from another checkout of the project (to compare a version
before a change); the client side always runs from here. Needs Redis on 127.0.0.1:6379
(DB 9, keys under a fresh prefix that the bench deletes at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from harness.measure import proc_rss_kib as rss_kib
from harness.servers import REPO_ROOT, DaphneServer, free_port, test_app_server
from redis import asyncio as aioredis
from websockets.asyncio.client import connect

REDIS_URL = "redis://127.0.0.1:6379/9"
#: Connections that failed (and were retried), by exception.
FAILURES: Counter[str] = Counter()


def start_server(repo: Path, prefix: str) -> DaphneServer:
    env = {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_IDLE_TIMEOUT": "0.2",
        "DURABLE_TEST_SQLITE": str(Path("/tmp") / f"{prefix}.sqlite3"),
    }
    server = test_app_server(env, prefix, repo=repo, port=free_port_below_ephemeral())
    return server.start()


def free_port_below_ephemeral() -> int:
    """A free port under 32768 (FIELD-NOTES: the kernel's ephemeral range fills with
    TIME_WAIT sockets after thousands of short client connections)."""
    for _ in range(100):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


async def ask(port: int, path: str, command: dict[str, object]) -> dict[str, Any]:
    """The first reply to ``command`` (the objects and the monitor answer each once)."""
    async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=30) as ws:
        await ws.send(json.dumps(command))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        return reply


async def visit(port: int, ids: list[str], concurrency: int) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for object_id in ids:
        queue.put_nowait(object_id)

    async def worker() -> None:
        while not queue.empty():
            object_id = queue.get_nowait()
            for attempt in range(5):
                try:
                    await ask(port, f"/ws/census/{object_id}/", {"op": "whoami"})
                    break
                except Exception as exc:  # a refused handshake under load: say so, retry
                    FAILURES[type(exc).__name__] += 1
                    await asyncio.sleep(0.5 * (attempt + 1))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def settled(port: int, redis: aioredis.Redis, prefix: str) -> dict[str, object]:
    """Wait until no lease is left (every object hibernated); what the server keeps."""
    deadline = time.monotonic() + 120
    while True:
        leases = [k async for k in redis.scan_iter(match=f"{prefix}:durable:l:*", count=1000)]
        if not leases:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(leases)} objects still live after 120 s")
        await asyncio.sleep(0.5)
    # Tag-group memberships of a process outlive its last socket by GROUP_LINGER (30 s):
    # wait until they are gone too (bounded), or their readers would count as kept.
    await asyncio.sleep(35)
    deadline = time.monotonic() + 180
    while True:
        reply = await ask(port, "/ws/cluster-monitor/", {"op": "memory"})
        groups = reply.get("memory", {}).get("groups", 0)
        if not groups or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    await ask(port, "/ws/cluster-monitor/", {"op": "gc"})
    return {"memory": reply.get("memory", "(not reported by this version)")}


async def redis_keys(redis: aioredis.Redis, prefix: str) -> dict[str, int]:
    kinds: Counter[str] = Counter()
    async for key in redis.scan_iter(match=f"{prefix}:durable:*", count=1000):
        kind = key.decode()[len(prefix) + len(":durable:") :].split(":", 1)[0]
        kinds[kind] += 1
    return dict(sorted(kinds.items()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=9000)
    # As many as measured: the allocator's high-water mark is reached before "before".
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT)
    parser.add_argument(
        "--trace", action="store_true", help="print what tracemalloc sees kept after the warm-up"
    )
    args = parser.parse_args()

    prefix = f"released-{uuid.uuid4().hex[:10]}"
    redis = aioredis.Redis.from_url(REDIS_URL)
    server = start_server(args.repo.resolve(), prefix)
    port = server.port
    try:
        pid = int((await ask(port, "/ws/cluster-monitor/", {"op": "pid"}))["pid"])
        warmup = args.ids if args.warmup is None else args.warmup
        warm = [f"w{i}-{uuid.uuid4().hex[:6]}" for i in range(warmup)]
        await visit(port, warm, args.concurrency)
        await settled(port, redis, prefix)
        before = rss_kib(pid)
        if args.trace:
            await ask(port, "/ws/cluster-monitor/", {"op": "trace_start"})
        ids = [f"o{i}-{uuid.uuid4().hex[:6]}" for i in range(args.ids)]
        started = time.monotonic()
        await visit(port, ids, args.concurrency)
        elapsed = time.monotonic() - started
        state = await settled(port, redis, prefix)
        after = rss_kib(pid)
        keys = await redis_keys(redis, prefix)
        if args.trace:
            top = await ask(port, "/ws/cluster-monitor/", {"op": "trace_top", "n": 15})
            for size, count, frames in top["trace_top"]:
                print(
                    f"{size / args.ids:8.0f} B/id {count:7d} blocks  {' < '.join(frames[::-1][:6])}"
                )
        print(f"server from {args.repo.resolve()}")
        print(f"{args.ids} ids visited in {elapsed:.0f} s (after {warmup} warm-up ids)")
        print(f"VmRSS {before} KiB -> {after} KiB: {(after - before) * 1024 / args.ids:.0f} B/id")
        print(f"Redis keys left under the prefix, by kind: {keys}")
        print(f"process state after hibernation: {state['memory']}")
        print(f"connections retried: {dict(FAILURES) or 'none'}")
    finally:
        server.close()
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
