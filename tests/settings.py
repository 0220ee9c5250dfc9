"""Django settings for the test suite (in-memory layers, SQLite; PostgreSQL as "postgres")."""

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",  # django_durable's read-only admin (tests/test_admin.py)
    "django.contrib.messages",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "django_durable",
    "tests.app",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

ROOT_URLCONF = "tests.app.urls"
ASGI_APPLICATION = "tests.app.asgi.application"

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DURABLE_TEST_SQLITE", str(BASE_DIR / "test.sqlite3")),
        "TEST": {"NAME": os.environ.get("DURABLE_TEST_SQLITE_TEST", None)},
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DURABLE_TEST_PG_NAME", "django_durable"),
        "USER": os.environ.get("DURABLE_TEST_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("DURABLE_TEST_PG_PASSWORD", ""),
        "HOST": os.environ.get("DURABLE_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DURABLE_TEST_PG_PORT", "5432"),
        # Its test database needs nothing of default's (Django's default dependency), so
        # tests that use only this one can run alone (``pytest -k postgres``).
        "TEST": {"DEPENDENCIES": []},
    },
}

CHANNEL_LAYERS: dict[str, Any] = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DURABLE_OBJECTS: dict[str, Any] = {"IDLE_TIMEOUT": 10}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_durable": {
            "handlers": ["console"],
            "level": os.environ.get("DURABLE_TEST_LOG_LEVEL", "WARNING"),
        }
    },
}

# End-to-end servers are configured by environment variables (tests.daphne_server
# passes them): DURABLE_TEST_SESSION_LAYER=redis switches both layers to Redis, with a
# key prefix per test so tests sharing one Redis never see each other's objects.
if os.environ.get("DURABLE_TEST_IDLE_TIMEOUT"):
    DURABLE_OBJECTS["IDLE_TIMEOUT"] = float(os.environ["DURABLE_TEST_IDLE_TIMEOUT"])
if os.environ.get("DURABLE_TEST_HIBERNATE_EAGERLY"):
    DURABLE_OBJECTS["HIBERNATE_EAGERLY"] = True
if os.environ.get("DURABLE_TEST_SCHEDULED_DAPHNE_CHECKS") == "0":
    DURABLE_OBJECTS["SCHEDULED_DAPHNE_CHECKS"] = False
if os.environ.get("DURABLE_TEST_LEASE_TIME"):
    DURABLE_OBJECTS["LEASE_TIME"] = float(os.environ["DURABLE_TEST_LEASE_TIME"])
if os.environ.get("DURABLE_TEST_ALARM_RETRY_BASE_DELAY"):
    DURABLE_OBJECTS["ALARM_RETRY_BASE_DELAY"] = float(
        os.environ["DURABLE_TEST_ALARM_RETRY_BASE_DELAY"]
    )
if os.environ.get("DURABLE_TEST_SESSION_LAYER") == "redis":
    # DURABLE_TEST_REDIS_URLS (comma-separated) spreads over several servers;
    # DURABLE_TEST_REDIS_SENTINEL ("host:port/master") reaches one through a Sentinel.
    _urls = os.environ.get("DURABLE_TEST_REDIS_URLS") or os.environ.get(
        "DURABLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9"
    )
    _redis_hosts: list[dict[str, Any]] = [
        {"address": url, "socket_timeout": None, "max_connections": 1000}
        for url in _urls.split(",")
    ]
    if os.environ.get("DURABLE_TEST_REDIS_SENTINEL"):
        _sentinel, _master = os.environ["DURABLE_TEST_REDIS_SENTINEL"].split("/")
        _sentinel_host, _sentinel_port = _sentinel.split(":")
        _redis_hosts = [
            {
                "sentinels": [(_sentinel_host, int(_sentinel_port))],
                "master_name": _master,
                "socket_timeout": None,
                "max_connections": 1000,
            }
        ]
    _prefix = os.environ.get("DURABLE_TEST_REDIS_PREFIX", "durable-test")
    # DURABLE_TEST_CHANNEL_CAPACITY=default keeps channels_redis's own (100).
    _capacity = os.environ.get("DURABLE_TEST_CHANNEL_CAPACITY", "10000")
    _layer_config: dict[str, Any] = {"hosts": _redis_hosts, "prefix": f"{_prefix}:asgi"}
    if _capacity != "default":
        _layer_config["capacity"] = int(_capacity)
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": _layer_config}
    }
    DURABLE_OBJECTS["SESSION_LAYER"] = {
        "BACKEND": "django_durable.session.RedisSessionLayer",
        "CONFIG": {"hosts": _redis_hosts, "prefix": f"{_prefix}:durable:"},
    }

# Overload, message size and shutdown tests (tests/test_overload.py, test_shutdown.py).
for _key in (
    "MAX_MESSAGE_BYTES",
    "MAX_QUEUED_EVENTS",
    "MAX_QUEUED_BYTES",
    "MAX_SOCKET_QUEUED_EVENTS",
    "MAX_SOCKET_QUEUED_BYTES",
):
    if os.environ.get(f"DURABLE_TEST_{_key}"):
        DURABLE_OBJECTS[_key] = int(os.environ[f"DURABLE_TEST_{_key}"])
if os.environ.get("DURABLE_TEST_SHUTDOWN_TIMEOUT"):
    DURABLE_OBJECTS["SHUTDOWN_TIMEOUT"] = float(os.environ["DURABLE_TEST_SHUTDOWN_TIMEOUT"])

# Storage, alarm and stub tests: a faster alarm poller, and storage and alarms on the
# "postgres" alias (whose NAME comes from DURABLE_TEST_PG_NAME) instead of SQLite.
if os.environ.get("DURABLE_TEST_ALARM_POLL_INTERVAL"):
    DURABLE_OBJECTS["ALARM_POLL_INTERVAL"] = float(os.environ["DURABLE_TEST_ALARM_POLL_INTERVAL"])
if os.environ.get("DURABLE_TEST_MAX_HELD_BYTES"):
    DURABLE_OBJECTS["MAX_HELD_BYTES"] = int(os.environ["DURABLE_TEST_MAX_HELD_BYTES"])
if os.environ.get("DURABLE_TEST_STORAGE_TIMEOUT"):
    DURABLE_OBJECTS["STORAGE_TIMEOUT"] = float(os.environ["DURABLE_TEST_STORAGE_TIMEOUT"])
if os.environ.get("DURABLE_TEST_DATABASE"):
    DURABLE_OBJECTS["DATABASE"] = os.environ["DURABLE_TEST_DATABASE"]
# bench/storage_bench.py: persistent database connections ("none": forever, or seconds).
if os.environ.get("DURABLE_TEST_CONN_MAX_AGE"):
    _age = os.environ["DURABLE_TEST_CONN_MAX_AGE"]
    for _database in DATABASES.values():
        _database["CONN_MAX_AGE"] = None if _age == "none" else int(_age)
# Several processes sharing one SQLite file: BEGIN IMMEDIATE, so that a transaction that
# reads before it writes waits for the write lock instead of failing "database is locked".
if os.environ.get("DURABLE_TEST_SQLITE_IMMEDIATE"):
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
