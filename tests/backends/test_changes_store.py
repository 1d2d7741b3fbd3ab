"""The seam of changes to stored messages (`ChangeStore`) and of read positions
(`ReadStore`), the same on every backend: edits, tombstones, reactions, search."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.backends import create_backend
from app.backends.base import Backend
from app.core.messages import Message
from app.core.words import phrases_of
from app.settings import Settings
from tests.support.subscriber import Delivered

pytestmark = pytest.mark.anyio


@pytest.fixture
async def backend(backend_url: str) -> AsyncIterator[Backend]:
    backend = create_backend(backend_url, Settings(backend_url=backend_url))
    await backend.start(Delivered())
    yield backend
    await backend.stop()


def delivered(backend: Backend) -> Delivered:
    assert isinstance(backend.subscriber, Delivered)
    return backend.subscriber


async def say(backend: Backend, room: str, *texts: str, name: str = "ann") -> list[Message]:
    if not backend.subscribed(room):
        await backend.subscribe(room)
    return [await backend.publish(room, name, text) for text in texts]


async def changes_heard(backend: Backend, count: int) -> list[tuple[str, str, Message]]:
    """What the backend told this process's subscriber of changes, once it told `count`."""
    await delivered(backend).wait_for(lambda d: len(d.changes) >= count)
    return delivered(backend).changes


async def test_an_edit_is_stored_told_and_read_back_as_the_latest_text(backend: Backend) -> None:
    first, second = await say(backend, "den", "helo", "second")
    edited = await backend.changes.edit(first, "hello", 1_800_000_000_000)
    assert edited is not None
    assert (edited.id, edited.name, edited.text, edited.ts) == (first.id, "ann", "hello", first.ts)
    assert edited.edited_ts == 1_800_000_000_000
    assert edited.json.endswith(b',"edited_ts":1800000000000,"ts":%d}' % first.ts)  # the time stays last
    assert await changes_heard(backend, 1) == [("den", "edit", edited)]
    assert await backend.changes.message("den", first.id) == edited
    page, _ = await backend.history("den", None, 10)
    assert page == [edited, second]
    after, gap = await backend.since("den", 0, second.id, 10)
    assert (after, gap) == ([edited, second], False)
    await backend.unsubscribe("den")
    assert await backend.subscribe("den") == [edited, second]  # what a process opening the room reads


async def test_a_deleted_message_is_a_tombstone_everywhere_and_leaves_no_hole(backend: Backend) -> None:
    first, middle, last = await say(backend, "den", "one", "secret words", "three")
    await backend.changes.react("den", middle.id, "bob", "👍")
    tombstone = await backend.changes.delete(middle)
    assert tombstone is not None
    assert (tombstone.id, tombstone.name, tombstone.text, tombstone.ts) == (middle.id, "ann", "", middle.ts)
    assert tombstone.deleted
    assert tombstone.reactions == {}
    assert tombstone == Message("den", middle.id, "ann", "", middle.ts, deleted=True)
    heard = await changes_heard(backend, 2)
    assert heard[-1] == ("den", "delete", tombstone)
    page, more = await backend.history("den", None, 10)
    assert (page, more) == ([first, tombstone, last], False)
    older, more = await backend.history("den", last.id, 1)
    assert (older, more) == ([tombstone], True)
    # Resuming after the first message: no gap, though the deleted one's text is gone.
    assert await backend.since("den", first.id, last.id, 10) == ([tombstone, last], False)
    assert await backend.since("den", first.id, last.id, 1) == ([last], True)
    assert await backend.changes.delete(middle) is None  # once
    assert await backend.changes.edit(middle, "back", 1) is None
    assert await backend.changes.react("den", middle.id, "bob", "👍") is None
    assert await backend.changes.message("den", middle.id) == tombstone
    await backend.unsubscribe("den")
    assert await backend.subscribe("den") == [first, tombstone, last]


async def test_the_newest_message_deleted_is_read_back_as_its_tombstone(backend: Backend) -> None:
    first, newest = await say(backend, "den", "one", "two")
    tombstone = await backend.changes.delete(newest)
    assert tombstone is not None
    await backend.unsubscribe("den")
    assert await backend.subscribe("den") == [first, tombstone]
    (after,) = await say(backend, "den", "three")
    assert after.id == newest.id + 1  # ids go on from it
    assert await backend.since("den", first.id, after.id, 10) == ([tombstone, after], False)


async def test_reactions_count_each_person_once_per_emoji_in_a_fixed_order(backend: Backend) -> None:
    (message,) = await say(backend, "den", "hello")
    assert (await backend.changes.react("den", message.id, "bob", "🎉")) is not None
    reacted = await backend.changes.react("den", message.id, "cy", "👍")
    assert reacted is not None
    assert list(reacted.reactions.items()) == [("👍", 1), ("🎉", 1)]  # the order of REACTIONS
    assert reacted.json.endswith(b',"reactions":{"\xf0\x9f\x91\x8d":1,"\xf0\x9f\x8e\x89":1},"ts":%d}' % message.ts)
    again = await backend.changes.react("den", message.id, "bob", "👍")
    assert again is not None
    assert again.reactions == {"👍": 2, "🎉": 1}
    undone = await backend.changes.react("den", message.id, "bob", "👍")  # the same person again: taken back
    assert undone is not None
    assert undone.reactions == {"👍": 1, "🎉": 1}
    edited = await backend.changes.edit(undone, "hello there", 5)
    assert edited is not None
    assert (edited.text, edited.reactions) == ("hello there", {"👍": 1, "🎉": 1})  # an edit keeps them
    last = await backend.changes.react("den", message.id, "cy", "👍")
    assert last is not None
    assert (last.text, last.edited_ts, last.reactions) == ("hello there", 5, {"🎉": 1})  # and they keep it
    heard = await changes_heard(backend, 6)
    assert [kind for _, kind, _ in heard] == ["reactions"] * 4 + ["edit", "reactions"]
    assert heard[-1][2] == last
    page, _ = await backend.history("den", None, 1)
    assert page == [last]
    assert await backend.changes.react("den", message.id + 1, "bob", "👍") is None  # no such message


async def test_search_finds_what_messages_say_now_newest_first_in_pages(backend: Backend) -> None:
    messages = await say(
        backend, "den", *[f"apple {number}" if number % 3 == 0 else f"pear {number}" for number in range(30)]
    )
    await say(backend, "elsewhere", "apple in another room")
    apples = [message for message in messages if message.text.startswith("apple")]  # 10 of them
    edited = await backend.changes.edit(apples[2], "not any more", 1)
    assert edited is not None
    deleted = await backend.changes.delete(apples[5])
    assert deleted is not None
    fruit = await backend.changes.edit(messages[1], "Pear and APPLÉ", 2)  # case and accents folded
    assert fruit is not None
    phrases = phrases_of("apple")
    expected = [message for message in reversed([*apples, fruit]) if message.id not in (apples[2].id, apples[5].id)]
    expected.sort(key=lambda message: -message.id)
    found, more = await backend.changes.search("den", phrases, None, 5)
    assert (found, more) == (expected[:5], True)
    rest, more = await backend.changes.search("den", phrases, found[-1].id, 5)
    assert (rest, more) == (expected[5:], False)
    assert await backend.changes.search("den", phrases_of("apple pear"), None, 5) == ([fruit], False)
    assert await backend.changes.search("den", phrases_of("secret"), None, 5) == ([], False)
    assert await backend.changes.search("den", phrases_of("not any"), None, 5) == ([edited], False)
    assert await backend.changes.search("den", phrases_of("any not"), None, 5) == ([edited], False)  # every word
    assert await backend.changes.search("nowhere", phrases, None, 5) == ([], False)


async def test_a_read_position_keeps_the_highest_per_account_and_room(backend: Backend) -> None:
    store = backend.reads
    assert await store.position("ann", "den") is None
    await store.mark("ann", "den", 7)
    await store.mark("ann", "den", 3)  # from an older tab: kept at 7
    await store.mark("ann", "lobby", 2)
    await store.mark("bob", "den", 9)
    assert await store.position("ann", "den") == 7
    assert await store.position("ann", "lobby") == 2
    assert await store.position("bob", "den") == 9
    await store.mark("ann", "den", 12)
    assert await store.position("ann", "den") == 12
