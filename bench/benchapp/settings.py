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

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DURABLE_OBJECTS = {
    # The benchmark hibernates explicitly (GET /bench/hibernate); a long idle timeout
    # keeps the object awake between broadcast rounds unless the bench asks otherwise.
    "IDLE_TIMEOUT": float(os.environ.get("BENCH_IDLE_TIMEOUT", "60")),
}
# bench/overload_bench.py: the flood against a server without bounds, for comparison.
if os.environ.get("BENCH_UNBOUNDED"):
    for _key in ("MAX_QUEUED_EVENTS", "MAX_QUEUED_BYTES"):
        DURABLE_OBJECTS[_key] = 10**12
    for _key in ("MAX_SOCKET_QUEUED_EVENTS", "MAX_SOCKET_QUEUED_BYTES"):
        DURABLE_OBJECTS[_key] = 10**12

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "WARNING"}},
}
