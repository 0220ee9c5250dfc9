"""Reading a process from ``/proc``, and the statistics the benchmarks report.

The servers under test are other processes, so memory and CPU are read from
``/proc/<pid>/`` (VmRSS, utime + stime): that does not disturb them and CPU time is
less sensitive than wall time to the other work on a shared machine.
"""

from __future__ import annotations

import os
import resource
import statistics

CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile(target: int = 65536) -> int:
    """Raise RLIMIT_NOFILE towards ``target`` (the hard limit too where allowed).

    Thousands of sockets need thousands of descriptors; children inherit the limit
    (and the servers call it again in ``preexec_fn``). Returns the new soft limit.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((target, max(target, hard)), (min(target, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_ms(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, in ms (resolution 1 / CLK_TCK)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """:func:`proc_cpu_ms` in seconds."""
    return proc_cpu_ms(pid) / 1000


def proc_nofile(pid: int) -> int:
    """The soft open-file limit of ``pid`` (-1 if unknown)."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return -1


def quantile(values: list[float], q: float) -> float:
    """Inclusive quantile (``q`` in 0..1) by linear interpolation between ranks.

    The same as ``statistics.quantiles(values, method="inclusive")`` at that point.
    """
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def p90(values: list[float]) -> float:
    return quantile(values, 0.9)


def nearest_rank(samples: list[int] | list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100): always one of the samples."""
    ordered = sorted(samples)
    rank = max(1, round(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: list[float]) -> dict[str, float] | None:
    """min / median / max / n of ``values`` (None when there are none)."""
    if not values:
        return None
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }
