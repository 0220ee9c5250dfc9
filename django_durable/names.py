"""Names derived from a class, an object id and a tag: keys and channel-layer groups.

A leaf: every layer needs these names and none may import the class that owns them.
"""

from __future__ import annotations

import hashlib


def _framed(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw).to_bytes(4, "big") + raw


def object_key(durable_name: str, object_id: str) -> str:
    """The object's name in the session layer, storage and leases."""
    return f"{durable_name}/{object_id}"


def group_name(durable_name: str, object_id: str, tag: str | None) -> str:
    """The group of ``tag`` of an object: a hash of an unambiguous encoding of the three.

    Each part is length-prefixed (and "every socket" is told apart from any tag by a
    byte of its own), so no choice of names, ids and tags, NUL bytes included, can make
    two different triples hash the same input; separators could (``"a\\0#b", "c"``
    and ``"a", "b\\0#c"`` did).
    """
    data = b"durable-group\x00" + _framed(durable_name) + _framed(object_id)
    data += b"\x00" if tag is None else b"\x01" + _framed(tag)
    return f"durable.{hashlib.sha256(data).hexdigest()[:40]}"
