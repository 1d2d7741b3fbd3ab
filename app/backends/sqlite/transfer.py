"""Export and import of the SQLite database.

The snapshot is one read transaction on a connection of its own (rooms, messages as they
are then with who gave their reactions, accounts, read positions, direct messages and lists
alike are read in it): WAL mode lets it see the
database as it was when it began, whatever a running server commits meanwhile (the server
goes on; the log only grows until the export ends, for a checkpoint cannot pass a reader).
Reads run on a thread of their own, page by page.

An import holds the database's lock, as a server does (one at a time: it refuses while a
server runs), and writes everything in one transaction: a failure leaves the database as
it was. Imported messages are indexed for search (sqlite/index.py) when a server next
starts, as whatever was committed but not indexed is; tombstones never are.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from app.backends.base import InUse, Loader, StoreSnapshot, TransferStore
from app.backends.sqlite.files import connect, lock_exclusively
from app.backends.sqlite.moderation import rules_of
from app.backends.sqlite.rows import SELECT, message_of
from app.core.direct import DirectMessage, Party
from app.core.moderation.records import AuditEntry, Kind, Role, RoomRules, Sanction
from app.core.transfer.format import (
    Reactors,
    StoredBlock,
    StoredBuddy,
    StoredConversation,
    StoredMessage,
    StoredRead,
    StoredRoom,
    reactors,
)
from app.core.users import User

PAGE = 1000  # rows a read or a write takes at once

_ROOMS = """
SELECT name, max(last_id), max(count) FROM (
    SELECT room AS name, max(id) AS last_id, count(*) AS count FROM messages GROUP BY room
    UNION ALL SELECT name, last_id, 0 FROM rooms
    UNION ALL SELECT room, 0, 0 FROM room_rules
    UNION ALL SELECT room, 0, 0 FROM room_roles
) GROUP BY name ORDER BY name
"""

# A conversation is in the export when both its accounts have it: the row of the account with
# the lower key (`a`), the other's row for its name, its last id given out, its messages kept.
_CONVERSATIONS = """
SELECT a.owner, b.name, a.other, a.name, max(coalesce(d.last_id, 0), a.last_id), a.ts,
       (SELECT count(*) FROM dms WHERE dms.conversation = a.owner || char(10) || a.other)
FROM conversations a
JOIN conversations b ON b.owner = a.other AND b.other = a.owner
LEFT JOIN dm_ids d ON d.conversation = a.owner || char(10) || a.other
WHERE a.owner <= a.other
"""


class SQLiteTransfer(TransferStore):
    def __init__(self, path: Path, writer: Callable[[], sqlite3.Connection]) -> None:
        self._path = path
        self._writer = writer

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[StoreSnapshot]:
        thread = ThreadPoolExecutor(1, thread_name_prefix="chatroom-export")
        snapshot = _SQLiteSnapshot(thread)
        try:
            await snapshot.call(snapshot.begin, self._path)
            yield snapshot
        finally:
            await snapshot.call(snapshot.end)
            thread.shutdown()

    @asynccontextmanager
    async def loading(self) -> AsyncIterator[Loader]:
        try:
            lock = lock_exclusively(self._path)
        except RuntimeError as exc:
            raise InUse(f"{exc}: stop it first") from None
        try:
            db = self._writer()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteLoader(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            lock.close()


class _SQLiteSnapshot(StoreSnapshot):
    def __init__(self, thread: ThreadPoolExecutor) -> None:
        self._thread = thread
        self._db: sqlite3.Connection | None = None

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def begin(self, path: Path) -> None:
        self._db = connect(path)
        self._db.execute("PRAGMA query_only = ON")
        self._db.execute("BEGIN")
        # The snapshot starts at the first read, not at BEGIN: read now.
        self._db.execute("SELECT count(*) FROM meta").fetchone()

    def end(self) -> None:
        if self._db is not None:
            self._db.execute("COMMIT")
            self._db.close()
            self._db = None

    def _select(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(query, args).fetchall()

    def _rooms(self) -> list[StoredRoom]:
        assert self._db is not None
        found = self._select(_ROOMS)
        return [StoredRoom(name, last_id, rules_of(self._db, name), count) for name, last_id, count in found]

    async def rooms(self) -> list[StoredRoom]:
        rooms: list[StoredRoom] = await self.call(self._rooms)
        return rooms

    def _page(self, room: str, after: int) -> list[StoredMessage]:
        rows = self._select(f"{SELECT} WHERE room = ? AND id > ? ORDER BY id LIMIT ?", room, after, PAGE)
        if not rows:
            return []
        given: dict[int, dict[str, list[str]]] = {}
        for id, emoji, key in self._select(
            "SELECT id, emoji, key FROM reactions WHERE room = ? AND id > ? AND id <= ?", room, after, rows[-1][0]
        ):
            given.setdefault(id, {}).setdefault(emoji, []).append(key)
        none: Reactors = ()
        return [
            StoredMessage(message_of(room, row), reactors(given[row[0]]) if row[0] in given else none) for row in rows
        ]

    async def messages(self, room: str, after: int = 0) -> AsyncIterator[list[StoredMessage]]:
        while True:
            page: list[StoredMessage] = await self.call(self._page, room, after)
            if not page:
                return
            yield page
            after = page[-1].id

    async def users(self) -> list[User]:
        query = "SELECT key, name, password, admin, created FROM users ORDER BY key"
        rows = await self.call(self._select, query)
        return [User(key, name, password, bool(admin), created) for key, name, password, admin, created in rows]

    async def sanctions(self) -> list[Sanction]:
        query = (
            "SELECT scope, kind, target, name, key, by, reason, at, until FROM sanctions ORDER BY scope, kind, target"
        )
        rows = await self.call(self._select, query)
        return [
            Sanction(scope, Kind(kind), target, name, key, by, reason, at, until)
            for scope, kind, target, name, key, by, reason, at, until in rows
        ]

    async def audit(self, after: int = 0) -> AsyncIterator[list[AuditEntry]]:
        query = (
            "SELECT id, at, room, actor, action, target, reason, until, detail FROM audit "
            "WHERE id > ? ORDER BY id LIMIT ?"
        )
        while True:
            rows = await self.call(self._select, query, after, PAGE)
            if not rows:
                return
            yield [AuditEntry(*row) for row in rows]
            after = rows[-1][0]

    async def audit_last(self) -> int:
        rows = await self.call(self._select, "SELECT coalesce(max(id), 0) FROM audit")
        return int(rows[0][0])

    async def secret(self) -> bytes | None:
        rows = await self.call(self._select, "SELECT value FROM meta WHERE key = 'moderation_secret'")
        return bytes.fromhex(rows[0][0]) if rows else None

    async def conversations(self) -> list[StoredConversation]:
        rows = await self.call(self._select, _CONVERSATIONS)
        found = [
            StoredConversation((Party(one, one_name), Party(other, other_name)), last_id, ts, count)
            for one, one_name, other, other_name, last_id, ts, count in rows
        ]
        return sorted(found, key=lambda conversation: conversation.key)

    async def dms(self, conversation: str, after: int = 0) -> AsyncIterator[list[DirectMessage]]:
        query = (
            "SELECT id, sender, recipient, text, ts, auto FROM dms "
            "WHERE conversation = ? AND id > ? ORDER BY id LIMIT ?"
        )
        while True:
            rows = await self.call(self._select, query, conversation, after, PAGE)
            if not rows:
                return
            yield [
                DirectMessage.create(id, sender, to, text, ts, bool(auto)) for id, sender, to, text, ts, auto in rows
            ]
            after = rows[-1][0]

    async def buddies(self) -> list[StoredBuddy]:
        rows = await self.call(self._select, "SELECT owner, buddy, name FROM buddies ORDER BY owner, buddy")
        return [StoredBuddy(owner, Party(key, name)) for owner, key, name in rows]

    async def blocks(self) -> list[StoredBlock]:
        rows = await self.call(self._select, "SELECT owner, blocked, name FROM blocks ORDER BY owner, blocked")
        return [StoredBlock(owner, Party(key, name)) for owner, key, name in rows]

    async def reads(self) -> list[StoredRead]:
        rows = await self.call(self._select, "SELECT key, room, id FROM reads ORDER BY key, room")
        return [StoredRead(key, room, id) for key, room, id in rows]


class _SQLiteLoader(Loader):
    """Statements of the import's one transaction, on the event loop's thread (nothing else
    runs in the process meanwhile)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def messages(self, room: str, messages: list[StoredMessage]) -> None:
        rows = []
        for stored in messages:
            message = stored.message
            counts = message.reactions
            rows.append(
                (
                    room,
                    message.id,
                    message.name,
                    message.text,
                    message.ts,
                    message.guest,
                    message.edited_ts,
                    int(message.deleted),
                    orjson.dumps(counts).decode() if counts else None,
                )
            )
        self._db.executemany(
            "INSERT INTO messages (room, id, name, text, ts, guest, edited_ts, deleted, reactions) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self._db.executemany(
            "INSERT INTO reactions (room, id, emoji, key) VALUES (?, ?, ?, ?)",
            [(room, stored.id, emoji, key) for stored in messages for emoji, keys in stored.reactions for key in keys],
        )

    async def room(self, room: str, last_id: int, rules: RoomRules | None) -> None:
        db = self._db
        db.execute(
            "INSERT INTO rooms (name, last_id) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
            (room, last_id),
        )
        if rules is None:
            return
        topic = rules.topic
        db.execute(
            "INSERT OR REPLACE INTO room_rules (room, members_only, topic, topic_by, topic_ts) VALUES (?, ?, ?, ?, ?)",
            (
                room,
                int(rules.members_only),
                topic.text if topic is not None else None,
                topic.by if topic is not None else None,
                topic.ts if topic is not None else None,
            ),
        )
        people = [(Role.MODERATOR, person) for person in rules.moderators]
        people += [(Role.INVITED, person) for person in rules.invited]
        if rules.owner is not None:
            people.append((Role.OWNER, rules.owner))
        db.executemany(
            "INSERT OR REPLACE INTO room_roles (room, role, key, name) VALUES (?, ?, ?, ?)",
            [(room, role.value, person.key, person.name) for role, person in people],
        )

    async def users(self, users: list[User]) -> None:
        self._db.executemany(
            "INSERT INTO users (key, name, password, admin, created) VALUES (?, ?, ?, ?, ?)",
            [(user.key, user.name, user.password, int(user.admin), user.created) for user in users],
        )

    async def sanctions(self, sanctions: list[Sanction]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO sanctions (scope, kind, target, name, key, by, reason, at, until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(s.scope, s.kind.value, s.target, s.name, s.key, s.by, s.reason, s.at, s.until) for s in sanctions],
        )

    async def audit(self, entries: list[AuditEntry]) -> None:
        # Explicit ids: AUTOINCREMENT goes on after the largest (sqlite_sequence follows them).
        self._db.executemany(
            "INSERT INTO audit (id, at, room, actor, action, target, reason, until, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.id, e.at, e.room, e.actor, e.action, e.target, e.reason, e.until, e.detail) for e in entries],
        )

    async def secret(self, key: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('moderation_secret', ?)", (key.hex(),))

    async def dms(self, conversation: StoredConversation, messages: list[DirectMessage]) -> None:
        key = conversation.key
        self._db.executemany(
            "INSERT INTO dms (conversation, id, sender, recipient, text, ts, auto) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(key, m.id, m.sender, m.recipient, m.text, m.ts, int(m.auto)) for m in messages],
        )
        self._raise(key, messages[-1].id)

    def _raise(self, conversation: str, last_id: int) -> None:
        self._db.execute(
            "INSERT INTO dm_ids (conversation, last_id) VALUES (?, ?) "
            "ON CONFLICT (conversation) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
            (conversation, last_id),
        )

    async def conversation(self, conversation: StoredConversation) -> None:
        self._raise(conversation.key, conversation.last_id)
        one, other = conversation.accounts
        self._db.executemany(
            "INSERT INTO conversations (owner, other, name, last_id, ts) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, other) DO UPDATE SET name = excluded.name, last_id = excluded.last_id, "
            "ts = excluded.ts WHERE excluded.last_id > last_id",
            [
                (owner.key, party.key, party.name, conversation.last_id, conversation.ts)
                for owner, party in {(one, other), (other, one)}
            ],
        )

    async def buddies(self, buddies: list[StoredBuddy]) -> None:
        self._db.executemany(
            "INSERT INTO buddies (owner, buddy, name) VALUES (?, ?, ?)",
            [(buddy.owner, buddy.other.key, buddy.other.name) for buddy in buddies],
        )

    async def blocks(self, blocks: list[StoredBlock]) -> None:
        self._db.executemany(
            "INSERT INTO blocks (owner, blocked, name) VALUES (?, ?, ?)",
            [(block.owner, block.other.key, block.other.name) for block in blocks],
        )

    async def reads(self, reads: list[StoredRead]) -> None:
        self._db.executemany(
            "INSERT INTO reads (key, room, id) VALUES (?, ?, ?) "
            "ON CONFLICT (key, room) DO UPDATE SET id = max(id, excluded.id)",
            [(read.key, read.room, read.id) for read in reads],
        )
