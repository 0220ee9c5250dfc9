"""The ``DURABLE_OBJECTS`` setting, read with its defaults filled in.

Values are read from ``django.conf.settings`` on every call rather than cached at import,
so ``override_settings`` in tests and settings changed at start-up both take effect.
Validation lives in :mod:`django_durable.checks`; this module trusts what it reads.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "SESSION_LAYER": {"BACKEND": "django_durable.session.InMemorySessionLayer", "CONFIG": {}},
    "IDLE_TIMEOUT": 10.0,
    "MAX_WEBSOCKETS": 32_768,
    "ATTACHMENT_MAX_BYTES": 16_384,
    "HIBERNATE_EAGERLY": False,
    # The database alias that storage and alarms use.
    "DATABASE": "default",
    # First alarm retry delay in seconds; each further retry doubles it.
    "ALARM_RETRY_BASE_DELAY": 2.0,
    # How often (seconds) a process looks for due alarms in the database.
    "ALARM_POLL_INTERVAL": 1.0,
    # Lease time (seconds) of an object's ownership in Redis.
    "LEASE_TIME": 5.0,
    # Bytes of client events a process holds while Redis is away (django_durable.held).
    "MAX_HELD_BYTES": 64 * 1024 * 1024,
    # Seconds a storage call may take before it fails with StorageTimeout (None: never);
    # also the bound of the status view.
    "STORAGE_TIMEOUT": 30.0,
    # Incoming messages over this many bytes close their socket with 1009 (section 11).
    "MAX_MESSAGE_BYTES": 1_048_576,
    # Events waiting for one object (count and bytes): past either, the socket with the
    # most of them is closed with 1013 and stub calls raise Overloaded.
    "MAX_QUEUED_EVENTS": 10_000,
    "MAX_QUEUED_BYTES": 64 * 1_048_576,
    # Events one socket may have waiting for its object; past either it is closed (1013).
    "MAX_SOCKET_QUEUED_EVENTS": 1_000,
    "MAX_SOCKET_QUEUED_BYTES": 8 * 1_048_576,
    # Seconds a graceful shutdown waits for handlers and close handshakes.
    "SHUTDOWN_TIMEOUT": 5.0,
    # Seconds an object's broadcast history (``history = N``) is kept after its last use.
    "HISTORY_TTL": 3600.0,
    # Under daphne: check each connection's timeouts when due rather than walking every
    # connection every second (django_durable.daphne_timers).
    "SCHEDULED_DAPHNE_CHECKS": True,
}


def durable_settings() -> dict[str, Any]:
    """The merged ``DURABLE_OBJECTS`` dict: user values over :data:`DEFAULTS`."""
    user = getattr(settings, "DURABLE_OBJECTS", None) or {}
    return {**DEFAULTS, **user}


def get(name: str) -> Any:
    """A ``DURABLE_OBJECTS`` setting, or its default."""
    return durable_settings()[name]
