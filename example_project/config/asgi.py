"""ASGI entry point: ``daphne config.asgi:application`` (run from example_project/).

``uvicorn config.asgi:application`` works too: the ``lifespan`` entry starts the alarm
poller and shuts down gracefully (daphne sends no lifespan events and needs none).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Set Django up before importing consumers (they import models).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from chat.routing import websocket_urlpatterns as chat_routes  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from game.routing import websocket_urlpatterns as game_routes  # noqa: E402

from django_durable.lifespan import DurableLifespan  # noqa: E402

# In development, static files (the reconnecting client durable-socket.js) are served by
# Django itself, as `manage.py runserver` does; in production, by the web server.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Exact origins, scheme and port included (see WEBSOCKET_ALLOWED_ORIGINS).
        "websocket": OriginValidator(
            URLRouter(chat_routes + game_routes), settings.WEBSOCKET_ALLOWED_ORIGINS
        ),
        "lifespan": DurableLifespan(),
    }
)
