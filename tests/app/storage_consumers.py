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
