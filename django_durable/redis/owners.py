"""Who runs an object: taking it here, or finding its owner, and telling a process
that sent an event here for an object that does not run here.

A part of :class:`~django_durable.redis.transport.RedisTransport`, used by forwarding
(gateways -> owners) and remote calls: the lease script that decides where an object
wakes, shared by the gateways that connect to it at once, and ``durable.released``
for events that reached a process the object left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..exceptions import SessionLayerUnavailable
from .messages import ReleasedMessage
from .parts import TransportParts

if TYPE_CHECKING:
    from ..classes import DurableClass
    from ..events import Event

logger = logging.getLogger(__name__)

#: Seconds between two ``durable.released`` to one process about one object it sent
#: events for that do not run here (it sends every event not acknowledged again).
BOUNCE_EVERY = 0.05


class Owners(TransportParts):
    """Where an object runs, as this process finds (or makes) it."""

    async def _owner_elsewhere(self, key: str) -> str | None:
        """None when the object runs here (live, or taken now); else its owner's channel.

        Waits for a release of the same object in flight first: taking the lease while
        this process's own release is on its way would lose it right after.
        """
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            return None
        while True:
            while key in self._releasing:
                await self._releasing[key]
            acquiring = self._acquiring.get(key)
            if acquiring is None:
                break
            # One lease script at a time per object: gateways connecting at once share
            # its answer, while it still holds (the object woken on it may have run and
            # released the lease already: then ask again).
            try:
                owned, owner, token = await asyncio.shield(acquiring)
            except asyncio.CancelledError:
                if not acquiring.cancelled():
                    raise  # this caller was cancelled; else the one asking was: ask again
                continue
            if not owned:
                return owner
            if self.layer.owned.get(key) == token and key not in self._releasing:
                return None
        acquiring = self._acquiring[key] = asyncio.get_running_loop().create_future()
        try:
            # Taken here, the object wakes here next: its session comes with the lease.
            answer = await self.layer.acquire(key, load=True)
        except asyncio.CancelledError:
            acquiring.cancel()
            raise
        except BaseException as exc:
            acquiring.set_exception(exc)
            acquiring.exception()  # (retrieved: nobody else may be waiting)
            raise
        else:
            acquiring.set_result(answer)
        finally:
            del self._acquiring[key]
        return None if answer[0] else answer[1]

    async def _not_live_here(
        self, cls: DurableClass, object_id: str, key: str, event: Event, holder: str
    ) -> None:
        """An event sent here for an object that does not run here: run it if this
        process still holds the lease; otherwise the sender was wrong about the owner
        (it hibernated here, or moved), and is told to send it again (``durable.released``)
        to the owner it finds then, which takes the object if nobody has it, as the
        process of the first event after a hibernation does."""
        try:
            while key in self._releasing:
                await self._releasing[key]
            live = self.runtime.dispatcher.live.get(key)
            if (live is not None and not live.lost) or (
                await self.layer.owner(key) == self.channel and (await self.layer.acquire(key))[0]
            ):
                self.runtime.dispatcher.put(cls, object_id, key, event)
                return
        except SessionLayerUnavailable as exc:
            logger.warning("event for %s not handled (%s): its sender sends it again", key, exc)
            return
        now = time.monotonic()
        last = self._bounced.get((holder, key), 0.0)
        if last > now - BOUNCE_EVERY:
            # Told already (it sends again every event not acknowledged), but perhaps
            # before it found this process the owner again (woken here meanwhile): told
            # once more when the interval is over, so no event of it waits here unheard.
            if (holder, key) not in self._bounce_later:
                self._bounce_later.add((holder, key))
                asyncio.get_running_loop().call_later(
                    last + BOUNCE_EVERY - now, self._bounce_again, holder, key
                )
            return
        self._bounce(holder, key, now)

    def _bounce(self, holder: str, key: str, now: float) -> None:
        """Tell ``holder`` that ``key`` does not run here (``durable.released``)."""
        self._bounced[(holder, key)] = now
        if len(self._bounced) > 1000:
            self._bounced = {k: t for k, t in self._bounced.items() if t > now - BOUNCE_EVERY}
        self.couriers.post(holder, ReleasedMessage(type="durable.released", key=key), wait=False)

    def _bounce_again(self, holder: str, key: str) -> None:
        # Even when the object runs here again: the event that asked was not taken.
        self._bounce_later.discard((holder, key))
        self._bounce(holder, key, time.monotonic())
