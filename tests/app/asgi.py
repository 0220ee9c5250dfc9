"""ASGI application the end-to-end tests serve with daphne (``tests.app.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

# Set Django up (apps, settings) before importing anything that imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from django_durable.lifespan import DurableLifespan  # noqa: E402
from tests.app.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
        # uvicorn and hypercorn (daphne sends no lifespan events).
        "lifespan": DurableLifespan(),
    }
)
