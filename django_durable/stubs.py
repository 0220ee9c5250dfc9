"""Stubs: calling an object's ``@rpc`` methods from a view, a command or another object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .calls import check_rpc, run_rpc
from .encoding import encode
from .objects import DurableObject
from .runtime import get_runtime

__all__ = ["DurableStub", "call_rpc", "check_rpc", "run_rpc"]


class DurableStub:
    """``ChatRoom.get(object_id)``: attribute access gives an awaitable remote method."""

    __slots__ = ("_cls", "_object_id")

    def __init__(self, cls: type[DurableObject], object_id: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, DurableObject)):
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


async def call_rpc(
    cls: type[DurableObject],
    object_id: str,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run ``name`` on the live instance (waking it) with arguments that cross as encoded."""
    check_rpc(cls, name)
    payload = encode([list(args), kwargs])
    return await get_runtime().transport.call(cls, object_id, name, payload)
