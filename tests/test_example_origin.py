"""The example project accepts WebSockets only from its own origin: scheme, host and
port (Channels' ``OriginValidator`` with exact origins, as docs/deployment.md shows).

Before: ``AllowedHostsOriginValidator`` compared the host only, so pages on
``http://127.0.0.1:9999`` and ``https://localhost`` could open sockets to the example
served on ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.daphne_server import REPO_ROOT, DaphneServer, free_port, recv_json

EXAMPLE = REPO_ROOT / "example_project"

pytestmark = pytest.mark.e2e  # the example served by daphne


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    db: Path = tmp_path_factory.mktemp("example-origin") / "db.sqlite3"
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(REPO_ROOT)]),
        "DURABLE_EXAMPLE_DB": str(db),
        "DURABLE_EXAMPLE_ORIGINS": f"http://127.0.0.1:{port} http://localhost:{port}",
    }
    migrate = subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), "migrate", "--noinput", "-v0"],
        cwd=EXAMPLE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    with DaphneServer(env, application="config.asgi:application", name="example", port=port) as s:
        yield s


async def test_the_example_s_own_origin_is_accepted(example: DaphneServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        origin = f"http://{host}:{example.port}"
        async with connect(example.url("/ws/chat/lobby/?name=ann"), origin=origin) as ws:
            assert (await recv_json(ws))["type"] == "history"


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # same host, another port
        "https://127.0.0.1:{port}",  # same host and port, another scheme
        "https://localhost",  # an allowed host, default port
        "http://evil.example:{port}",
        None,  # no Origin header at all
    ],
)
async def test_other_origins_are_refused(example: DaphneServer, origin: str | None) -> None:
    headers = {} if origin is None else {"origin": origin.format(port=example.port)}
    with pytest.raises(InvalidStatus) as info:
        async with connect(example.url("/ws/chat/lobby/?name=eve"), **headers):
            pass
    assert info.value.response.status_code == 403
