"""django-durable: Cloudflare's Durable Objects WebSocket Hibernation API for Channels.

The names below are loaded on first use (PEP 562): importing the package (as
``INSTALLED_APPS`` does, before the app registry is ready) loads no engine, no model
and no optional backend.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Loaded now: a leaf, and its name is also its module's, which would otherwise win once
# anything imported ``django_durable.rpc``.
from .rpc import rpc

if TYPE_CHECKING:
    from .autoresponse import WebSocketRequestResponsePair
    from .consumer import DurableConsumer
    from .outside import broadcast_event
    from .session.base import CLOSED, CLOSING, CONNECTING, OPEN
    from .state import DurableState
    from .websocket import DurableWebSocket

#: Each public name and the module it lives in.
_EXPORTS = {
    "CLOSED": ".session.base",
    "CLOSING": ".session.base",
    "CONNECTING": ".session.base",
    "OPEN": ".session.base",
    "DurableConsumer": ".consumer",
    "DurableState": ".state",
    "DurableWebSocket": ".websocket",
    "WebSocketRequestResponsePair": ".autoresponse",
    "broadcast_event": ".outside",
}

__all__ = [
    "CLOSED",
    "CLOSING",
    "CONNECTING",
    "OPEN",
    "DurableConsumer",
    "DurableState",
    "DurableWebSocket",
    "WebSocketRequestResponsePair",
    "broadcast_event",
    "rpc",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # found once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
