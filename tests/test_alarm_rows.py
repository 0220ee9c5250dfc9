"""Alarm rows as the dispatcher drives them: claim, finish, retry, versions, leases."""

from __future__ import annotations

import datetime
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections, transaction

from django_durable import alarms
from django_durable.models import Alarm
from tests.databases import DATABASES, TRANSACTIONAL
from tests.services import need

pytestmark = TRANSACTIONAL

T0 = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.fixture(params=DATABASES)
def alias(request) -> str:
    if request.param == "postgres":
        need("postgres")
    return request.param


def schedule(alias: str, key: str, when: datetime.datetime) -> None:
    alarms.schedule(key, when, consumer="tests.app.Room", object_id=key, using=alias)


def row(alias: str, key: str) -> Alarm:
    return Alarm.objects.using(alias).get(object_key=key)


def test_schedule_creates_then_replaces_one_row_per_object(alias):
    schedule(alias, "a", at(10))
    first = row(alias, "a")
    assert first.version > 0
    assert (first.consumer, first.object_id, first.retry_count) == ("tests.app.Room", "a", 0)
    schedule(alias, "a", at(20))
    second = row(alias, "a")
    assert second.version == first.version + 1
    assert alarms.scheduled_for("a", now=T0, using=alias) == at(20)
    assert Alarm.objects.using(alias).count() == 1


def test_claim_due_takes_only_due_rows_oldest_first_up_to_the_limit(alias):
    for key, when in [("late", 30), ("first", -20), ("second", -10), ("now", 0)]:
        schedule(alias, key, at(when))
    claimed = alarms.claim_due(T0, 60, 2, using=alias)
    assert [c.object_key for c in claimed] == ["first", "second"]
    snapshot = claimed[0]
    assert snapshot.consumer == "tests.app.Room"
    assert snapshot.object_id == "first"
    assert snapshot.retry_count == 0
    assert snapshot.version == row(alias, "first").version
    assert snapshot.scheduled_at == at(-20)
    assert row(alias, "first").claimed_until == at(60)
    assert [c.object_key for c in alarms.claim_due(T0, 60, 10, using=alias)] == ["now"]
    assert alarms.claim_due(T0, 60, 10, using=alias) == []


def test_a_claim_is_a_lease_that_expires(alias):
    schedule(alias, "a", at(0))
    assert len(alarms.claim_due(T0, 30, 10, using=alias)) == 1
    assert alarms.claim_due(at(29), 30, 10, using=alias) == []
    assert alarms.claim_due(at(30), 30, 10, using=alias) == []  # expires strictly after
    again = alarms.claim_due(at(31), 30, 10, using=alias)
    assert [c.object_key for c in again] == ["a"]
    assert row(alias, "a").claimed_until == at(61)


def test_a_running_alarm_reads_as_not_set(alias):
    schedule(alias, "a", at(0))
    assert alarms.scheduled_for("a", now=T0, using=alias) == at(0)
    alarms.claim_due(T0, 30, 10, using=alias)
    assert alarms.scheduled_for("a", now=at(1), using=alias) is None


def test_finish_deletes_the_claimed_version(alias):
    schedule(alias, "a", at(0))
    (claim,) = alarms.claim_due(T0, 30, 10, using=alias)
    assert alarms.finish("a", claim.version, using=alias) is True
    assert not Alarm.objects.using(alias).exists()
    assert alarms.finish("a", claim.version, using=alias) is False


def test_an_alarm_set_again_by_its_handler_survives_finish(alias):
    schedule(alias, "a", at(0))
    (claim,) = alarms.claim_due(T0, 30, 10, using=alias)
    schedule(alias, "a", at(100))  # the handler sets the next alarm
    assert alarms.finish("a", claim.version, using=alias) is False
    kept = row(alias, "a")
    assert kept.scheduled_at == at(100)
    assert kept.claimed_until is None
    assert alarms.scheduled_for("a", now=at(1), using=alias) == at(100)


def test_a_version_is_not_reused_after_delete_and_set(alias):
    schedule(alias, "a", at(0))
    (claim,) = alarms.claim_due(T0, 30, 10, using=alias)
    assert alarms.unschedule("a", using=alias) is True
    assert alarms.unschedule("a", using=alias) is False
    schedule(alias, "a", at(100))  # delete_alarm() then set_alarm() in the handler
    assert row(alias, "a").version != claim.version
    assert alarms.finish("a", claim.version, using=alias) is False
    assert alarms.retry("a", claim.version, 2, using=alias, now=T0) is False
    assert row(alias, "a").scheduled_at == at(100)


def test_retry_reschedules_counts_and_releases_the_claim(alias):
    schedule(alias, "a", at(0))
    (claim,) = alarms.claim_due(T0, 30, 10, using=alias)
    assert alarms.retry("a", claim.version, 2, using=alias, now=at(1)) is True
    retried = row(alias, "a")
    assert retried.scheduled_at == at(3)
    assert retried.retry_count == 1
    assert retried.claimed_until is None
    assert retried.version == claim.version
    assert alarms.scheduled_for("a", now=at(2), using=alias) == at(3)
    assert alarms.claim_due(at(2), 30, 10, using=alias) == []
    (second,) = alarms.claim_due(at(3), 30, 10, using=alias)
    assert second.retry_count == 1
    assert alarms.retry("a", second.version, 4, using=alias, now=at(4)) is True
    assert row(alias, "a").retry_count == 2


def test_retry_of_an_alarm_set_again_does_nothing(alias):
    schedule(alias, "a", at(0))
    (claim,) = alarms.claim_due(T0, 30, 10, using=alias)
    schedule(alias, "a", at(100))
    assert alarms.retry("a", claim.version, 2, using=alias, now=T0) is False
    kept = row(alias, "a")
    assert (kept.scheduled_at, kept.retry_count) == (at(100), 0)


def test_setting_again_resets_the_retry_count(alias):
    schedule(alias, "a", at(0))
    (claim,) = alarms.claim_due(T0, 30, 10, using=alias)
    alarms.retry("a", claim.version, 2, using=alias, now=T0)
    assert row(alias, "a").retry_count == 1
    schedule(alias, "a", at(50))
    assert row(alias, "a").retry_count == 0


def test_next_due_is_the_earliest_claimable_time(alias):
    assert alarms.next_due(using=alias) is None
    schedule(alias, "a", at(50))
    schedule(alias, "b", at(10))
    assert alarms.next_due(using=alias) == at(10)
    alarms.claim_due(at(10), 100, 10, using=alias)  # b runs until at(110)
    assert alarms.next_due(using=alias) == at(50)
    alarms.unschedule("a", using=alias)
    assert alarms.next_due(using=alias) == at(110)


def test_claim_does_not_touch_other_objects_rows(alias):
    schedule(alias, "a", at(0))
    schedule(alias, "b", at(100))
    alarms.claim_due(T0, 30, 10, using=alias)
    assert row(alias, "b").claimed_until is None


# Concurrent claimers (PostgreSQL) -----------------------------------------------------------


def in_thread(function):
    """Run ``function`` in a thread of its own (its own database connection), then close it."""

    def run():
        try:
            return function()
        finally:
            connections.close_all()

    return run


def test_a_claimer_skips_rows_another_claimer_holds_without_waiting():
    need("postgres")
    for i in range(6):
        schedule("postgres", f"o{i}", at(i - 10))
    locked = threading.Event()
    done = threading.Event()

    @in_thread
    def hold_three():
        with transaction.atomic(using="postgres"):
            held = Alarm.objects.using("postgres").select_for_update()
            list(held.filter(object_key__in=["o0", "o2", "o4"]))
            locked.set()
            done.wait()

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(hold_three)
        try:
            assert locked.wait(timeout=30)
            with connections["postgres"].cursor() as cursor:
                # A regression to plain FOR UPDATE would wait; make that an error instead.
                cursor.execute("SET lock_timeout = '5s'")
            claimed = alarms.claim_due(T0, 30, 10, using="postgres")
        finally:
            done.set()
            holder.result()
    assert [c.object_key for c in claimed] == ["o1", "o3", "o5"]


def test_concurrent_claimers_get_disjoint_rows():
    need("postgres")
    keys = [f"o{i:03}" for i in range(120)]
    for i, key in enumerate(keys):
        schedule("postgres", key, at(-i))
    claimers = 6
    start = threading.Barrier(claimers)

    @in_thread
    def claim_until_empty():
        start.wait(timeout=30)
        mine = []
        while batch := alarms.claim_due(T0, 60, 7, using="postgres"):
            mine.extend(c.object_key for c in batch)
        return mine

    with ThreadPoolExecutor(claimers) as pool:
        results = [f.result() for f in [pool.submit(claim_until_empty) for _ in range(claimers)]]
    everything = [key for result in results for key in result]
    assert sorted(everything) == keys  # each row claimed exactly once
