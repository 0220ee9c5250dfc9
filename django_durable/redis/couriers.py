"""Messages to other processes: one courier per destination, in order, in batches.

Every message a process sends another one goes into that process's inbox (a Redis
list, :mod:`~django_durable.redis.inbox`) through the courier of that destination: a
queue and one task that pushes what is queued with one script call
(``PUSH_BOUNDED``), however many messages wait. So:

- messages to one process arrive in the order they were posted (a verdict before the
  frames that follow it, the frames of a handler in order, a close after them);
- many events and frames are in flight at once, in one round trip per batch rather
  than one each (a gateway waits for its own event's push, not for its handler);
- acknowledgements are never a message of their own while other messages go the same
  way: :meth:`Couriers.ack` keeps them (per socket, the highest number) and the next
  push to that process carries them, or, when nothing else goes there within
  :data:`ACK_DELAY` (or :data:`ACK_BATCH` events were acknowledged meanwhile), a push
  of their own does. A gateway needs them only to forget events from its outboxes
  and to count what each socket has waiting (``MAX_SOCKET_QUEUED_EVENTS``), so they
  may be late; a stream of events from one process to an object then costs one
  acknowledgement (a push and a pop) per :data:`ACK_DELAY` rather than per event.

The inbox is bounded (the channel layer's ``capacity`` for the process channel, 100 by
default): the script pushes only what fits. A sender whose destination is full waits
(the rules of :mod:`django_durable.delivery`): with a growing pause, bounded by its
timeout (then :class:`~django_durable.exceptions.DeliveryFailed`), and, when asked,
giving up at once (:class:`~django_durable.delivery.HolderGone`) when the destination's
heartbeat shows it died. A lost connection to Redis fails the batch in flight with
:class:`~django_durable.exceptions.SessionLayerUnavailable`: its senders decide whether
to retry (frames) or to hold (events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..delivery import (
    FIRST_PAUSE,
    GONE_CHECK_INTERVAL,
    LONGEST_PAUSE,
    SEND_TIMEOUT,
    HolderGone,
    is_connection_error,
)
from ..exceptions import DeliveryFailed, SessionLayerUnavailable
from .inbox import pack
from .messages import AckMessage
from .scripts import PUSH_BOUNDED

if TYPE_CHECKING:
    from .layer import RedisSessionLayer

logger = logging.getLogger(__name__)

#: Seconds acknowledgements wait for another message to the same process to carry them.
ACK_DELAY = 0.05
#: Acknowledged events after which they go at once, without waiting for ``ACK_DELAY``.
ACK_BATCH = 100
#: Messages pushed in one script call at most.
MAX_BATCH = 128
#: Seconds a courier with nothing to carry stays before its task ends.
IDLE_END = 30.0


@dataclass(slots=True)
class Parcel:
    """One message on its way, and who waits for it."""

    data: bytes
    kind: str
    #: Resolved once the message is in the destination's inbox (None: nobody waits).
    future: asyncio.Future[None] | None
    deadline: float
    #: Give up when the destination's heartbeat shows it died (frames to its sockets).
    watch: bool
    #: When to look at that heartbeat next while the inbox is full (0: at the first
    #: refusal, so that a process already known dead is given up at once).
    next_look: float = 0.0


class Courier:
    """The messages for one process, in the order they were posted."""

    __slots__ = (
        "acks",
        "acks_since",
        "blocked",
        "client",
        "delaying",
        "dest",
        "key",
        "parcels",
        "pushing_since",
        "task",
        "untold",
        "wake",
    )

    def __init__(self, dest: str, key: str, client: Any) -> None:
        self.dest = dest
        #: The destination's inbox, and the connection pool of its host.
        self.key = key
        self.client = client
        self.parcels: deque[Parcel] = deque()
        #: socket id -> highest event number handled, not yet told.
        self.acks: dict[str, int] = {}
        #: When the oldest of ``acks`` was noted (they go on their own ACK_DELAY later).
        self.acks_since = 0.0
        #: Events acknowledged into ``acks`` since they last went.
        self.untold = 0
        #: Set by a new message (and by acknowledgements, unless they already wait).
        self.wake = asyncio.Event()
        #: True while acknowledgements wait for a message to carry them.
        self.delaying = False
        #: True from a push refused (full inbox) or failed until one goes through whole.
        self.blocked = False
        #: When the push in flight started (0: none).
        self.pushing_since = 0.0
        self.task: asyncio.Task[None] | None = None


def _pending(parcel: Parcel) -> bool:
    return parcel.future is None or not parcel.future.done()


class Couriers:
    """This process's couriers, one per process it sends to."""

    def __init__(
        self,
        layer: RedisSessionLayer,
        capacity: Callable[[str], int],
        gone: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.layer = layer
        self._capacity = capacity
        self._gone = gone
        self._push = layer.redis.register_script(PUSH_BOUNDED)
        self.couriers: dict[str, Courier] = {}

    def post(
        self,
        dest: str,
        message: Any,
        *,
        wait: bool = True,
        watch: bool = False,
        timeout: float | None = None,
    ) -> asyncio.Future[None] | None:
        """Queue ``message`` for ``dest``; the future (with ``wait``) resolves once it is
        in ``dest``'s inbox, or fails (see the module's docstring)."""
        courier = self._courier(dest)
        future = asyncio.get_running_loop().create_future() if wait else None
        kind = str(message.get("type", "?"))
        deadline = time.monotonic() + (SEND_TIMEOUT if timeout is None else timeout)
        courier.parcels.append(Parcel(pack(message), kind, future, deadline, watch))
        courier.wake.set()
        return future

    async def send(
        self,
        dest: str,
        message: Any,
        *,
        watch: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (a deadline over several tries)
    ) -> None:
        """Post ``message`` and wait until it is in ``dest``'s inbox; raises on failure."""
        future = self.post(dest, message, watch=watch, timeout=timeout)
        assert future is not None
        await future

    def flowing(self, dest: str, stall_after: float) -> bool:
        """Whether messages to ``dest`` go through at once: no push refused or failed
        since the last that went through whole, none in flight for ``stall_after``
        seconds, and not more queued than one push takes. A sender that need not know
        when its message is in the inbox may then go on without waiting for it."""
        courier = self.couriers.get(dest)
        if courier is None:
            return True
        if courier.blocked or len(courier.parcels) >= MAX_BATCH:
            return False
        since = courier.pushing_since
        return not since or time.monotonic() - since < stall_after

    def ack(self, dest: str, pairs: list[list[Any]]) -> None:
        """Tell ``dest`` these ``[socket id, number]`` with its next message (or soon)."""
        courier = self._courier(dest)
        acks = courier.acks
        if not acks:
            courier.acks_since = time.monotonic()
        for sid, seq in pairs:
            if acks.get(sid, -1) < seq:
                acks[sid] = seq
        courier.untold += len(pairs)
        if not courier.delaying or courier.untold >= ACK_BATCH:
            courier.wake.set()

    def take_acks(self, dest: str) -> dict[str, int]:
        """The acknowledgements waiting for ``dest`` (socket id -> number), for a push
        made elsewhere (``redis/pending_frames.py``); :meth:`ack` them again if it fails."""
        courier = self.couriers.get(dest)
        if courier is None or not courier.acks:
            return {}
        acks, courier.acks = courier.acks, {}
        courier.untold = 0
        return acks

    def forget(self, dest: str) -> None:
        """Give up what waits for ``dest`` (it died): nobody will ever read it."""
        courier = self.couriers.get(dest)
        if courier is not None:
            self._fail(courier, list(courier.parcels), HolderGone(dest))
            courier.parcels.clear()
            courier.acks.clear()

    def _courier(self, dest: str) -> Courier:
        courier = self.couriers.get(dest)
        if courier is None:
            key, client = self.layer.key_names.inbox(dest), self.layer.redis_for(dest)
            courier = self.couriers[dest] = Courier(dest, key, client)
        if courier.task is None or courier.task.done():
            courier.task = asyncio.get_running_loop().create_task(
                self._run(courier), name="durable-courier"
            )
        return courier

    # The courier's task -------------------------------------------------------------------

    async def _run(self, courier: Courier) -> None:
        pause = FIRST_PAUSE
        while True:
            if not await self._ready(courier):
                if self.couriers.get(courier.dest) is courier:
                    del self.couriers[courier.dest]
                return
            batch: list[Parcel] = []
            while courier.parcels and len(batch) < MAX_BATCH:
                parcel = courier.parcels.popleft()
                if _pending(parcel):  # (one whose sender stopped waiting is not sent)
                    batch.append(parcel)
            acks, courier.acks = courier.acks, {}
            courier.untold = 0
            elements = [p.data for p in batch]
            if acks:
                ack = AckMessage(type="durable.ack", acks=[[s, n] for s, n in acks.items()])
                elements.insert(0, pack(ack))
            if not elements:
                continue
            courier.pushing_since = time.monotonic()
            try:
                pushed = await self._push_to(courier, elements)
            except asyncio.CancelledError:
                courier.parcels.extendleft(reversed(batch))
                raise
            except Exception as exc:
                courier.pushing_since = 0.0
                courier.blocked = True
                self._merge_acks(courier, acks)
                if is_connection_error(exc):
                    error: Exception = SessionLayerUnavailable(f"Redis is unreachable: {exc}")
                else:
                    error = exc
                metrics.inc("remote_send_failures")
                self._fail(courier, batch, error)
                # Acknowledgements stay for the next try: not in a tight loop.
                await asyncio.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE)
                continue
            courier.pushing_since = 0.0
            if acks:
                if pushed:
                    pushed -= 1
                else:
                    self._merge_acks(courier, acks)
            for parcel in batch[:pushed]:
                if parcel.future is not None and not parcel.future.done():
                    parcel.future.set_result(None)
            rest = batch[pushed:]
            if not rest:
                courier.blocked = False
                pause = FIRST_PAUSE
                continue
            courier.blocked = True
            # The inbox is full: wait, as a sender into a full channel does.
            courier.parcels.extendleft(reversed(rest))
            metrics.inc("remote_send_retries")
            now = time.monotonic()
            watching = [p for p in courier.parcels if p.watch]
            if watching and min(p.next_look for p in watching) <= now:
                for parcel in watching:
                    parcel.next_look = now + GONE_CHECK_INTERVAL
                if await self._gone(courier.dest):
                    self.forget(courier.dest)
                    continue
            self._expire(courier, now + pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    async def _ready(self, courier: Courier) -> bool:
        """Wait until there is something to push (False: idle long enough to stop)."""
        while not courier.parcels:
            courier.wake.clear()
            if courier.acks:
                # A moment for a message that can carry them; then they go alone. (A
                # push made elsewhere may take them meanwhile: the moment is counted
                # from the oldest of those left.)
                courier.delaying = True
                try:
                    while courier.acks and not courier.wake.is_set():
                        left = courier.acks_since + ACK_DELAY - time.monotonic()
                        if left <= 0:
                            break
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(left):
                                await courier.wake.wait()
                finally:
                    courier.delaying = False
                return True
            try:
                async with asyncio.timeout(IDLE_END):
                    await courier.wake.wait()
            except TimeoutError:
                return bool(courier.parcels or courier.acks)
        return True

    async def _push_to(self, courier: Courier, elements: list[bytes]) -> int:
        pushed = await self._push(
            keys=[courier.key],
            args=[self._capacity(courier.dest), self.layer.inbox_ttl_ms, *elements],
            client=courier.client,
        )
        return int(pushed)

    @staticmethod
    def _merge_acks(courier: Courier, acks: dict[str, int]) -> None:
        for sid, seq in acks.items():
            if courier.acks.get(sid, -1) < seq:
                courier.acks[sid] = seq

    def _expire(self, courier: Courier, when: float) -> None:
        """Fail the messages whose deadline comes before ``when``."""
        expired = [p for p in courier.parcels if p.deadline < when]
        if not expired:
            return
        metrics.inc("remote_send_failures", len(expired))
        error = DeliveryFailed(f"the inbox of process {courier.dest} stayed full")
        self._fail(courier, expired, error)
        gone = set(map(id, expired))
        courier.parcels = deque(p for p in courier.parcels if id(p) not in gone)

    @staticmethod
    def _fail(courier: Courier, parcels: list[Parcel], error: Exception) -> None:
        dropped: dict[str, int] = {}
        for parcel in parcels:
            if parcel.future is None:
                dropped[parcel.kind] = dropped.get(parcel.kind, 0) + 1
            elif not parcel.future.done():
                parcel.future.set_exception(error)
        if dropped:
            logger.warning("messages to %s not delivered (%s): %s", courier.dest, error, dropped)
