"""The one binary encoding django-durable persists: attachments, storage values, RPC arguments.

msgpack carries what it already represents natively and compactly (``None``, ``bool``,
64-bit ``int``, ``float``, ``str``, ``bytes``, ``list``, ``dict``), so a ``str`` or
``bytes`` of n bytes costs at most n + 6 bytes: no base64, unlike JSON. Every other
supported type travels as a msgpack extension type so it comes back as *itself*: a
``tuple`` is not silently turned into a ``list``, nor a ``datetime`` into a string.

Anything else raises :class:`~django_durable.exceptions.UnsupportedValue`: values
outlive the code that wrote them (across hibernation, processes and deploys), and
pickle would tie them to class paths and run code on load.

Layout: one version byte, then one msgpack object. The version byte lets the format
change later while old rows stay readable.

Bounds, the same on both sides so that whatever is written can be read back: values
nest at most :data:`MAX_DEPTH` (64) levels, integers hold at most
:data:`MAX_INT_BYTES` bytes, and no set or dict has more than :data:`MAX_COLLISIONS`
keys sharing one hash (``hash(-1) == hash(-2)``; a crafted set of thousands of ints
of one hash would take minutes to build). :func:`decode` reads bytes that may have
been written by anyone (a database row, a Redis hash), so it never trusts them: each
nested ``tuple``/``set`` is decoded by an unpacker of its own on the heap rather than
by recursion on the C stack (about 200 nested tuples used to overflow it and kill the
process), every length is checked against the input before anything is allocated,
and a value past a bound raises :class:`~django_durable.exceptions.CorruptValue`
for that value alone.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import msgpack

from .exceptions import CorruptValue, UnsupportedValue, ValueLimitExceeded

__all__ = [
    "FORMAT_VERSION",
    "MAX_COLLISIONS",
    "MAX_DEPTH",
    "MAX_INT_BYTES",
    "decode",
    "encode",
    "encoded_size",
]

FORMAT_VERSION = 1
_VERSION_BYTE = bytes([FORMAT_VERSION])

# Extension type codes. They are part of the stored format: never renumber one.
_EXT_BIGINT = 1  # two's complement, big-endian
_EXT_TUPLE = 2  # msgpack array of the items
_EXT_SET = 3  # msgpack array of the items
_EXT_FROZENSET = 4  # msgpack array of the items
_EXT_DATETIME = 5  # ISO 8601 text, with the UTC offset when aware
_EXT_DATE = 6  # ISO 8601 text
_EXT_TIME = 7  # ISO 8601 text, with the UTC offset when aware
_EXT_DECIMAL = 8  # str(Decimal): exact, and keeps NaN, Infinity, -0 and the exponent
_EXT_UUID = 9  # the 16 raw bytes

# Subclasses of the native types (IntEnum, SafeString, OrderedDict, namedtuple, ...)
# are stored as their base type, as ``json`` would store them. ``bool`` is native.
# The conversion copies the data itself, bypassing a subclass's ``__str__`` (a
# ``(str, Enum)`` member is stored as its value, not as ``"Color.RED"``).
_BASE_TYPES: dict[type, Any] = {
    str: str.__str__,
    bytes: bytes.__bytes__,
    int: int.__int__,
    float: float.__float__,
    list: list,
    dict: dict,
    tuple: tuple,
}

# msgpack's own integer range; outside it an int becomes _EXT_BIGINT.
_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1

#: Levels of containers a value may nest (a list of scalars is one level).
MAX_DEPTH = 64
#: Bytes of an integer's two's complement (16,384 bits; Python's own int-to-str limit,
#: 4,300 digits, is under it).
MAX_INT_BYTES = 2_048
#: Keys of one set or dict that may share a hash (a flood of them is quadratic to build).
MAX_COLLISIONS = 16
# Text of a datetime, date or time: the longest isoformat() is 32 characters.
_MAX_ISO_BYTES = 64
# Sets and dicts this small cannot hold a flood worth checking for.
_COLLISION_CHECK_FROM = 64
# Every level of containers and every key costs at least one byte of encoding, so an
# input this short is within both bounds without looking.
_SMALL_INPUT = MAX_DEPTH + 1

_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
_CONTAINERS = (list, tuple, set, frozenset, dict)
_KEYED = (dict, set, frozenset)


def _check_bounds(value: Any, error: type[Exception]) -> None:
    """Raise ``error`` if ``value`` nests deeper than :data:`MAX_DEPTH` or floods a hash.

    Breadth first, one level of containers at a time, without recursion (so no depth
    of input can exhaust a stack) and visiting each container object once per level
    (so a structure that contains itself fails at level 65 instead of looping).
    """
    if not isinstance(value, _CONTAINERS):
        return
    scalars, containers = _SCALARS, _CONTAINERS
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise error(f"a value may nest at most {MAX_DEPTH} levels of containers")
        children: dict[int, Any] = {}
        for container in level:
            if len(container) >= _COLLISION_CHECK_FROM and isinstance(container, _KEYED):
                _check_collisions(container, error)
            parts = (container, container.values()) if isinstance(container, dict) else (container,)
            for part in parts:
                for item in part:
                    if type(item) not in scalars and isinstance(item, containers):
                        children[id(item)] = item
        level = list(children.values())
        depth += 1


def _check_collisions(keys: Any, error: type[Exception]) -> None:
    hashes = sorted(map(hash, keys))
    limit = MAX_COLLISIONS
    if any(a == b for a, b in zip(hashes, hashes[limit:], strict=False)):
        raise error(
            f"a set or dict may have at most {limit} keys with the same hash "
            "(more is a hash flood: quadratic to build)"
        )


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, default=_default, use_bin_type=True, strict_types=True)
    return packed


def _default(value: Any) -> Any:
    """msgpack's hook for every value that is not exactly one of its native types."""
    for base, convert in _BASE_TYPES.items():
        if type(value) is not base and isinstance(value, base):
            value = convert(value)  # a subclass: store it as its base type
            break
    if type(value) is int:
        if _INT_MIN <= value <= _UINT_MAX:
            return value
        length = (value.bit_length() + 8) // 8
        if length > MAX_INT_BYTES:
            raise ValueLimitExceeded(
                f"an integer must fit in {MAX_INT_BYTES:,} bytes (-2**{MAX_INT_BYTES * 8 - 1} "
                f"to 2**{MAX_INT_BYTES * 8 - 1} - 1); got one of {value.bit_length():,} bits"
            )
        return msgpack.ExtType(_EXT_BIGINT, value.to_bytes(length, "big", signed=True))
    if type(value) in (str, bytes, float, list, dict):
        return value
    if type(value) is tuple:
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(value)))
    if isinstance(value, frozenset):
        return msgpack.ExtType(_EXT_FROZENSET, _pack(list(value)))
    if isinstance(value, set):
        return msgpack.ExtType(_EXT_SET, _pack(list(value)))
    # datetime is a subclass of date: test it first.
    if isinstance(value, datetime.datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode("ascii"))
    if isinstance(value, datetime.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode("ascii"))
    if isinstance(value, datetime.time):
        return msgpack.ExtType(_EXT_TIME, value.isoformat().encode("ascii"))
    if isinstance(value, decimal.Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(value).encode("ascii"))
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    raise UnsupportedValue(
        f"cannot encode a value of type {type(value).__module__}.{type(value).__qualname__}: "
        "django-durable stores only None, bool, int, float, str, bytes, list, dict, tuple, "
        "set, frozenset, datetime, date, time, Decimal and UUID"
    )


def _contiguous(value: Any) -> Any:
    """A copy of ``value`` with every memoryview made ``bytes``.

    msgpack refuses a non-contiguous (strided) memoryview before it would ask
    :func:`_default`, so this slow path runs only after such a refusal.
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    for container in (list, tuple, frozenset, set):
        if isinstance(value, container):
            return container(_contiguous(item) for item in value)
    if isinstance(value, dict):
        return {_contiguous(k): _contiguous(v) for k, v in value.items()}
    return value


def _ext(code: int, data: bytes, depth: int) -> Any:
    """Build one extension value; ``depth`` counts the extension containers around it."""
    if code == _EXT_BIGINT:
        if len(data) > MAX_INT_BYTES:
            raise CorruptValue(f"an integer of {len(data):,} bytes (at most {MAX_INT_BYTES:,})")
        return int.from_bytes(data, "big", signed=True)
    if code in (_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET):
        items = _unpack(data, depth + 1)
        if not isinstance(items, list):
            raise CorruptValue(f"extension type {code} does not hold an array")
        if code == _EXT_TUPLE:
            return tuple(items)
        if len(items) >= _COLLISION_CHECK_FROM:
            _check_collisions(items, CorruptValue)
        return set(items) if code == _EXT_SET else frozenset(items)
    if code in (_EXT_DATETIME, _EXT_DATE, _EXT_TIME):
        if len(data) > _MAX_ISO_BYTES:
            raise CorruptValue(f"a date or time of {len(data):,} bytes")
        text = data.decode("ascii")
        if code == _EXT_DATETIME:
            return datetime.datetime.fromisoformat(text)
        if code == _EXT_DATE:
            return datetime.date.fromisoformat(text)
        return datetime.time.fromisoformat(text)
    if code == _EXT_DECIMAL:
        return decimal.Decimal(data.decode("ascii"))
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    raise ValueError(f"unknown extension type {code}")


def _top_ext(code: int, data: bytes) -> Any:
    return _ext(code, data, 0)


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    if len(pairs) >= _COLLISION_CHECK_FROM:
        _check_collisions([key for key, _ in pairs], CorruptValue)
    return dict(pairs)


def _unpack(data: bytes, depth: int) -> Any:
    """One msgpack object filling ``data`` exactly.

    ``unpackb`` keeps msgpack's parse stack (40 KiB) on the C stack, where ~200 nested
    tuples overflowed it; so only the outermost level uses it, and each nested
    extension gets a fresh ``Unpacker``, whose parse stack is on the heap.
    """
    if depth > MAX_DEPTH:
        raise CorruptValue(f"a value may nest at most {MAX_DEPTH} levels of containers")
    if depth == 0:
        # unpackb checks every length against the input itself.
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            ext_hook=_top_ext,
            object_pairs_hook=_pairs,
        )
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        ext_hook=lambda code, payload: _ext(code, payload, depth),
        object_pairs_hook=_pairs,
        # Every length is checked against the input before anything is allocated.
        max_buffer_size=max(len(data), 1),
    )
    unpacker.feed(data)
    try:
        value = unpacker.unpack()
    except msgpack.OutOfData:
        raise ValueError("truncated input") from None
    if unpacker.tell() != len(data):
        raise ValueError(f"{len(data) - unpacker.tell()} bytes of extra data")
    return value


def encode(value: Any) -> bytes:
    """Encode ``value`` into bytes for :func:`decode`.

    ``bytearray`` and ``memoryview`` are stored as ``bytes``; an aware ``datetime`` or
    ``time`` keeps its UTC offset (a named zone comes back as a fixed offset). A value
    past the bounds (see the module docstring) raises ``ValueLimitExceeded``, a
    ``ValueError``, before anything is encoded.
    """
    _check_bounds(value, ValueLimitExceeded)
    try:
        try:
            return _VERSION_BYTE + _pack(value)
        except BufferError:
            return _VERSION_BYTE + _pack(_contiguous(value))
    except ValueLimitExceeded:
        raise
    except ValueError as exc:  # msgpack: over 4 GiB
        raise UnsupportedValue(f"cannot encode this value: {exc}") from exc


def decode(data: bytes) -> Any:
    """Decode what :func:`encode` produced; each call returns a fresh object.

    Any other input, however corrupt or hostile, raises ``CorruptValue`` (a
    ``ValueError``) rather than returning a half-decoded value, crashing or hanging.
    """
    data = bytes(data)  # database drivers hand back memoryview
    if not data:
        raise CorruptValue("not a django-durable encoding: empty input")
    if data[0] != FORMAT_VERSION:
        raise CorruptValue(
            f"not a django-durable encoding: unknown format version {data[0]} "
            f"(this version reads {FORMAT_VERSION})"
        )
    try:
        value = _unpack(data[1:], 0)
        if len(data) > _SMALL_INPUT:
            _check_bounds(value, CorruptValue)
    except (
        ValueError,
        TypeError,
        OverflowError,
        decimal.InvalidOperation,
        MemoryError,
        msgpack.UnpackException,
    ) as exc:
        # msgpack's format errors are ValueErrors, an unhashable map key is a TypeError
        # and a junk Decimal is an ArithmeticError: all mean the same thing here.
        raise CorruptValue(f"not a django-durable encoding: {exc}") from exc
    return value


def encoded_size(value: Any) -> int:
    """The size in bytes of ``encode(value)``, the figure every size limit is checked on."""
    return len(encode(value))
