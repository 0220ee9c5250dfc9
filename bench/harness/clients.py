"""Client processes holding many WebSocket connections (``websockets`` asyncio client).

One client process cannot open 10,000 sockets and timestamp 2,000 arrivals without
becoming the bottleneck, so :class:`Clients` spawns ``count`` processes, each running
:func:`worker_main` (``Clients.worker``), and drives them over pipes with small
commands. Sockets are kept by *group* (a variant of a benchmark: ``"durable"``,
``"channels"``...) and by the index of the server they are connected to. Each
process timestamps the arrivals of the message it is armed for with
``time.monotonic_ns``, one clock for every process of the machine, so a round's time
is the latest arrival minus the moment the trigger was sent.

Commands (a tuple; the answer is ``("ok", ...)`` or ``("error", text)``):

- ``("connect", group, [(server index, url, count), ...], concurrency)``;
- ``("arm", group, expected)``: count arrivals of the text ``expected`` from now on;
- ``("fire", group, server index, text)``: send ``text`` from the first socket of the
  group on that server; answers the send time;
- ``("wait", group, timeout)``: until every socket of the group has the message;
  answers the count and, per server index, ``[count, first, last]``;
- ``("wake", group, text, reply, timeout)``: every socket sends ``text`` at once;
  answers the seconds until each has ``reply``;
- ``("close",)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from harness.measure import raise_nofile

#: The group of benchmarks that have one (core_bench.py, many_objects.py).
MAIN = "main"


def worker_main(conn: Any, index: int) -> None:
    """What each client process runs (a module-level function: processes are spawned)."""
    raise_nofile()
    try:
        asyncio.run(_worker(conn))
    finally:
        conn.close()


def _matches(message: Any, expected: str | None) -> bool:
    # (A resuming client's frame: "b <epoch> <offset>\n" then the message.)
    return message == expected or (
        isinstance(message, str) and message[:2] == "b " and message.partition("\n")[2] == expected
    )


async def _worker(conn: Any) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    #: group -> server index -> sockets
    sockets: dict[str, dict[int, list[Any]]] = {}
    states: dict[str, SimpleNamespace] = {}
    readers: list[asyncio.Task[None]] = []

    def state(group: str) -> SimpleNamespace:
        if group not in states:
            states[group] = SimpleNamespace(
                expected=None, total=0, count=0, per_server={}, done=asyncio.Event()
            )
        return states[group]

    def arm(group: str, expected: str) -> SimpleNamespace:
        st = state(group)
        st.expected, st.count, st.per_server = expected, 0, {}
        st.done = asyncio.Event()
        return st

    async def reader(ws: Any, st: SimpleNamespace, index: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if _matches(message, st.expected):
                    now = time.monotonic_ns()
                    st.count += 1
                    entry = st.per_server.setdefault(index, [0, now, now])
                    entry[0] += 1
                    entry[2] = now
                    if st.count >= st.total:
                        st.done.set()

    async def open_one(group: str, index: int, url: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            ws = await connect(url, ping_interval=None, compression=None, open_timeout=300)
        st = state(group)
        sockets.setdefault(group, {}).setdefault(index, []).append(ws)
        st.total += 1
        readers.append(loop.create_task(reader(ws, st, index)))

    while True:
        command = await loop.run_in_executor(None, conn.recv)
        op = command[0]
        try:
            if op == "connect":
                _, group, plan, concurrency = command
                gate = asyncio.Semaphore(concurrency)
                started = time.monotonic()
                await asyncio.gather(
                    *(
                        open_one(group, index, url, gate)
                        for index, url, count in plan
                        for _ in range(count)
                    )
                )
                conn.send(("ok", time.monotonic() - started, state(group).total))
            elif op == "arm":
                arm(command[1], command[2])
                conn.send(("ok",))
            elif op == "fire":
                _, group, index, text = command
                sent_at = time.monotonic_ns()
                await sockets[group][index][0].send(text)
                conn.send(("ok", sent_at))
            elif op == "wait":
                _, group, timeout = command
                st = state(group)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(st.done.wait(), timeout)
                conn.send(("ok", st.count, st.per_server))
            elif op == "wake":
                _, group, text, reply, timeout = command
                st = arm(group, reply)
                every = [ws for by_server in sockets[group].values() for ws in by_server]
                started = time.monotonic()
                await asyncio.gather(*(ws.send(text) for ws in every))
                await asyncio.wait_for(st.done.wait(), timeout)
                conn.send(("ok", time.monotonic() - started, st.count))
            elif op == "close":
                every = [
                    ws for by_server in sockets.values() for s in by_server.values() for ws in s
                ]
                await asyncio.gather(*(ws.close() for ws in every), return_exceptions=True)
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                conn.send(("ok",))
                return
            else:
                conn.send(("error", f"unknown command {op!r}"))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` shares that differ by at most one."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Clients:
    """``count`` client processes, each holding a share of the sockets."""

    #: What each client process runs.
    worker = staticmethod(worker_main)

    def __init__(self, count: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=self.worker, args=(child, index), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def __len__(self) -> int:
        return len(self.pipes)

    def _answer(self, index: int, timeout: float) -> tuple[Any, ...]:
        if not self.pipes[index].poll(timeout):
            raise RuntimeError(f"client process {index} did not answer within {timeout} s")
        answer = self.pipes[index].recv()
        if answer[0] != "ok":
            raise RuntimeError(f"client process {index}: {answer[1]}")
        return answer  # type: ignore[no-any-return]

    def ask(self, index: int, command: tuple[Any, ...], timeout: float = 300.0) -> tuple[Any, ...]:
        self.pipes[index].send(command)
        return self._answer(index, timeout)

    def ask_all(
        self, commands: list[tuple[Any, ...]], timeout: float = 300.0
    ) -> list[tuple[Any, ...]]:
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return [self._answer(i, timeout) for i in range(len(self.pipes))]

    # -- sockets ---------------------------------------------------------------------------

    def connect(self, url: str, total: int, concurrency: int, group: str = MAIN) -> float:
        """``total`` sockets to ``url`` (server index 0), split over the processes;
        the seconds it took."""
        started = time.monotonic()
        per_proc = max(1, concurrency // len(self))
        commands = [("connect", group, [(0, url, n)], per_proc) for n in shares(total, len(self))]
        answers = self.ask_all(commands)
        assert sum(a[2] for a in answers) == total, answers
        return time.monotonic() - started

    def connect_urls(
        self, urls: list[str], concurrency: int, group: str = MAIN, timeout: float = 1800
    ) -> None:
        """One socket to each of ``urls``, dealt round-robin over the processes."""
        n = len(self)
        per_proc = max(1, concurrency // n)
        plans = [[(0, url, 1) for url in urls[i::n]] for i in range(n)]
        self.ask_all([("connect", group, plan, per_proc) for plan in plans], timeout=timeout)

    def wake(self, text: str = "warmup", reply: str = "warm", timeout: float = 1800) -> float:
        """Every socket sends ``text`` at once; seconds until every one has ``reply``."""
        started = time.monotonic()
        self.ask_all([("wake", MAIN, text, reply, timeout)] * len(self), timeout=timeout + 30)
        return time.monotonic() - started

    # -- one broadcast round ---------------------------------------------------------------

    def round(
        self,
        group: str,
        expected: str,
        trigger: str,
        server: int = 0,
        timeout: float = 60.0,
        before_fire: Callable[[], None] | None = None,
    ) -> tuple[int, int, dict[int, list[int]]]:
        """Arm every process for ``expected``, call ``before_fire``, send ``trigger``
        from process 0's first socket on ``server``, wait for the arrivals: (sent_at,
        received, per server index ``[count, first, last]``), times in
        ``monotonic_ns``."""
        self.ask_all([("arm", group, expected)] * len(self))
        if before_fire is not None:
            before_fire()
        sent_at = self.ask(0, ("fire", group, server, trigger))[1]
        answers = self.ask_all([("wait", group, timeout)] * len(self), timeout=timeout + 30)
        per_server: dict[int, list[int]] = {}
        for answer in answers:
            for index, (count, first, last) in answer[2].items():
                entry = per_server.get(int(index))
                if entry is None:
                    per_server[int(index)] = [count, first, last]
                else:
                    entry[0] += count
                    entry[1] = min(entry[1], first)
                    entry[2] = max(entry[2], last)
        return sent_at, sum(a[1] for a in answers), per_server

    def broadcast_round(self, number: int, timeout: float = 60.0) -> dict[str, Any]:
        """``bcast:<n>`` sent, ``b:<n>`` expected on every socket of the main group."""
        sent_at, received, per_server = self.round(
            MAIN, f"b:{number}", f"bcast:{number}", timeout=timeout
        )
        lasts = [e[2] for e in per_server.values()]
        firsts = [e[1] for e in per_server.values()]
        return {
            "ms": (max(lasts) - sent_at) / 1e6 if lasts else None,
            "first_ms": (min(firsts) - sent_at) / 1e6 if firsts else None,
            "received": received,
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask_all([("close",)] * len(self), timeout=120)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
