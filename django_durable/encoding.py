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
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import msgpack

from .exceptions import UnsupportedValue

__all__ = ["FORMAT_VERSION", "decode", "encode", "encoded_size"]

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


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    if code == _EXT_TUPLE:
        return tuple(_unpack(data))
    if code == _EXT_SET:
        return set(_unpack(data))
    if code == _EXT_FROZENSET:
        return frozenset(_unpack(data))
    if code == _EXT_DATETIME:
        return datetime.datetime.fromisoformat(data.decode("ascii"))
    if code == _EXT_DATE:
        return datetime.date.fromisoformat(data.decode("ascii"))
    if code == _EXT_TIME:
        return datetime.time.fromisoformat(data.decode("ascii"))
    if code == _EXT_DECIMAL:
        return decimal.Decimal(data.decode("ascii"))
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    raise ValueError(f"unknown extension type {code}")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def encode(value: Any) -> bytes:
    """Encode ``value`` (nested to any depth Python allows) into bytes for :func:`decode`.

    ``bytearray`` and ``memoryview`` are stored as ``bytes``; an aware ``datetime`` or
    ``time`` keeps its UTC offset (a named zone comes back as a fixed offset).
    """
    try:
        try:
            return _VERSION_BYTE + _pack(value)
        except BufferError:
            return _VERSION_BYTE + _pack(_contiguous(value))
    except ValueError as exc:  # msgpack: nested too deep (or circular), or over 4 GiB
        raise UnsupportedValue(f"cannot encode this value: {exc}") from exc


def decode(data: bytes) -> Any:
    """Decode what :func:`encode` produced; each call returns a fresh object.

    Anything else raises ``ValueError`` rather than returning a half-decoded value.
    """
    data = bytes(data)  # database drivers hand back memoryview
    if not data:
        raise ValueError("not a django-durable encoding: empty input")
    if data[0] != FORMAT_VERSION:
        raise ValueError(
            f"not a django-durable encoding: unknown format version {data[0]} "
            f"(this version reads {FORMAT_VERSION})"
        )
    try:
        return _unpack(data[1:])
    except (ValueError, TypeError, OverflowError, decimal.InvalidOperation) as exc:
        # msgpack's format errors are ValueErrors, an unhashable map key is a TypeError
        # and a junk Decimal is an ArithmeticError: all mean the same thing here.
        raise ValueError(f"not a django-durable encoding: {exc}") from exc


def encoded_size(value: Any) -> int:
    """The size in bytes of ``encode(value)``, the figure every size limit is checked on."""
    return len(encode(value))
