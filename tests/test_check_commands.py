"""A bad ``DURABLE_OBJECTS`` as a user meets it (SPEC §10): ``manage.py check`` and
``migrate`` print the check's message the way Django prints check errors, never a
traceback, with ``"daphne"`` in ``INSTALLED_APPS`` (which imports daphne's server and
Twisted's reactor into every management command); daphne itself refuses to start.

Each test runs a real subprocess on a settings module written for it: the test
settings (daphne first in ``INSTALLED_APPS``) with one bad value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.settings import INSTALLED_APPS

ROOT = Path(__file__).resolve().parent.parent
MANAGE_PY = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""
TIMEOUT = 90

pytestmark = pytest.mark.e2e  # every test runs manage.py or daphne as a process


def project(tmp_path: Path, durable_objects: str) -> tuple[Path, dict[str, str]]:
    """A project directory with manage.py and settings ``DURABLE_OBJECTS = <expr>``."""
    (tmp_path / "manage.py").write_text(MANAGE_PY)
    (tmp_path / "bad_settings.py").write_text(
        f"from tests.settings import *  # noqa\n\nDURABLE_OBJECTS = {durable_objects}\n"
    )
    (tmp_path / "bad_asgi.py").write_text("from tests.app.asgi import application  # noqa\n")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bad_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DURABLE_TEST_SQLITE": str(tmp_path / "db.sqlite3"),
    }
    return tmp_path, env


def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` (or, for an absolute path first, that program)."""
    argv = list(args) if os.path.isabs(args[0]) else [sys.executable, *args]
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_the_settings_have_daphne_installed() -> None:
    assert INSTALLED_APPS[0] == "daphne"


BAD = [
    ('{"IDLE_TIMEOUT": "soon"}', "(django_durable.E002) DURABLE_OBJECTS['IDLE_TIMEOUT']"),
    ('"yes"', "?: (django_durable.E001) DURABLE_OBJECTS must be a dict; got str 'yes'."),
]


@pytest.mark.parametrize("command", [["check"], ["migrate", "--noinput"]])
@pytest.mark.parametrize(("setting", "message"), BAD, ids=["idle-timeout", "not-a-dict"])
def test_management_commands_print_check_errors(tmp_path, command, setting, message) -> None:
    cwd, env = project(tmp_path, setting)
    result = run(cwd, env, "manage.py", *command)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "ImproperlyConfigured" not in result.stderr
    assert result.stderr.startswith("SystemCheckError: System check identified some issues:")
    assert message in result.stderr
    assert "yes:" not in result.stderr
    if command == ["check"]:
        assert "System check identified 1 issue" in result.stderr


def test_runserver_refuses_with_check_errors(tmp_path) -> None:
    """daphne's runserver runs the checks itself, as Django's does."""
    cwd, env = project(tmp_path, '{"IDLE_TIMEOUT": "soon"}')
    result = run(cwd, env, "manage.py", "runserver", "--noreload", "127.0.0.1:8")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "(django_durable.E002) DURABLE_OBJECTS['IDLE_TIMEOUT']" in result.stderr


def test_a_redis_hint_only_for_the_redis_backend(tmp_path) -> None:
    cwd, env = project(tmp_path, '{"SESSION_LAYER": {"BACKEND": "myproject.layers.Nope"}}')
    result = run(cwd, env, "manage.py", "check")
    assert result.returncode == 1
    assert "(django_durable.E011)" in result.stderr
    assert "redis" not in result.stderr.lower()
    assert "HINT: Check the dotted path" in result.stderr


DAPHNE_SCRIPT = str(Path(sys.executable).parent / "daphne")


@pytest.mark.parametrize(
    "entry", [["-m", "daphne"], [DAPHNE_SCRIPT]], ids=["python-m-daphne", "daphne-script"]
)
def test_daphne_refuses_to_start(tmp_path, entry) -> None:
    """Daphne's command line runs no system checks: the package stops it, before it
    listens, with the same message and exit status 1."""
    cwd, env = project(tmp_path, '{"IDLE_TIMEOUT": "soon"}')
    result = run(cwd, env, *entry, "-b", "127.0.0.1", "-p", "8", "bad_asgi:application")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("SystemCheckError: System check identified some issues:")
    assert "(django_durable.E002) DURABLE_OBJECTS['IDLE_TIMEOUT'] must be" in result.stderr
    assert "Listening" not in result.stdout + result.stderr


def test_good_settings_pass_every_command(tmp_path) -> None:
    cwd, env = project(tmp_path, '{"IDLE_TIMEOUT": 5}')
    result = run(cwd, env, "manage.py", "check")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    result = run(cwd, env, "manage.py", "migrate", "--noinput")
    assert result.returncode == 0, result.stderr
    assert "Applying django_durable.0001_initial... OK" in result.stdout
