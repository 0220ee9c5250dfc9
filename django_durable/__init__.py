"""django-durable: Cloudflare's Durable Objects WebSocket Hibernation API for Channels."""

from .autoresponse import WebSocketRequestResponsePair
from .consumer import DurableConsumer
from .outside import broadcast_event
from .rpc import rpc
from .session.base import CLOSED, CLOSING, CONNECTING, OPEN
from .state import DurableState
from .websocket import DurableWebSocket

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
