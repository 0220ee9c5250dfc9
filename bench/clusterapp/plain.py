"""The stock Channels side of the cluster benchmark (no django_durable imported).

``PlainRoom``: an ``AsyncWebsocketConsumer`` in one group per room on
``RedisChannelLayer``; ``bcast:<n>`` makes it ``group_send`` ``b:<n>``, which each
consumer's handler sends to its socket; ``echo:<x>`` replies ``e:<x>``.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from clusterapp import stages

#: Open PlainRoom consumers in this process.
PLAIN_OPEN = 0


class PlainRoom(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        global PLAIN_OPEN
        self.group = "bench.cluster." + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        PLAIN_OPEN += 1

    async def disconnect(self, code: int) -> None:
        global PLAIN_OPEN
        PLAIN_OPEN -= 1
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        if text_data.startswith("bcast:"):
            stages.mark("group_send_start")
            await self.channel_layer.group_send(
                self.group, {"type": "bench.broadcast", "text": "b:" + text_data[6:]}
            )
            stages.mark("group_send_returned")
        elif text_data.startswith("echo:"):
            await self.send(text_data="e:" + text_data[5:])

    async def bench_broadcast(self, event: dict) -> None:
        await self.send(text_data=event["text"])
        stages.consumer_sent()
