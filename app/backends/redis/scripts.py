"""The Lua scripts of the Redis backend, and the keys they share with it.

Every write is one of these scripts, so Redis applies it whole, alone, and in one round
trip, and every process sees the same order. Keys (under `PREFIX`, in one Redis database):

- `epoch`: names the lifetime of the history: set by the first process ever to start, and
  again (SWITCH) by the first to find that Redis lost data (the key is gone with the rest)
  or came back with older data (a room's id went back). Every write runs only under the
  epoch its process is in, so nothing is ever stored under an epoch nobody agreed on.
- `ids`: a hash, room -> the last message id given out in that room.
- `messages:ROOM`: a stream of the room's messages. Message N has the stream id `N-0`, so
  stream order is id order, and the entry holds the message's wire JSON (field `j`, first)
  as every process sends it: it is serialised once, here, for every process; and the epoch
  it was stored in (field `E`), so that no process hands a message of another epoch to
  clients welcomed in its own.
- `presence:ROOM`: a stream of joins and leaves (fields `o` the process of the one who
  joined or left, `t` join or leave, `k` the name's key, `n` the name, `g` g for a guest or
  a for an account, `e` the event's wire JSON; `s` 1 on a leave that process `o` tells its
  own clients too), bounded; and of moves (`t` move, `f` the process the name moved from):
  a newer connection of the same client, in process `o`, took a guest's name over with
  its token. It carries the room's other events too, to every process that reads the room:
  changes of stored messages (`t` change, `c` edit, delete or reactions, `i` the message's
  id, `j` its wire JSON now) and people typing (`t` typing, `k` the typist's name key, `e`
  the event), which are never stored anywhere else.
- `changes:ROOM`: a sorted set of the wire JSON, as it is now, of each message of the room
  that changed since it was stored (edited, reacted to, deleted: a tombstone), scored by
  its id; reads of `messages:ROOM` take a message from here when it is here. A deleted
  message's entry is deleted from `messages:ROOM` (XDEL: a stream entry cannot be
  rewritten), so its text is gone, and so are the entries of its earlier changes in
  `presence:ROOM`; its tombstone here fills the hole. Trimming the stream (retention) takes
  the changes of what it trimmed along.
- `reactions:ROOM\\nID`: a hash, "EMOJI\\nKEY" -> 1 for each reaction a person (by name key)
  gives message ID: one person counts once per emoji.
- `reads:KEY`: a sorted set, room -> the highest message id the account KEY read there.
- `names:ROOM`: a hash, name key -> "HOLDER\\nJOIN-ENTRY-ID\\nKIND\\nNAME": who is online;
  HOLDER is the process of a guest's name (KIND g), or `*` for an account's (KIND a),
  whose holders are the set `holders:ROOM\\nKEY`: an account may be in a room from several
  processes at once. Changed only together with an entry of `presence:ROOM`, so a copy of
  it and a position in that stream always fit together.
- `tokens:ROOM`: a hash, name key -> SHA-256 (hex) of the token of the connection holding it,
  which lets a newer connection of the same client, in any process, take the name over.
- `nodes`: a sorted set, process -> the time (Redis's clock, ms) its presence expires
  unless it sends another heartbeat.
- `notices`: a stream of what concerns every process's connections (`o` the process that
  wrote it, `k` its kind, `b` its fields as JSON), bounded (app/backends/base.py, `notify`).
- `users`, `session:HASH`, `sessions-of:KEY`: accounts and sessions (accounts.py).
- `rules:ROOM`, `moderators:ROOM`, `invited:ROOM`, `sanctions:SCOPE`, `audit-ids`, `audit`,
  `audit:ROOM`, `moderation-secret`: rooms' rules, bans and mutes, the audit log and the key
  of guests' address hashes (moderation.py).
- `node:PROCESS`: a hash, "ROOM\\nKEY" -> the leave event of each name the process holds, so
  that whoever finds the process dead can announce the leaves for it.
- `account-nodes:KEY`, `node-accounts:PROCESS`, `inbox:KEY`, `dm-ids`, `dm:CONVERSATION`,
  `conversations:KEY`, `buddies:KEY`, `watchers:KEY`, `blocks:KEY`, `away`,
  `away-answered:KEY`: direct messages, buddy lists and away messages (direct_scripts.py).

Room names and screen names are printable (app/core/names.py): they never hold a newline, which
therefore separates the parts of a field. The scripts compute key names from `PREFIX`
rather than receiving them in KEYS: this backend targets one Redis (with replicas if you
like), not Redis Cluster.
"""

from __future__ import annotations

from app.backends.redis.direct_scripts import ACCOUNTS

PREFIX = "chatroom:"

# The time, once per call: milliseconds on Redis's clock, the one clock every process shares.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# Names: whether an entry of `names:ROOM` is held by `process` (a guest's, by its one
# process; an account's, by any process in its set of holders); letting a name go, with its
# leave announced in the name of the process that held it; a process letting go of its hold
# of a name, which goes when nobody holds it any more; and of every name it holds.
_NAMES = """
local function shared(owner)
  return string.sub(owner, 1, 2) == '*\\n'
end

local function holders_of(prefix, room, key)
  return prefix .. 'holders:' .. room .. '\\n' .. key
end

local function held_by(prefix, room, key, owner, process)
  if not owner then
    return false
  end
  if shared(owner) then
    return redis.call('SISMEMBER', holders_of(prefix, room, key), process) == 1
  end
  return string.sub(owner, 1, #process + 1) == process .. '\\n'
end

-- `s` says whether every process tells its clients, the writer too: an account's leave,
-- which the process that let go last learns of only here.
local function let_go(prefix, room, key, process, leave, presence_maxlen, everyone)
  redis.call('HDEL', prefix .. 'names:' .. room, key)
  redis.call('HDEL', prefix .. 'tokens:' .. room, key)
  redis.call('DEL', holders_of(prefix, room, key))
  redis.call('XADD', prefix .. 'presence:' .. room, 'MAXLEN', '~', presence_maxlen, '*',
             'o', process, 't', 'leave', 'k', key, 'e', leave, 's', everyone and '1' or '0')
end

local function release(prefix, room, key, process, leave, presence_maxlen)
  local owner = redis.call('HGET', prefix .. 'names:' .. room, key)
  if not leave or not held_by(prefix, room, key, owner, process) then
    return 0
  end
  if shared(owner) then
    redis.call('SREM', holders_of(prefix, room, key), process)
    if redis.call('SCARD', holders_of(prefix, room, key)) > 0 then
      return 0
    end
    let_go(prefix, room, key, process, leave, presence_maxlen, true)
  else
    let_go(prefix, room, key, process, leave, presence_maxlen, false)
  end
  return 1
end

-- Let go of every name `process` holds, with their leaves, and forget what it held.
local function let_go_all(prefix, process, presence_maxlen)
  local node = prefix .. 'node:' .. process
  local held = redis.call('HGETALL', node)
  for i = 1, #held, 2 do
    local room, key = string.match(held[i], '^(.-)\\n(.*)$')
    release(prefix, room, key, process, held[i + 1], presence_maxlen)
  end
  redis.call('DEL', node)
end
"""

# Announce the leaves of every name process `gone` holds, and let go of its accounts (their
# buddies' watchers hear that they went offline, if no other process has them), and forget
# it. The leaves are written in its name (`o`): every process but that one, should it be
# alive after all (taken for dead while it could not reach Redis), tells its clients.
_SWEEP = (
    ACCOUNTS
    + """
local function sweep(prefix, gone, presence_maxlen)
  let_go_all(prefix, gone, presence_maxlen)
  depart_accounts(prefix, gone)
  redis.call('ZREM', prefix .. 'nodes', gone)
end
"""
)

# Changed messages (`changes:ROOM`): a message's JSON now, and the pieces of it that a change
# keeps (its time, its reactions), read from the end, where they are (app/core/messages.py);
# a change stored and told to every process that reads the room; the changes of what
# retention trimmed away, let go with it.
_CHANGES = """
local function now_of(prefix, room, id)
  local changed = redis.call('ZRANGEBYSCORE', prefix .. 'changes:' .. room, id, id)
  if changed[1] then
    return changed[1]
  end
  local entry = redis.call('XRANGE', prefix .. 'messages:' .. room, id .. '-0', id .. '-0')
  if entry[1] then
    return entry[1][2][2]
  end
  return nil
end

local function gone(json)
  return not json or string.find(json, ',"deleted":true,"ts":%d+}$') ~= nil
end

-- The JSON up to its reactions (without them), its reactions, and its time.
local function pieces(json)
  local ts = string.match(json, ',"ts":(%d+)}$')
  local head = string.sub(json, 1, #json - #ts - 7)
  local reactions = string.match(head, ',"reactions":{[^{}]*}$') or ''
  return string.sub(head, 1, #head - #reactions), reactions, ts
end

local function reactions_key(prefix, room, id)
  return prefix .. 'reactions:' .. room .. '\\n' .. id
end

-- The earlier changes of message ID that the (bounded) presence stream still carries, each
-- with the message's text as it was then: gone too, once it is deleted.
local function forget_changes(prefix, room, id)
  local presence = prefix .. 'presence:' .. room
  for _, entry in ipairs(redis.call('XRANGE', presence, '-', '+')) do
    local fields = entry[2]
    if fields[4] == 'change' and fields[8] == id then
      redis.call('XDEL', presence, entry[1])
    end
  end
end

-- Fields of a change's entry, in this order (`forget_changes` reads them by place).
local function change(prefix, process, room, id, kind, json, presence_maxlen)
  local changes = prefix .. 'changes:' .. room
  redis.call('ZREMRANGEBYSCORE', changes, id, id)
  redis.call('ZADD', changes, id, json)
  redis.call('XADD', prefix .. 'presence:' .. room, 'MAXLEN', '~', presence_maxlen, '*',
             'o', process, 't', 'change', 'c', kind, 'i', id, 'j', json)
end

-- UPTO: a score bound, such as '(42' (below 42) or '41' (up to 41).
local function trimmed(prefix, room, upto)
  local changes = prefix .. 'changes:' .. room
  local old = redis.call('ZRANGEBYSCORE', changes, '-inf', upto, 'WITHSCORES')
  for i = 2, #old, 2 do
    redis.call('DEL', reactions_key(prefix, room, old[i]))
  end
  redis.call('ZREMRANGEBYSCORE', changes, '-inf', upto)
end

local function first_id(stream)
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  return first and string.match(first[1], '^(%d+)-')
end
"""

WRITE = (
    _NOW
    + _NAMES
    + _CHANGES
    + """
-- ARGV: prefix, process, messages kept per room (0: all), presence entries kept per room,
-- the start and the end of a message's JSON (app/core/messages.py), the epoch the process is
-- in, then operations, applied in order:
--   m ROOM MIDDLE SEEN                a message: MIDDLE is its JSON between the id and the time;
--                                     SEEN the room's highest id the process knows of
--   c ROOM KEY NAME JOIN LEAVE HASH KIND   claim a name; JOIN and LEAVE are the events to
--                                     use, HASH that of the claiming connection's token,
--                                     KIND g for a guest's name (one process holds it) or a
--                                     for an account's (any process may hold it too)
--   r ROOM KEY LEAVE                  this process lets go of a name it holds (LEAVE empty:
--                                     the leave it was stored with), which goes once nobody does
--   t ROOM KEY HASH                   a newer connection here holds the name: its token's hash
--   o ROOM KEY HASH NEWHASH           take over a guest's name another process holds for a
--                                     connection whose token has HASH; NEWHASH is the newer one's
--   g -                               let go of every name this process holds (a new epoch)
--   n KIND BODY                       a notice for every process (Backend.notify), in `notices`
--   e ROOM ID CORE EDITED             edit message ID: CORE is its JSON from the room to the text
--                                     (wire_core), EDITED the edit's time
--   d ROOM ID CORE                    delete message ID: CORE as it stays (its text empty)
--   x ROOM ID KEY EMOJI ORDER         toggle KEY's reaction EMOJI to message ID; ORDER lists the
--                                     reactions, in their order, one a line
--   y ROOM KEY EVENT                  someone is typing: EVENT for the room, but KEY's own
-- Nothing runs, and the error says why, if the epoch is not the process's (STALE_EPOCH) or a
-- room's last id is below what the process knows of (BEHIND: Redis came back with older data).
-- Returns {ts, one result per operation}: a message's id; the name's join entry (its id in
-- `presence:ROOM`; an account's that another process holds too: the entry of its first
-- join), or 0, for a claim; 1 or 0 for a release or new token; {the name as it is known,
-- its join entry}, or 0, for a take-over; a changed message's JSON now, or 0 if it is
-- deleted or gone, for a change; 1 for the rest.
local prefix, process = ARGV[1], ARGV[2]
local maxlen, presence_maxlen = tonumber(ARGV[3]), ARGV[4]
local json_head, json_end, epoch = ARGV[5], ARGV[6], ARGV[7]
local FIRST, STEP = 8, {m = 4, c = 8, r = 4, t = 4, o = 5, g = 2, n = 3, e = 5, d = 4, x = 6, y = 4}
if redis.call('GET', prefix .. 'epoch') ~= epoch then
  return redis.error_reply('STALE_EPOCH the chat is no longer in epoch ' .. epoch)
end
local i = FIRST
while i <= #ARGV do
  local op, room = ARGV[i], ARGV[i + 1]
  if STEP[op] == nil then
    return redis.error_reply('unknown operation ' .. tostring(op))
  end
  if op == 'm' and tonumber(redis.call('HGET', prefix .. 'ids', room) or '0') < tonumber(ARGV[i + 3]) then
    return redis.error_reply('BEHIND room ' .. room .. ' went back in time')
  end
  i = i + STEP[op]
end
local ts = string.format('%d', now)
local results = {ts}
i = FIRST
while i <= #ARGV do
  local op, room = ARGV[i], ARGV[i + 1]
  if op == 'm' then
    local id = string.format('%d', redis.call('HINCRBY', prefix .. 'ids', room, 1))
    local json = json_head .. id .. ARGV[i + 2] .. ts .. json_end
    local stream = prefix .. 'messages:' .. room
    if maxlen > 0 then
      -- Trimming may take messages that changed: their changes go with them.
      local first = redis.call('EXISTS', prefix .. 'changes:' .. room) == 1 and first_id(stream)
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id .. '-0', 'j', json, 'E', epoch)
      if first and first_id(stream) ~= first then
        trimmed(prefix, room, '(' .. first_id(stream))
      end
    else
      redis.call('XADD', stream, id .. '-0', 'j', json, 'E', epoch)
    end
    results[#results + 1] = tonumber(id)
  elseif op == 'c' then
    local key, name, kind = ARGV[i + 2], ARGV[i + 3], ARGV[i + 7]
    local names = prefix .. 'names:' .. room
    local owner = redis.call('HGET', names, key)
    if owner then
      if kind == 'a' and shared(owner) then
        redis.call('SADD', holders_of(prefix, room, key), process)
        redis.call('HSET', prefix .. 'node:' .. process, room .. '\\n' .. key, ARGV[i + 5])
        results[#results + 1] = string.match(owner, '^.-\\n(.-)\\n')
      else
        results[#results + 1] = 0
      end
    else
      local entry = redis.call('XADD', prefix .. 'presence:' .. room, 'MAXLEN', '~', presence_maxlen, '*',
                               'o', process, 't', 'join', 'k', key, 'n', name, 'g', kind, 'e', ARGV[i + 4])
      local holder = process
      if kind == 'a' then
        holder = '*'
        redis.call('SADD', holders_of(prefix, room, key), process)
      end
      redis.call('HSET', names, key, holder .. '\\n' .. entry .. '\\n' .. kind .. '\\n' .. name)
      redis.call('HSET', prefix .. 'tokens:' .. room, key, ARGV[i + 6])
      redis.call('HSET', prefix .. 'node:' .. process, room .. '\\n' .. key, ARGV[i + 5])
      results[#results + 1] = entry
    end
  elseif op == 'r' then
    local key = ARGV[i + 2]
    local node, leave = prefix .. 'node:' .. process, ARGV[i + 3]
    if leave == '' then
      leave = redis.call('HGET', node, room .. '\\n' .. key)
    end
    redis.call('HDEL', node, room .. '\\n' .. key)
    results[#results + 1] = release(prefix, room, key, process, leave, presence_maxlen)
  elseif op == 't' then
    local key = ARGV[i + 2]
    local owner = redis.call('HGET', prefix .. 'names:' .. room, key)
    if held_by(prefix, room, key, owner, process) then
      redis.call('HSET', prefix .. 'tokens:' .. room, key, ARGV[i + 3])
      results[#results + 1] = 1
    else
      results[#results + 1] = 0
    end
  elseif op == 'o' then
    local key = ARGV[i + 2]
    local names, tokens = prefix .. 'names:' .. room, prefix .. 'tokens:' .. room
    local owner = redis.call('HGET', names, key)
    local from, entry, kind, name, leave
    if owner then
      from, entry, kind, name = string.match(owner, '^(.-)\\n(.-)\\n(.-)\\n(.*)$')
      leave = redis.call('HGET', prefix .. 'node:' .. from, room .. '\\n' .. key)
    end
    if leave and kind == 'g' and from ~= process and redis.call('HGET', tokens, key) == ARGV[i + 3] then
      -- The join entry stays: the name keeps its place among the others.
      redis.call('HSET', names, key, process .. '\\n' .. entry .. '\\ng\\n' .. name)
      redis.call('HSET', tokens, key, ARGV[i + 4])
      redis.call('HDEL', prefix .. 'node:' .. from, room .. '\\n' .. key)
      redis.call('HSET', prefix .. 'node:' .. process, room .. '\\n' .. key, leave)
      redis.call('XADD', prefix .. 'presence:' .. room, 'MAXLEN', '~', presence_maxlen, '*',
                 'o', process, 't', 'move', 'k', key, 'n', name, 'f', from)
      results[#results + 1] = {name, entry}
    else
      results[#results + 1] = 0
    end
  elseif op == 'g' then
    let_go_all(prefix, process, presence_maxlen)
    results[#results + 1] = 1
  elseif op == 'n' then
    -- ROOM here is the notice's kind; its body follows.
    redis.call('XADD', prefix .. 'notices', 'MAXLEN', '~', 1000, '*', 'o', process, 'k', room, 'b', ARGV[i + 2])
    results[#results + 1] = 1
  elseif op == 'e' or op == 'd' or op == 'x' then
    local id = ARGV[i + 2]
    local now = now_of(prefix, room, id)
    if gone(now) then
      results[#results + 1] = 0
    else
      local head, reactions, stamp = pieces(now)
      local json, kind
      if op == 'e' then
        kind = 'edit'
        local edited = ',"edited_ts":' .. ARGV[i + 4]
        json = json_head .. id .. ARGV[i + 3] .. edited .. reactions .. ',"ts":' .. stamp .. json_end
      elseif op == 'd' then
        kind = 'delete'
        json = json_head .. id .. ARGV[i + 3] .. ',"deleted":true,"ts":' .. stamp .. json_end
        redis.call('XDEL', prefix .. 'messages:' .. room, id .. '-0')
        redis.call('DEL', reactions_key(prefix, room, id))
        forget_changes(prefix, room, id)
      else
        kind = 'reactions'
        local given, field = reactions_key(prefix, room, id), ARGV[i + 4] .. '\\n' .. ARGV[i + 3]
        if redis.call('HDEL', given, field) == 0 then
          redis.call('HSET', given, field, 1)
        end
        local counts = {}
        for _, each in ipairs(redis.call('HKEYS', given)) do
          local emoji = string.match(each, '^(.-)\\n')
          counts[emoji] = (counts[emoji] or 0) + 1
        end
        local parts = {}
        for emoji in string.gmatch(ARGV[i + 5], '[^\\n]+') do
          if counts[emoji] then
            parts[#parts + 1] = '"' .. emoji .. '":' .. counts[emoji]
          end
        end
        reactions = #parts > 0 and ',"reactions":{' .. table.concat(parts, ',') .. '}' or ''
        json = head .. reactions .. ',"ts":' .. stamp .. json_end
      end
      change(prefix, process, room, id, kind, json, presence_maxlen)
      results[#results + 1] = json
    end
  elseif op == 'y' then
    redis.call('XADD', prefix .. 'presence:' .. room, 'MAXLEN', '~', presence_maxlen, '*',
               'o', process, 't', 'typing', 'k', ARGV[i + 2], 'e', ARGV[i + 3])
    results[#results + 1] = 1
  end
  i = i + STEP[op]
end
return results
"""
)

BEAT = (
    _NOW
    + _NAMES
    + _SWEEP
    + """
-- ARGV: prefix, process, presence lifetime (ms), presence entries kept per room.
-- Extends this process's presence, then announces the leaves of processes whose presence
-- expired. Returns {1 if this process was not known (its first beat, or it had been taken
-- for dead and swept: it must claim its names again), the epoch (false if Redis lost it)}.
local prefix, process, ttl, presence_maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local nodes = prefix .. 'nodes'
local absent = redis.call('ZADD', nodes, now + ttl, process)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, 16)) do
  sweep(prefix, gone, presence_maxlen)
end
return {absent, redis.call('GET', prefix .. 'epoch')}
"""
)

EXPIRE = (
    _CHANGES
    + """
-- ARGV: prefix, room, cutoff (ms on Redis's clock), entries to look at. Trims the room's
-- oldest messages stamped before the cutoff, at most that many; ids follow time, so they
-- are the first ones of the stream. `ids` keeps the last id given out, so ids keep
-- increasing even when every message goes. The changes of the trimmed messages go too (a
-- tombstone goes with the messages around it). Returns {messages deleted, 1 if more may be due}.
local stream = ARGV[1] .. 'messages:' .. ARGV[2]
local cutoff, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', count)
local old = 0
for _, entry in ipairs(entries) do
  local ts = tonumber(string.match(entry[2][2], '"ts":(%d+)}$'))
  if ts >= cutoff then
    break
  end
  old = old + 1
end
if old == 0 then
  return {0, 0}
end
local last = string.match(entries[old][1], '^(%d+)-')
redis.call('XTRIM', stream, 'MINID', last .. '-1')
trimmed(ARGV[1], ARGV[2], last)
return {old, old == count and 1 or 0}
"""
)

SWITCH = """
-- ARGV: prefix, the epoch the process is in, a new epoch, 1 if Redis lost data of the one it is in.
-- A process that found Redis without an epoch (it lost everything) or, with `1`, with data
-- older than its own, names a new epoch; whoever comes second finds one named already.
-- Returns the epoch now.
local key = ARGV[1] .. 'epoch'
local current = redis.call('GET', key)
if not current or (current == ARGV[2] and ARGV[4] == '1') then
  redis.call('SET', key, ARGV[3])
  return ARGV[3]
end
return current
"""

GOODBYE = (
    _NAMES
    + _SWEEP
    + """
-- ARGV: prefix, process, presence entries kept per room. A process that stops says goodbye:
-- the leaves of whatever it still holds, at once rather than when its presence expires.
sweep(ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)
