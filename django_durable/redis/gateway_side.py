"""The gateway's side of the Redis session layer: the auto-response pair, cached for
the gateways of this process, and the timestamps they note.

A mixin of :class:`~django_durable.redis.layer.RedisSessionLayer`, apart because it is
what every process holding sockets does (on every frame, without I/O), while the
layer's own module is about what an owner stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..autoresponse import WebSocketRequestResponsePair
from .keys import RedisKeys
from .records import CorruptRecord, text, unavailable_as_error, unpack_pair

if TYPE_CHECKING:
    from redis import asyncio as aioredis


class GatewaySide:
    """The auto-response pair and timestamps, as this process's gateways use them."""

    # Set by the layer.
    key_names: RedisKeys
    owned: dict[str, int]
    auto_cache: dict[str, WebSocketRequestResponsePair | None]
    gateways: dict[str, int]
    pending_stamps: dict[str, dict[str, float]]
    redises: list[aioredis.Redis]
    _touch_many: Any

    if TYPE_CHECKING:

        def redis_for(self, name: str) -> aioredis.Redis: ...

        def by_host(self, names: list[str]) -> dict[int, list[str]]: ...

        def _keys(self, key: str) -> list[str]: ...

        async def _put_aside(
            self, key: str, hash_key: str, field: Any, data: Any, name: str, error: Exception
        ) -> None: ...

    def hold(self, key: str) -> None:
        """A gateway of this process took a socket of ``key`` (it reads the auto-response)."""
        self.gateways[key] = self.gateways.get(key, 0) + 1

    def unhold(self, key: str) -> None:
        """A gateway's socket of ``key`` ended: forget the object's cached pair with the
        last one, unless the object itself runs here."""
        count = self.gateways.get(key, 0) - 1
        if count > 0:
            self.gateways[key] = count
            return
        self.gateways.pop(key, None)
        if key not in self.owned:
            self.auto_cache.pop(key, None)

    def settings_announced(self, key: str, packed_pair: Any) -> None:
        """Cache the pair an owner announced, for this process's gateways."""
        self.auto_cache[key] = unpack_pair(packed_pair)

    def auto_response(self, key: str) -> WebSocketRequestResponsePair | None:
        """The cached pair (no I/O: it runs on every frame)."""
        return self.auto_cache.get(key)

    async def load_auto_response(self, key: str) -> None:
        """Fill the cache from Redis (a gateway's first socket of the object)."""
        settings_key = self.key_names.settings(key)
        async with unavailable_as_error():
            data = await self.redis_for(key).hget(settings_key, "auto")
        try:
            self.auto_cache[key] = unpack_pair(data)
        except CorruptRecord as exc:
            self.auto_cache[key] = None
            await self._put_aside(key, settings_key, "auto", data, "auto", exc)

    async def touch_auto_response(self, key: str, socket_id: str, when: float) -> None:
        """Note the time; :meth:`flush_stamps` writes a whole second's worth at once, so
        a ping costs no round trip (the transport calls it about every half second)."""
        self.pending_stamps.setdefault(key, {})[socket_id] = when

    async def flush_stamps(self) -> dict[str, tuple[str | None, dict[str, float]]]:
        """Write the timestamps noted since the last call, in one pipeline.

        Returns, per object key, the owner's channel (None when the object is
        hibernated: nothing is woken) and the timestamps written. Kept for the next
        call if Redis cannot be reached.
        """
        pending, self.pending_stamps = self.pending_stamps, {}
        if not pending:
            return {}
        written: dict[str, tuple[str | None, dict[str, float]]] = {}
        try:
            for index, keys in self.by_host(list(pending)).items():
                redis = self.redises[index]
                async with unavailable_as_error(), redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        lease, sockets_key, ts_key, _ = self._keys(key)
                        args: list[Any] = []
                        for sid, when in pending[key].items():
                            args += [sid, repr(when)]
                        await self._touch_many(
                            keys=[sockets_key, ts_key, lease], args=args, client=pipe
                        )
                    leases = await pipe.execute()
                for key, lease in zip(keys, leases, strict=True):
                    owner = None if lease is None else text(lease).split("|", 1)[0]
                    written[key] = (owner, pending.pop(key))
        except BaseException:
            for key, stamps in pending.items():  # newer ones noted meanwhile win
                self.pending_stamps[key] = {**stamps, **self.pending_stamps.get(key, {})}
            raise
        return written
