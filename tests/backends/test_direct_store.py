"""The direct-message store (`Backend.direct`) on every backend: conversations and their ids,
pages, lists and their limits, blocks, away periods, forgetting an account, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.backends import Backend, create_backend
from app.core.direct import (
    AwayChanged,
    BlockChanged,
    Buddy,
    Delivered,
    Delivery,
    DirectMessage,
    Forbidden,
    Party,
    Seen,
    Snapshot,
    Unlisted,
)
from app.settings import Settings
from tests.support.subscriber import Delivered as Subscriber

pytestmark = pytest.mark.anyio

ANN, BOB, CY = Party("ann", "Ann"), Party("bob", "Bob"), Party("cy", "Cy")


class Handler:
    """What the store delivers, by account (app.core.direct.DirectHandler)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, Delivery]] = []
        self.arrived = asyncio.Condition()

    def deliver(self, key: str, delivery: Delivery) -> None:
        self.deliveries.append((key, delivery))

        async def notify() -> None:
            async with self.arrived:
                self.arrived.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def refresh(self, key: str, snapshot: Snapshot) -> None:
        pass

    def away_reloaded(self, away: dict[str, tuple[str, str]]) -> None:
        pass

    def of(self, key: str) -> list[Delivery]:
        return [delivery for owner, delivery in self.deliveries if owner == key]

    async def wait_for(self, predicate: Callable[[Handler], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: predicate(self))


@pytest.fixture
async def open_store(backend_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start the backend (again, for a restart), with a handler for its direct messages."""
    started: list[Backend] = []

    async def start() -> tuple[Backend, Handler]:
        if started:
            await started[-1].stop()
        backend = create_backend(backend_url, Settings(backend_url=backend_url))
        await backend.start(Subscriber())
        handler = Handler()
        backend.direct.listen(handler)
        started.append(backend)
        return backend, handler

    yield start
    if started:
        await started[-1].stop()


def texts(messages: list[DirectMessage]) -> list[str]:
    return [message.text for message in messages]


async def test_a_conversation_is_one_whoever_writes_and_its_ids_increase(open_store: Callable[..., Any]) -> None:
    backend, handler = await open_store()
    store = backend.direct
    await store.arrive(ANN)
    await store.arrive(BOB)
    (first,) = await store.send(ANN, BOB, "hi")
    (second,) = await store.send(BOB, ANN, "hello")
    (other,) = await store.send(ANN, CY, "hey")
    assert (first.id, second.id, other.id) == (1, 2, 1)
    assert first.json == (b'{"type":"dm","id":1,"from":"Ann","to":"Bob","text":"hi","ts":%d}' % first.ts)
    await handler.wait_for(lambda h: len(h.of("bob")) == 2)
    assert handler.of("bob") == [Delivered(ANN, first), Delivered(ANN, second)]
    assert handler.of("ann") == [Delivered(BOB, first), Delivered(BOB, second), Delivered(CY, other)]
    assert handler.of("cy") == []  # not here: nothing is delivered for it
    snapshot = await store.arrive(CY)
    assert snapshot.conversations["ann"].last == 1
    assert snapshot.conversations["ann"].name == "Ann"


async def test_pages_walk_back_to_the_first_message_between_bounds(open_store: Callable[..., Any]) -> None:
    backend, _ = await open_store()
    store = backend.direct
    for number in range(1, 8):
        await store.send(ANN if number % 2 else BOB, BOB if number % 2 else ANN, f"m{number}")
    page, more = await store.history("bob", "ann", None, None, 3)
    assert (texts(page), more) == (["m5", "m6", "m7"], True)
    page, more = await store.history("ann", "bob", page[0].id, None, 3)
    assert (texts(page), more) == (["m2", "m3", "m4"], True)
    page, more = await store.history("ann", "bob", page[0].id, None, 3)
    assert (texts(page), more) == (["m1"], False)
    page, more = await store.history("ann", "bob", 7, 3, 10)  # what a resume asks: after 3, up to 6
    assert (texts(page), more) == (["m4", "m5", "m6"], False)
    page, more = await store.history("ann", "bob", 7, 3, 2)
    assert (texts(page), more) == (["m5", "m6"], True)
    assert await store.history("ann", "cy", None, None, 10) == ([], False)


async def test_the_automatic_reply_comes_once_per_conversation_and_away_period(open_store: Callable[..., Any]) -> None:
    backend, handler = await open_store()
    store = backend.direct
    for account in (ANN, BOB, CY):
        await store.arrive(account)
    await store.away(BOB, "lunch")
    sent = await store.send(ANN, BOB, "there?")
    assert [(m.sender, m.text, m.auto) for m in sent] == [("Ann", "there?", False), ("Bob", "lunch", True)]
    assert sent[1].id == sent[0].id + 1
    assert b'"auto":true' in sent[1].json
    assert texts(await store.send(ANN, BOB, "still?")) == ["still?"]  # answered once already
    assert texts(await store.send(CY, BOB, "hi")) == ["hi", "lunch"]  # another conversation
    await store.away(BOB, "lunch")  # the same message: the same period
    assert texts(await store.send(ANN, BOB, "and now?")) == ["and now?"]
    await store.away(BOB, "gone home")  # another message: a new period
    assert texts(await store.send(ANN, BOB, "home?")) == ["home?", "gone home"]
    await store.away(BOB, None)
    assert texts(await store.send(ANN, BOB, "back?")) == ["back?"]
    await store.away(BOB, "out again")
    assert texts(await store.send(ANN, BOB, "out?")) == ["out?", "out again"]
    await handler.wait_for(lambda h: len([d for d in h.of("ann") if isinstance(d, Delivered)]) == 9)
    replies = [d.message.text for d in handler.of("ann") if isinstance(d, Delivered) and d.message.auto]
    assert replies == ["lunch", "gone home", "out again"]


async def test_buddies_are_seen_coming_going_and_away(open_store: Callable[..., Any]) -> None:
    backend, handler = await open_store()
    store = backend.direct
    await store.arrive(ANN)
    assert await store.add_buddy(ANN, BOB, 10)
    await store.arrive(BOB)
    await store.away(BOB, "lunch")
    await store.away(BOB, None)
    store.depart("bob")
    expected = [
        Seen(BOB, False, None, added=True),
        Seen(BOB, True, None),
        AwayChanged(BOB, "lunch"),
        AwayChanged(BOB, None),
        Seen(BOB, False, None),
    ]
    await handler.wait_for(lambda h: len(h.of("ann")) == len(expected))
    assert handler.of("ann") == expected
    await store.arrive(BOB)
    await store.away(BOB, "away, then gone")
    store.depart("bob")  # offline everywhere: no longer away
    await handler.wait_for(lambda h: h.of("ann")[-1:] == [Seen(BOB, False, None)])
    assert await store.away_everywhere() == {}
    await store.arrive(BOB)
    await handler.wait_for(lambda h: h.of("ann")[-1:] == [Seen(BOB, True, None)])
    await store.remove_buddy(ANN, BOB)
    await handler.wait_for(lambda h: h.of("ann")[-1:] == [Unlisted(BOB)])


async def test_a_block_stops_messages_both_ways_and_hides_the_blocker(open_store: Callable[..., Any]) -> None:
    backend, handler = await open_store()
    store = backend.direct
    await store.arrive(ANN)
    await store.arrive(BOB)
    await store.add_buddy(ANN, BOB, 10)
    assert await store.block(BOB, ANN, 10)
    with pytest.raises(Forbidden, match="does not take"):
        await store.send(ANN, BOB, "hi")
    with pytest.raises(Forbidden, match="You blocked"):
        await store.send(BOB, ANN, "hi")
    await store.unblock(BOB, ANN)
    assert texts(await store.send(ANN, BOB, "hi again")) == ["hi again"]
    await handler.wait_for(lambda h: len(h.of("bob")) == 3)
    assert handler.of("bob")[:2] == [BlockChanged(ANN, True), BlockChanged(ANN, False)]
    assert [d for d in handler.of("ann") if isinstance(d, Seen)] == [
        Seen(BOB, True, None, added=True),
        Seen(BOB, False, None),  # blocked: bob looks offline to ann
        Seen(BOB, True, None),
    ]


async def test_lists_hold_at_most_their_limit(open_store: Callable[..., Any]) -> None:
    backend, _ = await open_store()
    store = backend.direct
    assert await store.add_buddy(ANN, BOB, 2)
    assert await store.add_buddy(ANN, CY, 2)
    assert await store.add_buddy(ANN, BOB, 2)  # there already: nothing changes
    assert not await store.add_buddy(ANN, Party("dee", "Dee"), 2)
    assert await store.block(ANN, BOB, 1)
    assert not await store.block(ANN, CY, 1)
    snapshot = await store.arrive(ANN)
    assert snapshot.buddies == {"bob": Buddy("Bob", False, None), "cy": Buddy("Cy", False, None)}
    assert snapshot.blocked == {"bob": "Bob"}


@pytest.mark.parametrize("backend_url", ["sqlite", "redis"], indirect=True)  # memory:// keeps nothing
async def test_what_an_account_has_outlives_a_restart(open_store: Callable[..., Any], backend_url: str) -> None:
    backend, _ = await open_store()
    await backend.direct.add_buddy(ANN, BOB, 10)
    await backend.direct.block(ANN, CY, 10)
    await backend.direct.send(ANN, BOB, "before the restart")
    backend, _ = await open_store()
    snapshot = await backend.direct.arrive(ANN)
    assert snapshot.buddies == {"bob": Buddy("Bob", False, None)}
    assert snapshot.blocked == {"cy": "Cy"}
    assert snapshot.conversations["bob"].last == 1
    (after,) = await backend.direct.send(BOB, ANN, "after it")
    assert after.id == 2


async def test_a_forgotten_account_leaves_nothing_for_whoever_takes_its_name(open_store: Callable[..., Any]) -> None:
    backend, handler = await open_store()
    store = backend.direct
    await store.arrive(ANN)
    await store.add_buddy(ANN, BOB, 10)
    await store.add_buddy(BOB, ANN, 10)
    await store.send(ANN, BOB, "secret")
    await store.forget("bob")
    await handler.wait_for(lambda h: h.of("ann")[-1:] == [Unlisted(BOB)])
    assert await store.history("ann", "bob", None, None, 10) == ([], False)
    snapshot = await store.arrive(BOB)  # somebody registers the name again
    assert snapshot.buddies == {}
    assert snapshot.conversations == {}
    (fresh,) = await store.send(ANN, BOB, "hello, new bob")
    assert fresh.id == 2  # ids go on: a page that saw the first does not take this one for it
    store.depart("ann")
    assert (await store.arrive(ANN)).buddies == {}
