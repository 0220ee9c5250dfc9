"""``DurableClass``: a durable class as the layers below it see it.

The class itself (:class:`~django_durable.consumer.DurableConsumer`) sits at the
public edge and imports the engine; the registry, the held sockets and the transports
only need its names, so they type against this protocol and import nothing above them.
"""

from __future__ import annotations

from typing import Any, Protocol


class DurableClass(Protocol):
    """What the core needs of a durable class (a ``DurableConsumer`` subclass).

    A protocol, not the class: the class's public edges (routing, stubs) import the
    core, so the core cannot import them back.
    """

    @property
    def durable_name(self) -> str:
        """The class's stable name across processes."""

    @property
    def history(self) -> int:
        """How many broadcasts to keep for resuming clients."""

    @property
    def reentrant(self) -> bool:
        """Whether handlers interleave."""

    def object_key(self, object_id: str) -> str:
        """The object's key."""

    def tag_group(self, object_id: str, tag: str | None = None) -> str:
        """The channel-layer group of a tag."""

    def _create(self, object_id: str, state: Any) -> Any:
        """A new instance (a ``DurableObject``) for the live object to run."""
