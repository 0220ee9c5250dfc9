"""How an object reaches the connections behind its socket records.

In one process every record's connection is a :class:`LocalSocket` of this runtime.
A distributed session layer provides its own transport (``make_transport``) that sends
to other processes' sockets through the channel layer and uses this one for the rest.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import Runtime
    from .session.base import SocketRecord

logger = logging.getLogger(__name__)


class LocalTransport:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def send(self, key: str, records: list[SocketRecord], message: dict[str, Any]) -> int:
        """Send ``message`` to each record's connection; how many it reached."""
        sockets = self.runtime.sockets
        sent = 0
        for record in records:
            sock = sockets.get(record.id)
            if sock is None or not sock.open:
                continue
            try:
                await sock.send(message)
            except Exception:
                logger.debug("send to socket %s failed", record.id, exc_info=True)
                continue
            sent += 1
        return sent

    async def close(self, key: str, record: SocketRecord, code: int, reason: str) -> None:
        sock = self.runtime.sockets.get(record.id)
        if sock is not None:
            await sock.close(code)

    async def kill(self, key: str, record: SocketRecord, error: BaseException) -> None:
        sock = self.runtime.sockets.get(record.id)
        if sock is not None:
            sock.kill(error)

    async def accepted(self, key: str, sock: Any, record: SocketRecord) -> None:
        await sock.accept()

    async def call(self, cls: Any, object_id: str, name: str, payload: bytes) -> Any:
        return await _local_call(self.runtime, cls, object_id, name, payload)


async def _local_call(runtime: Runtime, cls: Any, object_id: str, name: str, payload: bytes) -> Any:
    from .encoding import decode
    from .stubs import run_rpc

    key = cls.object_key(object_id)
    result = await runtime.dispatcher.call(
        cls, object_id, key, lambda instance: run_rpc(instance, name, payload)
    )
    return decode(result)
