"""An object's mailbox: one lane per socket, served in turn, and its size.

A plain FIFO queue lets one flooding socket put thousands of events ahead of everyone
else's: the others wait behind the flood. Here each socket's events wait in a lane of
their own (so each socket's order is kept) and the worker takes one event from each
lane in turn, so another socket's message waits for at most one event per busy socket.
Events of no socket (stub calls, alarms, hibernation, re-registered sockets) go first.

The mailbox also counts what it holds (events and message bytes, per socket too), which
is what the dispatcher bounds: past ``MAX_QUEUED_EVENTS``/``MAX_QUEUED_BYTES`` it closes
the socket with the most waiting and refuses stub calls (``Overloaded``).
"""

from __future__ import annotations

import asyncio
from collections import deque

from .events import MESSAGE, Event


def event_size(event: Event) -> int:
    """What an event's message costs (its length; str length as a cheap estimate)."""
    if event.kind == MESSAGE and isinstance(event.data, (str, bytes)):
        return len(event.data)
    return 0


class Mailbox:
    """One object's waiting events: one lane per socket served in turn, calls first."""

    def __init__(self) -> None:
        self._control: deque[Event] = deque()
        self._lanes: dict[str, deque[Event]] = {}
        #: Socket ids with events waiting, in the order their turns come.
        self._turns: deque[str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.count = 0
        self.nbytes = 0
        #: Message bytes waiting per socket.
        self.socket_bytes: dict[str, int] = {}

    def qsize(self) -> int:
        """Events waiting."""
        return self.count

    def empty(self) -> bool:
        """Whether nothing waits."""
        return self.count == 0

    def put_nowait(self, event: Event) -> None:
        """Queue an event in its socket's lane."""
        sid = event.socket_id
        if sid is None:
            self._control.append(event)
        else:
            lane = self._lanes.get(sid)
            if lane is None:
                lane = self._lanes[sid] = deque()
                self._turns.append(sid)
            lane.append(event)
            size = event_size(event)
            self.nbytes += size
            self.socket_bytes[sid] = self.socket_bytes.get(sid, 0) + size
        self.count += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Event:
        """The next event, lanes in turn."""
        if self._control:
            self.count -= 1
            return self._control.popleft()
        if not self._turns:
            raise asyncio.QueueEmpty
        sid = self._turns.popleft()
        lane = self._lanes[sid]
        event = lane.popleft()
        if lane:
            self._turns.append(sid)
        else:
            del self._lanes[sid]
        size = event_size(event)
        self.nbytes -= size
        left = self.socket_bytes.get(sid, 0) - size
        if sid in self._lanes:
            self.socket_bytes[sid] = left
        else:
            self.socket_bytes.pop(sid, None)
        self.count -= 1
        return event

    async def get(self) -> Event:
        """Wait for the next event."""
        while not self.count:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()

    def heaviest_socket(self, exclude: set[str]) -> str | None:
        """The socket with the most waiting (bytes, then events), but those in ``exclude``:
        the cause of the backlog."""
        candidates = [sid for sid in self._lanes if sid not in exclude]
        if not candidates:
            return None
        return max(candidates, key=lambda s: (self.socket_bytes.get(s, 0), len(self._lanes[s])))

    def waiting(self, sid: str) -> int:
        """Events waiting per socket."""
        lane = self._lanes.get(sid)
        return len(lane) if lane else 0
