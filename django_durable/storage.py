"""``state.storage``: a durable object's transactional key-value store (SPEC §8).

Entries live in the :class:`~django_durable.models.StorageEntry` table through the
Django ORM, values in the attachment encoding (:mod:`django_durable.encoding`), keys as
UTF-8 bytes so that every backend orders them exactly as Python orders ``str``.

Each call is one short database transaction run in the package's database thread
(:mod:`django_durable.dbthread`), so no database transaction ever stays open across an
``await``; a call that gets no answer within ``STORAGE_TIMEOUT`` raises
``StorageTimeout``. A :meth:`DurableStorage.transaction` therefore buffers its writes in memory
(reads see them) and applies them all in one database transaction when the block
exits; an exception or ``rollback()`` discards the buffer, so nothing was written.

Fencing: with a ``fence_token``, every write first locks the object's
:class:`~django_durable.models.ObjectFence` row and is refused with ``OwnershipLost``
if a newer owner (a higher token) has claimed the object since.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime
import math
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db import transaction as db_transaction

from . import alarms, conf
from .dbthread import run_db
from .encoding import decode, encode
from .exceptions import InvalidStorageKey, InvalidStorageValue, OwnershipLost, StorageTimeout
from .models import ObjectFence, StorageEntry

__all__ = ["KEY_MAX_BYTES", "VALUE_MAX_BYTES", "DurableStorage", "StorageTransaction"]

#: The storage functions that only read: a timed-out read changed nothing.
_READS = frozenset({"_read", "_scan"})


def _timeout_message(object_key: str, function: Callable[..., Any], limit: float) -> str:
    """Why a storage call failed, and what a timed-out write means for its data.

    The call is abandoned, not stopped: its query goes on in Django's database thread
    until the database answers or the connection fails, so a write may still commit,
    whole (it is one transaction), after this error was raised.
    """
    what = f"{object_key}: no answer from the database within {limit:g} s (STORAGE_TIMEOUT)"
    if function.__name__ in _READS:
        return f"{what}; nothing was written"
    return (
        f"{what}; the write may still be applied by the database, all of it or none of it: "
        "read it back before trying again"
    )


KEY_MAX_BYTES = 2_048
VALUE_MAX_BYTES = 131_072  # 128 KiB, measured on the encoding

# Keys per SQL statement: well under SQLite's bound-parameter limit.
_CHUNK = 500

_MISSING: Any = object()

Gate = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


# Validation ---------------------------------------------------------------------------


def _key_bytes(key: Any, what: str = "storage key") -> bytes:
    if not isinstance(key, str):
        raise InvalidStorageKey(f"a {what} must be a str, not {type(key).__name__}")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidStorageKey(f"a {what} must be valid Unicode: {exc.reason}") from exc
    if what == "storage key" and len(raw) > KEY_MAX_BYTES:
        raise InvalidStorageKey(
            f"storage key is {len(raw):,} bytes in UTF-8; the limit is {KEY_MAX_BYTES:,} bytes"
        )
    return raw


def _value_bytes(value: Any) -> bytes:
    if value is None:
        raise InvalidStorageValue("None is not a storage value: delete the key instead")
    data = encode(value)
    if len(data) > VALUE_MAX_BYTES:
        raise InvalidStorageValue(
            f"storage value encodes to {len(data):,} bytes; "
            f"the limit is {VALUE_MAX_BYTES:,} bytes (128 KiB)"
        )
    return data


def _many_keys(keys: Any) -> builtins.list[bytes] | None:
    """The keys of a multi-key call as distinct UTF-8 bytes, or ``None`` for one key."""
    if isinstance(keys, str):
        return None
    if isinstance(keys, Iterable) and not isinstance(keys, bytes | bytearray | Mapping):
        return builtins.list(dict.fromkeys(_key_bytes(key) for key in keys))
    raise InvalidStorageKey(
        f"a storage key must be a str (or a list of them), not {type(keys).__name__}"
    )


def _entries(key_or_entries: Any, value: Any) -> dict[bytes, bytes]:
    """Validate and encode every entry of a put before anything is written."""
    if isinstance(key_or_entries, Mapping):
        if value is not _MISSING:
            raise TypeError("put(entries) takes no separate value")
        return {_key_bytes(k): _value_bytes(v) for k, v in key_or_entries.items()}
    if value is _MISSING:
        raise TypeError("put(key, value) needs a value (or pass one dict of entries)")
    return {_key_bytes(key_or_entries): _value_bytes(value)}


def _limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


def _alarm_time(when: Any) -> datetime.datetime:
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("set_alarm() needs an aware datetime (or epoch seconds)")
        return when.astimezone(datetime.UTC)
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(
            f"set_alarm() takes an aware datetime or epoch seconds, not {type(when).__name__}"
        )
    if not math.isfinite(when):
        raise ValueError(f"set_alarm() needs a finite time, not {when}")
    try:
        return datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"set_alarm() time {when} is out of range") from exc


# Key ranges ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Range:
    """The keys ``list()`` covers, as UTF-8 bytes: ``lower`` inclusive, ``upper`` exclusive."""

    lower: bytes | None = None
    upper: bytes | None = None

    @classmethod
    def of(cls, prefix: Any, start: Any, end: Any) -> _Range:
        lower = None if start is None else _key_bytes(start, "start key")
        upper = None if end is None else _key_bytes(end, "end key")
        if prefix is not None:
            raw = _key_bytes(prefix, "prefix")
            if raw:
                # UTF-8 never contains 0xFF, so bumping the last byte gives the first
                # byte string after every string that starts with the prefix.
                after = raw[:-1] + bytes([raw[-1] + 1])
                lower = raw if lower is None else max(lower, raw)
                upper = after if upper is None else min(upper, after)
        return cls(lower, upper)

    @property
    def empty(self) -> bool:
        return self.lower is not None and self.upper is not None and self.lower >= self.upper

    def __contains__(self, raw: object) -> bool:
        assert isinstance(raw, bytes)
        if self.lower is not None and raw < self.lower:
            return False
        return self.upper is None or raw < self.upper


# Database side (synchronous, one short transaction each) ------------------------------


def _entries_of(alias: str, object_key: str) -> Any:
    return StorageEntry.objects.using(alias).filter(object_key=object_key)


def _fresh_connection(alias: str) -> None:
    # What Django does between requests (and Channels around each database call):
    # drop a connection that broke or outlived CONN_MAX_AGE before using it again.
    connections[alias].close_if_unusable_or_obsolete()


def _read(alias: str, object_key: str, raws: Iterable[bytes]) -> dict[bytes, bytes]:
    _fresh_connection(alias)
    raws = builtins.list(raws)
    found: dict[bytes, bytes] = {}
    for i in range(0, len(raws), _CHUNK):
        rows = _entries_of(alias, object_key).filter(key__in=raws[i : i + _CHUNK])
        found.update((bytes(k), bytes(v)) for k, v in rows.values_list("key", "value"))
    return found


def _scan(
    alias: str, object_key: str, span: _Range, reverse: bool, limit: int | None
) -> builtins.list[tuple[bytes, bytes]]:
    _fresh_connection(alias)
    rows = _entries_of(alias, object_key)
    if span.lower is not None:
        rows = rows.filter(key__gte=span.lower)
    if span.upper is not None:
        rows = rows.filter(key__lt=span.upper)
    rows = rows.order_by("-key" if reverse else "key").values_list("key", "value")
    if limit is not None:
        rows = rows[:limit]
    return [(bytes(k), bytes(v)) for k, v in rows]


def _fence(alias: str, object_key: str, token: int | None, *, claim: bool = False) -> None:
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


def _write(
    alias: str,
    object_key: str,
    token: int | None,
    puts: Mapping[bytes, bytes],
    deletes: Collection[bytes],
) -> int:
    """Apply deletes and upserts in one transaction; how many of ``deletes`` existed."""
    _fresh_connection(alias)
    deletes = builtins.list(deletes)
    deleted = 0
    with db_transaction.atomic(using=alias):
        _fence(alias, object_key, token)
        for i in range(0, len(deletes), _CHUNK):
            chunk = deletes[i : i + _CHUNK]
            deleted += _entries_of(alias, object_key).filter(key__in=chunk).delete()[0]
        if puts:
            StorageEntry.objects.using(alias).bulk_create(
                [StorageEntry(object_key=object_key, key=k, value=v) for k, v in puts.items()],
                batch_size=_CHUNK,
                update_conflicts=True,
                unique_fields=["object_key", "key"],
                update_fields=["value"],
            )
    return deleted


def _fenced(alias: str, object_key: str, token: int | None, action: Callable[[], Any]) -> Any:
    _fresh_connection(alias)
    with db_transaction.atomic(using=alias):
        _fence(alias, object_key, token)
        return action()


def _claim(alias: str, object_key: str, token: int) -> None:
    _fresh_connection(alias)
    with db_transaction.atomic(using=alias):
        _fence(alias, object_key, token, claim=True)


def _delete_all(alias: str, object_key: str) -> None:
    _entries_of(alias, object_key).delete()
    alarms.unschedule(object_key, using=alias)


# The async API ------------------------------------------------------------------------


class DurableStorage:
    """One durable object's storage and alarm.

    ``object_key`` names the object in the tables. ``fence_token`` enables fencing (see
    the module docstring); ``None`` means a single process that needs none. ``gate``
    is a zero-argument callable returning an async context manager entered around
    every database call (the dispatcher holds its input gate with it). ``consumer``
    and ``object_id`` are recorded in the alarm row, for the dispatcher to find the
    object again when the alarm fires.
    """

    def __init__(
        self,
        object_key: str,
        *,
        using: str | None = None,
        fence_token: int | None = None,
        gate: Gate | None = None,
        consumer: str = "",
        object_id: str = "",
        on_alarm_set: Callable[[str], None] | None = None,
    ) -> None:
        self.object_key = object_key
        #: Called with the object key after an alarm is set: makes sure this process
        #: polls for it (the runtime's scheduler; daphne starts its poller anyway).
        self._on_alarm_set = on_alarm_set
        self.fence_token = fence_token
        self.consumer = consumer
        self.object_id = object_id
        self._using = using
        self._gate = gate
        # A new owner claims the fence before its first call of any kind, so from the
        # moment it has seen the storage no older owner can change it.
        self._unclaimed = fence_token is not None

    def __repr__(self) -> str:
        return f"<DurableStorage {self.object_key!r}>"

    @property
    def using(self) -> str:
        """The database alias: the one given, else the ``DATABASE`` setting (read now)."""
        return self._using or conf.get("DATABASE")

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        gate = self._gate() if self._gate is not None else contextlib.nullcontext()
        limit = conf.get("STORAGE_TIMEOUT")
        timeout = asyncio.timeout(limit)
        try:
            async with gate, timeout:
                if self._unclaimed and self.fence_token is not None:
                    await run_db(_claim, self.using, self.object_key, self.fence_token)
                    self._unclaimed = False
                return await run_db(function, self.using, self.object_key, *args)
        except TimeoutError:
            if not timeout.expired():
                raise
            raise StorageTimeout(_timeout_message(self.object_key, function, limit)) from None

    async def _read(self, raws: Iterable[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = await self._run(_read, raws)
        return found

    async def _scan(
        self, span: _Range, reverse: bool, limit: int | None
    ) -> builtins.list[tuple[bytes, bytes]]:
        rows: builtins.list[tuple[bytes, bytes]] = await self._run(_scan, span, reverse, limit)
        return rows

    async def _write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> int:
        deleted: int = await self._run(_write, self.fence_token, puts, deletes)
        return deleted

    # Key-value --------------------------------------------------------------------

    async def get(self, keys: str | Iterable[str]) -> Any:
        """``get(key)`` -> the value or ``None``; ``get([keys])`` -> the found keys, sorted."""
        many = _many_keys(keys)
        if many is None:
            raw = _key_bytes(keys)
            found = await self._read([raw])
            return decode(found[raw]) if raw in found else None
        found = await self._read(many) if many else {}
        return {k.decode(): decode(found[k]) for k in sorted(found)}

    async def put(self, key_or_entries: str | Mapping[str, Any], value: Any = _MISSING) -> None:
        """``put(key, value)`` or ``put({key: value, ...})``: one atomic write either way.

        Every entry is validated before anything is written.
        """
        puts = _entries(key_or_entries, value)
        if puts:
            await self._write(puts, ())

    async def delete(self, keys: str | Iterable[str]) -> bool | int:
        """``delete(key)`` -> whether it existed; ``delete([keys])`` -> how many existed."""
        many = _many_keys(keys)
        if many is None:
            return await self._write({}, [_key_bytes(keys)]) > 0
        return await self._write({}, many) if many else 0

    async def list(
        self,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Entries in key order (descending with ``reverse``); ``start`` in, ``end`` out."""
        span, limit = _Range.of(prefix, start, end), _limit(limit)
        if span.empty:
            return {}
        return {k.decode(): decode(v) for k, v in await self._scan(span, bool(reverse), limit)}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[StorageTransaction]:
        """``async with storage.transaction() as txn``: all of its writes, or none."""
        txn = StorageTransaction(self)
        try:
            yield txn
        except BaseException:
            txn._end()
            raise
        writes = txn._end()
        if writes:
            puts = {k: v for k, v in writes.items() if v is not None}
            deletes = [k for k, v in writes.items() if v is None]
            await self._write(puts, deletes)

    async def delete_all(self) -> None:
        """Delete every key and the alarm of this object, in one transaction."""
        await self._run(_fenced, self.fence_token, lambda: _delete_all(self.using, self.object_key))

    # Alarm ------------------------------------------------------------------------

    async def set_alarm(self, when: datetime.datetime | float) -> None:
        """Set the object's one alarm (an aware datetime or epoch seconds), replacing any.

        A time in the past fires at once. Raises ``ValueError`` for a naive datetime.
        """
        moment = _alarm_time(when)

        def schedule() -> None:
            alarms.schedule(
                self.object_key,
                moment,
                consumer=self.consumer,
                object_id=self.object_id,
                using=self.using,
            )

        await self._run(_fenced, self.fence_token, schedule)
        if self._on_alarm_set is not None:
            self._on_alarm_set(self.object_key)

    async def get_alarm(self) -> datetime.datetime | None:
        """When the alarm is set for (aware, UTC), or ``None`` (also while it runs)."""
        when: datetime.datetime | None = await self._run(
            lambda alias, key: alarms.scheduled_for(key, using=alias)
        )
        return when

    async def delete_alarm(self) -> None:
        """Cancel the alarm, if one is set."""

        def unschedule() -> None:
            alarms.unschedule(self.object_key, using=self.using)

        await self._run(_fenced, self.fence_token, unschedule)

    # Fencing ----------------------------------------------------------------------

    async def claim_fence(self) -> None:
        """Take the object for ``fence_token``: from now on lower tokens may not write.

        A new owner calls this once, before its first write. Raises ``OwnershipLost``
        if an even newer owner has claimed it already.
        """
        if self.fence_token is None:
            raise ValueError("claim_fence() needs a DurableStorage made with a fence_token")
        await self._run(_claim, self.fence_token)


class StorageTransaction:
    """The ``txn`` of ``storage.transaction()``: buffered writes, reads that see them.

    Reads of keys it has not written go to the database at the time of the read; the
    transaction does not lock them. That is enough because an object runs one owner
    and, unless it opts into reentrancy, one handler at a time.
    """

    def __init__(self, storage: DurableStorage) -> None:
        self._storage = storage
        # key -> encoded value, or None for a deleted key; applied in one write at exit
        self._writes: dict[bytes, bytes | None] = {}
        self._rolled_back = False
        self._ended = False

    def _check(self) -> None:
        if self._ended:
            raise RuntimeError("this storage transaction has ended")
        if self._rolled_back:
            raise RuntimeError("this storage transaction was rolled back")

    def _end(self) -> dict[bytes, bytes | None]:
        self._ended = True
        writes, self._writes = self._writes, {}
        return {} if self._rolled_back else writes

    def rollback(self) -> None:
        """Discard every write of this transaction; any later call on it raises."""
        self._check()
        self._rolled_back = True
        self._writes.clear()

    async def _current(self, raws: builtins.list[bytes]) -> dict[bytes, bytes]:
        """The values of ``raws`` as this transaction sees them (absent: not there)."""
        unbuffered = [k for k in raws if k not in self._writes]
        found = await self._storage._read(unbuffered) if unbuffered else {}
        for k in raws:
            buffered = self._writes.get(k, _MISSING)
            if buffered is not _MISSING and buffered is not None:
                found[k] = buffered
        return found

    async def get(self, keys: str | Iterable[str]) -> Any:
        """As :meth:`DurableStorage.get`, including this transaction's writes."""
        self._check()
        many = _many_keys(keys)
        if many is None:
            raw = _key_bytes(keys)
            found = await self._current([raw])
            return decode(found[raw]) if raw in found else None
        found = await self._current(many)
        return {k.decode(): decode(found[k]) for k in sorted(found)}

    async def put(self, key_or_entries: str | Mapping[str, Any], value: Any = _MISSING) -> None:
        """As :meth:`DurableStorage.put`; written when the transaction block exits."""
        self._check()
        self._writes.update(_entries(key_or_entries, value))

    async def delete(self, keys: str | Iterable[str]) -> bool | int:
        """As :meth:`DurableStorage.delete`; deleted when the transaction block exits."""
        self._check()
        many = _many_keys(keys)
        raws = [_key_bytes(keys)] if many is None else many
        existed = await self._current(raws)
        self._check()  # a rollback() may have run while the read was in flight
        for raw in raws:
            self._writes[raw] = None
        return len(existed) > 0 if many is None else len(existed)

    async def list(
        self,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """As :meth:`DurableStorage.list`, including this transaction's writes."""
        self._check()
        span, limit = _Range.of(prefix, start, end), _limit(limit)
        if span.empty:
            return {}
        buffered = {k: v for k, v in self._writes.items() if k in span}
        # Deleted keys can hide at most that many stored rows: read that many more.
        hidden = sum(v is None for v in buffered.values())
        rows = await self._storage._scan(
            span, bool(reverse), None if limit is None else limit + hidden
        )
        merged: dict[bytes, bytes | None] = dict(rows)
        merged.update(buffered)
        visible = {k: v for k, v in merged.items() if v is not None}
        keys = sorted(visible, reverse=bool(reverse))[:limit]
        return {k.decode(): decode(visible[k]) for k in keys}
