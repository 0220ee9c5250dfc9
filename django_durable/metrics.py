"""Process-wide counters: the one place every part of the package counts what it did.

Counting must cost next to nothing on the hot paths (a dict update), must never fail,
and must not need ``prometheus_client``: the exporter (if installed) reads these values
when it is scraped, rather than every call site talking to Prometheus directly.

Names are fixed here so that a typo is an error at import rather than a metric nobody
sees. ``inc(name)`` adds to a counter; ``observe(name, seconds)`` adds a duration to a
histogram; ``snapshot()`` and ``histograms()`` return every value. The Prometheus
exporter is :mod:`django_durable.prometheus`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from itertools import accumulate

#: Counter name -> help text (the Prometheus metric is ``durable_<name>_total``).
COUNTERS: dict[str, str] = {
    "events_handled": "Events delivered to a handler.",
    "wakes": "Objects created or re-created from their persisted state.",
    "hibernations": "Objects dropped from memory while their sockets stay connected.",
    "forwarded_events": "Events forwarded to the process that owns their object.",
    "remote_send_retries": "Sends to another process's full channel that waited and retried.",
    "remote_send_failures": "Failed sends to sockets of another process (raised to the handler).",
    "overload_closes": "Sockets closed with 1013 because their object was overloaded.",
    "oversize_closes": "Sockets closed with 1009 for a message over MAX_MESSAGE_BYTES.",
    "overload_refusals": "Stub calls or alarms refused because their object was overloaded.",
    "shutdown_closes": "Sockets closed with 1012 at a graceful shutdown.",
    "lease_takeovers": "Objects whose lease this process took from another (or expired) owner.",
    "lease_losses": "Objects whose lease this process lost while it had them live.",
    "kept_session_wakes": "Wakes of a large object on the session it hibernated with (Redis).",
    "corrupt_records": "Stored records set aside because they could not be decoded.",
    "group_messages_refused": "Tag-group messages refused for not naming their group.",
    "resume_replays": "Reconnected sockets that got the broadcasts they missed replayed.",
    "resume_resyncs": "Reconnected sockets told to resync: what they missed was gone.",
}

#: Histogram name -> help text (the Prometheus metric is ``durable_<name>``).
HISTOGRAMS: dict[str, str] = {
    "handler_seconds": "Time a handler ran (on_start excluded), in seconds.",
}
#: Upper bounds (seconds) of the histograms' buckets; +Inf is implied.
BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_counts: Counter[str] = Counter()
#: name -> [count per bucket (non-cumulative, the last one +Inf), sum]
_histograms: dict[str, tuple[list[int], list[float]]] = {
    name: ([0] * (len(BUCKETS) + 1), [0.0]) for name in HISTOGRAMS
}


def inc(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (one of :data:`COUNTERS`)."""
    if name not in COUNTERS:
        raise KeyError(f"unknown django_durable counter {name!r}")
    _counts[name] += amount


def value(name: str) -> int:
    """The current value of the counter ``name``."""
    return _counts[name]


def snapshot() -> dict[str, int]:
    """Every counter's current value (zero for those never incremented)."""
    return {name: _counts[name] for name in COUNTERS}


def observe(name: str, seconds: float) -> None:
    """Add one observation of ``seconds`` to the histogram ``name`` (of :data:`HISTOGRAMS`)."""
    buckets, total = _histograms[name]
    buckets[bisect_left(BUCKETS, seconds)] += 1
    total[0] += seconds


def histograms() -> dict[str, tuple[list[int], float]]:
    """Each histogram's cumulative bucket counts (one per :data:`BUCKETS`, then +Inf)
    and the sum of its observations."""
    result = {}
    for name, (buckets, total) in _histograms.items():
        result[name] = (list(accumulate(buckets)), total[0])
    return result
