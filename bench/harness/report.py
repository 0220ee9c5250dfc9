"""What every benchmark prints and writes: progress lines, numbers, the machine, results.

Results go to ``bench/results/<kind>-<timestamp>.json`` and ``<kind>-latest.json``
(``bench/results/`` is not in git), or to ``--output``; each file says on which
machine, at which commit and with which command line it was measured, and the load
average before and after (the machine is shared: compare figures from the same run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.servers import REPO_ROOT, RESULTS_DIR


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _git(*args: str) -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    return ""


def machine_info(redis_url: str | None = None) -> dict[str, Any]:
    """CPU, kernel, commit (and uncommitted changes to django_durable), versions."""
    versions = {"python": platform.python_version()}
    for module in ("django", "channels", "channels_redis", "daphne", "websockets"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    for name, module in (("redis-py", "redis"), ("twisted", "twisted"), ("autobahn", "autobahn")):
        with contextlib.suppress(Exception):
            versions[name] = __import__(module).__version__
    with contextlib.suppress(Exception):
        import msgpack

        versions["msgpack"] = ".".join(map(str, msgpack.version))
    if redis_url:
        from harness.redis_tools import server_version

        versions["redis-server"] = server_version(redis_url) or "?"
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "django_durable_uncommitted_changes": _git(
            "status", "--short", "django_durable"
        ).splitlines(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "versions": versions,
    }


def run_header(args: argparse.Namespace, redis_url: str | None = None) -> dict[str, Any]:
    """The opening of a results file: when, the command, its options, the machine."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": " ".join(["python", *sys.argv]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(redis_url),
        "loadavg_before": os.getloadavg(),
    }


def write_results(results: dict[str, Any], kind: str, output: Path | None = None) -> Path:
    """``output``, or ``bench/results/<kind>-<timestamp>.json`` and ``<kind>-latest.json``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    path = output or RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(text)
    if output is None:
        (RESULTS_DIR / f"{kind}-latest.json").write_text(text)
    return path
