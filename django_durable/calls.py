"""The owner's side of a call into an object: an ``@rpc`` method, or its alarm.

Both arrive the same way (a stub in any process, or the alarm scheduler, asks the
object's owner to run ``name`` with encoded arguments), so both are run here, below
the stubs that send them and the transports that carry them.
"""

from __future__ import annotations

from .classes import DurableClass
from .encoding import decode, encode
from .exceptions import RPCNotAllowed
from .objects import AlarmInfo, DurableObject
from .rpc import is_rpc

#: The name a call to the object's ``alarm()`` travels under (no method can have it).
ALARM_METHOD = "__alarm__"


def check_rpc(cls: DurableClass, name: str) -> None:
    """Refuse ``name`` unless it is an ``@rpc`` method: before anything runs or wakes."""
    if name.startswith("_") or not is_rpc(getattr(cls, name, None)):
        what = getattr(cls, "__name__", cls.durable_name)
        raise RPCNotAllowed(
            f"{what}.{name} is not an @rpc method; only methods decorated with "
            "@django_durable.rpc can be called through a stub"
        )


async def run_rpc(instance: DurableObject, name: str, payload: bytes) -> bytes:
    """Decode the arguments, run the method (or the alarm), encode the result."""
    args, kwargs = decode(payload)
    if name == ALARM_METHOD:
        await instance.alarm(AlarmInfo(*args))
        result = None
    else:
        check_rpc(type(instance), name)
        result = await getattr(instance, name)(*args, **kwargs)
    return encode(result)
