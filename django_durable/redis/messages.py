"""Every message processes send each other through the channel layer, by shape.

Each process reads one channel (its *process channel*, also its name as a socket
holder and a lease holder; see :mod:`django_durable.redis.transport`). Everything
crossing it is one of these ``TypedDict`` shapes (msgpack-encoded by channels-redis),
keyed by ``type``. Group messages (``durable.broadcast``, ``durable.settings``) reach
the same channel through the tag groups it joined, so they name their group.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# Gateways -> owners ---------------------------------------------------------------------


class EventMessage(TypedDict):
    """A socket's numbered event, forwarded by its gateway's process to the owner."""

    type: Literal["durable.event"]
    cls: str  #: the class's ``durable_name``
    oid: str  #: the object id
    kind: str  #: an event kind of :mod:`django_durable.events`
    sid: str | None
    seq: int | None
    #: The event's data: the text or bytes of a message, ``[code, reason, was_clean]``
    #: of a close, the exported scope of a connect, the error text of an error.
    data: Any
    holder: str  #: the process channel of the socket's gateway
    hops: int  #: forwards so far (an owner that lost the object forwards it on)


class RejoinMessage(TypedDict):
    """Sockets put back in Redis after it lost its data, for their live owner."""

    type: Literal["durable.rejoin"]
    key: str
    records: list[list[Any]]  #: ``[socket id, packed record]``


class StampsMessage(TypedDict):
    """Auto-response timestamps a gateway's process noted, for the live owner."""

    type: Literal["durable.stamps"]
    stamps: dict[str, list[list[Any]]]  #: object key -> ``[socket id, time]``


# Owners -> gateways ---------------------------------------------------------------------


class VerdictMessage(TypedDict, total=False):
    """``connect()``'s verdict: the accepted socket's tags, or None (rejected)."""

    type: Literal["durable.verdict"]
    sid: str
    tags: list[str] | None
    subprotocol: str  #: only when ``accept_websocket()`` chose one
    #: The object's auto-response pair (packed; ``b""``: none), with an accept: the
    #: gateway's process caches it without reading it from Redis.
    auto: bytes


class AckMessage(TypedDict):
    """Events handled and stored: the gateway forgets them from its outbox."""

    type: Literal["durable.ack"]
    acks: list[list[Any]]  #: ``[socket id, seq]``


#: One frame for several sockets of one process (one message however many): ``text``
#: or ``bytes``, ``pos`` (``framing.POSITION``) for a broadcast kept in the history, and
#: ``num`` (``framing.NUMBER``) for a frame of a socket event's handler (outgoing.py).
class SendMessage(TypedDict, total=False):
    type: Literal["durable.send"]
    sids: list[str]
    text: str
    bytes: bytes
    pos: Any
    num: list[Any]


class CloseMessage(TypedDict):
    """Close a socket with a code."""

    type: Literal["durable.close"]
    sid: str
    code: int


class KillMessage(TypedDict):
    """End a socket with 1011 (a handler timed out or failed it)."""

    type: Literal["durable.kill"]
    sid: str
    error: str


class RecordsMessage(TypedDict):
    """Copies of sockets' tags and attachments, for the process holding them."""

    type: Literal["durable.records"]
    records: dict[str, list[Any]]  #: socket id -> ``[tags, attachment]``


class ReleasedMessage(TypedDict):
    """At shutdown: the object was handed over; re-send what is not acknowledged."""

    type: Literal["durable.released"]
    key: str


# Stubs ----------------------------------------------------------------------------------


class CallMessage(TypedDict):
    """Run an ``@rpc`` method (or the alarm) on the owner; answer ``reply_to``."""

    type: Literal["durable.call"]
    cls: str
    oid: str
    name: str
    payload: bytes  #: encoded ``[args, kwargs]``
    reply_to: str
    call_id: str
    hops: int
    #: Set by the receiving process when the call came through the channel layer rather
    #: than its inbox: the result goes back the same way.
    via_channel_layer: NotRequired[bool]


class ResultMessage(TypedDict, total=False):
    """A call's outcome: ``ok`` and the encoded result, or the error's
    ``[module, qualname, message]``."""

    type: Literal["durable.result"]
    call_id: str
    ok: bool
    payload: bytes
    error: list[str]


# Tag groups -----------------------------------------------------------------------------


class SettingsMessage(TypedDict):
    """An object's auto-response changed: gateways of its sockets cache the new pair."""

    type: Literal["durable.settings"]
    group: str
    key: str
    auto: bytes | None  #: the packed pair, or None for none
