"""The seam of export and import (`TransferStore`), the same on every backend: a snapshot
holds every room, message, account, rule, sanction, audit entry, the hashing key, every
conversation with its direct messages, buddy lists and block lists, in order and in pages;
what a loader writes keeps its ids, and the store goes on after them; and an import refuses
to run beside a server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.backends import create_backend
from app.backends.base import Backend, InUse, StoreSnapshot
from app.core.direct import Buddy, Conversation, DirectMessage, Party
from app.core.messages import Message
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
)
from app.core.transfer.format import (
    StoredBlock,
    StoredBuddy,
    StoredConversation,
    StoredMessage,
    StoredRead,
    StoredRoom,
)
from app.core.users import User
from app.settings import Settings
from tests.support.subscriber import Delivered

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000_000
ANN = User("ann", "Ann", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", admin=True, created=NOW)
RULES = RoomRules(
    owner=Person("ann", "Ann"),
    moderators=(Person("bob", "Bob"),),
    invited=(Person("cy", "Cy"),),
    members_only=True,
    topic=Topic("Be kind", "Ann", NOW),
)


class Stores:
    """The store of `url` as a server uses it (`start`) and as a command does (`open`), one
    at a time; memory:// has one store, in the process, for both."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = Settings(backend_url=url, history_limit=10_000)
        self.memory: Backend | None = None
        self.opened: list[Backend] = []

    async def server(self) -> Backend:
        if self.url.startswith("memory"):
            if self.memory is None:
                self.memory = create_backend(self.url, self.settings)
                await self.memory.start(Delivered())
            return self.memory
        backend = create_backend(self.url, self.settings)
        await backend.start(Delivered())
        self.opened.append(backend)
        return backend

    async def alone(self) -> Backend:
        if self.url.startswith("memory"):
            return await self.server()
        backend = create_backend(self.url, self.settings)
        await backend.open()
        self.opened.append(backend)
        return backend

    async def stop(self, backend: Backend) -> None:
        if backend is self.memory:
            return
        self.opened.remove(backend)
        if backend.subscriber is not None:
            await backend.stop()
        else:
            await backend.close()


@pytest.fixture
async def stores(backend_url: str) -> AsyncIterator[Stores]:
    stores = Stores(backend_url)
    yield stores
    for backend in list(stores.opened):
        await stores.stop(backend)
    if stores.memory is not None:
        await stores.memory.stop()


async def publish(backend: Backend, room: str, count: int) -> list[Message]:
    await backend.subscribe(room)
    futures = [
        backend.publish(room, f"guest-{n % 7}" if n % 2 else "Ann", f"m{n}", guest=n % 2 == 1) for n in range(count)
    ]
    return [await future for future in futures]


async def every_stored(snapshot: StoreSnapshot, room: str, after: int = 0) -> list[StoredMessage]:
    found: list[StoredMessage] = []
    async for page in snapshot.messages(room, after):
        assert 0 < len(page) <= 1000
        found.extend(page)
    return found


async def every_message(snapshot: StoreSnapshot, room: str, after: int = 0) -> list[Message]:
    return [stored.message for stored in await every_stored(snapshot, room, after)]


async def every_dm(snapshot: StoreSnapshot, conversation: str, after: int = 0) -> list[DirectMessage]:
    found: list[DirectMessage] = []
    async for page in snapshot.dms(conversation, after):
        assert 0 < len(page) <= 1000
        found.extend(page)
    return found


ANN_P, BOB_P, CY_P = Party("ann", "Ann"), Party("bob", "Bob"), Party("cy", "Cy")


async def every_entry(snapshot: StoreSnapshot) -> list[AuditEntry]:
    found: list[AuditEntry] = []
    async for page in snapshot.audit():
        found.extend(page)
    return found


async def test_a_snapshot_holds_everything_in_order_in_pages(stores: Stores) -> None:
    server = await stores.server()
    lobby = await publish(server, "lobby", 2500)
    den = await publish(server, "den", 3)
    await server.accounts.add_user(ANN)
    store = server.moderation
    await store.claim("attic", Person("ann", "Ann"))  # rules, no messages
    await store.set_role("den", Role.MODERATOR, Person("bob", "Bob"), True)
    ban = Sanction(SERVER_WIDE, Kind.BAN, account_target("bob"), "Bob", "bob", "Ann", "spam", NOW, None)
    await store.add_sanction(ban)
    first = await store.record(AuditEntry(0, NOW, "den", "Ann", "moderator", "Bob"))
    secret = await store.secret()
    async with server.transfer.snapshot() as snapshot:
        later = await publish(server, "lobby", 1)  # after the snapshot began: not in it (memory: ids)
        rooms = {room.name: room for room in await snapshot.rooms()}
        assert sorted(rooms) == ["attic", "den", "lobby"]
        assert rooms["lobby"] == StoredRoom("lobby", 2500)
        assert rooms["lobby"].messages == 2500
        assert rooms["den"].rules.moderators == (Person("bob", "Bob"),)
        assert rooms["attic"] == StoredRoom("attic", 0, RoomRules(owner=Person("ann", "Ann")))
        assert await every_message(snapshot, "lobby") == lobby
        assert await every_message(snapshot, "lobby", after=2400) == lobby[2400:]
        assert await every_message(snapshot, "den") == den
        assert await every_message(snapshot, "attic") == []
        assert await snapshot.users() == [ANN]
        assert await snapshot.sanctions() == [ban]
        assert await every_entry(snapshot) == [first]
        assert await snapshot.audit_last() == first.id
        assert await snapshot.secret() == secret
    assert later[0].id == 2501


async def test_a_snapshot_holds_conversations_buddies_and_blocks(stores: Stores) -> None:
    server = await stores.server()
    direct = server.direct
    sent = [message for n in range(1200) for message in await direct.send(ANN_P, BOB_P, f"dm {n}")]
    await direct.away(CY_P, "out")  # an automatic reply: stored as any other message
    auto = await direct.send(BOB_P, CY_P, "there?")
    assert await direct.add_buddy(ANN_P, BOB_P, 10)
    assert await direct.add_buddy(BOB_P, ANN_P, 10)
    assert await direct.block(CY_P, ANN_P, 10)
    async with server.transfer.snapshot() as snapshot:
        after = await direct.send(BOB_P, ANN_P, "after the snapshot began")  # not in it
        await direct.add_buddy(CY_P, BOB_P, 10)
        conversations = await snapshot.conversations()
        assert conversations == [
            StoredConversation((ANN_P, BOB_P), 1200, sent[-1].ts),
            StoredConversation((BOB_P, CY_P), 2, auto[-1].ts),
        ]
        assert [conversation.messages for conversation in conversations] == [1200, 2]
        assert await every_dm(snapshot, conversations[0].key) == sent
        assert await every_dm(snapshot, conversations[0].key, after=1100) == sent[1100:]
        assert await every_dm(snapshot, conversations[1].key) == auto
        assert auto[1].auto
        assert await snapshot.buddies() == [StoredBuddy("ann", BOB_P), StoredBuddy("bob", ANN_P)]
        assert await snapshot.blocks() == [StoredBlock("cy", ANN_P)]
    assert after[0].id == 1201


async def test_what_a_loader_writes_of_conversations_keeps_its_ids_and_they_go_on(stores: Stores) -> None:
    alone = await stores.alone()
    conversation = StoredConversation((ANN_P, BOB_P), 1600, NOW + 1509)
    dms = [
        DirectMessage.create(id, "Ann" if id % 2 else "Bob", "Bob" if id % 2 else "Ann", f"d{id}", NOW + id, id == 7)
        for id in (3, 4, 7, *range(10, 1510))
    ]
    async with alone.transfer.loading() as loader:
        await loader.dms(conversation, dms[:1000])
        await loader.dms(conversation, dms[1000:])
        await loader.conversation(conversation)  # retention had deleted up to 1600
        await loader.buddies([StoredBuddy("ann", BOB_P), StoredBuddy("bob", ANN_P)])
        await loader.blocks([StoredBlock("ann", CY_P)])
    await stores.stop(alone)
    server = await stores.server()
    page, more = await server.direct.history("bob", "ann", None, None, 100)
    assert page == dms[-100:]
    assert more
    page, more = await server.direct.history("ann", "bob", 10, None, 100)
    assert (page, more) == (dms[:3], False)
    snapshot = await server.direct.arrive(ANN_P)
    assert snapshot.conversations == {"bob": Conversation("Bob", 1600, NOW + 1509)}
    assert snapshot.buddies == {"bob": Buddy("Bob", False, None)}
    assert snapshot.blocked == {"cy": "Cy"}
    assert (await server.direct.send(BOB_P, ANN_P, "next"))[0].id == 1601
    assert (await server.direct.arrive(BOB_P)).buddies == {"ann": Buddy("Ann", True, None)}


async def test_what_a_loader_writes_keeps_its_ids_and_the_store_goes_on_after_them(stores: Stores) -> None:
    alone = await stores.alone()
    messages = [
        StoredMessage(Message("lobby", id, "Ann", f"m{id}", NOW + id, guest=id == 7))
        for id in (3, 4, 7, *range(10, 1510))
    ]
    guest_ban = Sanction("lobby", Kind.BAN, "g:" + "ab" * 32, "guest-1", "guest-1", "Ann", "", NOW, None)
    entries = [AuditEntry(5, NOW, "lobby", "Ann", "ban", "guest-1"), AuditEntry(9, NOW, "den", "Ann", "claim")]
    async with alone.transfer.loading() as loader:
        await loader.messages("lobby", messages[:1000])
        await loader.messages("lobby", messages[1000:])
        await loader.room("lobby", 1600, RULES)  # retention had deleted up to 1600
        await loader.room("den", 0, RoomRules(owner=Person("ann", "Ann")))
        await loader.users([ANN])
        await loader.sanctions([guest_ban])
        await loader.audit(entries)
        await loader.secret(b"k" * 32)
    await stores.stop(alone)
    server = await stores.server()
    plain = [stored.message for stored in messages]
    assert await server.subscribe("lobby") == plain[-server.settings.welcome_history :]
    page, more = await server.history("lobby", 10, 10)
    assert page == plain[:3]
    assert not more
    missed, gap = await server.since("lobby", 1500, 1600, 100)
    assert missed == plain[-9:]
    assert not gap
    assert (await server.publish("lobby", "Ann", "next")).id == 1601
    assert await server.moderation.rules("lobby") == RULES
    assert (await server.moderation.rules("den")).owner == Person("ann", "Ann")
    assert await server.accounts.user("ann") == ANN
    assert await server.moderation.sanction(["lobby"], Kind.BAN, [guest_ban.target], NOW) == guest_ban
    assert await server.moderation.secret() == b"k" * 32
    assert await server.moderation.audit(None, None, 10) == entries[::-1]
    assert (await server.moderation.record(AuditEntry(0, NOW, "den", "Ann", "topic"))).id == 10


@pytest.mark.parametrize("backend_url", ["sqlite", "redis"], indirect=True)  # memory:// is reached by no other process
async def test_an_import_refuses_to_run_beside_a_server(stores: Stores) -> None:
    server = await stores.server()
    alone = await stores.alone()
    with pytest.raises(InUse):
        async with alone.transfer.loading():
            pass
    await stores.stop(server)  # a server that stops says so: its store is free at once
    async with alone.transfer.loading() as loader:
        await loader.users([ANN])
    assert await alone.accounts.user("ann") == ANN


THUMBS, HEART = "👍", "❤️"


async def test_a_snapshot_holds_edits_tombstones_reactions_and_read_positions(stores: Stores) -> None:
    server = await stores.server()
    first, edited, deleted, reacted, *_ = await publish(server, "lobby", 1200)
    await server.changes.edit(edited, "edited text", NOW)
    await server.changes.delete(deleted)
    await server.changes.react("lobby", reacted.id, "bob", THUMBS)
    await server.changes.react("lobby", reacted.id, "ann", THUMBS)
    await server.changes.react("lobby", reacted.id, "ann", HEART)
    await server.changes.react("lobby", first.id, "cy", HEART)
    await server.changes.react("lobby", first.id, "cy", HEART)  # taken back: none left
    await server.reads.mark("ann", "lobby", 3)
    await server.reads.mark("bob", "den", 1)
    async with server.transfer.snapshot() as snapshot:
        stored = await every_stored(snapshot, "lobby")
        assert [message.id for message in stored] == list(range(1, 1201))  # the tombstone in its place
        assert stored[0] == StoredMessage(first)
        assert stored[1].message == edited.edited("edited text", NOW)
        assert stored[1].message.edited_ts == NOW
        assert stored[2] == StoredMessage(deleted.tombstone())
        assert stored[2].message.deleted
        assert stored[2].message.text == ""
        assert stored[3].reactions == ((THUMBS, ("ann", "bob")), (HEART, ("ann",)))
        assert stored[3].message.reactions == {THUMBS: 2, HEART: 1}
        assert [message.id for message in await every_stored(snapshot, "lobby", after=2)] == list(range(3, 1201))
        assert await snapshot.reads() == [StoredRead("ann", "lobby", 3), StoredRead("bob", "den", 1)]


async def test_what_a_loader_writes_of_room_life_is_as_it_was(stores: Stores) -> None:
    alone = await stores.alone()
    plain = Message("lobby", 1, "Ann", "plain", NOW)
    edited = Message("lobby", 2, "Ann", "edited text", NOW + 2, edited_ts=NOW + 9)
    tombstone = Message("lobby", 3, "guest-1", "", NOW + 3, guest=True, deleted=True)
    reacted = Message("lobby", 4, "Bob", "reacted to", NOW + 4, reactions={THUMBS: 2})
    messages = [
        StoredMessage(plain),
        StoredMessage(edited),
        StoredMessage(tombstone),
        StoredMessage(reacted, ((THUMBS, ("ann", "bob")),)),
    ]
    async with alone.transfer.loading() as loader:
        await loader.messages("lobby", messages)
        await loader.room("lobby", 4, None)
        await loader.users([ANN])
        await loader.reads([StoredRead("ann", "lobby", 2)])
    await stores.stop(alone)
    server = await stores.server()
    assert await server.subscribe("lobby") == [plain, edited, tombstone, reacted]
    assert (await server.history("lobby", None, 10))[0] == [plain, edited, tombstone, reacted]
    assert await server.changes.message("lobby", 3) == tombstone
    assert await server.changes.edit(tombstone, "back", NOW) is None  # a tombstone stays one
    assert await server.reads.position("ann", "lobby") == 2
    # Who reacted came along: Ann's reaction goes, Cy's comes, Bob's stays.
    assert (await server.changes.react("lobby", 4, "ann", THUMBS)).reactions == {THUMBS: 1}  # type: ignore[union-attr]
    assert (await server.changes.react("lobby", 4, "cy", THUMBS)).reactions == {THUMBS: 2}  # type: ignore[union-attr]
    async with server.transfer.snapshot() as snapshot:
        assert (await every_stored(snapshot, "lobby"))[3].reactions == ((THUMBS, ("bob", "cy")),)
    assert (await server.publish("lobby", "Ann", "next")).id == 5
