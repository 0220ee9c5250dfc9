"""Settings of the django-durable example: one process, in-memory layers, SQLite; or,
with DURABLE_EXAMPLE_CLUSTER=1, several daphne processes on Redis and PostgreSQL.

For development only (DEBUG is on and the secret key is public). See
docs/deployment.md for production settings.

Environment variables (the browser tests use them; the defaults suit a person):
DURABLE_EXAMPLE_DB (the SQLite file), DURABLE_EXAMPLE_IDLE_TIMEOUT (seconds before an
idle object hibernates), DURABLE_EXAMPLE_TURN_SECONDS (the game's turn timer),
DURABLE_EXAMPLE_ORIGINS (the origins allowed to open WebSockets, space-separated;
default http://127.0.0.1 and http://localhost on ports 8000, 8001 and 8002, the
README's) and DURABLE_EXAMPLE_CHAT_HISTORY (broadcasts a room keeps for pages that reconnect).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

# The pages (scheme, host and port) allowed to open WebSockets here, checked by
# Channels' OriginValidator in config/asgi.py. AllowedHostsOriginValidator would compare
# the host only (a page on http://127.0.0.1:9999 or https://localhost would pass for
# this server on http://127.0.0.1:8000). In production: ["https://chat.example.com"].
WEBSOCKET_ALLOWED_ORIGINS = (
    os.environ.get("DURABLE_EXAMPLE_ORIGINS")
    # The README's ports: 8000, and 8001 and 8002 for two processes on Redis.
    or " ".join(
        f"http://{host}:{port}"
        for host in ("127.0.0.1", "localhost")
        for port in (8000, 8001, 8002)
    )
).split()

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI_APPLICATION
    "django.contrib.staticfiles",  # serves durable-socket.js, the reconnecting client
    "channels",
    "django_durable",
    "chat",
    "game",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DURABLE_EXAMPLE_DB") or BASE_DIR / "db.sqlite3",
    }
}

# One process: Channels' in-memory layer (and django-durable's in-memory session layer).
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# A room nobody talks in for 10 seconds hibernates: its instance leaves memory, its
# sockets stay connected, and the next message brings it back.
DURABLE_OBJECTS = {"IDLE_TIMEOUT": float(os.environ.get("DURABLE_EXAMPLE_IDLE_TIMEOUT") or 10)}

# DURABLE_EXAMPLE_CLUSTER=1: several daphne processes on one Redis and one PostgreSQL
# database (pip install -e ".[redis,postgres]" in the clone, that is
# django-durable-objects[redis,postgres]). The values are docs/deployment.md's.
# DURABLE_EXAMPLE_REDIS_URL (default redis://127.0.0.1:6379/0) and
# DURABLE_EXAMPLE_PG_NAME, _USER, _HOST, _PORT (default django_durable_example,
# postgres, 127.0.0.1, 5432) say where they are. Then the status page lists every
# process's objects with their owner, and `python manage.py durable_status` reads them
# from Redis without --url.
if os.environ.get("DURABLE_EXAMPLE_CLUSTER") == "1":
    REDIS_HOST = {
        "address": os.environ.get("DURABLE_EXAMPLE_REDIS_URL") or "redis://127.0.0.1:6379/0",
        # channels_redis waits on Redis 5 seconds at a time, which redis-py 8's default
        # socket timeout breaks; the pool's default of 100 connections fails in bursts.
        "socket_timeout": None,
        "max_connections": 1000,
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_HOST], "capacity": 10_000},
        }
    }
    DURABLE_OBJECTS["SESSION_LAYER"] = {
        "BACKEND": "django_durable.session.RedisSessionLayer",
        "CONFIG": {"hosts": [REDIS_HOST]},
    }
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DURABLE_EXAMPLE_PG_NAME") or "django_durable_example",
        "USER": os.environ.get("DURABLE_EXAMPLE_PG_USER") or "postgres",
        "PASSWORD": os.environ.get("DURABLE_EXAMPLE_PG_PASSWORD") or "",
        "HOST": os.environ.get("DURABLE_EXAMPLE_PG_HOST") or "127.0.0.1",
        "PORT": os.environ.get("DURABLE_EXAMPLE_PG_PORT") or "5432",
    }

STATIC_URL = "static/"

# Broadcasts each room (and game) keeps for pages that reconnect (`history = N`): a page
# that was away for fewer broadcasts gets them replayed, one away longer reloads.
CHAT_HISTORY = int(os.environ.get("DURABLE_EXAMPLE_CHAT_HISTORY") or 100)

# The game's turn timer (an alarm per game): a player who takes longer is skipped.
GAME_TURN_SECONDS = float(os.environ.get("DURABLE_EXAMPLE_TURN_SECONDS") or 20)

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# daphne's log handler prints django_durable's INFO lines (hibernation, re-creation).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_durable": {"level": "INFO"}},
}
