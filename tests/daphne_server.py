"""End-to-end harness: real daphne processes serving ``tests.app.asgi:application``.

``DaphneServer`` runs ``python -m daphne`` as a subprocess, the way users deploy, so a
test can open real WebSocket connections, kill a process and watch another take over.
Everything the server prints goes to a temporary log file; its text is attached to
every failure the harness raises (and, through ``tests/conftest.py``, to the report of
any test that used the server).

The fixtures in ``tests/conftest.py`` (``daphne_server``, ``daphne_factory``) are the
usual way in; the helpers ``recv_until``/``recv_json``/``recv_json_until`` read from a
``websockets`` client (``from websockets.asyncio.client import connect``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_APPLICATION = "tests.app.asgi:application"
DEFAULT_SETTINGS = "tests.settings"
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Tail of the server log attached to failure messages (the whole file can be long).
LOG_TAIL_CHARS = 20_000


class DaphneFactory(Protocol):
    """The ``daphne_factory`` fixture: start ``count`` servers with extra ``env``."""

    def __call__(
        self, count: int = 1, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> list[DaphneServer]: ...


class DaphneServerError(AssertionError):
    """A daphne server under test did not start, or stopped when it should not have."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the server retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server (or ``manage.py``) subprocess running the test settings."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = DEFAULT_SETTINGS
    env["PYTHONUNBUFFERED"] = "1"
    # The repo root must be importable (``tests.*``) whatever the install mode.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    if extra:
        env.update({key: str(value) for key, value in extra.items()})
    return env


#: The ASGI servers a test can run: ``server="daphne"`` (the default), ``"uvicorn"``
#: (with ASGI lifespan on) or ``"hypercorn"``.
SERVERS = ("daphne", "uvicorn", "hypercorn")


def server_command(server: str, port: int, application: str, extra_args: list[str]) -> list[str]:
    """The command line that serves ``application`` with ``server`` on ``HOST:port``."""
    if server == "daphne":
        head = ["-m", "daphne", "-b", HOST, "-p", str(port), "--websocket_timeout", "-1"]
    elif server == "uvicorn":
        head = ["-m", "uvicorn", "--host", HOST, "--port", str(port), "--lifespan", "on"]
        head += ["--ws", os.environ.get("DURABLE_TEST_UVICORN_WS", "auto")]
    elif server == "hypercorn":
        # (--workers 0: serve in this process, as the others do, not in a child.)
        head = ["-m", "hypercorn", "--bind", f"{HOST}:{port}", "--workers", "0"]
    else:
        raise ValueError(f"unknown ASGI server {server!r}; one of {SERVERS}")
    return [sys.executable, *head, *extra_args, application]


class DaphneServer:
    """One ``python -m daphne`` process on a free port of 127.0.0.1.

    ``env`` is added to the inherited environment (``DJANGO_SETTINGS_MODULE`` is
    ``tests.settings``). ``start()`` returns once the port accepts TCP connections, or
    raises ``DaphneServerError`` carrying the server's output. ``server="uvicorn"`` or
    ``"hypercorn"`` runs that server instead, the same way.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        application: str = DEFAULT_APPLICATION,
        extra_args: Iterable[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
        name: str = "daphne",
        server: str = "daphne",
        port: int | None = None,
    ) -> None:
        if server not in SERVERS:
            raise ValueError(f"unknown ASGI server {server!r}; one of {SERVERS}")
        self.server = server
        self.env = dict(env or {})
        #: A port chosen by the caller (to put the server's origin in its settings).
        self.fixed_port = port
        self.application = application
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.name = name
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix=f"{name}-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log_file.name)
        self._final_output: str | None = None

    # -- life cycle ----------------------------------------------------------------

    def launch(self, same_port: bool = False) -> None:
        """Start the process without waiting for it (``wait_ready()`` waits).

        ``same_port``: listen where the last process did (a restart clients reconnect to).
        """
        if self.process is not None and self.process.poll() is None:
            raise DaphneServerError(f"{self!r} is already running")
        if not same_port or self.port is None:
            self.port = self.fixed_port or free_port()
        command = server_command(self.server, self.port, self.application, self.extra_args)
        self._log_file.write(f"$ {' '.join(command)}\n".encode())
        self._log_file.flush()
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=base_environment(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        """Wait (bounded) until the port accepts connections; relaunch if it was taken."""
        deadline = time.monotonic() + self.startup_timeout
        attempts = 0
        while True:
            assert self.process is not None and self.port is not None, "launch() first"
            # (If something answers but our process died, another program took the port.)
            if port_accepts(self.port) and self.process.poll() is None:
                return
            if self.process.poll() is not None:
                taken = "Address already in use" in self.output()
                if taken and attempts < 3 and time.monotonic() < deadline:
                    attempts += 1
                    self.launch()
                    continue
                raise DaphneServerError(
                    f"{self.name} exited with code {self.process.returncode} before "
                    f"accepting connections on port {self.port}.\n{self.output_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise DaphneServerError(
                    f"{self.name} did not accept connections on port {self.port} within "
                    f"{self.startup_timeout:.0f} s.\n{self.output_tail()}"
                )
            time.sleep(0.05)

    def start(self) -> DaphneServer:
        self.launch()
        self.wait_ready()
        return self

    def restart(self) -> DaphneServer:
        """Kill the process and start a new one on the same port (``kill -9``, then up)."""
        self.kill()
        self.launch(same_port=True)
        deadline = time.monotonic() + self.startup_timeout
        while True:  # the old socket may linger a moment: retry while the port is taken
            assert self.process is not None
            if port_accepts(self._require_port()) and self.process.poll() is None:
                return self
            if self.process.poll() is not None and "Address already in use" in self.output():
                if time.monotonic() > deadline:
                    raise DaphneServerError(f"{self.name} could not listen again on {self.port}")
                time.sleep(0.2)
                self.launch(same_port=True)
                continue
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise DaphneServerError(f"{self.name} did not restart.\n{self.output_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return self.process.returncode

    def terminate(self, signum: int = signal.SIGTERM) -> None:
        """SIGTERM (or ``signum``) without waiting: a graceful shutdown starts; ``wait()``
        for its end."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait (bounded) for the process to exit; its exit code."""
        assert self.process is not None, "the server was never started"
        return self.process.wait(timeout=timeout)

    def kill(self) -> int | None:
        """SIGKILL at once (a crashed host, as far as clients can tell); returns the code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(timeout=STOP_TIMEOUT)

    def close(self) -> None:
        """Stop the server, keep its output in memory and delete the log file."""
        try:
            self.stop()
        finally:
            if self._final_output is None:
                self._final_output = self.output()
            self._log_file.close()
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> DaphneServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- inspection ----------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, path: str = "/") -> str:
        """``ws://127.0.0.1:<port>/<path>``."""
        return f"ws://{HOST}:{self._require_port()}/{path.lstrip('/')}"

    def http_url(self, path: str = "/") -> str:
        """``http://127.0.0.1:<port>/<path>``."""
        return f"http://{HOST}:{self._require_port()}/{path.lstrip('/')}"

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr, interleaved)."""
        if self._final_output is not None:
            return self._final_output
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def output_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.output()
        if len(text) > chars:
            text = f"[... {len(text) - chars} characters cut ...]\n{text[-chars:]}"
        return f"----- {self.name} output ({self.log_path}) -----\n{text}-----"

    def _require_port(self) -> int:
        assert self.port is not None, "the server was never started"
        return self.port

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DaphneServer {self.name} port={self.port} {state}>"


def start_servers(
    count: int,
    env: Mapping[str, str] | None = None,
    *,
    first_index: int = 0,
    **kwargs: Any,
) -> list[DaphneServer]:
    """Start ``count`` servers in parallel; on a failure stop those already started.

    They are named ``daphne-<first_index>``, ``daphne-<first_index + 1>``...
    """
    servers = [DaphneServer(env, name=f"daphne-{first_index + i}", **kwargs) for i in range(count)]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


def migrate_sqlite(path: str | os.PathLike[str], timeout: float = 120.0) -> None:
    """Create (or bring up to date) a SQLite database at ``path`` for ``tests.settings``."""
    command = [
        sys.executable,
        "-m",
        "django",
        "migrate",
        f"--settings={DEFAULT_SETTINGS}",
        "--noinput",
        "--verbosity=0",
    ]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=base_environment({"DURABLE_TEST_SQLITE": os.fspath(path)}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise DaphneServerError(
            f"`{' '.join(command)}` failed with code {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )


# -- WebSocket client helpers (websockets >= 13, asyncio client) ---------------------


async def recv_until(
    ws: Any,
    predicate: Callable[[str | bytes], bool],
    timeout: float = 5.0,  # noqa: ASYNC109 (the helper owns its bounded wait)
) -> str | bytes:
    """Receive until a message satisfies ``predicate`` and return that message.

    Messages before it are dropped. After ``timeout`` seconds in total, fail with the
    messages seen so far.
    """
    seen: list[str | bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await ws.recv()
                if predicate(message):
                    return message
                seen.append(message)
    except TimeoutError:
        raise AssertionError(
            f"no matching message within {timeout} s; received {len(seen)}: {seen[-20:]!r}"
        ) from None


async def recv_json(ws: Any, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    """The next message, decoded from JSON (fails after ``timeout`` seconds)."""
    try:
        async with asyncio.timeout(timeout):
            message = await ws.recv()
    except TimeoutError:
        raise AssertionError(f"no message within {timeout} s") from None
    return json.loads(message)


async def recv_json_until(
    ws: Any,
    predicate: Callable[[Any], bool],
    timeout: float = 5.0,  # noqa: ASYNC109
) -> Any:
    """Receive until a JSON message satisfies ``predicate``; non-JSON messages are skipped."""

    def matches(message: str | bytes) -> bool:
        try:
            value = json.loads(message)
        except ValueError:
            return False
        return bool(predicate(value))

    return json.loads(await recv_until(ws, matches, timeout))
