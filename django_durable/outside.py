"""Reaching an object's sockets from code outside it, without waking it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.layers import InMemoryChannelLayer

from .delivery import is_connection_error
from .exceptions import SessionLayerUnavailable
from .fanout import broadcast_event_message
from .framing import POSITION
from .runtime import all_runtimes, get_runtime
from .websocket import asgi_send_message

if TYPE_CHECKING:
    from .objects import DurableObject


def broadcast_event(group: str, message: str | bytes) -> dict[str, Any]:
    """The channel-layer message that sends ``message`` to the sockets of ``group``.

    ``await channel_layer.group_send(group, broadcast_event(group, "hi"))``, with
    ``group`` from ``ChatRoom.tag_group(object_id, tag)``. The message names its group
    because each process reads every group through one channel (SPEC §12): a message
    without ``"group"`` is refused (logged and counted), never delivered to a guess.
    """
    if not isinstance(group, str):
        raise TypeError(f"group must be a str (from tag_group()); got {type(group).__name__}")
    return {**asgi_send_message(message), "type": "durable.broadcast", "group": group}


async def broadcast_to(
    cls: type[DurableObject], object_id: str, message: str | bytes, tag: str | None
) -> None:
    """Through the tag's group when there is a channel layer, so every process fans out;
    straight to the sockets when the only process is this one (the in-memory channel
    layer scans all its groups on every message).

    With ``history = N`` the broadcast is kept (and numbered) before it is sent, as
    ``state.broadcast()`` does.
    """
    runtime = get_runtime()
    # From a handler of this very object: its frames held for its writes go first.
    await runtime.transport.push_held(cls.object_key(object_id))
    group = cls.tag_group(object_id, tag)
    event = broadcast_event(group, message)
    if cls.history:
        epoch, offset = await runtime.layer.append_history(
            cls.object_key(object_id), cls.history, tag, (), message
        )
        event[POSITION] = [epoch, offset]
    layer = runtime.fanout.channel_layer
    if layer is None or (isinstance(layer, InMemoryChannelLayer) and len(all_runtimes()) == 1):
        assert broadcast_event_message(event) is not None
        await runtime.fanout.deliver_local(group, event)
    else:
        await _group_send(layer, group, event, f"broadcast_to({cls.__name__}, {object_id!r})")


async def _group_send(layer: Any, group: str, event: dict[str, Any], what: str) -> None:
    """``group_send``, tried twice on a lost connection: after Redis restarted, the
    first command on each connection the pool kept fails, and the pool then reconnects
    it; a Redis that is really away fails both."""
    for attempt in (1, 2):
        try:
            await layer.group_send(group, event)
            return
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            if attempt == 2:
                raise SessionLayerUnavailable(
                    f"{what}: the channel layer is unreachable: {exc}"
                ) from exc
