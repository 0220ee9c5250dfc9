"""Reaching an object's sockets from code outside it, without waking it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .delivery import is_connection_error
from .exceptions import SessionLayerUnavailable
from .fanout import broadcast_event_message
from .framing import POSITION
from .runtime import get_runtime
from .websocket import asgi_send_message

if TYPE_CHECKING:
    from .consumer import DurableConsumer


def broadcast_event(message: str | bytes) -> dict[str, Any]:
    """The group message of a broadcast: an ASGI send message with another type."""
    return {**asgi_send_message(message), "type": "durable.broadcast"}


async def broadcast_to(
    cls: type[DurableConsumer], object_id: str, message: str | bytes, tag: str | None
) -> None:
    """Through the tag's group when there is a channel layer, so every process fans out.

    With ``history = N`` the broadcast is kept (and numbered) before it is sent, as
    ``state.broadcast()`` does.
    """
    event = broadcast_event(message)
    runtime = get_runtime()
    if cls.history:
        epoch, offset = await runtime.layer.append_history(
            cls.object_key(object_id), cls.history, tag, (), message
        )
        event[POSITION] = [epoch, offset]
    group = cls.tag_group(object_id, tag)
    layer = runtime.fanout.channel_layer
    if layer is None:
        assert broadcast_event_message(event) is not None
        await runtime.fanout.deliver_local(group, event)
    else:
        try:
            await layer.group_send(group, event)
        except Exception as exc:
            if is_connection_error(exc):
                raise SessionLayerUnavailable(
                    f"broadcast_to({cls.__name__}, {object_id!r}): the channel layer is "
                    f"unreachable: {exc}"
                ) from exc
            raise
