"""(c) A ``django_durable.DurableConsumer``: all sockets on one object, one tag."""

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
        "websocket": URLRouter([path("ws/room/<str:room>/", consumers.BenchRoom.as_asgi())]),
    }
)


def _sockets() -> int:
    return sum(len(runtime.sockets) for runtime in all_runtimes())


async def _hibernate() -> None:
    await hibernate(consumers.BenchRoom, ROOM)


async def _wake(n: int) -> None:
    """Wake objects o0 .. o<n-1> once each, 200 at a time (200 workers: an
    ``asyncio.Semaphore`` with thousands of waiters costs O(waiters) per release)."""
    import asyncio

    ids = iter(range(n))

    async def worker() -> None:
        for i in ids:
            await consumers.BenchRoom.get(f"o{i}").ping()

    await asyncio.gather(*(worker() for _ in range(min(n, 200))))


control.register(
    sockets=_sockets,
    live_object_ids=lambda: live_object_ids(consumers.BenchRoom),
    hibernate=_hibernate,
    wake=_wake,
)
