"""What objects exist right now: live ones, hibernated ones with sockets, and their sockets.

The data behind ``django_durable.views.status`` and ``manage.py durable_status``, for
dashboards of your own:

- :func:`object_status` (``async``): one dict per object, as this process sees it. Live
  objects come from this process's dispatcher; hibernated objects with sockets come
  from the session layer: the in-memory layer's dict (so only this process's objects),
  or, with the Redis session layer, a ``SCAN`` of the session keys (so every object of
  every process, with the process that owns each live one).
- :func:`status_report` (``async``): the same list with the process, the session layer
  and totals around it: what the JSON view returns.
- :func:`layer_status` (``async``): the Redis session layer's view without a runtime,
  for code that runs outside the server (a management command).

Each object is a dict (JSON-ready)::

    {
        "key": "chat.consumers.ChatRoom/lobby",  # the object's session-layer key
        "class": "chat.consumers.ChatRoom",  # the consumer's durable_name
        "object_id": "lobby",
        "live": True,  # an instance is in memory (with Redis: in the owner process)
        "live_here": True,  # ... in this process
        "owner": None,  # Redis: the process channel holding the object's lease
        "sockets": 2,  # accepted sockets whose final event is not handled yet
        "states": {"OPEN": 2},  # those sockets by ready state
        "tags": {"members": 2},  # sockets per tag, in first-seen order
        "held_here": 2,  # sockets whose connection this process holds
        "holders": {"<process>": 2},  # sockets per holding process
        "alarm": "2026-01-01T12:00:00+00:00",  # the pending alarm, or None
    }

Everything here only reads: it never wakes, creates or changes an object. With the
in-memory session layer another process (``manage.py``) sees nothing, since the
objects live in the server's memory: ask the server over HTTP instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import conf
from .dbthread import run_db
from .session.base import READY_STATE_NAMES, BaseSessionLayer, SocketRecord

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)

#: Object keys per database query for pending alarms.
ALARM_QUERY_CHUNK = 500


class _Entry:
    """One object being described, filled from several sources."""

    __slots__ = ("alarm", "held_here", "key", "live", "live_here", "owner", "records")

    def __init__(self, key: str) -> None:
        self.key = key
        self.live = False
        self.live_here = False
        self.owner: str | None = None
        self.records: list[SocketRecord] | None = None
        self.held_here = 0
        self.alarm: str | None = None

    def as_dict(self) -> dict[str, Any]:
        class_name, _, object_id = self.key.partition("/")
        records = self.records or []
        states: Counter[str] = Counter(
            READY_STATE_NAMES.get(r.state, str(r.state)) for r in records
        )
        tags: Counter[str] = Counter()
        holders: Counter[str] = Counter()
        for record in records:
            tags.update(record.tags)
            holders[record.holder] += 1
        return {
            "key": self.key,
            "class": class_name,
            "object_id": object_id,
            "live": self.live,
            "live_here": self.live_here,
            "owner": self.owner,
            "sockets": len(records),
            "states": dict(states),
            "tags": dict(tags),
            "held_here": self.held_here,
            "holders": dict(holders),
            "alarm": self.alarm,
        }


def layer_name(layer: BaseSessionLayer) -> str:
    """The layer's dotted class path."""
    klass = type(layer)
    return f"{klass.__module__}.{klass.__qualname__}"


def _local_entries(runtime: Runtime) -> dict[str, _Entry]:
    """What this process knows without I/O: its live objects and the sockets it holds."""
    entries: dict[str, _Entry] = {}
    for key, live in list(runtime.dispatcher.live.items()):
        entry = entries[key] = _Entry(key)
        entry.live = entry.live_here = live.instance is not None
        entry.records = list(live.session.sockets.values())
    held: Counter[str] = Counter(getattr(s, "key", "") for s in list(runtime.sockets.values()))
    for key, count in held.items():
        if key:
            entries.setdefault(key, _Entry(key)).held_here = count
    return entries


async def _stored_entries(layer: BaseSessionLayer, entries: dict[str, _Entry]) -> None:
    """Every object the session layer has sockets or an owner for, merged into ``entries``."""
    for key, stored in (await layer.stored_objects(set(entries))).items():
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Entry(key)
        if not entry.live_here:
            # The owner's copy is the truth; a live object here has it in memory.
            entry.records = stored.records
        if stored.owner is not None:
            entry.owner = stored.owner
            entry.live = True


def _pending_alarms(keys: list[str], using: str) -> dict[str, str]:
    from django.db import close_old_connections

    from .alarms import from_db
    from .models import Alarm

    close_old_connections()
    found: dict[str, str] = {}
    for start in range(0, len(keys), ALARM_QUERY_CHUNK):
        rows = Alarm.objects.using(using).filter(
            object_key__in=keys[start : start + ALARM_QUERY_CHUNK]
        )
        for object_key, when in rows.values_list("object_key", "scheduled_at"):
            found[object_key] = from_db(when).isoformat()
    return found


async def _add_alarms(entries: dict[str, _Entry]) -> None:
    if not entries:
        return
    try:
        # Bounded, within the view's bound: a hanging database leaves the alarms out
        # rather than the status unanswered.
        async with asyncio.timeout(status_timeout() / 2):
            alarms = await run_db(_pending_alarms, sorted(entries), conf.get("DATABASE"))
    except Exception:
        logger.warning("status: reading pending alarms failed", exc_info=True)
        return
    for key, when in alarms.items():
        entries[key].alarm = when


def status_timeout() -> float:
    """How long the status may wait on the database or Redis: ``STORAGE_TIMEOUT``,
    or 30 s when storage calls may wait forever."""
    limit = conf.get("STORAGE_TIMEOUT")
    return 30.0 if limit is None else float(limit)


def _listed(entries: dict[str, _Entry]) -> list[dict[str, Any]]:
    # Hibernated objects are listed only while they have sockets (or a held connection).
    shown = (e for e in entries.values() if e.live or e.records or e.held_here)
    return [e.as_dict() for e in sorted(shown, key=lambda e: e.key)]


async def object_status(
    runtime: Runtime | None = None, *, alarms: bool = True
) -> list[dict[str, Any]]:
    """Live objects, and hibernated objects with sockets, as ``runtime`` sees them.

    ``runtime`` defaults to the running loop's (the server's, in a view). With the
    Redis session layer the list covers every process; otherwise this process only.
    ``alarms=False`` skips the database query for pending alarms.
    """
    if runtime is None:
        from .runtime import get_runtime

        runtime = get_runtime()
    entries = _local_entries(runtime)
    await _stored_entries(runtime.layer, entries)
    if alarms:
        await _add_alarms(entries)
    return _listed(entries)


async def layer_status(layer: BaseSessionLayer, *, alarms: bool = True) -> list[dict[str, Any]]:
    """Objects as the session layer alone shows them, from outside any server.

    With the Redis session layer: every object with sockets or a lease, its owner and
    its sockets. With the in-memory layer: what this process holds, which outside the
    server is nothing.
    """
    entries: dict[str, _Entry] = {}
    await _stored_entries(layer, entries)
    if alarms:
        await _add_alarms(entries)
    return _listed(entries)


def short_id(process: str, length: int = 8) -> str:
    """A process id short enough for a table: the random part of a process channel
    (``durable.<layer prefix>!<random>``) or of a runtime's id, cut to ``length``."""
    tail = process.rsplit("!", 1)[-1].rsplit(".", 1)[-1]
    return tail[:length]


def summarize(objects: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Totals of a list from :func:`object_status`."""
    listed = list(objects)
    live = sum(1 for o in listed if o["live"])
    return {
        "objects": len(listed),
        "live": live,
        "hibernated": len(listed) - live,
        "sockets": sum(o["sockets"] for o in listed),
    }


async def status_report(runtime: Runtime | None = None, *, alarms: bool = True) -> dict[str, Any]:
    """:func:`object_status` with its context: the JSON that the status view returns."""
    if runtime is None:
        from .runtime import get_runtime

        runtime = get_runtime()
    objects = await object_status(runtime, alarms=alarms)
    return report_of(objects, runtime.layer, process=runtime.process_id)


def report_of(
    objects: list[dict[str, Any]],
    layer: BaseSessionLayer,
    *,
    process: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The status JSON around a list of objects: the view's and the command's."""
    return {
        "process": process,
        "holder": layer.holder or None,
        "session_layer": layer_name(layer),
        # "cluster": every process's objects (Redis); "process": this process's only.
        "scope": "cluster" if layer.distributed else "process",
        **extra,
        "generated_at": datetime.now(UTC).isoformat(),
        "totals": summarize(objects),
        "objects": objects,
    }


__all__ = [
    "layer_status",
    "object_status",
    "report_of",
    "short_id",
    "status_report",
    "summarize",
]
