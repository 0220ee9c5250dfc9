"""Bounded values: deep, huge and colliding values are refused on write, and no input,
however hostile, crashes or hangs the decoder (SPEC §11).

The decoder fuzz (hypothesis) runs a fixed number of examples per property, so its
time in CI is bounded; crashes that would kill the interpreter (a C stack overflow)
are reproduced in a child process, so the test reports them instead of dying with them.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_durable.encoding import (
    MAX_COLLISIONS,
    MAX_DEPTH,
    MAX_INT_BYTES,
    decode,
    encode,
)
from django_durable.exceptions import CorruptValue, DurableError, ValueLimitExceeded

#: msgpack's "unhashable" hash: a multiple of it hashes like 0 (``hash(k * P) == 0``).
P = 2**61 - 1


def nested(kind: str, levels: int):
    """A value of ``levels`` levels of containers (``levels`` >= 1)."""
    value: object = {"list": [], "tuple": (), "dict": {}, "frozenset": frozenset()}[kind]
    for _ in range(levels - 1):
        if kind == "list":
            value = [value]
        elif kind == "tuple":
            value = (value,)
        elif kind == "dict":
            value = {"k": value}
        else:
            value = frozenset([value])
    return value


def crafted_tuples(levels: int) -> bytes:
    """``levels`` nested tuple extensions, built byte by byte (encode() refuses them)."""
    item = msgpack.ExtType(2, msgpack.packb([]))
    for _ in range(levels - 1):
        item = msgpack.ExtType(2, msgpack.packb([item]))
    return b"\x01" + msgpack.packb(item)


def crafted_int(n_bytes: int) -> bytes:
    return b"\x01" + msgpack.packb(msgpack.ExtType(1, b"\x01" * n_bytes))


# Writing ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "tuple", "dict", "frozenset"])
def test_64_levels_round_trip_and_65_are_refused_with_value_error(kind):
    deepest = nested(kind, MAX_DEPTH)
    assert decode(encode(deepest)) == deepest
    with pytest.raises(ValueError, match="at most 64 levels") as info:
        encode(nested(kind, MAX_DEPTH + 1))
    assert isinstance(info.value, ValueLimitExceeded)
    assert isinstance(info.value, DurableError)


def test_mixed_containers_count_every_level():
    value: object = 1
    for level in range(MAX_DEPTH):
        value = [(value,)] if level % 2 else {"x": value}
    # 64 levels of dict/list/tuple... plus the tuple inside each list: 96 levels.
    with pytest.raises(ValueLimitExceeded):
        encode(value)


def test_the_issue_199_deep_tuple_is_refused_on_write():
    with pytest.raises(ValueError, match="at most 64 levels"):
        encode(nested("tuple", 199))


def test_integers_over_16384_bits_are_refused_on_write():
    largest = 2 ** (MAX_INT_BYTES * 8 - 1) - 1
    assert decode(encode(largest)) == largest
    assert decode(encode(-largest)) == -largest
    with pytest.raises(ValueLimitExceeded, match="must fit in 2,048 bytes"):
        encode(largest + 1)


def test_a_set_flooding_one_hash_is_refused_on_write():
    colliding = {k * P for k in range(1, 200)}
    assert len({hash(k) for k in colliding}) == 1
    with pytest.raises(ValueLimitExceeded, match="same hash"):
        encode(colliding)
    with pytest.raises(ValueLimitExceeded, match="same hash"):
        encode(dict.fromkeys(colliding, 1))
    # A few collisions are fine (hash(-1) == hash(-2) is ordinary).
    few = {k * P for k in range(1, MAX_COLLISIONS + 1)} | set(range(1, 100))
    assert decode(encode(few)) == few


# Reading ------------------------------------------------------------------------------


@pytest.mark.e2e  # decodes in a Python process of its own, which could crash
def test_the_issue_200_nested_tuples_raise_instead_of_killing_the_process():
    """715 bytes that made msgpack's ext hook overflow the C stack (SIGSEGV)."""
    data = crafted_tuples(200)
    assert len(data) < 1_000
    code = textwrap.dedent(
        """
        import sys
        from django_durable.encoding import decode
        try:
            decode(sys.stdin.buffer.read())
        except ValueError as exc:
            print("refused:", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, (result.returncode, result.stderr.decode()[-2000:])
    assert "at most 64 levels" in result.stdout.decode()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 5_000])
def test_deep_crafted_input_is_a_corrupt_value(levels):
    with pytest.raises(CorruptValue, match="at most 64 levels"):
        decode(crafted_tuples(levels))
    natives = b"\x01" + b"\x91" * levels + b"\xc0"
    with pytest.raises(CorruptValue):
        decode(natives)


def test_64_crafted_levels_still_decode():
    assert decode(crafted_tuples(MAX_DEPTH)) == nested("tuple", MAX_DEPTH)


def test_an_8_mib_integer_is_refused_on_read():
    with pytest.raises(CorruptValue, match="integer of 8,388,608 bytes"):
        decode(crafted_int(8 * 1024 * 1024))
    assert decode(crafted_int(MAX_INT_BYTES)) > 0


def test_a_crafted_hash_flood_is_refused_on_read():
    items = [k * P if k * P < 2**64 else msgpack.ExtType(1, _twos(k * P)) for k in range(1, 5000)]
    for code in (3, 4):  # set, frozenset
        data = b"\x01" + msgpack.packb(msgpack.ExtType(code, msgpack.packb(items)))
        with pytest.raises(CorruptValue, match="same hash"):
            decode(data)
    pairs = {k * P: 0 for k in range(1, 9)}  # msgpack keeps only 64-bit keys native
    flood = b"\x01" + _map_of([*pairs, *(msgpack.ExtType(1, _twos(k * P)) for k in range(9, 5000))])
    with pytest.raises(CorruptValue, match="same hash"):
        decode(flood)


def test_huge_length_headers_are_refused_without_allocating():
    for header in (
        b"\xdd\xff\xff\xff\xff",  # array of 2**32 - 1
        b"\xdf\xff\xff\xff\xff",  # map of 2**32 - 1
        b"\xdb\xff\xff\xff\xff",  # str of 4 GiB
        b"\xc6\xff\xff\xff\xff",  # bin of 4 GiB
        b"\xc9\xff\xff\xff\xff\x02",  # tuple extension of 4 GiB
    ):
        with pytest.raises(CorruptValue):
            decode(b"\x01" + header + b"\x00" * 8)


def _twos(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)


def _map_of(keys: list[object]) -> bytes:
    out = bytearray(b"\xdf" + len(keys).to_bytes(4, "big"))
    for key in keys:
        out += msgpack.packb(key) + b"\x00"
    return bytes(out)


# Fuzz ---------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same examples in every run: CI time stays bounded and stable
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decodes_or_refuses(data: bytes) -> None:
    """The only two outcomes allowed: a value, or a CorruptValue (a ValueError)."""
    with contextlib.suppress(CorruptValue):
        decode(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(data):
    decodes_or_refuses(b"\x01" + data)
    decodes_or_refuses(data)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.decimals(allow_nan=False)
    | st.datetimes()
    | st.uuids(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ
@given(values, st.data())
def test_fuzz_mutated_encodings(value, data):
    """Valid encodings with bytes flipped, cut or inserted anywhere."""
    try:
        encoded = bytearray(encode(value))
    except ValueError:
        return  # past a bound (very deep): refused on write, as it must be
    assert decode(bytes(encoded)) == value or value != value
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(encoded):
            encoded[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del encoded[at : at + data.draw(st.integers(1, 8))]
        else:
            encoded[at:at] = data.draw(st.binary(min_size=1, max_size=9))
    decodes_or_refuses(bytes(encoded))


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [b"\x91", b"\x81\xa1k", b"\xc7\x00\x02", b"\xd4\x03", b"\xdd\xff\xff\xff\xff"]
        ),
        min_size=1,
        max_size=400,
    ),
    st.binary(max_size=16),
)
def test_fuzz_deep_nesting_and_huge_lengths(headers, tail):
    """Container and extension headers stacked hundreds deep, lengths that lie."""
    decodes_or_refuses(b"\x01" + b"".join(headers) + tail)
    decodes_or_refuses(crafted_tuples(len(headers)))
