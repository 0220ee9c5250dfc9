"""Session layers: where sockets' tags, attachments and object settings outlive instances."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from .base import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    BaseSessionLayer,
    ObjectSession,
    SocketRecord,
)
from .memory import InMemorySessionLayer


def __getattr__(name: str) -> Any:
    # The Redis backend needs the optional ``redis`` extra: import it only when asked.
    if name == "RedisSessionLayer":
        from ..redis.layer import RedisSessionLayer

        return RedisSessionLayer
    raise AttributeError(name)


def build_session_layer(spec: dict[str, Any]) -> BaseSessionLayer:
    """Instantiate ``{"BACKEND": dotted path, "CONFIG": {...}}`` like Channels' layers."""
    backend: type[BaseSessionLayer] = import_string(spec["BACKEND"])
    return backend(**(spec.get("CONFIG") or {}))


__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "OPEN",
    "BaseSessionLayer",
    "InMemorySessionLayer",
    "ObjectSession",
    "SocketRecord",
    "build_session_layer",
]
