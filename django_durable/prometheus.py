"""The Prometheus exporter: :mod:`django_durable.metrics` as Prometheus metrics.

A *custom collector* registered in ``prometheus_client``'s default ``REGISTRY`` when the
app is ready (if ``prometheus_client`` is installed: the ``metrics`` extra). So whatever
already serves that registry shows these metrics too: django-prometheus's ``/metrics``,
``prometheus_client.start_http_server``, or :func:`django_durable.views.metrics_view`.

It reads the counters and the histogram at scrape time, and computes the gauges then
from this process's runtimes: nothing on the hot paths talks to Prometheus. Every value
is this process's (Prometheus adds the processes up: ``sum(...)``).

Metrics (see docs/deployment.md, "Metrics", for the panels):

- ``durable_<counter>_total`` for each of :data:`django_durable.metrics.COUNTERS`;
- ``durable_handler_seconds`` (histogram);
- ``durable_live_objects``: objects with an instance in memory in this process;
- ``durable_hibernated_objects``: objects with sockets in this process and no instance
  here (with Redis: objects whose connections this process holds and that are not live
  here, which includes objects live in another process);
- ``durable_sockets``: WebSocket connections this process holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import metrics

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

GAUGES: dict[str, str] = {
    "live_objects": "Objects with an instance in memory in this process.",
    "hibernated_objects": "Objects with sockets in this process and no instance here.",
    "sockets": "WebSocket connections this process holds.",
}

_registered: set[int] = set()


def gauges() -> dict[str, int]:
    """The gauges' current values, over every runtime (event loop) of this process."""
    from .runtime import all_runtimes
    from .session.memory import InMemorySessionLayer

    live = hibernated = sockets = 0
    for runtime in all_runtimes():
        # list(): a scrape may run in another thread than the event loop (a sync view).
        live_objects = list(runtime.dispatcher.live.items())
        awake = {key for key, obj in live_objects if obj.instance is not None}
        held = list(runtime.sockets.values())
        live += len(awake)
        sockets += len(held)
        layer = runtime.layer
        if isinstance(layer, InMemorySessionLayer):
            with_sockets = {key for key, s in list(layer.sessions.items()) if s.sockets}
        else:
            with_sockets = {getattr(sock, "key", "") for sock in held} - {""}
        hibernated += len(with_sockets - awake)
    return {"live_objects": live, "hibernated_objects": hibernated, "sockets": sockets}


class DurableCollector:
    """``prometheus_client`` collector of django-durable's metrics."""

    def collect(self) -> Iterator[Any]:
        """The counters, the histogram and the gauges, read now."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        for name, value in metrics.snapshot().items():
            yield CounterMetricFamily(f"durable_{name}", metrics.COUNTERS[name], value=value)
        for name, (cumulative, total) in metrics.histograms().items():
            bounds = [repr(float(b)) for b in metrics.BUCKETS] + ["+Inf"]
            yield HistogramMetricFamily(
                f"durable_{name}",
                metrics.HISTOGRAMS[name],
                buckets=list(zip(bounds, cumulative, strict=True)),
                sum_value=total,
            )
        for name, value in gauges().items():
            yield GaugeMetricFamily(f"durable_{name}", GAUGES[name], value=value)


def register(registry: CollectorRegistry | None = None) -> bool:
    """Register the collector (once) in ``registry``, by default ``prometheus_client``'s
    ``REGISTRY``; False when ``prometheus_client`` is not installed."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return False
    target = REGISTRY if registry is None else registry
    if id(target) not in _registered:
        target.register(DurableCollector())
        _registered.add(id(target))
    return True


__all__ = ["GAUGES", "DurableCollector", "gauges", "register"]
