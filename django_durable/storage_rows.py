"""The database side of storage: synchronous, one short transaction per call.

Run in the package's database thread (:mod:`django_durable.dbthread`), never on the
event loop. Every write of a fenced owner first locks the object's
:class:`~django_durable.models.ObjectFence` row and compares tokens in the same
transaction.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from django.db import connections
from django.db import transaction as db_transaction

from . import alarms
from .exceptions import OwnershipLost
from .models import ObjectFence, StorageEntry
from .storage_values import CHUNK, KeyRange

# Database side (synchronous, one short transaction each) ------------------------------


def entries_of(alias: str, object_key: str) -> Any:
    """The object's rows."""
    return StorageEntry.objects.using(alias).filter(object_key=object_key)


def fresh_connection(alias: str) -> None:
    # What Django does between requests (and Channels around each database call):
    # drop a connection that broke or outlived CONN_MAX_AGE before using it again.
    """Drop a connection the database closed, before a call."""
    connections[alias].close_if_unusable_or_obsolete()


def read_rows(alias: str, object_key: str, raws: Iterable[bytes]) -> dict[bytes, bytes]:
    """The rows of ``raws`` that exist."""
    fresh_connection(alias)
    raws = builtins.list(raws)
    found: dict[bytes, bytes] = {}
    for i in range(0, len(raws), CHUNK):
        rows = entries_of(alias, object_key).filter(key__in=raws[i : i + CHUNK])
        found.update((bytes(k), bytes(v)) for k, v in rows.values_list("key", "value"))
    return found


def scan_rows(
    alias: str, object_key: str, span: KeyRange, reverse: bool, limit: int | None
) -> builtins.list[tuple[bytes, bytes]]:
    """The rows in a key range, in key order."""
    fresh_connection(alias)
    rows = entries_of(alias, object_key)
    if span.lower is not None:
        rows = rows.filter(key__gte=span.lower)
    if span.upper is not None:
        rows = rows.filter(key__lt=span.upper)
    rows = rows.order_by("-key" if reverse else "key").values_list("key", "value")
    if limit is not None:
        rows = rows[:limit]
    return [(bytes(k), bytes(v)) for k, v in rows]


def check_fence(alias: str, object_key: str, token: int | None, *, claim: bool = False) -> None:
    """Refuse (``OwnershipLost``) unless ``token`` is the newest claim on the object.

    Runs inside the caller's transaction and locks the fence row until it ends, so a
    new owner's claim waits for an old owner's write in flight, and every later write
    of the old owner sees the new token. A missing row is created, not skipped: that
    insert is what makes a concurrent claim wait on (or conflict with) this write.
    """
    if token is None:
        return
    fence, _ = (
        ObjectFence.objects.using(alias)
        .select_for_update()
        .get_or_create(object_key=object_key, defaults={"token": token})
    )
    if fence.token > token:
        raise OwnershipLost(
            f"object {object_key!r} now belongs to a newer owner (fence token "
            f"{fence.token}); this owner's token {token} may no longer write to it"
        )
    if claim and fence.token < token:
        ObjectFence.objects.using(alias).filter(object_key=object_key).update(token=token)


def write_rows(
    alias: str,
    object_key: str,
    token: int | None,
    puts: Mapping[bytes, bytes],
    deletes: Collection[bytes],
) -> int:
    """Apply deletes and upserts in one transaction; how many of ``deletes`` existed."""
    fresh_connection(alias)
    deletes = builtins.list(deletes)
    deleted = 0
    with db_transaction.atomic(using=alias):
        check_fence(alias, object_key, token)
        for i in range(0, len(deletes), CHUNK):
            chunk = deletes[i : i + CHUNK]
            deleted += entries_of(alias, object_key).filter(key__in=chunk).delete()[0]
        if puts:
            StorageEntry.objects.using(alias).bulk_create(
                [StorageEntry(object_key=object_key, key=k, value=v) for k, v in puts.items()],
                batch_size=CHUNK,
                update_conflicts=True,
                unique_fields=["object_key", "key"],
                update_fields=["value"],
            )
    return deleted


def fenced(alias: str, object_key: str, token: int | None, action: Callable[[], Any]) -> Any:
    """Run ``action`` in a transaction after checking the fence."""
    fresh_connection(alias)
    with db_transaction.atomic(using=alias):
        check_fence(alias, object_key, token)
        return action()


def claim_fence_row(alias: str, object_key: str, token: int) -> None:
    """Record this owner's token as the object's newest."""
    fresh_connection(alias)
    with db_transaction.atomic(using=alias):
        check_fence(alias, object_key, token, claim=True)


def delete_rows(alias: str, object_key: str) -> None:
    """Every row of the object."""
    entries_of(alias, object_key).delete()
    alarms.unschedule(object_key, using=alias)
