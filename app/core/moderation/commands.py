"""Moderation on the wire (docs/protocol.md, "Moderation"): the client events, parsed into
one `Order`, and the `moderation` and `standing` events the server sends.

Parsing checks the shape of each field only (strings, sizes, numbers): who may ask, and
whether the name is a name, the service decides after that, so that someone without the
right gets `forbidden` whatever they send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.moderation.ranks import Action
from app.core.moderation.records import Role
from app.core.protocol import Command, ErrorCode, ProtocolError, command, dumps, id_field, int_field, text_field

MAX_NAME_FIELD = 256  # characters of a name field, as of a name on connecting (docs/protocol.md)
MAX_REASON = 200  # characters of a reason
MAX_TOPIC = 300  # characters of a topic
MAX_SECONDS = 10 * 365 * 86_400  # ten years: longer is "until lifted", which omitting `seconds` says


@dataclass(frozen=True, slots=True)
class Order(Command):
    """A moderation event from a client: `action` and what it says (the rest stays empty)."""

    action: Action
    name: str = ""
    reason: str = ""
    seconds: int | None = None
    everywhere: bool = False
    role: Role | None = None
    text: str = ""
    members_only: bool = False
    id: int = 0


def _bounded(event: dict[str, Any], field: str, limit: int, optional: bool = False) -> str:
    value = text_field(event, field, optional)
    if len(value) > limit:
        raise ProtocolError(
            ErrorCode.BAD_EVENT, f'Expected "{field}" of at most {limit} characters, but got {len(value)}'
        )
    return value


def _name(event: dict[str, Any]) -> str:
    return _bounded(event, "name", MAX_NAME_FIELD)


def _reason(event: dict[str, Any]) -> str:
    return _bounded(event, "reason", MAX_REASON, optional=True)


# Optional fields may be left out or null, alike.


def _seconds(event: dict[str, Any]) -> int | None:
    if event.get("seconds") is None:
        return None
    return int_field(event, "seconds", 1, MAX_SECONDS)


def _flag(event: dict[str, Any], field: str, required: bool = False) -> bool:
    value = event.get(field)
    if value is None and not required:
        return False
    if type(value) is not bool:
        raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "{field}" to be true or false, but got {value!r:.40}')
    return value


def _role(event: dict[str, Any]) -> Role:
    value = event.get("role")
    if value not in (Role.MODERATOR.value, Role.OWNER.value):
        raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "role" to be "moderator" or "owner", but got {value!r:.40}')
    return Role(value)


@command(Action.KICK.value)
def _kick(event: dict[str, Any]) -> Order:
    return Order(Action.KICK, _name(event), _reason(event))


@command(Action.MUTE.value)
def _mute(event: dict[str, Any]) -> Order:
    return Order(Action.MUTE, _name(event), _reason(event), _seconds(event))


@command(Action.UNMUTE.value)
def _unmute(event: dict[str, Any]) -> Order:
    return Order(Action.UNMUTE, _name(event))


@command(Action.BAN.value)
def _ban(event: dict[str, Any]) -> Order:
    return Order(Action.BAN, _name(event), _reason(event), _seconds(event), _flag(event, "everywhere"))


@command(Action.UNBAN.value)
def _unban(event: dict[str, Any]) -> Order:
    return Order(Action.UNBAN, _name(event), everywhere=_flag(event, "everywhere"))


@command(Action.DELETE.value)
def _delete(event: dict[str, Any]) -> Order:
    message = id_field(event, "id")
    assert message is not None
    return Order(Action.DELETE, id=message)


@command(Action.TOPIC.value)
def _topic(event: dict[str, Any]) -> Order:
    return Order(Action.TOPIC, text=_bounded(event, "text", MAX_TOPIC))


@command(Action.GRANT.value)
def _grant(event: dict[str, Any]) -> Order:
    return Order(Action.GRANT, _name(event), role=_role(event))


@command(Action.REVOKE.value)
def _revoke(event: dict[str, Any]) -> Order:
    return Order(Action.REVOKE, _name(event), role=_role(event))


@command(Action.MODE.value)
def _mode(event: dict[str, Any]) -> Order:
    return Order(Action.MODE, members_only=_flag(event, "members_only", required=True))


@command(Action.INVITE.value)
def _invite(event: dict[str, Any]) -> Order:
    return Order(Action.INVITE, _name(event))


@command(Action.UNINVITE.value)
def _uninvite(event: dict[str, Any]) -> Order:
    return Order(Action.UNINVITE, _name(event))


@command(Action.CLAIM.value)
def _claim(event: dict[str, Any]) -> Order:
    return Order(Action.CLAIM)


# Outgoing events


def moderation_event(room: str, action: Action, by: str | None, ts: int, **fields: Any) -> dict[str, Any]:
    """`{"type":"moderation","room":…,"action":…,"by":…,"ts":…, …}`: what someone did, for
    everyone in the room (a dict: it travels to every process in a notice first)."""
    event: dict[str, Any] = {"type": "moderation", "room": room, "action": action.value, "by": by, "ts": ts}
    event.update((field, value) for field, value in fields.items() if value is not None)
    return event


def standing_event(room: str, standing: dict[str, Any]) -> bytes:
    """`{"type":"standing","room":…,"role":…,"may":[…],"muted":…}`: what this connection is and
    may do now, for it alone, when that changed."""
    return dumps({"type": "standing", "room": room, **standing})
