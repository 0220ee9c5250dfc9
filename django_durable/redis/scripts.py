"""The Lua scripts of the Redis session layer (each runs atomically on one host)."""

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
# KEYS: clock, pause, lease, fence. ARGV: gap, holder, lease ms, physical ttl ms, fence
# ttl ms. Returns {owned, holder, token[, took_over]}.
ACQUIRE_FUNCTION = """
local function acquire()
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
      return {1, holder, token, 0}
    end
    if lease_expiry(cur) > live then
      return {0, holder, token, 0}
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
end
"""
ACQUIRE = LIVE_CLOCK + ACQUIRE_FUNCTION + "return acquire()\n"

# The lease taken as ACQUIRE does and, when this process got it, the object's session
# read in the same round trip (a wake: the process that takes an object loads it next).
# KEYS: ACQUIRE's, then sockets, timestamps, settings. ARGV: ACQUIRE's, then the
# version of the session this process kept at its last release, or '' (see
# redis/session_cache.py). Returns ACQUIRE's four items, then (when owned) the three
# hashes as HGETALL lists; when the settings' version is still the kept one, 0 stands
# for the sockets and the settings (unchanged: the kept session has them).
ACQUIRE_AND_LOAD = (
    LIVE_CLOCK
    + ACQUIRE_FUNCTION
    + """
local result = acquire()
if result[1] == 1 then
  if ARGV[6] ~= '' and redis.call('HGET', KEYS[7], 'v') == ARGV[6] then
    result[5] = 0
    result[6] = redis.call('HGETALL', KEYS[6])
    result[7] = 0
  else
    result[5] = redis.call('HGETALL', KEYS[5])
    result[6] = redis.call('HGETALL', KEYS[6])
    result[7] = redis.call('HGETALL', KEYS[7])
  end
end
return result
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

# KEYS: lease, sockets, timestamps, settings, then inboxes. ARGV[1]: the lease value;
# then ops: 'S' <key index> <field> <value>  |  'D' <key index> <field>  |
# 'P' <key index> <ttl ms> <count> <message>... (a handler's frames for another
# process, pushed with no bound: see redis/pending_frames.py)  |  'R' (last: give the
# lease up, the object hibernates after these writes). Returns 1, or, with 'P' ops,
# the length of each inbox after its push.
FENCED_WRITE = """
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
  return redis.error_reply('FENCED lease lost')
end
local lengths = {}
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'R' then
    redis.call('DEL', KEYS[1])
    i = i + 1
  else
    local k = KEYS[tonumber(ARGV[i + 1])]
    if op == 'S' then
      redis.call('HSET', k, ARGV[i + 2], ARGV[i + 3])
      i = i + 4
    elseif op == 'P' then
      local n = tonumber(ARGV[i + 3])
      lengths[#lengths + 1] = redis.call('RPUSH', k, unpack(ARGV, i + 4, i + 3 + n))
      redis.call('PEXPIRE', k, ARGV[i + 2])
      i = i + 4 + n
    else
      redis.call('HDEL', k, ARGV[i + 2])
      i = i + 3
    end
  end
end
if #lengths > 0 then return lengths end
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

# A process's inbox (``q:<process>``), bounded: KEYS[1] the list. ARGV: its capacity,
# the ms Redis keeps it after this push, then the messages. Pushes as many as there is
# room for, oldest first, and returns how many (0: full; the sender waits and retries).
PUSH_BOUNDED = """
local n = #ARGV - 2
local room = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[1])
if room < n then n = room end
if n <= 0 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3, n + 2))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"""
