"""`Index`: new messages into the search index (schema.py, migration 6), in batches.

Indexing a message as it is committed would cost every commit a segment of the full-text
index (measured: 19 µs of CPU a message in commits of 5, against 3.5 µs in batches of
500). So commits only note, per room, the highest id they stored; every INDEX_INTERVAL the
index takes what was noted, INDEX_CHUNK messages per transaction on the event loop,
yielding in between, as retention does, and records how far each room is indexed
(`search_rooms.indexed`), which the triggers of edits and deletions read. Search matches
what is not indexed yet by reading it (changes.py). At start, whatever was committed but
not indexed before a stop (or before the upgrade that brought search) is indexed too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from app.backends.sqlite.files import transaction
from app.backends.sqlite.retention import EVERY_ROOM
from app.backends.sqlite.schema import SEARCH_SPAN

logger = logging.getLogger("chatroom.sqlite")

INDEX_INTERVAL = 0.5  # seconds between two passes: how long a new message waits to be indexed
INDEX_CHUNK = 256  # messages indexed per transaction: about a millisecond on the event loop


class Index:
    def __init__(self, writer: Callable[[], sqlite3.Connection], written: Callable[[], None]) -> None:
        self._writer = writer
        self._written = written  # tells the backend that there is something to checkpoint
        self.due: dict[str, int] = {}  # room -> the highest id committed there (commits note it)

    def catch_up(self) -> None:
        """Note every room's newest message: whatever of it is not indexed yet will be."""
        db = self._writer()
        for (room,) in db.execute(EVERY_ROOM).fetchall():
            (last,) = db.execute("SELECT max(id) FROM messages WHERE room = ?", (room,)).fetchone()
            self.due[room] = max(self.due.get(room, 0), last)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(INDEX_INTERVAL)
            try:
                await self.run()
            except sqlite3.Error:
                logger.exception("indexing new messages for search failed")

    async def run(self) -> None:
        """Index what was noted, up to now."""
        due, self.due = self.due, {}
        try:
            while due:
                room, upto = next(iter(due.items()))
                if self._index_some(room, upto):
                    del due[room]
                await asyncio.sleep(0)
        finally:
            for room, upto in due.items():  # what is left waits for the next pass
                self.due[room] = max(self.due.get(room, 0), upto)

    def _index_some(self, room: str, upto: int) -> bool:
        """Index at most INDEX_CHUNK of `room`'s messages up to `upto`; True once all are."""
        db = self._writer()
        found = db.execute("SELECT number, indexed FROM search_rooms WHERE name = ?", (room,)).fetchone()
        if found is not None and found[1] >= upto:
            return True
        with transaction(db):
            if found is None:
                db.execute("INSERT INTO search_rooms (name) VALUES (?)", (room,))
                found = db.execute("SELECT number, indexed FROM search_rooms WHERE name = ?", (room,)).fetchone()
            number, indexed = found
            rows = db.execute(
                "SELECT id, text FROM messages WHERE room = ? AND id > ? AND id <= ? AND deleted = 0 "
                "ORDER BY id LIMIT ?",
                (room, indexed, min(upto, SEARCH_SPAN - 1), INDEX_CHUNK),
            ).fetchall()
            base = number * SEARCH_SPAN
            db.executemany("INSERT INTO search (rowid, text) VALUES (?, ?)", [(base + id, text) for id, text in rows])
            reached = rows[-1][0] if len(rows) == INDEX_CHUNK else upto
            db.execute("UPDATE search_rooms SET indexed = ? WHERE number = ?", (reached, number))
        self._written()
        return reached >= upto
