"""Moderation in the core, with plain asyncio: the hub's gates and notices, and mutes that end
once, however late a process hears of them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.backends.memory import MemoryBackend
from app.core import changes
from app.core.hub import Hub
from app.core.identity import Identity
from app.core.messages import now_ms
from app.core.moderation.records import Kind, Person, RoomRules, Sanction, account_target, sanction_fields
from app.core.moderation.service import NOTICE, RoomState, apply_changes, install
from app.core.session import Session
from app.settings import Settings
from tests.support.fakes import FakeConnection

pytestmark = pytest.mark.anyio

ROOT = Identity("Root", "root", account=True, admin=True)
BOB = Identity("Bob", "bob", account=True)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    settings = Settings(rate_limit=0, close_timeout=0.5)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    moderation = install(hub, delete_message=changes.install(hub, settings).delete_message)  # as the app does
    await hub.start()
    yield hub
    await moderation.stop()
    await hub.stop()


async def join(hub: Hub, connection: FakeConnection, identity: Identity | None = None, name: str = "") -> Session:
    session = await hub.join(connection, connection.abort, "lobby", name or None, account=identity)
    await connection.wait_for(lambda c: c.frames)
    return session


async def order(session: Session, connection: FakeConnection, event: dict[str, Any]) -> dict[str, Any]:
    seen = len(connection.events)
    await session.receive(json.dumps(event))
    await connection.wait_for(lambda c: any(e["type"] in ("moderation", "error") for e in c.events[seen:]))
    return next(e for e in connection.events[seen:] if e["type"] in ("moderation", "error"))


async def test_a_gate_holds_back_what_one_member_says_and_nobody_elses(hub: Hub) -> None:
    ann, bob = FakeConnection(), FakeConnection()
    first, second = await join(hub, ann, name="ann"), await join(hub, bob, name="bob")
    asked: list[str] = []

    def hold(session: Session) -> bool:
        asked.append(session.name)
        return True

    hub.gates[first.member] = hold
    hub.publish(first, "held")
    hub.publish(second, "through")
    await ann.wait_for(lambda c: "through" in c.messages())
    assert ann.messages() == bob.messages() == ["through"]
    assert asked == ["ann"]  # asked once, for its own message only
    await first.finished()
    assert first.member not in hub.gates  # gone with its connection


async def test_a_notice_reaches_the_handler_of_its_kind(hub: Hub) -> None:
    heard: list[dict[str, Any]] = []
    hub.notices["anything"] = heard.append
    hub.backend.notify("anything", {"a": 1})
    hub.backend.notify("something else", {"b": 2})  # nobody handles it here: nothing happens
    assert heard == [{"a": 1}]


def ended(connection: FakeConnection) -> int:
    """How many mutes that ended by themselves `connection` heard of."""
    return sum(1 for event in connection.events if event["type"] == "moderation" and event.get("expired"))


async def test_a_mute_that_ended_is_announced_once_however_late_a_notice_of_it_comes(hub: Hub) -> None:
    root, bob = FakeConnection(), FakeConnection()
    moderator = await join(hub, root, ROOT)
    muted = await join(hub, bob, BOB)
    assert (await order(moderator, root, {"type": "mute", "name": "Bob", "seconds": 1}))["action"] == "mute"
    assert muted.member in hub.gates
    await root.wait_for(lambda c: ended(c) == 1)
    assert muted.member not in hub.gates
    # Another process's notice of that mute, heard only now that it is over.
    sanction = Sanction(
        "lobby", Kind.MUTE, account_target("bob"), "Bob", "bob", "Root", "", now_ms() - 2000, now_ms() - 1
    )
    hub.backend.notify(NOTICE, {"room": "lobby", "changes": [{"mute": sanction_fields(sanction)}]})
    assert muted.member not in hub.gates
    assert (await order(moderator, root, {"type": "topic", "text": "after"}))[
        "action"
    ] == "topic"  # later events are in
    assert ended(root) == 1
    assert ended(bob) == 1


def test_changes_apply_to_a_rooms_state_as_the_store_applies_them() -> None:
    ann, bob = Person("ann", "Ann"), Person("bob", "Bob")
    mute = Sanction("lobby", Kind.MUTE, account_target("bob"), "Bob", "bob", "Ann", "", 1, None)
    state = apply_changes(
        RoomState(),
        [
            {"owner": {"key": "ann", "name": "Ann"}},
            {"role": "moderator", "person": {"key": "bob", "name": "Bob"}, "granted": True},
            {"role": "invited", "person": {"key": "cy", "name": "Cy"}, "granted": True},
            {"members_only": True},
            {"topic": {"text": "hi", "by": "Ann", "ts": 5}},
            {"mute": sanction_fields(mute)},
        ],
    )
    assert state.rules.owner == ann
    assert state.rules.moderators == (bob,)
    assert state.rules.members_only
    assert state.rules.topic is not None
    assert state.mutes == {mute.target: mute}
    after = apply_changes(
        state,
        [
            {"role": "moderator", "person": {"key": "bob", "name": "Bob"}, "granted": False},
            {"role": "invited", "person": {"key": "cy", "name": "Cy"}, "granted": False},
            {"topic": None},
            {"unmute": [mute.target]},
            {"owner": None},
            {"members_only": False},
        ],
    )
    assert after == RoomState(RoomRules(), {})
