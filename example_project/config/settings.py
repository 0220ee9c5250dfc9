"""Settings of the django-durable example: one process, in-memory layers, SQLite.

For development only (DEBUG is on and the secret key is public). See
docs/deployment.md for several processes with Redis and PostgreSQL.

Environment variables (the browser tests use them; the defaults suit a person):
DURABLE_EXAMPLE_DB (the SQLite file), DURABLE_EXAMPLE_IDLE_TIMEOUT (seconds before an
idle object hibernates), DURABLE_EXAMPLE_TURN_SECONDS (the game's turn timer) and
DURABLE_EXAMPLE_CHAT_HISTORY (broadcasts a room keeps for pages that reconnect).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

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

# Several daphne processes (pip install "django-durable[redis]", a Redis on
# 127.0.0.1:6379, and PostgreSQL instead of SQLite for storage and alarms): replace the
# two settings above with
#
# REDIS_HOST = {"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}
# CHANNEL_LAYERS = {
#     "default": {
#         "BACKEND": "channels_redis.core.RedisChannelLayer",
#         "CONFIG": {"hosts": [REDIS_HOST]},
#     }
# }
# DURABLE_OBJECTS = {
#     "IDLE_TIMEOUT": 10,
#     "SESSION_LAYER": {
#         "BACKEND": "django_durable.session.RedisSessionLayer",
#         "CONFIG": {"hosts": [REDIS_HOST]},
#     },
# }
#
# The status page then lists every process's objects with their owner, and
# `python manage.py durable_status` reads them from Redis without --url.

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
