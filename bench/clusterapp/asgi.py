"""``clusterapp.asgi:application``: one compared application (``BENCH_APP``) and the control
endpoints."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clusterapp.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from clusterapp import control  # noqa: E402

if settings.BENCH_APP == "channels":
    from clusterapp.plain import PlainRoom

    routes = [path("ws/plain/<str:room>/", PlainRoom.as_asgi())]
else:
    from clusterapp.consumers import ClusterRoom

    control.instrument()
    routes = [path("ws/durable/<str:room>/", ClusterRoom.as_asgi())]

application = ProtocolTypeRouter({"http": control.http_app, "websocket": URLRouter(routes)})
