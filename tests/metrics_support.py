"""Reading metrics the way Prometheus does: for the metrics tests and the overload tests.

- ``parse(text)``: the Prometheus text format as ``{sample name with labels: value}``.
- ``scrape(server)``: a running server's metrics view (``METRICS_PATH``), parsed.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.daphne_server import DaphneServer

METRICS_PATH = "/durable/metrics/"


def parse(text: str) -> dict[str, float]:
    """Sample name (with labels, if any, as ``name{le="0.1"}``) -> value."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def scrape(server: DaphneServer) -> dict[str, float]:
    with urllib.request.urlopen(server.http_url(METRICS_PATH), timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode())
