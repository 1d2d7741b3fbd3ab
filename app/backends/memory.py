"""`memory://`: history in this process's memory, bounded per room; one process only."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from app.backends.base import AccountStore, Backend, ModerationStore, TransferStore
from app.backends.memory_moderation import MemoryModeration
from app.backends.memory_transfer import MemoryStores, MemoryTransfer, RoomLog
from app.core.messages import Message, now_ms
from app.core.users import SignIn, User
from app.settings import Settings


class MemoryAccounts(AccountStore):
    """Users and sessions in this process's memory; gone at restart."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._sessions: dict[str, SignIn] = {}

    async def add_user(self, user: User) -> bool:
        if user.key in self._users:
            return False
        self._users[user.key] = user
        return True

    async def user(self, key: str) -> User | None:
        return self._users.get(key)

    async def users(self) -> list[User]:
        return list(self._users.values())

    async def update_user(self, user: User) -> bool:
        if user.key not in self._users:
            return False
        self._users[user.key] = user
        return True

    async def remove_user(self, key: str) -> list[str]:
        self._users.pop(key, None)
        return await self.end_sessions(key)

    async def add_session(self, session: SignIn) -> None:
        self._sessions[session.hash] = session

    async def session(self, hash: str) -> SignIn | None:
        return self._sessions.get(hash)

    async def touch_session(self, hash: str, seen: int) -> None:
        session = self._sessions.get(hash)
        if session is not None:
            self._sessions[hash] = replace(session, seen=seen)

    async def end_session(self, hash: str) -> SignIn | None:
        return self._sessions.pop(hash, None)

    async def end_sessions(self, user: str, keep: str | None = None) -> list[str]:
        ended = [hash for hash, session in self._sessions.items() if session.user == user and hash != keep]
        for hash in ended:
            del self._sessions[hash]
        return ended


class MemoryBackend(Backend):
    """Keeps the latest `settings.history_limit` messages of every room; lost on restart."""

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.logs: dict[str, RoomLog] = {}  # room -> its kept messages and last id
        self._subscribed: set[str] = set()

    def _account_store(self) -> AccountStore:
        return MemoryAccounts()

    def _moderation_store(self) -> ModerationStore:
        return MemoryModeration()

    def _transfer_store(self) -> TransferStore:
        return MemoryTransfer(self._stores)

    def _stores(self) -> MemoryStores:
        assert isinstance(self.moderation, MemoryModeration)
        return MemoryStores(self.logs, self.log, self.accounts, self.moderation)

    def log(self, room: str) -> RoomLog:
        """The room's log, made empty the first time."""
        log = self.logs.get(room)
        if log is None:
            log = self.logs[room] = RoomLog(self.settings.history_limit)
        return log

    async def subscribe(self, room: str) -> list[Message]:
        self._subscribed.add(room)
        messages = self.log(room).messages
        count = min(len(messages), self.settings.welcome_history)
        return [messages[i] for i in range(len(messages) - count, len(messages))]

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    def subscribed(self, room: str) -> bool:
        return room in self._subscribed

    def publish(self, room: str, name: str, text: str, guest: bool = False) -> asyncio.Future[Message]:
        log = self.log(room)
        log.last_id += 1
        message = Message(room, log.last_id, name, text, now_ms(), guest)
        log.messages.append(message)
        self.deliver_here(room, message.json, message)
        stored: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        stored.set_result(message)
        return stored

    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        older = [message for message in self.log(room).messages if before is None or message.id < before]
        return older[-limit:], len(older) > limit

    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        kept = self.log(room).messages
        newer = [message for message in kept if after < message.id <= upto]
        # Ids here count up from 1 without holes: a first kept id beyond after + 1 means the
        # bounded log already let the messages in between go.
        forgot = bool(kept) and kept[0].id > after + 1
        return newer[-limit:], len(newer) > limit or forgot
