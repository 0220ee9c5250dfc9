"""Process-wide counters: the one place every part of the package counts what it did.

Counting must cost next to nothing on the hot paths (a dict update), must never fail,
and must not need ``prometheus_client``: the exporter (if installed) reads these values
when it is scraped, rather than every call site talking to Prometheus directly.

Names are fixed here so that a typo is an error at import rather than a metric nobody
sees. ``inc(name)`` adds to a counter; ``snapshot()`` returns every value.
"""

from __future__ import annotations

from collections import Counter

#: Counter name -> help text (the Prometheus metric is ``durable_<name>_total``).
COUNTERS: dict[str, str] = {
    "events_handled": "Events delivered to a handler.",
    "wakes": "Objects created or re-created from their persisted state.",
    "hibernations": "Objects dropped from memory while their sockets stay connected.",
    "forwarded_events": "Events forwarded to the process that owns their object.",
    "overload_closes": "Sockets closed with 1013 because their object was overloaded.",
    "oversize_closes": "Sockets closed with 1009 for a message over MAX_MESSAGE_BYTES.",
    "overload_refusals": "Stub calls or alarms refused because their object was overloaded.",
    "shutdown_closes": "Sockets closed with 1012 at a graceful shutdown.",
    "lease_takeovers": "Objects whose lease this process took from another (or expired) owner.",
    "lease_losses": "Objects whose lease this process lost while it had them live.",
    "corrupt_records": "Stored records set aside because they could not be decoded.",
    "group_messages_refused": "Tag-group messages refused for not naming their group.",
}

_counts: Counter[str] = Counter()


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
