"""``DurableConsumer``: the base class of a durable object.

Subclass it, write the hooks you need, and route ``YourClass.as_asgi()`` like any
Channels consumer. Unlike a Channels consumer, an instance is not one connection: it
is one *object* (a room, a game), shared by every connection whose route names the
same object id, and it may be dropped and re-created between events (hibernation), so
anything that must last lives in attachments, the object's settings or storage.

The hooks and names live in :class:`~django_durable.objects.DurableObject`, which the
core works with; this class adds what reaches the object from outside.
"""

from __future__ import annotations

from .gateway import Gateway
from .limits import validate_object_id
from .names import group_name
from .objects import AlarmInfo, DurableObject
from .outside import broadcast_to
from .registry import defined, registry
from .stubs import DurableStub

__all__ = ["AlarmInfo", "DurableConsumer", "defined", "group_name", "registry"]


class DurableConsumer(DurableObject, abstract=True):
    """One durable object: handlers for its sockets, its alarm and its RPC methods."""

    # Routing ------------------------------------------------------------------------

    @classmethod
    def as_asgi(cls) -> Gateway:
        """The ASGI application to route, like a Channels consumer's ``as_asgi()``."""
        return Gateway(cls)

    # Reaching the object from outside ----------------------------------------------

    @classmethod
    def get(cls, object_id: str) -> DurableStub:
        """A stub whose ``@rpc`` methods run on the live instance, wherever it lives."""
        return DurableStub(cls, validate_object_id(object_id))

    @classmethod
    async def broadcast_to(
        cls, object_id: str, message: str | bytes, tag: str | None = None
    ) -> None:
        """Send to the object's open sockets (of ``tag``) without waking it."""
        await broadcast_to(cls, validate_object_id(object_id), message, tag)
