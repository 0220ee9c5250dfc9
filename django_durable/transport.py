"""The single-process transport: every socket is held here and every object lives here.

Every socket's connection is a :class:`~django_durable.sockets.LocalSocket` of this
process and every object lives in its dispatcher. The contract it implements (and the
Redis transport extends) is :class:`~django_durable.ports.Transport`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import framing
from .calls import run_rpc
from .encoding import decode
from .outgoing import first_delivery

if TYPE_CHECKING:
    from .classes import DurableClass
    from .events import Event
    from .ports import Ack, Host, LiveObjectPort
    from .session.base import ObjectSession, SessionWrite, SocketRecord
    from .sockets import LocalSocket

logger = logging.getLogger(__name__)


class LocalTransport:
    """Implements :class:`~django_durable.ports.Transport` within one process."""

    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime

    async def start(self) -> None:
        """Called by a gateway before its first connection is handled."""

    async def group_channel(self) -> str | None:
        """The process channel to join tag groups with, when this transport reads one
        (and hands group messages to ``runtime.fanout.handle``); None: the fan-out
        makes and reads its own."""
        return None

    # Gateways -> objects ------------------------------------------------------------

    async def connect(self, sock: LocalSocket, scope: dict[str, Any]) -> tuple[str, ...] | None:
        """Run ``connect(ws)`` in this process's dispatcher; the tags, or None."""
        return await self.runtime.dispatcher.connect(sock, scope)

    async def route(self, sock: LocalSocket, event: Event) -> None:
        """Put the event in the object's mailbox (waking it); never waits on the handler."""
        self.runtime.dispatcher.put(sock.cls, sock.object_id, sock.key, event)

    async def call(self, cls: DurableClass, object_id: str, name: str, payload: bytes) -> Any:
        """Run the method as an event of the object here; its decoded result."""
        result = await self.runtime.dispatcher.call(
            cls,
            object_id,
            cls.object_key(object_id),
            lambda instance: run_rpc(instance, name, payload),
        )
        return decode(result)

    def gone(self, sock: LocalSocket) -> None:
        """A gateway's connection ended (after its final event was routed)."""

    # Objects -> sockets -----------------------------------------------------------------

    async def send(
        self, key: str, records: list[SocketRecord], message: dict[str, Any], hold: bool = False
    ) -> int:
        """Send ``message`` to each record's connection; how many it was sent to (every
        socket is here: nothing is ever held)."""
        return await self.send_local([r.id for r in records], message)

    async def store(
        self,
        key: str,
        writes: list[SessionWrite],
        session: ObjectSession,
        release: bool = False,
    ) -> None:
        """The session layer's ``apply``."""
        await self.runtime.layer.apply(key, writes, session, release)

    async def push_held(self, key: str) -> None:
        """Nothing is held in one process."""

    async def send_local(self, socket_ids: list[str], message: dict[str, Any]) -> int:
        """Send to the open sockets of this process among ``socket_ids``; how many."""
        sockets = self.runtime.sockets
        sent = 0
        # Each form made once per delivery: plain for most sockets, framed for resuming ones.
        plain_message = framing.plain(message)
        framed: dict[str, Any] | None = None
        number = message.get(framing.NUMBER)
        if number is not None:
            number = tuple(number)  # one for all the sockets (it came as a list by Redis)
        for sid in socket_ids:
            sock = sockets.get(sid)
            if sock is None or not sock.open:
                continue
            if number is not None and not first_delivery(sock, number):
                sent += 1  # a handler run again: this socket got the frame from its first run
                continue
            try:
                if sock.resume is None:
                    await sock.send(plain_message)
                else:
                    if framed is None:
                        framed = framing.frame(message)
                    await sock.send_framed(framed, framing.offset_of(message))
            except Exception:
                logger.debug("send to socket %s failed", sid, exc_info=True)
                continue
            sent += 1
        return sent

    async def close(self, key: str, record: SocketRecord, code: int, reason: str) -> None:
        """Close the socket's connection, if this process holds it."""
        sock = self.runtime.sockets.get(record.id)
        if sock is not None:
            await sock.close(code)

    async def kill(self, key: str, record: SocketRecord, error: BaseException) -> None:
        """End the socket's connection with 1011, if this process holds it."""
        sock = self.runtime.sockets.get(record.id)
        if sock is not None:
            sock.kill(error)

    async def verdict(self, key: str, sock: Any, record: SocketRecord | None) -> None:
        """Tell the gateway whether ``connect()`` accepted (``record``) or rejected."""
        if record is not None:
            await sock.accept()

    # The object's own bookkeeping ----------------------------------------------------

    async def on_wake(self, live: LiveObjectPort) -> None:
        """The object was loaded; a distributed transport closes sockets of dead peers."""

    async def ack(self, acks: list[Ack]) -> None:
        """Numbered events ``(holder, socket id, seq)`` were handled and stored."""
        sockets = self.runtime.sockets
        for _, sid, seq in acks:
            sock = sockets.get(sid)
            if sock is not None:
                sock.acked(seq)

    async def scope_for(self, sock: Any, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope ``connect(ws)`` sees (a distributed transport rebuilds it)."""
        return scope

    def stopping(self, live: LiveObjectPort) -> bool:
        """Nothing to save in one process: the release stays where it is."""
        return False

    async def released(self, live: LiveObjectPort) -> None:
        """The object hibernated (or stopped) in this process."""
        await self.runtime.layer.release(live.key, live.session)

    async def settings_changed(self, live: LiveObjectPort) -> None:
        """The object's auto-response or event timeout changed (tell other gateways)."""

    async def reroute(self, live: LiveObjectPort, event: Event) -> None:
        """An event the object could not handle here (it stopped): give it to a new one."""
        self.runtime.dispatcher.put(live.cls, live.object_id, live.key, event)
