"""`sqlite:///path/to/file.db`: durable history for one process, the default.

A message is delivered only once it is committed, so a crash never takes back a message
somebody saw. Commits are grouped: everything published during one turn of the event loop
goes in one transaction, at the end of that turn.

Commits run on the event loop's thread. In WAL mode with `synchronous=NORMAL` a commit
appends to the log and does not wait for the disk, so one costs tens of microseconds
(measured: 16 µs for one message, 2 µs a message in batches of 64), less than handing it to
a worker thread, whose hand-offs of the GIL cost more CPU and latency than the commit
itself. What does wait for the disk, the checkpoints that fsync the log into the database,
runs on a worker thread, as do the reads (welcomes of cold rooms, paging, resuming), on a
second connection that WAL mode lets read beside the writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from app.backends.base import (
    AccountStore,
    Backend,
    BackendError,
    DirectStore,
    ModerationStore,
    Subscriber,
    TransferStore,
)
from app.backends.changes import ChangeStore
from app.backends.reads import ReadStore
from app.backends.sqlite.accounts import SQLiteAccounts
from app.backends.sqlite.changes import SQLiteChanges
from app.backends.sqlite.direct import SQLiteDirect
from app.backends.sqlite.files import connect, lock_exclusively, path_from_url, transaction
from app.backends.sqlite.index import Index
from app.backends.sqlite.moderation import SQLiteModeration
from app.backends.sqlite.notices import Notices
from app.backends.sqlite.reads import SQLiteReads
from app.backends.sqlite.retention import RETENTION_INTERVAL, Retention
from app.backends.sqlite.rows import SELECT, message_of
from app.backends.sqlite.schema import migrate
from app.backends.sqlite.scrub import Scrub
from app.backends.sqlite.transfer import SQLiteTransfer
from app.core.messages import Message, now_ms
from app.settings import Settings

logger = logging.getLogger("chatroom.sqlite")

CHECKPOINT_INTERVAL = 1.0  # seconds between checkpoints, when something was written

Row = tuple[Any, ...]  # a message as rows.SELECT reads it


class SQLiteBackend(Backend):
    def __init__(self, url: str, settings: Settings) -> None:
        self.path = path_from_url(url)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="chatroom-sqlite")
        self.scrub = Scrub(self._writer_db)
        super().__init__(url, settings)
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None
        self._last_ids: dict[str, int] = {}
        self._subscribed: set[str] = set()
        self._pending: list[tuple[Message, asyncio.Future[Message]]] = []
        self._commit: asyncio.Handle | None = None
        self._written = False  # since the last checkpoint
        self._background: list[asyncio.Task[None]] = []
        self.retention = Retention(self._writer_db, self._wrote)
        self.index = Index(self._writer_db, self._wrote)
        self.notices = Notices(self._read, self._reader_db, self._writer_db)

    # Life cycle

    async def start(self, subscriber: Subscriber) -> None:
        await super().start(subscriber)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = lock_exclusively(self.path)
        try:
            await self.open()
            await self.notices.start()
        except BaseException:
            await self.stop()
            raise
        self.index.catch_up()
        loop = asyncio.get_running_loop()
        self._background.append(loop.create_task(self._checkpoint_forever()))
        self._background.append(loop.create_task(self.index.run_forever()))
        self._background.append(loop.create_task(self.notices.poll_forever(self._notice_from_elsewhere)))
        if self.settings.retention_messages or self.settings.retention_days:
            self._background.append(loop.create_task(self._enforce_retention_forever()))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.wait(self._background)
        if self._write_db is not None:
            self._commit_pending()  # what was accepted gets on disk
        await self.close()
        if self._lock is not None:
            self._lock.close()
        await super().stop()

    async def open(self) -> None:
        """Open the database, migrating it if it is older: for the server (`start`), and
        alone for commands such as `chatroom users`, which may run beside a server."""
        # Opening may migrate a large database: off the event loop.
        self._write_db, self.epoch = await self._read(self._open_writer)
        self._read_db = await self._read(self._open_reader)

    async def close(self) -> None:
        """What `open` opened (`stop` does this too)."""
        loop = asyncio.get_running_loop()
        if self._read_db is not None:
            await loop.run_in_executor(self._reader, self._read_db.close)
            self._read_db = None
        if self._write_db is not None:
            self._write_db.close()  # the last connection checkpoints the log into the database
            self._write_db = None
        self._reader.shutdown()

    def _account_store(self) -> AccountStore:
        return SQLiteAccounts(self._read, self._reader_db, self._writer_db)

    def _change_store(self) -> ChangeStore:
        return SQLiteChanges(self._read, self._reader_db, self._writer_db, self.deliver_change, self._deleted)

    def _read_store(self) -> ReadStore:
        return SQLiteReads(self._read, self._reader_db, self._writer_db)

    def _deleted(self) -> None:
        """A message was deleted: its text goes from the search index and the log file too."""
        self._written = True
        self.scrub.due = True

    def _moderation_store(self) -> ModerationStore:
        return SQLiteModeration(self._read, self._reader_db, self._writer_db)

    def _transfer_store(self) -> TransferStore:
        return SQLiteTransfer(self.path, self._writer_db)

    def _direct_store(self) -> DirectStore:
        return SQLiteDirect(self.notify, self._read, self._reader_db, self._writer_db)

    def notify(self, kind: str, fields: dict[str, Any]) -> None:
        try:
            self.notices.write(kind, fields)
        except sqlite3.Error:
            logger.exception("could not store a notice (%s): other processes will not hear of it", kind)
        super().notify(kind, fields)

    def _notice_from_elsewhere(self, kind: str, fields: dict[str, Any]) -> None:
        if self.subscriber is not None:
            self.subscriber.notice(kind, fields)

    def _open_writer(self) -> tuple[sqlite3.Connection, str]:
        db = connect(self.path)
        try:
            return db, self._prepare(db)
        except BaseException:
            db.close()
            raise

    def _prepare(self, db: sqlite3.Connection) -> str:
        db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a commit is in the WAL when it returns, so killing the process loses nothing
        # committed; only a power cut may lose the last transactions (FULL would fsync each).
        db.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints fsync: `_checkpoint_forever` runs them on the worker thread instead.
        db.execute("PRAGMA wal_autocheckpoint = 0")
        # What is deleted (a deleted message's text, its words in the search index) is
        # overwritten with zeros, not merely let go: it cannot be read back from the file.
        db.execute("PRAGMA secure_delete = ON")
        before = migrate(db)
        if before:
            logger.info("migrated %s from schema version %d", self.path, before)
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (self.epoch,))
        (epoch,) = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return str(epoch)

    def _open_reader(self) -> sqlite3.Connection:
        db = connect(self.path)
        db.execute("PRAGMA query_only = ON")
        return db

    async def _read(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader, function, *args)

    async def _checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Checkpoint what was written since the last time. After a deletion, first merge the
        search index (the deleted words go), then truncate the log, which holds older copies
        of the pages."""
        if not self._written:
            return
        self._written = False
        truncate = False
        try:
            if self.scrub.due:
                truncate = await self.scrub.run()
            await self._read(self._truncate if truncate else self._checkpoint)
        except sqlite3.Error:
            logger.exception("checkpoint of %s failed", self.path)

    def _checkpoint(self) -> None:
        assert self._read_db is not None
        self._read_db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _truncate(self) -> None:
        """A checkpoint that empties the log, once no reader needs what is in it."""
        assert self._read_db is not None
        self._read_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # Rooms

    async def subscribe(self, room: str) -> list[Message]:
        last_id, rows = await self._read(self._latest, room, self.settings.welcome_history)
        self._last_ids.setdefault(room, last_id)  # ours is ahead if we wrote since
        self._subscribed.add(room)
        return [message_of(room, row) for row in reversed(rows)]

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    def subscribed(self, room: str) -> bool:
        return room in self._subscribed

    def _latest(self, room: str, limit: int) -> tuple[int, list[Row]]:
        assert self._read_db is not None
        found = self._read_db.execute("SELECT last_id FROM rooms WHERE name = ?", (room,)).fetchone()
        rows = self._read_db.execute(f"{SELECT} WHERE room = ? ORDER BY id DESC LIMIT ?", (room, limit)).fetchall()
        return max(found[0] if found else 0, rows[0][0] if rows else 0), rows

    # Writing

    def publish(self, room: str, name: str, text: str, guest: bool = False) -> asyncio.Future[Message]:
        message_id = self._last_ids[room] + 1
        self._last_ids[room] = message_id
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[Message] = loop.create_future()
        self._pending.append((Message(room, message_id, name, text, now_ms(), guest), stored))
        if self._commit is None:
            self._commit = loop.call_soon(self._commit_pending)
        return stored

    def commit(self) -> None:
        self._commit_pending()

    def _commit_pending(self) -> None:
        if self._commit is not None:
            self._commit.cancel()
            self._commit = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._insert([message for message, _ in batch])
        except sqlite3.Error as exc:
            logger.exception("could not store %d messages", len(batch))
            for _, stored in batch:
                stored.set_exception(BackendError(f"Could not store the message: {exc}"))
            return
        self._written = True
        subscriber, subscribed, due = self.subscriber, self._subscribed, self.index.due
        for message, stored in batch:
            due[message.room] = message.id  # for the search index's next pass
            stored.set_result(message)
            if subscriber is not None and message.room in subscribed:
                subscriber.deliver(message.room, message.json, message)

    def _insert(self, messages: list[Message]) -> None:
        assert self._write_db is not None
        with transaction(self._write_db) as db:
            db.executemany(
                "INSERT INTO messages (room, id, name, text, ts, guest) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (message.room, message.id, message.name, message.text, message.ts, message.guest)
                    for message in messages
                ],
            )

    # Reading history

    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        rows, more = await self._read(self._before, room, before, limit)
        return [message_of(room, row) for row in reversed(rows)], more

    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        rows, gap = await self._read(self._after, room, after, upto, limit)
        return [message_of(room, row) for row in reversed(rows)], gap

    def _before(self, room: str, before: int | None, limit: int) -> tuple[list[Row], bool]:
        assert self._read_db is not None
        rows = self._read_db.execute(
            f"{SELECT} WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room, before if before is not None else 2**63 - 1, limit + 1),
        ).fetchall()
        return rows[:limit], len(rows) > limit

    def _after(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Row], bool]:
        assert self._read_db is not None
        rows = self._read_db.execute(
            f"{SELECT} WHERE room = ? AND id > ? AND id <= ? ORDER BY id DESC LIMIT ?",
            (room, after, upto, limit + 1),
        ).fetchall()
        return rows[:limit], len(rows) > limit

    # Retention

    async def enforce_retention(self) -> int:
        """Delete what the retention settings no longer keep now; returns how many messages went."""
        return await self.retention.enforce(self.settings.retention_messages, self.settings.retention_days)

    async def _enforce_retention_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                deleted = await self.enforce_retention()
            except sqlite3.Error:
                logger.exception("retention pass failed")
            else:
                if deleted:
                    logger.info("retention: deleted %d messages in %.2f s", deleted, time.monotonic() - started)
            await asyncio.sleep(RETENTION_INTERVAL)

    def _writer_db(self) -> sqlite3.Connection:
        assert self._write_db is not None, "the backend has not started"
        return self._write_db

    def _reader_db(self) -> sqlite3.Connection:
        assert self._read_db is not None, "the backend has not started"
        return self._read_db

    def _wrote(self) -> None:
        self._written = True
