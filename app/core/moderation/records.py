"""What moderation keeps: a room's rules (its owner, moderators, invitations, door and
topic), sanctions (bans and mutes), and the audit log. The backends store these as they are.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

SERVER_WIDE = ""  # the scope of a server-wide ban: no room is named "" (app/core/names.py)


class Role(StrEnum):
    """What a person is to a room, as stored; an admin is one by account (Identity.admin)."""

    OWNER = "owner"
    MODERATOR = "moderator"
    INVITED = "invited"


@dataclass(frozen=True, slots=True)
class Person:
    """An account as a room's rules name it: its key (app/core/names.py) and its name."""

    key: str
    name: str


@dataclass(frozen=True, slots=True)
class Topic:
    text: str
    by: str  # the name of whoever set it
    ts: int  # ms since the Unix epoch


@dataclass(frozen=True, slots=True)
class RoomRules:
    """A room's owner, moderators and invited accounts, its door and its topic."""

    owner: Person | None = None
    moderators: tuple[Person, ...] = ()
    invited: tuple[Person, ...] = ()
    members_only: bool = False
    topic: Topic | None = None

    def has(self, role: Role, key: str) -> bool:
        if role is Role.OWNER:
            return self.owner is not None and self.owner.key == key
        people = self.moderators if role is Role.MODERATOR else self.invited
        return any(person.key == key for person in people)


class Kind(StrEnum):
    BAN = "ban"
    MUTE = "mute"


def account_target(key: str) -> str:
    """The sanction target of an account: its key."""
    return "a:" + key


def address_target(secret: bytes, address: str) -> str:
    """The sanction target of a guest: a keyed hash of its address key (an IPv4 address, an
    IPv6 /64), never the address itself. Without the installation's secret, a copy of the
    store cannot tell whose address it is by hashing every address there is."""
    return "g:" + hmac.new(secret, address.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Sanction:
    """A ban or a mute: in a room, or (bans) on the whole server (`scope` SERVER_WIDE)."""

    scope: str
    kind: Kind
    target: str  # account_target or address_target
    name: str  # whom it concerns, as they were known
    key: str  # that name's key: `unban NAME` finds it by this
    by: str
    reason: str
    at: int  # ms since the Unix epoch
    until: int | None  # ms; None: until lifted

    def active(self, now: int) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action: who did what to whom, where, why, when, and until when."""

    id: int  # given by the store, increasing; 0 before it is stored
    at: int  # ms since the Unix epoch
    room: str  # where it was done
    actor: str
    action: str
    target: str | None = None  # a name, for actions on someone
    reason: str = ""
    until: int | None = None
    detail: str = ""  # what else the action said: a role, a topic, "on", "everywhere"


def iso(ms: int) -> str:
    """A time for people and programs alike: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sanction_fields(sanction: Sanction) -> dict[str, object]:
    """A sanction as JSON fields (in notices, and in Redis)."""
    return {
        "scope": sanction.scope,
        "kind": sanction.kind.value,
        "target": sanction.target,
        "name": sanction.name,
        "key": sanction.key,
        "by": sanction.by,
        "reason": sanction.reason,
        "at": sanction.at,
        "until": sanction.until,
    }


def sanction_from(fields: dict[str, Any]) -> Sanction:
    return Sanction(
        str(fields["scope"]),
        Kind(fields["kind"]),
        str(fields["target"]),
        str(fields["name"]),
        str(fields["key"]),
        str(fields["by"]),
        str(fields["reason"]),
        int(fields["at"]),
        None if fields["until"] is None else int(fields["until"]),
    )
