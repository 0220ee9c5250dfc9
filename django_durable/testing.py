"""Helpers for testing durable objects.

Use ``hibernate()`` in tests (or ``HIBERNATE_EAGERLY = True`` in test settings) so code
that keeps state in instance attributes fails in tests rather than in production.
"""

from __future__ import annotations

from .objects import DurableObject
from .runtime import all_runtimes, get_runtime


async def hibernate(cls: type[DurableObject], object_id: str) -> None:
    """Drop the live instance of ``object_id`` now, as idleness would; no-op if none."""
    await get_runtime().dispatcher.hibernate(cls.object_key(object_id))


def live_object_ids(cls: type[DurableObject]) -> set[str]:
    """Ids of ``cls``'s objects whose instance is in memory in this process."""
    try:
        runtimes = [get_runtime()]
    except RuntimeError:  # no running loop: look at every runtime of this process
        runtimes = all_runtimes()
    prefix = f"{cls.durable_name}/"
    ids: set[str] = set()
    for runtime in runtimes:
        for key, live in runtime.dispatcher.live.items():
            if key.startswith(prefix) and live.instance is not None:
                ids.add(live.object_id)
    return ids


__all__ = ["hibernate", "live_object_ids"]
