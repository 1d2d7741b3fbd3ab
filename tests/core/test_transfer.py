"""The export format and the import's rules, in one process: every bad line is named by its
number; a file that conflicts with the target is refused before anything is written; and
export and import take no more memory for four times the messages."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from app.backends import create_backend
from app.backends.base import Backend
from app.core.direct import Party
from app.core.messages import Message
from app.core.transfer.export import export
from app.core.transfer.format import VERSION, Header, StoredMessage, Unreadable
from app.core.transfer.load import Conflict, check, load
from app.settings import Settings

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000_000


def lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    return enumerate(io.BytesIO(data), start=1)


async def fill(backend: Backend, room: str, count: int) -> None:
    async with backend.transfer.loading() as loader:
        for start in range(1, count + 1, 1000):
            ids = range(start, min(start + 1000, count + 1))
            await loader.messages(
                room, [StoredMessage(Message(room, id, "Ann", f"message {id} " * 8, NOW + id)) for id in ids]
            )
        await loader.room(room, count, None)


async def exported(backend: Backend) -> bytes:
    out = io.BytesIO()
    async with backend.transfer.snapshot() as snapshot:
        await export(snapshot, out.write, Header("memory", NOW))
    return out.getvalue()


async def imported(backend: Backend, data: bytes) -> str:
    async with backend.transfer.loading() as loader:
        async with backend.transfer.snapshot() as target:
            plan = await check(lines(data), target, NOW)
        return str(await load(lines(data), plan, loader))


@pytest.fixture
async def memory() -> AsyncIterator[Backend]:
    backend = create_backend("memory://", Settings(backend_url="memory://"))
    yield backend
    await backend.stop()


def record(**fields: object) -> bytes:
    return orjson.dumps(fields) + b"\n"


HEADER = record(format="chatroom-export", version=VERSION, backend="sqlite", exported="x", ts=NOW, room=None)


def room(last_id: int) -> bytes:
    return record(
        kind="room",
        room="lobby",
        last_id=last_id,
        owner=None,
        moderators=[],
        invited=[],
        members_only=False,
        topic=None,
    )


ROOM = room(5)


def message(id: int, text: str = "hi", room: str = "lobby", **life: object) -> bytes:
    return record(kind="message", room=room, id=id, name="Ann", text=text, ts=NOW, guest=False, **life)


def end(count: int) -> bytes:
    return record(kind="end", records=count)


HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


def user(name: str) -> bytes:
    return record(kind="user", key=name.lower(), name=name, password=HASH, admin=False, created=NOW)


USERS = user("Ann") + user("Bob")
CONVERSATION = record(
    kind="conversation", accounts=[{"key": "ann", "name": "Ann"}, {"key": "bob", "name": "Bob"}], last_id=3, ts=NOW
)


def dm(id: int, text: str = "hi", sender: str = "Ann", to: str = "Bob") -> bytes:
    return record(kind="dm", id=id, **{"from": sender, "to": to}, text=text, ts=NOW, auto=False)


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        (b"", 1, "empty"),
        (b'{"kind": "room"}\n', 1, "header"),
        (HEADER.replace(b'"version":1', b'"version":99'), 1, "upgrade chatroom"),
        (HEADER + ROOM + message(1) + b"{not json\n" + end(3), 4, "not JSON"),
        (HEADER + ROOM + message(1) + message(2), 5, "cut short"),
        (HEADER + ROOM + message(1) + end(7), 4, "counts 7 records"),
        (HEADER + ROOM + message(2) + message(1) + end(3), 4, "must increase"),
        (HEADER + message(1) + end(1), 2, "outside that room"),
        (HEADER + ROOM + message(9) + end(2), 3, "beyond the room's last id"),
        (HEADER + ROOM + message(1, room="den") + end(2), 3, "outside that room"),
        (HEADER + ROOM + message(1).replace(b'"id":1', b'"id":"1"') + end(2), 3, "'id' to be an integer"),
        (HEADER + ROOM + message(1).replace(b'"Ann"', b'"A\\nnn"') + end(2), 3, "not a name"),
        (HEADER + ROOM.replace(b'"lobby"', b'"Lob by"') + end(1), 2, "not a room's name"),
        (HEADER + ROOM + ROOM + end(2), 3, "a second time"),
        (HEADER + record(kind="session", hash="x") + end(1), 2, "unknown kind"),
        (HEADER + end(0) + ROOM, 3, "after the end record"),
        (HEADER + USERS + CONVERSATION + dm(1) + dm(1) + end(5), 6, "must increase"),
        (HEADER + USERS + CONVERSATION + dm(4) + end(4), 5, "beyond the conversation's last id"),
        (HEADER + USERS + CONVERSATION + dm(1, sender="Cy") + end(4), 5, "in the conversation of 'Ann' and 'Bob'"),
        (HEADER + USERS + CONVERSATION + dm(1).replace(b'"auto":false', b'"auto":0') + end(4), 5, "'auto' to be"),
        (HEADER + USERS + dm(1) + end(3), 4, "outside a conversation"),
        (HEADER + USERS + ROOM + dm(1) + end(4), 5, "outside a conversation"),
        (HEADER + user("Ann") + CONVERSATION + end(2), 3, "no account of it before"),
        (HEADER + USERS + CONVERSATION + CONVERSATION + end(4), 5, "a second time"),
        (HEADER + USERS + CONVERSATION.replace(b'"key":"bob"', b'"key":"bo"') + end(3), 4, "its name's key"),
        (HEADER + USERS + record(kind="buddy", owner="cy", key="ann", name="Ann") + end(3), 4, "no account"),
        (HEADER + USERS + record(kind="block", owner="ann", key="bob", name="B\nob") + end(3), 4, "not a name"),
        (HEADER + ROOM + message(1, "still here", deleted=True) + end(2), 3, "deleted, but the record keeps"),
        (HEADER + ROOM + message(1, "", deleted=True, reactions={"👍": ["bob"]}) + end(2), 3, "deleted, but"),
        (HEADER + ROOM + message(1, deleted=1) + end(2), 3, "'deleted' to be true or false"),
        (HEADER + ROOM + message(1, edited_ts="soon") + end(2), 3, "'edited_ts' to be an integer"),
        (HEADER + ROOM + message(1, reactions={"👍": 2}) + end(2), 3, "'reactions' to be an object of reactions"),
        (HEADER + ROOM + message(1, reactions=["👍"]) + end(2), 3, "'reactions' to be an object"),
        (HEADER + ROOM + message(1, reactions={"👍": []}) + end(2), 3, "'reactions' to be an object"),
        (HEADER + ROOM + message(1, reactions={"🍕": ["bob"]}) + end(2), 3, "not a reaction chatroom gives"),
        (HEADER + ROOM + message(1, reactions={"👍": ["bob", "bob"]}) + end(2), 3, "a person counts once"),
        (HEADER + ROOM + message(1, reactions={"👍": ["b\nob"]}) + end(2), 3, "not a name"),
        (HEADER + USERS + record(kind="read", key="cy", room="lobby", id=1) + end(3), 4, "no account of it before"),
        (HEADER + USERS + record(kind="read", key="ann", room="lobby", id=0) + end(3), 4, "at least 1"),
        (HEADER + USERS + (record(kind="read", key="ann", room="lobby", id=1) * 2) + end(4), 5, "a second time"),
    ],
)
async def test_a_bad_line_is_named_by_its_number_and_nothing_is_written(
    memory: Backend, data: bytes, line: int, reason: str
) -> None:
    with pytest.raises(Unreadable) as refused:
        await imported(memory, data)
    assert refused.value.line == line
    assert reason in str(refused.value)
    assert await memory.history("lobby", None, 10) == ([], False)


async def test_room_life_moves_and_a_target_ahead_is_kept_as_it_is(memory: Backend) -> None:
    life = (
        HEADER
        + USERS
        + room(4)
        + message(1)
        + message(2, "edited", edited_ts=NOW + 5)
        + message(3, "", deleted=True)
        + message(4, reactions={"👍": ["bob", "ann"]})
        + record(kind="read", key="ann", room="lobby", id=2)
        + end(8)
    )
    assert "4 messages, 1 room, 2 accounts" in await imported(memory, life)
    history = (await memory.history("lobby", None, 10))[0]
    assert [(m.text, m.edited_ts, m.deleted, m.reactions) for m in history] == [
        ("hi", None, False, {}),
        ("edited", NOW + 5, False, {}),
        ("", None, True, {}),
        ("hi", None, False, {"👍": 2}),
    ]
    assert await memory.reads.position("ann", "lobby") == 2
    again = await imported(memory, life)
    assert again.startswith("0 messages")  # idempotent
    # The target goes on: an edit, a deletion, a read further on. The same file still fits.
    await memory.changes.edit(history[1], "edited again", NOW + 9)
    await memory.changes.delete(history[0])
    await memory.reads.mark("ann", "lobby", 4)
    assert (await imported(memory, life)).startswith("0 messages")
    assert [m.text for m in (await memory.history("lobby", None, 10))[0]] == ["", "edited again", "", "hi"]
    assert await memory.reads.position("ann", "lobby") == 4  # read positions only go forward
    # A file ahead of the target (an edit, a deletion, other reactions) is refused: an import
    # never changes a message the target holds.
    for number, ahead in (
        (4, message(1, "hi again", edited_ts=NOW + 1)),
        (5, message(2, "", deleted=True)),
    ):
        base = [message(1), message(2, "edited", edited_ts=NOW + 5)]
        base[number - 4] = ahead
        fresh = create_backend("memory://", Settings(backend_url="memory://"))
        await imported(fresh, HEADER + room(2) + message(1) + message(2, "edited", edited_ts=NOW + 5) + end(3))
        with pytest.raises(Conflict) as refused:
            await imported(fresh, HEADER + room(2) + b"".join(base) + end(3))
        assert refused.value.line == number - 1
        assert "changed in the file after the target's copy" in str(refused.value)
    with pytest.raises(Conflict) as refused:
        await imported(memory, life.replace(b'["bob","ann"]', b'["cy"]'))
    assert refused.value.line == 8
    assert "changed in the file after the target's copy" in str(refused.value)
    with pytest.raises(Conflict):  # another text, never edited: another chat's history
        await imported(memory, life.replace(b'"id":4,"name":"Ann","text":"hi"', b'"id":4,"name":"Ann","text":"ho"'))


async def test_a_file_of_another_history_conflicts_and_nothing_is_written(memory: Backend) -> None:
    await imported(memory, HEADER + room(2) + message(1) + message(2) + end(3))
    other = HEADER + room(3) + message(1) + message(2, "another text") + message(3) + end(4)
    with pytest.raises(Conflict) as refused:
        await imported(memory, other)
    assert refused.value.line == 4
    assert [stored.text for stored in (await memory.history("lobby", None, 10))[0]] == ["hi", "hi"]
    # The same history going on adds what is new, and only that.
    going_on = HEADER + room(3) + message(1) + message(2) + message(3) + end(4)
    assert "1 message," in await imported(memory, going_on)
    assert "0 messages" in await imported(memory, going_on)
    assert (await memory.publish("lobby", "Ann", "next")).id == 4


async def test_conversations_go_on_conflict_whole_and_stay_out_of_a_room_export(memory: Backend) -> None:
    buddy = record(kind="buddy", owner="ann", key="bob", name="Bob")
    block = record(kind="block", owner="bob", key="cy", name="Cy")  # an account removed since
    first = HEADER + USERS + CONVERSATION + dm(1) + dm(3, sender="Bob", to="Ann") + buddy + block + end(7)
    assert "2 direct messages, 1 conversation, 1 buddy, 1 block" in await imported(memory, first)
    assert "0 direct messages, 0 conversations, 0 buddies, 0 blocks" in await imported(memory, first)
    other = HEADER + USERS + CONVERSATION + dm(1, "another text") + dm(3) + end(5)
    with pytest.raises(Conflict) as refused:
        await imported(memory, other)
    assert refused.value.line == 5
    renamed = HEADER + USERS + CONVERSATION + record(kind="buddy", owner="ann", key="bob", name="BOB") + end(4)
    with pytest.raises(Conflict, match="under another name"):
        await imported(memory, renamed)
    going_on = CONVERSATION.replace(b'"last_id":3', b'"last_id":4')
    later = HEADER + USERS + going_on + dm(1) + dm(3, sender="Bob", to="Ann") + dm(4, "new") + end(6)
    assert "1 direct message, 0 conversations" in await imported(memory, later)
    page, _ = await memory.direct.history("ann", "bob", None, None, 10)
    assert [(message.id, message.text) for message in page] == [(1, "hi"), (3, "hi"), (4, "new")]
    assert (await memory.direct.send(Party("bob", "Bob"), Party("ann", "Ann"), "next"))[0].id == 5
    assert exported_kinds(await exported(memory)).count("dm") == 4  # the accounts are exported with them
    out = io.BytesIO()
    await fill(memory, "lobby", 1)
    async with memory.transfer.snapshot() as snapshot:
        await export(snapshot, out.write, Header("memory", NOW, room="lobby"))
    kinds = exported_kinds(out.getvalue())
    assert kinds.count("message") == 1
    assert not {"user", "conversation", "dm", "buddy", "block"} & set(kinds)  # a room's export has none of it


def exported_kinds(data: bytes) -> list[str]:
    return [orjson.loads(line)["kind"] for line in data.splitlines()[1:]]


async def peaks(tmp_path: Path, count: int) -> tuple[int, int]:
    """The most Python memory that exporting `count` messages from SQLite, and importing them
    into another SQLite, took (what SQLite itself allocates is its own, and bounded by its cache)."""
    settings = Settings(backend_url="sqlite:///x")
    source = create_backend(f"sqlite:///{tmp_path / f'source-{count}.db'}", settings)
    target = create_backend(f"sqlite:///{tmp_path / f'target-{count}.db'}", settings)
    await source.open()
    await target.open()
    try:
        await fill(source, "lobby", count)
        path = tmp_path / f"export-{count}.jsonl"
        tracemalloc.start()
        with path.open("wb") as out:
            async with source.transfer.snapshot() as snapshot:
                await export(snapshot, out.write, Header("sqlite", NOW))
        export_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with path.open("rb") as file:
            async with target.transfer.loading() as loader:
                async with target.transfer.snapshot() as snapshot:
                    plan = await check(enumerate(file, start=1), snapshot, NOW)
                file.seek(0)
                added = await load(enumerate(file, start=1), plan, loader)
        import_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert added.messages == count
        return export_peak, import_peak
    finally:
        await source.close()
        await target.close()


async def test_export_and_import_take_no_more_memory_for_four_times_the_messages(tmp_path: Path) -> None:
    small = await peaks(tmp_path, 3_000)
    large = await peaks(tmp_path, 12_000)
    print(f"peak Python memory, export and import: 3,000 messages {small}, 12,000 messages {large}")
    for few, many in zip(small, large, strict=True):
        # A page is 1,000 messages: both runs hold about one at a time, and 9,000 more
        # messages kept in memory would take several megabytes.
        assert many < few * 1.25 + 200_000
