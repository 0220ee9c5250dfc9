"""The ``e2e`` marker: which tests start other processes, so the rest can run alone.

Every test that starts another process (daphne or uvicorn, a private redis-server,
``manage.py`` or ``python -c``, a browser) is marked ``e2e``, so that
``pytest -m "not e2e"`` runs the in-process tests alone, in seconds, and
``pytest -m e2e`` the others. A test is marked by itself when it uses one of
``E2E_FIXTURES`` (directly or through another fixture); the others say
``@pytest.mark.e2e`` (or ``pytestmark`` for a whole module).

A test that is not marked but starts a process anyway fails, naming the process (an
audit hook watches process creation while it runs), so the split cannot silently rot:
the in-process part stays fast, and nothing end to end hides in it.

Loaded by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

#: Fixtures that start processes: servers, and the migration the servers' database
#: needs. A test that depends on one of them, however indirectly, is end to end.
E2E_FIXTURES = frozenset({"daphne_factory", "daphne_server", "migrated_sqlite_template"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test that uses one of ``E2E_FIXTURES``, however indirectly."""
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


#: Audit events (``sys.addaudithook``) of a new process: subprocess and asyncio's
#: subprocesses, ``os.fork`` (multiprocessing), ``os.system``, ``os.posix_spawn``.
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.system", "os.posix_spawn"})
#: The node id of the running test when it is not marked e2e, else None.
_in_process_test: list[str | None] = [None]


def _refuse_processes(event: str, args: tuple[Any, ...]) -> None:
    """Fail the process creation of a test that is not marked e2e (an audit hook)."""
    if event in _PROCESS_EVENTS and _in_process_test[0] is not None:
        raise RuntimeError(
            f"{_in_process_test[0]} starts a process ({event} {args[:2]!r}) but is not "
            "marked e2e: add @pytest.mark.e2e (see docs/testing.md)"
        )


sys.addaudithook(_refuse_processes)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Watch process creation while ``item`` runs (setup, call, teardown) unless e2e."""
    _in_process_test[0] = None if item.get_closest_marker("e2e") else item.nodeid
    try:
        return (yield)
    finally:
        _in_process_test[0] = None
