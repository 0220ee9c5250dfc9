"""The example project's one environment switch: ``DURABLE_EXAMPLE_CLUSTER=1`` runs it
on Redis (channel and session layers, with docs/deployment.md's values) and PostgreSQL;
without it, in-memory layers and SQLite. Read by a real ``manage.py`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.daphne_server import REPO_ROOT

EXAMPLE = REPO_ROOT / "example_project"

pytestmark = pytest.mark.e2e  # every test runs the example's manage.py as a process
SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({"
    "'channels': s.CHANNEL_LAYERS['default'], 'durable': s.DURABLE_OBJECTS, "
    "'engine': s.DATABASES['default']['ENGINE'], 'db': str(s.DATABASES['default']['NAME'])}))"
)


def example_settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_EXAMPLE_")}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SHOW],
        cwd=EXAMPLE,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_process_by_default() -> None:
    found = example_settings()
    assert found["channels"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert "SESSION_LAYER" not in found["durable"]
    assert found["engine"] == "django.db.backends.sqlite3"


@pytest.mark.parametrize("value", ["0", ""])
def test_the_switch_needs_1(value) -> None:
    assert example_settings(DURABLE_EXAMPLE_CLUSTER=value)["engine"].endswith("sqlite3")


def test_the_cluster_switch_selects_redis_and_postgresql() -> None:
    found = example_settings(DURABLE_EXAMPLE_CLUSTER="1", DURABLE_EXAMPLE_PG_NAME="example_db")
    host = found["channels"]["CONFIG"]["hosts"][0]
    assert found["channels"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert found["channels"]["CONFIG"]["capacity"] == 10_000
    assert host == {
        "address": "redis://127.0.0.1:6379/0",
        "socket_timeout": None,
        "max_connections": 1000,
    }
    layer = found["durable"]["SESSION_LAYER"]
    assert layer["BACKEND"] == "django_durable.session.RedisSessionLayer"
    assert layer["CONFIG"]["hosts"] == [host]
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["db"] == "example_db"
