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
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from typing import Any

from . import alarms, conf
from .dbthread import run_db
from .encoding import decode
from .exceptions import StorageTimeout
from .storage_rows import (
    claim_fence_row,
    delete_rows,
    fenced,
    read_rows,
    scan_rows,
    write_rows,
)
from .storage_values import (
    KEY_MAX_BYTES,
    MISSING,
    VALUE_MAX_BYTES,
    Gate,
    KeyRange,
    alarm_time,
    checked_limit,
    key_bytes,
    many_keys,
    put_entries,
)

__all__ = ["KEY_MAX_BYTES", "VALUE_MAX_BYTES", "DurableStorage", "StorageTransaction"]

#: The storage functions that only read: a timed-out read changed nothing.
_READS = frozenset({"read_rows", "scan_rows"})


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
                    await run_db(claim_fence_row, self.using, self.object_key, self.fence_token)
                    self._unclaimed = False
                return await run_db(function, self.using, self.object_key, *args)
        except TimeoutError:
            if not timeout.expired():
                raise
            raise StorageTimeout(_timeout_message(self.object_key, function, limit)) from None

    async def _read(self, raws: Iterable[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = await self._run(read_rows, raws)
        return found

    async def _scan(
        self, span: KeyRange, reverse: bool, limit: int | None
    ) -> builtins.list[tuple[bytes, bytes]]:
        rows: builtins.list[tuple[bytes, bytes]] = await self._run(scan_rows, span, reverse, limit)
        return rows

    async def _write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> int:
        deleted: int = await self._run(write_rows, self.fence_token, puts, deletes)
        return deleted

    # Key-value --------------------------------------------------------------------

    async def get(self, keys: str | Iterable[str]) -> Any:
        """``get(key)`` -> the value or ``None``; ``get([keys])`` -> the found keys, sorted."""
        many = many_keys(keys)
        if many is None:
            raw = key_bytes(keys)
            found = await self._read([raw])
            return decode(found[raw]) if raw in found else None
        found = await self._read(many) if many else {}
        return {k.decode(): decode(found[k]) for k in sorted(found)}

    async def put(self, key_or_entries: str | Mapping[str, Any], value: Any = MISSING) -> None:
        """``put(key, value)`` or ``put({key: value, ...})``: one atomic write either way.

        Every entry is validated before anything is written.
        """
        puts = put_entries(key_or_entries, value)
        if puts:
            await self._write(puts, ())

    async def delete(self, keys: str | Iterable[str]) -> bool | int:
        """``delete(key)`` -> whether it existed; ``delete([keys])`` -> how many existed."""
        many = many_keys(keys)
        if many is None:
            return await self._write({}, [key_bytes(keys)]) > 0
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
        span, limit = KeyRange.of(prefix, start, end), checked_limit(limit)
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
        await self._run(fenced, self.fence_token, lambda: delete_rows(self.using, self.object_key))

    # Alarm ------------------------------------------------------------------------

    async def set_alarm(self, when: datetime.datetime | float) -> None:
        """Set the object's one alarm (an aware datetime or epoch seconds), replacing any.

        A time in the past fires at once. Raises ``ValueError`` for a naive datetime.
        """
        moment = alarm_time(when)

        def schedule() -> None:
            alarms.schedule(
                self.object_key,
                moment,
                consumer=self.consumer,
                object_id=self.object_id,
                using=self.using,
            )

        await self._run(fenced, self.fence_token, schedule)
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

        await self._run(fenced, self.fence_token, unschedule)

    # Fencing ----------------------------------------------------------------------

    async def claim_fence(self) -> None:
        """Take the object for ``fence_token``: from now on lower tokens may not write.

        A new owner calls this once, before its first write. Raises ``OwnershipLost``
        if an even newer owner has claimed it already.
        """
        if self.fence_token is None:
            raise ValueError("claim_fence() needs a DurableStorage made with a fence_token")
        await self._run(claim_fence_row, self.fence_token)


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
            buffered = self._writes.get(k, MISSING)
            if buffered is not MISSING and buffered is not None:
                found[k] = buffered
        return found

    async def get(self, keys: str | Iterable[str]) -> Any:
        """As :meth:`DurableStorage.get`, including this transaction's writes."""
        self._check()
        many = many_keys(keys)
        if many is None:
            raw = key_bytes(keys)
            found = await self._current([raw])
            return decode(found[raw]) if raw in found else None
        found = await self._current(many)
        return {k.decode(): decode(found[k]) for k in sorted(found)}

    async def put(self, key_or_entries: str | Mapping[str, Any], value: Any = MISSING) -> None:
        """As :meth:`DurableStorage.put`; written when the transaction block exits."""
        self._check()
        self._writes.update(put_entries(key_or_entries, value))

    async def delete(self, keys: str | Iterable[str]) -> bool | int:
        """As :meth:`DurableStorage.delete`; deleted when the transaction block exits."""
        self._check()
        many = many_keys(keys)
        raws = [key_bytes(keys)] if many is None else many
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
        span, limit = KeyRange.of(prefix, start, end), checked_limit(limit)
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
