"""Export and import of the Redis backend (keys in scripts.py's docstring).

The snapshot: one script reads, at one instant, every room's last id (`ids`), the messages
that changed since they were stored (`changes:ROOM`: edited, reacted to, tombstones), who
gave each reaction (`reactions:ROOM\nID`), the accounts, their read positions (`reads:KEY`),
the rooms' rules, the sanctions, the audit log's last id and the hashing key, and every
conversation's last id (`dm-ids`), the accounts' lists of conversations, buddies and
blocks; then each room's stream and each conversation's is read in pages up to the id it
had at that instant, each message taken from the changes of that instant where it is there
(as history reads do, history.py), and the audit log up to its last entry then. A change
made later touches only `changes:ROOM`, never the stream's entry, so the export is the
chat as it was at that instant, except for messages that retention (CHAT_RETENTION_*)
trims, or a deletion takes out of the stream, meanwhile, which may be missing from it. The
script's reply holds every changed message of every room: a few hundred bytes each.
Servers go on meanwhile: a stream read is a range read, and the script takes a few
milliseconds (it lists the keys of rules, sanctions and lists: a scan of the key space).

An import writes under the chat's epoch (`RedisBackend.open` joins it, or names the first
one): each page of messages is one script that appends them with their ids (stream id
`N-0`, their epoch in `E`), each as it is now (edited, with its reaction counts), with who
gave its reactions, a tombstone into `changes:ROOM` alone (as a deletion leaves it), and
moves the room's last id past them. It refuses to start
while any server's heartbeat is fresh (`nodes`), for a server holds what it read of a room
and would not see messages put beneath it. Redis has no transaction that large: an import
that fails midway keeps what it wrote, and running it again adds the rest. Direct messages
go the same way (DM_APPEND: stream `dm:CONVERSATION`, ids `N-0`, the epoch in `E`), then
the conversation's last id and both accounts' lists of conversations (CONVERSATION).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.backends.base import InUse, Loader, StoreSnapshot, TransferStore
from app.backends.redis.accounts import USERS_KEY, _user, _user_json
from app.backends.redis.changes import _reads_key
from app.backends.redis.commands import PREFIX, Entry, Script, message_id, room_key
from app.backends.redis.moderation import AUDIT_KEY, SECRET_KEY, _entry, _entry_fields, _sanction, _sanction_json
from app.core.direct import DirectMessage, Party, conversation_of
from app.core.messages import Message
from app.core.moderation.records import AuditEntry, Person, RoomRules, Sanction, Topic
from app.core.transfer.format import (
    StoredBlock,
    StoredBuddy,
    StoredConversation,
    StoredMessage,
    StoredRead,
    StoredRoom,
    reactors,
)
from app.core.users import User

PAGE = 1000  # stream entries read, or messages written, at once

# ARGV: prefix. Returns {ids (HGETALL), users (HGETALL), the secret or false, the audit
# log's last id or false, {room, its rules (HGETALL), its moderators, its invited}...,
# {scope, its sanctions (HGETALL)}..., {room, its stream's length}..., dm-ids (HGETALL),
# {conversation, its stream's length}..., {account, its hash (HGETALL)}... of
# conversations, buddies and blocks, {room, its changes (ZRANGE WITHSCORES)}...,
# {ROOM\nID, who reacted (HKEYS: EMOJI\nKEY)}..., {account, its read positions (ZRANGE
# WITHSCORES)}...}.
SNAPSHOT = Script("""
local prefix = ARGV[1]
local function suffixes(kind)
  local found = {}
  for _, key in ipairs(redis.call('KEYS', prefix .. kind .. ':*')) do
    found[string.sub(key, #prefix + #kind + 2)] = true
  end
  return found
end
local rooms = suffixes('rules')
for room in pairs(suffixes('moderators')) do rooms[room] = true end
for room in pairs(suffixes('invited')) do rooms[room] = true end
local rules = {}
for room in pairs(rooms) do
  rules[#rules + 1] = {room, redis.call('HGETALL', prefix .. 'rules:' .. room),
                       redis.call('HGETALL', prefix .. 'moderators:' .. room),
                       redis.call('HGETALL', prefix .. 'invited:' .. room)}
end
local sanctions = {}
for scope in pairs(suffixes('sanctions')) do
  sanctions[#sanctions + 1] = {scope, redis.call('HGETALL', prefix .. 'sanctions:' .. scope)}
end
local ids = redis.call('HGETALL', prefix .. 'ids')
local lengths = {}
for i = 1, #ids, 2 do
  lengths[#lengths + 1] = {ids[i], redis.call('XLEN', prefix .. 'messages:' .. ids[i])}
end
local dm_ids = redis.call('HGETALL', prefix .. 'dm-ids')
local dm_lengths = {}
for i = 1, #dm_ids, 2 do
  dm_lengths[#dm_lengths + 1] = {dm_ids[i], redis.call('XLEN', prefix .. 'dm:' .. dm_ids[i])}
end
local function hashes(kind)
  local found = {}
  for account in pairs(suffixes(kind)) do
    found[#found + 1] = {account, redis.call('HGETALL', prefix .. kind .. ':' .. account)}
  end
  return found
end
local changes = {}
for i = 1, #ids, 2 do
  changes[#changes + 1] = {ids[i], redis.call('ZRANGE', prefix .. 'changes:' .. ids[i], 0, -1, 'WITHSCORES')}
end
local reactions = {}
for message in pairs(suffixes('reactions')) do
  reactions[#reactions + 1] = {message, redis.call('HKEYS', prefix .. 'reactions:' .. message)}
end
local reads = {}
for account in pairs(suffixes('reads')) do
  reads[#reads + 1] = {account, redis.call('ZRANGE', prefix .. 'reads:' .. account, 0, -1, 'WITHSCORES')}
end
return {ids, redis.call('HGETALL', prefix .. 'users'), redis.call('GET', prefix .. 'moderation-secret'),
        redis.call('GET', prefix .. 'audit-ids'), rules, sanctions, lengths, dm_ids, dm_lengths,
        hashes('conversations'), hashes('buddies'), hashes('blocks'), changes, reactions, reads}
""")

# ARGV: prefix, epoch, room, messages kept per room (0: all), then for each message its id,
# its wire JSON as it is now, 1 for a tombstone (else 0), how many reactions were given to
# it and each of them (EMOJI\nKEY). Appends them under the epoch (refused, STALE_EPOCH,
# under another): a tombstone into `changes:ROOM` only, as a deletion leaves it (its entry
# gone from the stream), the others into the stream with who reacted; the changes of what
# trimming takes go with it, as they do when a message is written (scripts.py). Moves the
# room's last id to the last of them, if it was below. Returns how many it appended.
APPEND = Script("""
local prefix, epoch, room, maxlen = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('GET', prefix .. 'epoch') ~= epoch then
  return redis.error_reply('STALE_EPOCH the chat is no longer in epoch ' .. epoch)
end
local stream, changes = prefix .. 'messages:' .. room, prefix .. 'changes:' .. room
local i, count, last = 5, 0, 0
while i <= #ARGV do
  local id, json, given = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 3])
  if ARGV[i + 2] == '1' then
    redis.call('ZADD', changes, id, json)
  elseif maxlen > 0 then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, id .. '-0', 'j', json, 'E', epoch)
  else
    redis.call('XADD', stream, id .. '-0', 'j', json, 'E', epoch)
  end
  for g = 1, given do
    redis.call('HSET', prefix .. 'reactions:' .. room .. '\\n' .. id, ARGV[i + 3 + g], 1)
  end
  count, last, i = count + 1, tonumber(id), i + 4 + given
end
local first = maxlen > 0 and redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
if first then
  local trimmed = redis.call('ZRANGEBYSCORE', changes, '-inf', '(' .. string.match(first[1], '^(%d+)-'), 'WITHSCORES')
  for t = 2, #trimmed, 2 do
    redis.call('DEL', prefix .. 'reactions:' .. room .. '\\n' .. trimmed[t])
  end
  redis.call('ZREMRANGEBYSCORE', changes, '-inf', '(' .. string.match(first[1], '^(%d+)-'))
end
if tonumber(redis.call('HGET', prefix .. 'ids', room) or '0') < last then
  redis.call('HSET', prefix .. 'ids', room, string.format('%d', last))
end
return count
""")

# ARGV: prefix, room, last id. The room's last id is at least that.
RAISE = Script("""
if tonumber(redis.call('HGET', ARGV[1] .. 'ids', ARGV[2]) or '0') < tonumber(ARGV[3]) then
  redis.call('HSET', ARGV[1] .. 'ids', ARGV[2], ARGV[3])
end
return 1
""")

# ARGV: prefix, then each entry's id, room and JSON. Appends them to the audit log and to
# their rooms' with their ids; the next id given out follows the last.
AUDIT = Script("""
local prefix = ARGV[1]
for i = 2, #ARGV, 3 do
  redis.call('XADD', prefix .. 'audit', ARGV[i] .. '-0', 'j', ARGV[i + 2])
  redis.call('XADD', prefix .. 'audit:' .. ARGV[i + 1], ARGV[i] .. '-0', 'j', ARGV[i + 2])
end
local last = tonumber(ARGV[#ARGV - 2])
if tonumber(redis.call('GET', prefix .. 'audit-ids') or '0') < last then
  redis.call('SET', prefix .. 'audit-ids', ARGV[#ARGV - 2])
end
return 1
""")

# ARGV: prefix, epoch, conversation, then each message's id and wire JSON. Appends them under
# the epoch (refused under another) and moves the conversation's last id to the last of them.
DM_APPEND = Script("""
local prefix, epoch, conversation = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', prefix .. 'epoch') ~= epoch then
  return redis.error_reply('STALE_EPOCH the chat is no longer in epoch ' .. epoch)
end
for i = 4, #ARGV, 2 do
  redis.call('XADD', prefix .. 'dm:' .. conversation, ARGV[i] .. '-0', 'j', ARGV[i + 1], 'E', epoch)
end
local last = tonumber(ARGV[#ARGV - 1])
if tonumber(redis.call('HGET', prefix .. 'dm-ids', conversation) or '0') < last then
  redis.call('HSET', prefix .. 'dm-ids', conversation, ARGV[#ARGV - 1])
end
return (#ARGV - 3) / 2
""")

# ARGV: prefix, conversation, last id, time, then each account's key, the other's key and
# name. The conversation's last id is at least that, and each account's list of
# conversations shows it unless it shows a later message.
CONVERSATION = Script("""
local prefix, conversation, last, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if tonumber(redis.call('HGET', prefix .. 'dm-ids', conversation) or '0') < tonumber(last) then
  redis.call('HSET', prefix .. 'dm-ids', conversation, last)
end
for i = 5, #ARGV, 3 do
  local list = prefix .. 'conversations:' .. ARGV[i]
  local shown = redis.call('HGET', list, ARGV[i + 1])
  if not shown or tonumber(string.match(shown, '^(%d+)')) < tonumber(last) then
    redis.call('HSET', list, ARGV[i + 1], last .. '\\n' .. ts .. '\\n' .. ARGV[i + 2])
  end
end
return 1
""")


def _text(value: bytes) -> str:
    return value.decode()


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _people(flat: list[bytes]) -> tuple[Person, ...]:
    found = (Person(_text(key), _text(name)) for key, name in _pairs(flat).items())
    return tuple(sorted(found, key=lambda person: person.key))


def _rules(fields: dict[bytes, bytes], moderators: list[bytes], invited: list[bytes]) -> RoomRules:
    owner, topic = fields.get(b"owner"), fields.get(b"topic")
    return RoomRules(
        owner=Person(**orjson.loads(owner)) if owner is not None else None,
        moderators=_people(moderators),
        invited=_people(invited),
        members_only=fields.get(b"members_only") == b"1",
        topic=Topic(**orjson.loads(topic)) if topic is not None else None,
    )


class RedisTransfer(TransferStore):
    def __init__(self, redis: Callable[[], aioredis.Redis], epoch: Callable[[], str], kept_messages: int) -> None:
        self._redis = redis
        self._epoch = epoch  # the epoch the backend joined (`open`)
        self._kept_messages = kept_messages

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[StoreSnapshot]:
        reply = await SNAPSHOT.run(self._redis(), [PREFIX.decode()])
        yield _RedisSnapshot(self._redis, reply)

    @asynccontextmanager
    async def loading(self) -> AsyncIterator[Loader]:
        redis = self._redis()
        seconds, microseconds = await redis.time()
        now = seconds * 1000 + microseconds // 1000
        alive = await redis.zcount(PREFIX + b"nodes", now, "+inf")
        if alive:
            raise InUse(
                f"{alive} chatroom server{' is' if alive == 1 else 's are'} using this Redis: stop "
                "them first (one killed rather than stopped counts until its heartbeat lapses, CHAT_PRESENCE_TTL)"
            )
        yield _RedisLoader(redis, self._epoch(), self._kept_messages)


class _RedisSnapshot(StoreSnapshot):
    def __init__(self, redis: Callable[[], aioredis.Redis], reply: list[Any]) -> None:
        self._redis = redis
        ids, users, secret, audit_last, rules, sanctions, lengths, dm_ids, dm_lengths, *lists = reply[:12]
        changes, reactions, reads = reply[12:]
        # room -> id -> its JSON then, for the messages that had changed
        self._changes: dict[str, dict[int, bytes]] = {
            _text(room): {int(score): json for json, score in zip(found[::2], found[1::2], strict=True)}
            for room, found in changes
        }
        self._reactions: dict[tuple[str, int], dict[str, list[str]]] = {}
        for message, given in reactions:
            room, _, id = _text(message).rpartition("\n")
            who = self._reactions[room, int(id)] = {}
            for field in given:
                emoji, _, key = _text(field).partition("\n")
                who.setdefault(emoji, []).append(key)
        self._reads = sorted(
            (
                StoredRead(_text(account), _text(room), int(score))
                for account, found in reads
                for room, score in zip(found[::2], found[1::2], strict=True)
            ),
            key=lambda read: (read.key, read.room),
        )
        self._dm_last = {_text(conversation): int(last) for conversation, last in _pairs(dm_ids).items()}
        self._dm_lengths = {_text(conversation): int(length) for conversation, length in dm_lengths}
        conversations, buddies, blocks = (
            {
                _text(account): {_text(key): _text(value) for key, value in _pairs(fields).items()}
                for account, fields in kind
            }
            for kind in lists
        )
        self._conversations: dict[str, dict[str, str]] = conversations
        self._buddies: dict[str, dict[str, str]] = buddies
        self._blocks: dict[str, dict[str, str]] = blocks
        self._last_ids = {_text(room): int(last) for room, last in _pairs(ids).items()}
        self._users = users
        self._secret = bytes.fromhex(_text(secret)) if secret else None
        self._audit_last = int(audit_last) if audit_last else 0
        self._rules = {
            _text(room): _rules(_pairs(fields), moderators, invited) for room, fields, moderators, invited in rules
        }
        self._sanctions = [(scope, _pairs(found)) for scope, found in sanctions]
        self._lengths = {_text(room): int(length) for room, length in lengths}

    async def rooms(self) -> list[StoredRoom]:
        names = sorted(set(self._last_ids) | {room for room, rules in self._rules.items() if rules != RoomRules()})
        return [
            StoredRoom(
                name, self._last_ids.get(name, 0), self._rules.get(name, RoomRules()), self._lengths.get(name, 0)
            )
            for name in names
        ]

    async def _pages(self, key: bytes, after: int, upto: int) -> AsyncIterator[list[Entry]]:
        while after < upto:
            found: list[Entry] = await self._redis().xrange(key, b"(%d-0" % after, b"%d-0" % upto, count=PAGE)  # type: ignore[assignment]
            if not found:
                return
            yield found
            after = message_id(found[-1][0])

    async def messages(self, room: str, after: int = 0) -> AsyncIterator[list[StoredMessage]]:
        upto = self._last_ids.get(room, 0)
        changed = self._changes.get(room, {})
        # The changes of that instant replace the stream's entries, and tombstones fill the
        # holes their entries left, page by page: those up to the last entry of each page.
        waiting = sorted(id for id in changed if after < id <= upto)
        taken = 0
        async for found in self._pages(room_key(b"messages", room), after, upto):
            page = {message_id(entry): fields[b"j"] for entry, fields in found}
            reach = message_id(found[-1][0])
            while taken < len(waiting) and waiting[taken] <= reach:
                page[waiting[taken]] = changed[waiting[taken]]
                taken += 1
            for start in range(0, len(page), PAGE):
                yield self._stored(room, sorted(page.items())[start : start + PAGE])
        rest = [(id, changed[id]) for id in waiting[taken:]]
        for start in range(0, len(rest), PAGE):
            yield self._stored(room, rest[start : start + PAGE])

    def _stored(self, room: str, messages: list[tuple[int, bytes]]) -> list[StoredMessage]:
        return [
            StoredMessage(Message.from_json(room, id, json), reactors(self._reactions.get((room, id), {})))
            for id, json in messages
        ]

    async def reads(self) -> list[StoredRead]:
        return self._reads

    async def users(self) -> list[User]:
        found = [_user(key, raw) for key, raw in _pairs(self._users).items()]
        return sorted(found, key=lambda user: user.key)

    async def sanctions(self) -> list[Sanction]:
        found = [_sanction(raw) for _, fields in self._sanctions for raw in fields.values()]
        return sorted(found, key=lambda sanction: (sanction.scope, sanction.kind.value, sanction.target))

    async def audit(self, after: int = 0) -> AsyncIterator[list[AuditEntry]]:
        async for found in self._pages(AUDIT_KEY, after, self._audit_last):
            yield [replace(_entry(fields[b"j"]), id=message_id(entry)) for entry, fields in found]

    async def audit_last(self) -> int:
        return self._audit_last

    async def secret(self) -> bytes | None:
        return self._secret

    async def conversations(self) -> list[StoredConversation]:
        found = []
        for one, theirs in self._conversations.items():
            for other, shown in theirs.items():
                back = self._conversations.get(other, {}).get(one)
                key = conversation_of(one, other)
                if one <= other and back is not None and key in self._dm_last:
                    _, ts, other_name = shown.split("\n", 2)
                    one_name = back.split("\n", 2)[2]
                    found.append(
                        StoredConversation(
                            (Party(one, one_name), Party(other, other_name)),
                            self._dm_last[key],
                            int(ts),
                            self._dm_lengths.get(key, 0),
                        )
                    )
        return sorted(found, key=lambda conversation: conversation.key)

    async def dms(self, conversation: str, after: int = 0) -> AsyncIterator[list[DirectMessage]]:
        key = PREFIX + b"dm:" + conversation.encode()
        async for found in self._pages(key, after, self._dm_last.get(conversation, 0)):
            yield [DirectMessage.from_json(fields[b"j"]) for _, fields in found]

    async def buddies(self) -> list[StoredBuddy]:
        return [
            StoredBuddy(owner, Party(key, self._buddies[owner][key]))
            for owner in sorted(self._buddies)
            for key in sorted(self._buddies[owner])
        ]

    async def blocks(self) -> list[StoredBlock]:
        return [
            StoredBlock(owner, Party(key, self._blocks[owner][key]))
            for owner in sorted(self._blocks)
            for key in sorted(self._blocks[owner])
        ]


class _RedisLoader(Loader):
    def __init__(self, redis: aioredis.Redis, epoch: str, kept_messages: int) -> None:
        self._redis = redis
        self._epoch = epoch
        self._kept_messages = kept_messages

    async def messages(self, room: str, messages: list[StoredMessage]) -> None:
        args: list[Any] = [PREFIX.decode(), self._epoch, room, str(self._kept_messages)]
        for stored in messages:
            given = [f"{emoji}\n{key}" for emoji, keys in stored.reactions for key in keys]
            args += [str(stored.id), stored.message.json, "1" if stored.message.deleted else "0", str(len(given))]
            args += given
        await APPEND.run(self._redis, args)

    async def room(self, room: str, last_id: int, rules: RoomRules | None) -> None:
        await RAISE.run(self._redis, [PREFIX.decode(), room, str(last_id)])
        if rules is None:
            return
        fields: dict[str, bytes | str] = {"members_only": "1" if rules.members_only else "0"}
        if rules.owner is not None:
            fields["owner"] = orjson.dumps({"key": rules.owner.key, "name": rules.owner.name})
        if rules.topic is not None:
            topic = rules.topic
            fields["topic"] = orjson.dumps({"text": topic.text, "by": topic.by, "ts": topic.ts})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(room_key(b"rules", room), mapping=fields)  # type: ignore[arg-type]
            if rules.moderators:
                pipe.hset(room_key(b"moderators", room), mapping={p.key: p.name for p in rules.moderators})
            if rules.invited:
                pipe.hset(room_key(b"invited", room), mapping={p.key: p.name for p in rules.invited})
            await pipe.execute()

    async def users(self, users: list[User]) -> None:
        await self._redis.hset(USERS_KEY, mapping={user.key: _user_json(user) for user in users})

    async def sanctions(self, sanctions: list[Sanction]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for sanction in sanctions:
                field = f"{sanction.kind.value}\n{sanction.target}"
                pipe.hset(room_key(b"sanctions", sanction.scope), field, _sanction_json(sanction))
            await pipe.execute()

    async def audit(self, entries: list[AuditEntry]) -> None:
        args: list[Any] = [PREFIX.decode()]
        for entry in entries:
            args += [str(entry.id), entry.room, orjson.dumps(_entry_fields(entry))]
        await AUDIT.run(self._redis, args)

    async def secret(self, key: bytes) -> None:
        await self._redis.set(SECRET_KEY, key.hex())

    async def dms(self, conversation: StoredConversation, messages: list[DirectMessage]) -> None:
        args: list[Any] = [PREFIX.decode(), self._epoch, conversation.key]
        for message in messages:
            args += [str(message.id), message.json]
        await DM_APPEND.run(self._redis, args)

    async def conversation(self, conversation: StoredConversation) -> None:
        one, other = conversation.accounts
        args = [PREFIX.decode(), conversation.key, str(conversation.last_id), str(conversation.ts)]
        args += [one.key, other.key, other.name]
        if other.key != one.key:
            args += [other.key, one.key, one.name]
        await CONVERSATION.run(self._redis, args)

    async def buddies(self, buddies: list[StoredBuddy]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for buddy in buddies:
                pipe.hset(PREFIX + b"buddies:" + buddy.owner.encode(), buddy.other.key, buddy.other.name)
                pipe.sadd(PREFIX + b"watchers:" + buddy.other.key.encode(), buddy.owner)
            await pipe.execute()

    async def blocks(self, blocks: list[StoredBlock]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for block in blocks:
                pipe.hset(PREFIX + b"blocks:" + block.owner.encode(), block.other.key, block.other.name)
            await pipe.execute()

    async def reads(self, reads: list[StoredRead]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for read in reads:
                pipe.zadd(_reads_key(read.key), {read.room: read.id}, gt=True)
            await pipe.execute()
