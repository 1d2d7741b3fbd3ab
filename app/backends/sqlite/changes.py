"""Edits, deletions, reactions and search in the SQLite database (schema.py, migration 6).

A change is one transaction on the writer's connection, on the event loop like the
commits of messages, and is delivered to this process's rooms once it is committed.
Searches run on the reader's thread, in the full-text index `search`, whose triggers keep
it in step with what each message says now; the newest messages, which the index has not
taken yet (index.py), are read and matched as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from app.backends.changes import ChangeStore
from app.backends.sqlite.files import transaction
from app.backends.sqlite.rows import SELECT, message_of
from app.backends.sqlite.schema import SEARCH_SPAN
from app.core.messages import Message, ordered
from app.core.protocol import MAX_ID
from app.core.words import Phrase, matches

Read = Callable[..., Awaitable[Any]]
Deliver = Callable[[str, str, Message], None]

_ONE = f"{SELECT} WHERE room = ? AND id = ?"
_NEWEST = f"{SELECT} WHERE room = ? AND id > ? AND id < ? AND deleted = 0 ORDER BY id DESC LIMIT ?"
# Messages not indexed yet that a search reads at most: a few passes' worth (index.py), more
# only while the index catches up after an upgrade, when the older of them are not found.
UNINDEXED_SCAN = 5_000
# The messages whose words match, newest first: a range of the index's rowids (schema.py).
_FOUND = (
    "SELECT m.id, m.name, m.text, m.ts, m.guest, m.edited_ts, m.deleted, m.reactions "
    "FROM search JOIN messages AS m ON m.room = ? AND m.id = search.rowid - ? "
    "WHERE search MATCH ? AND search.rowid > ? AND search.rowid < ? ORDER BY search.rowid DESC LIMIT ?"
)


class SQLiteChanges(ChangeStore):
    def __init__(
        self,
        read: Read,
        reader: Callable[[], sqlite3.Connection],
        writer: Callable[[], sqlite3.Connection],
        deliver: Deliver,
        deleted: Callable[[], None],
    ) -> None:
        self._read = read  # runs a function on the reader thread
        self._reader = reader
        self._writer = writer
        self._deliver = deliver  # to this process's rooms (Backend.deliver_change)
        self._deleted = deleted  # a deletion happened: scrub the index and the log

    def _one(self, room: str, id: int) -> Message | None:
        row = self._reader().execute(_ONE, (room, id)).fetchone()
        return message_of(room, row) if row else None

    async def message(self, room: str, id: int) -> Message | None:
        found: Message | None = await self._read(self._one, room, id)
        return found

    def _changed(self, db: sqlite3.Connection, room: str, id: int) -> Message:
        row = db.execute(_ONE, (room, id)).fetchone()
        return message_of(room, row)

    async def edit(self, message: Message, text: str, edited_ts: int) -> Message | None:
        room, id = message.room, message.id
        with transaction(self._writer()) as db:
            changed = db.execute(
                "UPDATE messages SET text = ?, edited_ts = ? WHERE room = ? AND id = ? AND deleted = 0",
                (text, edited_ts, room, id),
            ).rowcount
            now = self._changed(db, room, id) if changed else None
        if now is not None:
            self._deliver(room, "edit", now)
        return now

    async def delete(self, message: Message) -> Message | None:
        room, id = message.room, message.id
        with transaction(self._writer()) as db:
            changed = db.execute(
                "UPDATE messages SET text = '', deleted = 1, edited_ts = NULL, reactions = NULL "
                "WHERE room = ? AND id = ? AND deleted = 0",
                (room, id),
            ).rowcount
            db.execute("DELETE FROM reactions WHERE room = ? AND id = ?", (room, id))
            now = self._changed(db, room, id) if changed else None
        if now is None:
            return None
        self._deleted()
        self._deliver(room, "delete", now)
        return now

    async def react(self, room: str, id: int, key: str, emoji: str) -> Message | None:
        with transaction(self._writer()) as db:
            found = db.execute("SELECT deleted FROM messages WHERE room = ? AND id = ?", (room, id)).fetchone()
            if found is None or found[0]:
                return None
            given = (room, id, emoji, key)
            if not db.execute(
                "DELETE FROM reactions WHERE room = ? AND id = ? AND emoji = ? AND key = ?", given
            ).rowcount:
                db.execute("INSERT INTO reactions (room, id, emoji, key) VALUES (?, ?, ?, ?)", given)
            counts = ordered(
                dict(
                    db.execute(
                        "SELECT emoji, count(*) FROM reactions WHERE room = ? AND id = ? GROUP BY emoji", (room, id)
                    ).fetchall()
                )
            )
            db.execute(
                "UPDATE messages SET reactions = ? WHERE room = ? AND id = ?",
                (orjson.dumps(counts).decode() if counts else None, room, id),
            )
            now = self._changed(db, room, id)
        self._deliver(room, "reactions", now)
        return now

    async def search(
        self, room: str, phrases: list[Phrase], before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        rows: list[tuple[Any, ...]] = await self._read(self._search, room, phrases, before, limit)
        return [message_of(room, row) for row in rows[:limit]], len(rows) > limit

    def _search(self, room: str, phrases: list[Phrase], before: int | None, limit: int) -> list[tuple[Any, ...]]:
        db = self._reader()
        end = min(before, MAX_ID) if before is not None else MAX_ID
        number, indexed = db.execute("SELECT number, indexed FROM search_rooms WHERE name = ?", (room,)).fetchone() or (
            None,
            0,
        )
        found: list[tuple[Any, ...]] = []
        if end > indexed + 1:
            # The newest messages, not indexed yet (index.py): read and matched here.
            for row in db.execute(_NEWEST, (room, indexed, end, UNINDEXED_SCAN)):
                if matches(phrases, row[2]):
                    found.append(row)
                    if len(found) > limit:
                        return found
        if number is None:
            return found
        base = number * SEARCH_SPAN
        # Words hold letters and digits only (app/core/words.py): nothing to escape in a phrase.
        query = " ".join('"' + " ".join(phrase) + '"' for phrase in phrases)
        upto = base + min(end, indexed + 1, SEARCH_SPAN)
        found.extend(db.execute(_FOUND, (room, base, query, base, upto, limit + 1 - len(found))).fetchall())
        return found
