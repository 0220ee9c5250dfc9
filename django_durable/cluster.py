"""The Redis transport's former home, kept so its import path goes on working.

It lives in :mod:`django_durable.redis.transport`, with everything else about Redis.
"""

from .redis.transport import RedisTransport

__all__ = ["RedisTransport"]
