"""``@rpc``: the explicit list of methods code outside an object may call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

RPC_ATTRIBUTE = "__durable_rpc__"


def rpc(method: F) -> F:
    """Allow ``await ChatRoom.get(object_id).method(...)`` to call this method.

    Opt-in, because a stub call runs code inside the object on behalf of whoever can
    import the class: every other name is refused before anything runs.
    """
    setattr(method, RPC_ATTRIBUTE, True)
    return method


def is_rpc(method: object) -> bool:
    """Whether ``method`` is marked ``@rpc``."""
    return bool(getattr(method, RPC_ATTRIBUTE, False))
