"""The attachment encoding: every supported type comes back as itself, compactly."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import math
import uuid
from zoneinfo import ZoneInfo

import msgpack
import pytest

from django_durable.encoding import FORMAT_VERSION, decode, encode, encoded_size
from django_durable.exceptions import DurableError, UnsupportedValue

UTC = datetime.UTC
IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
ODD = datetime.timezone(-datetime.timedelta(hours=3, minutes=7, seconds=11, microseconds=5))


def same(a, b) -> bool:
    """Equal *and* of the same type, all the way down (``1 == 1.0 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if list(a) != list(b):
            return False
        if not all(same(ka, kb) for ka, kb in zip(a, b, strict=True)):
            return False
        return all(same(a[k], b[k]) for k in a)
    if isinstance(a, set | frozenset):
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))
    if isinstance(a, datetime.datetime | datetime.time):
        # Same wall time and same UTC offset (or both naive), not merely the same instant.
        if (a.tzinfo is None) != (b.tzinfo is None) or a.utcoffset() != b.utcoffset():
            return False
        return a.replace(tzinfo=None) == b.replace(tzinfo=None)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    return a == b


SCALARS = [
    None,
    True,
    False,
    0,
    1,
    -1,
    127,
    128,
    -32,
    -33,
    255,
    256,
    2**31 - 1,
    2**31,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**100,
    -(10**100),
    2**1000 + 12345,
    0.0,
    -0.0,
    1.5,
    -1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "a",
    "héllo wörld",
    "emoji 🎉 and 中文",
    "\x00nul",
    b"",
    b"\x00\xff\x80",
    bytes(range(256)),
    datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
    datetime.datetime(2024, 2, 29, 23, 59, 58, 1, tzinfo=UTC),
    datetime.datetime(1, 1, 1, 0, 0, tzinfo=IST),
    datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=ODD),
    datetime.datetime(2020, 1, 1),
    datetime.date(2024, 2, 29),
    datetime.date(1, 1, 1),
    datetime.time(0, 0),
    datetime.time(23, 59, 59, 999999),
    datetime.time(12, 30, 1, 7, tzinfo=IST),
    decimal.Decimal("0"),
    decimal.Decimal("-0"),
    decimal.Decimal("1.10"),
    decimal.Decimal("3.14159265358979323846264338327950288419716939937510"),
    decimal.Decimal("1E+400"),
    decimal.Decimal("-Infinity"),
    decimal.Decimal("NaN"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    uuid.UUID(int=0),
    (),
    (1,),
    set(),
    frozenset(),
    [],
    {},
]


@pytest.mark.parametrize("value", SCALARS, ids=lambda v: f"{type(v).__name__}:{v!r}"[:60])
def test_scalars_round_trip_to_their_own_type(value):
    result = decode(encode(value))
    assert same(result, value), (value, result)


def test_nested_containers_keep_every_type():
    value = {
        "tuple": (1, "two", (3.0, (b"four",)), [5]),
        "list": [(), [()], {"x": {1, 2}}],
        "set": {1, "a", (2, 3), frozenset({4})},
        "frozenset": frozenset({(1, 2), "b"}),
        "when": [datetime.datetime(2030, 1, 1, tzinfo=IST), datetime.date(2030, 1, 2)],
        "money": {"eur": decimal.Decimal("12.50")},
        "ids": (uuid.UUID(int=1), uuid.UUID(int=2**128 - 1)),
        "big": [2**64, -(2**64)],
        "nothing": None,
        "flags": (True, False, 0, 1),
    }
    result = decode(encode(value))
    assert same(result, value)
    assert type(result["set"]) is set
    assert type(result["frozenset"]) is frozenset
    assert type(result["tuple"][2][1]) is tuple


def test_dict_keys_of_any_encodable_type_keep_their_type_and_order():
    value = {
        "s": 1,
        1: "int",
        -(2**70): "bigint",
        (1, "a"): "tuple",
        frozenset({1}): "frozenset",
        b"raw": "bytes",
        None: "none",
        2.5: "float",
        datetime.date(2024, 1, 1): "date",
        uuid.UUID(int=7): "uuid",
        decimal.Decimal("1.5"): "decimal",
    }
    result = decode(encode(value))
    assert same(result, value)
    assert list(map(type, result)) == list(map(type, value))


def test_decode_returns_a_fresh_copy_each_time():
    data = encode({"a": [1, 2]})
    first = decode(data)
    first["a"].append(3)
    assert decode(data) == {"a": [1, 2]}


def test_bytearray_and_memoryview_encode_as_bytes():
    assert same(decode(encode(bytearray(b"abc"))), b"abc")
    assert same(decode(encode(memoryview(b"abc"))), b"abc")
    assert same(decode(encode([memoryview(b"abcdef")[::2]])), [b"ace"])
    assert same(decode(encode({"k": (memoryview(b"xyz")[::-1],)})), {"k": (b"zyx",)})


def test_subclasses_of_native_types_are_stored_as_their_base_type():
    class Color(str, enum.Enum):  # noqa: UP042 (its str() is "Color.RED", not the value)
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    Point = collections.namedtuple("Point", "x y")
    value = [Color.RED, Level.HIGH, collections.OrderedDict(a=1), Point(1, 2)]
    assert same(decode(encode(value)), ["red", 3, {"a": 1}, (1, 2)])


def test_a_named_zone_comes_back_as_its_fixed_offset():
    paris = datetime.datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    result = decode(encode(paris))
    assert result == paris
    assert result.utcoffset() == datetime.timedelta(hours=2)


def test_encoded_size_is_the_length_of_encode():
    for value in ["", "abc", {"a": (1, 2)}, 2**100]:
        assert encoded_size(value) == len(encode(value))


def test_first_byte_is_the_format_version():
    assert encode(None)[0] == FORMAT_VERSION == 1


SIZES = [0, 1, 31, 32, 255, 256, 65535, 65536, 100_000]


@pytest.mark.parametrize("n", SIZES)
def test_bytes_of_n_bytes_encode_in_at_most_n_plus_16(n):
    value = bytes(i % 256 for i in range(n))
    assert encoded_size(value) <= n + 16
    assert decode(encode(value)) == value


@pytest.mark.parametrize("n", SIZES)
def test_ascii_str_of_n_bytes_encodes_in_at_most_n_plus_16(n):
    value = "x" * n
    assert encoded_size(value) <= n + 16
    assert decode(encode(value)) == value


@pytest.mark.parametrize("n", SIZES)
def test_multibyte_str_of_n_utf8_bytes_encodes_in_at_most_n_plus_16(n):
    value = ("é" * (n // 2)) + ("x" * (n % 2))
    assert len(value.encode()) == n
    assert encoded_size(value) <= n + 16
    assert decode(encode(value)) == value


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Opaque(), "Opaque"),
        (lambda: 1, "function"),
        (object(), "object"),
        (1 + 2j, "complex"),
        (datetime.timedelta(seconds=1), "timedelta"),
        (range(3), "range"),
        ([1, {"nested": Opaque()}], "Opaque"),
        ({Opaque(): 1}, "Opaque"),
        ((1, (2, Opaque())), "Opaque"),
        ({1, (2, Opaque())}, "Opaque"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_values_raise_naming_the_type(value, type_name):
    with pytest.raises(UnsupportedValue, match=type_name) as info:
        encode(value)
    assert isinstance(info.value, DurableError)
    assert isinstance(info.value, TypeError)


def test_a_circular_structure_is_unsupported_not_a_crash():
    loop: list = []
    loop.append(loop)
    with pytest.raises(UnsupportedValue):
        encode(loop)


GARBAGE = [
    b"",
    b"\x00",
    b"\x02\xc0",  # unknown format version
    b"\xff" * 10,
    b"\x01",  # version only
    b"\x01\xc1",  # msgpack's reserved byte
    b"\x01\x92\x01",  # array of two with one item
    b"\x01\xc0\xc0",  # trailing data
    b"\x01\xd4\x63\x00",  # unknown extension type 99
    b"\x01\xc7\x03\x05abc",  # datetime extension holding junk
    b"\x01\xc7\x02\x09ab",  # UUID extension of the wrong length
    b"\x01\xc7\x03\x08abc",  # Decimal extension holding junk
    b"\x01\x81\x91\x01\x01",  # map keyed by an array (unhashable)
    b"\x01\xa2\xff\xfe",  # str that is not UTF-8
]


@pytest.mark.parametrize("data", GARBAGE, ids=repr)
def test_garbage_raises_value_error(data):
    with pytest.raises(ValueError, match="not a django-durable encoding"):
        decode(data)


def test_an_unhashable_set_key_from_crafted_input_is_a_value_error():
    inner = msgpack.packb([1], use_bin_type=True)
    crafted = b"\x01" + msgpack.packb({msgpack.ExtType(3, inner): 1}, use_bin_type=True)
    with pytest.raises(ValueError, match="not a django-durable encoding"):
        decode(crafted)


def test_decode_accepts_memoryview_as_database_drivers_return_it():
    assert decode(memoryview(encode([1, "a"]))) == [1, "a"]
