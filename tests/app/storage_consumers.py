"""Objects for the storage, alarm and stub tests."""

from __future__ import annotations

import json
import os
from collections import Counter

from django_durable import DurableConsumer, rpc

#: Per object id in this process: on_start calls and alarm runs (with retry counts).
STARTS: Counter[str] = Counter()
ALARM_RUNS: dict[str, list[int]] = {}


class Vault(DurableConsumer):
    """Keeps what it is told in storage; alarms report to its sockets."""

    async def on_start(self) -> None:
        STARTS[self.id] += 1

    async def websocket_message(self, ws, message) -> None:
        command = json.loads(message)
        op = command["op"]
        storage = self.state.storage
        if op == "put":
            await storage.put(command["key"], command["value"])
            reply = {"ok": True}
        elif op == "get":
            reply = {"value": await storage.get(command["key"])}
        elif op == "alarm_in":
            await storage.set_alarm(__import__("time").time() + command["seconds"])
            reply = {"alarm": (await storage.get_alarm()).isoformat()}
        elif op == "fail_alarms":
            await storage.put("fail_alarms", command["times"])
            reply = {"ok": True}
        elif op == "starts":
            reply = {"starts": STARTS[self.id], "pid": os.getpid()}
        else:
            reply = {"unknown": op}
        await ws.send(json.dumps(reply))

    async def alarm(self, info) -> None:
        ALARM_RUNS.setdefault(self.id, []).append(info.retry_count)
        runs = await self.state.storage.get("alarm_runs") or []
        runs.append(info.retry_count)
        await self.state.storage.put("alarm_runs", runs)
        fail = await self.state.storage.get("fail_alarms") or 0
        await self.state.broadcast(
            json.dumps({"alarm": info.retry_count, "is_retry": info.is_retry, "pid": os.getpid()})
        )
        if info.retry_count < fail:
            raise RuntimeError(f"alarm failing on purpose ({info.retry_count} < {fail})")

    @rpc
    async def read(self, key: str):
        return await self.state.storage.get(key)

    @rpc
    async def write(self, key: str, value) -> bool:
        await self.state.storage.put(key, value)
        return True

    @rpc
    async def starts(self) -> int:
        return STARTS[self.id]

    @rpc
    async def boom(self) -> None:
        raise KeyError("boom")

    async def private(self) -> str:
        return "never"


# Storage, alarm and stub tests (tests/test_e2e_storage.py, test_alarms.py, test_stubs.py).

import asyncio  # noqa: E402
import datetime  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402

from django_durable import WebSocketRequestResponsePair  # noqa: E402
from django_durable.testing import live_object_ids  # noqa: E402

#: Per object id in this process: on_start calls of Safe and ReentrantSafe objects.
SAFE_STARTS: Counter[str] = Counter()

#: A value of every type the attachment encoding keeps apart from JSON's.
ROUNDTRIP_VALUE: Any = (
    (1, "a", (2.5, None)),
    datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.UTC),
    datetime.date(2024, 2, 29),
    datetime.time(12, 30, 1),
    Decimal("1234567890.000000000001"),
    uuid.UUID(int=42),
    {1, 2, 3},
    frozenset({"x"}),
    b"\x00\xff binary",
    2**100,
    {"nested": [(1, 2), {"k": Decimal("0.1")}]},
)


class PlannedFailure(Exception):
    """Raised on purpose by a Safe's @rpc method: not a builtin, so it crosses as RPCError."""


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": str(exc)}


class Safe(DurableConsumer):
    """Storage commands over WebSocket whose errors come back as replies; an alarm that
    records every run in storage; @rpc methods for stub calls.

    Every reply is ``{"op": <the command's op>, ...}``, or ``{"op", "error", "message"}``
    when the command raised. Alarm runs are broadcast as ``{"alarm": retry_count, ...}``.
    """

    async def on_start(self) -> None:
        SAFE_STARTS[self.id] += 1

    async def websocket_message(self, ws, message) -> None:
        command = json.loads(message)
        try:
            reply = await self.run(ws, command)
        except Exception as exc:
            reply = _error(exc)
        await ws.send(json.dumps({"op": command.get("op"), **reply}))

    async def run(self, ws, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        storage = self.state.storage
        if op == "put":
            await storage.put(command["key"], command["value"])
            return {"ok": True}
        if op == "put_many":
            await storage.put(command["entries"])
            return {"ok": True}
        if op == "txn_put_many":
            async with storage.transaction() as txn:
                await txn.put(command["entries"])
            return {"ok": True}
        if op == "get":
            return {"value": await storage.get(command["key"])}
        if op == "count":
            return {"count": len(await storage.list(prefix=command["prefix"]))}
        if op == "fill":
            # n keys "<prefix><i>" of `size` bytes each, in one transaction.
            async with storage.transaction() as txn:
                for i in range(command["n"]):
                    await txn.put(f"{command['prefix']}{i:06d}", "v" * command["size"])
                if command.get("stall"):
                    # Everything is written (buffered) and the block has not ended: say
                    # so, then wait for ever (the test kills the process now).
                    await ws.send(json.dumps({"op": op, "stalled": True}))
                    await asyncio.Event().wait()
                # Leaving the block commits: the test kills the process from here on.
                await ws.send(json.dumps({"op": op, "committing": True}))
            return {"committed": command["n"]}
        if op == "configure":
            # Alarm behaviour: "fail" runs raise while retry_count < fail; "rearm"
            # seconds: the first run sets the alarm again (once).
            await storage.put({k: v for k, v in command.items() if k in ("fail", "rearm")})
            return {"ok": True}
        if op == "set_alarm":
            when = command["at"] if "at" in command else time.time() + command["in"]
            await storage.set_alarm(when)
            return await self.run(ws, {"op": "get_alarm"})
        if op == "get_alarm":
            # None also while the alarm runs (claimed by a poller), as in Cloudflare.
            when = await storage.get_alarm()
            return {"alarm": None if when is None else when.timestamp()}
        if op == "delete_alarm":
            await storage.delete_alarm()
            return {"alarm": await storage.get_alarm()}
        if op == "starts":
            return {"starts": SAFE_STARTS[self.id], "pid": os.getpid()}
        return {"error": "unknown", "message": op}

    async def alarm(self, info) -> None:
        storage = self.state.storage
        run = {
            "alarm": info.retry_count,
            "is_retry": info.is_retry,
            "pid": os.getpid(),
            "starts": SAFE_STARTS[self.id],
            "id": self.id,
        }
        runs = await storage.get("runs") or []
        # One key per run as well: a run that overlapped another cannot hide in a lost update.
        await storage.put({"runs": [*runs, run], f"run:{uuid.uuid4().hex}": run})
        await self.state.broadcast(json.dumps(run))
        rearm = await storage.get("rearm")
        if rearm is not None:
            await storage.delete("rearm")
            await storage.set_alarm(time.time() + rearm)
        if info.retry_count < (await storage.get("fail") or 0):
            raise RuntimeError(f"alarm failing on purpose (retry_count {info.retry_count})")

    # Reached through stubs --------------------------------------------------------------

    @rpc
    async def read(self, key: str) -> Any:
        return await self.state.storage.get(key)

    @rpc
    async def write(self, key: str, value: Any) -> bool:
        await self.state.storage.put(key, value)
        return True

    @rpc
    async def starts(self) -> int:
        return SAFE_STARTS[self.id]

    @rpc
    async def pid(self) -> int:
        return os.getpid()

    @rpc
    async def echo(self, *args: Any, **kwargs: Any) -> Any:
        """The arguments as received, with the type names the method saw."""
        return {
            "args": args,
            "kwargs": kwargs,
            "types": [type(a).__name__ for a in args],
        }

    @rpc
    async def fail(self, kind: str) -> None:
        if kind == "KeyError":
            raise KeyError("no such thing")
        if kind == "ValueError":
            raise ValueError("bad value")
        raise PlannedFailure("planned failure")

    @rpc
    async def arm(self, seconds: float) -> float | None:
        await self.state.storage.set_alarm(time.time() + seconds)
        when = await self.state.storage.get_alarm()
        return None if when is None else when.timestamp()

    @rpc
    async def runs(self) -> dict[str, Any]:
        storage = self.state.storage
        return {
            "runs": await storage.get("runs") or [],
            "run_keys": len(await storage.list(prefix="run:")),
            "alarm": await storage.get_alarm(),
        }

    async def private(self) -> str:
        """Not @rpc: a stub must refuse it, and it must never run."""
        await self.state.storage.put("private_ran", True)
        return "never"


class ReentrantSafe(DurableConsumer):
    """A reentrant object that says whether a storage call was in flight when an event came.

    ``{"op": "hold", "kind": "put"|"get"}`` marks ``in_storage`` for exactly the duration
    of one storage call; ``{"op": "peek"}`` reports the mark. The input gate must hold a
    peek back until the call returns. ``"ping"`` is answered "pong" by the gateway, so a
    client knows its earlier frames are in the object's mailbox.
    """

    reentrant = True
    #: For the test's control run only: bypass the input gate (see UngatedReentrantSafe).
    ungated = False

    async def on_start(self) -> None:
        SAFE_STARTS[self.id] += 1
        self.in_storage = False
        self.state.set_websocket_auto_response(WebSocketRequestResponsePair("ping", "pong"))
        if self.ungated:
            self.state.storage._gate = None

    async def websocket_message(self, ws, message) -> None:
        command = json.loads(message)
        op = command["op"]
        if op == "hold":
            await ws.send(json.dumps({"op": op, "started": True}))
            storage = self.state.storage
            self.in_storage = True
            try:
                if command["kind"] == "put":
                    await storage.put("held", command.get("value", 1))
                else:
                    await storage.get("held")
            finally:
                self.in_storage = False
            await ws.send(json.dumps({"op": op, "done": True}))
        elif op == "peek":
            await ws.send(json.dumps({"op": op, "in_storage": self.in_storage}))


class UngatedReentrantSafe(ReentrantSafe):
    """The control: the same object with its storage's input gate removed. The test that
    proves the gate works must see this one fail."""

    ungated = True


STORAGE_MONITORED: dict[str, type[DurableConsumer]] = {
    "safe": Safe,
    "reentrant": ReentrantSafe,
    "vault": Vault,
}


class StorageMonitor(AsyncJsonWebsocketConsumer):
    """A plain Channels consumer: answers about this process without waking an object."""

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        cls = STORAGE_MONITORED[content.get("class", "safe")]
        object_id = content.get("id", "")
        op = content.get("op")
        reply: dict[str, Any]
        if op == "live":
            reply = {"live": object_id in live_object_ids(cls)}
        elif op == "starts":
            counter = STARTS if cls is Vault else SAFE_STARTS
            reply = {"starts": counter[object_id], "pid": os.getpid()}
        else:
            reply = {"unknown": op}
        await self.send_json({"op": op, **reply})


# The storage benchmark (bench/storage_bench.py; not used by the tests).


def _timed_ns(samples: list[int], started: int) -> None:
    samples.append(time.perf_counter_ns() - started)


class StorageBench(DurableConsumer):
    """Runs storage operations inside the object and reports each one's duration (ns)."""

    @rpc
    async def measure(self, k: int, size: int, batch: int) -> dict[str, Any]:
        storage = self.state.storage
        value = "v" * size
        await storage.delete_all()
        puts: list[int] = []
        begun = time.perf_counter_ns()
        for i in range(k):
            started = time.perf_counter_ns()
            await storage.put(f"key{i:08d}", value)
            _timed_ns(puts, started)
        puts_total = time.perf_counter_ns() - begun
        gets: list[int] = []
        for i in range(k):
            started = time.perf_counter_ns()
            found = await storage.get(f"key{i:08d}")
            _timed_ns(gets, started)
            assert found == value
        batches: list[int] = []
        for b in range(max(1, k // batch)):
            entries = {f"batch{b:06d}:{i:06d}": value for i in range(batch)}
            started = time.perf_counter_ns()
            await storage.put(entries)
            _timed_ns(batches, started)
        txns: list[int] = []
        for b in range(max(1, k // batch)):
            started = time.perf_counter_ns()
            async with storage.transaction() as txn:
                for i in range(batch):
                    await txn.put(f"txn{b:06d}:{i:06d}", value)
            _timed_ns(txns, started)
        await storage.delete_all()
        return {
            "put": puts,
            "put_total": puts_total,
            "get": gets,
            "batch": batches,
            "txn": txns,
            "pid": os.getpid(),
        }
