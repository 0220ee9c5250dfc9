"""Settings of the cluster benchmark servers, configured as docs/deployment.md says.

Environment:

- ``BENCH_APP``: ``durable`` (default: ``ClusterRoom``) or ``channels`` (``PlainRoom``
  only, django_durable not installed);
- ``BENCH_LAYER``: ``redis`` (default) for ``channels_redis.core.RedisChannelLayer`` and
  ``django_durable.session.RedisSessionLayer`` on the same Redis, or ``memory`` for the
  in-memory layers of a single process (the reference);
- ``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/9``) and ``BENCH_PREFIX`` (a
  fresh one per run, so runs sharing a Redis never see each other's keys);
- ``BENCH_LEASE_TIME``: ``LEASE_TIME`` in seconds (unset: the default, 5);
- ``BENCH_IDLE_TIMEOUT``: ``IDLE_TIMEOUT`` (default 3600: the objects stay awake, and
  keep their owner, for the whole run);
- ``BENCH_SQLITE``: the (migrated) SQLite file the alarm poller reads.
"""

import os
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

#: "durable" (default) or "channels": a stock Channels server without django_durable
#: installed (so no alarm poller shares asgiref's thread with the consumers).
BENCH_APP = os.environ.get("BENCH_APP", "durable")

INSTALLED_APPS = ["django.contrib.contenttypes", "channels"]
if BENCH_APP == "durable":
    INSTALLED_APPS.append("django_durable")
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "clusterapp.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_SQLITE", str(BENCH_DIR / "results" / "cluster.sqlite3")),
    }
}

DURABLE_OBJECTS: dict[str, Any] = {
    "IDLE_TIMEOUT": float(os.environ.get("BENCH_IDLE_TIMEOUT", "3600")),
    # The throughput run sends 1,000 echoes back to back, right after sequential ones
    # whose last acknowledgement may still be on its way (acknowledgements ride on the
    # next message, or go within 10 ms): with the default bound of 1,000 waiting
    # events per socket the 1,000th could be refused (1013), which is not measured here.
    "MAX_SOCKET_QUEUED_EVENTS": 4000,
}
if os.environ.get("BENCH_LEASE_TIME"):
    DURABLE_OBJECTS["LEASE_TIME"] = float(os.environ["BENCH_LEASE_TIME"])

if os.environ.get("BENCH_LAYER", "redis") == "redis":
    _prefix = os.environ.get("BENCH_PREFIX", "bench-cluster")
    REDIS_HOST: dict[str, Any] = {
        "address": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
        # channels_redis waits on Redis 5 s at a time (BZPOPMIN), which redis-py 8's
        # default socket timeout breaks (channels_redis issue 422).
        "socket_timeout": None,
        # The pool's default of 100 connections fails in bursts.
        "max_connections": 1000,
    }
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_HOST], "prefix": f"{_prefix}:asgi", "capacity": 10_000},
        }
    }
    DURABLE_OBJECTS["SESSION_LAYER"] = {
        "BACKEND": "django_durable.session.RedisSessionLayer",
        "CONFIG": {"hosts": [REDIS_HOST], "prefix": f"{_prefix}:durable:"},
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "WARNING"}},
}
