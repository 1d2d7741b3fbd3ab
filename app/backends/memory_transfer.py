"""Export and import of `memory://` (for the tests of the seam: no command reaches a server's
memory). The snapshot is what the process holds when each part is read; writing is plain
assignment, which nothing can interrupt."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from app.backends.base import AccountStore, Loader, StoreSnapshot, TransferStore
from app.backends.memory_moderation import MemoryModeration
from app.core.direct import Conversation, DirectMessage, Party, conversation_of
from app.core.messages import Message
from app.core.moderation.records import AuditEntry, RoomRules, Sanction
from app.core.transfer.format import (
    Listed,
    StoredBlock,
    StoredBuddy,
    StoredConversation,
    StoredMessage,
    StoredRead,
    StoredRoom,
    reactors,
)
from app.core.users import User

PAGE = 1000


class RoomLog:
    """A room's latest messages, at most `limit`, and the last id given out."""

    __slots__ = ("last_id", "messages", "reactions")

    def __init__(self, limit: int) -> None:
        self.messages: deque[Message] = deque(maxlen=limit)
        self.last_id = 0
        # Who gave which reaction to the messages that have any: id -> emoji -> name keys.
        self.reactions: dict[int, dict[str, set[str]]] = {}

    def index(self, id: int) -> int | None:
        """Where message `id` is in `messages`. Ids count up without holes, unless an import
        brought a history with some (what retention had deleted): then it is looked for."""
        if not self.messages:
            return None
        index = id - self.messages[0].id
        if 0 <= index < len(self.messages) and self.messages[index].id == id:
            return index
        if not self.messages[0].id < id <= self.messages[-1].id:
            return None
        return next((place for place, message in enumerate(self.messages) if message.id == id), None)


class DirectBook:
    """Direct messages and lists as memory:// keeps them (`MemoryDirect`): a conversation's
    latest `limit` messages and its last id, each account's conversations (by the other's
    key), buddies and blocks (key -> name)."""

    __slots__ = ("blocks_of", "conversations_of", "last_ids", "limit", "lists", "messages")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.messages: dict[str, deque[DirectMessage]] = {}
        self.last_ids: dict[str, int] = {}
        self.conversations_of: dict[str, dict[str, Conversation]] = {}
        self.lists: dict[str, dict[str, str]] = {}
        self.blocks_of: dict[str, dict[str, str]] = {}


class MemoryStores:
    """What the memory backend holds, as its export and import reach it."""

    def __init__(
        self,
        logs: dict[str, RoomLog],
        log: Callable[[str], RoomLog],
        accounts: AccountStore,
        moderation: MemoryModeration,
        direct: DirectBook,
        reads: dict[tuple[str, str], int],
    ) -> None:
        self.direct = direct
        self.reads = reads  # (account, room) -> the highest id read there
        self.logs = logs
        self.log = log  # the room's log, made the first time
        self.accounts = accounts
        self.moderation = moderation


class MemoryTransfer(TransferStore):
    def __init__(self, stores: Callable[[], MemoryStores]) -> None:
        self._stores = stores

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[StoreSnapshot]:
        yield _MemorySnapshot(self._stores())

    @asynccontextmanager
    async def loading(self) -> AsyncIterator[Loader]:
        yield _MemoryLoader(self._stores())


class _MemorySnapshot(StoreSnapshot):
    def __init__(self, backend: MemoryStores) -> None:
        self._backend = backend
        self._last_ids = {room: log.last_id for room, log in backend.logs.items()}
        # Direct messages' ids, and the lists, as of now: a conversation's time goes with its id.
        book = backend.direct
        self._dm_last = dict(book.last_ids)
        self._shown = {key: dict(theirs) for key, theirs in book.conversations_of.items()}
        self._lists = {key: dict(listed) for key, listed in book.lists.items()}
        self._blocks_of = {key: dict(listed) for key, listed in book.blocks_of.items()}

    async def rooms(self) -> list[StoredRoom]:
        rules = self._backend.moderation.rules_of_rooms()
        names = sorted(set(self._last_ids) | set(rules))
        return [
            StoredRoom(
                name,
                self._last_ids.get(name, 0),
                rules.get(name, RoomRules()),
                sum(1 for message in self._kept(name, 0)),
            )
            for name in names
        ]

    def _kept(self, room: str, after: int) -> Iterator[Message]:
        log = self._backend.logs.get(room)
        upto = self._last_ids.get(room, 0)
        if log is not None:
            yield from (message for message in list(log.messages) if after < message.id <= upto)

    async def messages(self, room: str, after: int = 0) -> AsyncIterator[list[StoredMessage]]:
        page: list[StoredMessage] = []
        given = self._backend.logs[room].reactions if room in self._backend.logs else {}
        for message in self._kept(room, after):
            page.append(StoredMessage(message, reactors(given.get(message.id, {}))))
            if len(page) == PAGE:
                yield page
                page = []
        if page:
            yield page

    async def users(self) -> list[User]:
        return sorted(await self._backend.accounts.users(), key=lambda user: user.key)

    async def sanctions(self) -> list[Sanction]:
        return self._backend.moderation.every_sanction()

    async def audit(self, after: int = 0) -> AsyncIterator[list[AuditEntry]]:
        entries = [entry for entry in self._backend.moderation.audit_log() if entry.id > after]
        for start in range(0, len(entries), PAGE):
            yield entries[start : start + PAGE]

    async def audit_last(self) -> int:
        entries = self._backend.moderation.audit_log()
        return entries[-1].id if entries else 0

    async def secret(self) -> bytes | None:
        return await self._backend.moderation.secret()

    def _kept_dms(self, conversation: str, after: int) -> list[DirectMessage]:
        upto = self._dm_last.get(conversation, 0)
        kept = self._backend.direct.messages.get(conversation, ())
        return [message for message in list(kept) if after < message.id <= upto]

    async def conversations(self) -> list[StoredConversation]:
        found = []
        for one, theirs in self._shown.items():
            for other, seen in theirs.items():
                back = self._shown.get(other, {}).get(one)
                key = conversation_of(one, other)
                if one <= other and back is not None and key in self._dm_last:
                    found.append(
                        StoredConversation(
                            (Party(one, back.name), Party(other, seen.name)),
                            self._dm_last[key],
                            seen.ts,
                            len(self._kept_dms(key, 0)),
                        )
                    )
        return sorted(found, key=lambda conversation: conversation.key)

    async def dms(self, conversation: str, after: int = 0) -> AsyncIterator[list[DirectMessage]]:
        kept = self._kept_dms(conversation, after)
        for start in range(0, len(kept), PAGE):
            yield kept[start : start + PAGE]

    async def buddies(self) -> list[StoredBuddy]:
        listed = [
            StoredBuddy(owner, Party(key, name))
            for owner, entries in self._lists.items()
            for key, name in entries.items()
        ]
        return sorted(listed, key=_by_owner)

    async def blocks(self) -> list[StoredBlock]:
        listed = [
            StoredBlock(owner, Party(key, name))
            for owner, entries in self._blocks_of.items()
            for key, name in entries.items()
        ]
        return sorted(listed, key=_by_owner)

    async def reads(self) -> list[StoredRead]:
        return [StoredRead(key, room, id) for (key, room), id in sorted(self._backend.reads.items())]


class _MemoryLoader(Loader):
    def __init__(self, backend: MemoryStores) -> None:
        self._backend = backend

    async def messages(self, room: str, messages: list[StoredMessage]) -> None:
        log = self._backend.log(room)
        for stored in messages:
            log.messages.append(stored.message)
            log.last_id = max(log.last_id, stored.id)
            if stored.reactions:
                log.reactions[stored.id] = {emoji: set(keys) for emoji, keys in stored.reactions}

    async def room(self, room: str, last_id: int, rules: RoomRules | None) -> None:
        log = self._backend.log(room)
        log.last_id = max(log.last_id, last_id)
        if rules is not None:
            self._backend.moderation.put_rules(room, rules)

    async def users(self, users: list[User]) -> None:
        for user in users:
            await self._backend.accounts.add_user(user)

    async def sanctions(self, sanctions: list[Sanction]) -> None:
        for sanction in sanctions:
            await self._backend.moderation.add_sanction(sanction)

    async def audit(self, entries: list[AuditEntry]) -> None:
        self._backend.moderation.append_audit(entries)

    async def secret(self, key: bytes) -> None:
        self._backend.moderation.set_secret(key)

    async def dms(self, conversation: StoredConversation, messages: list[DirectMessage]) -> None:
        book = self._backend.direct
        key = conversation.key
        kept = book.messages.setdefault(key, deque(maxlen=book.limit))
        for message in messages:
            kept.append(message)
            book.last_ids[key] = max(book.last_ids.get(key, 0), message.id)

    async def conversation(self, conversation: StoredConversation) -> None:
        book = self._backend.direct
        key = conversation.key
        book.last_ids[key] = max(book.last_ids.get(key, 0), conversation.last_id)
        one, other = conversation.accounts
        for owner, party in ((one, other), (other, one)):
            theirs = book.conversations_of.setdefault(owner.key, {})
            shown = theirs.get(party.key)
            if shown is None or shown.last < conversation.last_id:
                theirs[party.key] = Conversation(party.name, conversation.last_id, conversation.ts)

    async def buddies(self, buddies: list[StoredBuddy]) -> None:
        for buddy in buddies:
            self._backend.direct.lists.setdefault(buddy.owner, {})[buddy.other.key] = buddy.other.name

    async def blocks(self, blocks: list[StoredBlock]) -> None:
        for block in blocks:
            self._backend.direct.blocks_of.setdefault(block.owner, {})[block.other.key] = block.other.name

    async def reads(self, reads: list[StoredRead]) -> None:
        positions = self._backend.reads
        for read in reads:
            positions[read.key, read.room] = max(positions.get((read.key, read.room), 0), read.id)


def _by_owner(listed: Listed) -> tuple[str, str]:
    return listed.owner, listed.other.key
