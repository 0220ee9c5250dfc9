"""The input gate of a reentrant object (Cloudflare's input gate)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class InputGate:
    """Holds back new events while a storage call is in flight (Cloudflare's input gate).

    Turn-based objects get this for free; reentrant ones need it so that a handler
    awaiting storage never sees another event change the object under it.
    """

    def __init__(self) -> None:
        self._holders = 0
        # Made on first use: most objects never hold the gate, and every wake makes one.
        self._open: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        """Hold the gate while a storage call runs."""
        if self._open is None:
            self._open = asyncio.Event()
        self._holders += 1
        self._open.clear()
        try:
            yield
        finally:
            self._holders -= 1
            if not self._holders:
                self._open.set()

    async def wait_open(self) -> None:
        """Wait until no storage call holds the gate."""
        if self._holders and self._open is not None:
            await self._open.wait()
