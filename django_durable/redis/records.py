"""What the Redis layer stores, packed and unpacked, and how its failures read.

Everything read back is treated as hostile (another program, or corruption, may have
written it): decoding is bounded and anything unexpected raises :class:`CorruptRecord`.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
from redis.exceptions import RedisError, ResponseError

from ..autoresponse import WebSocketRequestResponsePair
from ..delivery import is_connection_error
from ..exceptions import CorruptValue, SessionLayerUnavailable
from ..limits import MAX_EVENT_TIMEOUT_MS
from ..session.base import CLOSED, CONNECTING, SocketRecord


class CorruptRecord(CorruptValue):
    """Bytes in Redis that are not a record this package wrote (corrupt or hostile)."""


def pack_record(record: SocketRecord) -> bytes:
    """A socket record as stored: msgpack ``[tags, attachment, holder, state, seq]``."""
    return msgpack.packb(  # type: ignore[no-any-return]
        [list(record.tags), record.attachment, record.holder, record.state, record.seq]
    )


def _unpack(data: bytes | str) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    try:
        # Plain msgpack (no extension hook): its parse stack is bounded (1,024 levels)
        # and every length is checked against the input.
        return msgpack.unpackb(data)
    except Exception as exc:
        raise CorruptRecord(f"not msgpack ({type(exc).__name__}: {exc or 'bad format'})") from None


def unpack_record(socket_id: str, data: bytes | str) -> SocketRecord:
    """A socket record, or ``CorruptRecord`` for anything ``pack_record`` cannot have made."""
    value = _unpack(data)
    if not (isinstance(value, list) and len(value) == 5):
        raise CorruptRecord(f"a socket record is a list of 5 items, not {type(value).__name__}")
    tags, attachment, holder, state, seq = value
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise CorruptRecord("a socket record's tags are not a list of str")
    if not (attachment is None or isinstance(attachment, bytes)):
        raise CorruptRecord("a socket record's attachment is not bytes")
    if not isinstance(holder, str):
        raise CorruptRecord("a socket record's holder is not a str")
    if not (type(state) is int and CONNECTING <= state <= CLOSED):
        raise CorruptRecord("a socket record's ready state is not 0-3")
    if not (type(seq) is int and seq >= 0):
        raise CorruptRecord("a socket record's event number is not an int >= 0")
    return SocketRecord(socket_id, tuple(tags), attachment, None, holder, state, seq)


def pack_pair(pair: WebSocketRequestResponsePair) -> bytes:
    """An auto-response pair as stored: msgpack ``[request, response]``."""
    return msgpack.packb([pair.request, pair.response])  # type: ignore[no-any-return]


def unpack_pair(data: bytes | str | None) -> WebSocketRequestResponsePair | None:
    """The pair back, or None; ``CorruptRecord`` for anything else."""
    if not data:
        return None
    value = _unpack(data)
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(part, (str, bytes)) for part in value)
    ):
        raise CorruptRecord("an auto-response pair is a list of two str or bytes")
    return WebSocketRequestResponsePair(value[0], value[1])


def unpack_timeout(data: bytes | str | None) -> int | None:
    """The stored event timeout (a cleared one is stored as 0, which loads as None)."""
    if data is None:
        return None
    try:
        timeout = int(data)
    except ValueError:
        raise CorruptRecord("an event timeout is not an int") from None
    if not 0 <= timeout <= MAX_EVENT_TIMEOUT_MS:
        raise CorruptRecord(f"an event timeout of {timeout} ms is out of range")
    return timeout or None


def unpack_stamp(data: bytes | str) -> float:
    """A timestamp back; ``CorruptRecord`` unless a finite number."""
    try:
        stamp = float(data)
    except ValueError:
        raise CorruptRecord("an auto-response timestamp is not a number") from None
    if not math.isfinite(stamp):
        raise CorruptRecord("an auto-response timestamp is not finite")
    return stamp


class unavailable_as_error:
    """Turn a lost Redis connection into ``SessionLayerUnavailable``, saying so."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return None
        if is_connection_error(exc):
            raise SessionLayerUnavailable(f"the Redis session layer is unreachable: {exc}") from exc
        if isinstance(exc, RedisError) and not isinstance(exc, ResponseError):
            raise SessionLayerUnavailable(f"the Redis session layer failed: {exc}") from exc
        return None


def text(value: Any) -> str:
    """A Redis reply as text (bytes undecodable as UTF-8 kept, escaped)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
