"""Numbers on outgoing frames, so that a handler run again after a failover repeats none.

A handler whose owner process dies before the handler's changes and event number are
stored runs again on the new owner (``docs/architecture.md``, "Exactly once"). Its
frames are then sent twice, unless something drops the second copy before the socket.
Holding every frame until the handler's writes are stored (Cloudflare's output gate)
would cost each frame the latency of that write and would lose the frames of a
handler whose owner died after storing but before sending. Instead every frame a
handler sends is numbered, deterministically, by the event it handles, and the
gateway holding the socket drops a number it already delivered:

- The owner numbers each send call of a handler run of socket event ``(src, n)``
  (``src`` the socket whose event it is, ``n`` that event's number) with ``k`` = 1, 2, 3,
  ... whatever sockets the call reaches. A run again of the same event, if the handler
  is deterministic, makes the same calls with the same numbers.
- A number is ``(gen, a, low, src, n, k)``: ``gen`` is the owner's fencing token, ``a``
  the run's place among the runs this process started, ``low`` the lowest ``a`` of the
  object's runs still in flight (not yet stored). Runs of the same ``gen`` below ``low``
  were stored and can never run again, so a gateway forgets them.
- A gateway keeps, per socket, the numbers of the runs that might still run again (one
  for a turn-based object in the steady state, shared by every socket a broadcast
  reached) and drops a frame of ``(src, n)`` whose ``k`` is not past the one it
  delivered. Runs of earlier owners (``gen``) are kept until their source socket's next
  event shows up, at most :data:`MAX_PAST` of them.

Sends outside a socket event's handler (``on_start()``, RPC calls, alarms,
``broadcast_to()`` and group messages) are not numbered: they are delivered as often as
they are made, like the call or alarm that made them (at least once).
"""

from __future__ import annotations

import itertools
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Event

#: Runs of earlier owners a socket remembers (each failover in quick succession adds one).
MAX_PAST = 4

#: ``(gen, a, low, src, n, k)``; see the module's docstring.
Number = tuple[Any, ...]

_GEN, _A, _LOW, _SRC, _N, _K = range(6)

#: Run numbers of this process: increasing, so ``low`` says which runs are done.
_runs_started = itertools.count(1)


class Run:
    """One handler run of a socket event: numbers its sends."""

    __slots__ = ("a", "gen", "inflight", "k", "n", "src")

    def __init__(self, gen: int, src: str, n: int, inflight: dict[int, None]) -> None:
        self.gen = gen
        self.a = next(_runs_started)
        self.src = src
        self.n = n
        self.k = 0
        self.inflight = inflight

    def number(self) -> Number:
        self.k += 1
        # The first run still in flight (insertion order is ascending ``a``); after this
        # run ended (a task it started sends later), the runs after it.
        low = next(iter(self.inflight), self.a + 1)
        return (self.gen, self.a, low, self.src, self.n, self.k)


_current: ContextVar[Run | None] = ContextVar("durable_run", default=None)


class Runs:
    """A live object's numbered runs in flight (their ``a``, in ascending order)."""

    __slots__ = ("inflight",)

    def __init__(self) -> None:
        self.inflight: dict[int, None] = {}

    def begin(self, gen: int | None, event: Event) -> tuple[Run, Token[Run | None]] | None:
        """Number the sends of the handler run of ``event`` (until :meth:`end`).

        Only socket events, and only with fencing (several processes): a single process
        never runs a handler twice."""
        if gen is None or event.socket_id is None:
            return None
        # Events made by the owner itself (closes of dead processes' sockets, errors)
        # have no number: each is the socket's last event, so -1 names it.
        run = Run(gen, event.socket_id, -1 if event.seq is None else event.seq, self.inflight)
        self.inflight[run.a] = None
        return run, _current.set(run)

    def end(self, started: tuple[Run, Token[Run | None]] | None) -> None:
        """The run's writes are stored (or never will be by this owner)."""
        if started is not None:
            run, token = started
            _current.reset(token)
            self.inflight.pop(run.a, None)


def current_number() -> Number | None:
    """The number of a send made now: None outside a numbered run."""
    run = _current.get()
    return None if run is None else run.number()


def current_run() -> Run | None:
    """The numbered run a send made now belongs to (None outside one)."""
    return _current.get()


def first_delivery(sock: Any, number: Number) -> bool:
    """Whether the frame numbered ``number`` is new for ``sock`` (and note it); False
    for a frame of a run again that the socket already got.

    ``sock.marks`` holds the numbers of the runs that might run again: None, one number
    (the steady state), or a list of them.
    """
    marks = sock.marks
    if marks is None:
        sock.marks = number
        return True
    src, n = number[_SRC], number[_N]
    if type(marks) is tuple:
        if marks[_SRC] == src:
            if marks[_N] == n and number[_K] <= marks[_K]:
                return False
            sock.marks = number  # the same run further on, or a later event of src
            return True
        if marks[_GEN] == number[_GEN] and marks[_A] < number[_LOW]:
            sock.marks = number  # that run was stored
            return True
        marks = [marks]
    for mark in marks:
        if mark[_SRC] == src and mark[_N] == n and number[_K] <= mark[_K]:
            return False
    gen, low = number[_GEN], number[_LOW]
    kept = [m for m in marks if m[_SRC] != src and not (m[_GEN] == gen and m[_A] < low)]
    past = [i for i, m in enumerate(kept) if m[_GEN] != gen]
    if len(past) > MAX_PAST:
        drop = set(past[: len(past) - MAX_PAST])  # the oldest
        kept = [m for i, m in enumerate(kept) if i not in drop]
    if kept:
        kept.append(number)
        sock.marks = kept
    else:
        sock.marks = number
    return True
