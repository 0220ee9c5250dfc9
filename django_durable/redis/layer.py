"""The Redis session layer: sockets, settings and ownership shared by every process.

Ownership is a lease taken by a Lua script that also hands out a fencing token: the
Redis server's clock in microseconds (or the last token + 1 if that is larger), so
tokens keep growing even after Redis restarts without its data. Every write the owner
makes goes through one Lua script that first checks the lease still holds its token:
a process that lost the object can change nothing (``OwnershipLost``).

The connections come from channels-redis's own helpers, so ``CONFIG["hosts"]`` takes
the same forms as ``CHANNEL_LAYERS``' (URLs, dicts, Sentinel dicts with
``"sentinels"`` and ``"master_name"``; with redis-py 8, give dicts with
``"socket_timeout": None`` there; here the default is fine: no command blocks). With
several hosts, each object's keys live on the host its key hashes to (channels-redis's
``_consistent_hash``), and each process's heartbeat on the host its channel hashes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from channels_redis.utils import _consistent_hash, create_pool, decode_hosts
from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from .. import conf, metrics
from ..autoresponse import WebSocketRequestResponsePair
from ..exceptions import OwnershipLost
from ..session.base import (
    AddSocket,
    BaseSessionLayer,
    ObjectSession,
    RemoveSocket,
    SaveSettings,
    SessionWrite,
    SocketRecord,
    StoredObject,
    UpdateSocket,
)
from .gateway_side import GatewaySide
from .history import History
from .keys import RedisKeys
from .leases import Leases
from .records import (
    CorruptRecord,
    pack_pair,
    pack_record,
    text,
    unavailable_as_error,
    unpack_pair,
    unpack_record,
    unpack_stamp,
    unpack_timeout,
)
from .scripts import (
    ACQUIRE,
    ACQUIRE_AND_LOAD,
    ALIVE,
    FENCED_WRITE,
    HEARTBEAT,
    HISTORY_APPEND,
    HISTORY_READ,
    OWNER,
    RELEASE,
    RENEW,
    SET_ASIDE,
    TOUCH_MANY,
)
from .session_cache import SessionCache
from .status import stored_objects

#: Messages for inboxes (key, messages) pushed with a fenced write.
Pushes = list[tuple[str, list[bytes]]]
#: Fields of the fenced write: which of an object's hashes a change goes to.
SOCKETS, TIMESTAMPS, SETTINGS = 2, 3, 4

logger = logging.getLogger(__name__)


def _hash(flat: Any) -> dict[Any, Any]:
    """A hash as a script returns HGETALL (a flat list), as redis-py's ``hgetall`` does."""
    if not isinstance(flat, list):
        return {}
    return dict(zip(flat[::2], flat[1::2], strict=False))


class RedisSessionLayer(GatewaySide, Leases, History, BaseSessionLayer):
    """Sockets, settings, history and leases of every object, shared through Redis."""

    distributed = True
    transport_class = "django_durable.redis.transport.RedisTransport"

    def __init__(
        self,
        hosts: list[Any] | None = None,
        prefix: str = "durable:",
        lease_time: float | None = None,
        **config: Any,
    ) -> None:
        super().__init__(hosts=hosts, prefix=prefix, lease_time=lease_time, **config)
        self.redises: list[aioredis.Redis] = []
        for entry in decode_hosts(hosts):
            host = dict(entry)
            host.setdefault("max_connections", 1000)
            self.redises.append(aioredis.Redis(connection_pool=create_pool(host)))
        #: The first host (the only one unless CONFIG["hosts"] lists several).
        self.redis = self.redises[0]
        self.prefix = prefix
        self.key_names = RedisKeys(prefix)
        self.lease_time = float(lease_time or conf.get("LEASE_TIME"))
        #: This process's channel name (set by the transport when it starts).
        self.holder = ""
        #: key -> fencing token of each object this process owns.
        self.owned: dict[str, int] = {}
        #: key -> auto-response pair, for gateways of this process; an entry lives while
        #: the object is owned here or a gateway here holds one of its sockets.
        self.auto_cache: dict[str, WebSocketRequestResponsePair | None] = {}
        #: key -> how many of this process's gateways hold a socket of it.
        self.gateways: dict[str, int] = {}
        self._acquire = self.redis.register_script(ACQUIRE)
        self._acquire_and_load = self.redis.register_script(ACQUIRE_AND_LOAD)
        self.preloaded: dict[str, tuple[int, Any, Any, Any]] = {}
        self.session_cache = SessionCache()
        self.versions: dict[str, str] = {}
        self._acquiring: dict[str, int] = {}
        self.lease_releases: dict[str, asyncio.Future[None]] = {}
        self._given_up_meanwhile: set[str] = set()
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)
        self._owner = self.redis.register_script(OWNER)
        self._heartbeat = self.redis.register_script(HEARTBEAT)
        self._alive = self.redis.register_script(ALIVE)
        self._fenced = self.redis.register_script(FENCED_WRITE)
        self._touch_many = self.redis.register_script(TOUCH_MANY)
        #: Called with (key, records written, socket ids removed) after each owner's
        #: write (the transport keeps holders' copies of attachments up to date).
        self.on_written: Any = None
        #: key -> socket id -> auto-response timestamp not yet written (see flush_stamps).
        self.pending_stamps: dict[str, dict[str, float]] = {}
        self._set_aside = self.redis.register_script(SET_ASIDE)
        self._history_append = self.redis.register_script(HISTORY_APPEND)
        self._history_read = self.redis.register_script(HISTORY_READ)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        """Errors in ``CONFIG`` for the system check."""
        errors = []
        hosts = config.get("hosts")
        if hosts is not None and (isinstance(hosts, (str, bytes)) or not hosts):
            errors.append("RedisSessionLayer CONFIG['hosts'] must be a non-empty list.")
        lease = config.get("lease_time")
        if lease is not None and not (isinstance(lease, (int, float)) and lease > 0):
            errors.append("RedisSessionLayer CONFIG['lease_time'] must be a positive number.")
        return errors

    # Keys -------------------------------------------------------------------------------

    def _keys(self, key: str) -> list[str]:
        return self.key_names.of_object(key)

    def redis_for(self, name: str) -> aioredis.Redis:
        """The host of an object key (or a holder's heartbeat), hashed the way
        channels_redis spreads channels: every key of one object on one host, so each
        Lua script touches one server."""
        index: int = _consistent_hash(name, len(self.redises))
        return self.redises[index]

    def by_host(self, names: list[str]) -> dict[int, list[str]]:
        """``names`` grouped by the index of their host, in their order."""
        groups: dict[int, list[str]] = {}
        for name in names:
            groups.setdefault(_consistent_hash(name, len(self.redises)), []).append(name)
        return groups

    # The object's side -----------------------------------------------------------------

    async def load(self, key: str) -> ObjectSession:
        """Sockets, timestamps and settings in one round trip; corrupt records set aside."""
        _, sockets_key, ts_key, settings_key = self._keys(key)
        preloaded = self.preloaded.pop(key, None)
        if preloaded is not None and preloaded[0] != self.owned.get(key):
            preloaded = None  # read with an earlier lease: stale
        if preloaded is not None and preloaded[1] == 0:
            # Read with the lease, and unchanged since this process kept the session
            # at the version Redis matched (acquire() put it in the settings' place).
            version = preloaded[3]
            kept = self.session_cache.take(key, version)
            if kept is not None:
                await self._apply_stamps(key, kept, _hash(preloaded[2]))
                self.auto_cache[key] = kept.auto_response
                self.versions[key] = version
                metrics.inc("kept_session_wakes")
                return kept
            preloaded = None  # (kept no longer, or kept again since: read it all)
        self.session_cache.drop(key)
        if preloaded is not None:
            # Read with the lease (acquire(load=True)): nothing but this process, its
            # holder, has written the session since.
            sockets, stamps, settings = (_hash(flat) for flat in preloaded[1:])
        else:
            redis = self.redis_for(key)
            async with unavailable_as_error(), redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(sockets_key)
                pipe.hgetall(ts_key)
                pipe.hgetall(settings_key)
                sockets, stamps, settings = await pipe.execute()
        session = ObjectSession(key)
        records = []
        # One corrupt record must not take the object down: it is set aside (moved to
        # x:K, so it is logged once and never read again) and the rest is served.
        for sid, data in sockets.items():
            try:
                records.append(unpack_record(text(sid), data))
            except CorruptRecord as exc:
                session.put_aside(text(sid))
                await self._put_aside(key, sockets_key, sid, data, text(sid), exc)
        # Accept order: the hash keeps none, so records carry no order but their seq;
        # sort by id for a stable, process-independent order.
        for record in sorted(records, key=lambda r: r.id):
            session.sockets[record.id] = record
        await self._apply_stamps(key, session, stamps)
        try:
            session.auto_response = unpack_pair(settings.get(b"auto"))
        except CorruptRecord as exc:
            await self._put_aside(key, settings_key, "auto", settings[b"auto"], "auto", exc)
        try:
            session.event_timeout_ms = unpack_timeout(settings.get(b"timeout"))
        except CorruptRecord as exc:
            await self._put_aside(
                key, settings_key, "timeout", settings[b"timeout"], "timeout", exc
            )
        self.auto_cache[key] = session.auto_response
        stored_version = settings.get(b"v")
        if stored_version is not None and self.session_cache.wanted(session):
            self.versions[key] = text(stored_version)
        return session

    async def _apply_stamps(self, key: str, session: ObjectSession, stamps: dict[Any, Any]) -> None:
        """The auto-response timestamps read with the session, on its records (gateways
        write them without the lease, so a kept session takes them from Redis too)."""
        sockets = session.sockets
        ts_key = self.key_names.stamps(key)
        for sid, stamp in stamps.items():
            record = sockets.get(text(sid))
            if record is None:
                continue
            try:
                record.auto_response_at = unpack_stamp(stamp)
            except CorruptRecord as exc:
                await self._put_aside(key, ts_key, record.id, stamp, f"t:{record.id}", exc)

    async def _put_aside(
        self, key: str, hash_key: str, field: Any, data: Any, name: str, error: Exception
    ) -> None:
        """Move a field that cannot be decoded to ``x:K``, log it once and count it."""
        logger.error(
            "object %s: corrupt %s set aside in Redis (%s%s): %s",
            key,
            "settings value" if name in ("auto", "timeout") else f"record {name!r}",
            self.prefix,
            f"x:{key}",
            error,
        )
        metrics.inc("corrupt_records")
        async with unavailable_as_error():
            await self._set_aside(
                keys=[hash_key, self.key_names.set_aside(key)],
                args=[field, data, name],
                client=self.redis_for(key),
            )

    async def apply(
        self, key: str, writes: list[SessionWrite], session: ObjectSession, release: bool = False
    ) -> None:
        """A handler's writes in one fenced script; ``OwnershipLost`` if the lease moved.

        With ``release`` the same script gives the lease up after the writes (the object
        hibernates after them): one round trip for both.
        """
        await self.apply_and_push(key, writes, session, [], release)

    async def apply_and_push(
        self,
        key: str,
        writes: list[SessionWrite],
        session: ObjectSession,
        pushes: Pushes,
        release: bool = False,
    ) -> list[int]:
        """:meth:`apply`, and in the same script (all or nothing) ``pushes``: messages for
        inboxes on this object's host, unbounded; the length of each inbox after."""
        args: list[Any] = [self.lease_value(key)]
        keys = self._keys(key)
        for inbox, messages in pushes:
            keys.append(inbox)
            args += ["P", len(keys), self.inbox_ttl_ms, len(messages), *messages]
        settings_changed = False
        latest: dict[str, SocketRecord] = {}
        removed: list[str] = []
        for write in writes:
            match write:
                case AddSocket(record) | UpdateSocket(record):
                    latest[record.id] = record
                case RemoveSocket(socket_id):
                    latest.pop(socket_id, None)
                    removed.append(socket_id)
                case SaveSettings():
                    settings_changed = True
        for record in latest.values():
            args += ["S", SOCKETS, record.id, pack_record(record)]
        for sid in removed:
            args += ["D", SOCKETS, sid, "D", TIMESTAMPS, sid]
        if settings_changed:
            pair = session.auto_response
            args += ["S", SETTINGS, "auto", b"" if pair is None else pack_pair(pair)]
            args += ["S", SETTINGS, "timeout", session.event_timeout_ms or 0]
            self.auto_cache[key] = pair
        if len(args) == 1:
            if release:
                await self.release(key, session)
            return []
        version = None
        if latest or removed or settings_changed:
            # The session's version (see session_cache.py): a new one for a large
            # object, none for a small one (its kept copy, if any, is stale now).
            self.versions.pop(key, None)
            if self.session_cache.wanted(session):
                version = self.session_cache.new_version(self.holder)
                args += ["S", SETTINGS, "v", version]
            else:
                args += ["D", SETTINGS, "v"]
        release = release and key in self.owned
        if release:
            args.append("R")
        async with self.releasing(key) if release else contextlib.nullcontext():
            done = await self._fenced_write(key, keys, args)
            if release:
                self.given_up(key)
            elif version is not None:
                self.versions[key] = version
        if self.on_written is not None:
            self.on_written(key, list(latest.values()), removed)
        return [int(n) for n in done] if isinstance(done, list) else []

    async def _fenced_write(self, key: str, keys: list[str], args: list[Any]) -> Any:
        """The fenced script; ``OwnershipLost`` when the lease is not this process's."""
        async with unavailable_as_error():
            try:
                done = await self._fenced(keys=keys, args=args, client=self.redis_for(key))
            except ResponseError as exc:
                if "FENCED" in str(exc):
                    self.owned.pop(key, None)
                    raise OwnershipLost(
                        f"this process no longer owns {key}: its write was refused"
                    ) from exc
                raise
        return done

    async def add_socket(self, key: str, record: SocketRecord) -> None:
        """One write through :meth:`apply`."""
        await self.apply(key, [AddSocket(record)], ObjectSession(key))

    async def update_socket(self, key: str, record: SocketRecord) -> None:
        """One write through :meth:`apply`."""
        await self.apply(key, [UpdateSocket(record)], ObjectSession(key))

    async def remove_socket(self, key: str, socket_id: str) -> None:
        """One write through :meth:`apply`."""
        await self.apply(key, [RemoveSocket(socket_id)], ObjectSession(key))

    async def save_settings(self, session: ObjectSession) -> None:
        """One write through :meth:`apply`."""
        await self.apply(session.key, [SaveSettings()], session)

    async def reregister(self, key: str, record: SocketRecord) -> None:
        """Put back a socket this process holds, after Redis lost its data."""
        redis = self.redis_for(key)
        async with unavailable_as_error(), redis.pipeline(transaction=True) as pipe:
            # No version from now on: a session kept anywhere misses this record.
            pipe.hdel(self.key_names.settings(key), "v")
            pipe.hsetnx(self.key_names.sockets(key), record.id, pack_record(record))
            await pipe.execute()

    async def restore_settings(
        self, key: str, pair: WebSocketRequestResponsePair | None, timeout_ms: int | None
    ) -> None:
        """Put back an object's settings after Redis lost its data (unless set again)."""
        settings_key = self.key_names.settings(key)
        redis = self.redis_for(key)
        async with unavailable_as_error(), redis.pipeline(transaction=True) as pipe:
            pipe.hdel(settings_key, "v")  # (as in reregister)
            if pair is not None:
                pipe.hsetnx(settings_key, "auto", pack_pair(pair))
            if timeout_ms:
                pipe.hsetnx(settings_key, "timeout", timeout_ms)
            await pipe.execute()

    async def holders(self, key: str) -> set[str]:
        """The processes holding the object's sockets."""
        async with unavailable_as_error():
            values = await self.redis_for(key).hvals(self.key_names.sockets(key))
        holders = set()
        for value in values:
            with contextlib.suppress(CorruptRecord):  # set aside at the object's next wake
                holders.add(unpack_record("", value).holder)
        return holders

    async def stored_objects(self, known: Iterable[str] = ()) -> dict[str, StoredObject]:
        """Every object with sockets or a lease in Redis (a bounded SCAN)."""
        return await stored_objects(self, known)

    async def close(self) -> None:
        """Close the connection pools."""
        for redis in self.redises:
            await redis.aclose()
