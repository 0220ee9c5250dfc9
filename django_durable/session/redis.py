"""The Redis session layer: sockets, settings and ownership shared by every process.

Layout (``prefix`` defaults to ``durable:``; ``K`` is the object key):

- ``{prefix}s:K`` hash, socket id -> msgpack ``[tags, attachment, holder, state, seq]``
- ``{prefix}t:K`` hash, socket id -> auto-response timestamp (written by gateways)
- ``{prefix}c:K`` hash, ``auto`` -> msgpack ``[request, response]``, ``timeout`` -> ms
- ``{prefix}l:K`` the lease: ``"<holder channel>|<token>|<expiry>"``, the expiry on the
  live clock (``LIVE_CLOCK``), kept by Redis ``LEASE_TIME`` + ``RIDE_THROUGH``
- ``{prefix}f:K`` the last fencing token handed out for ``K``, kept ``fence_key_ttl``
  after each acquisition (see :attr:`RedisSessionLayer.fence_key_ttl`)
- ``{prefix}p:<holder channel>`` a process's heartbeat: its expiry on the live clock
- ``{prefix}clock``, ``{prefix}pause``: the live clock (the last tick, the pauses)
- ``{prefix}x:K`` hash of records set aside because they could not be decoded (a
  socket id, ``auto``, ``timeout`` or ``t:<socket id>`` -> the bytes as they were),
  kept a week for an operator to look at
- ``{prefix}hm:K`` hash, ``e`` -> the history's epoch, ``o`` -> the offset of its last
  broadcast; ``{prefix}h:K`` list of the last ``history`` broadcasts (msgpack
  ``[tag, excluded socket ids, payload]``), oldest first, so that entry ``i`` of ``n``
  has offset ``o - n + 1 + i``. Both expire ``HISTORY_TTL`` after their last use.

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

import contextlib
import logging
import math
from typing import Any

import msgpack
from channels_redis.utils import _consistent_hash, create_pool, decode_hosts
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import conf, metrics
from ..autoresponse import WebSocketRequestResponsePair
from ..exceptions import CorruptValue, OwnershipLost, SessionLayerUnavailable
from ..limits import MAX_EVENT_TIMEOUT_MS
from .base import (
    CLOSED,
    CONNECTING,
    BaseSessionLayer,
    HistoryEntry,
    HistorySnapshot,
    ObjectSession,
    SocketRecord,
    new_epoch,
)

# Time in these scripts is the *live clock*: Redis's clock (ms) minus every pause
# found so far. A pause is a gap of more than half a lease in which no script ran (Redis
# was stopped or frozen, or no process could reach it: processes run these scripts every
# third of a lease). The first script after a pause adds it to ``pause``, so leases and
# heartbeats get back the time nobody could renew them in: an outage or a freeze expires
# nothing, and the owner of an object finds it still its own when Redis is back (a kill -9
# of a process still expires its leases and heartbeat, since the others keep ticking).
# KEYS[1], KEYS[2]: the clock and the pause keys; ARGV[1]: the gap in ms.
LIVE_CLOCK = """
local function live_now(clock_key, pause_key, gap)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = tonumber(redis.call('GET', clock_key) or '0')
  local pause = tonumber(redis.call('GET', pause_key) or '0')
  if last > 0 and now - last > gap then
    pause = pause + (now - last)
    redis.call('SET', pause_key, string.format('%.0f', pause))
  end
  if now > last then redis.call('SET', clock_key, string.format('%.0f', now)) end
  return now - pause
end
local function lease_expiry(value)
  local last = string.find(value, '|[^|]*$')
  return tonumber(string.sub(value, last + 1)) or 0
end
local function lease_value(head, live, lease_ms)
  return head .. '|' .. string.format('%.0f', live + lease_ms)
end
local function lease_is(value, mine)
  return value ~= false and string.sub(value, 1, #mine + 1) == mine .. '|'
end
"""

# A lease is ``"<holder>|<token>|<expiry on the live clock>"``; Redis keeps the key
# ``ARGV[lease ms] + RIDE_THROUGH`` ms so that it outlives an outage.
# KEYS: clock, pause, lease, fence. ARGV: gap, holder, lease ms, physical ttl ms.
ACQUIRE = (
    LIVE_CLOCK
    + """
local live = live_now(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local lease_ms = tonumber(ARGV[3])
local took_over = 0
local cur = redis.call('GET', KEYS[3])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local holder = string.sub(cur, 1, sep - 1)
  local rest = string.sub(cur, sep + 1)
  local token = string.sub(rest, 1, (string.find(rest, '|', 1, true) or (#rest + 1)) - 1)
  if holder == ARGV[2] then
    redis.call('SET', KEYS[3], lease_value(holder .. '|' .. token, live, lease_ms), 'PX', ARGV[4])
    return {1, holder, token}
  end
  if lease_expiry(cur) > live then
    return {0, holder, token}
  end
  took_over = 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
local token = now
if last >= now then token = last + 1 end
local tok = string.format('%.0f', token)
redis.call('SET', KEYS[4], tok, 'PX', ARGV[5])
redis.call('SET', KEYS[3], lease_value(ARGV[2] .. '|' .. tok, live, lease_ms), 'PX', ARGV[4])
return {1, ARGV[2], tok, took_over}
"""
)

# Renewing needs only that nobody else took the lease: one that expired on the live
# clock but was not taken is still this process's (its token is still the last).
# KEYS: clock, pause, lease. ARGV: gap, "<holder>|<token>", lease ms, physical ttl ms.
RENEW = (
    LIVE_CLOCK
    + """
local live = live_now(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local cur = redis.call('GET', KEYS[3])
if lease_is(cur, ARGV[2]) then
  redis.call('SET', KEYS[3], lease_value(ARGV[2], live, tonumber(ARGV[3])), 'PX', ARGV[4])
  return 1
end
return 0
"""
)

# KEYS: lease. ARGV: "<holder>|<token>".
RELEASE = (
    LIVE_CLOCK
    + """
if lease_is(redis.call('GET', KEYS[1]), ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)

# The holder of a lease that holds on the live clock, or false. KEYS: clock, pause, lease.
OWNER = (
    LIVE_CLOCK
    + """
local live = live_now(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local cur = redis.call('GET', KEYS[3])
if cur and lease_expiry(cur) > live then
  return string.sub(cur, 1, string.find(cur, '|', 1, true) - 1)
end
return false
"""
)

# A heartbeat is its expiry on the live clock, kept by Redis for a lease plus
# RIDE_THROUGH: missing means Redis lost it (its data), expired means the process
# stopped renewing it. KEYS: clock, pause, heartbeat. ARGV: gap, lease ms, ttl ms.
# Returns 1, or 0 when the key had vanished.
HEARTBEAT = (
    LIVE_CLOCK
    + """
local live = live_now(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local existed = redis.call('EXISTS', KEYS[3])
redis.call('SET', KEYS[3], string.format('%.0f', live + tonumber(ARGV[2])), 'PX', ARGV[3])
return existed
"""
)

# 1 or 0 per heartbeat key in KEYS[3:]: whether it holds on the live clock.
ALIVE = (
    LIVE_CLOCK
    + """
local live = live_now(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local result = {}
for i = 3, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  result[#result + 1] = (v > live) and 1 or 0
end
return result
"""
)

# KEYS: lease, sockets, timestamps, settings. ARGV[1]: the lease value; then ops:
# 'S' <key index> <field> <value>  |  'D' <key index> <field>
FENCED_WRITE = """
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
  return redis.error_reply('FENCED lease lost')
end
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  local k = KEYS[tonumber(ARGV[i + 1])]
  if op == 'S' then
    redis.call('HSET', k, ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  else
    redis.call('HDEL', k, ARGV[i + 2])
    i = i + 3
  end
end
return 1
"""

# KEYS: sockets, timestamps, lease. ARGV: socket id, timestamp, ... Records the
# timestamps of sockets still registered; returns the lease (who to tell), or nil.
TOUCH_MANY = """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('GET', KEYS[3])
"""

# KEYS: the hash holding a corrupt field, the set-aside hash. ARGV: field, the bytes
# that failed to decode, the name to keep them under. Moves them only if unchanged, so
# a record rewritten meanwhile (by its owner, or re-registered) is left alone.
SET_ASIDE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], 604800000)
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: history meta, history list. ARGV: limit, ttl ms, entry, epoch if none.
# An epoch starts (and the list is emptied) whenever the meta is missing: the history
# could have been lost (Redis lost its data, or it expired).
HISTORY_APPEND = """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
end
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[1]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {e, o}
"""

# KEYS: history meta, history list. ARGV: after (-1: no entries), ttl ms, epoch if none.
HISTORY_READ = """
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[3]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local o = tonumber(redis.call('HGET', KEYS[1], 'o'))
local n = redis.call('LLEN', KEYS[2])
local first = o - n + 1
local after = tonumber(ARGV[1])
local entries = {}
if after >= 0 and after < o then
  local start = math.max(after + 1, first)
  entries = redis.call('LRANGE', KEYS[2], start - first, -1)
end
return {e, o, first, entries}
"""

SOCKETS, TIMESTAMPS, SETTINGS = 2, 3, 4

#: Seconds Redis keeps a lease or a heartbeat past its expiry, so that an outage or a
#: freeze of Redis up to this long expires neither (see ``LIVE_CLOCK``); a longer one
#: counts as Redis having lost its data.
RIDE_THROUGH = 600.0

logger = logging.getLogger(__name__)


class CorruptRecord(CorruptValue):
    """Bytes in Redis that are not a record this package wrote (corrupt or hostile)."""


def pack_record(record: SocketRecord) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        [list(record.tags), record.attachment, record.holder, record.state, record.seq]
    )


def _unpack(data: bytes | str) -> Any:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    try:
        # Plain msgpack (no extension hook): its parse stack is bounded (1,024 levels)
        # and every length is checked against the input.
        return msgpack.unpackb(data)
    except Exception as exc:
        raise CorruptRecord(f"not msgpack ({type(exc).__name__}: {exc or 'bad format'})") from None


def unpack_record(socket_id: str, data: bytes | str) -> SocketRecord:
    """A socket record, or ``CorruptRecord`` for anything ``pack_record`` cannot have made."""
    value = _unpack(data)
    if not (isinstance(value, list) and len(value) == 5):
        raise CorruptRecord(f"a socket record is a list of 5 items, not {type(value).__name__}")
    tags, attachment, holder, state, seq = value
    if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise CorruptRecord("a socket record's tags are not a list of str")
    if not (attachment is None or isinstance(attachment, bytes)):
        raise CorruptRecord("a socket record's attachment is not bytes")
    if not isinstance(holder, str):
        raise CorruptRecord("a socket record's holder is not a str")
    if not (type(state) is int and CONNECTING <= state <= CLOSED):
        raise CorruptRecord("a socket record's ready state is not 0-3")
    if not (type(seq) is int and seq >= 0):
        raise CorruptRecord("a socket record's event number is not an int >= 0")
    return SocketRecord(socket_id, tuple(tags), attachment, None, holder, state, seq)


def pack_pair(pair: WebSocketRequestResponsePair) -> bytes:
    return msgpack.packb([pair.request, pair.response])  # type: ignore[no-any-return]


def unpack_pair(data: bytes | str | None) -> WebSocketRequestResponsePair | None:
    if not data:
        return None
    value = _unpack(data)
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(part, (str, bytes)) for part in value)
    ):
        raise CorruptRecord("an auto-response pair is a list of two str or bytes")
    return WebSocketRequestResponsePair(value[0], value[1])


def _unpack_timeout(data: bytes | str | None) -> int | None:
    """The stored event timeout (a cleared one is stored as 0, which loads as None)."""
    if data is None:
        return None
    try:
        timeout = int(data)
    except ValueError:
        raise CorruptRecord("an event timeout is not an int") from None
    if not 0 <= timeout <= MAX_EVENT_TIMEOUT_MS:
        raise CorruptRecord(f"an event timeout of {timeout} ms is out of range")
    return timeout or None


def _unpack_stamp(data: bytes | str) -> float:
    try:
        stamp = float(data)
    except ValueError:
        raise CorruptRecord("an auto-response timestamp is not a number") from None
    if not math.isfinite(stamp):
        raise CorruptRecord("an auto-response timestamp is not finite")
    return stamp


class RedisSessionLayer(BaseSessionLayer):
    distributed = True

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
        p = self.prefix
        return [f"{p}l:{key}", f"{p}s:{key}", f"{p}t:{key}", f"{p}c:{key}"]

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

    def heartbeat_key(self, holder: str) -> str:
        return f"{self.prefix}p:{holder}"

    @property
    def lease_ms(self) -> int:
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
        return [f"{self.prefix}clock", f"{self.prefix}pause"]

    @property
    def _kept_ms(self) -> int:
        return self.lease_ms + int(RIDE_THROUGH * 1000)

    @property
    def _gap_ms(self) -> int:
        # Processes tick every third of a lease; a lease renewed just before an outage
        # has two thirds left: a gap in between is a pause, found before any expires.
        return self.lease_ms * 6 // 10

    def lease_value(self, key: str) -> str:
        return f"{self.holder}|{self.owned.get(key, 0)}"

    # Ownership -------------------------------------------------------------------------

    async def acquire(self, key: str) -> tuple[bool, str, int]:
        """Take the object's lease if nobody holds it: (owned, holder, token)."""
        p = self.prefix
        async with unavailable_as_error():
            owned, holder, token, *took_over = await self._acquire(
                keys=[*self._clock, f"{p}l:{key}", f"{p}f:{key}"],
                args=[
                    self._gap_ms,
                    self.holder,
                    self.lease_ms,
                    self._kept_ms,
                    int(self.fence_key_ttl * 1000),
                ],
                client=self.redis_for(key),
            )
        holder, token = _text(holder), int(_text(token))
        if took_over and took_over[0]:
            # Another process's lease ran out (it died or was cut off) and this process
            # took the object; a release at shutdown deletes the lease, so it is not this.
            metrics.inc("lease_takeovers")
        if owned:
            if self.owned.get(key) != token:
                logger.info("object %s: ownership taken (fencing token %d)", key, token)
            self.owned[key] = token
        return bool(owned), holder, token

    async def owner(self, key: str) -> str | None:
        async with unavailable_as_error():
            value = await self._owner(
                keys=[*self._clock, f"{self.prefix}l:{key}"],
                args=[self._gap_ms],
                client=self.redis_for(key),
            )
        return None if value is None else _text(value)

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
                        keys=[*self._clock, f"{self.prefix}l:{key}"],
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
        if key not in self.gateways:
            self.auto_cache.pop(key, None)  # nothing here reads it any more
        if key not in self.owned:
            return
        value = self.lease_value(key)
        self.owned.pop(key, None)
        async with unavailable_as_error():
            await self._release(
                keys=[f"{self.prefix}l:{key}"], args=[value], client=self.redis_for(key)
            )

    def fence_token(self, key: str) -> int | None:
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

    # The object's side -----------------------------------------------------------------

    async def load(self, key: str) -> ObjectSession:
        _, sockets_key, ts_key, settings_key = self._keys(key)
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
                records.append(unpack_record(_text(sid), data))
            except CorruptRecord as exc:
                session.put_aside(_text(sid))
                await self._put_aside(key, sockets_key, sid, data, _text(sid), exc)
        for record in records:
            stamp = stamps.get(record.id.encode())
            if stamp is not None:
                try:
                    record.auto_response_at = _unpack_stamp(stamp)
                except CorruptRecord as exc:
                    await self._put_aside(key, ts_key, record.id, stamp, f"t:{record.id}", exc)
        # Accept order: the hash keeps none, so records carry no order but their seq;
        # sort by id for a stable, process-independent order.
        for record in sorted(records, key=lambda r: r.id):
            session.sockets[record.id] = record
        try:
            session.auto_response = unpack_pair(settings.get(b"auto"))
        except CorruptRecord as exc:
            await self._put_aside(key, settings_key, "auto", settings[b"auto"], "auto", exc)
        try:
            session.event_timeout_ms = _unpack_timeout(settings.get(b"timeout"))
        except CorruptRecord as exc:
            await self._put_aside(
                key, settings_key, "timeout", settings[b"timeout"], "timeout", exc
            )
        self.auto_cache[key] = session.auto_response
        return session

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
                keys=[hash_key, f"{self.prefix}x:{key}"],
                args=[field, data, name],
                client=self.redis_for(key),
            )

    async def apply(self, key: str, writes: list[tuple[str, Any]], session: ObjectSession) -> None:
        args: list[Any] = [self.lease_value(key)]
        settings_changed = False
        latest: dict[str, SocketRecord] = {}
        removed: list[str] = []
        for op, arg in writes:
            if op in ("add", "update"):
                latest[arg.id] = arg
            elif op == "remove":
                latest.pop(arg, None)
                removed.append(arg)
            else:
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
            return
        async with unavailable_as_error():
            try:
                await self._fenced(keys=self._keys(key), args=args, client=self.redis_for(key))
            except ResponseError as exc:
                if "FENCED" in str(exc):
                    self.owned.pop(key, None)
                    raise OwnershipLost(
                        f"this process no longer owns {key}: its write was refused"
                    ) from exc
                raise
        if self.on_written is not None:
            self.on_written(key, list(latest.values()), removed)

    async def add_socket(self, key: str, record: SocketRecord) -> None:
        await self.apply(key, [("add", record)], ObjectSession(key))

    async def update_socket(self, key: str, record: SocketRecord) -> None:
        await self.apply(key, [("update", record)], ObjectSession(key))

    async def remove_socket(self, key: str, socket_id: str) -> None:
        await self.apply(key, [("remove", socket_id)], ObjectSession(key))

    async def save_settings(self, session: ObjectSession) -> None:
        await self.apply(session.key, [("settings", None)], session)

    # The gateway's side ----------------------------------------------------------------

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

    def auto_response(self, key: str) -> WebSocketRequestResponsePair | None:
        return self.auto_cache.get(key)

    async def load_auto_response(self, key: str) -> None:
        settings_key = f"{self.prefix}c:{key}"
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
                    owner = None if lease is None else _text(lease).split("|", 1)[0]
                    written[key] = (owner, pending.pop(key))
        except BaseException:
            for key, stamps in pending.items():  # newer ones noted meanwhile win
                self.pending_stamps[key] = {**stamps, **self.pending_stamps.get(key, {})}
            raise
        return written

    async def reregister(self, key: str, record: SocketRecord) -> None:
        """Put back a socket this process holds, after Redis lost its data."""
        async with unavailable_as_error():
            await self.redis_for(key).hsetnx(
                f"{self.prefix}s:{key}", record.id, pack_record(record)
            )

    async def restore_settings(
        self, key: str, pair: WebSocketRequestResponsePair | None, timeout_ms: int | None
    ) -> None:
        """Put back an object's settings after Redis lost its data (unless set again)."""
        settings_key = f"{self.prefix}c:{key}"
        redis = self.redis_for(key)
        async with unavailable_as_error(), redis.pipeline(transaction=False) as pipe:
            if pair is not None:
                pipe.hsetnx(settings_key, "auto", pack_pair(pair))
            if timeout_ms:
                pipe.hsetnx(settings_key, "timeout", timeout_ms)
            await pipe.execute()

    async def holders(self, key: str) -> set[str]:
        async with unavailable_as_error():
            values = await self.redis_for(key).hvals(f"{self.prefix}s:{key}")
        holders = set()
        for value in values:
            with contextlib.suppress(CorruptRecord):  # set aside at the object's next wake
                holders.add(unpack_record("", value).holder)
        return holders

    # Broadcast history ---------------------------------------------------------------

    def _history_keys(self, key: str) -> list[str]:
        return [f"{self.prefix}hm:{key}", f"{self.prefix}h:{key}"]

    async def append_history(
        self,
        key: str,
        limit: int,
        tag: str | None,
        exclude: tuple[str, ...],
        payload: str | bytes,
    ) -> tuple[str, int]:
        entry = msgpack.packb([tag, list(exclude), payload])
        ttl_ms = int(conf.get("HISTORY_TTL") * 1000)
        async with unavailable_as_error():
            epoch, offset = await self._history_append(
                keys=self._history_keys(key),
                args=[limit, ttl_ms, entry, new_epoch()],
                client=self.redis_for(key),
            )
        return _text(epoch), int(offset)

    async def read_history(self, key: str, after: int | None) -> HistorySnapshot:
        ttl_ms = int(conf.get("HISTORY_TTL") * 1000)
        async with unavailable_as_error():
            epoch, head, first, raw = await self._history_read(
                keys=self._history_keys(key),
                args=[-1 if after is None else after, ttl_ms, new_epoch()],
                client=self.redis_for(key),
            )
        head, first = int(head), int(first)
        start = 0 if after is None else max(after + 1, first)
        entries = []
        for i, data in enumerate(raw):
            tag, exclude, payload = msgpack.unpackb(data)
            entries.append(HistoryEntry(start + i, tag, tuple(exclude), payload))
        return HistorySnapshot(_text(epoch), head, first, entries)

    async def close(self) -> None:
        for redis in self.redises:
            await redis.aclose()

    def make_transport(self, runtime: Any) -> Any:
        from ..cluster import RedisTransport

        return RedisTransport(runtime)


class unavailable_as_error:
    """Turn a lost Redis connection into ``SessionLayerUnavailable``, saying so."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)):
            raise SessionLayerUnavailable(f"the Redis session layer is unreachable: {exc}") from exc
        if isinstance(exc, RedisError) and not isinstance(exc, ResponseError):
            raise SessionLayerUnavailable(f"the Redis session layer failed: {exc}") from exc
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
