"""Alarm rows: the database side of ``set_alarm()`` and of the dispatcher's alarm loop.

Every function here is synchronous and runs its own database transaction (or joins
the caller's); async callers wrap them with ``sync_to_async``. The rows are shared by
every process, so claiming is a lease: a claimed row is invisible to other claimers
until ``claimed_until`` passes, which is how an alarm whose process died still fires.

Versions make finishing safe: ``finish()`` and ``retry()`` act only on the version that
was claimed, so an alarm that its own handler set again (a new version) is kept.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Min, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from . import conf
from .models import Alarm

__all__ = [
    "ClaimedAlarm",
    "claim_due",
    "finish",
    "next_due",
    "retry",
    "schedule",
    "scheduled_for",
    "unschedule",
]


@dataclass(frozen=True)
class ClaimedAlarm:
    """What the dispatcher needs to run one claimed alarm and then finish or retry it."""

    object_key: str
    consumer: str
    object_id: str
    retry_count: int
    version: int
    scheduled_at: datetime.datetime


def _alias(using: str | None) -> str:
    return using or conf.get("DATABASE")


def to_db(when: datetime.datetime) -> datetime.datetime:
    """An aware datetime in the form the ORM accepts under the project's ``USE_TZ``."""
    return when if settings.USE_TZ else timezone.make_naive(when)


def from_db(when: datetime.datetime) -> datetime.datetime:
    """A datetime read from the ORM, as an aware UTC datetime whatever ``USE_TZ`` is."""
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    return when.astimezone(datetime.UTC)


def _unclaimed(now: datetime.datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=to_db(now))


def _new_version() -> int:
    # A row created after delete_alarm() must not reuse the version a running handler
    # claimed from the deleted row, so a new row starts at a random version rather
    # than 1; later sets increment it.
    return secrets.randbelow(2**62) + 1


def schedule(
    object_key: str,
    when: datetime.datetime,
    *,
    consumer: str = "",
    object_id: str = "",
    using: str | None = None,
) -> None:
    """Set the object's one alarm to ``when`` (aware), replacing any other.

    The version is bumped, the retry count reset and any claim dropped, so the
    dispatcher's pending ``finish()`` of the previous version leaves this alarm alone.
    """
    alias = _alias(using)
    fields = {
        "scheduled_at": to_db(when),
        "retry_count": 0,
        "claimed_until": None,
        "consumer": consumer,
        "object_id": object_id,
    }
    rows = Alarm.objects.using(alias).filter(object_key=object_key)
    with transaction.atomic(using=alias):
        if rows.update(version=F("version") + 1, **fields):
            return
        try:
            with transaction.atomic(using=alias):  # a savepoint: a racing insert may win
                Alarm.objects.using(alias).create(
                    object_key=object_key, version=_new_version(), **fields
                )
        except IntegrityError:
            rows.update(version=F("version") + 1, **fields)


def scheduled_for(
    object_key: str, *, now: datetime.datetime | None = None, using: str | None = None
) -> datetime.datetime | None:
    """When the object's alarm is set for, or ``None``.

    As in Cloudflare's ``getAlarm()``, an alarm whose handler is running (claimed and
    not yet finished or rescheduled for a retry) counts as not set.
    """
    now = now or timezone.now()
    row = (
        Alarm.objects.using(_alias(using))
        .filter(object_key=object_key)
        .filter(_unclaimed(now))
        .values_list("scheduled_at", flat=True)
        .first()
    )
    return None if row is None else from_db(row)


def unschedule(object_key: str, *, using: str | None = None) -> bool:
    """Delete the object's alarm; whether there was one."""
    deleted, _ = Alarm.objects.using(_alias(using)).filter(object_key=object_key).delete()
    return deleted > 0


def claim_due(
    now: datetime.datetime,
    lease_seconds: float,
    limit: int,
    using: str | None = None,
    object_keys: Collection[str] | None = None,
) -> list[ClaimedAlarm]:
    """Claim up to ``limit`` alarms due at ``now``, oldest first, for ``lease_seconds``.

    On PostgreSQL the rows are read ``FOR UPDATE SKIP LOCKED``, so concurrent claimers
    take disjoint rows without waiting for each other. Each row is then claimed with a
    compare-and-set on its version and claim, so even a backend without row locks
    (SQLite) never hands one alarm version to two claimers.
    """
    alias = _alias(using)
    until = to_db(now + datetime.timedelta(seconds=lease_seconds))
    due = (
        Alarm.objects.using(alias)
        .filter(scheduled_at__lte=to_db(now))
        .filter(_unclaimed(now))
        .order_by("scheduled_at", "id")
    )
    if object_keys is not None:
        due = due.filter(object_key__in=list(object_keys))
    # Most polls find nothing: one indexed query, without a transaction's round trips
    # (half of an idle process's CPU was this poll).
    if not due.exists():
        return []
    if connections[alias].features.has_select_for_update_skip_locked:
        due = due.select_for_update(skip_locked=True)
    claimed: list[ClaimedAlarm] = []
    with transaction.atomic(using=alias):
        for row in due[:limit]:
            won = (
                Alarm.objects.using(alias)
                .filter(pk=row.pk, version=row.version)
                .filter(_unclaimed(now))
                .update(claimed_until=until)
            )
            if won:
                claimed.append(
                    ClaimedAlarm(
                        object_key=row.object_key,
                        consumer=row.consumer,
                        object_id=row.object_id,
                        retry_count=row.retry_count,
                        version=row.version,
                        scheduled_at=from_db(row.scheduled_at),
                    )
                )
    return claimed


def finish(object_key: str, version: int, using: str | None = None) -> bool:
    """Delete a fired alarm, unless it was set again since it was claimed; whether it was."""
    rows = Alarm.objects.using(_alias(using)).filter(object_key=object_key, version=version)
    deleted, _ = rows.delete()
    return deleted > 0


def retry(
    object_key: str,
    version: int,
    delay_seconds: float,
    using: str | None = None,
    *,
    now: datetime.datetime | None = None,
    count: bool = True,
) -> bool:
    """Reschedule a failed alarm ``delay_seconds`` from now with one more retry counted
    (``count=False``: not counted, for an alarm refused because its object was overloaded).

    Does nothing (and returns ``False``) if the alarm was set again or deleted since it
    was claimed: the handler's own decision wins over the retry.
    """
    now = now or timezone.now()
    updated = (
        Alarm.objects.using(_alias(using))
        .filter(object_key=object_key, version=version)
        .update(
            scheduled_at=to_db(now + datetime.timedelta(seconds=delay_seconds)),
            retry_count=F("retry_count") + (1 if count else 0),
            claimed_until=None,
        )
    )
    return updated > 0


def next_due(using: str | None = None) -> datetime.datetime | None:
    """The earliest time at which :func:`claim_due` can return something, or ``None``.

    A claimed row counts from when its claim expires, so a poller does not spin on an
    alarm another process is running.
    """
    earliest = Alarm.objects.using(_alias(using)).aggregate(
        earliest=Min(Greatest("scheduled_at", Coalesce("claimed_until", "scheduled_at")))
    )["earliest"]
    return None if earliest is None else from_db(earliest)
