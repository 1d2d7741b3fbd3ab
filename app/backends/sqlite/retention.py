"""Retention of the SQLite backend: CHAT_RETENTION_MESSAGES and CHAT_RETENTION_DAYS.

The backend runs a pass once at start and then every RETENTION_INTERVAL. A pass works in
small transactions on the event loop, yielding in between, so commits of new messages
never wait long behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

from app.backends.sqlite.files import transaction
from app.core.messages import now_ms

# The rooms that have messages, one index seek each (a plain DISTINCT would read every row).
EVERY_ROOM = (
    "WITH RECURSIVE rooms(name) AS (SELECT min(room) FROM messages UNION ALL "
    "SELECT (SELECT min(room) FROM messages WHERE room > rooms.name) FROM rooms WHERE name IS NOT NULL) "
    "SELECT name FROM rooms WHERE name IS NOT NULL"
)
RETENTION_INTERVAL = 60.0  # seconds between two retention passes
RETENTION_CHUNK = 1000  # rows deleted per transaction: a few milliseconds on the event loop


class Retention:
    def __init__(self, db: Callable[[], sqlite3.Connection], written: Callable[[], None]) -> None:
        self._db = db  # the writer's connection
        self._written = written  # tells the backend that there is something to checkpoint

    async def enforce(self, keep: int, days: float) -> int:
        """Delete all but the latest `keep` messages of each room (0: keep all), and those older
        than `days` (0: keep all); returns how many messages went."""
        cutoff = now_ms() - int(days * 86_400_000) if days else None
        rooms = [room for (room,) in self._db().execute(EVERY_ROOM).fetchall()]
        deleted = 0
        for room in rooms:
            while True:
                count = self._delete_some(room, keep, cutoff)
                deleted += count
                await asyncio.sleep(0)
                if count < RETENTION_CHUNK:
                    break
        return deleted

    def _delete_some(self, room: str, keep: int, cutoff: int | None) -> int:
        """Delete at most RETENTION_CHUNK of `room`'s oldest messages that retention lets go."""
        with transaction(self._db()) as db:
            # The newest id may go too (by age): remember it, so ids keep increasing.
            db.execute(
                "INSERT INTO rooms (name, last_id) SELECT room, max(id) FROM messages WHERE room = ?1 "
                "ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                (room,),
            )
            deleted = 0
            if keep:
                deleted += db.execute(
                    "DELETE FROM messages WHERE room = ?1 AND id IN (SELECT id FROM messages WHERE room = ?1 "
                    "AND id <= (SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2) "
                    "ORDER BY id LIMIT ?3)",
                    (room, keep, RETENTION_CHUNK),
                ).rowcount
            if cutoff is not None and deleted < RETENTION_CHUNK:
                # Ids follow time: the oldest messages by id are the oldest by time, so look
                # only at the oldest chunk rather than keeping an index on time.
                deleted += db.execute(
                    "DELETE FROM messages WHERE room = ?1 AND id IN (SELECT id FROM "
                    "(SELECT id, ts FROM messages WHERE room = ?1 ORDER BY id LIMIT ?3) WHERE ts < ?2)",
                    (room, cutoff, RETENTION_CHUNK - deleted),
                ).rowcount
        self._written()
        return deleted
