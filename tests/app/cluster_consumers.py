"""Objects for the cross-process tests: what they prove is stored, not remembered.

``Ledger`` counts each socket's numbered messages in the socket's attachment, which
is written in the same fenced Redis script as the fact that the event was handled, so
after a failover the attachment says whether any message was lost, repeated or
reordered. ``INSTANCES`` counts live instances in this process, for the tests that
check there is never more than one anywhere.
"""

from __future__ import annotations

import json
import os

from django_durable import DurableConsumer, rpc


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
            ledger = ws.deserialize_attachment()
            if command["n"] != ledger["last"] + 1:
                ledger["bad"] += 1
            ledger["last"] = command["n"]
            ledger["count"] += 1
            ws.serialize_attachment(ledger)
            self.handled_here += 1
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

    async def websocket_close(self, ws, code, reason, was_clean) -> None:
        await self.state.broadcast(
            json.dumps({"event": "close", "id": ws.id, "code": code, "was_clean": was_clean}),
            tag="observers",
        )

    @rpc
    async def pid(self) -> int:
        return os.getpid()
