"""Who is typing, in the core: ephemeral (never stored, replayed or sent back to the typist),
at most one a few seconds per person, and the first thing a busy room drops."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.backends.memory import MemoryBackend
from app.core import room as room_module
from app.core.hub import Hub
from app.core.identity import Identity
from app.core.protocol import typing_event
from app.core.session import Session
from app.core.typists import TYPING_EVERY
from app.core.typists import install as install_typists
from app.settings import Settings
from tests.support.fakes import FakeConnection

pytestmark = pytest.mark.anyio

TYPING = json.dumps({"type": "typing"})
STOP = json.dumps({"type": "typing", "stop": True})


async def start_hub(**overrides: Any) -> Hub:
    settings = Settings(rate_limit=0, **overrides)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    install_typists(hub)
    await hub.start()
    return hub


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = await start_hub()
    yield hub
    await hub.stop()


async def join(hub: Hub, name: str, sink: bool = False) -> tuple[Session, FakeConnection]:
    connection = FakeConnection(sink=sink)
    session = await hub.join(connection, connection.abort, "lobby", name, sink=connection.sink)
    await connection.wait_for(lambda c: c.frames)
    return session, connection


def typing(connection: FakeConnection) -> list[dict[str, Any]]:
    return [event for event in connection.events if event["type"] == "typing"]


async def said(session: Session, text: str) -> None:
    await session.receive(json.dumps({"type": "message", "text": text}))


async def test_typing_reaches_the_others_but_not_the_typist_and_is_never_replayed(hub: Hub) -> None:
    ann, ann_hears = await join(hub, "ann")
    _, bob_hears = await join(hub, "bob")
    await ann.receive(TYPING)
    await said(ann, "done")  # whatever came before it has arrived with it
    for connection in (ann_hears, bob_hears):
        await connection.wait_for(lambda c: "done" in c.messages())
    assert typing(bob_hears) == [{"type": "typing", "name": "ann"}]
    assert typing(ann_hears) == []
    _, cy_hears = await join(hub, "cy")
    assert [event["type"] for event in cy_hears.events[0]["history"]] == ["message"]
    messages, _ = await hub.backend.history("lobby", None, 100)
    assert [message.text for message in messages] == ["done"]  # nothing of it was stored


async def test_a_person_types_at_most_once_every_few_seconds_and_stops_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, _ = await join(hub, "ann")
    _, bob_hears = await join(hub, "bob")
    await ann.receive(STOP)  # nothing to stop: dropped
    for _ in range(5):
        await ann.receive(TYPING)  # one goes out, the rest are dropped
    await ann.receive(STOP)
    await ann.receive(STOP)  # once
    await said(ann, "marker")
    await bob_hears.wait_for(lambda c: "marker" in c.messages())
    assert typing(bob_hears) == [{"type": "typing", "name": "ann"}, {"type": "typing", "name": "ann", "stop": True}]
    # A few seconds later, typing again goes out again.
    loop = asyncio.get_running_loop()
    later = loop.time() + TYPING_EVERY
    monkeypatch.setattr(loop, "time", lambda: later)
    await ann.receive(TYPING)
    await said(ann, "second marker")
    await bob_hears.wait_for(lambda c: "second marker" in c.messages())
    assert len(typing(bob_hears)) == 3


async def test_an_account_typing_in_one_tab_is_not_shown_typing_in_its_other_tabs(hub: Hub) -> None:
    account = Identity("Ann", "ann", account=True)
    tabs = [FakeConnection(), FakeConnection()]
    first, _ = [await hub.join(tab, tab.abort, "lobby", None, account=account) for tab in tabs]
    _, bob_hears = await join(hub, "bob")
    await first.receive(TYPING)
    await said(first, "marker")
    for connection in (*tabs, bob_hears):
        await connection.wait_for(lambda c: "marker" in c.messages())
    assert typing(bob_hears) == [{"type": "typing", "name": "Ann"}]
    assert typing(tabs[0]) == typing(tabs[1]) == []


async def test_typing_is_dropped_while_a_member_holds_the_room_back_and_messages_are_not() -> None:
    hub = await start_hub(queue_bytes=8192, stall_timeout=5)
    ann, ann_hears = await join(hub, "ann")
    bob, bob_hears = await join(hub, "bob")
    _, slow = await join(hub, "slow")
    slow.stall()
    padding = "x" * 300
    for number in range(12):  # over a quarter of 8 KiB waits for `slow`: the room holds its senders
        hub.publish(ann, f"{number} {padding}")
        await asyncio.sleep(0)
    assert hub.holds_senders(bob)
    await bob.receive(TYPING)  # the room is busy: dropped at once
    hub.ephemeral("lobby", "cy", typing_event("cy"))  # and so is what another process would send
    slow.flow()
    for connection in (ann_hears, slow):
        await connection.wait_for(lambda c: len(c.messages()) == 12)
    hub.publish(ann, "after")
    await slow.wait_for(lambda c: "after" in c.messages())
    assert typing(ann_hears) == typing(slow) == typing(bob_hears) == []
    await hub.stop()


async def test_a_member_with_much_waiting_for_it_gets_the_messages_without_the_typing(hub: Hub) -> None:
    ann, ann_hears = await join(hub, "ann")
    _, full = await join(hub, "full", sink=True)
    _, bob_hears = await join(hub, "bob")
    full.stall()  # its socket takes nothing: what comes waits in its queue
    padding = "x" * 1000
    for number in range(room_module.EPHEMERAL_QUEUE // 1000 + 2):
        hub.publish(ann, f"{number} {padding}")
        await asyncio.sleep(0)
    await ann.receive(TYPING)
    hub.publish(ann, "after the typing")
    await bob_hears.wait_for(lambda c: "after the typing" in c.messages())
    full.flow()
    await full.wait_for(lambda c: "after the typing" in c.messages())
    assert typing(bob_hears) == [{"type": "typing", "name": "ann"}]
    assert typing(full) == []
    assert len(full.messages()) == len(bob_hears.messages())  # every message, none missing
    assert typing(ann_hears) == []


async def test_a_turn_with_many_messages_drops_its_typing_and_sends_every_message(hub: Hub) -> None:
    ann, _ = await join(hub, "ann")
    _, bob_hears = await join(hub, "bob")
    for number in range(room_module.BUSY_EVENTS + 1):  # all in one turn
        hub.publish(ann, str(number))
    hub.ephemeral("lobby", "cy", typing_event("cy"))
    await bob_hears.wait_for(lambda c: len(c.messages()) == room_module.BUSY_EVENTS + 1)
    hub.publish(ann, "next turn")
    hub.ephemeral("lobby", "cy", typing_event("cy"))  # a quiet turn: it goes out
    await bob_hears.wait_for(lambda c: "next turn" in c.messages())
    assert bob_hears.messages()[: room_module.BUSY_EVENTS + 1] == [str(n) for n in range(room_module.BUSY_EVENTS + 1)]
    assert typing(bob_hears) == [{"type": "typing", "name": "cy"}]
    assert bob_hears.events[-1] == {"type": "typing", "name": "cy"}  # after the message of its turn
