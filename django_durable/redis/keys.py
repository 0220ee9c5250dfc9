"""Every Redis key name of django-durable, in one place.

Layout (``prefix`` defaults to ``durable:``; ``K`` is the object key):

- ``{prefix}s:K`` hash, socket id -> msgpack ``[tags, attachment, holder, state, seq]``
- ``{prefix}t:K`` hash, socket id -> auto-response timestamp (written by gateways)
- ``{prefix}c:K`` hash, ``auto`` -> msgpack ``[request, response]``, ``timeout`` -> ms
- ``{prefix}l:K`` the lease: ``"<holder channel>|<token>|<expiry>"``, the expiry on the
  live clock (``LIVE_CLOCK``), kept by Redis ``LEASE_TIME`` + ``RIDE_THROUGH``
- ``{prefix}f:K`` the last fencing token handed out for ``K``, kept ``fence_key_ttl``
  after each acquisition (see :attr:`RedisSessionLayer.fence_key_ttl`)
- ``{prefix}p:<holder channel>`` a process's heartbeat: its expiry on the live clock
- ``{prefix}clock``, ``{prefix}pause``: the live clock (the last tick, the pauses)
- ``{prefix}x:K`` hash of records set aside because they could not be decoded (a
  socket id, ``auto``, ``timeout`` or ``t:<socket id>`` -> the bytes as they were),
  kept a week for an operator to look at
- ``{prefix}hm:K`` hash, ``e`` -> the history's epoch, ``o`` -> the offset of its last
  broadcast; ``{prefix}h:K`` list of the last ``history`` broadcasts (msgpack
  ``[tag, excluded socket ids, payload]``), oldest first, so that entry ``i`` of ``n``
  has offset ``o - n + 1 + i``. Both expire ``HISTORY_TTL`` after their last use.
"""

from __future__ import annotations


class RedisKeys:
    """The names of one prefix's keys (``prefix`` defaults to ``durable:``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def lease(self, key: str) -> str:
        """The lease of an object."""
        return f"{self.prefix}l:{key}"

    def fence(self, key: str) -> str:
        """The last fencing token handed out for an object."""
        return f"{self.prefix}f:{key}"

    def sockets(self, key: str) -> str:
        """An object's socket records."""
        return f"{self.prefix}s:{key}"

    def stamps(self, key: str) -> str:
        """An object's auto-response timestamps."""
        return f"{self.prefix}t:{key}"

    def settings(self, key: str) -> str:
        """An object's auto-response pair and event timeout."""
        return f"{self.prefix}c:{key}"

    def set_aside(self, key: str) -> str:
        """Records of an object that could not be decoded."""
        return f"{self.prefix}x:{key}"

    def history_meta(self, key: str) -> str:
        """An object's history epoch and last offset."""
        return f"{self.prefix}hm:{key}"

    def history(self, key: str) -> str:
        """An object's last broadcasts."""
        return f"{self.prefix}h:{key}"

    def heartbeat(self, holder: str) -> str:
        """A process's heartbeat."""
        return f"{self.prefix}p:{holder}"

    @property
    def clock(self) -> list[str]:
        """The live clock's keys: its last tick and the pauses found."""
        return [f"{self.prefix}clock", f"{self.prefix}pause"]

    def of_object(self, key: str) -> list[str]:
        """An object's lease, sockets, timestamps and settings (the fenced write's keys)."""
        return [self.lease(key), self.sockets(key), self.stamps(key), self.settings(key)]

    def match(self, kind: str) -> str:
        """A SCAN pattern for every ``{prefix}{kind}:K`` key (the prefix escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}{kind}:*"

    def object_key(self, name: str, kind: str) -> str:
        """``K`` of a ``{prefix}{kind}:K`` key name."""
        return name[len(self.prefix) + len(kind) + 1 :]
