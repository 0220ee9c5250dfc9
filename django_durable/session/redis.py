"""The Redis session layer's former home, kept so its documented path goes on working.

The layer lives in :mod:`django_durable.redis` with everything else about Redis.
"""

from ..redis.layer import RedisSessionLayer
from ..redis.leases import RIDE_THROUGH
from ..redis.records import (
    CorruptRecord,
    pack_pair,
    pack_record,
    unavailable_as_error,
    unpack_pair,
    unpack_record,
)

__all__ = [
    "RIDE_THROUGH",
    "CorruptRecord",
    "RedisSessionLayer",
    "pack_pair",
    "pack_record",
    "unavailable_as_error",
    "unpack_pair",
    "unpack_record",
]
