"""The default session layer: a dict in this process.

Nothing here survives the process, and nothing is shared with other processes: it is
for one daphne process (development, tests, a single-process deployment). Because
:meth:`load` hands out the stored session itself, the owner's changes are already
stored when the write methods run; they re-state the values so the two code paths
behave the same whichever backend is configured.
"""

from __future__ import annotations

from ..autoresponse import WebSocketRequestResponsePair
from .base import BaseSessionLayer, ObjectSession, SocketRecord


class InMemorySessionLayer(BaseSessionLayer):
    def __init__(self, **config: object) -> None:
        super().__init__(**config)
        self.sessions: dict[str, ObjectSession] = {}

    def _session(self, key: str) -> ObjectSession:
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = ObjectSession(key)
        return session

    async def load(self, key: str) -> ObjectSession:
        return self._session(key)

    async def add_socket(self, key: str, record: SocketRecord) -> None:
        self._session(key).sockets[record.id] = record

    async def update_socket(self, key: str, record: SocketRecord) -> None:
        stored = self._session(key).sockets.get(record.id)
        if stored is not None and stored is not record:
            stored.attachment = record.attachment
            stored.state = record.state

    async def remove_socket(self, key: str, socket_id: str) -> None:
        session = self.sessions.get(key)
        if session is not None:
            session.sockets.pop(socket_id, None)

    async def release(self, key: str, session: ObjectSession) -> None:
        # Forget objects with nothing to remember; only now, since until the owner
        # releases it the stored session is also the owner's working copy.
        stored = self.sessions.get(key)
        if stored is not None and stored.is_empty():
            del self.sessions[key]

    async def save_settings(self, session: ObjectSession) -> None:
        stored = self._session(session.key)
        stored.auto_response = session.auto_response
        stored.event_timeout_ms = session.event_timeout_ms

    def auto_response(self, key: str) -> WebSocketRequestResponsePair | None:
        session = self.sessions.get(key)
        return None if session is None else session.auto_response

    async def touch_auto_response(self, key: str, socket_id: str, when: float) -> None:
        session = self.sessions.get(key)
        record = None if session is None else session.sockets.get(socket_id)
        if record is not None:
            record.auto_response_at = when
