"""Numbered outgoing frames (``django_durable.outgoing``): what a gateway drops and keeps.

The end-to-end proof is ``test_kill_9_of_the_owner_under_load_loses_and_repeats_nothing``
in ``tests/test_cluster.py`` (real daphne processes, the owner killed mid-handler). These
tests go through the cases that one run cannot all reach: the new owner handling another
socket's event before the one it runs again, handlers that interleave (``reentrant``),
a run again that sends less, several failovers in a row, and what a socket keeps.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from django_durable import framing
from django_durable.events import CALL, CLOSE, MESSAGE, CloseData, Event
from django_durable.outgoing import MAX_PAST, Runs, current_number, first_delivery


class Owner:
    """One owner of an object (one fencing token): runs handlers, numbers their sends."""

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.runs = Runs()

    def run(self, src: str, n: int, sends: int) -> list[tuple[Any, ...]]:
        """A whole handler run of event ``n`` of ``src`` that makes ``sends`` send calls."""
        started = self.runs.begin(self.gen, Event(MESSAGE, src, None, seq=n))
        try:
            return [current_number() for _ in range(sends)]  # type: ignore[misc]
        finally:
            self.runs.end(started)


def socket() -> Any:
    return SimpleNamespace(marks=None)


def deliver(sock: Any, numbers: list[tuple[Any, ...]]) -> list[int]:
    """The ``k`` of each frame the socket is given (the others are dropped)."""
    return [number[5] for number in numbers if first_delivery(sock, number)]


def test_a_run_numbers_its_send_calls_and_nothing_else_is_numbered() -> None:
    owner = Owner(gen=7)
    numbers = owner.run("A", 3, sends=3)
    assert [(n[0], n[3], n[4], n[5]) for n in numbers] == [(7, "A", 3, k) for k in (1, 2, 3)]
    assert current_number() is None  # after the run
    # No fencing (one process) or no socket event (a call, an alarm): no number.
    assert owner.runs.begin(None, Event(MESSAGE, "A", None, seq=1)) is None
    assert owner.runs.begin(7, Event(CALL, None, None)) is None
    # The owner's own events (a dead process's socket closed) are named by -1.
    started = owner.runs.begin(7, Event(CLOSE, "B", CloseData(1006, "", False)))
    assert current_number()[3:] == ("B", -1, 1)  # type: ignore[index]
    owner.runs.end(started)
    assert owner.runs.inflight == {}


def test_frames_of_one_owner_all_go_through_and_one_number_is_kept() -> None:
    owner = Owner(gen=1)
    sock = socket()
    for n in range(1, 50):
        src = "A" if n % 2 else "B"
        assert deliver(sock, owner.run(src, n, sends=2)) == [1, 2]
        assert isinstance(sock.marks, tuple)  # no list: one number, the last run's
        assert sock.marks[3:] == (src, n, 2)


def test_a_run_again_on_a_new_owner_repeats_nothing_and_loses_nothing() -> None:
    old, new = Owner(gen=1), Owner(gen=2)
    sender, observer = socket(), socket()
    # The old owner's run of (A, 5) sent 2 of its 4 frames (to both sockets), then died.
    first = old.run("A", 5, sends=4)[:2]
    assert deliver(sender, first) == [1, 2]
    assert deliver(observer, first) == [1, 2]
    # The new owner handles another socket's events first, and sends to both sockets...
    for n in (1, 2):
        assert deliver(observer, new.run("B", n, sends=1)) == [1]
        assert deliver(sender, new.run("C", n, sends=1)) == [1]
    # ... then runs (A, 5) again: frames 1 and 2 are dropped, 3 and 4 delivered.
    again = new.run("A", 5, sends=4)
    assert deliver(sender, again) == [3, 4]
    assert deliver(observer, again) == [3, 4]
    # And A's next event is new everywhere.
    assert deliver(sender, new.run("A", 6, sends=2)) == [1, 2]


def test_frames_repeated_on_the_wire_are_dropped_too() -> None:
    owner = Owner(gen=1)
    sock = socket()
    numbers = owner.run("A", 1, sends=3)
    assert deliver(sock, numbers + numbers[1:]) == [1, 2, 3]


def test_interleaved_runs_each_keep_their_numbers_until_stored() -> None:
    """A reentrant object: two runs in flight at once, the owner dies, both run again."""

    async def scenario() -> None:
        old, new = Owner(gen=1), Owner(gen=2)
        sock = socket()
        a_go, b_go = asyncio.Event(), asyncio.Event()
        sent: list[tuple[Any, ...]] = []

        async def run(src: str, n: int, mine: asyncio.Event, other: asyncio.Event) -> None:
            started = old.runs.begin(old.gen, Event(MESSAGE, src, None, seq=n))
            for _ in range(2):
                await mine.wait()
                mine.clear()
                sent.append(current_number())  # type: ignore[arg-type]
                other.set()
            # Died before storing: never ends (never leaves the runs in flight).
            assert started is not None

        tasks = [
            asyncio.create_task(run("A", 1, a_go, b_go)),
            asyncio.create_task(run("B", 1, b_go, a_go)),
        ]
        a_go.set()
        await asyncio.gather(*tasks)
        assert [(n[3], n[5]) for n in sent] == [("A", 1), ("B", 1), ("A", 2), ("B", 2)]
        assert all(n[2] == sent[0][1] for n in sent)  # low: A's run, still in flight
        assert deliver(sock, sent) == [1, 1, 2, 2]
        assert deliver(sock, new.run("B", 1, sends=3)) == [3]
        assert deliver(sock, new.run("A", 1, sends=3)) == [3]

    asyncio.run(scenario())


def test_a_run_again_that_sends_less_is_forgotten_at_its_sockets_next_event() -> None:
    old, new = Owner(gen=1), Owner(gen=2)
    sock = socket()
    assert deliver(sock, old.run("A", 5, sends=3)) == [1, 2, 3]
    assert deliver(sock, new.run("B", 1, sends=1)) == [1]
    assert deliver(sock, new.run("A", 5, sends=1)) == []  # it sent less the second time
    assert len(sock.marks) == 2  # (A, 5) may still be run again
    assert deliver(sock, new.run("A", 6, sends=1)) == [1]
    assert isinstance(sock.marks, tuple)  # A's next event: nothing of gen 1 is kept


def test_a_socket_keeps_the_runs_of_at_most_max_past_earlier_owners() -> None:
    sock = socket()
    owners = [Owner(gen=g) for g in range(1, MAX_PAST + 4)]
    for i, owner in enumerate(owners):
        assert deliver(sock, owner.run(f"S{i}", 1, sends=1)) == [1]
    assert len(sock.marks) == MAX_PAST + 1  # the current owner's, and MAX_PAST before it
    assert {m[0] for m in sock.marks} == {o.gen for o in owners[-MAX_PAST - 1 :]}


def test_numbers_do_not_reach_the_client() -> None:
    message = {"type": "websocket.send", "text": "x", framing.NUMBER: (1, 1, 1, "A", 1, 1)}
    assert framing.plain(message) == {"type": "websocket.send", "text": "x"}
    assert framing.frame(message) == {"type": "websocket.send", "text": "m\nx"}
