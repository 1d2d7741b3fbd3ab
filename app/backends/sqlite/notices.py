"""Notices through the SQLite database (table `notices`, schema.py).

The server is the one process that serves a database, but `chatroom users` may change
accounts while it runs: whatever writes a notice stores it, and the server reads the
notices of other writers every NOTICE_POLL seconds (one index seek when there are none).
Its own it delivers at once. Notices older than NOTICE_KEPT are deleted as it goes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from app.backends.sqlite.files import transaction
from app.core.messages import now_ms

logger = logging.getLogger("chatroom.sqlite")

NOTICE_POLL = 0.5  # seconds between two looks for other writers' notices
NOTICE_KEPT = 600_000  # ms a notice is kept: no reader is ever that far behind

Deliver = Callable[[str, dict[str, Any]], None]
Read = Callable[..., Awaitable[Any]]


class Notices:
    def __init__(self, read: Read, reader: Callable[[], sqlite3.Connection], writer: Callable[[], sqlite3.Connection]):
        self.origin = secrets.token_hex(8)
        self._read = read
        self._reader = reader
        self._writer = writer
        self._last = 0  # the last notice read

    def write(self, kind: str, fields: dict[str, Any]) -> None:
        db = self._writer()
        now = now_ms()
        with transaction(db):
            db.execute(
                "INSERT INTO notices (origin, kind, body, ts) VALUES (?, ?, ?, ?)",
                (self.origin, kind, orjson.dumps(fields).decode(), now),
            )
            db.execute("DELETE FROM notices WHERE ts < ?", (now - NOTICE_KEPT,))

    async def start(self) -> None:
        """Read from the notices written from now on."""
        rows = await self._read(self._select, "SELECT coalesce(max(id), 0) FROM notices")
        self._last = rows[0][0]

    async def poll_forever(self, deliver: Deliver) -> None:
        while True:
            await asyncio.sleep(NOTICE_POLL)
            try:
                rows = await self._read(
                    self._select, "SELECT id, origin, kind, body FROM notices WHERE id > ? ORDER BY id", self._last
                )
            except sqlite3.Error:
                logger.exception("could not read notices")
                continue
            for number, origin, kind, body in rows:
                self._last = number
                if origin != self.origin:
                    deliver(kind, orjson.loads(body))

    def _select(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._reader().execute(query, args).fetchall()
