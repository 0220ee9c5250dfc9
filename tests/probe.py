"""Unit-level helpers: drive ``tests.app.consumers.Probe`` objects in the test's own loop.

A ``ProbeObject`` is one object id (fresh per test) of ``Probe`` (or ``ReentrantProbe``)
reached through Channels' ``WebsocketCommunicator`` and the test app's router. Its
clients run code inside the object (``await client.run(fn)``: ``fn(instance, ws)``
runs as a handler of that socket; its result or exception comes back), and
``wait_event`` waits, bounded, for an event the object recorded (start, message,
close, error).

Each event loop has its own django_durable runtime, so a test's objects die with it;
``close()`` disconnects what is still connected and hibernates the object so no task
outlives the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from django_durable.testing import hibernate
from tests.app.consumers import (
    PROBE_CONNECT,
    PROBE_EVENTS,
    PROBE_JOBS,
    PROBE_STARTS,
    PROBE_WAITERS,
    Probe,
    ReentrantProbe,
)
from tests.app.routing import websocket_urlpatterns

TIMEOUT = 3.0

_job_ids = itertools.count()


def application() -> Any:
    return URLRouter(websocket_urlpatterns)


async def wait_for(future: Any, timeout: float = TIMEOUT) -> Any:  # noqa: ASYNC109
    """Await ``future``; fail the test (rather than hang) after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError:
        raise AssertionError(f"nothing within {timeout} s") from None


class ProbeClient:
    """One connection to a probe object."""

    def __init__(self, probe: ProbeObject, comm: WebsocketCommunicator) -> None:
        self.probe = probe
        self.comm = comm
        self.connected = False
        self.id: str | None = None

    async def submit(self, fn: Callable[[Any, Any], Any]) -> asyncio.Future[Any]:
        """Queue ``fn(instance, ws)`` as this socket's next event; the future of its result."""
        job = str(next(_job_ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        PROBE_JOBS[job] = (fn, future)
        await self.comm.send_input({"type": "websocket.receive", "text": f"job:{job}"})
        return future

    async def run(self, fn: Callable[[Any, Any], Any], timeout: float = TIMEOUT) -> Any:  # noqa: ASYNC109
        """Run ``fn(instance, ws)`` inside the object as this socket's next event."""
        return await wait_for(await self.submit(fn), timeout)

    async def send(self, data: str | bytes) -> None:
        key = "text" if isinstance(data, str) else "bytes"
        await self.comm.send_input({"type": "websocket.receive", key: data})

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next ASGI message the server sent this socket."""
        return await self.comm.receive_output(timeout)

    async def receive_data(self, timeout: float = TIMEOUT) -> str | bytes:  # noqa: ASYNC109
        message = await self.receive(timeout)
        assert message["type"] == "websocket.send", message
        return message["text"] if message.get("text") is not None else message["bytes"]

    async def disconnect(self, code: int = 1000) -> None:
        """The client side closes (or drops, with 1006) the connection."""
        self.connected = False
        await self.comm.send_input({"type": "websocket.disconnect", "code": code})
        await self.comm.wait(TIMEOUT)


class ProbeObject:
    """A fresh object id of ``Probe`` (or ``ReentrantProbe``) and its connections."""

    def __init__(self, reentrant: bool = False) -> None:
        self.cls = ReentrantProbe if reentrant else Probe
        self.route = "reentrant-probe" if reentrant else "probe"
        self.id = f"unit-{uuid.uuid4().hex[:12]}"
        self.app = application()
        self.clients: list[ProbeClient] = []

    @property
    def events(self) -> list[tuple[Any, ...]]:
        return PROBE_EVENTS[self.id]

    @property
    def starts(self) -> int:
        return PROBE_STARTS[self.id]

    def on_connect(self, hook: Callable[[Any, Any], Any] | None) -> None:
        """Run ``hook(instance, ws)`` instead of the default connect (None: default)."""
        if hook is None:
            PROBE_CONNECT.pop(self.id, None)
        else:
            PROBE_CONNECT[self.id] = hook

    async def connect(self, query: str = "", *, expect_accept: bool = True) -> ProbeClient:
        comm = WebsocketCommunicator(self.app, f"/ws/{self.route}/{self.id}/?{query}")
        client = ProbeClient(self, comm)
        self.clients.append(client)
        accepted, detail = await comm.connect(TIMEOUT)
        assert accepted is expect_accept, f"connect returned {(accepted, detail)}"
        if accepted:
            client.connected = True
            client.id = await client.run(lambda _self, ws: ws.id)
        return client

    async def wait_event(
        self,
        predicate: Callable[[tuple[Any, ...]], bool],
        timeout: float = TIMEOUT,  # noqa: ASYNC109
    ) -> tuple[Any, ...]:
        """The first recorded event matching ``predicate``, waiting (bounded) for it."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in PROBE_EVENTS[self.id]:
                        if predicate(event):
                            return event
                    waiter: asyncio.Future[None] = loop.create_future()
                    PROBE_WAITERS[self.id].append(waiter)
                    await waiter
        except TimeoutError:
            raise AssertionError(
                f"no matching event within {timeout} s; events: {PROBE_EVENTS[self.id]!r}"
            ) from None

    def final_events(self, socket_id: str | None) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] in ("close", "error") and e[1] == socket_id]

    async def close(self) -> None:
        for client in self.clients:
            if client.connected:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            client.comm.stop(exceptions=False)
        with contextlib.suppress(Exception):
            await hibernate(self.cls, self.id)
        PROBE_CONNECT.pop(self.id, None)
        PROBE_EVENTS.pop(self.id, None)
        PROBE_WAITERS.pop(self.id, None)
        PROBE_STARTS.pop(self.id, None)
