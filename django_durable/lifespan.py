"""Start-up and shutdown with the server: daphne's reactor, or ASGI lifespan.

At start-up each serving process starts its alarm poller (so alarms set before a
restart fire whichever server runs); at shutdown it hands its objects over
(:mod:`django_durable.shutdown`).

- **daphne** sends no lifespan events: the poller starts with Twisted's reactor
  (:func:`start_with_daphne`) and the shutdown runs in a
  reactor "before shutdown" trigger (:func:`install_daphne_shutdown`, from
  ``ready()``). On SIGTERM or SIGINT daphne stops the reactor; its own trigger cancels
  every connection's application at once, which drops sockets without a Close frame.
  Ours is registered first and holds daphne's back until the hand-over is done.
- **uvicorn, hypercorn** (and any server that speaks ASGI lifespan): route the
  ``"lifespan"`` scope to :class:`DurableLifespan` in the project's
  ``ProtocolTypeRouter``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


class DurableLifespan:
    """The ASGI application for the ``lifespan`` scope.

    ``ProtocolTypeRouter({"http": ..., "websocket": ..., "lifespan": DurableLifespan()})``.
    Start-up runs the system checks of ``DURABLE_OBJECTS`` (a misconfigured server
    refuses to start, as under daphne) and starts the alarm poller; shutdown closes
    the sockets still open with 1012 and hands the live objects over.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            raise ValueError("DurableLifespan serves the 'lifespan' scope only")
        from .runtime import get_runtime
        from .shutdown import shutdown

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    _refuse_bad_settings()
                    get_runtime().alarms.start()
                except Exception as exc:
                    logger.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await shutdown(get_runtime())
                except Exception as exc:
                    logger.exception("graceful shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _refuse_bad_settings() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from .checks import check_durable_settings, format_errors

    errors = [e for e in check_durable_settings() if e.is_serious()]
    if errors:
        raise ImproperlyConfigured(format_errors(errors))


def install_daphne_shutdown() -> None:
    """Run the graceful shutdown before daphne cancels its applications (from ready())."""
    if not running_under_daphne():
        return
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        return
    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown, reactor, loop)


def _before_shutdown(reactor: Any, loop: asyncio.AbstractEventLoop) -> Any:
    from twisted.internet import defer

    from .shutdown import shutdown_all

    held = _hold_back_daphne_trigger(reactor)
    done = defer.Deferred.fromFuture(asyncio.ensure_future(shutdown_all(), loop=loop))
    done.addErrback(lambda failure: logger.error("graceful shutdown failed: %s", failure.value))
    if held is not None:
        # Then daphne's own trigger: it cancels what is left and waits for it.
        done.addBoth(lambda _: held())
    return done


def _hold_back_daphne_trigger(reactor: Any) -> Any:
    """Take daphne's ``kill_all_applications`` out of this shutdown's "before" phase.

    Twisted calls every "before" trigger at once and waits for all; daphne's would
    cancel every connection while ours still closes them. It is called after ours.
    """
    event = getattr(reactor, "_eventTriggers", {}).get("shutdown")
    triggers = getattr(event, "before", None)
    if not isinstance(triggers, list):
        return None
    for entry in list(triggers):
        fn, args, kwargs = entry
        if getattr(fn, "__name__", "") == "kill_all_applications":
            triggers.remove(entry)
            return lambda: fn(*args, **kwargs)
    return None


def running_under_daphne() -> bool:
    """Whether this process is daphne's."""
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
        from .runtime import get_runtime  # the engine loads with the reactor, not before

        get_runtime().alarms.start()

    reactor.callWhenRunning(lambda: loop.call_soon(boot))


def install_daphne_timers() -> None:
    """Under daphne, check connections when due (:mod:`django_durable.daphne_timers`)."""
    from . import conf

    if not running_under_daphne():
        return
    try:
        wanted = conf.get("SCHEDULED_DAPHNE_CHECKS") is not False
    except (TypeError, ValueError):
        return  # DURABLE_OBJECTS is no dict: the system checks say so, not a traceback
    if not wanted:
        return
    from .daphne_timers import install

    install()
