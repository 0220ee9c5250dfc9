"""A live object: one object awake in this process, with its mailbox and one worker.

The worker creates the instance on demand (``on_start()`` first), delivers events one
at a time (or, for ``reentrant`` classes, one at a time *per socket*; see
:mod:`django_durable.handling`), writes state changes to the session layer after each
handler, and ends when the object has been idle for ``IDLE_TIMEOUT``: that is
hibernation. The object's sockets stay with their gateways; the next event starts a
new worker, which loads the session again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from . import conf, metrics
from .events import CLOSE, CONNECT, ERROR, HIBERNATE, REJOIN, Event
from .exceptions import CorruptValue
from .flushing import SessionWrites
from .framing import NUMBER
from .gates import InputGate
from .handling import EventHandling
from .mailbox import Mailbox
from .outgoing import Run, Runs, current_run
from .overload import Backlog
from .ports import Ack
from .session.base import (
    CLOSED,
    ObjectSession,
    SessionWrite,
    SocketRecord,
    UpdateSocket,
)
from .state import DurableState
from .storage import DurableStorage

if TYPE_CHECKING:
    from .classes import DurableClass
    from .objects import DurableObject
    from .ports import Host

logger = logging.getLogger(__name__)


class LiveObject(EventHandling, SessionWrites):
    """An object that is awake in this process: its mailbox, session and instance."""

    def __init__(self, runtime: Host, cls: DurableClass, object_id: str, key: str) -> None:
        self.runtime = runtime
        self.cls = cls
        self.object_id = object_id
        self.key = key
        self.queue = Mailbox()
        self.session: ObjectSession = ObjectSession(key)
        self.instance: DurableObject | None = None
        self.gate = InputGate()
        self.inflight: set[asyncio.Task[None]] = set()
        #: Events to handle before the mailbox's (closes of sockets found dead at wake).
        self.front: deque[Event] = deque()
        #: Set when this process lost the object's lease: stop and hand events on.
        self.lost = False
        #: Cleared while this process could not renew the object's lease (Redis away):
        #: no handler starts until it is renewed again (or found lost).
        self.renewed = asyncio.Event()
        self.renewed.set()
        self._busy_sockets: dict[str, deque[Event]] = {}
        #: Numbered events that arrived ahead of their turn, by socket then number.
        self._held: dict[str, dict[int, Event]] = {}
        #: The last number admitted per socket, while it is ahead of the stored one
        #: (``record.seq``, which moves only when that event's handler is done).
        self._admitted: dict[str, int] = {}
        self._writes: list[SessionWrite] = []
        self._acks: list[Ack] = []
        #: Sockets whose connect() is running, until the gateway has its verdict.
        self._connecting: dict[str, Any] = {}
        #: Sockets set aside at load whose connection this object has closed.
        self._refused: set[str] = set()
        self.backlog = Backlog(self)
        #: Handler runs whose sends are numbered (outgoing.py), while in flight.
        self.runs = Runs()
        #: Events admitted and not yet delivered by the worker (``_run``'s batch).
        self._ready_left = 0
        #: Set when this worker stops after its next write (HIBERNATE_EAGERLY): it is
        #: out of the dispatcher, and that write gives the object up (``_last_flush``).
        self.ending = False
        self.releasing: asyncio.Future[None] | None = None
        #: Other processes whose gateways sent this live object events: those that
        #: may remember this process as its owner (told when it stops, see transports).
        self.senders: set[str] = set()
        #: The release that the next write carries (see ``flush``).
        self._release_pending = False
        self.holding: Run | None = None  #: the run whose frames may wait for its writes
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"durable:{key}")

    # Reaching sockets -------------------------------------------------------------------

    async def send(self, records: list[SocketRecord], message: dict[str, Any]) -> int:
        """Send to the connections behind ``records``, wherever held; how many."""
        if self._connecting:
            await self._early_verdicts(records)
        run = current_run()
        if run is not None:
            message[NUMBER] = run.number()  # a run again of this handler repeats no frame
        # Only the handler's own run may leave frames to go with its writes (a task it
        # started may send after they were stored): redis/pending_frames.py.
        hold = run is not None and run is self.holding
        return await self.runtime.transport.send(self.key, records, message, hold)

    async def close_socket(self, record: SocketRecord, code: int, reason: str) -> None:
        """Store pending writes, then close the socket's connection."""
        await self.flush()
        if self._connecting:
            await self._early_verdicts([record])
        await self.runtime.transport.close(self.key, record, code, reason)

    async def _early_verdicts(self, records: list[SocketRecord]) -> None:
        """``connect()`` sends to (or closes) a socket it accepted before returning: the
        accept, with its subprotocol, must reach the gateway before the frame does."""
        for record in records:
            if record.id in self._connecting and record.id in self.session.sockets:
                sock = self._connecting.pop(record.id)
                await self.flush()
                await self.runtime.transport.verdict(self.key, sock, record)

    def make_storage(self) -> DurableStorage:
        """The object's storage, fenced with this owner's token."""
        return DurableStorage(
            self.key,
            using=conf.get("DATABASE"),
            fence_token=self.runtime.layer.fence_token(self.key),
            gate=self.gate.closed if self.cls.reentrant else None,
            consumer=self.cls.durable_name,
            object_id=self.object_id,
            on_alarm_set=self.runtime.alarms.start,
        )

    # The worker -------------------------------------------------------------------------

    async def _run(self) -> None:
        runtime = self.runtime
        try:
            self.session = await runtime.layer.load(self.key)
            logger.debug("object %s woke with %d sockets", self.key, len(self.session.sockets))
            await runtime.transport.on_wake(self)
            while not self.lost:
                event = await self._next_event()
                if event is None:
                    break
                if event.kind == REJOIN:
                    # Sockets that Redis had lost and their gateways put back after this
                    # object loaded: known from now on (Redis has them: nothing to write).
                    for record in event.data:
                        self.session.sockets.setdefault(record.id, record)
                    continue
                if event.kind == HIBERNATE:
                    if self.inflight:
                        await asyncio.wait(list(self.inflight))
                    # Tell the caller whether this worker stops (or goes on with the
                    # events queued meanwhile, with a new instance).
                    stopping = self.lost or (self.queue.empty() and not self.front)
                    event.resolve(stopping)
                    if stopping:
                        break
                    self._discard_instance("hibernated")
                    metrics.inc("hibernations")
                    continue
                if event.socket_id in self.session.set_aside and event.kind != CONNECT:
                    await self._refuse_set_aside(event)
                    continue
                admitted = self._admit(event)
                for index, ready in enumerate(admitted):
                    self._ready_left = len(admitted) - index - 1
                    await self.wait_renewed()
                    if self.lost or self.ending:
                        await self.runtime.transport.reroute(self, ready)
                        continue
                    if self.instance is None:
                        await self._start()
                    if self.cls.reentrant:
                        await self.gate.wait_open()
                        self._spawn(ready)
                    else:
                        await self._deliver(ready)
                if self.ending or (
                    conf.get("HIBERNATE_EAGERLY")
                    and not self.cls.reentrant
                    and self.queue.empty()
                    and not self.front
                ):
                    break
        except Exception:
            logger.exception("object %s: dispatcher failed", self.key)
        finally:
            runtime.dispatcher.forget(self)
            leftover = [*self.front, *_drain(self.queue)]
            for held in self._held.values():
                leftover.extend(held[seq] for seq in sorted(held))
            for event in leftover:
                # After a lost lease (or a failure above): hand the events on.
                await runtime.transport.reroute(self, event)
            with contextlib.suppress(Exception):
                await self.flush()
            with contextlib.suppress(Exception):
                await runtime.transport.released(self)
            if self.instance is not None:
                metrics.inc("hibernations")
                logger.info("object %s hibernated", self.key)
            self._unlink()

    def _unlink(self) -> None:
        """Let reference counting free this live object as soon as its worker ended.

        Its instance's state refers back to it: left so, every wake would leave a cycle
        of some twenty objects to the cyclic garbage collector, and the collections it
        sets off walk every object of the process, every socket's included (SPEC §12:
        nothing per wake may cost a scan of the others). Anything that still refers to
        the instance (a task it started) keeps what it needs alive.
        """
        self.instance = None

    def lose(self) -> None:
        """This process no longer owns the object: stop after the running handler."""
        if not self.lost:
            logger.warning("object %s: ownership lost; handing events on", self.key)
            metrics.inc("lease_losses")
            self.lost = True
            self._discard_instance("ownership lost")
            self.queue.put_nowait(Event(HIBERNATE))
            self.renewed.set()

    def _admit(self, event: Event) -> list[Event]:
        """Numbered socket events in order, each once; others as they come."""
        seq = event.seq
        sid = event.socket_id
        if seq is None or sid is None or event.kind == CONNECT:
            return [event]
        record = self.session.sockets.get(sid)
        if record is None:
            return []  # a late duplicate of a socket's final event
        expected = self._admitted.get(sid, record.seq) + 1
        if seq < expected:
            if seq <= record.seq:  # handled and stored: say so again
                self._acks.append(Ack(record.holder, sid, record.seq))
            return []  # (else admitted and running: acknowledged when it is done)
        if seq > expected:
            self._held.setdefault(sid, {})[seq] = event
            return []
        ready = [event]
        held = self._held.get(sid)
        while held and expected + 1 in held:
            expected += 1
            ready.append(held.pop(expected))
        if held is not None and not held:
            del self._held[sid]
        self._admitted[sid] = expected
        return ready

    def handled(self, event: Event, record: SocketRecord | None) -> None:
        """A numbered event's handler is done: its number is stored with the handler's
        writes, then acknowledged. Not at admission: with several events admitted at
        once (held ones, or a reentrant object's), a flush of the first would record the
        later ones as handled, and an owner dying before they ran would lose them."""
        seq, sid = event.seq, event.socket_id
        if seq is None or sid is None or event.kind == CONNECT or record is None:
            return
        if self._admitted.get(sid) == seq:
            del self._admitted[sid]
        if seq <= record.seq:
            return
        record.seq = seq
        if sid in self.session.sockets:
            self._writes.append(UpdateSocket(record))
        self._acks.append(Ack(record.holder, sid, seq))

    async def _refuse_set_aside(self, event: Event) -> None:
        """An event of a socket whose record was corrupt (set aside at load): the object
        cannot serve it (no tags, no event number), so its connection is closed with
        1011 and the client can reconnect; its events are acknowledged, not re-sent."""
        sid = event.socket_id or ""
        record = SocketRecord(sid, holder=event.holder or self.runtime.process_id, state=CLOSED)
        if event.kind not in (CLOSE, ERROR) and sid not in self._refused:
            self._refused.add(sid)
            logger.warning(
                "object %s: closing socket %s, whose record was set aside", self.key, sid
            )
            error = CorruptValue(f"the record of socket {sid} was corrupt and set aside")
            await self.runtime.transport.kill(self.key, record, error)
        if event.seq is not None:
            self._acks.append(Ack(record.holder, sid, event.seq))
        try:
            await self.flush()
        except Exception:
            logger.exception("object %s: writing to the session layer failed", self.key)

    async def _next_event(self) -> Event | None:
        if self.front:
            return self.front.popleft()
        if not self.queue.empty():
            return self.queue.get_nowait()  # no idle timer for an event already here
        idle = conf.get("IDLE_TIMEOUT")
        while True:
            try:
                async with asyncio.timeout(idle):
                    return await self.queue.get()
            except TimeoutError:
                if self.queue.empty() and not self.inflight:
                    return None

    async def _start(self) -> None:
        # "re-created" when it had sockets or settings to come back to: nothing per
        # object is kept in the process to tell (SPEC §12).
        woke_with_state = not self.session.is_empty()
        self.instance = instance = self.cls._create(self.object_id, DurableState(self))
        metrics.inc("wakes")
        logger.info("object %s %s", self.key, "re-created" if woke_with_state else "created")
        timeout = self._timeout()
        try:
            async with asyncio.timeout(timeout):
                await instance.on_start()
        except TimeoutError:
            logger.error("object %s: on_start() ran past the event timeout", self.key)
        except Exception:
            logger.exception("object %s: on_start() raised", self.key)
        await self.flush_held()

    def _timeout(self) -> float | None:
        ms = self.session.event_timeout_ms
        return ms / 1000 if ms else None

    def _discard_instance(self, why: str) -> None:
        if self.instance is not None:
            logger.info("object %s: instance discarded (%s)", self.key, why)
        self.instance = None


def _drain(queue: Mailbox) -> list[Event]:
    events = []
    while not queue.empty():
        event = queue.get_nowait()
        if event.kind != HIBERNATE:
            events.append(event)
    return events
