"""The django-durable side of the cluster benchmark (the Channels side: :mod:`.plain`).

``ClusterRoom``: every socket of a room on one object, tag
``members`` (plus ``observers`` with ``?observe=1``). Text protocol:

- ``bcast:<n>``: ``await self.state.broadcast("b:<n>", tag="members")``;
- ``echo:<x>``: reply ``e:<x>`` to the sender (latency);
- ``relay:<x>``: ``r:<x>`` to the ``observers`` (a forwarded event whose handler sends
  nothing back to the sender's process);
- ``n:<x>``: reply ``r:<x>:<pid of the process running the handler>`` (failover load);
- a socket's close is broadcast to the ``observers`` as ``closed:<code>:<was_clean>:<id>``.
"""

from __future__ import annotations

import os

from clusterapp import stages
from django_durable import DurableConsumer

PID = os.getpid()


class ClusterRoom(DurableConsumer):
    durable_name = "bench.ClusterRoom"

    async def connect(self, ws) -> None:
        observe = b"observe=1" in ws.scope.get("query_string", b"")
        self.state.accept_websocket(ws, tags=["members", "observers"] if observe else ["members"])

    async def websocket_message(self, ws, message) -> None:
        if not isinstance(message, str):
            return
        if message.startswith("echo:"):
            await ws.send("e:" + message[5:])
        elif message.startswith("relay:"):
            await self.state.broadcast("r:" + message[6:], tag="observers")
        elif message.startswith("n:"):
            await ws.send(f"r:{message[2:]}:{PID}")
        elif message.startswith("bcast:"):
            stages.mark("handler_start")
            sent = await self.state.broadcast("b:" + message[6:], tag="members")
            stages.mark("broadcast_returned", sent=sent)

    async def websocket_close(self, ws, code, reason, was_clean) -> None:
        await self.state.broadcast(f"closed:{code}:{int(was_clean)}:{ws.id}", tag="observers")
