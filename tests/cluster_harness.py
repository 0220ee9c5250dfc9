"""The harness of the tests across processes: daphne servers sharing one Redis.

Used by ``tests/test_cluster.py`` and the other multi-process modules
(``test_cluster_reach``, ``test_hostile_redis``, ``test_released_state``,
``test_many_objects``, ``test_shutdown``, ``test_subprotocol``, ``test_overload``).

- fixture ``cluster(count, redis_url=None, args=(), **env)``: ``count`` servers (through
  ``daphne_factory``) with the Redis session layer and ``channels_redis``, under a key
  prefix of their own, as a :class:`Cluster`; at teardown its clients are closed and,
  on the shared Redis, its servers stopped and its prefix deleted.
- fixtures ``private_redis_server`` and ``persistent_redis_server``: a redis-server of
  the test's own (``tests/redis_server.py``), to restart, stop or freeze.
- :class:`Client`: a WebSocket client that keeps every message, in order;
  ``ask()`` sends a JSON command and waits (bounded) for the reply holding a key.
- ``redis_cluster(daphne_factory, count, server="daphne", **env)``: servers on Redis
  with a lease far longer than the tests' waits (graceful shutdown, overload).
- ``oid()``, ``run_python()``, ``gather()``, ``parse_json()``; ``LEASE_TIME``, ``WAIT``.

The fixtures are public: ``tests/conftest.py`` loads this module as a plugin, so a
test names them as arguments and imports nothing for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis import asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.daphne_server import REPO_ROOT, DaphneFactory, DaphneServer, base_environment
from tests.redis_server import PrivateRedis, private_redis
from tests.services import REDIS_URL, delete_redis_prefix, need
from tests.waiting import wait_until

#: Lease time of the servers (seconds): the failover tests wait about this long.
LEASE_TIME = 1.5
#: Bound on any one wait for something the cluster should do.
WAIT = 15.0
#: Lease of ``redis_cluster``: far longer than every wait of its tests, so a takeover
#: that waited for a lease to expire would fail them.
LONG_LEASE = 60.0


# Clients --------------------------------------------------------------------------------


class Client:
    """A WebSocket client whose messages are read as they come and kept, in order.

    ``ask()`` sends a JSON command and returns the first JSON reply holding ``key``
    received after it; nothing else is consumed, so tests can look at everything a
    socket received (``texts()``, ``json_messages()``).
    """

    def __init__(self, ws: ClientConnection, server: DaphneServer) -> None:
        self.ws = ws
        self.server = server
        self.messages: list[str | bytes] = []
        self.arrived: list[float] = []
        self.closed_by: ConnectionClosed | None = None
        self.ended = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.messages.append(message)
                self.arrived.append(time.monotonic())
                self._changed.set()
        except ConnectionClosed as exc:
            self.closed_by = exc
        finally:
            self.ended.set()
            self._changed.set()

    async def send(self, command: dict[str, Any] | str) -> None:
        await self.ws.send(command if isinstance(command, str) else json.dumps(command))

    async def wait_for(
        self,
        predicate: Callable[[str | bytes], bool],
        since: int = 0,
        timeout: float = WAIT,  # noqa: ASYNC109 (the helper owns its bounded wait)
    ) -> str | bytes:
        """The first message from index ``since`` on that satisfies ``predicate``."""
        index = since
        try:
            async with asyncio.timeout(timeout):
                while True:
                    while index < len(self.messages):
                        if predicate(self.messages[index]):
                            return self.messages[index]
                        index += 1
                    if self.ended.is_set():
                        raise AssertionError(f"connection ended ({self.closed_by!r})")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no matching message within {timeout} s on {self.server.name}; "
                f"last received: {self.messages[-10:]!r}"
            ) from None

    async def wait_json(
        self,
        predicate: Callable[[Any], bool],
        since: int = 0,
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> Any:
        def matches(message: str | bytes) -> bool:
            value = parse_json(message)
            return value is not None and bool(predicate(value))

        return json.loads(await self.wait_for(matches, since, timeout))

    async def ask(
        self,
        command: dict[str, Any],
        key: str,
        timeout: float = WAIT,  # noqa: ASYNC109
    ) -> Any:
        mark = len(self.messages)
        await self.send(command)
        return await self.wait_json(lambda m: key in m, mark, timeout)

    def texts(self) -> list[str]:
        return [m for m in self.messages if isinstance(m, str) and parse_json(m) is None]

    def json_messages(self) -> list[Any]:
        return [v for v in map(parse_json, self.messages) if v is not None]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def parse_json(message: str | bytes) -> Any:
    if not isinstance(message, str):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Cluster:
    servers: list[DaphneServer]
    env: dict[str, str]
    redis_url: str
    prefix: str
    clients: list[Client] = field(default_factory=list)
    _redis: aioredis.Redis | None = None

    async def client(self, server: DaphneServer, path: str, **kwargs: Any) -> Client:
        ws = await connect(server.url(path), open_timeout=WAIT, proxy=None, **kwargs)
        client = Client(ws, server)
        self.clients.append(client)
        return client

    async def census(self, server: DaphneServer, object_id: str, query: str = "") -> Client:
        """A Census socket, answered once (so its gateway is serving: groups joined)."""
        client = await self.client(server, f"/ws/census/{object_id}/{query}")
        await client.ask({"op": "whoami"}, "id")
        return client

    async def monitor(self, server: DaphneServer) -> Client:
        return await self.client(server, "/ws/cluster-monitor/")

    def server_of(self, pid: int) -> DaphneServer:
        return next(s for s in self.servers if s.pid == pid)

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(self.redis_url)
        return self._redis

    def lease_key(self, cls: type[Any], object_id: str) -> str:
        return f"{self.prefix}:durable:l:{cls.object_key(object_id)}"

    async def wait_unowned(self, cls: type[Any], object_id: str) -> None:
        """Wait until the object has no lease: hibernated everywhere."""
        key = self.lease_key(cls, object_id)
        await wait_until(lambda: self._absent(key), message=f"the lease {key} to go", timeout=WAIT)

    async def _absent(self, key: str) -> bool:
        return not await self.redis.exists(key)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self._redis is not None:
            await self._redis.aclose()


@pytest.fixture
async def cluster(daphne_factory: DaphneFactory) -> AsyncIterator[Callable[..., Cluster]]:
    """``cluster(count, redis_url=None, **env)``: servers sharing Redis, a prefix of their own."""
    made: list[Cluster] = []

    def make(
        count: int, redis_url: str | None = None, args: tuple[str, ...] = (), **env: str
    ) -> Cluster:
        need("redis")
        prefix = f"cluster-{uuid.uuid4().hex[:12]}"
        url = redis_url or REDIS_URL
        full = {
            "DURABLE_TEST_SESSION_LAYER": "redis",
            "DURABLE_TEST_REDIS_PREFIX": prefix,
            "DURABLE_TEST_REDIS_URL": url,
            "DURABLE_TEST_LEASE_TIME": str(LEASE_TIME),
            **{f"DURABLE_TEST_{k.upper()}": str(v) for k, v in env.items()},
        }
        cluster = Cluster(daphne_factory(count, env=full, extra_args=args), full, url, prefix)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()
        if cluster.redis_url == REDIS_URL:
            # The shared Redis keeps nothing of the test: its servers stop first (they
            # write until they do), then its prefix goes.
            for server in cluster.servers:
                server.stop()
            await delete_redis_prefix(cluster.prefix)


@pytest.fixture
def private_redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture
def persistent_redis_server() -> Iterator[PrivateRedis]:
    with private_redis(persistent=True) as server:
        yield server


def redis_cluster(daphne_factory: Any, count: int, server: str = "daphne", **extra: str) -> Cluster:
    """``count`` servers on Redis with a long lease (and ``extra`` environment)."""
    need("redis")
    prefix = f"shutdown-{uuid.uuid4().hex[:12]}"
    env = {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_LEASE_TIME": str(LONG_LEASE),
        **extra,
    }
    return Cluster(daphne_factory(count, env=env, server=server), env, REDIS_URL, prefix)


def oid() -> str:
    return uuid.uuid4().hex[:10]


async def run_python(code: str, *args: str, env: dict[str, str]) -> str:
    """Run ``code`` in a separate Python process with the test settings; its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        env=base_environment(env),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def gather(*aws: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*aws))
