"""Redis for the benchmarks: the shared server, and private ``redis-server`` processes.

The shared Redis (``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/9``) is used
by everyone on the machine: a benchmark works under a fresh key prefix and deletes
only its own keys (:func:`delete_prefix`), never a ``FLUSHALL``. A benchmark that
stops, freezes or restarts Redis starts a :class:`PrivateRedis` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness.servers import HOST, free_port, port_accepts

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def redis_available(url: str = REDIS_URL) -> bool:
    """Whether a Redis answers ``PING`` at ``url`` (within 2 s)."""
    try:
        import redis
    except ImportError:
        return False
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def delete_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete this run's keys, those under ``prefix`` (never anything else)."""
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    finally:
        client.close()
    return int(deleted)


def server_version(url: str = REDIS_URL) -> str | None:
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(url)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    return None


class PrivateRedis:
    """One ``redis-server`` of the bench's own on 127.0.0.1:<free port>.

    No persistence by default; ``persistent=True``: an append-only file fsynced on every
    write, so a stop and start keeps every acknowledged write.
    """

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        command = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", ""]
        command += ["--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")]
        if self.persistent:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not port_accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down (a persistent one writes its append-only file first)."""
        if not self.running:
            return
        assert self.process is not None
        mode = "save" if self.persistent else "nosave"
        subprocess.run(
            ["redis-cli", "-h", HOST, "-p", str(self.port), "shutdown", mode],
            capture_output=True,
            timeout=10,
            check=False,
        )
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        assert self.process is not None and self.running
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: it answers what waited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot shut down
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- counting commands (MONITOR) --------------------------------------------------------


async def monitor(
    prefix: str, seconds: float, during: Awaitable[Any] | None = None, url: str = REDIS_URL
) -> dict[str, int]:
    """Commands on keys under ``prefix`` that clients sent to Redis (not those run by
    scripts) while ``during`` runs, or for ``seconds``; counted by command name."""
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    counts: dict[str, int] = {}

    async def listen(mon: Any) -> None:
        async for info in mon.listen():
            if info["client_type"] == "lua" or prefix not in info["command"]:
                continue
            name = info["command"].split(" ", 1)[0].upper()
            counts[name] = counts.get(name, 0) + 1

    try:
        async with client.monitor() as mon:
            task = asyncio.create_task(listen(mon))
            await asyncio.sleep(0.3)
            if during is not None:
                await during
            else:
                await asyncio.sleep(seconds)
            await asyncio.sleep(0.5)  # the writes and acknowledgements after the last reply
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    finally:
        await client.aclose()
    return counts


async def count_commands(
    prefix: str, run: Callable[[], Awaitable[Any]], count: int, url: str = REDIS_URL
) -> dict[str, Any]:
    """Redis commands per repetition of ``run`` (``count`` repetitions in all), less
    those of an idle window as long (the servers' own maintenance)."""
    started = time.monotonic()
    busy = await monitor(prefix, 0, run(), url)
    idle = await monitor(prefix, time.monotonic() - started - 0.8, url=url)
    per = {k: (busy.get(k, 0) - idle.get(k, 0)) / count for k in busy}
    return {
        "round_trips": count,
        "per_round_trip": {k: v for k, v in sorted(per.items(), key=lambda i: -i[1]) if v > 0},
        "total_per_round_trip": sum(v for v in per.values() if v > 0),
        "idle_window": idle,
    }
