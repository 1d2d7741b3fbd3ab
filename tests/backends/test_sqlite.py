"""The SQLite backend: durability, grouped commits, retention, migrations, constant-time welcomes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.backends.base import BackendError
from app.backends.sqlite import SQLiteBackend
from app.backends.sqlite.schema import MIGRATIONS, VERSION, migrate, version_of
from app.core.direct import Party
from app.core.messages import Message
from app.core.users import User
from app.core.words import phrases_of
from app.settings import Settings
from tests.support.subscriber import Delivered

pytestmark = pytest.mark.anyio


async def open_backend(path: Path, **overrides: Any) -> tuple[SQLiteBackend, Delivered]:
    backend = SQLiteBackend(f"sqlite:///{path}", Settings(**overrides))
    delivered = Delivered()
    await backend.start(delivered)
    return backend, delivered


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[tuple[SQLiteBackend, Delivered]]:
    backend, delivered = await open_backend(tmp_path / "chat.db")
    yield backend, delivered
    await backend.stop()


async def test_a_message_is_delivered_only_once_committed(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    seen_on_disk: list[bool] = []

    def on_disk(message: Message) -> None:  # another connection must already see it, committed
        with contextlib.closing(sqlite3.connect(path)) as db:
            found = db.execute(
                "SELECT text FROM messages WHERE room = ? AND id = ?", (message.room, message.id)
            ).fetchone()
        seen_on_disk.append(found == (message.text,))

    store = SQLiteBackend(f"sqlite:///{path}", Settings())
    await store.start(Delivered(on_message=on_disk))
    await store.subscribe("den")
    await asyncio.gather(*(store.publish("den", "ann", f"m{number}") for number in range(20)))
    assert seen_on_disk == [True] * 20
    await store.stop()


async def test_a_message_that_could_not_be_stored_is_not_delivered(
    backend: tuple[SQLiteBackend, Delivered], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, delivered = backend
    await store.subscribe("den")

    def broken_disk(messages: list[Message]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_insert", broken_disk)
    with pytest.raises(BackendError, match="disk I/O error"):
        await store.publish("den", "ann", "lost?")
    assert delivered.messages() == []


async def test_commits_are_grouped(backend: tuple[SQLiteBackend, Delivered], monkeypatch: pytest.MonkeyPatch) -> None:
    store, delivered = backend
    await store.subscribe("den")
    commits: list[int] = []
    insert = store._insert

    def counting_insert(messages: list[Message]) -> None:
        commits.append(len(messages))
        insert(messages)

    monkeypatch.setattr(store, "_insert", counting_insert)
    stored = [store.publish("den", "ann", f"m{number}") for number in range(500)]
    await asyncio.gather(*stored)
    assert sum(commits) == 500
    assert commits == [500]  # published in one turn of the event loop: one transaction
    assert [message.text for message in delivered.messages()] == [f"m{number}" for number in range(500)]


async def test_ids_keep_increasing_across_restarts_and_per_room(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    first, _ = await open_backend(path)
    for room in ("a", "b"):
        await first.subscribe(room)
    ids = [(await first.publish(room, "ann", "x")).id for room in ("a", "a", "b")]
    await first.stop()
    second, _ = await open_backend(path)
    recent = await second.subscribe("a")
    await second.subscribe("b")
    assert [message.id for message in recent] == [1, 2]
    assert ids == [1, 2, 1]
    assert (await second.publish("a", "ann", "y")).id == 3
    assert (await second.publish("b", "ann", "y")).id == 2
    assert first.epoch == second.epoch
    await second.stop()


async def test_ids_keep_increasing_even_when_retention_deleted_everything(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    store, _ = await open_backend(path, retention_days=1)
    await store.subscribe("den")
    for _ in range(3):
        await store.publish("den", "ann", "old")
    await store.stop()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE messages SET ts = ts - 2 * 86400000")  # two days ago
    store, _ = await open_backend(path, retention_days=1)
    assert await store.enforce_retention() == 3
    assert await store.subscribe("den") == []
    assert (await store.publish("den", "ann", "new")).id == 4
    await store.stop()


async def test_retention_keeps_the_latest_messages_of_each_room(backend: tuple[SQLiteBackend, Delivered]) -> None:
    store, _ = backend
    for room in ("a", "b"):
        await store.subscribe(room)
        for number in range(20):
            await store.publish(room, "ann", f"{room}{number}")
    store.settings = Settings(retention_messages=5)
    assert await store.enforce_retention() == 30
    for room in ("a", "b"):
        messages, more = await store.history(room, None, 100)
        assert [message.text for message in messages] == [f"{room}{number}" for number in range(15, 20)]
        assert more is False


async def test_retention_runs_by_itself_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chat.db"
    store, _ = await open_backend(path)
    await store.subscribe("den")
    for number in range(10):
        await store.publish("den", "ann", str(number))
    await store.stop()
    passed = asyncio.Event()
    enforce = SQLiteBackend.enforce_retention

    async def observed(self: SQLiteBackend) -> int:
        deleted = await enforce(self)
        passed.set()
        return deleted

    monkeypatch.setattr(SQLiteBackend, "enforce_retention", observed)
    store, _ = await open_backend(path, retention_messages=4)  # the first pass runs at start
    await asyncio.wait_for(passed.wait(), 10)
    messages, _ = await store.history("den", None, 100)
    assert [message.text for message in messages] == ["6", "7", "8", "9"]
    await store.stop()


async def test_a_database_of_an_older_schema_is_migrated_on_start(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db, target=1)  # as the first release left it
        db.executemany(
            "INSERT INTO messages (room, id, name, text, ts) VALUES (?, ?, ?, ?, ?)",
            [("den", number, "ann", f"v1 {number}", 1_700_000_000_000 + number) for number in range(1, 6)],
        )
        assert version_of(db) == 1
    db.close()
    store, _ = await open_backend(path)
    recent = await store.subscribe("den")
    assert [message.text for message in recent] == [f"v1 {number}" for number in range(1, 6)]
    assert (await store.publish("den", "ann", "v2")).id == 6
    await store.stop()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert version_of(db) == VERSION
        assert db.execute("SELECT last_id FROM rooms WHERE name = 'den'").fetchone() == (5,)  # as migrated
    store, _ = await open_backend(path)
    await store.subscribe("den")
    assert (await store.publish("den", "ann", "again")).id == 7
    await store.stop()


async def test_a_database_of_the_release_before_accounts_keeps_its_history_and_gains_accounts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        migrate(db, target=2)  # as the release before accounts left it
        db.executemany(
            "INSERT INTO messages (room, id, name, text, ts) VALUES (?, ?, ?, ?, ?)",
            [("den", number, "ann", f"v2 {number}", 1_700_000_000_000 + number) for number in range(1, 4)],
        )
        db.execute("INSERT INTO rooms (name, last_id) VALUES ('den', 3)")
    store, _ = await open_backend(path)
    recent = await store.subscribe("den")
    assert [(message.text, message.guest) for message in recent] == [(f"v2 {n}", False) for n in range(1, 4)]
    assert b'"guest"' not in recent[0].json  # as they were sent then: nobody was told who was a guest
    guest_says = await store.publish("den", "bob", "now", guest=True)
    assert guest_says.guest
    assert await store.accounts.add_user(User("ann", "ann", "$argon2id$...", False, 1))
    assert not await store.accounts.add_user(User("ann", "Ann", "$argon2id$...", False, 2))
    await store.stop()
    store, _ = await open_backend(path)
    (latest,), _ = await store.history("den", None, 1)
    assert latest.guest
    assert latest.json == guest_says.json
    assert await store.accounts.user("ann") == User("ann", "ann", "$argon2id$...", False, 1)
    await store.stop()


async def test_a_newer_schema_than_known_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="upgrade chatroom"):
        await open_backend(path)


async def test_a_second_server_on_the_same_database_is_refused(backend: tuple[SQLiteBackend, Delivered]) -> None:
    store, _ = backend
    with pytest.raises(RuntimeError, match="in use by another chatroom process"):
        await open_backend(store.path)


def test_the_queries_use_the_primary_key_not_a_scan(tmp_path: Path) -> None:
    """The welcome of a cold room, a page and a resume each read one index range."""
    path = tmp_path / "chat.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db)
        queries = [
            "SELECT id, name, text, ts FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?",
            "SELECT id, name, text, ts FROM messages WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
            "SELECT id, name, text, ts FROM messages WHERE room = ? AND id > ? AND id <= ? ORDER BY id DESC LIMIT ?",
        ]
        for query in queries:
            plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", (1,) * query.count("?")))
            assert "SEARCH messages USING PRIMARY KEY" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # already in order: no sort
    db.close()


async def test_a_cold_welcome_reads_the_latest_of_a_large_room(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO messages (room, id, name, text, ts) VALUES (?, ?, ?, ?, ?)",
            (("big", number, "ann", f"m{number}", number) for number in range(1, 200_001)),
        )
        db.execute("INSERT INTO rooms (name, last_id) VALUES ('big', 200000), ('small', 0)")
        db.execute("COMMIT")
    db.close()
    store, _ = await open_backend(path)
    recent = await store.subscribe("big")
    assert [message.id for message in recent] == list(range(199_901, 200_001))
    assert await store.subscribe("small") == []
    await store.stop()


async def test_publishing_without_subscribing_is_a_programming_error(backend: tuple[SQLiteBackend, Delivered]) -> None:
    store, _ = backend
    with pytest.raises(KeyError):
        store.publish("nowhere", "ann", "hello")


async def test_checkpoints_run_off_the_event_loop_and_keep_the_log_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.backends.sqlite.backend.CHECKPOINT_INTERVAL", 0.01)
    checkpointed = asyncio.Event()
    threads: list[str] = []
    checkpoint = SQLiteBackend._checkpoint

    def observed(self: SQLiteBackend) -> None:
        checkpoint(self)
        threads.append(threading.current_thread().name)
        self_loop.call_soon_threadsafe(checkpointed.set)

    self_loop = asyncio.get_running_loop()
    monkeypatch.setattr(SQLiteBackend, "_checkpoint", observed)
    store, _ = await open_backend(tmp_path / "chat.db")
    await store.subscribe("den")
    for number in range(200):
        await store.publish("den", "ann", f"m{number}")
    await asyncio.wait_for(checkpointed.wait(), 10)
    assert threads
    assert all(name != threading.main_thread().name for name in threads)
    with contextlib.closing(sqlite3.connect(tmp_path / "chat.db")) as db:
        _, log, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert log == done  # everything in the log is in the database too
    await store.stop()


async def test_a_database_of_the_release_before_room_life_keeps_its_history_searchable(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    before = next(number for number, step in enumerate(MIGRATIONS) if "ADD COLUMN edited_ts" in step)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        migrate(db, target=before)  # as the release before edits and search left it
        db.executemany(
            "INSERT INTO messages (room, id, name, text, ts, guest) VALUES (?, ?, ?, ?, ?, ?)",
            [("den", number, "ann", f"old {number}", 1_700_000_000_000 + number, 0) for number in range(1, 4)],
        )
    store, _ = await open_backend(path)
    recent = await store.subscribe("den")
    assert [(message.text, message.edited_ts, message.reactions) for message in recent] == [
        (f"old {number}", None, {}) for number in range(1, 4)
    ]
    assert b"edited_ts" not in recent[0].json  # as they were sent then
    found, _ = await store.changes.search("den", phrases_of("old"), None, 10)
    assert [message.id for message in found] == [3, 2, 1]  # indexed as it migrated
    edited = await store.changes.edit(recent[0], "now edited", 5)
    assert edited is not None
    assert await store.changes.search("den", phrases_of("edited"), None, 10) == ([edited], False)
    await store.stop()


async def test_a_deleted_message_is_gone_from_the_database_file(tmp_path: Path) -> None:
    """Its row is overwritten, its words leave the search index's segments, and the log with
    the pages as they were is emptied: nothing in the files holds the text any more."""
    path = tmp_path / "chat.db"
    store, _ = await open_backend(path)
    await store.subscribe("den")
    for number in range(300):  # the index grows segments, as it does in a room in use
        await store.publish("den", "ann", f"filler {number} words")
    secret = await store.publish("den", "ann", "the password is swordfish")
    for number in range(300):
        await store.publish("den", "ann", f"more filler {number}")
    await store.index.run()  # its words are in the index
    await store.checkpoint()

    def in_files() -> bool:
        return any(b"swordfish" in file.read_bytes() for file in tmp_path.glob("chat.db*") if file.is_file())

    assert in_files()
    await store.changes.delete(secret)
    await store.checkpoint()  # after a deletion: the index merged, the log truncated
    assert not in_files()
    assert await store.changes.search("den", phrases_of("swordfish"), None, 10) == ([], False)
    found, _ = await store.changes.search("den", phrases_of("filler"), None, 10)
    assert len(found) == 10  # the rest is still found
    await store.stop()
    assert not in_files()


async def test_a_search_of_100000_messages_reads_one_range_of_the_index(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        migrate(db)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO messages (room, id, name, text, ts) VALUES (?, ?, ?, ?, ?)",
            (
                (room, number, "ann", f"message {number} {'needle' if number % 1000 == 0 else 'hay'}", number)
                for room in ("other", "big")
                for number in range(1, 50_001)
            ),
        )
        db.execute("COMMIT")
    db.close()
    store, _ = await open_backend(path)
    await store.index.run()  # what the background pass would do: index what is there
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        found, more = await store.changes.search("big", phrases_of("needle"), None, 20)
        timings.append(time.perf_counter() - started)
    assert [message.id for message in found] == list(range(50_000, 30_999, -1000))
    assert more
    common, more = await store.changes.search("big", phrases_of("hay message"), 25_000, 20)
    assert [message.id for message in common] == list(range(24_999, 24_979, -1))
    # Well under the 50 ms asked for (docs/performance.md has the figures); loose enough for a busy machine.
    assert min(timings) < 0.05, timings
    await store.stop()


async def test_new_messages_are_found_before_and_after_the_index_takes_them(tmp_path: Path) -> None:
    store, _ = await open_backend(tmp_path / "chat.db")
    await store.subscribe("den")
    first = await store.publish("den", "ann", "apple one")
    second = await store.publish("den", "ann", "apple two")
    assert store.index.due == {"den": second.id}  # noted by the commit, not indexed yet
    assert await store.changes.search("den", phrases_of("apple"), None, 10) == ([second, first], False)
    await store.index.run()
    third = await store.publish("den", "ann", "apple three")  # one indexed, one not
    assert await store.changes.search("den", phrases_of("apple"), None, 10) == ([third, second, first], False)
    assert await store.changes.search("den", phrases_of("apple"), None, 1) == ([third], True)
    assert await store.changes.search("den", phrases_of("apple"), third.id, 1) == ([second], True)
    edited = await store.changes.edit(third, "pear now", 1)  # not indexed yet: indexed as it is then
    deleted = await store.changes.delete(second)  # indexed: taken out by the trigger
    assert edited is not None
    assert deleted is not None
    await store.index.run()
    assert await store.changes.search("den", phrases_of("apple"), None, 10) == ([first], False)
    assert await store.changes.search("den", phrases_of("pear"), None, 10) == ([edited], False)
    await store.stop()


def test_the_direct_message_queries_read_one_index_range(tmp_path: Path) -> None:
    """A page of a conversation, an account's conversations and lists, who has an account as a buddy."""
    path = tmp_path / "chat.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        migrate(db)
        queries = {
            "SELECT id, sender, recipient, text, ts, auto FROM dms "
            "WHERE conversation = ? AND id < ? AND id > ? ORDER BY id DESC LIMIT ?": "dms USING PRIMARY KEY",
            "SELECT other, name, last_id, ts FROM conversations WHERE owner = ?": "conversations USING PRIMARY KEY",
            "SELECT buddy, name FROM buddies WHERE owner = ?": "buddies USING PRIMARY KEY",
            "SELECT owner FROM buddies WHERE buddy = ?": "buddies USING COVERING INDEX buddies_watchers",
            "SELECT 1 FROM blocks WHERE owner = ? AND blocked = ?": "blocks USING PRIMARY KEY",
        }
        for query, index in queries.items():
            plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", (1,) * query.count("?")))
            assert f"SEARCH {index}" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


async def test_a_database_of_the_release_before_direct_messages_keeps_its_accounts_and_gains_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    before = next(number for number, step in enumerate(MIGRATIONS) if "CREATE TABLE dms" in step)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        migrate(db, target=before)  # as the release before direct messages left it
        db.execute(
            "INSERT INTO users (key, name, password, admin, created) VALUES (?, ?, ?, ?, ?)",
            ("ann", "Ann", "$argon2id$...", 0, 1),
        )
    store, _ = await open_backend(path)
    assert await store.accounts.user("ann") == User("ann", "Ann", "$argon2id$...", False, 1)
    ann, bob = Party("ann", "Ann"), Party("bob", "Bob")
    assert await store.direct.add_buddy(ann, bob, 10)
    (sent,) = await store.direct.send(ann, bob, "the first direct message")
    assert sent.id == 1
    await store.stop()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert version_of(db) == VERSION
