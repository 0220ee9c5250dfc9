"""This process's tag groups in Channels' in-memory channel layer, with no entry each.

``InMemoryChannelLayer`` keeps ``groups``: group name -> ``{channel: joined_at}``, a
dict per group, and walks every group on each ``receive()`` and ``group_send``
(``_clean_expired``). The fan-out joins every group it holds sockets in with its one
process channel, so 10,000 hibernated objects (two groups each) cost 20,000 such
dicts (about 230 bytes each, more than the rest of a hibernated object) and a walk
over all of them for every channel-layer message.

Every group of a fan-out has the same member, its process channel, so that layer
needs no entry per group: :func:`serve` replaces the layer's ``groups`` with
:class:`LocalGroups`, a dict that stores other channels' memberships as before and
answers for the fan-outs' groups from the fan-outs' own registries. What Channels
reads to send to a group (``group in groups``, ``groups[group]``, ``groups.get``)
sees the process channel of every fan-out holding the group, so plain
``channel_layer.group_send`` interop (SPEC §9) reaches the sockets of a hibernated
object, and ``_clean_expired`` walks only other channels' groups. A consumer that
joins one of these groups with ``group_add`` gets a stored entry that also names the
fan-outs' channels (``setdefault``), so the group then reaches both.

Only the exact ``channels.layers.InMemoryChannelLayer`` is served this way, while its
``groups`` is a plain dict (a subclass may store groups differently); any other layer
gets ``group_add`` per group.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer

#: The join time stored for a fan-out's channel in a stored entry: ``_clean_expired``
#: never expires a falsy timestamp, and the fan-out leaves its groups itself.
NEVER = 0.0


class GroupHolder(Protocol):
    """What :class:`LocalGroups` reads of a fan-out."""

    channel: str | None
    groups: dict[str, Any]


class LocalGroups(dict[str, dict[str, float]]):
    """``InMemoryChannelLayer.groups``, answering for the fan-outs' groups unstored."""

    def __init__(self, stored: dict[str, dict[str, float]]) -> None:
        super().__init__(stored)
        self.holders: weakref.WeakSet[Any] = weakref.WeakSet()

    def members(self, group: str) -> dict[str, float]:
        """The process channels of the fan-outs holding ``group`` (a new dict)."""
        return {
            h.channel: NEVER
            for h in list(self.holders)
            if h.channel is not None and group in h.groups
        }

    def __contains__(self, group: object) -> bool:
        if dict.__contains__(self, group):
            return True
        return isinstance(group, str) and bool(self.members(group))

    def __missing__(self, group: str) -> dict[str, float]:
        members = self.members(group)
        if not members:
            raise KeyError(group)
        return members

    def get(self, group: str, default: Any = None) -> Any:
        stored = dict.get(self, group)
        if stored is not None:
            return stored
        return self.members(group) or default

    def setdefault(self, group: str, default: Any = None) -> Any:
        # group_add(group, channel) of another consumer: the stored entry it creates
        # must keep naming the fan-outs' channels, since it now answers for the group.
        if not dict.__contains__(self, group):
            default = {**self.members(group), **(default or {})}
        return dict.setdefault(self, group, default)

    def joined(self, group: str, channel: str) -> None:
        """A fan-out joined ``group``: name its channel in a stored entry, if any."""
        stored = dict.get(self, group)
        if stored is not None:
            stored[channel] = NEVER

    def rejoin(self, holder: GroupHolder) -> None:
        """Name ``holder``'s channel again in the stored entries of its groups (the
        layer drops a channel from every group when a message to it expires)."""
        channel = holder.channel
        if channel is not None:
            for group, stored in dict.items(self):
                if group in holder.groups:
                    stored[channel] = NEVER

    def left(self, group: str, channel: str) -> None:
        """A fan-out left ``group``: drop its channel from a stored entry, if any."""
        stored = dict.get(self, group)
        if stored is not None:
            stored.pop(channel, None)
            if not stored:
                del self[group]


def serve(layer: Any, holder: GroupHolder) -> LocalGroups | None:
    """Answer for ``holder``'s groups in ``layer`` without an entry each; None when
    ``layer`` is not one this works for (join with ``group_add`` then)."""
    if type(layer) is not InMemoryChannelLayer:
        return None
    groups = layer.groups
    if type(groups) is not LocalGroups:
        if type(groups) is not dict:
            return None
        groups = layer.groups = LocalGroups(groups)
    groups.holders.add(holder)
    return groups
