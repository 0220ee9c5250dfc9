"""The sessions of large objects this process hibernated, kept for their next wake here.

A wake on Redis reads the object's every socket record (``get_websockets()`` is
synchronous, so the whole session is loaded before the handler runs). For an object
with thousands of sockets that read, and the decoding of each record, is most of what a
wake costs, and with ``HIBERNATE_EAGERLY`` or a short ``IDLE_TIMEOUT`` it is paid again
and again for the same records. So the process that gives a large object's lease up
keeps the session it had, and the next wake here reuses it when nothing changed it
meanwhile.

"Nothing changed it" is decided by Redis, in the script that takes the lease: every
write to an object's socket records or settings also writes a version (field ``v`` of
its settings hash) that is never used twice (this process's channel name and a
counter), and the cached session is used only if that field still holds the version
this process wrote last. Any other writer (another owner, a gateway putting records
back after Redis lost its data) changes or removes the field first; a data loss removes
it. Timestamps of auto-responses are not covered (gateways write them without the
lease) and are always read.

Small objects are not kept: reading a few records costs no more than checking, and
a hibernated small object should cost nothing here (SPEC §12). The cache is bounded in
bytes (attachments can be 16 KiB each), least recently hibernated first out.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

from ..session.base import ObjectSession

#: Objects with more sockets than this are kept at hibernation, and their writes carry
#: a version; smaller ones are read at each wake, as before.
CACHED_ABOVE_SOCKETS = 8
#: What the kept sessions may take in all, per process, in bytes: their attachments,
#: and ``RECORD_BYTES`` for each record (its object, tags and id: 280 bytes with one
#: tag and no attachment, measured with tracemalloc, plus its id string).
MAX_CACHED_BYTES = 32 * 1024 * 1024
RECORD_BYTES = 320


class SessionCache:
    """Sessions of hibernated large objects with the version each was written at."""

    def __init__(self, max_bytes: int = MAX_CACHED_BYTES) -> None:
        self.max_bytes = max_bytes
        #: key -> (version, session, its size in bytes when kept)
        self._entries: OrderedDict[str, tuple[str, ObjectSession, int]] = OrderedDict()
        self._bytes = 0
        self._counter = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def wanted(session: ObjectSession) -> bool:
        """Whether a session this large is versioned and kept at hibernation."""
        return len(session.sockets) > CACHED_ABOVE_SOCKETS

    def new_version(self, holder: str) -> str:
        """A version no write, of this process (``holder``) or another, has used."""
        return f"{holder}|{next(self._counter)}"

    def keep(self, key: str, version: str, session: ObjectSession) -> None:
        """Keep the session of an object whose lease this process just gave up."""
        self.drop(key)
        size = sum(
            RECORD_BYTES + len(record.attachment or b"") for record in session.sockets.values()
        )
        if size > self.max_bytes:
            return
        self._entries[key] = (version, session, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, _, old_size) = self._entries.popitem(last=False)
            self._bytes -= old_size

    def version(self, key: str) -> str:
        """The version of the kept session of ``key``, or "" (none kept)."""
        entry = self._entries.get(key)
        return "" if entry is None else entry[0]

    def take(self, key: str, version: str) -> ObjectSession | None:
        """The kept session, if kept at ``version``; it leaves the cache either way
        (the live object owns it now, and changes it)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry[2]
        return entry[1] if entry[0] == version else None

    def drop(self, key: str) -> None:
        """Forget the kept session of ``key`` (if any)."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]
