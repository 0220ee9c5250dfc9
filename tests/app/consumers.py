"""Durable objects the test suite drives over real sockets.

``Room`` obeys JSON commands sent by clients, so end-to-end tests can exercise the
whole API through daphne; every reply is JSON. Close and error events are reported to
the sockets tagged ``observers``, which is how a test sees them from outside.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from urllib.parse import parse_qs

from django_durable import DurableConsumer, WebSocketRequestResponsePair, rpc

#: on_start calls per object id, in this process (survives hibernation, as a probe).
STARTS: Counter[str] = Counter()
#: live instances per object id right now, and the most ever seen at once.
LIVE: Counter[str] = Counter()


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
            # Per-socket ordering probe: echo the sequence number back.
            return {"seq": command["n"]}
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

    async def not_exposed(self) -> str:
        return "should never run"


class ReentrantRoom(Room):
    reentrant = True


class Silent(DurableConsumer):
    """Defines no handlers at all: every event is ignored, connect accepts."""
