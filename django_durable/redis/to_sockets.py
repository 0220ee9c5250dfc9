"""Owners -> gateways: frames, closes and verdicts for sockets held by other processes.

A part of :class:`~django_durable.redis.transport.RedisTransport`: one
``durable.send`` per holding process however many of its sockets a frame goes to,
put in that process's inbox by its courier (:mod:`~django_durable.redis.couriers`, in
order with everything else this process sends it), waited for (bounded) when that
inbox is full, never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, cast

from .. import exceptions
from ..events import CALL, CLOSE, HIBERNATE, CloseData, Event
from ..exceptions import OwnershipLost, SessionLayerUnavailable
from ..fanout import broadcast_event_message
from ..framing import NUMBER, POSITION
from ..session.base import SocketRecord
from .held import STALL_AFTER
from .messages import (
    CloseMessage,
    KillMessage,
    ReleasedMessage,
    SendMessage,
    SettingsMessage,
    VerdictMessage,
)
from .parts import RemoteSocket
from .pending_frames import PendingFrames
from .records import pack_pair

if TYPE_CHECKING:
    from ..ports import LiveObjectPort

logger = logging.getLogger(__name__)

ABNORMAL = "the process holding this socket stopped"


class ToSockets(PendingFrames):
    """What a live object here sends to sockets, wherever they are held."""

    async def send(
        self, key: str, records: list[SocketRecord], message: dict[str, Any], hold: bool = False
    ) -> int:
        """Local sockets directly; one ``durable.send`` per other holding process, held
        for the handler's writes when ``hold`` allows (:mod:`.pending_frames`)."""
        local: list[str] = []
        remote: dict[str, list[str]] = defaultdict(list)
        for record in records:
            if record.holder == self.channel or record.id in self.runtime.sockets:
                local.append(record.id)
            else:
                remote[record.holder].append(record.id)
        # Other processes first: their one message each is on its way while this process
        # writes its own frames, rather than waiting behind them.
        sent = 0
        payload = {k: v for k, v in message.items() if k in ("text", "bytes", POSITION, NUMBER)}
        failure: Exception | None = None
        for holder, sids in remote.items():
            frame = cast(SendMessage, {"type": "durable.send", "sids": sids, **payload})
            try:
                if hold and await self.hold(key, holder, frame):
                    sent += len(sids)
                    continue
                await self.push_pending(key)  # nothing held may come after this frame
                if not await self._push_now(holder, frame):
                    continue
            except Exception as exc:
                failure = failure or exc
                continue
            sent += len(sids)
        if local:
            sent += await self.send_local(local, message)
        if failure is not None:
            # The handler must know: a frame it sent did not reach every socket.
            raise failure
        return sent

    async def close(self, key: str, record: SocketRecord, code: int, reason: str) -> None:
        """Close a local socket, or tell its holding process to (after held frames)."""
        await self.push_pending(key)
        if record.id in self.runtime.sockets:
            await super().close(key, record, code, reason)
        else:
            await self.couriers.send(
                record.holder, CloseMessage(type="durable.close", sid=record.id, code=code)
            )

    async def kill(self, key: str, record: SocketRecord, error: BaseException) -> None:
        """End a local socket with 1011, or tell its holding process to."""
        await self.push_held(key)  # (failures logged: no handler to raise them in)
        if record.id in self.runtime.sockets:
            await super().kill(key, record, error)
        else:
            await self.couriers.send(
                record.holder, KillMessage(type="durable.kill", sid=record.id, error=str(error))
            )

    async def verdict(self, key: str, sock: Any, record: SocketRecord | None) -> None:
        """Accept a local socket, or send ``durable.verdict`` to a remote one's process."""
        await self.push_held(key)  # (after connect() returned: failures logged)
        if isinstance(sock, RemoteSocket):
            tags = None if record is None else list(record.tags)
            verdict = VerdictMessage(type="durable.verdict", sid=sock.id, tags=tags)
            if sock.subprotocol is not None:
                verdict["subprotocol"] = sock.subprotocol
            if record is not None and key in self.layer.auto_cache:  # (loaded: it runs here)
                pair = self.layer.auto_cache[key]
                verdict["auto"] = b"" if pair is None else pack_pair(pair)
            await self.couriers.send(sock.holder, verdict)
        elif record is not None:
            await sock.accept()

    # The object's bookkeeping ------------------------------------------------------

    async def on_wake(self, live: LiveObjectPort) -> None:
        """Queue closes (1006) of sockets whose holding process is dead, first."""
        for event in await self._dead_socket_closes(live):
            live.front.append(event)

    async def _dead_socket_closes(self, live: LiveObjectPort) -> list[Event]:
        holders = {r.holder for r in live.session.sockets.values() if r.holder != self.channel}
        if not holders:
            return []
        dead = await self._dead_holders(holders)
        return [
            Event(CLOSE, r.id, CloseData(1006, ABNORMAL, False))
            for r in list(live.session.sockets.values())
            if r.holder in dead
        ]

    async def _holder_gone(self, holder: str) -> bool:
        """Whether ``holder``'s heartbeat has been missing for a whole lease time."""
        try:
            return holder in await self._dead_holders({holder})
        except SessionLayerUnavailable:
            return False

    def stopping(self, live: LiveObjectPort) -> bool:
        """The object hibernates after its next write, which releases the lease: from
        now on its events wake it again (after that release, see ``_owner_elsewhere``)."""
        self.runtime.dispatcher.forget(live)
        live.releasing = asyncio.get_running_loop().create_future()
        self._releasing[live.key] = live.releasing
        return True

    async def released(self, live: LiveObjectPort) -> None:
        """Release the lease (unless its last write did), and tell the processes holding
        the object's sockets."""
        key = live.key
        self.drop_pending(key)
        self.copies.forget(live.session.sockets)
        future = live.releasing
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._releasing[key] = future
        try:
            if self.runtime.dispatcher.live.get(key) is None:
                await self.layer.release(key, live.session)  # (nothing left to release)
                await self._tell_holders_released(live)
        finally:
            if self._releasing.get(key) is future:
                del self._releasing[key]
            future.set_result(None)

    async def _tell_holders_released(self, live: LiveObjectPort) -> None:
        """The processes holding the object's sockets forget this one as its owner, and
        send their events not yet acknowledged again now (at shutdown: so that one of
        them takes the object at once rather than after the lease time). After a
        hibernation there are none: the acknowledgements went first, the same way.

        After a hibernation, only the processes that sent this live object events are
        told: a process remembers an owner only once it sent it an event
        (``Forwarding._event_target``), and every earlier owner told it the same way
        when it stopped. One that sends an event here later is told then
        (``_not_live_here``). So a wake costs no message to every holding process.

        Waited for only at shutdown (bounded), when this process may stop right after."""
        shutting_down = self.runtime.shutting_down
        if shutting_down or live.lost:
            holders = {r.holder for r in live.session.sockets.values()}
        else:
            holders = set(live.senders)
        holders.difference_update((self.channel, ""))
        released = ReleasedMessage(type="durable.released", key=live.key)
        posted = [self.couriers.post(h, released, wait=shutting_down) for h in holders]
        if shutting_down and posted:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STALL_AFTER):
                    await asyncio.gather(*(f for f in posted if f is not None))

    async def reroute(self, live: LiveObjectPort, event: Event) -> None:
        """Fail a call, resolve a hibernation; socket events stay in their outboxes."""
        if event.kind == CALL:
            event.fail(OwnershipLost(f"{live.key} stopped in this process before the call ran"))
        elif event.kind == HIBERNATE:
            event.resolve(None)
        # Numbered socket events stay in their gateway's outbox, which re-sends them;
        # closes of dead peers' sockets are found again at the next wake.

    async def settings_changed(self, live: LiveObjectPort) -> None:
        """Tell the gateways of the object's sockets the new auto-response pair."""
        pair = live.session.auto_response
        group = live.cls.tag_group(live.object_id, None)
        await self.channel_layer.group_send(
            group,
            SettingsMessage(
                type="durable.settings",
                group=group,
                key=live.key,
                auto=None if pair is None else pack_pair(pair),
            ),
        )

    async def _on_send(self, message: SendMessage) -> None:
        out = broadcast_event_message(dict(message))
        if out is not None:
            await self.send_local(message["sids"], out)

    async def _on_close(self, message: CloseMessage) -> None:
        sock = self.runtime.sockets.get(message["sid"])
        if sock is not None:
            await sock.close(message["code"])

    async def _on_kill(self, message: KillMessage) -> None:
        sock = self.runtime.sockets.get(message["sid"])
        if sock is not None:
            sock.kill(exceptions.HandlerTimeout(message["error"]))
