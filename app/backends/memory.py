"""`memory://`: history in this process's memory, bounded per room; one process only."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.backends.base import AccountStore, Backend, DirectStore, ModerationStore, TransferStore
from app.backends.changes import ChangeStore
from app.backends.direct import LocalDirect
from app.backends.memory_moderation import MemoryModeration
from app.backends.memory_transfer import DirectBook, MemoryStores, MemoryTransfer, RoomLog
from app.backends.reads import ReadStore
from app.core.direct import Conversation, DirectMessage, Party, conversation_of
from app.core.messages import Message, now_ms
from app.core.users import SignIn, User
from app.core.words import Phrase, matches
from app.settings import Settings


class MemoryChanges(ChangeStore):
    """Changes made in place, in the bounded log of each room."""

    def __init__(self, log: Callable[[str], RoomLog], deliver: Callable[[str, str, Message], None]) -> None:
        self._log = log
        self._deliver = deliver  # to this process's rooms (Backend.deliver_change)

    async def message(self, room: str, id: int) -> Message | None:
        log = self._log(room)
        index = log.index(id)
        return log.messages[index] if index is not None else None

    def _change(self, room: str, id: int, kind: str, change: Callable[[Message], Message]) -> Message | None:
        log = self._log(room)
        index = log.index(id)
        if index is None or log.messages[index].deleted:
            return None
        changed = log.messages[index] = change(log.messages[index])
        self._deliver(room, kind, changed)
        return changed

    async def edit(self, message: Message, text: str, edited_ts: int) -> Message | None:
        return self._change(message.room, message.id, "edit", lambda now: now.edited(text, edited_ts))

    async def delete(self, message: Message) -> Message | None:
        self._log(message.room).reactions.pop(message.id, None)
        return self._change(message.room, message.id, "delete", Message.tombstone)

    async def react(self, room: str, id: int, key: str, emoji: str) -> Message | None:
        log = self._log(room)
        index = log.index(id)
        if index is None or log.messages[index].deleted:
            return None
        first = log.messages[0].id
        for gone in [number for number in log.reactions if number < first]:  # let go with the log
            del log.reactions[gone]
        given = log.reactions.setdefault(id, {}).setdefault(emoji, set())
        given.symmetric_difference_update({key})
        counts = {each: len(keys) for each, keys in log.reactions[id].items()}
        return self._change(room, id, "reactions", lambda now: now.with_reactions(counts))

    async def search(
        self, room: str, phrases: list[Phrase], before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        found: list[Message] = []
        for message in reversed(self._log(room).messages):
            if (before is not None and message.id >= before) or message.deleted:
                continue
            if matches(phrases, message.text):
                found.append(message)
                if len(found) > limit:
                    break
        return found[:limit], len(found) > limit


class MemoryReads(ReadStore):
    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], int] = {}  # (account, room) -> the highest id read

    async def position(self, key: str, room: str) -> int | None:
        return self.positions.get((key, room))

    async def mark(self, key: str, room: str, id: int) -> None:
        if id > self.positions.get((key, room), 0):
            self.positions[(key, room)] = id


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


class MemoryDirect(LocalDirect):
    """Direct messages and lists in this process's memory; a conversation keeps its latest
    `limit` messages (CHAT_HISTORY_LIMIT, as rooms do); gone at restart."""

    def __init__(self, notify: Callable[[str, dict[str, Any]], None], limit: int) -> None:
        super().__init__(notify)
        self.book = book = DirectBook(limit)  # what export and import reach
        self._limit = limit
        self._messages = book.messages
        self._last_ids = book.last_ids
        self._conversations_of = book.conversations_of
        self._lists = book.lists
        self._blocks_of = book.blocks_of

    async def _append(self, sender: Party, recipient: Party, text: str, auto: bool) -> DirectMessage:
        conversation = conversation_of(sender.key, recipient.key)
        number = self._last_ids[conversation] = self._last_ids.get(conversation, 0) + 1
        message = DirectMessage.create(number, sender.name, recipient.name, text, now_ms(), auto)
        self._messages.setdefault(conversation, deque(maxlen=self._limit)).append(message)
        self._conversations_of.setdefault(sender.key, {})[recipient.key] = Conversation(
            recipient.name, number, message.ts
        )
        self._conversations_of.setdefault(recipient.key, {})[sender.key] = Conversation(sender.name, number, message.ts)
        return message

    async def _history(
        self, conversation: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        kept = [
            message
            for message in self._messages.get(conversation, ())
            if (before is None or message.id < before) and (after is None or message.id > after)
        ]
        return kept[-limit:], len(kept) > limit

    async def _conversations(self, key: str) -> dict[str, Conversation]:
        return dict(self._conversations_of.get(key, {}))

    async def _buddies(self, key: str) -> dict[str, str]:
        return dict(self._lists.get(key, {}))

    async def _blocked(self, key: str) -> dict[str, str]:
        return dict(self._blocks_of.get(key, {}))

    async def _blocks(self, owner: str, other: str) -> bool:
        return other in self._blocks_of.get(owner, {})

    async def _add_buddy(self, owner: str, buddy: Party, limit: int) -> bool:
        return _add(self._lists.setdefault(owner, {}), buddy, limit)

    async def _remove_buddy(self, owner: str, buddy: str) -> str | None:
        return self._lists.get(owner, {}).pop(buddy, None)

    async def _add_block(self, owner: str, other: Party, limit: int) -> bool:
        return _add(self._blocks_of.setdefault(owner, {}), other, limit)

    async def _remove_block(self, owner: str, other: str) -> str | None:
        return self._blocks_of.get(owner, {}).pop(other, None)

    async def _forget(self, key: str) -> list[str]:
        for other in self._conversations_of.pop(key, {}):
            self._conversations_of.get(other, {}).pop(key, None)
            # Its last id stays: ids keep increasing if the two names ever talk again.
            self._messages.pop(conversation_of(key, other), None)
        self._lists.pop(key, None)
        self._blocks_of.pop(key, None)
        return [owner for owner, buddies in self._lists.items() if buddies.pop(key, None) is not None]


def _add(listed: dict[str, str], party: Party, limit: int) -> bool:
    if party.key not in listed and len(listed) >= limit:
        return False
    listed[party.key] = party.name
    return True


class MemoryBackend(Backend):
    """Keeps the latest `settings.history_limit` messages of every room; lost on restart."""

    def __init__(self, url: str, settings: Settings) -> None:
        super().__init__(url, settings)
        self.logs: dict[str, RoomLog] = {}  # room -> its kept messages and last id
        self._subscribed: set[str] = set()

    def _account_store(self) -> AccountStore:
        return MemoryAccounts()

    def _change_store(self) -> ChangeStore:
        return MemoryChanges(self.log, self.deliver_change)

    def _read_store(self) -> ReadStore:
        return MemoryReads()

    def _moderation_store(self) -> ModerationStore:
        return MemoryModeration()

    def _transfer_store(self) -> TransferStore:
        return MemoryTransfer(self._stores)

    def _direct_store(self) -> DirectStore:
        return MemoryDirect(self.notify, self.settings.history_limit)

    def _stores(self) -> MemoryStores:
        assert isinstance(self.moderation, MemoryModeration)
        assert isinstance(self.direct, MemoryDirect)
        assert isinstance(self.reads, MemoryReads)
        return MemoryStores(self.logs, self.log, self.accounts, self.moderation, self.direct.book, self.reads.positions)

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
