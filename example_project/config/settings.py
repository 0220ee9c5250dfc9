"""Settings of the django-durable example: one process, in-memory layers, SQLite.

For development only (DEBUG is on and the secret key is public). See
docs/deployment.md for several processes with Redis and PostgreSQL.
"""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI_APPLICATION
    "channels",
    "django_durable",
    "chat",
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
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}

# One process: Channels' in-memory layer (and django-durable's in-memory session layer).
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# A room nobody talks in for 10 seconds hibernates: its instance leaves memory, its
# sockets stay connected, and the next message brings it back.
DURABLE_OBJECTS = {"IDLE_TIMEOUT": 10}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# daphne's log handler prints django_durable's INFO lines (hibernation, re-creation).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_durable": {"level": "INFO"}},
}
