"""`sqlite:///path/to/file.db`: durable history for one process, the default.

Writes go through one connection on one thread; a message is delivered only once it is
committed, so a crash never takes back a message somebody saw. Commits are grouped: while
one is on disk, the messages that arrive meanwhile wait, and all of them go in the next
transaction. Under load, many messages share a commit; at rest, each one commits at once.
Reads (welcomes of cold rooms, paging, resuming) use a second connection on its own thread,
which WAL mode lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from app.backends.base import Backend, BackendError, Deliver
from app.backends.sqlite_schema import migrate
from app.messages import Message, now_ms
from app.settings import Settings

logger = logging.getLogger("chatroom.sqlite")

T = TypeVar("T")

RETENTION_INTERVAL = 60.0  # seconds between two retention passes
RETENTION_CHUNK = 5000  # rows deleted per transaction, so commits never wait long behind one

Row = tuple[int, str, str, int]  # id, name, text, ts


def path_from_url(url: str) -> Path:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"Expected sqlite:///relative/path.db or sqlite:////absolute/path.db, but got {url!r}")
    return Path(url[len(prefix) :])


class SQLiteBackend(Backend):
    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.path = path_from_url(url)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="chatroom-sqlite-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="chatroom-sqlite-read")
        self._write_db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None
        self._last_ids: dict[str, int] = {}
        self._subscribed: set[str] = set()
        self._pending: list[tuple[Message, asyncio.Future[Message]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._committed = asyncio.Event()  # set after each commit, for `ready`
        # A commit's messages reach every member at once: keep what waits for one well
        # within what a member may have queued (settings.queue_bytes).
        self._pending_size = 0
        self._max_pending_size = settings.queue_bytes // 4
        self._retention: asyncio.Task[None] | None = None

    # Life cycle

    async def start(self, deliver: Deliver) -> None:
        await super().start(deliver)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_exclusively(self.path)
        try:
            self._write_db, self.epoch = await self._write(self._open_writer)
            self._read_db = await self._read(self._open_reader)
        except BaseException:
            await self.stop()
            raise
        if self.settings.retention_messages or self.settings.retention_days:
            self._retention = asyncio.get_running_loop().create_task(self._enforce_retention_forever())

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.wait([self._retention])
        if self._committer is not None:
            await asyncio.wait([self._committer])  # what was accepted gets on disk
        for connection, executor in ((self._write_db, self._writer), (self._read_db, self._reader)):
            if connection is not None:
                await asyncio.get_running_loop().run_in_executor(executor, connection.close)
        self._writer.shutdown()
        self._reader.shutdown()
        if self._lock is not None:
            self._lock.close()
        await super().stop()

    def _open_writer(self) -> tuple[sqlite3.Connection, str]:
        db = _connect(self.path)
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
        before = migrate(db)
        if before:
            logger.info("migrated %s from schema version %d", self.path, before)
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (self.epoch,))
        (epoch,) = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return str(epoch)

    def _open_reader(self) -> sqlite3.Connection:
        db = _connect(self.path)
        db.execute("PRAGMA query_only = ON")
        return db

    async def _write(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    async def _read(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader, function, *args)

    # Rooms

    async def subscribe(self, room: str) -> list[Message]:
        last_id, rows = await self._read(self._latest, room, self.settings.welcome_history)
        self._last_ids.setdefault(room, last_id)  # ours is ahead if we wrote since
        self._subscribed.add(room)
        return [Message(room, *row) for row in reversed(rows)]

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    def _latest(self, room: str, limit: int) -> tuple[int, list[Row]]:
        assert self._read_db is not None
        found = self._read_db.execute("SELECT last_id FROM rooms WHERE name = ?", (room,)).fetchone()
        rows = self._read_db.execute(
            "SELECT id, name, text, ts FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?", (room, limit)
        ).fetchall()
        return (found[0] if found else 0), rows

    # Writing

    @property
    def backlogged(self) -> bool:
        return self._pending_size >= self._max_pending_size

    async def ready(self) -> None:
        while self._pending_size >= self._max_pending_size:
            self._committed.clear()
            await self._committed.wait()

    def publish(self, room: str, name: str, text: str) -> asyncio.Future[Message]:
        message_id = self._last_ids[room] + 1
        self._last_ids[room] = message_id
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[Message] = loop.create_future()
        message = Message(room, message_id, name, text, now_ms())
        self._pending.append((message, stored))
        self._pending_size += len(message.json)
        if self._committer is None:
            self._committer = loop.create_task(self._commit_pending())
        return stored

    def announce(self, room: str, event: bytes) -> None:
        if self._deliver is not None and room in self._subscribed:
            self._deliver(room, event, None)

    async def _commit_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self._pending_size = 0
                try:
                    await self._write(self._insert, [message for message, _ in batch])
                except Exception as exc:
                    logger.exception("could not store %d messages", len(batch))
                    for _, stored in batch:
                        stored.set_exception(BackendError(f"Could not store the message: {exc}"))
                    continue
                for message, stored in batch:
                    stored.set_result(message)
                    if self._deliver is not None and message.room in self._subscribed:
                        self._deliver(message.room, message.json, message)
                self._committed.set()
        finally:
            self._committed.set()
            self._committer = None

    def _insert(self, messages: list[Message]) -> None:
        assert self._write_db is not None
        db = self._write_db
        last_ids = {message.room: message.id for message in messages}
        with _transaction(db):
            db.executemany(
                "INSERT INTO messages (room, id, name, text, ts) VALUES (?, ?, ?, ?, ?)",
                [(message.room, message.id, message.name, message.text, message.ts) for message in messages],
            )
            db.executemany(
                "INSERT INTO rooms (name, last_id) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                last_ids.items(),
            )

    # Reading history

    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        rows, more = await self._read(self._before, room, before, limit)
        return [Message(room, *row) for row in reversed(rows)], more

    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        rows, gap = await self._read(self._after, room, after, upto, limit)
        return [Message(room, *row) for row in reversed(rows)], gap

    def _before(self, room: str, before: int | None, limit: int) -> tuple[list[Row], bool]:
        assert self._read_db is not None
        rows = self._read_db.execute(
            "SELECT id, name, text, ts FROM messages WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (room, before if before is not None else 2**63 - 1, limit + 1),
        ).fetchall()
        return rows[:limit], len(rows) > limit

    def _after(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Row], bool]:
        assert self._read_db is not None
        rows = self._read_db.execute(
            "SELECT id, name, text, ts FROM messages WHERE room = ? AND id > ? AND id <= ? ORDER BY id DESC LIMIT ?",
            (room, after, upto, limit + 1),
        ).fetchall()
        return rows[:limit], len(rows) > limit

    # Retention

    async def enforce_retention(self) -> int:
        """Delete what the retention settings no longer keep; returns how many messages went."""
        cutoff = now_ms() - int(self.settings.retention_days * 86_400_000) if self.settings.retention_days else None
        deleted = 0
        while True:
            count: int = await self._write(self._delete_some, self.settings.retention_messages, cutoff)
            deleted += count
            if count < RETENTION_CHUNK:
                return deleted

    async def _enforce_retention_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                deleted = await self.enforce_retention()
            except Exception:
                logger.exception("retention pass failed")
            else:
                if deleted:
                    logger.info("retention: deleted %d messages in %.2f s", deleted, time.monotonic() - started)
            await asyncio.sleep(RETENTION_INTERVAL)

    def _delete_some(self, keep: int, cutoff: int | None) -> int:
        assert self._write_db is not None
        db = self._write_db
        deleted = 0
        with _transaction(db):
            if cutoff is not None:
                deleted += db.execute(
                    "DELETE FROM messages WHERE (room, id) IN "
                    "(SELECT room, id FROM messages WHERE ts < ? ORDER BY ts LIMIT ?)",
                    (cutoff, RETENTION_CHUNK),
                ).rowcount
            if keep:
                for (room,) in db.execute("SELECT name FROM rooms").fetchall():
                    if deleted >= RETENTION_CHUNK:
                        break
                    deleted += db.execute(
                        "DELETE FROM messages WHERE room = ?1 AND id <= "
                        "(SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                        (room, keep),
                    ).rowcount
        return deleted


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN/COMMIT) and never left open by accident.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def _lock_exclusively(path: Path) -> IO[bytes]:
    """One server per database: SQLite serves one process here; several need redis://."""
    lock = open(f"{path}.lock", "wb")  # noqa: SIM115 - held open for the server's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RuntimeError(
            f"{path} is in use by another chatroom process; one process serves a SQLite database "
            "(for several workers or hosts use CHAT_BACKEND_URL=redis://...)"
        ) from None
    os.set_inheritable(lock.fileno(), False)
    return lock
