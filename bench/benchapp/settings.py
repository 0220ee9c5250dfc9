"""Django settings of the benchmark server (in-memory channel layer and session layer)."""

import os
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "channels",
    "django_durable",
]

MIDDLEWARE: list[str] = []
ROOT_URLCONF = "benchapp.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # Never touched by the benchmark (no storage, no alarms); kept out of git.
        "NAME": os.environ.get("BENCH_SQLITE", str(BENCH_DIR / "results" / "bench.sqlite3")),
    }
}

CHANNEL_LAYERS: dict = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DURABLE_OBJECTS: dict = {
    # The benchmark hibernates explicitly (GET /bench/hibernate); a long idle timeout
    # keeps the object awake between broadcast rounds unless the bench asks otherwise.
    "IDLE_TIMEOUT": float(os.environ.get("BENCH_IDLE_TIMEOUT", "60")),
    # bench/many_objects.py: every object hibernates after each event.
    "HIBERNATE_EAGERLY": os.environ.get("BENCH_HIBERNATE_EAGERLY") == "1",
}
# BENCH_DAPHNE_CHECKS=daphne: daphne's own walks over every connection, for comparison.
if os.environ.get("BENCH_DAPHNE_CHECKS") == "daphne":
    DURABLE_OBJECTS["SCHEDULED_DAPHNE_CHECKS"] = False
# bench/overload_bench.py: the flood against a server without bounds, for comparison.
if os.environ.get("BENCH_UNBOUNDED"):
    for _key in ("MAX_QUEUED_EVENTS", "MAX_QUEUED_BYTES"):
        DURABLE_OBJECTS[_key] = 10**12
    for _key in ("MAX_SOCKET_QUEUED_EVENTS", "MAX_SOCKET_QUEUED_BYTES"):
        DURABLE_OBJECTS[_key] = 10**12

if os.environ.get("BENCH_LAYER") == "redis":
    # bench/many_objects.py with two processes: Redis layers as docs/deployment.md says,
    # under a fresh prefix per run (BENCH_PREFIX) so runs sharing a Redis never meet.
    _prefix = os.environ.get("BENCH_PREFIX", "bench-many")
    _host = {
        "address": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
        "socket_timeout": None,
        "max_connections": 1000,
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_host], "prefix": f"{_prefix}:asgi", "capacity": 10_000},
        }
    }
    DURABLE_OBJECTS["SESSION_LAYER"] = {
        "BACKEND": "django_durable.session.RedisSessionLayer",
        "CONFIG": {"hosts": [_host], "prefix": f"{_prefix}:durable:"},
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "WARNING"}},
}
