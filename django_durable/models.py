"""The tables behind durable objects' storage, fencing and alarms.

Rows are keyed by an *object key* (one string per durable object, formed by the
dispatcher from the consumer class and the object id), never by a foreign key: an
object has no row of its own until it writes something.
"""

from __future__ import annotations

from django.db import models

OBJECT_KEY_MAX_LENGTH = 600


class StorageEntry(models.Model):
    """One key of one object's key-value storage.

    The key is stored as its UTF-8 bytes, not as text: bytes compare byte by byte on
    both SQLite (BLOB) and PostgreSQL (bytea), and UTF-8 byte order is code point
    order, which is Python's ``str`` order. A text column would sort by the database
    collation on PostgreSQL (case- and accent-aware) and could not hold ``"\\x00"``.
    """

    # Explicit, so the migration does not depend on the project's DEFAULT_AUTO_FIELD.
    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (object_key, key) index serves lookups by object.
    object_key = models.CharField(max_length=OBJECT_KEY_MAX_LENGTH)
    key = models.BinaryField(max_length=2048)
    value = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["object_key", "key"], name="django_durable_storage_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.object_key}: {bytes(self.key).decode('utf-8', 'replace')}"


class ObjectFence(models.Model):
    """The highest ownership token that has claimed an object.

    A write from a process whose token is lower than this one comes from an owner
    whose lease expired: it is refused, so a paused old owner cannot overwrite what
    the new owner wrote (fencing).
    """

    object_key = models.CharField(max_length=OBJECT_KEY_MAX_LENGTH, primary_key=True)
    token = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.object_key} @ {self.token}"


class Alarm(models.Model):
    """The one pending alarm of an object, shared by every process.

    ``version`` grows on every ``set_alarm()``: the dispatcher finishes or retries an
    alarm only if the version it claimed is still there, so an alarm set again by its
    own handler is kept. ``claimed_until`` is a lease: a process that dies while
    running the handler leaves a row that another process claims once it expires.
    """

    id = models.BigAutoField(primary_key=True)
    object_key = models.CharField(max_length=OBJECT_KEY_MAX_LENGTH, unique=True)
    consumer = models.CharField(max_length=255, blank=True)
    object_id = models.TextField(blank=True)
    scheduled_at = models.DateTimeField(db_index=True)
    retry_count = models.PositiveIntegerField(default=0)
    version = models.BigIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.object_key} at {self.scheduled_at.isoformat()}"
