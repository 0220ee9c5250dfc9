"""A private ``redis-server`` for tests that stop, restart or flush Redis.

The shared Redis on 6379 is used by every test running in parallel, so it is never
stopped or flushed; a test that needs to do that starts its own server on a free port
with :func:`private_redis` (a context manager) or the ``private_redis`` fixtures of the
test modules. The server is a child process of the test (not daemonized), without
persistence by default, or with an append-only file fsynced on every write
(``persistent=True``) so that a stop and start keeps every acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from tests.daphne_server import HOST, free_port, port_accepts
from tests.services import need, services_required

START_TIMEOUT = 10.0


class PrivateRedis:
    """One ``redis-server`` on 127.0.0.1:<free port>; ``restart()`` keeps the port."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.dir = Path(tempfile.mkdtemp(prefix="durable-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> PrivateRedis:
        assert not self.running, "already running"
        command = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", ""]
        command += ["--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")]
        if self.persistent:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not port_accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"redis-server on port {self.port} did not start:\n{self.log()}"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down (an append-only file is complete first when persistent)."""
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
        """SIGSTOP the server: connections stay open and nothing answers."""
        assert self.process is not None and self.running
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server: it answers what waited, with its clock moved on."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot shut down
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def need_redis_server() -> None:
    """Like ``need("redis")``, and also needs the ``redis-server`` program to start one."""
    need("redis")
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return
    message = "redis-server/redis-cli are not installed"
    if services_required():
        pytest.fail(f"{message}, and DURABLE_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(f"{message}: skipped outside CI")


@contextlib.contextmanager
def private_redis(persistent: bool = False) -> Iterator[PrivateRedis]:
    need_redis_server()
    server = PrivateRedis(persistent=persistent).start()
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def private_sentinel(master: PrivateRedis, name: str = "durable") -> Iterator[int]:
    """A Redis Sentinel (``redis-server --sentinel``) watching ``master`` as ``name``;
    yields its port."""
    need_redis_server()
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="durable-sentinel-"))
    config = directory / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind {HOST}\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
        f"sentinel monitor {name} {HOST} {master.port} 1\n"
    )
    process = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not port_accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = directory / "sentinel.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                raise AssertionError(f"redis sentinel on port {port} did not start:\n{text}")
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


#: How long ``monitored`` waits for ``MONITOR`` to listen, and to see its end marker.
MONITOR_WAIT = 15.0


@contextlib.asynccontextmanager
async def monitored(server: PrivateRedis, names: tuple[str, ...]) -> AsyncIterator[Counter[str]]:
    """Count, by command, what clients send the server (not what scripts run inside it)
    about any of ``names``, from when ``MONITOR`` shows it listens until what was sent
    before the block ended has been seen (a marker sent last, seen last: ``MONITOR``
    shows commands in the order the server ran them)."""
    client = aioredis.Redis.from_url(server.url())
    counts: Counter[str] = Counter()
    start, end = f"start-{uuid.uuid4().hex}", f"end-{uuid.uuid4().hex}"
    started, ended = asyncio.Event(), asyncio.Event()

    async def listen(monitor: aioredis.client.Monitor) -> None:
        async for info in monitor.listen():
            command = info["command"]
            if start in command:
                started.set()
            elif end in command:
                ended.set()
                return
            elif (
                started.is_set()
                and info.get("client_type") != "lua"
                and any(name in command for name in names)
            ):
                counts[command.split(" ", 1)[0].upper()] += 1

    try:
        async with client.monitor() as monitor:
            task = asyncio.create_task(listen(monitor))
            try:
                async with asyncio.timeout(MONITOR_WAIT):
                    while not started.is_set():  # (until MONITOR listens: then it counts)
                        await client.echo(start)
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(0.2):
                                await started.wait()
                yield counts
                await client.echo(end)
                async with asyncio.timeout(MONITOR_WAIT):
                    await ended.wait()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        await client.aclose()
