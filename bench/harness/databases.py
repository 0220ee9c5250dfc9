"""Databases for the servers under test: migrated SQLite files, PostgreSQL copies.

The bench apps touch their database only through django_durable's alarm poller, so a
fresh migrated SQLite file per run is enough; the storage benchmark measures the
databases themselves, on SQLite and on a PostgreSQL database made for the run
(``createdb``/``dropdb`` on 127.0.0.1, ``DURABLE_TEST_PG_*`` for the user and password).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.servers import (
    BENCH_DIR,
    BENCH_SQLITE,
    CLUSTER_SQLITE,
    REPO_ROOT,
    RESULTS_DIR,
    environment,
)

PG_HOST = os.environ.get("DURABLE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("DURABLE_TEST_PG_PORT", "5432")
PG_USER = os.environ.get("DURABLE_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("DURABLE_TEST_PG_PASSWORD", "")


def migrate(
    settings: str,
    env: Mapping[str, str],
    *,
    database: str | None = None,
    paths: Sequence[Path] = (REPO_ROOT, BENCH_DIR),
) -> None:
    """``python -m django migrate`` with ``settings`` and ``env``; raises with its output."""
    command = [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"]
    if database:
        command += ["--database", database]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=environment(settings, env, paths),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{result.stdout}{result.stderr}")


def fresh_bench_sqlite() -> None:
    """A fresh migrated SQLite file for ``benchapp`` servers."""
    RESULTS_DIR.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        BENCH_SQLITE.unlink()
    migrate("benchapp.settings", {"BENCH_SQLITE": str(BENCH_SQLITE)})


def fresh_cluster_sqlite() -> None:
    """A fresh migrated SQLite file for ``clusterapp`` servers."""
    RESULTS_DIR.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        CLUSTER_SQLITE.unlink()
    env = {"BENCH_SQLITE": str(CLUSTER_SQLITE), "BENCH_LAYER": "memory"}
    migrate("clusterapp.settings", env)


def migrate_test_sqlite(path: str | os.PathLike[str]) -> None:
    """Create (or bring up to date) a SQLite file at ``path`` for ``tests.settings``."""
    migrate("tests.settings", {"DURABLE_TEST_SQLITE": os.fspath(path)}, paths=(REPO_ROOT,))


def _pg_tool(tool: str, *args: str) -> None:
    env = dict(os.environ)
    if PG_PASSWORD:
        env["PGPASSWORD"] = PG_PASSWORD
    command = [tool, "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, *args]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stdout}{result.stderr}")


class ServerDatabase:
    """The database of one set of test-app servers: ``sqlite_path``, or a PostgreSQL
    database made (and migrated) for it when ``kind`` is ``"postgres"``."""

    def __init__(self, kind: str, sqlite_path: Path) -> None:
        self.kind = kind
        #: Environment of the servers using it (``tests.settings``).
        self.env = {"DURABLE_TEST_SQLITE": str(sqlite_path)}
        self.pg_name = ""
        if kind == "postgres":
            self.pg_name = f"durable_bench_{uuid.uuid4().hex[:12]}"
            _pg_tool("createdb", self.pg_name)
            self.env.update(DURABLE_TEST_DATABASE="postgres", DURABLE_TEST_PG_NAME=self.pg_name)
            try:
                migrate("tests.settings", self.env, database="postgres", paths=(REPO_ROOT,))
            except BaseException:
                self.drop()
                raise

    def drop(self) -> None:
        if self.pg_name:
            _pg_tool("dropdb", "--if-exists", "--force", self.pg_name)
