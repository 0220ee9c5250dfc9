"""Copies of what Redis must never lose, kept by the processes holding the sockets.

When Redis loses its data (a restart without persistence, a failover to an empty
replica), each process puts back the sockets it holds (``RedisTransport._reregister``).
Their ids, tags and holder it knows from its gateways; their attachments are written
by the owner, possibly another process. So the owner tells each holder the attachment
and tags of its sockets whenever they change (``durable.records``, one message per
holder, sent by one task so that a newer copy never overtakes an older one), and only
then: an event that changes nothing of them costs no message. The holder keeps the
copy as long as it holds the socket (an owner keeps its own sockets' copies the same
way, since its live session goes with its lease when Redis loses the data).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from .messages import RecordsMessage

#: The cluster's ``RedisTransport`` (not imported: this module stays out of its cycle).
RedisTransport = Any

logger = logging.getLogger(__name__)


class RecordCopies:
    """Tags and attachments of sockets, kept by their holders and told by their owners."""

    def __init__(self, transport: RedisTransport) -> None:
        self.transport = transport
        #: Holder's side: socket id -> [tags, attachment] as its owner last told.
        self.kept: dict[str, list[Any]] = {}
        #: Owner's side: socket id -> [tags, attachment] as last told to its holder.
        self._told: dict[str, list[Any]] = {}
        #: Owner's side: holder -> socket id -> [tags, attachment] to tell.
        self._pending: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        self._sender: asyncio.Task[None] | None = None

    # The owner's side ----------------------------------------------------------------

    def written(self, key: str, records: list[Any], removed: list[str]) -> None:
        """The owner stored ``records`` (and removed ``removed``): tell their holders."""
        own = self.transport.channel
        for sid in removed:
            self._told.pop(sid, None)
        for record in records:
            copy = [list(record.tags), record.attachment]
            if record.holder == own or not record.holder:
                # Held here: keep the copy at once (the live session may be gone, with
                # its lease, by the time this process finds Redis lost its data).
                self.received({"records": {record.id: copy}})
                continue
            if self._told.get(record.id) == copy:
                continue
            self._told[record.id] = copy
            self._pending[record.holder][record.id] = copy
        if self._pending and (self._sender is None or self._sender.done()):
            self._sender = asyncio.get_running_loop().create_task(self._send())

    def forget(self, socket_ids: Any) -> None:
        """The object stopped here: its next owner tells the holders itself."""
        for sid in socket_ids:
            self._told.pop(sid, None)

    async def _send(self) -> None:
        while self._pending:
            holder, copies = self._pending.popitem()
            try:
                await self.transport.channel_layer.send(
                    holder, RecordsMessage(type="durable.records", records=copies)
                )
            except Exception:
                # Redis itself has the records; only a later loss of its data needs them.
                logger.warning("could not send %d record copies to %s", len(copies), holder)
                for sid in copies:
                    self._told.pop(sid, None)

    # The holder's side ---------------------------------------------------------------

    def received(self, message: dict[str, Any]) -> None:
        """Keep the copies an owner sent (of sockets held here)."""
        sockets, draining = self.transport.runtime.sockets, self.transport._draining
        for sid, copy in message["records"].items():
            if sid in sockets or sid in draining:
                self.kept[sid] = copy

    def attachment(self, sid: str) -> bytes | None:
        """The kept attachment of a socket."""
        copy = self.kept.get(sid)
        return None if copy is None else copy[1]

    def prune(self) -> None:
        """Forget copies of sockets this process no longer holds."""
        sockets, draining = self.transport.runtime.sockets, self.transport._draining
        for sid in [s for s in self.kept if s not in sockets and s not in draining]:
            del self.kept[sid]
