"""The consumers of variants (b) and (c); both serve the protocol of :mod:`benchapp`."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from benchapp import control
from django_durable import DurableConsumer, rpc

#: Open Channels consumers (for /bench/status).
CHANNELS_OPEN = 0


class BenchChannelsConsumer(AsyncWebsocketConsumer):
    """(b) A stock Channels consumer that joins its room's group on the channel layer."""

    async def connect(self) -> None:
        global CHANNELS_OPEN
        self.group = "bench." + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        CHANNELS_OPEN += 1

    async def disconnect(self, code: int) -> None:
        global CHANNELS_OPEN
        CHANNELS_OPEN -= 1
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        if text_data.startswith("bcast:"):
            with control.timed():
                await self.channel_layer.group_send(
                    self.group, {"type": "bench.broadcast", "text": "b:" + text_data[6:]}
                )
        elif text_data == "warmup":
            await self.send(text_data="warm")

    async def bench_broadcast(self, event: dict) -> None:
        await self.send(text_data=event["text"])


class BenchRoom(DurableConsumer):
    """(c) A durable object: every socket of the room, one tag."""

    durable_name = "bench.BenchRoom"

    async def connect(self, ws) -> None:
        self.state.accept_websocket(ws, tags=["members"])

    async def websocket_message(self, ws, message) -> None:
        if not isinstance(message, str):
            return
        if message.startswith("bcast:"):
            with control.timed():
                await self.state.broadcast("b:" + message[6:])
        elif message == "warmup":
            await ws.send("warm")

    @rpc
    async def ping(self) -> int:
        """A stub call that wakes the object (bench/many_objects.py)."""
        return 1


class BenchHistoryRoom(BenchRoom):
    """(c) keeping its last 100 broadcasts for clients that reconnect."""

    durable_name = "bench.BenchHistoryRoom"
    history = 100
