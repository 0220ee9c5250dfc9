"""What user code hands to ``state.storage``, checked before anything is stored.

Keys become UTF-8 bytes (so every database orders them as Python orders ``str``),
values their encoding; every bound (``KEY_MAX_BYTES``, ``VALUE_MAX_BYTES``) and every
argument of ``list()`` and ``set_alarm()`` is checked here, so a refused call writes
nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .encoding import encode
from .exceptions import InvalidStorageKey, InvalidStorageValue

KEY_MAX_BYTES = 2_048
VALUE_MAX_BYTES = 131_072  # 128 KiB, measured on the encoding

# Keys per SQL statement: well under SQLite's bound-parameter limit.
CHUNK = 500

MISSING: Any = object()

Gate = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


# Validation ---------------------------------------------------------------------------


def key_bytes(key: Any, what: str = "storage key") -> bytes:
    """A key as UTF-8 bytes, or ``InvalidStorageKey``."""
    if not isinstance(key, str):
        raise InvalidStorageKey(f"a {what} must be a str, not {type(key).__name__}")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidStorageKey(f"a {what} must be valid Unicode: {exc.reason}") from exc
    if what == "storage key" and len(raw) > KEY_MAX_BYTES:
        raise InvalidStorageKey(
            f"storage key is {len(raw):,} bytes in UTF-8; the limit is {KEY_MAX_BYTES:,} bytes"
        )
    return raw


def value_bytes(value: Any) -> bytes:
    """A value encoded, or ``InvalidStorageValue``."""
    if value is None:
        raise InvalidStorageValue("None is not a storage value: delete the key instead")
    data = encode(value)
    if len(data) > VALUE_MAX_BYTES:
        raise InvalidStorageValue(
            f"storage value encodes to {len(data):,} bytes; "
            f"the limit is {VALUE_MAX_BYTES:,} bytes (128 KiB)"
        )
    return data


def many_keys(keys: Any) -> builtins.list[bytes] | None:
    """The keys of a multi-key call as distinct UTF-8 bytes, or ``None`` for one key."""
    if isinstance(keys, str):
        return None
    if isinstance(keys, Iterable) and not isinstance(keys, bytes | bytearray | Mapping):
        return builtins.list(dict.fromkeys(key_bytes(key) for key in keys))
    raise InvalidStorageKey(
        f"a storage key must be a str (or a list of them), not {type(keys).__name__}"
    )


def put_entries(key_or_entries: Any, value: Any) -> dict[bytes, bytes]:
    """Validate and encode every entry of a put before anything is written."""
    if isinstance(key_or_entries, Mapping):
        if value is not MISSING:
            raise TypeError("put(entries) takes no separate value")
        return {key_bytes(k): value_bytes(v) for k, v in key_or_entries.items()}
    if value is MISSING:
        raise TypeError("put(key, value) needs a value (or pass one dict of entries)")
    return {key_bytes(key_or_entries): value_bytes(value)}


def checked_limit(limit: Any) -> int | None:
    """``list(limit=)`` checked."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


def alarm_time(when: Any) -> datetime.datetime:
    """``set_alarm(when)`` as an aware UTC datetime."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("set_alarm() needs an aware datetime (or epoch seconds)")
        return when.astimezone(datetime.UTC)
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(
            f"set_alarm() takes an aware datetime or epoch seconds, not {type(when).__name__}"
        )
    if not math.isfinite(when):
        raise ValueError(f"set_alarm() needs a finite time, not {when}")
    try:
        return datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"set_alarm() time {when} is out of range") from exc


# Key ranges ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRange:
    """The keys ``list()`` covers, as UTF-8 bytes: ``lower`` inclusive, ``upper`` exclusive."""

    lower: bytes | None = None
    upper: bytes | None = None

    @classmethod
    def of(cls, prefix: Any, start: Any, end: Any) -> KeyRange:
        """The range of ``list(prefix=, start=, end=)``."""
        lower = None if start is None else key_bytes(start, "start key")
        upper = None if end is None else key_bytes(end, "end key")
        if prefix is not None:
            raw = key_bytes(prefix, "prefix")
            if raw:
                # UTF-8 never contains 0xFF, so bumping the last byte gives the first
                # byte string after every string that starts with the prefix.
                after = raw[:-1] + bytes([raw[-1] + 1])
                lower = raw if lower is None else max(lower, raw)
                upper = after if upper is None else min(upper, after)
        return cls(lower, upper)

    @property
    def empty(self) -> bool:
        """Whether no key can be in it."""
        return self.lower is not None and self.upper is not None and self.lower >= self.upper

    def __contains__(self, raw: object) -> bool:
        assert isinstance(raw, bytes)
        if self.lower is not None and raw < self.lower:
            return False
        return self.upper is None or raw < self.upper
