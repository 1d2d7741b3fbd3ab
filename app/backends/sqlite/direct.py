"""Direct messages and lists in the SQLite database (tables `dms`, `dm_ids`, `conversations`,
`buddies`, `blocks`: schema.py).

Reads run on the backend's reader thread, like history; writes are single transactions on
the writer's connection, on the event loop's thread, between the message commits (a direct
message is stored before anyone sees it, as a room's is).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from app.backends.base import BackendError
from app.backends.direct import LocalDirect
from app.backends.sqlite.files import transaction
from app.core.direct import Conversation, DirectMessage, Party, conversation_of
from app.core.messages import now_ms

Read = Callable[..., Awaitable[Any]]

_MESSAGE = "SELECT id, sender, recipient, text, ts, auto FROM dms"


class SQLiteDirect(LocalDirect):
    def __init__(
        self,
        notify: Callable[[str, dict[str, Any]], None],
        read: Read,
        reader: Callable[[], sqlite3.Connection],
        writer: Callable[[], sqlite3.Connection],
    ) -> None:
        super().__init__(notify)
        self._read = read  # runs a function on the reader thread
        self._reader = reader
        self._writer = writer

    def _select(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._reader().execute(query, args).fetchall()

    async def _rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        try:
            rows: list[tuple[Any, ...]] = await self._read(self._select, query, *args)
        except sqlite3.Error as exc:
            raise BackendError(f"Could not read direct messages: {exc}") from exc
        return rows

    async def _append(self, sender: Party, recipient: Party, text: str, auto: bool) -> DirectMessage:
        conversation = conversation_of(sender.key, recipient.key)
        db = self._writer()
        ts = now_ms()
        try:
            with transaction(db):
                row = db.execute("SELECT last_id FROM dm_ids WHERE conversation = ?", (conversation,)).fetchone()
                number = (row[0] if row else 0) + 1
                db.execute(
                    "INSERT INTO dm_ids (conversation, last_id) VALUES (?, ?) "
                    "ON CONFLICT (conversation) DO UPDATE SET last_id = excluded.last_id",
                    (conversation, number),
                )
                db.execute(
                    "INSERT INTO dms (conversation, id, sender, recipient, text, ts, auto) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (conversation, number, sender.name, recipient.name, text, ts, int(auto)),
                )
                db.executemany(
                    "INSERT INTO conversations (owner, other, name, last_id, ts) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (owner, other) DO UPDATE "
                    "SET name = excluded.name, last_id = excluded.last_id, ts = excluded.ts",
                    [
                        (sender.key, recipient.key, recipient.name, number, ts),
                        (recipient.key, sender.key, sender.name, number, ts),
                    ],
                )
        except sqlite3.Error as exc:
            raise BackendError(f"Could not store the direct message: {exc}") from exc
        return DirectMessage.create(number, sender.name, recipient.name, text, ts, auto)

    async def _history(
        self, conversation: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        rows = await self._rows(
            f"{_MESSAGE} WHERE conversation = ? AND id < ? AND id > ? ORDER BY id DESC LIMIT ?",
            conversation,
            before if before is not None else 2**63 - 1,
            after if after is not None else 0,
            limit + 1,
        )
        page = [DirectMessage.create(id, sender, to, text, ts, bool(auto)) for id, sender, to, text, ts, auto in rows]
        return page[:limit][::-1], len(rows) > limit

    async def _conversations(self, key: str) -> dict[str, Conversation]:
        rows = await self._rows("SELECT other, name, last_id, ts FROM conversations WHERE owner = ?", key)
        return {other: Conversation(name, last, ts) for other, name, last, ts in rows}

    async def _buddies(self, key: str) -> dict[str, str]:
        return dict(await self._rows("SELECT buddy, name FROM buddies WHERE owner = ?", key))

    async def _blocked(self, key: str) -> dict[str, str]:
        return dict(await self._rows("SELECT blocked, name FROM blocks WHERE owner = ?", key))

    async def _blocks(self, owner: str, other: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM blocks WHERE owner = ? AND blocked = ?", owner, other))

    async def _add_buddy(self, owner: str, buddy: Party, limit: int) -> bool:
        return self._add("buddies", "buddy", owner, buddy, limit)

    async def _remove_buddy(self, owner: str, buddy: str) -> str | None:
        return self._remove("buddies", "buddy", owner, buddy)

    async def _add_block(self, owner: str, other: Party, limit: int) -> bool:
        return self._add("blocks", "blocked", owner, other, limit)

    async def _remove_block(self, owner: str, other: str) -> str | None:
        return self._remove("blocks", "blocked", owner, other)

    def _add(self, table: str, column: str, owner: str, party: Party, limit: int) -> bool:
        db = self._writer()
        try:
            with transaction(db):
                listed = db.execute(f"SELECT 1 FROM {table} WHERE owner = ? AND {column} = ?", (owner, party.key))  # noqa: S608 - our own names
                if listed.fetchone() is None:
                    (count,) = db.execute(f"SELECT count(*) FROM {table} WHERE owner = ?", (owner,)).fetchone()  # noqa: S608
                    if count >= limit:
                        return False
                db.execute(
                    f"INSERT INTO {table} (owner, {column}, name) VALUES (?, ?, ?) "  # noqa: S608
                    f"ON CONFLICT (owner, {column}) DO UPDATE SET name = excluded.name",
                    (owner, party.key, party.name),
                )
        except sqlite3.Error as exc:
            raise BackendError(f"Could not change the list: {exc}") from exc
        return True

    def _remove(self, table: str, column: str, owner: str, key: str) -> str | None:
        db = self._writer()
        try:
            with transaction(db):
                row = db.execute(f"SELECT name FROM {table} WHERE owner = ? AND {column} = ?", (owner, key)).fetchone()  # noqa: S608
                db.execute(f"DELETE FROM {table} WHERE owner = ? AND {column} = ?", (owner, key))  # noqa: S608
        except sqlite3.Error as exc:
            raise BackendError(f"Could not change the list: {exc}") from exc
        return str(row[0]) if row else None

    async def _forget(self, key: str) -> list[str]:
        db = self._writer()
        with transaction(db):
            others = [other for (other,) in db.execute("SELECT other FROM conversations WHERE owner = ?", (key,))]
            db.executemany("DELETE FROM dms WHERE conversation = ?", [(conversation_of(key, o),) for o in others])
            db.execute("DELETE FROM conversations WHERE owner = ? OR other = ?", (key, key))
            watchers = [owner for (owner,) in db.execute("SELECT owner FROM buddies WHERE buddy = ?", (key,))]
            db.execute("DELETE FROM buddies WHERE owner = ? OR buddy = ?", (key, key))
            db.execute("DELETE FROM blocks WHERE owner = ?", (key,))
        return watchers
