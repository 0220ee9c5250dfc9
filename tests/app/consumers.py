"""Durable objects the test suite drives over real sockets.

``Room`` obeys JSON commands sent by clients, so end-to-end tests can exercise the
whole API through daphne; every reply is JSON. Close and error events are reported to
the sockets tagged ``observers``, which is how a test sees them from outside.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from django_durable import DurableConsumer, WebSocketRequestResponsePair, broadcast_event, rpc
from django_durable.runtime import get_runtime
from django_durable.testing import hibernate, live_object_ids

#: on_start calls per object id, in this process (survives hibernation, as a probe).
STARTS: Counter[str] = Counter()
#: live instances per object id right now, and the most ever seen at once.
LIVE: Counter[str] = Counter()


#: Named events handlers can wait on and other handlers set (``wait``/``signal`` ops).
SIGNALS: dict[str, asyncio.Event] = {}


def _signal(name: str) -> asyncio.Event:
    event = SIGNALS.get(name)
    if event is None:
        event = SIGNALS[name] = asyncio.Event()
    return event


def _query(ws) -> dict[str, str]:
    raw = ws.scope.get("query_string", b"").decode()
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


class Room(DurableConsumer):
    async def on_start(self) -> None:
        STARTS[self.id] += 1
        self.memory: list[str] = []
        self.start_number = STARTS[self.id]

    async def connect(self, ws) -> None:
        query = _query(ws)
        if query.get("reject"):
            return
        tags = json.loads(query["tags"]) if "tags" in query else ["all"]
        if "subprotocol" in query:
            try:
                self.state.accept_websocket(ws, tags=tags, subprotocol=query["subprotocol"])
            except ValueError as exc:
                # Refused, and nothing was registered: a plain accept still works.
                self.state.accept_websocket(ws, tags=tags)
                await ws.send(json.dumps({"refused": type(exc).__name__, "message": str(exc)}))
        else:
            self.state.accept_websocket(ws, tags=tags)
        if "name" in query:
            ws.serialize_attachment({"name": query["name"], "path": ws.scope["path"]})
        if query.get("greet"):
            await ws.send(json.dumps({"hello": ws.id}))

    async def websocket_message(self, ws, message) -> None:
        if isinstance(message, bytes):
            await ws.send(b"bytes:" + message)
            return
        try:
            command = json.loads(message)
        except ValueError:
            await ws.send("text:" + message)
            return
        reply = await self.run(ws, command)
        if reply is not None:
            await ws.send(json.dumps(reply))

    async def run(self, ws, command: dict) -> dict | None:
        op = command.get("op")
        state = self.state
        if op == "whoami":
            return {"id": ws.id, "tags": state.get_tags(ws), "ready_state": ws.ready_state}
        if op == "remember":
            self.memory.append(command["value"])
            return {"memory": self.memory, "start": self.start_number}
        if op == "memory":
            return {"memory": self.memory, "start": self.start_number}
        if op == "attach":
            ws.serialize_attachment(command["value"])
            return {"ok": True}
        if op == "attachment":
            return {"attachment": ws.deserialize_attachment()}
        if op == "list":
            sockets = state.get_websockets(command.get("tag"))
            return {
                "sockets": sorted(
                    [s.id, state.get_tags(s), s.deserialize_attachment(), s.ready_state]
                    for s in sockets
                )
            }
        if op == "broadcast":
            exclude = [ws] if command.get("exclude_self") else []
            count = await state.broadcast(command["text"], command.get("tag"), exclude)
            return {"sent": count}
        if op == "seq":
            # Per-socket ordering probe: echo the sequence number back, optionally after
            # giving the event loop away a few times (so interleaving would reorder).
            for _ in range(command.get("yields", 0)):
                await asyncio.sleep(0)
            return {"seq": command["n"]}
        if op == "wait":
            # Wait for another handler's "signal" (bounded); reports whether it came.
            # {"waiting": name} tells the client the handler is now waiting.
            await ws.send(json.dumps({"waiting": command["name"]}))
            try:
                async with asyncio.timeout(command.get("timeout", 5)):
                    await _signal(command["name"]).wait()
            except TimeoutError:
                return {"waited": command["name"], "signalled": False}
            return {"waited": command["name"], "signalled": True}
        if op == "signal":
            _signal(command["name"]).set()
            return {"signalled": command["name"]}
        if op == "raise":
            raise RuntimeError("handler failed on purpose")
        if op == "sleep":
            await asyncio.sleep(command["seconds"])
            return {"slept": command["seconds"]}
        if op == "close":
            await ws.close(command.get("code", 1000), command.get("reason", ""))
            try:
                await ws.send("after close")
            except Exception as exc:
                await self._report({"event": "send_after_close", "error": type(exc).__name__})
            return None
        if op == "close_other":
            for other in state.get_websockets():
                if other.id == command["id"]:
                    await other.close(command.get("code", 1000))
            return {"ok": True}
        if op == "auto":
            pair = None
            if command.get("request") is not None:
                pair = WebSocketRequestResponsePair(command["request"], command["response"])
            state.set_websocket_auto_response(pair)
            return {"ok": True}
        if op == "auto_bytes":
            state.set_websocket_auto_response(
                WebSocketRequestResponsePair(b"\x00ping", b"\x00pong")
            )
            return {"ok": True}
        if op == "timestamp":
            target = ws
            for other in state.get_websockets():
                if other.id == command.get("id"):
                    target = other
            when = state.get_websocket_auto_response_timestamp(target)
            return {"timestamp": None if when is None else when.isoformat()}
        if op == "timeout":
            state.set_hibernatable_websocket_event_timeout(command.get("ms"))
            return {"timeout": state.get_hibernatable_websocket_event_timeout()}
        if op == "settings":
            pair = state.get_websocket_auto_response()
            return {
                "settings": {
                    "timeout": state.get_hibernatable_websocket_event_timeout(),
                    "auto": None if pair is None else [repr(pair.request), repr(pair.response)],
                }
            }
        if op == "big":
            await ws.send("x" * command["n"])
            return {"sent": command["n"]}
        if op == "broadcast_big":
            return {"sent": await state.broadcast("x" * command["n"])}
        if op == "error_of":
            try:
                await self.run(ws, command["command"])
            except Exception as exc:
                return {"error": type(exc).__name__, "message": str(exc)}
            return {"error": None}
        return {"unknown": op}

    async def _report(self, event: dict) -> None:
        await self.state.broadcast(json.dumps(event), tag="observers")

    async def websocket_close(self, ws, code, reason, was_clean) -> None:
        listed = any(s.id == ws.id for s in self.state.get_websockets())
        await self._report(
            {
                "event": "close",
                "id": ws.id,
                "code": code,
                "reason": reason,
                "was_clean": was_clean,
                "listed_during": listed,
                "ready_state": ws.ready_state,
                "start": self.start_number,
            }
        )

    async def websocket_error(self, ws, error) -> None:
        await self._report({"event": "error", "id": ws.id, "error": type(error).__name__})

    @rpc
    async def count_sockets(self, tag: str | None = None) -> int:
        return len(self.state.get_websockets(tag))

    @rpc
    async def shout(self, size: int) -> int:
        """Broadcast ``size`` bytes (tests/test_overload.py: over the server's limit)."""
        return await self.state.broadcast("x" * size)

    async def not_exposed(self) -> str:
        return "should never run"


class ReentrantRoom(Room):
    reentrant = True


class Silent(DurableConsumer):
    """Defines no handlers at all: every event is ignored, connect accepts."""


# Unit-level probe ------------------------------------------------------------------------
#
# Tests that drive objects in their own event loop (Channels' WebsocketCommunicator) run
# code inside a Probe object: they register a job, send "job:<id>" from a socket, and
# await the job's future, which carries the job's result or exception.

#: job id -> (function(instance, ws), future of its result).
PROBE_JOBS: dict[str, tuple[Callable[..., Any], asyncio.Future[Any]]] = {}
#: object id -> function(instance, ws) run instead of the default connect.
PROBE_CONNECT: dict[str, Callable[..., Any]] = {}
#: object id -> on_start calls (survives hibernation, as a probe).
PROBE_STARTS: Counter[str] = Counter()
#: object id -> the events the object saw, in order.
PROBE_EVENTS: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
#: object id -> futures woken whenever PROBE_EVENTS[object id] grows.
PROBE_WAITERS: defaultdict[str, list[asyncio.Future[None]]] = defaultdict(list)


def probe_record(object_id: str, event: tuple[Any, ...]) -> None:
    PROBE_EVENTS[object_id].append(event)
    waiters, PROBE_WAITERS[object_id] = PROBE_WAITERS[object_id], []
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Probe(DurableConsumer):
    """Runs the unit tests' jobs; echoes anything else; records its events."""

    async def on_start(self) -> None:
        PROBE_STARTS[self.id] += 1
        self.memory: list[Any] = []
        self.start_number = PROBE_STARTS[self.id]
        probe_record(self.id, ("start", self.start_number))

    async def connect(self, ws) -> None:
        hook = PROBE_CONNECT.get(self.id)
        if hook is not None:
            await _maybe_await(hook(self, ws))
            return
        query = _query(ws)
        tags = json.loads(query["tags"]) if "tags" in query else None
        self.state.accept_websocket(ws, tags=tags)

    async def websocket_message(self, ws, message) -> None:
        if isinstance(message, str) and message.startswith("job:"):
            fn, future = PROBE_JOBS.pop(message[4:])
            try:
                result = await _maybe_await(fn(self, ws))
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            return
        probe_record(self.id, ("message", ws.id, message))
        if message == "raise":
            raise RuntimeError("probe handler failed on purpose")
        await ws.send(("echo:" + message) if isinstance(message, str) else (b"echo:" + message))

    async def websocket_close(self, ws, code, reason, was_clean) -> None:
        listed = [s.id for s in self.state.get_websockets()]
        probe_record(
            self.id, ("close", ws.id, code, reason, was_clean, ws.id in listed, ws.ready_state)
        )

    async def websocket_error(self, ws, error) -> None:
        listed = [s.id for s in self.state.get_websockets()]
        probe_record(self.id, ("error", ws.id, type(error).__name__, ws.id in listed))


class ReentrantProbe(Probe):
    reentrant = True


# Process monitor -------------------------------------------------------------------------

MONITORED: dict[str, type[DurableConsumer]] = {
    "room": Room,
    "reentrant": ReentrantRoom,
    "silent": Silent,
}


class Monitor(AsyncJsonWebsocketConsumer):
    """A plain Channels consumer answering questions about this server process.

    It is not a durable object, so asking never wakes or creates one: end-to-end tests
    use it to see which objects are live, count on_start calls after the fact, hibernate
    an object, and send to tags from code outside the object.
    """

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        op = content.get("op")
        cls = MONITORED.get(content.get("class", "room"), Room)
        object_id = content.get("id", "")
        reply: dict[str, Any]
        if op == "live":
            reply = {"live": sorted(live_object_ids(cls))}
        elif op == "starts":
            reply = {"starts": STARTS[object_id]}
        elif op == "hibernate":
            await hibernate(cls, object_id)
            reply = {"hibernated": object_id, "live": object_id in live_object_ids(cls)}
        elif op == "wait_hibernated":
            # Polls inside the server (the object is hibernated by its own idleness).
            try:
                async with asyncio.timeout(content.get("timeout", 5)):
                    while object_id in live_object_ids(cls):  # noqa: ASYNC110 (no event to await)
                        await asyncio.sleep(0.01)
                reply = {"hibernated": object_id, "ok": True}
            except TimeoutError:
                reply = {"hibernated": object_id, "ok": False}
        elif op == "drain":
            # Wait until this process holds no socket of the object (each gateway queued
            # its final event before letting go), then hibernate it: once that returns,
            # every event of those sockets has been handled.
            key = cls.object_key(object_id)
            runtime = get_runtime()
            try:
                async with asyncio.timeout(content.get("timeout", 5)):
                    while any(getattr(s, "key", None) == key for s in runtime.sockets.values()):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                await hibernate(cls, object_id)
                reply = {"drained": object_id, "ok": True}
            except TimeoutError:
                reply = {"drained": object_id, "ok": False}
        elif op == "signal":
            _signal(content["name"]).set()
            reply = {"signalled": content["name"]}
        elif op == "group_send":
            group = cls.tag_group(object_id, content.get("tag"))
            if "bytes_hex" in content:
                event = broadcast_event(group, bytes.fromhex(content["bytes_hex"]))
            else:
                event = broadcast_event(group, content["text"])
            if content.get("without_group"):
                del event["group"]  # the old form, which is refused (and counted)
            await get_channel_layer().group_send(group, event)
            reply = {"sent": group}
        elif op == "broadcast_to":
            await cls.broadcast_to(object_id, content["text"], content.get("tag"))
            reply = {"sent": object_id}
        else:
            reply = {"unknown": op}
        await self.send_json(reply)
