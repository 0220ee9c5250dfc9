"""The default session layer: a dict in this process.

Nothing here survives the process, and nothing is shared with other processes: it is
for one daphne process (development, tests, a single-process deployment). Because
:meth:`load` hands out the stored session itself, the owner's changes are already
stored when the write methods run; they re-state the values so the two code paths
behave the same whichever backend is configured.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from .. import conf
from ..autoresponse import WebSocketRequestResponsePair
from .base import (
    BaseSessionLayer,
    HistoryEntry,
    HistorySnapshot,
    ObjectSession,
    SocketRecord,
    StoredObject,
    new_epoch,
)


class _History:
    """One object's kept broadcasts; forgotten ``HISTORY_TTL`` seconds after last use."""

    __slots__ = ("entries", "epoch", "head", "timer", "touched")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.head = 0
        self.entries: deque[HistoryEntry] = deque()
        self.touched = 0.0
        self.timer: asyncio.TimerHandle | None = None


class InMemorySessionLayer(BaseSessionLayer):
    """One process's sessions in a dict: no I/O, no fencing (the default)."""

    def __init__(self, **config: object) -> None:
        super().__init__(**config)
        self.sessions: dict[str, ObjectSession] = {}
        self.histories: dict[str, _History] = {}

    def _session(self, key: str) -> ObjectSession:
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = ObjectSession(key)
        return session

    async def load(self, key: str) -> ObjectSession:
        """The stored session itself, so a live object's changes are stored as made."""
        return self._session(key)

    async def add_socket(self, key: str, record: SocketRecord) -> None:
        """Store the record."""
        self._session(key).sockets[record.id] = record

    async def update_socket(self, key: str, record: SocketRecord) -> None:
        """Store the record."""
        stored = self._session(key).sockets.get(record.id)
        if stored is not None and stored is not record:
            stored.attachment = record.attachment
            stored.state = record.state

    async def remove_socket(self, key: str, socket_id: str) -> None:
        """Forget the socket."""
        session = self.sessions.get(key)
        if session is not None:
            session.sockets.pop(socket_id, None)

    async def release(self, key: str, session: ObjectSession) -> None:
        # Forget objects with nothing to remember; only now, since until the owner
        # releases it the stored session is also the owner's working copy.
        """Drop the session when nothing is left in it."""
        stored = self.sessions.get(key)
        if stored is not None and stored.is_empty():
            del self.sessions[key]

    async def save_settings(self, session: ObjectSession) -> None:
        """Store the settings."""
        stored = self._session(session.key)
        stored.auto_response = session.auto_response
        stored.event_timeout_ms = session.event_timeout_ms

    def auto_response(self, key: str) -> WebSocketRequestResponsePair | None:
        """The object's pair."""
        session = self.sessions.get(key)
        return None if session is None else session.auto_response

    async def touch_auto_response(self, key: str, socket_id: str, when: float) -> None:
        """Note the time on the socket's record."""
        session = self.sessions.get(key)
        record = None if session is None else session.sockets.get(socket_id)
        if record is not None:
            record.auto_response_at = when

    # Broadcast history ---------------------------------------------------------------

    def _history(self, key: str) -> _History:
        history = self.histories.get(key)
        if history is None:
            history = self.histories[key] = _History()
        loop = asyncio.get_running_loop()
        history.touched = loop.time()
        if history.timer is None:
            history.timer = loop.call_later(conf.get("HISTORY_TTL"), self._expire, key)
        return history

    def _expire(self, key: str) -> None:
        history = self.histories.get(key)
        if history is None:
            return
        ttl = conf.get("HISTORY_TTL")
        loop = asyncio.get_running_loop()
        left = history.touched + ttl - loop.time()
        if left > 0:
            history.timer = loop.call_later(left, self._expire, key)
        else:
            del self.histories[key]

    async def append_history(
        self,
        key: str,
        limit: int,
        tag: str | None,
        exclude: tuple[str, ...],
        payload: str | bytes,
    ) -> tuple[str, int]:
        """Keep a broadcast (numbered) in the object's history."""
        history = self._history(key)
        history.head += 1
        history.entries.append(HistoryEntry(history.head, tag, exclude, payload))
        while len(history.entries) > limit:
            history.entries.popleft()
        return history.epoch, history.head

    async def read_history(self, key: str, after: int | None) -> HistorySnapshot:
        """The history after ``after``, for a resuming client."""
        history = self._history(key)
        first = history.entries[0].offset if history.entries else history.head + 1
        entries = [] if after is None else [e for e in history.entries if e.offset > after]
        return HistorySnapshot(history.epoch, history.head, first, entries)

    async def stored_objects(self, known: Iterable[str] = ()) -> dict[str, StoredObject]:
        """Every session with sockets."""
        return {
            key: StoredObject(list(session.sockets.values()))
            for key, session in list(self.sessions.items())
            if session.sockets
        }
