"""Stub calls to objects owned by another process (``durable.call`` / ``durable.result``).

A part of :class:`~django_durable.redis.transport.RedisTransport`. A call goes to the
owner's process channel and waits for the answer on this process's; a process that
serves no socket leaves objects with sockets to the processes that serve them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from .. import exceptions
from ..calls import ALARM_METHOD, check_rpc, run_rpc
from ..encoding import decode
from ..exceptions import RPCError
from ..registry import registry
from .messages import CallMessage, ResultMessage
from .parts import MAX_HOPS, TransportParts

if TYPE_CHECKING:
    from ..classes import DurableClass

#: How long a stub waits for an object in another process to answer.
CALL_TIMEOUT = 60.0


class RemoteCalls(TransportParts):
    """``@rpc`` calls and alarms, run by the object's owner wherever it is."""

    async def call(self, cls: DurableClass, object_id: str, name: str, payload: bytes) -> Any:
        """Run the call here if this process owns (or takes) the object, else on its owner."""
        await self.start()
        key = cls.object_key(object_id)
        live = self.runtime.dispatcher.live.get(key)
        if live is not None and not live.lost:
            return await super().call(cls, object_id, name, payload)
        target = await self._call_target(key)
        if target is None:
            try:
                return await super().call(cls, object_id, name, payload)
            finally:
                if not self.serving:
                    await self.runtime.dispatcher.hibernate(key)
        return await self._remote_call(target, cls, object_id, name, payload)

    async def _call_target(self, key: str) -> str | None:
        """Where a call should run: None for here (this process took the object)."""
        owner = await self.layer.owner(key)
        if owner is None and not self.serving:
            # Leave objects with sockets to the processes that serve them.
            holders = await self.layer.holders(key)
            alive = await self.layer.alive(sorted(holders))
            if alive:
                return sorted(alive)[0]
        if owner is None or owner == self.channel:
            return await self._owner_elsewhere(key)
        return owner

    async def _remote_call(
        self,
        target: str,
        cls: DurableClass,
        object_id: str,
        name: str,
        payload: bytes,
    ) -> Any:
        call_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            await self._send_or_unavailable(
                target,
                CallMessage(
                    type="durable.call",
                    cls=cls.durable_name,
                    oid=object_id,
                    name=name,
                    payload=payload,
                    reply_to=self.channel,
                    call_id=call_id,
                    hops=0,
                ),
            )
            async with asyncio.timeout(CALL_TIMEOUT):
                reply = await future
        except TimeoutError:
            raise RPCError(
                f"{getattr(cls, '__name__', cls.durable_name)}({object_id!r}).{name}: "
                f"no answer within {CALL_TIMEOUT:.0f} s"
            ) from None
        finally:
            self._calls.pop(call_id, None)
        if reply["ok"]:
            return decode(reply["payload"])
        raise _rebuild_error(*reply["error"])

    async def _on_call(self, message: CallMessage) -> None:
        # Calls may run long: never hold up the process channel for one.
        task = asyncio.get_running_loop().create_task(self._serve_call(message))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _serve_call(self, message: CallMessage) -> None:

        reply = ResultMessage(type="durable.result", call_id=message["call_id"])
        cls = registry.get(message["cls"])
        try:
            if cls is None:
                raise RPCError(f"unknown durable class {message['cls']!r}")
            object_id, name, payload = message["oid"], message["name"], message["payload"]
            if name != ALARM_METHOD:
                check_rpc(cls, name)  # before waking the object: a refused call runs nothing
            key = cls.object_key(object_id)
            if self.runtime.shutting_down and key not in self.runtime.dispatcher.live:
                raise exceptions.Overloaded(f"{key}: this process is shutting down; try again")
            owner = await self._owner_elsewhere(key)
            if owner is not None:
                if message["hops"] >= MAX_HOPS:
                    raise RPCError(f"{key}: the call found no owner")
                await self.channel_layer.send(owner, {**message, "hops": message["hops"] + 1})
                return
            result = await self.runtime.dispatcher.call(
                cls, object_id, key, lambda instance: run_rpc(instance, name, payload)
            )
            reply["ok"], reply["payload"] = True, result
        except Exception as exc:
            reply["ok"] = False
            reply["error"] = [type(exc).__module__, type(exc).__qualname__, str(exc)]
        await self.channel_layer.send(message["reply_to"], reply)

    async def _on_result(self, message: ResultMessage) -> None:
        future = self._calls.get(message["call_id"])
        if future is not None and not future.done():
            future.set_result(message)


def _rebuild_error(module: str, qualname: str, message: str) -> BaseException:
    """The caller's copy of an exception raised by a method in another process."""
    if module == "builtins":
        candidate = getattr(builtins, qualname, None)
    elif module == exceptions.__name__:
        candidate = getattr(exceptions, qualname, None)
    else:
        candidate = None
    if isinstance(candidate, type) and issubclass(candidate, Exception):
        with contextlib.suppress(Exception):
            return candidate(message)
    return RPCError(f"{module}.{qualname}: {message}")
