"""The moderation seam (`ModerationStore`), the same on every backend: rooms' rules,
sanctions that expire by themselves, the audit log paged newest first, and the key of
guests' address hashes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.backends import create_backend
from app.backends.base import Backend
from app.core.moderation.records import (
    SERVER_WIDE,
    AuditEntry,
    Kind,
    Person,
    Role,
    RoomRules,
    Sanction,
    Topic,
    account_target,
    address_target,
)
from app.settings import Settings
from tests.support.subscriber import Delivered

pytestmark = pytest.mark.anyio

ANN, BOB, CY = Person("ann", "Ann"), Person("bob", "Bob"), Person("cy", "Cy")
NOW = 1_800_000_000_000


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[Backend]:
    backend = create_backend(backend_url, Settings(backend_url=backend_url))
    await backend.start(Delivered())
    yield backend
    await backend.stop()


def ban(target: str, key: str, scope: str = "lobby", until: int | None = None, kind: Kind = Kind.BAN) -> Sanction:
    return Sanction(scope, kind, target, key.title(), key, "Ann", "spam", NOW, until)


async def test_a_room_nobody_set_rules_for_has_none(backend: Backend) -> None:
    assert await backend.moderation.rules("lobby") == RoomRules()


async def test_a_room_is_claimed_once_handed_over_and_given_up(backend: Backend) -> None:
    store = backend.moderation
    assert await store.claim("lobby", ANN)
    assert not await store.claim("lobby", BOB)
    assert (await store.rules("lobby")).owner == ANN
    assert (await store.rules("den")).owner is None  # rooms apart
    await store.set_owner("lobby", BOB)
    assert (await store.rules("lobby")).owner == BOB
    await store.set_owner("lobby", None)
    assert await store.claim("lobby", CY)


async def test_moderators_and_invitations_are_granted_and_revoked_once(backend: Backend) -> None:
    store = backend.moderation
    assert await store.set_role("lobby", Role.MODERATOR, BOB, True)
    assert not await store.set_role("lobby", Role.MODERATOR, BOB, True)
    assert await store.set_role("lobby", Role.MODERATOR, ANN, True)
    assert await store.set_role("lobby", Role.INVITED, CY, True)
    rules = await store.rules("lobby")
    assert rules.moderators == (ANN, BOB)  # by key
    assert rules.invited == (CY,)
    assert rules.has(Role.MODERATOR, "bob")
    assert not rules.has(Role.MODERATOR, "cy")
    assert await store.set_role("lobby", Role.MODERATOR, BOB, False)
    assert not await store.set_role("lobby", Role.MODERATOR, BOB, False)
    assert (await store.rules("lobby")).moderators == (ANN,)
    assert (await store.rules("den")).invited == ()


async def test_the_door_and_the_topic_are_kept(backend: Backend) -> None:
    store = backend.moderation
    await store.set_members_only("lobby", True)
    await store.set_topic("lobby", Topic("Be kind", "Ann", NOW))
    rules = await store.rules("lobby")
    assert rules.members_only
    assert rules.topic == Topic("Be kind", "Ann", NOW)
    await store.set_topic("lobby", None)
    await store.set_members_only("lobby", False)
    assert await store.rules("lobby") == RoomRules()


async def test_a_sanction_is_found_by_scope_and_target_while_it_lasts(backend: Backend) -> None:
    store = backend.moderation
    bob = account_target("bob")
    await store.add_sanction(ban(bob, "bob", until=NOW + 1000))
    assert await store.sanction(["lobby"], Kind.BAN, [bob], NOW) == ban(bob, "bob", until=NOW + 1000)
    assert await store.sanction(["lobby"], Kind.MUTE, [bob], NOW) is None  # another kind
    assert await store.sanction(["den"], Kind.BAN, [bob], NOW) is None  # another room
    assert await store.sanction(["lobby"], Kind.BAN, [account_target("cy")], NOW) is None
    assert await store.sanction(["lobby"], Kind.BAN, [bob], NOW + 1000) is None  # over: as good as gone
    await store.add_sanction(ban(bob, "bob", scope=SERVER_WIDE))
    assert await store.sanction(["den", SERVER_WIDE], Kind.BAN, [bob], NOW + 10**9) is not None


async def test_a_new_sanction_takes_the_place_of_the_old_and_lifting_ends_it(backend: Backend) -> None:
    store = backend.moderation
    guest = address_target(await store.secret(), "192.0.2.1")
    await store.add_sanction(ban(guest, "troll", until=NOW + 10))
    await store.add_sanction(ban(guest, "troll", until=None))  # longer now
    assert (await store.sanction(["lobby"], Kind.BAN, [guest], NOW + 100)) == ban(guest, "troll")
    await store.add_sanction(ban(guest, "troll", kind=Kind.MUTE))
    assert await store.lift("lobby", Kind.BAN, "troll", NOW) == [ban(guest, "troll")]
    assert await store.sanction(["lobby"], Kind.BAN, [guest], NOW) is None
    assert await store.lift("lobby", Kind.BAN, "troll", NOW) == []
    assert await store.sanctions("lobby", Kind.MUTE, NOW) == [ban(guest, "troll", kind=Kind.MUTE)]  # kept


async def test_every_active_sanction_of_a_room_is_listed(backend: Backend) -> None:
    store = backend.moderation
    await store.add_sanction(ban(account_target("bob"), "bob", kind=Kind.MUTE, until=NOW + 60_000))
    await store.add_sanction(ban(account_target("cy"), "cy", kind=Kind.MUTE, until=NOW - 1))  # over
    await store.add_sanction(ban(account_target("dee"), "dee"))
    await store.add_sanction(ban(account_target("eve"), "eve", scope="den", kind=Kind.MUTE))
    muted = await store.sanctions("lobby", Kind.MUTE, NOW)
    assert [sanction.key for sanction in muted] == ["bob"]
    assert await store.lift("lobby", Kind.MUTE, "cy", NOW) == []  # lifted after it ended: nothing said


async def test_the_audit_log_is_read_newest_first_in_pages_per_room_or_all(backend: Backend) -> None:
    store = backend.moderation
    written = []
    for number in range(5):
        room = "lobby" if number % 2 == 0 else "den"
        entry = AuditEntry(0, NOW + number, room, "Ann", "kick", f"p{number}", "why", None, "")
        written.append(await store.record(entry))
    ids = [entry.id for entry in written]
    assert ids == sorted(set(ids))
    assert written[0] == AuditEntry(ids[0], NOW, "lobby", "Ann", "kick", "p0", "why", None, "")
    lobby = [entry.target for entry in await store.audit("lobby", None, 10)]
    assert lobby == ["p4", "p2", "p0"]
    first = await store.audit("lobby", None, 2)
    assert [entry.target for entry in first] == ["p4", "p2"]
    rest = await store.audit("lobby", first[-1].id, 2)
    assert [entry.target for entry in rest] == ["p0"]
    assert [entry.target for entry in await store.audit(None, ids[3], 10)] == ["p2", "p1", "p0"]
    assert await store.audit("attic", None, 10) == []
    until = await store.record(AuditEntry(0, NOW, "lobby", "Ann", "ban", None, "", NOW + 5, "everywhere"))
    assert (await store.audit("lobby", None, 1)) == [until]


async def test_the_hashing_key_is_made_once_and_hides_the_address(backend: Backend) -> None:
    secret = await backend.moderation.secret()
    assert len(secret) == 32
    assert await backend.moderation.secret() == secret
    hashed = address_target(secret, "192.0.2.1")
    assert "192.0.2.1" not in hashed
    assert hashed != address_target(secret, "192.0.2.2")
    assert hashed != address_target(b"another installation", "192.0.2.1")
