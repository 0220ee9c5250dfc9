"""(c') Diagnostic: the durable object of (c) served without Channels' routers.

``get_object_id`` is overridden so the gateway needs no ``url_route``: the difference
between this variant and (a) is django_durable's own per-socket cost.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
django.setup()

from benchapp import consumers, control  # noqa: E402
from django_durable.runtime import all_runtimes  # noqa: E402
from django_durable.testing import hibernate, live_object_ids  # noqa: E402

ROOM = "room"


class BenchRoomDirect(consumers.BenchRoom):
    durable_name = "bench.BenchRoomDirect"

    @classmethod
    def get_object_id(cls, scope):
        return ROOM


gateway = BenchRoomDirect.as_asgi()


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        await gateway(scope, receive, send)
    else:
        await control.http_app(scope, receive, send)


def _sockets() -> int:
    return sum(len(runtime.sockets) for runtime in all_runtimes())


async def _hibernate() -> None:
    await hibernate(BenchRoomDirect, ROOM)


control.register(
    sockets=_sockets,
    live_object_ids=lambda: live_object_ids(BenchRoomDirect),
    hibernate=_hibernate,
)
