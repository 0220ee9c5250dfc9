"""(b) A stock Channels ``AsyncWebsocketConsumer`` on the in-memory channel layer."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchapp import consumers, control  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": control.http_app,
        "websocket": URLRouter(
            [path("ws/room/<str:room>/", consumers.BenchChannelsConsumer.as_asgi())]
        ),
    }
)

control.register(sockets=lambda: consumers.CHANNELS_OPEN)
