"""Finding the Redis and PostgreSQL servers the tests use, and what to do without them;
removing the keys a test left in the shared Redis (never flush it: others use it).

Outside CI a missing service skips the tests that need it, saying so. With
``DURABLE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing service fails those tests
instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import functools
import os
import socket

import pytest

REDIS_HOST = os.environ.get("DURABLE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("DURABLE_TEST_REDIS_PORT", "6379"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{os.environ.get('DURABLE_TEST_REDIS_DB', '9')}"
PG_HOST = os.environ.get("DURABLE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DURABLE_TEST_PG_PORT", "5432"))


def services_required() -> bool:
    return os.environ.get("DURABLE_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@functools.cache
def redis_available() -> bool:
    if not _port_answers(REDIS_HOST, REDIS_PORT):
        return False
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2).ping())
    except Exception:
        return False


@functools.cache
def postgres_available() -> bool:
    if not _port_answers(PG_HOST, PG_PORT):
        return False
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def need(service: str) -> None:
    """Skip (locally) or fail (in CI) the calling test when ``service`` is not answering."""
    available = {"redis": redis_available, "postgres": postgres_available}[service]()
    if available:
        return
    message = f"{service} is not answering on its standard local port"
    if services_required():
        pytest.fail(f"{message}, and DURABLE_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(f"{message}: skipped outside CI (set DURABLE_REQUIRE_SERVICES=1 to fail)")


async def delete_redis_prefix(prefix: str) -> None:
    """Delete every key under ``prefix`` in the shared Redis (a test's own prefix)."""
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        names = [name async for name in client.scan_iter(match=f"{prefix}*", count=500)]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()
