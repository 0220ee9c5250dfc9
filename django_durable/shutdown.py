"""Graceful shutdown: hand every object over and close every socket with 1012.

In this order, each step bounded by ``SHUTDOWN_TIMEOUT`` in all:

1. stop: no new connection is accepted (gateways refuse the handshake), the alarm
   poller stops claiming alarms, events forwarded by other processes are left in their
   senders' outboxes (they are sent again to the next owner);
2. close this process's sockets with 1012 (Service Restart) so clients reconnect
   elsewhere, and wait for their close events to be routed to their objects;
3. let each live object handle what it has queued (the running handler finishes),
   write its session, and hibernate it: its lease is released at once, and the
   processes holding its other sockets are told to send their unacknowledged events
   to whoever takes the object next, instead of waiting for the lease to run out.

Nothing acknowledged is lost: an event is acknowledged only once its handler ran and
its effect was stored, and every event not acknowledged is still in the outbox of the
process that received it (or was sent by a client that is told to reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import conf, metrics

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)


async def shutdown(runtime: Runtime, timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Stop serving in this runtime (idempotent); returns within about ``timeout``."""
    if runtime.shutting_down:
        return
    runtime.shutting_down = True
    timeout = conf.get("SHUTDOWN_TIMEOUT") if timeout is None else timeout
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    alarms = runtime.alarms.task
    if alarms is not None:
        alarms.cancel()
    closed = await _close_sockets(runtime)
    await _until(lambda: not runtime.sockets, deadline)
    keys = list(runtime.dispatcher.live)
    if keys:
        tasks = [asyncio.ensure_future(_hand_over(runtime, key, deadline)) for key in keys]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("shutdown: %d objects still busy after %.1f s", len(pending), timeout)
    logger.info(
        "shutdown: %d sockets closed with 1012, %d objects handed over in %.2f s",
        closed,
        len(keys),
        time.monotonic() - started,
    )


async def _close_sockets(runtime: Runtime) -> int:
    from .asgi_server import SERVICE_RESTART

    per_object: Counter[str] = Counter()
    for sock in list(runtime.sockets.values()):
        if sock.open and sock.accepted:
            per_object[sock.key] += 1
            with contextlib.suppress(Exception):
                await sock.close(SERVICE_RESTART)
    for key, count in per_object.items():
        logger.warning("object %s: %d sockets closed with 1012 (shutdown)", key, count)
    total = sum(per_object.values())
    if total:
        metrics.inc("shutdown_closes", total)
    return total


async def _hand_over(runtime: Runtime, key: str, deadline: float) -> None:
    """Hibernate ``key`` once it handled what it has queued (its lease goes with it)."""
    live = runtime.dispatcher.live.get(key)
    if live is None:
        return
    await _until(lambda: live.queue.empty() and not live.inflight, deadline)
    await runtime.dispatcher.hibernate(key)


async def _until(check: Callable[[], bool], deadline: float) -> bool:
    """Poll ``check`` until it holds or ``deadline``: what it waits for has no event."""
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def shutdown_all() -> None:
    """Shut down the running event loop's runtime, if it ever made one."""
    from .runtime import existing_runtime

    runtime = existing_runtime()
    if runtime is not None:
        await shutdown(runtime)
