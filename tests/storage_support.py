"""Support for the storage, alarm and stub end-to-end tests.

- :func:`database_fixture` makes a module-scoped ``database`` fixture, parametrized over
  SQLite and PostgreSQL: a fresh database per test module (a copy of the migrated
  SQLite template, or a PostgreSQL database made with ``createdb``, migrated with
  ``python -m django migrate`` and dropped after), with the environment that points
  daphne servers and management commands at it, and direct reads of its tables so a
  test can look at rows without waking any object.
- :class:`Peer`: a WebSocket client that buffers every JSON message, so replies and
  broadcasts can be awaited in any order, each with a timeout.
- :func:`http_json`, :func:`run_command` (waiting for state: ``tests.waiting``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from django_durable.encoding import decode
from tests.daphne_server import REPO_ROOT, DaphneServer, base_environment
from tests.services import PG_HOST, PG_PORT, need

TIMEOUT = 10.0
PG_USER = os.environ.get("DURABLE_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("DURABLE_TEST_PG_PASSWORD", "")
STORAGE_TABLE = "django_durable_storageentry"
ALARM_TABLE = "django_durable_alarm"


def object_key(cls: type[Any], object_id: str) -> str:
    return f"{cls.durable_name}/{object_id}"


def new_id() -> str:
    return uuid.uuid4().hex[:12]


# Databases ----------------------------------------------------------------------------


def _pg_env() -> dict[str, str]:
    env = dict(os.environ)
    if PG_PASSWORD:
        env["PGPASSWORD"] = PG_PASSWORD
    return env


def _pg_tool(tool: str, *args: str) -> None:
    command = [tool, "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, *args]
    result = subprocess.run(
        command, env=_pg_env(), capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"`{' '.join(command)}` failed: {result.stdout}{result.stderr}")


def migrate(env: dict[str, str], database: str) -> None:
    command = [sys.executable, "-m", "django", "migrate", "--database", database]
    command += ["--noinput", "--verbosity=0"]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=base_environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"`{' '.join(command)}` failed: {result.stdout}{result.stderr}")


class E2EDatabase:
    """The database one test module's servers share, and direct access to its tables."""

    def __init__(self, kind: str, sqlite_path: Path) -> None:
        self.kind = kind
        self.sqlite_path = sqlite_path
        #: Environment for daphne servers and management commands.
        self.env = {"DURABLE_TEST_SQLITE": str(sqlite_path)}
        self.pg_name = ""
        if kind == "postgres":
            self.pg_name = f"durable_e2e_{uuid.uuid4().hex[:12]}"
            _pg_tool("createdb", self.pg_name)
            self.env.update(DURABLE_TEST_DATABASE="postgres", DURABLE_TEST_PG_NAME=self.pg_name)
            try:
                migrate(self.env, "postgres")
            except BaseException:
                self.drop()
                raise

    def __repr__(self) -> str:
        return f"<E2EDatabase {self.kind} {self.pg_name or self.sqlite_path}>"

    def env_for(self, processes: int) -> dict[str, str]:
        """The environment for ``processes`` servers sharing this database.

        Several processes on one SQLite file need ``BEGIN IMMEDIATE``: in SQLite's
        default deferred mode a transaction that reads before it writes (a fenced write,
        an alarm claim) fails at once with "database is locked" when another process is
        writing, rather than waiting for it.
        """
        if self.kind == "sqlite" and processes > 1:
            return {**self.env, "DURABLE_TEST_SQLITE_IMMEDIATE": "1"}
        return dict(self.env)

    def drop(self) -> None:
        if self.pg_name:
            _pg_tool("dropdb", "--if-exists", "--force", self.pg_name)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self.kind == "sqlite":
            conn: Any = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)
        else:
            import psycopg

            conn = psycopg.connect(
                host=PG_HOST,
                port=PG_PORT,
                user=PG_USER,
                password=PG_PASSWORD or None,
                dbname=self.pg_name,
                autocommit=True,
            )
        try:
            yield conn
        finally:
            conn.close()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            sql = sql.replace("%s", "?")
        with self.connection() as conn:
            return list(conn.execute(sql, params).fetchall())

    def storage(self, key: str, prefix: str = "") -> dict[str, Any]:
        """An object's storage as it is in the table now (keys starting with ``prefix``)."""
        rows = self._query(f"SELECT key, value FROM {STORAGE_TABLE} WHERE object_key = %s", (key,))
        found = {bytes(k).decode(): decode(bytes(v)) for k, v in rows}
        return {k: v for k, v in sorted(found.items()) if k.startswith(prefix)}

    def alarm(self, key: str) -> dict[str, Any] | None:
        """The object's alarm row, or None."""
        rows = self._query(
            f"SELECT scheduled_at, retry_count, version, claimed_until FROM {ALARM_TABLE} "
            "WHERE object_key = %s",
            (key,),
        )
        if not rows:
            return None
        scheduled_at, retry_count, version, claimed_until = rows[0]
        return {
            "scheduled_at": scheduled_at,
            "retry_count": retry_count,
            "version": version,
            "claimed_until": claimed_until,
        }

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Block every storage read and write of every object until the block ends.

        SQLite: an EXCLUSIVE transaction (keep it under the server's 5 s busy timeout).
        PostgreSQL: the storage table locked in ACCESS EXCLUSIVE mode.
        """
        with self.connection() as conn:
            if self.kind == "sqlite":
                conn.execute("BEGIN EXCLUSIVE")
            else:
                conn.autocommit = False
                conn.execute(f"LOCK TABLE {STORAGE_TABLE} IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback() if self.kind != "sqlite" else conn.execute("ROLLBACK")


def database_fixture() -> Any:
    """A module-scoped ``database`` fixture over ``["sqlite", "postgres"]``."""

    @pytest.fixture(scope="module", params=["sqlite", "postgres"])
    def database(
        request: pytest.FixtureRequest,
        migrated_sqlite_template: Path,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[E2EDatabase]:
        if request.param == "postgres":
            need("postgres")
        sqlite_path = tmp_path_factory.mktemp("storage-e2e") / "db.sqlite3"
        shutil.copyfile(migrated_sqlite_template, sqlite_path)
        db = E2EDatabase(request.param, sqlite_path)
        try:
            yield db
        finally:
            db.drop()

    return database


def redis_env() -> dict[str, str]:
    """Environment selecting the Redis session and channel layers, with a fresh prefix."""
    need("redis")
    from tests.services import REDIS_URL

    return {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_REDIS_PREFIX": f"storage-{uuid.uuid4().hex[:10]}",
    }


# Clients ------------------------------------------------------------------------------


class Peer:
    """A WebSocket client that keeps every JSON message it received, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[Any] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed: BaseException | None = None

    @classmethod
    async def open(cls, server: DaphneServer, path: str) -> Peer:
        ws = await asyncio.wait_for(connect(server.url(path), max_size=None), TIMEOUT)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                try:
                    value = json.loads(message)
                except ValueError:
                    value = message
                async with self._arrived:
                    self.messages.append(value)
                    self._arrived.notify_all()
        except Exception as exc:
            self.closed = exc
        finally:
            self.closed = self.closed or ConnectionError("closed")
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, command: dict[str, Any] | str) -> int:
        """Send; returns the mark to pass to ``wait`` for messages from now on."""
        mark = len(self.messages)
        await self.ws.send(command if isinstance(command, str) else json.dumps(command))
        return mark

    async def wait(
        self,
        predicate: Callable[[Any], bool],
        since: int = 0,
        timeout: float = TIMEOUT,  # noqa: ASYNC109
    ) -> Any:
        """The first message from index ``since`` on that satisfies ``predicate``."""
        index = since
        try:
            async with asyncio.timeout(timeout), self._arrived:
                while True:
                    for message in self.messages[index:]:
                        index += 1
                        if _matches(predicate, message):
                            return message
                    if self.closed is not None:
                        raise AssertionError(f"connection ended: {self.closed!r}")
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"no matching message within {timeout} s; got {self.messages[since:][-20:]!r}"
            ) from None

    async def ask(self, command: dict[str, Any], timeout: float = TIMEOUT) -> Any:  # noqa: ASYNC109
        """Send a command and wait for the reply carrying its ``op``."""
        mark = await self.send(command)
        return await self.wait(
            lambda m: isinstance(m, dict) and m.get("op") == command["op"], mark, timeout
        )

    def alarms(self) -> list[dict[str, Any]]:
        """The alarm runs broadcast to this socket so far."""
        return [m for m in self.messages if isinstance(m, dict) and "alarm" in m and "op" not in m]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def _matches(predicate: Callable[[Any], bool], message: Any) -> bool:
    """``predicate(message)``, false for a message of another shape (a str, a list)."""
    try:
        return bool(predicate(message))
    except (AttributeError, KeyError, TypeError, IndexError):
        return False


async def http_json(url: str, timeout: float = 30.0) -> tuple[int, Any]:  # noqa: ASYNC109
    """GET ``url``; (status, decoded JSON body), also for error statuses."""

    def get() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, body.decode(errors="replace")

    return await asyncio.to_thread(get)


async def run_command(
    env: dict[str, str],
    *args: str,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """``python -m django <args>`` with the test settings and ``env``: its JSON output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "django",
        *args,
        cwd=REPO_ROOT,
        env=base_environment(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"`django {' '.join(args)}` ran past {timeout} s") from None
    if process.returncode != 0:
        raise AssertionError(
            f"`django {' '.join(args)}` exited with {process.returncode}:\n"
            f"{out.decode(errors='replace')}{err.decode(errors='replace')[-5000:]}"
        )
    lines = out.decode().strip().splitlines()
    assert lines, f"`django {' '.join(args)}` printed nothing; stderr: {err.decode()[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = err.decode(errors="replace")
    return result
