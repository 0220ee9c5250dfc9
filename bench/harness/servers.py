"""daphne processes under test, and the ``/bench/`` control endpoints they serve.

Every server is ``python -m daphne -b 127.0.0.1 -p PORT --websocket_timeout -1 [-v 0]
APPLICATION``, the way users deploy, with its open-file limit raised and its output in
a temporary file (kept in memory once the server is closed, for the report). The
factories name what each benchmark serves:

- :func:`bench_server`: ``bench/benchapp`` (one process, in-memory layers by default;
  the raw ASGI floor, the plain-Channels baseline and the durable variants);
- :func:`cluster_server`: ``bench/clusterapp`` on the shared Redis under a key prefix of
  its own (``BENCH_APP=channels`` for the plain-Channels baseline, which does not even
  install django_durable);
- :func:`test_app_server`: the test suite's application (``tests.app.asgi``,
  ``tests.settings``), which the fault, overload, storage and released-state
  benchmarks drive; only the server process imports it, never the bench.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.measure import proc_nofile, proc_rss_kib, raise_nofile

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0
#: The SQLite files the bench apps' alarm pollers read (nothing else touches them).
BENCH_SQLITE = RESULTS_DIR / "bench.sqlite3"
CLUSTER_SQLITE = RESULTS_DIR / "cluster.sqlite3"
CLUSTER_APP = "clusterapp.asgi:application"
TEST_APP = "tests.app.asgi:application"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (a server that finds it taken relaunches)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def environment(
    settings: str, extra: Mapping[str, str], paths: Sequence[Path] = (REPO_ROOT, BENCH_DIR)
) -> dict[str, str]:
    """The inherited environment with ``settings``, ``paths`` importable, and ``extra``."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (*map(str, paths), env.get("PYTHONPATH", "")) if p
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env


class DaphneServer:
    """One daphne process on a free port of 127.0.0.1 (or ``port``)."""

    def __init__(
        self,
        app: str,
        *,
        settings: str,
        env: Mapping[str, str] | None = None,
        name: str = "daphne",
        extra_args: Iterable[str] = (),
        verbose: bool = False,
        ready_path: str | None = "/bench/status",
        startup_timeout: float = 60.0,
        paths: Sequence[Path] = (REPO_ROOT, BENCH_DIR),
        cwd: Path = REPO_ROOT,
        port: int | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.env = dict(env or {})
        self.name = name
        #: More daphne options (``bench/many_objects.py --ping-interval``).
        self.extra_args = list(extra_args)
        #: False: ``-v 0``, no access log line per handshake.
        self.verbose = verbose
        #: Ready once this answers over HTTP (None: once the port accepts connections).
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.paths = paths
        self.cwd = cwd
        self.fixed_port = port
        self.port = 0
        self.command: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in close())
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        self._final_output: str | None = None

    # -- life cycle ----------------------------------------------------------------

    def launch(self) -> None:
        """Start the process without waiting for it (``wait_ready()`` waits)."""
        self.port = self.fixed_port or free_port()
        self.command = [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(self.port)]
        self.command += ["--websocket_timeout", "-1"]
        if not self.verbose:
            self.command += ["-v", "0"]
        self.command += [*self.extra_args, self.app]
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=environment(self.settings, self.env, self.paths),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
        )

    def wait_ready(self) -> None:
        """Wait (bounded) until the server answers; relaunch if its port was taken."""
        deadline = time.monotonic() + self.startup_timeout
        attempts = 0
        while True:
            assert self.process is not None, "launch() first"
            if self.process.poll() is not None:
                if "Address already in use" in self.output() and attempts < 3:
                    attempts += 1
                    self.launch()
                    continue
                raise RuntimeError(f"{self.name} exited early:\n{self.output_tail()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not answer:\n{self.output_tail()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        if self.ready_path is None:
            return port_accepts(self.port)
        try:
            self.get(self.ready_path, timeout=1.0)
            return True
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def start(self) -> DaphneServer:
        self.launch()
        self.wait_ready()
        return self

    def terminate(self, signum: int = signal.SIGTERM) -> None:
        """SIGTERM (a graceful shutdown starts) without waiting; ``wait()`` for the end."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.process is not None, "the server was never started"
        return self.process.wait(timeout=timeout)

    def kill(self) -> int | None:
        """SIGKILL at once (a crashed host, as far as clients can tell)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
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

    def close(self) -> None:
        """Stop the server, keep its output in memory and delete the log file."""
        try:
            self.stop()
        finally:
            if self._final_output is None:
                self._final_output = self.output()
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)

    # -- inspection ----------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, path: str = "/") -> str:
        return f"ws://{HOST}:{self.port}/{path.lstrip('/')}"

    def http_url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def get(self, path: str, timeout: float = 120.0) -> Any:
        """GET ``path`` over plain HTTP, decoded from JSON."""
        with urllib.request.urlopen(self.http_url(path), timeout=timeout) as response:
            return json.loads(response.read())

    def status(self) -> dict[str, Any]:
        return self.get("/bench/status", timeout=30.0)  # type: ignore[no-any-return]

    def nofile(self) -> int:
        return proc_nofile(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def command_line(self) -> str:
        """How to start this server by hand (the per-run values elided)."""
        shown = " ".join(
            f"{k}=..." if k == "BENCH_PREFIX" else f"{k}={v}"
            for k, v in self.env.items()
            if k.startswith("BENCH_") and k not in ("BENCH_SQLITE", "BENCH_REDIS_URL")
        )
        head = f"PYTHONPATH=.:bench DJANGO_SETTINGS_MODULE={self.settings} {shown}".rstrip()
        verbosity = "" if self.verbose else " -v 0"
        extra = "".join(f" {a}" for a in self.extra_args)
        return (
            f"{head} python -m daphne -b 127.0.0.1 -p PORT --websocket_timeout -1"
            f"{verbosity}{extra} {self.app}"
        )

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        if self._final_output is not None:
            return self._final_output
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def output_tail(self, chars: int = 4000) -> str:
        return f"----- {self.name} output -----\n{self.output()[-chars:]}-----"


# -- what the benchmarks serve -------------------------------------------------------------


def bench_server(
    app: str,
    env: Mapping[str, str] | None = None,
    name: str = "",
    ready_path: str | None = "/bench/status",
) -> DaphneServer:
    """A ``benchapp`` server (``benchapp.settings``; ``env`` selects its options)."""
    return DaphneServer(
        app,
        settings="benchapp.settings",
        env=env,
        name=name or app.split(":")[0],
        ready_path=ready_path,
    )


def cluster_server(name: str, prefix: str, redis_url: str, **extra: str) -> DaphneServer:
    """A ``clusterapp`` server on Redis under ``prefix`` (see clusterapp/settings.py)."""
    env = {"BENCH_PREFIX": prefix, "BENCH_REDIS_URL": redis_url}
    env["BENCH_SQLITE"] = str(CLUSTER_SQLITE)
    return DaphneServer(
        CLUSTER_APP,
        settings="clusterapp.settings",
        env={**env, **extra},
        name=name,
        startup_timeout=90.0,
    )


def test_app_server(
    env: Mapping[str, str],
    name: str = "daphne",
    *,
    verbose: bool = False,
    repo: Path = REPO_ROOT,
    port: int | None = None,
) -> DaphneServer:
    """A server of the test application (``tests.settings``; ``DURABLE_TEST_*`` env).

    ``repo``: another checkout to serve (the bench compares versions this way).
    """
    return DaphneServer(
        TEST_APP,
        settings="tests.settings",
        env=env,
        name=name,
        verbose=verbose,
        ready_path=None,
        paths=(repo,),
        cwd=repo,
        port=port,
    )


def start_all(servers: list[DaphneServer]) -> list[DaphneServer]:
    """Start ``servers`` in parallel; on a failure close every one of them."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: Iterable[DaphneServer]) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


# -- the /bench/ control endpoints ---------------------------------------------------------


def wait_sockets(server: DaphneServer, expected: int, timeout: float = 120.0) -> dict[str, Any]:
    """Until the server reports ``expected`` sockets; its status then."""
    deadline = time.monotonic() + timeout
    while True:
        status = server.status()
        if status["sockets"] == expected:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} holds {status['sockets']} sockets, not {expected}")
        time.sleep(0.2)


def hibernate(server: DaphneServer) -> dict[str, Any]:
    """Hibernate the benchapp's durable object; raise if it is still live after."""
    status: dict[str, Any] = server.get("/bench/hibernate")
    if status["live_object_ids"]:
        # A last event may still have been queued: ask again once.
        time.sleep(0.2)
        status = server.get("/bench/hibernate")
    if status["live_object_ids"]:
        raise RuntimeError(f"object still live after hibernate: {status['live_object_ids']}")
    return status


def measure_rss(server: DaphneServer, samples: int, settle: float) -> list[int]:
    """``samples`` readings of VmRSS, each after a ``gc.collect()`` in the server and a
    ``settle`` (the allocator returns what the collection freed meanwhile)."""
    values = []
    for _ in range(samples):
        server.get("/bench/gc")
        time.sleep(settle)
        values.append(server.rss_kib())
    return values
