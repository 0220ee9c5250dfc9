"""A handler's frames for other processes' sockets, pushed with the handler's writes.

A part of :class:`~django_durable.redis.transport.RedisTransport`. Owner-local, an
echo costs the owner one Redis round trip before its next event: the fenced write of
the handler's changes and the event's number. A reply to a socket of another process
used to cost a second one first: ``await ws.send()`` waited for the frame's push into
that process's inbox (the frame must be in Redis before the event is recorded handled,
or a ``kill -9`` between the two would lose it). So while the handler of a socket event
of a turn-based object runs, a frame for another process is *held* here instead
(:meth:`hold`) and goes into that process's inbox in the same script as the fenced
write (:meth:`store`): in Redis exactly when the event is recorded handled, never one
without the other, in one round trip. ``ws.send()`` returns at once.

What keeps every guarantee of the frames (``docs/architecture.md``, "Exactly once"):

- **Order per socket.** Anything else this object sends to a socket by another path
  (a frame it does not hold, a close, a kill, a verdict, ``broadcast_to()``) first
  pushes what is held (:meth:`push_pending`, waiting as any send does), so nothing
  overtakes a held frame. Only the handler's own run holds: a task an earlier handler
  started, ``on_start()``, alarms and stub calls send as before; ``reentrant`` objects
  never hold (their handlers interleave, and an event's number may be stored by
  another handler's write).
- **Not stored, not pushed.** When the fenced write is refused (``OwnershipLost``)
  nothing is pushed: the event is handled again by the new owner, whose run makes the
  same frames (numbered, so the client gets each once). When it fails otherwise
  (Redis away) the frames stay with the writes and go with their retry (a frame pushed
  twice by a retry is dropped by its number at the gateway). A handler that *raises*
  is recorded handled, as always, so its frames are pushed with that record: exactly
  what the client saw before, when each frame went out at once.
- **Bounded, failures reported.** The script pushes regardless of the inbox's bound
  (the frames are already sent, as far as the handler knows) and returns each inbox's
  length. A process whose inbox is then past its bound is remembered: the next frame
  for it is not held but sent the old way, waiting (bounded) for room and raising
  ``DeliveryFailed`` in the handler if none comes; the mark goes once a push to it
  goes through. A handler holds at most :data:`HOLD_AT_MOST` frames per process (then
  they are pushed the old way, waiting for room), so one push passes the bound by at
  most that much, and nothing is held for a process whose courier is not flowing.
  So the handler learns of a full inbox from a later ``ws.send()`` rather than the one
  whose frame overfilled it; no frame is ever dropped silently.
- **Not late.** A handler still running :data:`HOLD_FOR` after its first held frame
  (it awaits a storage call, an API) has its frames pushed the old way meanwhile, so
  a slow handler does not hold its frames back until it ends.
- **One host.** Only inboxes on the object's Redis host can be in its script; with
  several ``hosts``, frames for a process whose inbox is elsewhere go the old way.

Acknowledgements waiting for a process the frames go to ride in the same push.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from ..delivery import HolderGone
from ..exceptions import OwnershipLost
from ..session.base import ObjectSession, SessionWrite
from .couriers import MAX_BATCH
from .held import STALL_AFTER
from .inbox import pack
from .messages import AckMessage, SendMessage
from .parts import TransportParts

logger = logging.getLogger(__name__)

#: Frames a handler holds for one process at most before they are pushed the old way.
HOLD_AT_MOST = MAX_BATCH
#: Seconds a held frame waits for its handler's writes at most: a handler still running
#: then (it awaits something else) has its frames pushed the old way meanwhile.
HOLD_FOR = 0.002


class PendingFrames(TransportParts):
    """Holds a running handler's frames for other processes until its writes go."""

    def _may_hold(self, key: str, dest: str) -> bool:
        """Whether a frame for ``dest`` may wait for the object's writes."""
        return (
            dest not in self._over_bound
            and self.couriers.flowing(dest, STALL_AFTER)
            and self.layer.redis_for(dest) is self.layer.redis_for(key)
        )

    async def hold(self, key: str, dest: str, message: SendMessage) -> bool:
        """Keep ``message`` for :meth:`store` if it may wait; False: send it now."""
        self._raise_late_failure(key)
        if key in self._pushing or not self._may_hold(key, dest):
            return False
        if key not in self._pending:
            loop = asyncio.get_running_loop()
            self._late[key] = loop.call_later(HOLD_FOR, self._push_late, key)
        frames = self._pending.setdefault(key, {}).setdefault(dest, [])
        if len(frames) >= min(HOLD_AT_MOST, self._inbox_capacity(dest)):
            await self.push_pending(key)  # waits for room, like a send into a full inbox
            frames = self._pending.setdefault(key, {}).setdefault(dest, [])
        frames.append(message)
        return True

    async def push_pending(self, key: str) -> None:
        """Push what ``key``'s handler holds now, the old way (each frame waited for, in
        order), before something else reaches its sockets; raises the first failure
        (``DeliveryFailed``) after trying every process. One task at a time per object
        (another one's close may come while the handler runs): the others wait for it."""
        await self._pushed(key)
        pending = self._take(key)
        if pending:
            with self._pushing_now(key):
                await self._push_each(pending)
        self._raise_late_failure(key)

    def _take(self, key: str) -> dict[str, list[SendMessage]] | None:
        """What ``key`` holds, taken (and its timer stopped)."""
        timer = self._late.pop(key, None)
        if timer is not None:
            timer.cancel()
        return self._pending.pop(key, None)

    def _push_late(self, key: str) -> None:
        """The handler runs on past :data:`HOLD_FOR`: its frames go now, not at its end;
        a failure is raised by its next send (or logged when it is done)."""
        self._late.pop(key, None)

        async def push() -> None:
            try:
                await self.push_pending(key)
            except Exception as exc:
                self._late_failure[key] = exc

        self._chore(push())

    def _raise_late_failure(self, key: str) -> None:
        failure = self._late_failure.pop(key, None)
        if failure is not None:
            raise failure

    async def _pushed(self, key: str) -> None:
        """Wait until no task pushes ``key``'s held frames (they are all in Redis)."""
        while (pushing := self._pushing.get(key)) is not None:
            await pushing.wait()

    @contextlib.contextmanager
    def _pushing_now(self, key: str) -> Iterator[None]:
        """Frames of ``key`` on their way: nothing else of it may overtake them."""
        done = self._pushing[key] = asyncio.Event()
        try:
            yield
        finally:
            del self._pushing[key]
            done.set()

    async def _push_each(self, pending: dict[str, list[SendMessage]]) -> None:
        failure: Exception | None = None
        for dest, messages in pending.items():
            for message in messages:
                try:
                    if not await self._push_now(dest, message):
                        break
                except Exception as exc:
                    failure = failure or exc
                    break  # (the next would wait as long, and fail the same way)
        if failure is not None:
            raise failure

    async def _push_now(self, dest: str, message: SendMessage) -> bool:
        """Push one frame message into ``dest``'s inbox, waiting (bounded) for room; False
        if ``dest`` is gone (its sockets get websocket_close(1006) from the maintenance).
        Other failures (``DeliveryFailed``) raise, and ``dest`` stays marked over bound."""
        try:
            await self._send_retrying(dest, message, watch=True)
        except HolderGone:
            self._over_bound.discard(dest)
            return False
        self._over_bound.discard(dest)
        return True

    async def push_held(self, key: str) -> None:
        """:meth:`push_pending` where no handler can be told of a failure (its handler is
        done, or a kill or verdict follows): failures are logged."""
        try:
            await self.push_pending(key)
        except Exception:
            logger.exception("object %s: frames of a finished handler not delivered", key)

    def drop_pending(self, key: str) -> None:
        """The object stopped here: what it still holds belongs to writes never stored
        (its events are handled again by the next owner)."""
        self._late_failure.pop(key, None)
        dropped = self._take(key)
        if dropped:
            count = sum(len(m) for m in dropped.values())
            logger.warning("object %s: %d held frames dropped with unstored writes", key, count)

    async def store(
        self,
        key: str,
        writes: list[SessionWrite],
        session: ObjectSession,
        release: bool = False,
    ) -> None:
        """The writes, and the frames held, in one fenced script: all or nothing (and
        not before frames another task is pushing are in: the writes record them sent)."""
        await self._pushed(key)
        pending = self._take(key) or {}
        pushes: list[tuple[str, list[bytes]]] = []
        riding: dict[str, dict[str, int]] = {}
        for dest, messages in pending.items():
            elements = [pack(m) for m in messages]
            acks = riding[dest] = self.couriers.take_acks(dest)
            if acks:
                ack = AckMessage(type="durable.ack", acks=[[s, n] for s, n in acks.items()])
                elements.insert(0, pack(ack))
            pushes.append((self.layer.key_names.inbox(dest), elements))
        try:
            with self._pushing_now(key) if pushes else contextlib.nullcontext():
                lengths = await self.layer.apply_and_push(key, writes, session, pushes, release)
        except BaseException as exc:
            for dest, acks in riding.items():
                if acks:
                    self.couriers.ack(dest, [[s, n] for s, n in acks.items()])
            if pending and not isinstance(exc, OwnershipLost):
                # Kept with the writes for their retry, before anything held since.
                later = self._take(key) or {}
                for dest, messages in later.items():
                    pending.setdefault(dest, []).extend(messages)
                self._pending[key] = pending
            raise
        for dest, length in zip(pending, lengths, strict=False):
            if length > self._inbox_capacity(dest):
                self._over_bound.add(dest)
