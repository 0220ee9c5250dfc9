"""Objects with a broadcast history, for the resuming-client tests (tests/test_resume.py).

``Chronicle`` keeps its last 5 broadcasts; ``LongChronicle`` its last 1,000 (for the
race tests, where nothing may fall out of the history); ``Forgetful`` keeps none. Each
obeys JSON commands: ``say`` broadcasts ``text`` (to ``tag``, optionally excluding the
sender), ``bytes`` broadcasts it as binary, ``direct`` answers the sender alone. Sockets
are tagged ``all`` plus the comma-separated ``?tags=``; the auto-response is
``ping``/``pong``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from django_durable import DurableConsumer, WebSocketRequestResponsePair


class Chronicle(DurableConsumer):
    history = 5

    async def on_start(self) -> None:
        self.state.set_websocket_auto_response(WebSocketRequestResponsePair("ping", "pong"))

    async def connect(self, ws) -> None:
        query = parse_qs(ws.scope.get("query_string", b"").decode())
        tags = ["all", *(t for t in query.get("tags", [""])[-1].split(",") if t)]
        self.state.accept_websocket(ws, tags=tags)
        if query.get("greet"):
            # Sent during connect(): a resuming socket must still get it after its replay.
            await ws.send("welcome")
            await self.state.broadcast(f"joined {query['greet'][-1]}")

    async def websocket_message(self, ws, message) -> None:
        command = json.loads(message)
        op = command["op"]
        if op == "say":
            exclude = [ws] if command.get("exclude_self") else []
            await self.state.broadcast(command["text"], command.get("tag"), exclude)
        elif op == "bytes":
            await self.state.broadcast(command["text"].encode(), command.get("tag"))
        elif op == "direct":
            await ws.send(command["text"])


class LongChronicle(Chronicle):
    history = 1000


class Forgetful(Chronicle):
    history = 0
