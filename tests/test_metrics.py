"""Metrics (SPEC §13): counters, gauges and the handler-time histogram in the
Prometheus form, through ``prometheus_client`` when it is installed.

- unit: the collector over a registry of the test's own, and what happens without
  ``prometheus_client`` (nothing breaks; the view says how to install it);
- end to end: real daphne servers after real traffic, scraped over HTTP through
  ``django_durable.views.metrics_view``; with Redis (``need("redis")``), two servers
  for forwarded events and a lease taken over from a killed owner.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

from django.test import AsyncRequestFactory
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.client import connect

from django_durable import metrics
from django_durable.prometheus import DurableCollector, register
from django_durable.views import metrics_view
from tests.daphne_server import recv_json
from tests.metrics_support import METRICS_PATH, parse, scrape
from tests.services import REDIS_URL, delete_redis_prefix, need
from tests.waiting import wait_until

TIMEOUT = 20.0


def test_every_counter_gauge_and_the_histogram_are_exported() -> None:
    registry = CollectorRegistry()
    register(registry)
    register(registry)  # once only: a second registration would raise
    before = parse(generate_latest(registry).decode())
    metrics.inc("overload_closes")
    metrics.observe("handler_seconds", 0.003)
    metrics.observe("handler_seconds", 0.1)  # a bucket's bound is in that bucket
    after = parse(generate_latest(registry).decode())
    for name in metrics.COUNTERS:
        assert f"durable_{name}_total" in after
    for name in ("live_objects", "hibernated_objects", "sockets"):
        assert f"durable_{name}" in after
    assert after["durable_overload_closes_total"] == before["durable_overload_closes_total"] + 1
    count = "durable_handler_seconds_count"
    assert after[count] == before[count] + 2
    bucket = 'durable_handler_seconds_bucket{le="%s"}'
    assert after[bucket % "0.0025"] == before[bucket % "0.0025"]
    assert after[bucket % "0.005"] == before[bucket % "0.005"] + 1
    assert after[bucket % "0.1"] == before[bucket % "0.1"] + 2
    assert after[bucket % "+Inf"] == after[count]
    assert after["durable_handler_seconds_sum"] >= before["durable_handler_seconds_sum"] + 0.103


def test_a_collector_reads_counters_at_scrape_time() -> None:
    names = [family.name for family in DurableCollector().collect()]
    assert "durable_events_handled" in names  # the family; samples end in _total
    assert "durable_handler_seconds" in names


async def test_without_prometheus_client_nothing_breaks(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    assert register() is False
    metrics.inc("wakes")  # counting never needs it
    response = await metrics_view(AsyncRequestFactory().get(METRICS_PATH))
    assert response.status_code == 501
    assert b'pip install "django-durable-objects[metrics]"' in response.content


async def test_metrics_view_serves_the_default_registry() -> None:
    response = await metrics_view(AsyncRequestFactory().get(METRICS_PATH))
    assert response.status_code == 200
    samples = parse(response.content.decode())
    assert "durable_events_handled_total" in samples
    assert any(name.startswith("python_gc_") for name in samples)  # the rest of REGISTRY


async def test_scraped_from_a_server_after_real_traffic(daphne_factory) -> None:
    server = daphne_factory(1, env={"DURABLE_TEST_IDLE_TIMEOUT": "0.5"})[0]
    before = await asyncio.to_thread(scrape, server)
    room = f"m-{uuid.uuid4().hex[:8]}"
    async with (
        connect(server.url(f"/ws/room/{room}/")) as a,
        connect(server.url(f"/ws/room/{room}/")) as b,
    ):
        for i in range(3):
            await a.send(json.dumps({"op": "seq", "n": i}))
            assert (await recv_json(a))["seq"] == i
        await b.send(json.dumps({"op": "whoami"}))
        await recv_json(b)
        during = await asyncio.to_thread(scrape, server)
        # two connects and four messages, each one handler call
        handled = during["durable_events_handled_total"] - before["durable_events_handled_total"]
        assert handled == 6
        assert (
            during["durable_handler_seconds_count"] - before["durable_handler_seconds_count"] == 6
        )
        assert during["durable_sockets"] == 2
        assert during["durable_live_objects"] == 1
        assert during["durable_wakes_total"] - before["durable_wakes_total"] == 1

        async def hibernated() -> bool:
            now = await asyncio.to_thread(scrape, server)
            return now["durable_hibernated_objects"] == 1 and now["durable_live_objects"] == 0

        await wait_until(hibernated, message="the room hibernated", timeout=TIMEOUT, interval=0.1)
        after = await asyncio.to_thread(scrape, server)
        assert after["durable_hibernations_total"] - before["durable_hibernations_total"] == 1
        assert after["durable_sockets"] == 2

        await a.send(json.dumps({"op": "whoami"}))  # wakes it again
        await recv_json(a)
        woken = await asyncio.to_thread(scrape, server)
        assert woken["durable_wakes_total"] - before["durable_wakes_total"] == 2
        assert woken["durable_live_objects"] == 1


async def test_forwarded_events_and_a_lease_takeover_over_redis(daphne_factory) -> None:
    need("redis")
    prefix = f"metrics-{uuid.uuid4().hex[:10]}"
    env = {
        "DURABLE_TEST_SESSION_LAYER": "redis",
        "DURABLE_TEST_REDIS_URL": REDIS_URL,
        "DURABLE_TEST_REDIS_PREFIX": prefix,
        "DURABLE_TEST_LEASE_TIME": "2",
    }
    owner, other = daphne_factory(2, env=env)
    room = f"m-{uuid.uuid4().hex[:8]}"
    try:
        async with connect(owner.url(f"/ws/room/{room}/")) as a:
            await a.send(json.dumps({"op": "whoami"}))
            await recv_json(a)  # the owner process took the object
            base = await asyncio.to_thread(scrape, other)
            async with connect(other.url(f"/ws/room/{room}/")) as b:
                for i in range(3):
                    await b.send(json.dumps({"op": "seq", "n": i}))
                    assert (await recv_json(b))["seq"] == i
                seen = await asyncio.to_thread(scrape, other)
                forwarded = (
                    seen["durable_forwarded_events_total"] - base["durable_forwarded_events_total"]
                )
                assert forwarded == 4  # the connect and three messages
                assert seen["durable_events_handled_total"] == base["durable_events_handled_total"]

                owner.kill()  # its lease runs out; b's next message makes `other` take over
                await b.send(json.dumps({"op": "whoami"}))
                await recv_json(b, timeout=TIMEOUT)
                taken = await asyncio.to_thread(scrape, other)
                assert (
                    taken["durable_lease_takeovers_total"] - base["durable_lease_takeovers_total"]
                    == 1
                )
                assert taken["durable_live_objects"] == 1
                assert taken["durable_events_handled_total"] > base["durable_events_handled_total"]
    finally:
        await delete_redis_prefix(prefix)
