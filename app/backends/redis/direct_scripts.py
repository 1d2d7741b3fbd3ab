"""The Lua of direct messages, buddy lists and away messages (app/backends/redis/direct.py).

Keys, under the prefix, besides scripts.py's (name keys are printable: a newline never occurs
in one, nor in a name, and separates the parts of a value):

- `account-nodes:KEY`: a set of the processes that have a connection of account KEY; the
  account is online while it is not empty.
- `node-accounts:PROCESS`: a hash, KEY -> name, of the accounts PROCESS has connections of,
  so that whoever finds the process dead (scripts.BEAT) lets them go for it.
- `inbox:KEY`: a stream of what happens to account KEY (field `t` what: `d` a direct message,
  `s` a buddy as the account sees it, `+` the same for a buddy just added, `a` a buddy went
  away or came back, `x` a buddy taken off the list, `b` and `u` someone blocked or unblocked;
  `k` and `n` the other account's key and name, `o` 1 if it is online, `a` its away message
  as JSON or empty; a direct message: `f` and `r` the sender's and recipient's keys, `j` its
  wire JSON). Written only while the account is online, read by the processes that have a
  connection of it, deleted once it is offline; bounded.
- `dm-ids`: a hash, conversation (the two keys, sorted, joined by a newline) -> its last id.
- `dm:CONVERSATION`: a stream of its messages, message N as entry `N-0` holding its wire JSON
  (`j`) and the epoch it was stored in (`E`), as a room's.
- `conversations:KEY`: a hash, the other's key -> "LAST-ID\\nTS\\nNAME": the account's conversations.
- `buddies:KEY`: a hash, buddy key -> name; `watchers:KEY`: a set of those that have KEY on
  their list (kept with it); `blocks:KEY`: a hash, blocked key -> name.
- `away`: a hash, KEY -> "NAME\\nMESSAGE-JSON" of every account away now;
  `away-answered:KEY`: a set of those that got KEY's away message in this away period.
"""

from __future__ import annotations

INBOX_MAXLEN = 1_000  # entries kept in an account's inbox (approximately)
NOTICES_MAXLEN = 1_000  # as the WRITE script keeps the notices stream

# Shared with scripts.BEAT and scripts.GOODBYE, which let go of a dead process's accounts.
ACCOUNTS = f"""
local function online(prefix, key)
  return redis.call('SCARD', prefix .. 'account-nodes:' .. key) > 0
end

-- An event for account `key`, for the processes that read it: none, if it is offline.
local function to_inbox(prefix, key, ...)
  if online(prefix, key) then
    redis.call('XADD', prefix .. 'inbox:' .. key, 'MAXLEN', '~', {INBOX_MAXLEN}, '*', ...)
  end
end

-- How `watcher` sees `subject`: online ('1' or '0') and its away message's JSON ('' if none).
-- Offline to a watcher it blocks, whatever it is.
local function seen_by(prefix, subject, watcher)
  if not online(prefix, subject) or redis.call('HEXISTS', prefix .. 'blocks:' .. subject, watcher) == 1 then
    return '0', ''
  end
  local away = redis.call('HGET', prefix .. 'away', subject)
  if away then
    return '1', string.match(away, '^.-\\n(.*)$')
  end
  return '1', ''
end

local function tell_watchers(prefix, subject, name)
  for _, watcher in ipairs(redis.call('SMEMBERS', prefix .. 'watchers:' .. subject)) do
    local on, away = seen_by(prefix, subject, watcher)
    to_inbox(prefix, watcher, 't', 's', 'k', subject, 'n', name, 'o', on, 'a', away)
  end
end

local function notice(prefix, process, kind, body)
  redis.call('XADD', prefix .. 'notices', 'MAXLEN', '~', {NOTICES_MAXLEN}, '*', 'o', process, 'k', kind, 'b', body)
end

-- `process` has a connection of account `key`: online, if it was not.
local function arrive_account(prefix, process, key, name)
  redis.call('HSET', prefix .. 'node-accounts:' .. process, key, name)
  local nodes = prefix .. 'account-nodes:' .. key
  if redis.call('SADD', nodes, process) == 1 and redis.call('SCARD', nodes) == 1 then
    tell_watchers(prefix, key, name)
  end
end

-- `process` has no connection of account `key` left: once nobody has, it is offline, not away,
-- and its inbox goes. Returns its name if it was away (every process hears it came back).
local function depart_account(prefix, process, key)
  local node = prefix .. 'node-accounts:' .. process
  local name = redis.call('HGET', node, key)
  redis.call('HDEL', node, key)
  local nodes = prefix .. 'account-nodes:' .. key
  if redis.call('SREM', nodes, process) == 0 or redis.call('SCARD', nodes) > 0 then
    return false
  end
  redis.call('DEL', prefix .. 'inbox:' .. key, prefix .. 'away-answered:' .. key)
  local away = redis.call('HGET', prefix .. 'away', key)
  redis.call('HDEL', prefix .. 'away', key)
  if away and not name then
    name = string.match(away, '^(.-)\\n')
  end
  name = name or key
  tell_watchers(prefix, key, name)
  if not away then
    return false
  end
  notice(prefix, process, 'away',
         '{{"key":' .. cjson.encode(key) .. ',"name":' .. cjson.encode(name) .. ',"message":null}}')
  return name
end

local function depart_accounts(prefix, process)
  for _, key in ipairs(redis.call('HKEYS', prefix .. 'node-accounts:' .. process)) do
    depart_account(prefix, process, key)
  end
  redis.call('DEL', prefix .. 'node-accounts:' .. process)
end
"""

DIRECT = (
    ACCOUNTS
    + """
-- ARGV: prefix, process, the epoch the process is in ('' for none: an operator's command),
-- the head and the end of a direct message's JSON, the tail of an automatic reply's before its
-- time, then operations, applied in order:
--   arrive KEY NAME        the process has a connection of the account now: its snapshot
--   load KEY               the account's snapshot alone
--   depart KEY             the process has none left: its name if that ended an away period
--   sync KEYS NAMES        the accounts the process has connections of (joined by newlines),
--                          after it lost Redis or was taken for dead: {key, name} of those that
--                          ended an away period
--   dm CONVERSATION FROM TO FROMNAME TONAME MIDDLE AUTOHEAD SEEN
--                          a direct message (MIDDLE: its JSON between id and time); then,
--                          if TO is away and has not answered FROM in this away period, its
--                          away message (AUTOHEAD: the JSON before its text); SEEN: the
--                          conversation's last id as the process knows it.
--                          {id, ts, auto id or 0, away JSON or ''}, or {0, why} if refused
--   away KEY NAME MESSAGEJSON NOTICE   away with that message (a new away period if it differs)
--   back KEY NAME NOTICE   back
--   buddy OWNER KEY NAME LIMIT      put KEY on OWNER's list: 0 if it holds LIMIT others
--   unbuddy OWNER KEY NAME          take it off
--   block OWNER OWNERNAME KEY NAME LIMIT   0 if OWNER blocks LIMIT others
--   unblock OWNER OWNERNAME KEY NAME
--   forget KEY             the account was removed: its conversations, lists, place on lists
-- A snapshot is {the inbox's last entry, {key, name, online, away JSON} of each buddy,
-- {key, name} of each blocked, {key, "LAST\\nTS\\nNAME"} of each conversation}.
-- Nothing runs, and the error says why, if the epoch is not the process's (STALE_EPOCH) or a
-- conversation's last id is below what the process knows of (BEHIND: Redis lost data).
local prefix, process, epoch = ARGV[1], ARGV[2], ARGV[3]
local dm_head, dm_end, auto_tail = ARGV[4], ARGV[5], ARGV[6]
local FIRST = 7
local STEP = {arrive = 3, load = 2, depart = 2, sync = 3, dm = 9, away = 5, back = 4, buddy = 5, unbuddy = 4,
              block = 6, unblock = 5, forget = 2}
if epoch ~= '' and redis.call('GET', prefix .. 'epoch') ~= epoch then
  return redis.error_reply('STALE_EPOCH the chat is no longer in epoch ' .. epoch)
end
local i = FIRST
while i <= #ARGV do
  local op = ARGV[i]
  if STEP[op] == nil then
    return redis.error_reply('unknown operation ' .. tostring(op))
  end
  if op == 'dm' and tonumber(redis.call('HGET', prefix .. 'dm-ids', ARGV[i + 1]) or '0') < tonumber(ARGV[i + 8]) then
    return redis.error_reply('BEHIND a conversation went back in time')
  end
  i = i + STEP[op]
end

local clock = redis.call('TIME')
local ts = string.format('%d', tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000))

local function split(text)
  local parts = {}
  for part in string.gmatch(text, '[^\\n]+') do
    parts[#parts + 1] = part
  end
  return parts
end

local function snapshot(key)
  local latest = redis.call('XREVRANGE', prefix .. 'inbox:' .. key, '+', '-', 'COUNT', 1)
  local buddies = {}
  local listed = redis.call('HGETALL', prefix .. 'buddies:' .. key)
  for j = 1, #listed, 2 do
    local on, away = seen_by(prefix, listed[j], key)
    buddies[#buddies + 1] = {listed[j], listed[j + 1], on, away}
  end
  return {latest[1] and latest[1][1] or '0-0', buddies, redis.call('HGETALL', prefix .. 'blocks:' .. key),
          redis.call('HGETALL', prefix .. 'conversations:' .. key)}
end

local function store(conversation, sender, recipient, sender_name, recipient_name, head, text_tail)
  local id = string.format('%d', redis.call('HINCRBY', prefix .. 'dm-ids', conversation, 1))
  local json = dm_head .. id .. head .. text_tail .. ts .. dm_end
  redis.call('XADD', prefix .. 'dm:' .. conversation, id .. '-0', 'j', json, 'E', epoch)
  redis.call('HSET', prefix .. 'conversations:' .. sender, recipient, id .. '\\n' .. ts .. '\\n' .. recipient_name)
  redis.call('HSET', prefix .. 'conversations:' .. recipient, sender, id .. '\\n' .. ts .. '\\n' .. sender_name)
  for _, owner in ipairs({sender, recipient}) do
    to_inbox(prefix, owner, 't', 'd', 'f', sender, 'r', recipient, 'j', json)
  end
  return id
end

local function add_to(list, key, name, limit)
  if redis.call('HEXISTS', list, key) == 0 and redis.call('HLEN', list) >= limit then
    return false
  end
  redis.call('HSET', list, key, name)
  return true
end

local function forget(key)
  for _, other in ipairs(redis.call('HKEYS', prefix .. 'conversations:' .. key)) do
    redis.call('HDEL', prefix .. 'conversations:' .. other, key)
    -- Its last id stays in `dm-ids`: ids keep increasing if the two names ever talk again.
    redis.call('DEL', prefix .. 'dm:' .. key .. '\\n' .. other, prefix .. 'dm:' .. other .. '\\n' .. key)
  end
  for _, buddy in ipairs(redis.call('HKEYS', prefix .. 'buddies:' .. key)) do
    redis.call('SREM', prefix .. 'watchers:' .. buddy, key)
  end
  for _, watcher in ipairs(redis.call('SMEMBERS', prefix .. 'watchers:' .. key)) do
    local name = redis.call('HGET', prefix .. 'buddies:' .. watcher, key)
    redis.call('HDEL', prefix .. 'buddies:' .. watcher, key)
    to_inbox(prefix, watcher, 't', 'x', 'k', key, 'n', name or key)
  end
  redis.call('DEL', prefix .. 'conversations:' .. key, prefix .. 'buddies:' .. key, prefix .. 'watchers:' .. key,
             prefix .. 'blocks:' .. key, prefix .. 'away-answered:' .. key)
end

local function tell_away(key, name, away)
  for _, watcher in ipairs(redis.call('SMEMBERS', prefix .. 'watchers:' .. key)) do
    if redis.call('HEXISTS', prefix .. 'blocks:' .. key, watcher) == 0 then
      to_inbox(prefix, watcher, 't', 'a', 'k', key, 'n', name, 'a', away)
    end
  end
end

local results = {}
i = FIRST
while i <= #ARGV do
  local op, a, b, c, d, e, f, g, h = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
                                     ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local result = 1
  if op == 'arrive' then
    arrive_account(prefix, process, a, b)
    result = snapshot(a)
  elseif op == 'load' then
    result = snapshot(a)
  elseif op == 'depart' then
    result = depart_account(prefix, process, a) or 0
  elseif op == 'sync' then
    local wanted, names = split(a), split(b)
    local keep = {}
    for j, key in ipairs(wanted) do
      keep[key] = names[j]
    end
    result = {}
    for _, key in ipairs(redis.call('HKEYS', prefix .. 'node-accounts:' .. process)) do
      if keep[key] == nil then
        local name = depart_account(prefix, process, key)
        if name then
          result[#result + 1] = key
          result[#result + 1] = name
        end
      end
    end
    for key, name in pairs(keep) do
      arrive_account(prefix, process, key, name)
    end
  elseif op == 'dm' then
    -- a conversation, b from, c to, d from's name, e to's name, f middle, g auto head
    if redis.call('HEXISTS', prefix .. 'blocks:' .. c, b) == 1 then
      result = {0, 'blocked'}
    elseif redis.call('HEXISTS', prefix .. 'blocks:' .. b, c) == 1 then
      result = {0, 'blocking'}
    else
      local id = store(a, b, c, d, e, f, '')
      local away = redis.call('HGET', prefix .. 'away', c)
      result = {tonumber(id), tonumber(ts), 0, ''}
      if away and redis.call('SADD', prefix .. 'away-answered:' .. c, b) == 1 then
        local message = string.match(away, '^.-\\n(.*)$')
        result[3] = tonumber(store(a, c, b, e, d, g, message .. auto_tail))
        result[4] = message
      end
    end
  elseif op == 'away' then
    -- a key, b name, c message JSON, d notice
    local value = b .. '\\n' .. c
    if redis.call('HGET', prefix .. 'away', a) == value then
      result = 0
    else
      redis.call('HSET', prefix .. 'away', a, value)
      redis.call('DEL', prefix .. 'away-answered:' .. a)
      tell_away(a, b, c)
      notice(prefix, process, 'away', d)
    end
  elseif op == 'back' then
    if redis.call('HDEL', prefix .. 'away', a) == 0 then
      result = 0
    else
      redis.call('DEL', prefix .. 'away-answered:' .. a)
      tell_away(a, b, '')
      notice(prefix, process, 'away', c)
    end
  elseif op == 'buddy' then
    -- a owner, b key, c name, d limit
    if add_to(prefix .. 'buddies:' .. a, b, c, tonumber(d)) then
      redis.call('SADD', prefix .. 'watchers:' .. b, a)
      local on, away = seen_by(prefix, b, a)
      to_inbox(prefix, a, 't', '+', 'k', b, 'n', c, 'o', on, 'a', away)
    else
      result = 0
    end
  elseif op == 'unbuddy' then
    local had = redis.call('HGET', prefix .. 'buddies:' .. a, b)
    redis.call('HDEL', prefix .. 'buddies:' .. a, b)
    redis.call('SREM', prefix .. 'watchers:' .. b, a)
    to_inbox(prefix, a, 't', 'x', 'k', b, 'n', had or c)
  elseif op == 'block' then
    -- a owner, b owner's name, c key, d name, e limit
    if add_to(prefix .. 'blocks:' .. a, c, d, tonumber(e)) then
      if redis.call('SISMEMBER', prefix .. 'watchers:' .. a, c) == 1 then
        to_inbox(prefix, c, 't', 's', 'k', a, 'n', b, 'o', '0', 'a', '')
      end
      to_inbox(prefix, a, 't', 'b', 'k', c, 'n', d)
    else
      result = 0
    end
  elseif op == 'unblock' then
    local had = redis.call('HGET', prefix .. 'blocks:' .. a, c)
    redis.call('HDEL', prefix .. 'blocks:' .. a, c)
    if had and redis.call('SISMEMBER', prefix .. 'watchers:' .. a, c) == 1 then
      local on, away = seen_by(prefix, a, c)
      to_inbox(prefix, c, 't', 's', 'k', a, 'n', b, 'o', on, 'a', away)
    end
    to_inbox(prefix, a, 't', 'u', 'k', c, 'n', had or d)
  elseif op == 'forget' then
    forget(a)
  end
  results[#results + 1] = result
  i = i + STEP[op]
end
return results
"""
)
