"""The two databases of the in-process storage tests, and how their tests are marked.

``default`` is SQLite, ``postgres`` PostgreSQL (``tests/settings.py``). Storage runs the
ORM in the package's database thread, which sees only committed rows, so these tests
are transactional (``transaction=True``): after each one, pytest-django flushes the
tables, and that flush is most of their time. Two things keep it short:

- each test flushes only the database it used: ``DATABASES`` are the parameters of an
  ``alias`` fixture, each with its own ``django_db`` mark naming that one database;
- ``available_apps``: only ``django_durable``'s tables are flushed, and no content
  types or permissions are re-created after each flush (the ``post_migrate`` signal).

``TRANSACTIONAL`` marks the module (both databases) for tests without ``alias``.
"""

from __future__ import annotations

from typing import Any

import pytest

APPS = ["django_durable"]

TRANSACTIONAL = pytest.mark.django_db(
    databases=["default", "postgres"], transaction=True, available_apps=APPS
)


def _on(alias: str) -> Any:
    return pytest.param(
        alias, marks=pytest.mark.django_db(databases=[alias], transaction=True, available_apps=APPS)
    )


DATABASES = [_on("default"), _on("postgres")]
