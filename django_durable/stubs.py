"""Stubs: calling an object's ``@rpc`` methods from a view, a command or another object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .encoding import decode, encode
from .exceptions import RPCNotAllowed
from .rpc import is_rpc
from .runtime import get_runtime
from .scheduler import ALARM_METHOD, AlarmInfo

if TYPE_CHECKING:
    from .consumer import DurableConsumer


class DurableStub:
    """``ChatRoom.get(object_id)``: attribute access gives an awaitable remote method."""

    __slots__ = ("_cls", "_object_id")

    def __init__(self, cls: type[DurableConsumer], object_id: str) -> None:
        from .consumer import DurableConsumer

        if not (isinstance(cls, type) and issubclass(cls, DurableConsumer)):
            what = cls.__name__ if isinstance(cls, type) else repr(cls)
            raise TypeError(
                f"a stub needs a DurableConsumer subclass; {what} is not one "
                "(use YourConsumer.get(object_id))"
            )
        self._cls = cls
        self._object_id = object_id

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("__"):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await call_rpc(self._cls, self._object_id, name, args, kwargs)

        call.__name__ = name
        return call

    def __repr__(self) -> str:
        return f"<DurableStub {self._cls.__name__}({self._object_id!r})>"


def check_rpc(cls: type[DurableConsumer], name: str) -> None:
    if name.startswith("_") or not is_rpc(getattr(cls, name, None)):
        raise RPCNotAllowed(
            f"{cls.__name__}.{name} is not an @rpc method; only methods decorated with "
            "@django_durable.rpc can be called through a stub"
        )


async def call_rpc(
    cls: type[DurableConsumer],
    object_id: str,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run ``name`` on the live instance (waking it) with arguments that cross as encoded."""
    check_rpc(cls, name)
    payload = encode([list(args), kwargs])
    return await get_runtime().transport.call(cls, object_id, name, payload)


async def run_rpc(instance: DurableConsumer, name: str, payload: bytes) -> bytes:
    """The owner's side: decode the arguments, run the method, encode the result."""
    args, kwargs = decode(payload)
    if name == ALARM_METHOD:
        await instance.alarm(AlarmInfo(*args))
        result = None
    else:
        check_rpc(type(instance), name)
        result = await getattr(instance, name)(*args, **kwargs)
    return encode(result)
