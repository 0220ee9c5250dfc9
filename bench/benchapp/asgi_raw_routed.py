"""(a') Diagnostic: the bare app of (a) behind Channels' ``ProtocolTypeRouter`` and
``URLRouter`` (the routing every Channels or durable endpoint pays for), so the
benchmark can tell routing cost from django_durable's own."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from benchapp import asgi_raw, control  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": control.http_app,
        "websocket": URLRouter([path("ws/room/<str:room>/", asgi_raw.websocket_app)]),
    }
)
