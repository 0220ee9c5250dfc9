"""Fixtures shared by the whole suite: real daphne servers for end-to-end tests.

- ``daphne_server``: one running server (``tests.app.asgi:application``).
- ``daphne_factory(count=1, env=None, **kwargs)``: starts ``count`` servers at once with
  extra environment variables ``env`` (e.g. to select a Redis session layer) and returns
  them as a list; may be called several times per test. Every server a test started is
  stopped at its teardown.
- ``durable_sqlite``: the migrated SQLite file this test's servers share (a fresh copy
  per test of a database migrated once per session), passed to them as
  ``DURABLE_TEST_SQLITE``.
- ``report_server_output(*servers)``: for servers a wider-scoped fixture started (one
  server shared by a module), so their output is attached to this test's report too.

When a test that used servers fails, their output is attached to its report. The
WebSocket helpers ``recv_until``, ``recv_json`` and ``recv_json_until`` live in
``tests.daphne_server`` and are re-exported here.

The ``e2e`` marker (``tests.markers``, loaded here) sets the tests that start
processes apart from the in-process ones: ``pytest -m "not e2e"`` runs the latter.
The fixtures of the tests across processes (``cluster``, ``private_redis_server``,
``persistent_redis_server``) are in ``tests.cluster_harness``, loaded here too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.daphne_server import (
    DaphneFactory,
    DaphneServer,
    migrate_sqlite,
    recv_json,
    recv_json_until,
    recv_until,
    start_servers,
)

__all__ = ["DaphneFactory", "DaphneServer", "recv_json", "recv_json_until", "recv_until"]

# The e2e marker, and the fixtures of the tests across processes (cluster, ...).
pytest_plugins = ("tests.markers", "tests.cluster_harness", "tests.redis_layers")

_SERVERS_KEY = pytest.StashKey[list[DaphneServer]]()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated for ``tests.settings``, once per session."""
    path = tmp_path_factory.mktemp("durable-db") / "template.sqlite3"
    migrate_sqlite(path)
    return path


@pytest.fixture
def durable_sqlite(migrated_sqlite_template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the migrated database, shared by all its servers."""
    path = tmp_path / "e2e.sqlite3"
    shutil.copyfile(migrated_sqlite_template, path)
    return path


@pytest.fixture
def daphne_factory(request: pytest.FixtureRequest, durable_sqlite: Path) -> Iterator[DaphneFactory]:
    started: list[DaphneServer] = []

    def factory(
        count: int = 1, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> list[DaphneServer]:
        merged = {"DURABLE_TEST_SQLITE": str(durable_sqlite), **(env or {})}
        servers = start_servers(count, merged, first_index=len(started), **kwargs)
        started.extend(servers)
        request.node.stash.setdefault(_SERVERS_KEY, []).extend(servers)
        return servers

    yield factory

    errors: list[BaseException] = []
    for server in started:
        try:
            server.close()
        except BaseException as exc:  # stop every server even if one fails to stop
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def report_server_output(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``report_server_output(*servers)``: attach these servers' output to this test's
    report if it fails, as for the servers ``daphne_factory`` started.

    For servers this test uses but did not start (those of a module-scoped fixture):
    their output is where a failure's cause usually is.
    """

    def report(*servers: DaphneServer) -> None:
        request.node.stash.setdefault(_SERVERS_KEY, []).extend(servers)

    return report


@pytest.fixture
def daphne_server(daphne_factory: DaphneFactory) -> DaphneServer:
    """One running daphne server with the default environment."""
    return daphne_factory(1)[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed:
        for server in item.stash.get(_SERVERS_KEY, []):
            report.sections.append(
                (f"{server.name} (port {server.port}) output", server.output_tail())
            )
    return report
