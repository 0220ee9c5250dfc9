"""daphne's per-connection checks, run when a connection is due, not over every one.

daphne's ``Server`` walks all its connections every second (``application_checker``:
reap applications that finished, cancel those that outlive their closed connection)
and every two seconds (``timeout_checker``: each protocol's ``check_timeouts()``, which
closes a socket past ``--websocket_timeout``, rejects a handshake past
``--websocket_connect_timeout`` and sends the keep-alive ping after
``--ping-interval`` of silence). With 10,000 idle sockets those two walks are the
whole of an idle server's CPU (2-3 % of a core on 2 cores), and the list of every
connection they build each second sets off full garbage collections of the heap.
Hibernated objects are meant to cost nothing, so, under daphne, this module replaces
the two walks (SPEC §12; ``docs/deployment.md``, "Many idle sockets"):

- **Applications**: only the connections something happened to are looked at: their
  application finished (a done callback) or their connection closed
  (``protocol_disconnected``). Each is handled by the body of daphne's loop, kept as
  it is, and looked at every second while its closed connection's application runs
  (for ``--application-close-timeout``).
- **Timeouts**: each connection is filed under the two-second tick when one of its
  deadlines (timeout, handshake, ping) can next have passed; a tick runs daphne's own
  ``check_timeouts()`` for the connections filed under it, then files each again. A
  message from the client moves the ping deadline on; the connection finds that out
  at its old deadline and is filed again. Connections other than open WebSockets
  (HTTP requests, handshakes, closing sockets) are checked every tick, as daphne does.

The behaviour a client sees is daphne's, at most one tick later; the cost of an idle
connection is nothing until its next deadline. Turn it off with
``DURABLE_OBJECTS["SCHEDULED_DAPHNE_CHECKS"] = False``. It is installed only on the
daphne releases whose loops it was written from (4.x).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from concurrent.futures import CancelledError
from typing import Any

logger = logging.getLogger(__name__)
#: daphne's own logger, for the messages of daphne's loop that this module runs.
daphne_logger = logging.getLogger("daphne.server")

#: daphne's ``timeout_checker`` period, and so the width of a tick.
TICK = 2.0

#: daphne's ``application_checker`` period.
APPLICATION_PERIOD = 1.0

#: The key, in daphne's own dict of a connection (``Server.connections[protocol]``),
#: of the tick the connection is filed under: that small dict has room for it, where
#: an attribute on the protocol could make every protocol's ``__dict__`` grow.
_TICK_KEY = "durable_tick"


class ConnectionSchedule:
    """One server's connections that need a look, and when."""

    def __init__(self, connections: dict[Any, dict[str, Any]]) -> None:
        #: daphne's ``Server.connections``.
        self.connections = connections
        #: Connections whose application finished or whose connection closed.
        self.attention: set[Any] = set()
        #: Tick number -> connections whose ``check_timeouts()`` is due in that tick.
        self.ticks: dict[int, set[Any]] = {}
        #: The last tick whose connections were checked.
        self.last_tick = int(time.time() // TICK)
        #: ``check_timeouts()`` calls made so far (daphne's walks make one per
        #: connection every tick).
        self.checked = 0

    def file(self, protocol: Any, due: float) -> None:
        """File ``protocol`` under the first tick strictly after ``due``."""
        details = self.connections.get(protocol)
        if details is None:
            return
        self.unfile(protocol, details)
        tick = max(int(due // TICK) + 1, self.last_tick + 1)
        self.ticks.setdefault(tick, set()).add(protocol)
        details[_TICK_KEY] = tick

    def unfile(self, protocol: Any, details: dict[str, Any] | None = None) -> None:
        details = self.connections.get(protocol) if details is None else details
        if details is None or details.get(_TICK_KEY) is None:
            return
        tick = details[_TICK_KEY]
        details[_TICK_KEY] = None
        filed = self.ticks.get(tick)
        if filed is not None:
            filed.discard(protocol)
            if not filed:
                del self.ticks[tick]

    def take_due(self, now: float) -> list[Any]:
        """The connections filed under every tick up to ``now``'s, taken off the file."""
        current = int(now // TICK)
        due: list[Any] = []
        for tick in range(self.last_tick + 1, current + 1):
            filed = self.ticks.pop(tick, None)
            if filed:
                for protocol in filed:
                    details = self.connections.get(protocol)
                    if details is not None:
                        details[_TICK_KEY] = None
                due.extend(filed)
        self.last_tick = max(self.last_tick, current)
        return due

    def filed(self) -> int:
        return sum(len(filed) for filed in self.ticks.values())


class ApplicationDone:
    """The done callback of one connection's application: that connection needs a look.

    One per connection, so as small as it can be (a closure and the copy of the
    context ``add_done_callback`` would make cost about 260 B per socket).
    """

    __slots__ = ("attention", "protocol")

    def __init__(self, attention: set[Any], protocol: Any) -> None:
        self.attention = attention
        self.protocol = protocol

    def __call__(self, _future: Any) -> None:
        self.attention.add(self.protocol)


#: The context the done callbacks run in: they read no context variable.
_NO_CONTEXT = contextvars.Context()

#: The servers of this process with a schedule (one under daphne), for inspection.
_servers: weakref.WeakSet[Any] = weakref.WeakSet()


def schedule_of(server: Any) -> ConnectionSchedule:
    schedule: ConnectionSchedule | None = server.__dict__.get("_durable_schedule")
    if schedule is None:
        schedule = server.__dict__["_durable_schedule"] = ConnectionSchedule(server.connections)
        _servers.add(server)
    return schedule


def report() -> list[dict[str, Any]]:
    """What each server's schedule holds: for tests and the curious."""
    return [
        {
            "connections": len(server.connections),
            "attention": len(schedule.attention),
            "filed": schedule.filed(),
            "checked": schedule.checked,
            "last_tick": schedule.last_tick,
        }
        for server in list(_servers)
        for schedule in [schedule_of(server)]
    ]


def next_check(server: Any, protocol: Any, now: float) -> float:
    """When ``protocol.check_timeouts()`` can next do something."""
    state = getattr(protocol, "state", None)
    opened = getattr(protocol, "socket_opened", None)
    last_ping = getattr(protocol, "last_ping", None)
    if opened is None or last_ping is None or state != getattr(protocol, "STATE_OPEN", object()):
        return now  # not an open WebSocket: every tick, as daphne does
    due = float(last_ping + server.ping_interval)
    if server.websocket_timeout >= 0:
        due = min(due, float(opened + server.websocket_timeout))
    return due


def check_due_timeouts(server: Any, now: float | None = None) -> int:
    """Run ``check_timeouts()`` of the connections due now; file each again."""
    schedule = schedule_of(server)
    now = time.time() if now is None else now
    due = schedule.take_due(now)
    for protocol in due:
        if protocol not in server.connections:
            continue
        schedule.checked += 1
        try:
            protocol.check_timeouts()
        except Exception:
            logger.exception("check_timeouts() of %r failed", protocol)
        schedule.file(protocol, next_check(server, protocol, now))
    return len(due)


def check_applications(server: Any, now: float | None = None) -> None:
    """daphne's ``application_checker`` loop body, for the connections that need it."""
    schedule = schedule_of(server)
    now = time.time() if now is None else now
    for protocol in list(schedule.attention):
        details = server.connections.get(protocol)
        if details is None:
            schedule.attention.discard(protocol)
            continue
        disconnected = details.get("disconnected", None)
        application_instance = details.get("application_instance", None)
        overdue = disconnected and now - disconnected > server.application_close_timeout
        if overdue and application_instance and not application_instance.done():
            daphne_logger.warning(
                "Application instance %r for connection %s took too long to shut "
                "down and was killed.",
                application_instance,
                repr(protocol),
            )
            application_instance.cancel()
        if application_instance and application_instance.done():
            try:
                exception = application_instance.exception()
            except (CancelledError, asyncio.CancelledError):
                pass
            else:
                if exception:
                    if isinstance(exception, KeyboardInterrupt):
                        server.stop()
                    else:
                        daphne_logger.error(
                            "Exception inside application: %s", exception, exc_info=exception
                        )
                        if not disconnected:
                            protocol.handle_exception(exception)
            del details["application_instance"]
            application_instance = None
        if not application_instance and disconnected:
            schedule.unfile(protocol, details)
            del server.connections[protocol]
        if application_instance is None or not disconnected:
            # Nothing to wait for until the next done callback or disconnection.
            schedule.attention.discard(protocol)


def _call_later(seconds: float, checker: Any) -> None:
    """Run ``checker`` again in ``seconds``, on daphne's reactor, as daphne's loops do."""
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor
    reactor.callLater(seconds, checker)


def install() -> bool:
    """Replace daphne's two walks on its ``Server`` class; whether it did."""
    try:
        import daphne
        from daphne.server import Server
    except ImportError:
        return False
    if getattr(Server, "_durable_scheduled", False):
        return True
    if not str(getattr(daphne, "__version__", "")).startswith("4."):
        logger.info("daphne %s: its connection checks are left as they are", daphne.__version__)
        return False

    connected = Server.protocol_connected
    disconnected = Server.protocol_disconnected
    create_application = Server.create_application

    def protocol_connected(self: Any, protocol: Any) -> None:
        connected(self, protocol)
        schedule_of(self).file(protocol, time.time())

    def protocol_disconnected(self: Any, protocol: Any) -> None:
        disconnected(self, protocol)
        schedule_of(self).attention.add(protocol)

    def create_application_watched(self: Any, protocol: Any, scope: Any) -> Any:
        queue = create_application(self, protocol, scope)
        instance = self.connections.get(protocol, {}).get("application_instance")
        if instance is not None:
            callback = ApplicationDone(schedule_of(self).attention, protocol)
            instance.add_done_callback(callback, context=_NO_CONTEXT)
        return queue

    def application_checker(self: Any) -> None:
        try:
            check_applications(self)
        finally:
            _call_later(APPLICATION_PERIOD, self.application_checker)

    def timeout_checker(self: Any) -> None:
        try:
            check_due_timeouts(self)
        finally:
            _call_later(TICK, self.timeout_checker)

    Server.protocol_connected = protocol_connected
    Server.protocol_disconnected = protocol_disconnected
    Server.create_application = create_application_watched
    Server.application_checker = application_checker
    Server.timeout_checker = timeout_checker
    Server._durable_scheduled = True
    return True
