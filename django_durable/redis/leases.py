"""Ownership through Redis: leases with fencing tokens, heartbeats and the live clock.

A mixin of :class:`~django_durable.redis.layer.RedisSessionLayer`, apart because it is
the part that decides which process owns an object (at most one live instance), while
the layer's own module is about what an object stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..session.base import ObjectSession
from .keys import RedisKeys
from .records import text, unavailable_as_error
from .session_cache import SessionCache

if TYPE_CHECKING:
    from redis import asyncio as aioredis

logger = logging.getLogger(__name__)

#: Seconds Redis keeps a lease or a heartbeat past its expiry, so that an outage or a
#: freeze of Redis up to this long expires neither (see ``LIVE_CLOCK``); a longer one
#: counts as Redis having lost its data.
RIDE_THROUGH = 600.0


class Leases:
    """Leases and heartbeats of a Redis session layer."""

    # Set by the layer.
    key_names: RedisKeys
    holder: str
    lease_time: float
    owned: dict[str, int]
    gateways: dict[str, int]
    auto_cache: dict[str, Any]
    redises: list[aioredis.Redis]
    _acquire: Any
    _acquire_and_load: Any
    #: key -> (token, sockets, timestamps, settings): a session read by
    #: ``acquire(load=True)``, until the wake's ``load`` takes it (or the release).
    #: When Redis found the kept session unchanged: (token, 0, timestamps, the version
    #: of the kept session it matched).
    preloaded: dict[str, tuple[int, Any, Any, Any]]
    #: Sessions of large objects this process hibernated (see ``session_cache.py``).
    session_cache: SessionCache
    #: key -> the version of the session of an object owned here, as last written or
    #: read (absent: not versioned, or not known after a failed write).
    versions: dict[str, str]
    #: key -> the end of a release of its lease on its way (see ``releasing``).
    lease_releases: dict[str, asyncio.Future[None]]
    #: key -> acquire() calls in flight; keys given up meanwhile (see ``acquire``).
    _acquiring: dict[str, int]
    _given_up_meanwhile: set[str]
    _renew: Any
    _release: Any
    _owner: Any
    _heartbeat: Any
    _alive: Any

    if TYPE_CHECKING:

        def redis_for(self, name: str) -> aioredis.Redis: ...

        def by_host(self, names: list[str]) -> dict[int, list[str]]: ...

    def heartbeat_key(self, holder: str) -> str:
        """This holder's heartbeat key."""
        return self.key_names.heartbeat(holder)

    @property
    def lease_ms(self) -> int:
        """The lease time in milliseconds."""
        return int(self.lease_time * 1000)

    @property
    def fence_key_ttl(self) -> float:
        """Seconds ``f:K`` outlives the acquisition that set it (not the object).

        Tokens are the Redis server's clock in microseconds; ``f:K`` only makes them
        grow when that clock has not (two acquisitions in one microsecond, a clock
        stepped back a little). Keeping it for ever cost one key per object ever
        used; a minute (or ten lease times) covers both, after which the clock alone
        keeps tokens growing, as after Redis lost its data, and the database's
        ``ObjectFence`` row still refuses any lower token.
        """
        return max(60.0, 10 * self.lease_time)

    @property
    def _clock(self) -> list[str]:
        """The live clock's keys (one pair per prefix)."""
        return self.key_names.clock

    @property
    def _kept_ms(self) -> int:
        return self.lease_ms + int(RIDE_THROUGH * 1000)

    @property
    def inbox_ttl_ms(self) -> int:
        """Milliseconds Redis keeps a process's inbox after a push: as long as its
        heartbeat, so that the inbox of a process that died goes with it."""
        return self._kept_ms

    @property
    def _gap_ms(self) -> int:
        # Processes tick every third of a lease; a lease renewed just before an outage
        # has two thirds left: a gap in between is a pause, found before any expires.
        return self.lease_ms * 6 // 10

    def lease_value(self, key: str) -> str:
        """What the lease key holds while this process owns ``key``."""
        return f"{self.holder}|{self.owned.get(key, 0)}"

    # Ownership -------------------------------------------------------------------------

    async def acquire(self, key: str, load: bool = False) -> tuple[bool, str, int]:
        """Take the object's lease if nobody holds it: (owned, holder, token).

        With ``load``, the object's session is read in the same script when this
        process gets the lease, and kept for the :meth:`load` of the wake that follows
        (see :attr:`preloaded`): a wake then costs one round trip, not two.

        When this process gave the lease up while the script was on its way (a live
        object here hibernated, and its last write released the lease), the answer may
        predate that release: it says nothing, and the script runs again once the
        release is done (see :meth:`releasing`).
        """
        keys = [*self._clock, self.key_names.lease(key), self.key_names.fence(key)]
        args: list[Any] = [
            self._gap_ms,
            self.holder,
            self.lease_ms,
            self._kept_ms,
            int(self.fence_key_ttl * 1000),
        ]
        script = self._acquire
        kept_version = ""
        if load:
            keys += [self.key_names.sockets(key), self.key_names.stamps(key)]
            keys.append(self.key_names.settings(key))
            kept_version = self.session_cache.version(key)
            args.append(kept_version)
            script = self._acquire_and_load
        while True:
            releasing = self.lease_releases.get(key)
            if releasing is not None:  # (sent before it: the answer could predate it)
                await asyncio.wait([releasing])
            self._acquiring[key] = self._acquiring.get(key, 0) + 1
            try:
                async with unavailable_as_error():
                    reply = await script(keys=keys, args=args, client=self.redis_for(key))
            finally:
                stale = key in self._given_up_meanwhile or key in self.lease_releases
                left = self._acquiring.pop(key) - 1
                if left:
                    self._acquiring[key] = left
                else:
                    self._given_up_meanwhile.discard(key)
            if not (stale and reply[0]):
                break
        owned, holder, token, took_over = reply[:4]
        holder, token = text(holder), int(text(token))
        if took_over:
            # Another process's lease ran out (it died or was cut off) and this process
            # took the object; a release at shutdown deletes the lease, so it is not this.
            metrics.inc("lease_takeovers")
        if owned:
            if self.owned.get(key) != token:
                logger.info("object %s: ownership taken (fencing token %d)", key, token)
            self.owned[key] = token
            if load and len(reply) == 7:
                # (0 for the sockets: unchanged since this process kept them at the
                # version it sent, which load() takes the kept session at.)
                settings = kept_version if reply[4] == 0 else reply[6]
                self.preloaded[key] = (token, reply[4], reply[5], settings)
        return bool(owned), holder, token

    def forget_preloaded(self, key: str) -> None:
        """Drop a session read with the lease: something changed in Redis since (sockets
        put back after a data loss), so the wake reads it again."""
        self.preloaded.pop(key, None)

    async def owner(self, key: str) -> str | None:
        """The process holding ``key``'s lease, or None."""
        async with unavailable_as_error():
            value = await self._owner(
                keys=[*self._clock, self.key_names.lease(key)],
                args=[self._gap_ms],
                client=self.redis_for(key),
            )
        return None if value is None else text(value)

    async def renew(self, keys: list[str]) -> list[str]:
        """Renew the leases of ``keys``; the keys whose lease was lost."""
        if not keys:
            return []
        lost = []
        for index, group in self.by_host(keys).items():
            async with (
                unavailable_as_error(),
                self.redises[index].pipeline(transaction=False) as pipe,
            ):
                for key in group:
                    await self._renew(
                        keys=[*self._clock, self.key_names.lease(key)],
                        args=[self._gap_ms, self.lease_value(key), self.lease_ms, self._kept_ms],
                        client=pipe,
                    )
                results = await pipe.execute()
            lost += [key for key, ok in zip(group, results, strict=True) if not ok]
        for key in lost:
            logger.warning("object %s: lease lost (not renewed in time)", key)
            self.owned.pop(key, None)
        return lost

    async def release(self, key: str, session: ObjectSession) -> None:
        """Give the lease up (the object hibernated or stopped here)."""
        if key not in self.owned:
            self.given_up(key)
            return
        value = self.lease_value(key)
        version = self.versions.get(key)
        self.given_up(key)
        async with self.releasing(key), unavailable_as_error():
            await self._release(
                keys=[self.key_names.lease(key)], args=[value], client=self.redis_for(key)
            )
        if version is not None and self.session_cache.wanted(session):
            self.session_cache.keep(key, version, session)

    @contextlib.asynccontextmanager
    async def releasing(self, key: str) -> AsyncIterator[None]:
        """Around a script that gives ``key``'s lease up: an acquire of this process
        answered meanwhile may have run before it, so it does not believe that answer
        (it may say "owned" of a lease about to go) and asks again after it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        outer = self.lease_releases.get(key)
        self.lease_releases[key] = done
        if key in self._acquiring:
            self._given_up_meanwhile.add(key)
        try:
            yield
        finally:
            if self.lease_releases.get(key) is done:
                if outer is not None and not outer.done():
                    self.lease_releases[key] = outer
                else:
                    del self.lease_releases[key]
            done.set_result(None)

    def given_up(self, key: str) -> None:
        """Forget the lease of ``key`` here, and what came with it (released, or about
        to be: nothing read with it may serve a later wake)."""
        self.owned.pop(key, None)
        self.preloaded.pop(key, None)
        self.versions.pop(key, None)
        if key in self._acquiring:
            self._given_up_meanwhile.add(key)
        if key not in self.gateways:
            self.auto_cache.pop(key, None)  # nothing here reads it any more

    def fence_token(self, key: str) -> int | None:
        """This process's fencing token for ``key``, if it owns it."""
        return self.owned.get(key)

    async def heartbeat(self, first: bool = False) -> bool:
        """Refresh this process's heartbeat; False when it had vanished (Redis lost data).

        An outage or a freeze of Redis does not make it vanish: Redis keeps the key
        ``RIDE_THROUGH`` seconds past its expiry, and the live clock does not count the
        time Redis was away. It lives on the host its process channel hashes to.
        """
        async with unavailable_as_error():
            existed = await self._heartbeat(
                keys=[*self._clock, self.heartbeat_key(self.holder)],
                args=[self._gap_ms, self.lease_ms, self._kept_ms],
                client=self.redis_for(self.holder),
            )
        return first or bool(existed)

    async def alive(self, holders: list[str]) -> set[str]:
        """Which of ``holders`` have a live heartbeat."""
        if not holders:
            return set()
        found = set()
        for index, group in self.by_host(holders).items():
            async with unavailable_as_error():
                flags = await self._alive(
                    keys=[*self._clock, *(self.heartbeat_key(h) for h in group)],
                    args=[self._gap_ms],
                    client=self.redises[index],
                )
            found |= {h for h, ok in zip(group, flags, strict=True) if ok}
        return found
