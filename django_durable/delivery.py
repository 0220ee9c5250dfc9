"""Sending to another process without dropping anything: the rules, and the errors.

A process's inbox (like a channel of channels_redis) refuses messages past its
``capacity`` (100 by default). A frame an object sends to a socket held by another
process must not vanish because that process is a little behind, and the handler that
sent it must not believe it was sent if it could not be: so the owner waits (with a
growing pause, bounded by :data:`SEND_TIMEOUT`) and tries again, which also slows the
object down to the pace of the slowest process it sends to (its mailbox then fills up,
and the overload rules of the dispatcher apply to the sockets that flood it). A send
that still fails raises :class:`~django_durable.exceptions.DeliveryFailed` in the
handler (from ``await ws.send()`` or ``broadcast()``). The Redis transport's couriers
(:mod:`django_durable.redis.couriers`) do it.
"""

from __future__ import annotations

#: Seconds an owner keeps trying a full channel of another process before giving up.
SEND_TIMEOUT = 30.0
#: Seconds between two looks at whether the process behind a full channel is gone.
GONE_CHECK_INTERVAL = 0.5
#: The first pause before trying a full inbox again, and the longest (it doubles).
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.25


#: Exceptions of the Redis client (``redis.exceptions``) that mean "unreachable", by name:
#: this module must not need the client, which only the ``redis`` extra installs.
REDIS_CONNECTION_ERRORS = ("ConnectionError", "TimeoutError", "BusyLoadingError")


def is_connection_error(exc: BaseException) -> bool:
    """A lost connection to Redis (the channel layer's or the session layer's server):
    the one classification every caller uses, whatever its client."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    return any(
        klass.__module__.startswith("redis.") and klass.__name__ in REDIS_CONNECTION_ERRORS
        for klass in type(exc).__mro__
    )


class HolderGone(Exception):
    """The process behind the full channel is dead: its sockets are being closed."""
