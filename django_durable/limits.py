"""The contract's limits, each checked at its exact edge before anything is changed.

Every validator returns the normalised value or raises; none has side effects, which is
what lets callers promise that a failing call leaves no trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .exceptions import (
    AutoResponseTooLarge,
    InvalidCloseCode,
    InvalidCloseReason,
    InvalidEventTimeout,
    InvalidObjectId,
    InvalidTags,
)

MAX_TAGS = 10
MAX_TAG_BYTES = 256
MAX_AUTO_RESPONSE_BYTES = 2_048
MAX_EVENT_TIMEOUT_MS = 604_800_000
MAX_CLOSE_REASON_BYTES = 123
MAX_OBJECT_ID_BYTES = 256


def utf8_len(value: str) -> int:
    """Length in UTF-8 bytes."""
    return len(value.encode("utf-8"))


def validate_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Distinct tags in first-seen order; at most 10, each at most 256 UTF-8 bytes."""
    if tags is None:
        return ()
    if isinstance(tags, (str, bytes)):
        raise InvalidTags(f"tags must be a list of str, not a single {type(tags).__name__}")
    distinct: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidTags(f"each tag must be a str; got {type(tag).__name__}: {tag!r}")
        if tag in seen:
            continue
        try:
            size = utf8_len(tag)
        except UnicodeEncodeError as exc:
            raise InvalidTags(f"tag {tag!r} is not valid UTF-8") from exc
        if size > MAX_TAG_BYTES:
            raise InvalidTags(f"a tag may be at most {MAX_TAG_BYTES} bytes; got {size} bytes")
        seen.add(tag)
        distinct.append(tag)
        if len(distinct) > MAX_TAGS:
            raise InvalidTags(
                f"a socket may have at most {MAX_TAGS} distinct tags; got more: {distinct!r}"
            )
    return tuple(distinct)


def payload_len(value: str | bytes) -> int:
    """Length of a text or binary payload in bytes."""
    return utf8_len(value) if isinstance(value, str) else len(value)


def validate_auto_response_part(name: str, value: str | bytes) -> None:
    """A request or response of an auto-response pair, checked."""
    size = payload_len(value)
    if size > MAX_AUTO_RESPONSE_BYTES:
        raise AutoResponseTooLarge(
            f"auto-response {name} may be at most {MAX_AUTO_RESPONSE_BYTES} bytes; got {size} bytes"
        )


def validate_event_timeout(timeout_ms: int | None) -> int | None:
    """``None`` or 0 unset the timeout; otherwise 1..604,800,000 ms."""
    if timeout_ms is None:
        return None
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
        raise InvalidEventTimeout(
            f"event timeout must be an int of milliseconds or None; got {timeout_ms!r}"
        )
    if timeout_ms < 0 or timeout_ms > MAX_EVENT_TIMEOUT_MS:
        raise InvalidEventTimeout(
            f"event timeout must be between 0 and {MAX_EVENT_TIMEOUT_MS} ms; got {timeout_ms}"
        )
    return timeout_ms or None


def validate_close(code: int, reason: str) -> None:
    """Only 1000 and 3000-4999 may be sent by an application (autobahn refuses the rest)."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise InvalidCloseCode(f"close code must be an int; got {code!r}")
    if code != 1000 and not 3000 <= code <= 4999:
        raise InvalidCloseCode(f"close code must be 1000 or 3000-4999; got {code}")
    if not isinstance(reason, str):
        raise InvalidCloseReason(f"close reason must be a str; got {type(reason).__name__}")
    size = utf8_len(reason)
    if size > MAX_CLOSE_REASON_BYTES:
        raise InvalidCloseReason(
            f"close reason may be at most {MAX_CLOSE_REASON_BYTES} bytes; got {size} bytes"
        )


#: What an object id may not contain (SPEC §2): C0 controls and DEL. Such ids forge log
#: lines (``%0A``), recolour terminals (ANSI escapes) and break PostgreSQL (NUL).
_ID_CONTROL = re.compile("[\x00-\x1f\x7f]")
#: Characters of a rejected value quoted in a log line or error message.
LOGGED_CHARS = 100


def loggable(value: object, limit: int = LOGGED_CHARS) -> str:
    """``repr`` of a client-supplied value, cut to ``limit`` characters: safe in one log line.

    ``repr`` escapes every character that is not printable (newlines, ESC, NUL, bidi
    overrides), so the value can neither start a forged line nor drive a terminal, and
    the cut keeps a rejected 8 KiB path from making an 8 KiB log line.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def printable(text: str, limit: int = 4 * LOGGED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, each unprintable one escaped (``\\n``, ``\\x1b``).

    For messages that may quote a client's value (an exception's), unquoted.
    """
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return cut if len(text) <= limit else f"{cut}... ({len(text):,} characters)"


def validate_object_id(object_id: object) -> str:
    """1 to 256 UTF-8 bytes, no control character (U+0000-U+001F, U+007F)."""
    if not isinstance(object_id, str) or not object_id:
        raise InvalidObjectId(f"object id must be a non-empty str; got {loggable(object_id)}")
    try:
        size = utf8_len(object_id)
    except UnicodeEncodeError:
        raise InvalidObjectId(f"object id is not valid UTF-8: {loggable(object_id)}") from None
    if size > MAX_OBJECT_ID_BYTES:
        raise InvalidObjectId(
            f"object id may be at most {MAX_OBJECT_ID_BYTES} bytes; got {size} bytes: "
            f"{loggable(object_id)}"
        )
    if _ID_CONTROL.search(object_id):
        raise InvalidObjectId(
            "object id may not contain a control character (U+0000-U+001F, U+007F); "
            f"got {loggable(object_id)}"
        )
    return object_id
