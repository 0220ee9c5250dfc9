"""Objects for the cross-process tests: what they prove is stored, not remembered.

``Ledger`` counts each socket's numbered messages in the socket's attachment, which
is written in the same fenced Redis script as the fact that the event was handled, so
after a failover the attachment says whether any message was lost, repeated or
reordered. ``Census`` is a Ledger that also reports its instance and process and logs
its starts and ticks to a Redis list, in which two live instances at once would show
interleaved. ``ClusterMonitor`` answers questions about its server process without a
durable object or the channel layer (so it answers while Redis is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.layers import get_channel_layer
from redis import asyncio as aioredis

from django_durable import (
    DurableConsumer,
    WebSocketRequestResponsePair,
    broadcast_event,
    metrics,
    rpc,
)
from django_durable.runtime import get_runtime
from django_durable.testing import hibernate, live_object_ids


class Ledger(DurableConsumer):
    async def on_start(self) -> None:
        self.handled_here = 0

    async def connect(self, ws) -> None:
        tags = ["all", "observers"] if b"observe" in ws.scope.get("query_string", b"") else ["all"]
        self.state.accept_websocket(ws, tags=tags)
        ws.serialize_attachment({"last": -1, "count": 0, "bad": 0, "pid": os.getpid()})

    async def websocket_message(self, ws, message) -> None:
        command = json.loads(message)
        op = command["op"]
        if op == "n":
            self.count(ws, command["n"])
            await ws.send(json.dumps({"n": command["n"], "pid": os.getpid()}))
        elif op == "ledger":
            await ws.send(json.dumps({"ledger": ws.deserialize_attachment()}))
        elif op == "where":
            await ws.send(json.dumps({"pid": os.getpid(), "handled_here": self.handled_here}))
        elif op == "list":
            sockets = self.state.get_websockets(command.get("tag"))
            await ws.send(
                json.dumps({"sockets": sorted([s.id, self.state.get_tags(s)] for s in sockets)})
            )
        elif op == "broadcast":
            sent = await self.state.broadcast(command["text"], command.get("tag"))
            await ws.send(json.dumps({"sent": sent}))
        elif op == "relay":
            # A broadcast without a reply to the sender: nothing goes back to its process.
            await self.state.broadcast(command["text"], command.get("tag"))

    def count(self, ws, n: int) -> None:
        """Note numbered message ``n`` in the socket's ledger (stored with the event)."""
        ledger = ws.deserialize_attachment()
        if n != ledger["last"] + 1:
            ledger["bad"] += 1
        ledger["last"] = n
        ledger["count"] += 1
        ws.serialize_attachment(ledger)
        self.handled_here += 1

    async def websocket_close(self, ws, code, reason, was_clean) -> None:
        await self.state.broadcast(
            json.dumps({"event": "close", "id": ws.id, "code": code, "was_clean": was_clean}),
            tag="observers",
        )

    @rpc
    async def pid(self) -> int:
        return os.getpid()


# Census: a Ledger that also says who it is, for the cluster tests -----------------------

_census_clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


def census_key(object_id: str, prefix: str | None = None) -> str:
    """The Redis list where Census instances log their starts and ticks, in global order."""
    if prefix is None:
        prefix = os.environ.get("DURABLE_TEST_REDIS_PREFIX", "durable-test")
    return f"{prefix}:census:{object_id}"


async def census_log(object_id: str, entry: str) -> int:
    loop = asyncio.get_running_loop()
    client = _census_clients.get(loop)
    if client is None:
        url = os.environ.get("DURABLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
        client = _census_clients[loop] = aioredis.Redis.from_url(url)
    return int(await client.rpush(census_key(object_id), entry))


def describe_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """What connect(ws) saw of the scope, as JSON, types included."""
    headers = scope.get("headers") or []
    user = scope.get("user")
    return {
        "keys": sorted(k for k in scope if k not in ("user", "session")),
        "type": scope.get("type"),
        "scheme": scope.get("scheme"),
        "path": scope.get("path"),
        "raw_path": repr(scope.get("raw_path")),
        "query_string": repr(scope.get("query_string")),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers],
        "header_types": sorted(
            {
                f"{type(headers).__name__}/{type(h).__name__}/"
                f"{type(h[0]).__name__}/{type(h[1]).__name__}"
                for h in headers
            }
        ),
        "subprotocols": repr(scope.get("subprotocols")),
        "url_route": repr(scope.get("url_route")),
        "client": repr(scope.get("client")),
        "server": repr(scope.get("server")),
        "user": None
        if user is None
        else {"authenticated": bool(user.is_authenticated), "username": user.get_username()},
        "session": None if scope.get("session") is None else scope["session"].session_key,
    }


class Census(Ledger):
    """A Ledger that reports its instance, its process and its sockets.

    Every instance has a random ``instance`` name and logs ``start <instance> <pid>`` to
    a Redis list when created; ``tick`` appends ``tick <instance>``. With one live
    instance at a time, the log is one unbroken run of ticks per instance, each after
    its start: two live instances at once interleave. ``events`` counts the messages
    this instance handled, so a message that should not have reached it (an
    auto-response request) shows. Connections with ``?scope=1`` get a description of
    the scope connect() saw; ``?tags=a,b`` adds tags to ``all``; ``?observe=1`` makes a
    socket an observer of close events.
    """

    async def on_start(self) -> None:
        await super().on_start()
        self.instance = uuid.uuid4().hex[:12]
        self.events = 0
        with contextlib.suppress(Exception):  # the log is for tests that read it
            await census_log(self.id, f"start {self.instance} {os.getpid()}")

    async def connect(self, ws) -> None:
        query = {k: v[-1] for k, v in parse_qs(ws.scope.get("query_string", b"").decode()).items()}
        tags = ["all", *(t for t in query.get("tags", "").split(",") if t)]
        if query.get("observe"):
            tags.append("observers")
        report = describe_scope(ws.scope) if query.get("scope") else None
        self.state.accept_websocket(ws, tags=tags)
        ws.serialize_attachment({"last": -1, "count": 0, "bad": 0, "pid": os.getpid()})
        if report is not None:
            await ws.send(json.dumps({"scope": report, "connect_pid": os.getpid()}))

    async def websocket_message(self, ws, message) -> None:
        self.events += 1
        command = json.loads(message)
        op = command["op"]
        state = self.state
        if op == "whoami":
            await ws.send(json.dumps({"id": ws.id, "tags": state.get_tags(ws)}))
        elif op == "where":
            reply = {"pid": os.getpid(), "instance": self.instance, "events": self.events}
            await ws.send(json.dumps({"where": reply}))
        elif op == "tick":
            await census_log(self.id, f"tick {self.instance}")
            reply = {"tick": command["n"], "instance": self.instance, "pid": os.getpid()}
            await ws.send(json.dumps(reply))
        elif op == "attach":
            attachment = ws.deserialize_attachment() or {}
            attachment["note"] = command["value"]
            ws.serialize_attachment(attachment)
            await ws.send(json.dumps({"attached": command["value"]}))
        elif op == "sockets":
            sockets = state.get_websockets(command.get("tag"))
            listed = sorted([s.id, state.get_tags(s), s.deserialize_attachment()] for s in sockets)
            await ws.send(json.dumps({"sockets": listed}))
        elif op == "auto":
            state.set_websocket_auto_response(
                WebSocketRequestResponsePair(command["request"], command["response"])
            )
            await ws.send(json.dumps({"auto": True}))
        elif op == "timestamp":
            when = state.get_websocket_auto_response_timestamp(ws)
            await ws.send(json.dumps({"timestamp": None if when is None else when.isoformat()}))
        elif op == "echo":
            await ws.send(json.dumps({"echo": command["value"], "pid": os.getpid()}))
        elif op == "flood":
            # Many broadcasts from one handler (to every socket, wherever held).
            sent = 0
            for n in range(command["count"]):
                sent += await state.broadcast(json.dumps({"flood": n}), tag=command.get("tag"))
            await ws.send(json.dumps({"flooded": sent}))
        elif op == "frames":
            # A numbered message answered with four frames: two to the sender, two to the
            # observers (wherever held). With ``hold_in`` equal to this process's pid the
            # handler stops halfway until the process is killed (kill -9 mid-handler):
            # the new owner runs it again, and the clients must see each frame once.
            n, pid = command["n"], os.getpid()
            self.count(ws, n)
            await ws.send(json.dumps({"n": n, "part": 1, "pid": pid}))
            await state.broadcast(json.dumps({"from": ws.id, "n": n, "part": 2}), tag="observers")
            if command.get("hold_in") == pid:
                await asyncio.Event().wait()
            await ws.send(json.dumps({"n": n, "part": 3, "pid": pid}))
            await state.broadcast(json.dumps({"from": ws.id, "n": n, "part": 4}), tag="observers")
        elif op == "spray":
            # Many frames from one handler: faster than a channel of capacity 100 drains.
            try:
                for n in range(command["count"]):
                    await ws.send(json.dumps({"spray": n}))
            except Exception as exc:
                await ws.send(json.dumps({"spray_error": type(exc).__name__}))
        else:
            await super().websocket_message(ws, message)


# A monitor that needs neither a durable object nor the channel layer ------------------

MONITOR_CLASSES: dict[str, type[DurableConsumer]] = {"census": Census, "ledger": Ledger}


class ClusterMonitor:
    """A plain ASGI WebSocket app answering JSON questions about its server process.

    It is no durable object and opens no channel-layer channel, so it answers while
    Redis is down (where a Channels consumer's receive loop would fail), and asking it
    never wakes an object. Errors are answered as ``{"error": name, "message", "mro"}``.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.disconnect":
                return
            elif message["type"] == "websocket.receive":
                command = json.loads(message["text"])
                try:
                    reply = await self.run(command)
                except Exception as exc:
                    reply = {
                        "error": type(exc).__name__,
                        "message": str(exc),
                        "mro": [c.__name__ for c in type(exc).__mro__],
                    }
                await send({"type": "websocket.send", "text": json.dumps(reply)})

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        cls = MONITOR_CLASSES[command.get("class", "census")]
        object_id = command.get("id", "")
        if op == "pid":
            return {"pid": os.getpid()}
        if op == "signal":  # ends a Room handler's "wait" (tests/test_overload.py)
            from .consumers import _signal

            _signal(command["name"]).set()
            return {"signalled": command["name"]}
        if op == "live":
            return {"live": object_id in live_object_ids(cls)}
        if op == "hibernate":
            await hibernate(cls, object_id)
            return {"live": object_id in live_object_ids(cls)}
        if op == "auto":
            pair = get_runtime().layer.auto_response(cls.object_key(object_id))
            return {"auto": None if pair is None else [pair.request, pair.response]}
        if op == "call":
            method = getattr(cls.get(object_id), command["name"])
            return {"result": await method(*command.get("args", []))}
        if op == "broadcast_to":
            await cls.broadcast_to(object_id, command["text"], command.get("tag"))
            return {"ok": True}
        if op == "trace_start":
            import tracemalloc

            tracemalloc.start(8)
            return {"trace_start": True}
        if op == "trace_top":
            import gc
            import tracemalloc

            gc.collect()
            stats = tracemalloc.take_snapshot().statistics("traceback")
            top = []
            for stat in stats[: command.get("n", 12)]:
                frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback]
                top.append([stat.size, stat.count, frames])
            return {"trace_top": top}
        if op == "gc":
            import gc

            return {"gc": gc.collect()}
        if op == "memory":
            # What this process keeps per object id (SPEC §11: released when unused).
            runtime = get_runtime()
            layer = runtime.layer
            return {
                "memory": {
                    "auto_cache": len(getattr(layer, "auto_cache", ())),
                    "gateways": len(getattr(layer, "gateways", ())),
                    "owned": len(getattr(layer, "owned", ())),
                    "live": len(runtime.dispatcher.live),
                    "sockets": len(runtime.sockets),
                    "groups": len(getattr(runtime.fanout, "groups", ())),
                }
            }
        if op == "metrics":
            return {"metrics": metrics.snapshot()}
        if op == "group_send":
            group = cls.tag_group(object_id, command.get("tag"))
            event = broadcast_event(group, command["text"])
            if command.get("without_group"):
                del event["group"]  # the form every process now refuses (and counts)
            await get_channel_layer().group_send(group, event)
            return {"sent": group}
        if op == "daphne":
            # The scheduled connection checks (tests/test_daphne_timers.py).
            from django_durable import daphne_timers

            return {"daphne": daphne_timers.report()}
        if op == "process":
            # What this process holds, for tests/test_many_objects.py.
            runtime = get_runtime()
            return {
                "tasks": len(asyncio.all_tasks()),
                "sockets": len(runtime.sockets),
                "live": len(runtime.dispatcher.live),
                "refused": metrics.value("group_messages_refused"),
            }
        return {"unknown": op}
