"""Accounts and sessions in the SQLite database (tables `users` and `sessions`, schema.py).

Reads run on the backend's reader thread, like history; writes are single statements on
the writer's connection, between the message commits of the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from app.backends.base import AccountStore
from app.backends.sqlite.files import transaction
from app.core.users import SignIn, User

Read = Callable[..., Awaitable[Any]]

_USER = "SELECT key, name, password, admin, created FROM users"
_SESSION = "SELECT hash, user, created, seen FROM sessions"


def _user(row: tuple[Any, ...]) -> User:
    key, name, password, admin, created = row
    return User(key, name, password, bool(admin), created)


class SQLiteAccounts(AccountStore):
    def __init__(self, read: Read, reader: Callable[[], sqlite3.Connection], writer: Callable[[], sqlite3.Connection]):
        self._read = read  # runs a function on the reader thread
        self._reader = reader
        self._writer = writer

    def _select(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        return self._reader().execute(query, args).fetchall()

    async def add_user(self, user: User) -> bool:
        db = self._writer()
        try:
            with transaction(db):
                db.execute(
                    "INSERT INTO users (key, name, password, admin, created) VALUES (?, ?, ?, ?, ?)",
                    (user.key, user.name, user.password, int(user.admin), user.created),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    async def user(self, key: str) -> User | None:
        rows = await self._read(self._select, f"{_USER} WHERE key = ?", key)
        return _user(rows[0]) if rows else None

    async def users(self) -> list[User]:
        return [_user(row) for row in await self._read(self._select, f"{_USER} ORDER BY key")]

    async def update_user(self, user: User) -> bool:
        db = self._writer()
        with transaction(db):
            changed = db.execute(
                "UPDATE users SET password = ?, admin = ? WHERE key = ?", (user.password, int(user.admin), user.key)
            ).rowcount
        return changed > 0

    async def remove_user(self, key: str) -> list[str]:
        db = self._writer()
        with transaction(db):
            ended = [hash for (hash,) in db.execute("SELECT hash FROM sessions WHERE user = ?", (key,))]
            db.execute("DELETE FROM sessions WHERE user = ?", (key,))
            db.execute("DELETE FROM users WHERE key = ?", (key,))
        return ended

    async def add_session(self, session: SignIn) -> None:
        db = self._writer()
        with transaction(db):
            db.execute(
                "INSERT INTO sessions (hash, user, created, seen) VALUES (?, ?, ?, ?)",
                (session.hash, session.user, session.created, session.seen),
            )

    async def session(self, hash: str) -> SignIn | None:
        rows = await self._read(self._select, f"{_SESSION} WHERE hash = ?", hash)
        return SignIn(*rows[0]) if rows else None

    async def touch_session(self, hash: str, seen: int) -> None:
        db = self._writer()
        with transaction(db):
            db.execute("UPDATE sessions SET seen = max(seen, ?) WHERE hash = ?", (seen, hash))

    async def end_session(self, hash: str) -> SignIn | None:
        db = self._writer()
        with transaction(db):
            row = db.execute(f"{_SESSION} WHERE hash = ?", (hash,)).fetchone()
            db.execute("DELETE FROM sessions WHERE hash = ?", (hash,))
        return SignIn(*row) if row else None

    async def end_sessions(self, user: str, keep: str | None = None) -> list[str]:
        db = self._writer()
        with transaction(db):
            ended = [
                hash
                for (hash,) in db.execute("SELECT hash FROM sessions WHERE user = ? AND hash IS NOT ?", (user, keep))
            ]
            db.execute("DELETE FROM sessions WHERE user = ? AND hash IS NOT ?", (user, keep))
        return ended
