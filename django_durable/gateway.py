"""The gateway: the ASGI application that holds one WebSocket for its object.

A gateway is deliberately thin, because there is one per socket and most sockets sit
idle: it answers the auto-response itself, puts every other frame in its object's
mailbox without waiting for the handler, and costs no task but the one daphne already
runs for the connection. It holds no channel-layer channel of its own: tag groups are
joined once per process (see :mod:`django_durable.fanout`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from . import conf
from .asgi_server import (
    MESSAGE_TOO_BIG,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    close_with_code,
    daphne_protocol,
    outgoing_limit,
    utf8_size,
    warn_if_server_limit_decides,
)
from .events import CLOSE, MESSAGE, CloseData, Event
from .exceptions import SessionLayerUnavailable
from .limits import loggable, printable, validate_object_id
from .redis.held import STALL_AFTER
from .resume import go_live, requested
from .runtime import get_runtime
from .sockets import LocalSocket, new_socket_id
from .websocket import asgi_send_message

if TYPE_CHECKING:
    from .objects import DurableObject

logger = logging.getLogger(__name__)

#: Reason given to ``websocket_close`` for a connection that dropped without a Close frame.
ABNORMAL_CLOSURE_REASON = "connection dropped without a Close frame"


class Gateway:
    """The ASGI application returned by ``DurableConsumer.as_asgi()``."""

    def __init__(self, consumer_class: type[DurableObject]) -> None:
        self.consumer_class = consumer_class
        self.consumer_initkwargs: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # One coroutine for the whole connection, holding as little as it can: this
        # frame lives as long as the socket, and there may be tens of thousands.
        if scope["type"] != "websocket":
            raise ValueError(f"{self.consumer_class.__name__} serves WebSocket connections only")
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        cls = self.consumer_class
        try:
            object_id = sys.intern(validate_object_id(cls.get_object_id(scope)))
            resume = requested(scope)
        except Exception as exc:
            # Everything here came from the client: quoted and cut, never raw.
            logger.warning(
                "rejecting WebSocket %s: %s: %s",
                loggable(scope.get("path")),
                type(exc).__name__,
                printable(str(exc)),
            )
            await send({"type": "websocket.close"})
            return
        runtime = get_runtime()
        if runtime.shutting_down:
            await send({"type": "websocket.close"})  # stopping: no new connection
            return
        await runtime.transport.start()
        if runtime.outgoing_limit is None:
            runtime.outgoing_limit = outgoing_limit(send)
        max_message = conf.get("MAX_MESSAGE_BYTES")
        warn_if_server_limit_decides(send, max_message)
        sock = LocalSocket(
            new_socket_id(),
            cls,
            object_id,
            sys.intern(cls.object_key(object_id)),
            send,
            asyncio.current_task(),
        )
        sock.resume = resume
        runtime.sockets[sock.id] = sock
        try:
            tags = await runtime.transport.connect(sock, scope)
            # What connect(ws) saw is not kept: nothing of it may outlive the handshake.
            del scope, message
            if tags is None:
                await send({"type": "websocket.close"})
                return
            sock.tags = tags
            await runtime.fanout.join(sock, tags)
            if runtime.shutting_down:
                await sock.refuse(SERVICE_RESTART, "shutdown_closes", "the server is stopping")
            if resume is not None and sock.open:
                await go_live(runtime.layer, sock)
            del resume
            while True:
                message = await receive()
                mtype = message["type"]
                if mtype == "websocket.receive":
                    if not sock.open:
                        # The server closed this socket (1009, 1012, 1013): what the
                        # client sent after that Close frame is not for the object.
                        continue
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes")
                        if data is None:
                            continue
                    size = utf8_size(data)
                    if size > max_message:
                        await sock.refuse(
                            MESSAGE_TOO_BIG,
                            "oversize_closes",
                            f"a message of {size} bytes is over MAX_MESSAGE_BYTES ({max_message})",
                        )
                        continue
                    pair = runtime.layer.auto_response(sock.key)
                    if pair is not None and pair.request == data:
                        # The time of the answer, taken before it goes: a client that
                        # has the pong never sees a later timestamp.
                        answered = time.time()
                        await sock.send(asgi_send_message(pair.response))
                        await _touch(runtime, sock, answered)
                        continue
                    if sock.over_backlog(size):
                        await sock.refuse(
                            TRY_AGAIN_LATER,
                            "overload_closes",
                            f"{len(sock.backlog or ())} messages ({sock.backlog_bytes} bytes) "
                            "still waiting for the object (MAX_SOCKET_QUEUED_EVENTS/_BYTES)",
                        )
                        continue
                    sock.seq += 1
                    sock.queued(sock.seq, size)
                    await runtime.transport.route(sock, Event(MESSAGE, sock.id, data, seq=sock.seq))
                elif mtype == "websocket.disconnect":
                    sock.open = False
                    code = message.get("code") or 1005
                    if code == 1006:
                        data = CloseData(1006, ABNORMAL_CLOSURE_REASON, False)
                    else:
                        data = CloseData(code, "", True)
                    sock.seq += 1
                    await runtime.transport.route(sock, Event(CLOSE, sock.id, data, seq=sock.seq))
                    return
        except asyncio.CancelledError:
            error = sock.kill_error
            if error is None:
                if sock.open and sock.accepted and daphne_protocol(send) is None:
                    await _stopped_by_server(runtime, sock)
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if daphne_protocol(send) is None:
                # Other servers carry 1011 in the ASGI close message.
                await close_with_code(send, 1011, "Internal Error")
                return
            # Raising while the socket is open is the only way to make daphne send 1011.
            raise error from None
        finally:
            runtime.sockets.pop(sock.id, None)
            runtime.fanout.leave(sock)
            runtime.transport.gone(sock)


async def _touch(runtime: Any, sock: LocalSocket, when: float) -> None:
    """Record the auto-response timestamp, best effort: while Redis is away or frozen
    the gateway must keep reading its socket (its frames and close must not wait)."""
    try:
        async with asyncio.timeout(STALL_AFTER):
            await runtime.layer.touch_auto_response(sock.key, sock.id, when)
    except (TimeoutError, SessionLayerUnavailable) as exc:
        logger.debug("socket %s: auto-response timestamp not stored: %s", sock.id, exc)


async def _stopped_by_server(runtime: Any, sock: LocalSocket) -> None:
    """The server cancelled an open connection (hypercorn does at shutdown): close it
    with 1012 rather than let the server send 1011, and give the object its final event."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    try:
        await sock.refuse(SERVICE_RESTART, "shutdown_closes", "the server is stopping")
        sock.seq += 1
        event = Event(CLOSE, sock.id, CloseData(SERVICE_RESTART, "", True), seq=sock.seq)
        await runtime.transport.route(sock, event)
    finally:
        if task is not None:
            task.cancel()  # re-cancelled: the server's cancellation still ends the task
