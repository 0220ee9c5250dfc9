"""A TCP proxy for tests that make a service (PostgreSQL) hang or go away.

Servers under test connect to the proxy's port instead of the service's. ``freeze()``
stops forwarding in both directions (connections stay open and what is sent waits,
like a database that hangs or a network that drops packets); ``thaw()`` forwards what
waited and carries on; ``kill()`` drops every connection and refuses new ones until
``start()``. It runs its own event loop in a thread, so the test's loop never blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any

from tests.daphne_server import HOST, free_port

CHUNK = 65_536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=10)

    # Control, from the test ----------------------------------------------------------

    def start(self) -> TcpProxy:
        self._call(self._start())
        return self

    def freeze(self) -> None:
        self._call(self._set_open(False))

    def thaw(self) -> None:
        self._call(self._set_open(True))

    def kill(self) -> None:
        self._call(self._kill())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._kill())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # In the proxy's loop -----------------------------------------------------------------

    async def _start(self) -> None:
        if self._open is None:
            self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._accept, HOST, self.port)

    async def _set_open(self, value: bool) -> None:
        assert self._open is not None
        if value:
            self._open.set()
        else:
            self._open.clear()

    async def _kill(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._open is not None
        try:
            while data := await reader.read(CHUNK):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
