"""Who outranks whom in a room, and what each rank may do there.

admin > owner > moderator > everyone else (accounts without a role, and guests). Nobody
acts on someone of equal or higher rank: a moderator cannot ban the owner or an admin, nor
another moderator.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from app.core.moderation.records import Role, RoomRules


class Rank(IntEnum):
    MEMBER = 0  # an account without a role here, or a guest
    MODERATOR = 1
    OWNER = 2
    ADMIN = 3


class Action(StrEnum):
    """What a client event asks (its `type`), and the `action` of the `moderation` event."""

    KICK = "kick"
    MUTE = "mute"
    UNMUTE = "unmute"
    BAN = "ban"
    UNBAN = "unban"
    DELETE = "delete"
    TOPIC = "topic"
    GRANT = "grant"
    REVOKE = "revoke"
    MODE = "mode"
    INVITE = "invite"
    UNINVITE = "uninvite"
    CLAIM = "claim"


# The rank each action needs, at least. `claim` is any account's while the room has no owner;
# a `delete` of one's own message any account's (Moderation says so); a server-wide ban an
# admin's; granting or revoking ownership an admin's, or the owner's to hand the room over.
NEEDS: dict[Action, Rank] = {
    Action.KICK: Rank.MODERATOR,
    Action.MUTE: Rank.MODERATOR,
    Action.UNMUTE: Rank.MODERATOR,
    Action.BAN: Rank.MODERATOR,
    Action.UNBAN: Rank.MODERATOR,
    Action.DELETE: Rank.MODERATOR,
    Action.TOPIC: Rank.MODERATOR,
    Action.GRANT: Rank.OWNER,
    Action.REVOKE: Rank.OWNER,
    Action.MODE: Rank.OWNER,
    Action.INVITE: Rank.OWNER,
    Action.UNINVITE: Rank.OWNER,
    Action.CLAIM: Rank.MEMBER,
}
BAN_EVERYWHERE = "ban_everywhere"  # in `may`: an admin's server-wide bans


def rank_of(key: str, account: bool, admin: bool, rules: RoomRules) -> Rank:
    if admin:
        return Rank.ADMIN
    if not account:
        return Rank.MEMBER  # guests have no role
    if rules.has(Role.OWNER, key):
        return Rank.OWNER
    if rules.has(Role.MODERATOR, key):
        return Rank.MODERATOR
    return Rank.MEMBER


def role_name(rank: Rank) -> str | None:
    """The welcome's `role`: what the connection is to the room."""
    return None if rank is Rank.MEMBER else rank.name.lower()


def may(rank: Rank, account: bool, rules: RoomRules) -> list[str]:
    """What a connection of this rank may do in a room with these rules (the welcome's `may`)."""
    if not account:
        return []
    allowed = [action.value for action, needed in NEEDS.items() if rank >= needed and action is not Action.CLAIM]
    if rules.owner is None:
        allowed.append(Action.CLAIM.value)
    if rank is Rank.ADMIN:
        allowed.append(BAN_EVERYWHERE)
    return allowed
