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
from typing import TYPE_CHECKING

from django.db import close_old_connections
from django.utils import timezone

from . import conf
from .calls import ALARM_METHOD
from .dbthread import run_db
from .objects import AlarmInfo
from .registry import consumer_class

if TYPE_CHECKING:
    from . import alarms
    from .ports import Host

__all__ = ["ALARM_METHOD", "AlarmInfo", "AlarmScheduler", "consumer_class"]

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
CLAIM_SECONDS = 60.0


class AlarmScheduler:
    """This process's alarm poller: claims due alarms and runs them through the transport."""

    def __init__(self, runtime: Host) -> None:
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
