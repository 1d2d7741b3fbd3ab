"""Rooms' rules, sanctions and the audit log in the SQLite database (tables `room_rules`,
`room_roles`, `sanctions` and `audit`, schema.py; the hashing key in `meta`).

As with accounts, reads run on the backend's reader thread and writes are short
transactions on the writer's connection, between the message commits of the event loop.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from app.backends.base import ModerationStore
from app.backends.sqlite.files import transaction
from app.core.moderation.records import AuditEntry, Kind, Person, Role, RoomRules, Sanction, Topic

Read = Callable[..., Awaitable[Any]]

_SANCTION = "SELECT scope, kind, target, name, key, by, reason, at, until FROM sanctions"
_AUDIT = "SELECT id, at, room, actor, action, target, reason, until, detail FROM audit"
_ACTIVE = "(until IS NULL OR until > ?)"


def _sanction(row: tuple[Any, ...]) -> Sanction:
    scope, kind, target, name, key, by, reason, at, until = row
    return Sanction(scope, Kind(kind), target, name, key, by, reason, at, until)


class SQLiteModeration(ModerationStore):
    def __init__(self, read: Read, reader: Callable[[], sqlite3.Connection], writer: Callable[[], sqlite3.Connection]):
        self._read = read  # runs a function on the reader thread
        self._reader = reader
        self._writer = writer

    def _select(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._reader().execute(query, args).fetchall()

    def _rules(self, room: str) -> RoomRules:
        db = self._reader()
        door = db.execute("SELECT members_only, topic, topic_by, topic_ts FROM room_rules WHERE room = ?", (room,))
        found: tuple[Any, ...] | None = door.fetchone()
        people: dict[str, list[Person]] = {role.value: [] for role in Role}
        for role, key, name in db.execute("SELECT role, key, name FROM room_roles WHERE room = ?", (room,)):
            people[role].append(Person(key, name))
        owners = people[Role.OWNER.value]
        members_only, topic, topic_by, topic_ts = found if found is not None else (0, None, "", 0)
        return RoomRules(
            owner=owners[0] if owners else None,
            moderators=tuple(sorted(people[Role.MODERATOR.value], key=lambda person: person.key)),
            invited=tuple(sorted(people[Role.INVITED.value], key=lambda person: person.key)),
            members_only=bool(members_only),
            topic=Topic(topic, topic_by, topic_ts) if topic is not None else None,
        )

    async def rules(self, room: str) -> RoomRules:
        rules: RoomRules = await self._read(self._rules, room)
        return rules

    async def claim(self, room: str, owner: Person) -> bool:
        db = self._writer()
        with transaction(db):
            changed = db.execute(
                "INSERT INTO room_roles (room, role, key, name) SELECT ?, 'owner', ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM room_roles WHERE room = ? AND role = 'owner')",
                (room, owner.key, owner.name, room),
            ).rowcount
        return changed > 0

    async def set_owner(self, room: str, owner: Person | None) -> None:
        db = self._writer()
        with transaction(db):
            db.execute("DELETE FROM room_roles WHERE room = ? AND role = 'owner'", (room,))
            if owner is not None:
                db.execute(
                    "INSERT INTO room_roles (room, role, key, name) VALUES (?, 'owner', ?, ?)",
                    (room, owner.key, owner.name),
                )

    async def set_role(self, room: str, role: Role, person: Person, granted: bool) -> bool:
        db = self._writer()
        with transaction(db):
            if granted:
                changed = db.execute(
                    "INSERT OR IGNORE INTO room_roles (room, role, key, name) VALUES (?, ?, ?, ?)",
                    (room, role.value, person.key, person.name),
                ).rowcount
            else:
                changed = db.execute(
                    "DELETE FROM room_roles WHERE room = ? AND role = ? AND key = ?", (room, role.value, person.key)
                ).rowcount
        return changed > 0

    async def set_members_only(self, room: str, members_only: bool) -> None:
        db = self._writer()
        with transaction(db):
            db.execute(
                "INSERT INTO room_rules (room, members_only) VALUES (?, ?) "
                "ON CONFLICT (room) DO UPDATE SET members_only = excluded.members_only",
                (room, int(members_only)),
            )

    async def set_topic(self, room: str, topic: Topic | None) -> None:
        text, by, ts = (topic.text, topic.by, topic.ts) if topic is not None else (None, None, None)
        db = self._writer()
        with transaction(db):
            db.execute(
                "INSERT INTO room_rules (room, topic, topic_by, topic_ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (room) DO UPDATE SET topic = excluded.topic, topic_by = excluded.topic_by, "
                "topic_ts = excluded.topic_ts",
                (room, text, by, ts),
            )

    async def add_sanction(self, sanction: Sanction) -> None:
        db = self._writer()
        with transaction(db):
            # Expired ones go as new ones come: the table holds what is in force, give or take.
            db.execute("DELETE FROM sanctions WHERE until <= ?", (sanction.at,))
            db.execute(
                "INSERT OR REPLACE INTO sanctions (scope, kind, target, name, key, by, reason, at, until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sanction.scope,
                    sanction.kind.value,
                    sanction.target,
                    sanction.name,
                    sanction.key,
                    sanction.by,
                    sanction.reason,
                    sanction.at,
                    sanction.until,
                ),
            )

    async def lift(self, scope: str, kind: Kind, key: str, now: int) -> list[Sanction]:
        db = self._writer()
        with transaction(db):
            found = db.execute(f"{_SANCTION} WHERE scope = ? AND kind = ? AND key = ?", (scope, kind.value, key))
            lifted = [_sanction(row) for row in found]
            db.execute("DELETE FROM sanctions WHERE scope = ? AND kind = ? AND key = ?", (scope, kind.value, key))
        return [sanction for sanction in lifted if sanction.active(now)]

    async def sanction(self, scopes: list[str], kind: Kind, targets: list[str], now: int) -> Sanction | None:
        if not scopes or not targets:
            return None
        query = (
            f"{_SANCTION} WHERE kind = ? AND scope IN ({','.join('?' * len(scopes))}) "
            f"AND target IN ({','.join('?' * len(targets))}) AND {_ACTIVE} LIMIT 1"
        )
        rows = await self._read(self._select, query, kind.value, *scopes, *targets, now)
        return _sanction(rows[0]) if rows else None

    async def sanctions(self, scope: str, kind: Kind, now: int) -> list[Sanction]:
        query = f"{_SANCTION} WHERE scope = ? AND kind = ? AND {_ACTIVE}"
        return [_sanction(row) for row in await self._read(self._select, query, scope, kind.value, now)]

    async def record(self, entry: AuditEntry) -> AuditEntry:
        db = self._writer()
        with transaction(db):
            cursor = db.execute(
                "INSERT INTO audit (at, room, actor, action, target, reason, until, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.at,
                    entry.room,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.reason,
                    entry.until,
                    entry.detail,
                ),
            )
        assert cursor.lastrowid is not None
        return replace(entry, id=cursor.lastrowid)

    async def audit(self, room: str | None, before: int | None, limit: int) -> list[AuditEntry]:
        below = before if before is not None else 2**63 - 1
        if room is None:
            rows = await self._read(self._select, f"{_AUDIT} WHERE id < ? ORDER BY id DESC LIMIT ?", below, limit)
        else:
            query = f"{_AUDIT} WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?"
            rows = await self._read(self._select, query, room, below, limit)
        return [AuditEntry(*row) for row in rows]

    async def secret(self) -> bytes:
        db = self._writer()
        with transaction(db):
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('moderation_secret', ?)", (secrets.token_hex(32),)
            )
            (value,) = db.execute("SELECT value FROM meta WHERE key = 'moderation_secret'").fetchone()
        return bytes.fromhex(value)
