"""``py-spy`` attached to servers while a workload runs (``--py-spy DIR``).

:class:`Profiler` starts ``py-spy record --format raw --rate 250 --nonblocking`` on each
server, and on ``stop()`` reads the raw stacks back (they stay in ``DIR``, one file per
workload and server, ready for a flame graph): self time by package (a system call for
the leaves that are one) and inclusive time of the application-side functions.
``py-spy`` is not a dependency of the project: ``pip install py-spy`` to use this.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.servers import REPO_ROOT, DaphneServer

CATEGORIES = (
    ("(django_durable/", "django_durable"),
    ("clusterapp/", "bench app"),
    ("(channels_redis/", "channels_redis"),
    ("(channels/", "channels"),
    ("(asgiref/", "asgiref"),
    ("(redis/", "redis-py"),
    ("(msgpack", "msgpack"),
    ("(autobahn/", "autobahn"),
    ("(twisted/", "twisted"),
    ("(txaio/", "twisted"),
    ("(daphne/", "daphne"),
    ("(asyncio/", "asyncio"),
    ("(concurrent/", "threads"),
    ("(threading.py", "threads"),
    ("(selectors.py", "selectors (epoll)"),
    ("(django/", "django"),
)
WATCHED = ("django_durable", "channels_redis", "channels", "asgiref", "bench app")


#: Leaf frames that are (mostly) a system call.
SYSCALLS = (
    ("_SelectorSocketTransport.write (asyncio/", "socket send (syscall)"),
    ("untilConcludes (twisted/", "socket send (syscall)"),
    ("_read_ready__data_received (asyncio/", "socket recv (syscall)"),
    ("Connection.doRead (twisted/", "socket recv (syscall)"),
    ("EpollSelector.select (selectors.py", "epoll_wait (syscall)"),
    ("_PollLikeSelector.modify (selectors.py", "epoll_ctl (syscall)"),
)


def _category(frame: str) -> str:
    for marker, name in CATEGORIES:
        if marker in frame:
            return name
    return "other"


def _self_category(frames: list[str]) -> str:
    """A system call for the leaves that are one; else the package of the innermost
    frame that has one (stdlib helpers such as namedtuple count for their caller)."""
    for marker, name in SYSCALLS:
        if marker in frames[-1]:
            return name
    for frame in reversed(frames):
        category = _category(frame)
        if category != "other":
            return "epoll_ctl (syscall)" if "(selectors.py" in frame else category
    return "other"


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Self time by package and inclusive time by function, from py-spy's raw output.

    Each line is ``frame;frame;...;frame count``, outermost first; a frame reads
    ``function (file:line)``.
    """
    total = 0
    by_package: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf = _self_category(frames)
        by_package[leaf] = by_package.get(leaf, 0) + count
        seen = set()
        for frame in frames:
            if _category(frame) not in WATCHED:
                continue
            name = frame.split(":", 1)[0].replace(str(REPO_ROOT) + "/", "")
            name = name.split("site-packages/", 1)[-1]
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + count
    return {
        "samples": total,
        "self_by_package_pct": {
            k: 100 * v / total for k, v in sorted(by_package.items(), key=lambda i: -i[1])
        }
        if total
        else {},
        "inclusive_pct": [
            [name, 100 * count / total]
            for name, count in sorted(inclusive.items(), key=lambda i: -i[1])[:top]
        ]
        if total
        else [],
    }


class Profiler:
    """``py-spy record`` attached to server processes while a workload runs."""

    def __init__(self, servers: list[DaphneServer], directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.name = name
        self.runs: list[tuple[DaphneServer, Path, subprocess.Popen[bytes]]] = []
        for server in servers:
            path = directory / f"{name}-{server.name}.txt"
            command = [exe, "record", "--pid", str(server.pid), "--format", "raw"]
            command += ["--output", str(path), "--rate", "250", "--nonblocking"]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.runs.append((server, path, proc))
        time.sleep(1.5)  # attached

    def stop(self) -> dict[str, Any]:
        for _, _, proc in self.runs:
            proc.send_signal(signal.SIGINT)
        result = {}
        for server, path, proc in self.runs:
            _, err = proc.communicate(timeout=60)
            if not path.exists():
                result[server.name] = {"error": err.decode(errors="replace")[-2000:]}
                continue
            result[server.name] = {"file": str(path), **summarize_profile(path)}
        return result


def profile_report(profiles: dict[str, Any]) -> str:
    lines = []
    for workload, servers in profiles.items():
        for server, p in servers.items():
            if "error" in p:
                lines.append(f"py-spy {workload} {server}: {p['error'].strip()[-300:]}")
                continue
            lines.append(f"py-spy {workload}, {server}: {p['samples']} samples")
            lines.append(
                "  self time by package: "
                + ", ".join(f"{k} {v:.0f}%" for k, v in p["self_by_package_pct"].items())
            )
            lines.append("  inclusive, application side:")
            for name, pct in p["inclusive_pct"][:15]:
                lines.append(f"    {pct:5.1f}%  {name}")
    return "\n".join(lines)
