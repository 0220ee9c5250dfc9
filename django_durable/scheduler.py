"""Alarms: each process polls the database for due alarms and runs them on their object.

Alarm rows (:mod:`django_durable.alarms`) outlive every process. A process claims due
rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so with several processes exactly one
runs each alarm), runs ``alarm(info)`` on the object wherever it lives (waking it, via
the same path as a stub call), then deletes the row unless the handler set the alarm
again. A handler that raises is retried after 2, 4, 8, 16, 32 and 64 seconds
(``ALARM_RETRY_BASE_DELAY`` doubling), then dropped with an error in the log. A claim
lasts ``CLAIM_SECONDS``: if the process dies mid-handler, the alarm fires again after
that (delivery is at least once).

Under daphne the poller starts with the server (so alarms fire after a restart of
every process even before any connection) and runs every due alarm. In any other
process (tests, a management command) it starts when that process sets an alarm and
runs only the alarms that process set: a short-lived process must not claim other
objects' alarms and exit before running them (they would fire a claim later).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string

from . import conf
from .dbthread import run_db

if TYPE_CHECKING:
    from . import alarms
    from .consumer import DurableConsumer
    from .runtime import Runtime

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
CLAIM_SECONDS = 60.0
ALARM_METHOD = "__alarm__"


@dataclass(frozen=True)
class AlarmInfo:
    """What ``alarm(info)`` is told: how many times this alarm has been retried."""

    retry_count: int = 0

    @property
    def is_retry(self) -> bool:
        return self.retry_count > 0


class AlarmScheduler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        #: None: run every due alarm (a server); else only these objects' alarms.
        self.only: set[str] | None = set()

    def start(self, object_key: str | None = None) -> None:
        """Poll for every due alarm, or (``object_key``) for that object's too."""
        if object_key is None:
            self.only = None
        elif self.only is not None:
            self.only.add(object_key)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll(), name="durable-alarms")

    async def _poll(self) -> None:
        using = conf.get("DATABASE")
        failing = False
        while True:
            try:
                due = await run_db(_claim_due, using, self.only)
                failing = False
            except Exception:
                # Say it once per outage, not once per poll.
                (logger.debug if failing else logger.warning)(
                    "alarms: looking for due alarms failed", exc_info=True
                )
                failing = True
                due = []
            for alarm in due:
                task = asyncio.get_running_loop().create_task(self._fire(alarm, using))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            await asyncio.sleep(conf.get("ALARM_POLL_INTERVAL"))

    async def _fire(self, alarm: alarms.ClaimedAlarm, using: str) -> None:
        from . import alarms  # the models need the app registry: import at run time

        try:
            cls = consumer_class(alarm.consumer)
        except Exception:
            logger.error("alarm of %s: unknown class %r; dropped", alarm.object_key, alarm.consumer)
            await run_db(alarms.finish, alarm.object_key, alarm.version, using)
            return
        from .encoding import encode
        from .exceptions import Overloaded

        try:
            await self.runtime.transport.call(
                cls, alarm.object_id, ALARM_METHOD, encode([[alarm.retry_count], {}])
            )
        except Overloaded:
            # Nothing ran: try again soon, without counting it as a failure of the handler.
            await run_db(
                alarms.retry,
                alarm.object_key,
                alarm.version,
                conf.get("ALARM_RETRY_BASE_DELAY"),
                using,
                count=False,
            )
            return
        except Exception as exc:
            if alarm.retry_count >= MAX_RETRIES:
                # Drop it before saying so: whoever reads the log finds it gone.
                await run_db(alarms.finish, alarm.object_key, alarm.version, using)
                logger.error(
                    "object %s: alarm failed after %d retries; dropped",
                    alarm.object_key,
                    MAX_RETRIES,
                    exc_info=exc,
                )
                return
            delay = conf.get("ALARM_RETRY_BASE_DELAY") * 2**alarm.retry_count
            logger.warning(
                "object %s: alarm handler raised (%s); retry %d in %.1f s",
                alarm.object_key,
                exc,
                alarm.retry_count + 1,
                delay,
            )
            await run_db(alarms.retry, alarm.object_key, alarm.version, delay, using)
            return
        await run_db(alarms.finish, alarm.object_key, alarm.version, using)


def _claim_due(using: str, only: set[str] | None) -> list[alarms.ClaimedAlarm]:
    from . import alarms

    close_old_connections()
    return alarms.claim_due(timezone.now(), CLAIM_SECONDS, 100, using, only)


def consumer_class(name: str) -> type[DurableConsumer]:
    from .consumer import registry

    cls = registry.get(name)
    return cls if cls is not None else import_string(name)


def running_under_daphne() -> bool:
    return "daphne.server" in sys.modules and "twisted.internet.reactor" in sys.modules


def start_with_daphne() -> None:
    """Start the alarm poller when daphne's reactor starts (called from ``ready()``)."""
    if not running_under_daphne():
        return
    from twisted.internet import reactor

    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        return

    def boot() -> None:
        from .runtime import get_runtime

        get_runtime().alarms.start()

    reactor.callWhenRunning(lambda: loop.call_soon(boot))
