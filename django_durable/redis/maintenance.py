"""Maintenance of a process in the cluster: leases, heartbeats, failover, data loss.

A part of :class:`~django_durable.redis.transport.RedisTransport`, run by one task per
process every third of a lease: it renews this process's leases and heartbeat,
re-sends events whose owner died (once its lease expired, another process takes the
object), closes sockets of processes whose heartbeat expired (``1006``), and
re-registers this process's sockets if Redis lost its data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from channels.exceptions import ChannelFull

from ..exceptions import SessionLayerUnavailable
from ..session.base import OPEN, SocketRecord
from .held import STALL_AFTER
from .messages import RejoinMessage
from .outbox import hand_on
from .parts import TransportParts
from .records import pack_record

logger = logging.getLogger(__name__)


class Maintenance(TransportParts):
    """The periodic work of a process that holds sockets or owns objects."""

    async def _maintain(self) -> None:
        interval = self.layer.lease_time / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._maintain_once()
            except SessionLayerUnavailable as exc:
                logger.warning("maintenance: %s", exc)
                # Heartbeats missing before the outage prove nothing after it.
                self._missing.clear()
                if time.monotonic() - self._last_renewal > self.layer.lease_time:
                    # This process cannot tell whether another one took its objects (a
                    # partition) or nobody could (Redis is away): run nothing until a
                    # renewal says which. Redis does not count an outage against a lease.
                    for live in list(self.runtime.dispatcher.live.values()):
                        live.renewed.clear()
            except Exception:
                logger.exception("maintenance failed")

    async def _maintain_once(self) -> None:
        dispatcher = self.runtime.dispatcher
        data_lost = not await self.layer.heartbeat()
        for key in await self.layer.renew(list(self.layer.owned)):
            live = dispatcher.live.get(key)
            if live is not None:
                live.lose()
        self._last_renewal = time.monotonic()
        for live in list(dispatcher.live.values()):
            live.renewed.set()
        if data_lost:
            logger.warning("Redis lost this process's data: re-registering its sockets")
            self._reregistering = True
        if self._reregistering:
            # Until it went through: the heartbeat is back, so it would not say again.
            await self._reregister()
            self._reregistering = False
        await self._resend_stale()
        self._forget_missing()
        self.copies.prune()
        for live in list(dispatcher.live.values()):
            if not live.lost:
                for event in await self._dead_socket_closes(live):
                    live.queue.put_nowait(event)

    async def _resend_stale(self) -> None:
        """Send again the events not acknowledged for half a lease whose owner changed
        (it died, or the object moved), forgetting that owner: the object is taken by
        whoever finds it free. Each socket's re-send is bounded (``STALL_AFTER``): the
        maintenance must go on renewing leases, and the next round tries again."""
        now = time.monotonic()
        stale_after = self.layer.lease_time / 2
        owners: dict[str, str | None] = {}
        for sock in [s for waiting in self.unacked.values() for s in waiting.values()]:
            outbox = sock.outbox
            if not outbox or outbox[0].sent_at > now - stale_after:
                continue
            if sock.key not in owners:
                owners[sock.key] = await self.layer.owner(sock.key)
                if not outbox:
                    continue  # acknowledged meanwhile
            owner = owners[sock.key]
            if owner is not None and owner == outbox[0].owner:
                continue  # the same owner is alive and holds its lease: it is just busy
            if self.owners.get(sock.key) != owner:
                self.owners.pop(sock.key, None)
            if self.held.stalled(sock):
                continue  # (held events are the held events' task's to deliver)
            try:
                async with asyncio.timeout(STALL_AFTER):
                    await hand_on(sock, outbox, self._deliver_held)
            except (TimeoutError, ChannelFull) as exc:
                logger.warning("events of socket %s not sent again yet: %r", sock.id, exc)
            owners.pop(sock.key, None)

    async def _reregister(self) -> None:
        """Put this process's sockets back after Redis lost its data, then their events.

        A process may have taken an object (and loaded it) before every socket was back:
        its instance would not know the missing ones and would drop their events, which
        its lease keeps from ever being sent again (``_resend_stale`` waits for a busy
        owner). So the owner is told about the sockets put back (``durable.rejoin``),
        and every unacknowledged event is sent again after that, in order; the owner
        admits each number once.
        """
        self.owners.clear()
        sockets: dict[str, list[tuple[Any, SocketRecord]]] = defaultdict(list)
        for sock in [*self.runtime.sockets.values(), *self._draining.values()]:
            if not sock.accepted:
                continue
            acked = sock.outbox[0].seq - 1 if sock.outbox else sock.seq
            attachment = self.copies.attachment(sock.id)
            record = SocketRecord(sock.id, sock.tags, attachment, None, self.channel, OPEN, acked)
            await self.layer.reregister(sock.key, record)
            sockets[sock.key].append((sock, record))
        for key in sockets:
            live = self.runtime.dispatcher.live.get(key)
            timeout = None if live is None else live.session.event_timeout_ms
            await self.layer.restore_settings(key, self.layer.auto_cache.get(key), timeout)
        await self.runtime.fanout.resubscribe()
        for key, pairs in sockets.items():
            owner = await self.layer.owner(key)
            if owner == self.channel:
                self._rejoin(key, [record for _, record in pairs])
            elif owner is not None:
                records = [[record.id, pack_record(record)] for _, record in pairs]
                rejoin = RejoinMessage(type="durable.rejoin", key=key, records=records)
                async with asyncio.timeout(STALL_AFTER):  # (else: all again next round)
                    await self._send_or_unavailable(owner, rejoin)
            for sock, _ in pairs:
                if self.held.stalled(sock):
                    continue  # its held events' task sends them, in order
                async with asyncio.timeout(STALL_AFTER):
                    await hand_on(sock, sock.outbox or (), self._deliver_held)

    async def _dead_holders(self, holders: set[str]) -> set[str]:
        """The holders whose heartbeat has been missing for a whole lease time.

        One look is not enough: when Redis comes back from an outage (restarted from its
        append-only file) every heartbeat has expired meanwhile, until each process's
        maintenance sets its own again, within a third of a lease. A process that is
        alive renews its heartbeat that often, so one missing for a whole lease is dead
        (or cut off from Redis, and then it has given up its objects too).
        """
        now = time.monotonic()
        # A holder found alive less than a third of a lease ago (the period of its own
        # heartbeat) is not asked about again: a wake of an object whose sockets are
        # held by other processes costs no round trip for it. A death is then found at
        # most that much later; it is declared only after a whole lease anyway.
        recent = now - self.layer.lease_time / 3
        ask = sorted(h for h in holders if self._alive_at.get(h, -1.0) < recent)
        alive = await self.layer.alive(ask) if ask else set()
        for holder in alive:
            self._alive_at[holder] = now
        alive |= holders.difference(ask)
        dead = set()
        for holder in holders:
            if holder in alive:
                self._missing.pop(holder, None)
                continue
            seen = self._missing.setdefault(holder, [now, now])
            seen[1] = now
            if now - seen[0] >= self.layer.lease_time:
                dead.add(holder)
        return dead

    def _forget_missing(self) -> None:
        """Drop what no longer counts: holders nobody asked about for a while."""
        now = time.monotonic()
        horizon = now - 2 * self.layer.lease_time
        for holder, (_, last) in list(self._missing.items()):
            if last < horizon:
                del self._missing[holder]
        recent = now - self.layer.lease_time / 3
        for holder in [h for h, seen in self._alive_at.items() if seen < recent]:
            del self._alive_at[holder]
