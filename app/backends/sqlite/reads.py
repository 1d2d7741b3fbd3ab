"""Read positions in the SQLite database (table `reads`, schema.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from app.backends.reads import ReadStore
from app.backends.sqlite.files import transaction

Read = Callable[..., Awaitable[Any]]


class SQLiteReads(ReadStore):
    def __init__(self, read: Read, reader: Callable[[], sqlite3.Connection], writer: Callable[[], sqlite3.Connection]):
        self._read = read
        self._reader = reader
        self._writer = writer

    def _position(self, key: str, room: str) -> int | None:
        row = self._reader().execute("SELECT id FROM reads WHERE key = ? AND room = ?", (key, room)).fetchone()
        return int(row[0]) if row else None

    async def position(self, key: str, room: str) -> int | None:
        position: int | None = await self._read(self._position, key, room)
        return position

    async def mark(self, key: str, room: str, id: int) -> None:
        with transaction(self._writer()) as db:
            db.execute(
                "INSERT INTO reads (key, room, id) VALUES (?, ?, ?) "
                "ON CONFLICT (key, room) DO UPDATE SET id = max(id, excluded.id)",
                (key, room, id),
            )
