"""Rooms' rules, sanctions and the audit log in this process's memory (`memory://`); gone at restart."""

from __future__ import annotations

import secrets
from dataclasses import replace

from app.backends.base import ModerationStore
from app.core.moderation.records import AuditEntry, Kind, Person, Role, RoomRules, Sanction, Topic


class MemoryModeration(ModerationStore):
    def __init__(self) -> None:
        self._rules: dict[str, RoomRules] = {}
        # scope -> (kind, target) -> sanction
        self._sanctions: dict[str, dict[tuple[Kind, str], Sanction]] = {}
        self._audit: list[AuditEntry] = []
        self._secret = secrets.token_bytes(32)

    async def rules(self, room: str) -> RoomRules:
        return self._rules.get(room, RoomRules())

    def _change(self, room: str, **fields: object) -> None:
        self._rules[room] = replace(self._rules.get(room, RoomRules()), **fields)  # type: ignore[arg-type]

    async def claim(self, room: str, owner: Person) -> bool:
        if (await self.rules(room)).owner is not None:
            return False
        self._change(room, owner=owner)
        return True

    async def set_owner(self, room: str, owner: Person | None) -> None:
        self._change(room, owner=owner)

    async def set_role(self, room: str, role: Role, person: Person, granted: bool) -> bool:
        rules = await self.rules(room)
        field = "moderators" if role is Role.MODERATOR else "invited"
        people: tuple[Person, ...] = getattr(rules, field)
        others = tuple(someone for someone in people if someone.key != person.key)
        if granted == (len(others) < len(people)):
            return False
        changed = sorted((*others, person), key=lambda someone: someone.key) if granted else others
        self._change(room, **{field: tuple(changed)})
        return True

    async def set_members_only(self, room: str, members_only: bool) -> None:
        self._change(room, members_only=members_only)

    async def set_topic(self, room: str, topic: Topic | None) -> None:
        self._change(room, topic=topic)

    async def add_sanction(self, sanction: Sanction) -> None:
        self._sanctions.setdefault(sanction.scope, {})[sanction.kind, sanction.target] = sanction

    async def lift(self, scope: str, kind: Kind, key: str, now: int) -> list[Sanction]:
        kept = self._sanctions.get(scope, {})
        lifted = [(place, sanction) for place, sanction in kept.items() if place[0] is kind and sanction.key == key]
        for place, _ in lifted:
            del kept[place]
        return [sanction for _, sanction in lifted if sanction.active(now)]

    async def sanction(self, scopes: list[str], kind: Kind, targets: list[str], now: int) -> Sanction | None:
        for scope in scopes:
            kept = self._sanctions.get(scope, {})
            for target in targets:
                found = kept.get((kind, target))
                if found is not None and found.active(now):
                    return found
        return None

    async def sanctions(self, scope: str, kind: Kind, now: int) -> list[Sanction]:
        kept = self._sanctions.get(scope, {})
        for place in [place for place, sanction in kept.items() if not sanction.active(now)]:
            del kept[place]  # expired: as good as gone already
        return [sanction for (found, _), sanction in kept.items() if found is kind]

    async def record(self, entry: AuditEntry) -> AuditEntry:
        stored = replace(entry, id=len(self._audit) + 1)
        self._audit.append(stored)
        return stored

    async def audit(self, room: str | None, before: int | None, limit: int) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        for entry in reversed(self._audit[: max(before - 1, 0) if before is not None else None]):
            if room is None or entry.room == room:
                found.append(entry)
                if len(found) == limit:
                    break
        return found

    async def secret(self) -> bytes:
        return self._secret
