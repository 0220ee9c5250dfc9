"""The flood benchmark's server (bench/overload_bench.py): one slow durable object.

``FloodRoom``'s handler takes 5 ms per message (``BENCH_HANDLER_MS``) and answers
nothing, except ``ping:<n>``, which it echoes at once when its turn comes.
"""

import asyncio
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchapp import control  # noqa: E402
from django_durable import DurableConsumer  # noqa: E402

HANDLER_SECONDS = float(os.environ.get("BENCH_HANDLER_MS", "5")) / 1000


class FloodRoom(DurableConsumer):
    async def connect(self, ws) -> None:
        self.state.accept_websocket(ws)

    async def websocket_message(self, ws, message) -> None:
        if isinstance(message, str) and message.startswith("ping:"):
            await ws.send(message)
            return
        await asyncio.sleep(HANDLER_SECONDS)


application = ProtocolTypeRouter(
    {
        "http": control.http_app,
        "websocket": URLRouter([path("ws/flood/<str:room>/", FloodRoom.as_asgi())]),
    }
)
