"""Rooms' rules, sanctions and the audit log in Redis, shared by every process (keys in
scripts.py's docstring).

- `rules:ROOM`: a hash: `owner` (JSON: its key and name), `members_only` (1 or 0), `topic`
  (JSON: text, by, ts).
- `moderators:ROOM`, `invited:ROOM`: hashes, name key -> name.
- `sanctions:SCOPE` (SCOPE a room, or empty for the whole server): a hash, "KIND\\nTARGET" ->
  the sanction as JSON. Expired ones are skipped when read, and deleted as they are found.
- `audit-ids`: the last audit entry's id; `audit` and `audit:ROOM`: streams of every entry,
  and of each room's, entry N being `N-0` (field `j`, the entry as JSON).
- `moderation-secret`: the key of the hashes of guests' addresses, set once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.backends.base import ModerationStore
from app.backends.redis.commands import PREFIX, Entry, Script, message_id, room_key
from app.core.moderation.records import (
    AuditEntry,
    Kind,
    Person,
    Role,
    RoomRules,
    Sanction,
    Topic,
    sanction_fields,
    sanction_from,
)

SECRET_KEY = PREFIX + b"moderation-secret"
AUDIT_KEY = PREFIX + b"audit"

# ARGV: prefix, room, the entry's JSON. Returns the entry's id.
RECORD = Script("""
local id = redis.call('INCR', ARGV[1] .. 'audit-ids')
local entry = string.format('%d', id) .. '-0'
redis.call('XADD', ARGV[1] .. 'audit', entry, 'j', ARGV[3])
redis.call('XADD', ARGV[1] .. 'audit:' .. ARGV[2], entry, 'j', ARGV[3])
return id
""")

# ARGV: prefix, scope, kind, name key. Deletes the sanctions of that kind in that scope on
# that name; returns their JSON.
LIFT = Script("""
local key = ARGV[1] .. 'sanctions:' .. ARGV[2]
local kind = ARGV[3] .. '\\n'
local lifted = {}
local found = redis.call('HGETALL', key)
for i = 1, #found, 2 do
  if string.sub(found[i], 1, #kind) == kind and cjson.decode(found[i + 1]).key == ARGV[4] then
    redis.call('HDEL', key, found[i])
    lifted[#lifted + 1] = found[i + 1]
  end
end
return lifted
""")


def _person(raw: bytes | str) -> Person:
    fields = orjson.loads(raw)
    return Person(fields["key"], fields["name"])


def _people(found: dict[Any, Any]) -> tuple[Person, ...]:
    return tuple(sorted((Person(_text(key), _text(name)) for key, name in found.items()), key=lambda p: p.key))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _sanction_json(sanction: Sanction) -> bytes:
    return orjson.dumps(sanction_fields(sanction))


def _sanction(raw: bytes | str) -> Sanction:
    return sanction_from(orjson.loads(raw))


def _field(kind: Kind, target: str) -> str:
    return f"{kind.value}\n{target}"


def _entry(raw: bytes) -> AuditEntry:
    return AuditEntry(**orjson.loads(raw))


class RedisModeration(ModerationStore):
    def __init__(self, redis: Callable[[], aioredis.Redis]) -> None:
        self._redis = redis

    async def rules(self, room: str) -> RoomRules:
        async with self._redis().pipeline(transaction=True) as pipe:
            pipe.hgetall(room_key(b"rules", room))
            pipe.hgetall(room_key(b"moderators", room))
            pipe.hgetall(room_key(b"invited", room))
            fields, moderators, invited = await pipe.execute()
        owner, topic = fields.get(b"owner"), fields.get(b"topic")
        return RoomRules(
            owner=_person(owner) if owner is not None else None,
            moderators=_people(moderators),
            invited=_people(invited),
            members_only=fields.get(b"members_only") == b"1",
            topic=Topic(**orjson.loads(topic)) if topic is not None else None,
        )

    async def claim(self, room: str, owner: Person) -> bool:
        body = orjson.dumps({"key": owner.key, "name": owner.name})
        return bool(await self._redis().hsetnx(room_key(b"rules", room), "owner", body))

    async def set_owner(self, room: str, owner: Person | None) -> None:
        if owner is None:
            await self._redis().hdel(room_key(b"rules", room), "owner")
        else:
            body = orjson.dumps({"key": owner.key, "name": owner.name})
            await self._redis().hset(room_key(b"rules", room), "owner", body)

    async def set_role(self, room: str, role: Role, person: Person, granted: bool) -> bool:
        key = room_key(b"moderators" if role is Role.MODERATOR else b"invited", room)
        if granted:
            return bool(await self._redis().hset(key, person.key, person.name))
        return bool(await self._redis().hdel(key, person.key))

    async def set_members_only(self, room: str, members_only: bool) -> None:
        await self._redis().hset(room_key(b"rules", room), "members_only", "1" if members_only else "0")

    async def set_topic(self, room: str, topic: Topic | None) -> None:
        key = room_key(b"rules", room)
        if topic is None:
            await self._redis().hdel(key, "topic")
        else:
            await self._redis().hset(key, "topic", orjson.dumps({"text": topic.text, "by": topic.by, "ts": topic.ts}))

    async def add_sanction(self, sanction: Sanction) -> None:
        key = room_key(b"sanctions", sanction.scope)
        await self._redis().hset(key, _field(sanction.kind, sanction.target), _sanction_json(sanction))

    async def lift(self, scope: str, kind: Kind, key: str, now: int) -> list[Sanction]:
        lifted = await LIFT.run(self._redis(), [PREFIX.decode(), scope, kind.value, key])
        return [sanction for sanction in map(_sanction, lifted) if sanction.active(now)]

    async def sanction(self, scopes: list[str], kind: Kind, targets: list[str], now: int) -> Sanction | None:
        if not scopes or not targets:
            return None
        fields = [_field(kind, target) for target in targets]
        async with self._redis().pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.hmget(room_key(b"sanctions", scope), fields)
            replies = await pipe.execute()
        for found in replies:
            for raw in found:
                if raw is not None and (sanction := _sanction(raw)).active(now):
                    return sanction
        return None

    async def sanctions(self, scope: str, kind: Kind, now: int) -> list[Sanction]:
        key = room_key(b"sanctions", scope)
        found = await self._redis().hgetall(key)
        active, expired = [], []
        for field, raw in found.items():
            sanction = _sanction(raw)
            if not sanction.active(now):
                expired.append(field)
            elif sanction.kind is kind:
                active.append(sanction)
        if expired:
            await self._redis().hdel(key, *expired)
        return active

    async def record(self, entry: AuditEntry) -> AuditEntry:
        body = orjson.dumps(_entry_fields(entry))
        number = await RECORD.run(self._redis(), [PREFIX.decode(), entry.room, body.decode()])
        return replace(entry, id=int(number))

    async def audit(self, room: str | None, before: int | None, limit: int) -> list[AuditEntry]:
        key = AUDIT_KEY if room is None else room_key(b"audit", room)
        newest = f"({before}-0" if before is not None else "+"
        found: list[Entry] = await self._redis().xrevrange(key, newest, "-", count=limit)  # type: ignore[assignment]
        return [replace(_entry(fields[b"j"]), id=message_id(entry)) for entry, fields in found]

    async def secret(self) -> bytes:
        redis = self._redis()
        await redis.set(SECRET_KEY, secrets.token_hex(32), nx=True)
        value = await redis.get(SECRET_KEY)
        assert value is not None  # set just now, if it was not there already
        return bytes.fromhex(_text(value))


def _entry_fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": 0,
        "at": entry.at,
        "room": entry.room,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "reason": entry.reason,
        "until": entry.until,
        "detail": entry.detail,
    }
