"""(c) with ``history = 100``: every broadcast is also kept for resuming clients."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchapp import consumers, control  # noqa: E402
from django_durable.runtime import all_runtimes  # noqa: E402
from django_durable.testing import hibernate, live_object_ids  # noqa: E402

ROOM = "room"

application = ProtocolTypeRouter(
    {
        "http": control.http_app,
        "websocket": URLRouter([path("ws/room/<str:room>/", consumers.BenchHistoryRoom.as_asgi())]),
    }
)


def _sockets() -> int:
    return sum(len(runtime.sockets) for runtime in all_runtimes())


async def _hibernate() -> None:
    await hibernate(consumers.BenchHistoryRoom, ROOM)


control.register(
    sockets=_sockets,
    live_object_ids=lambda: live_object_ids(consumers.BenchHistoryRoom),
    hibernate=_hibernate,
)
