"""`LocalDirect`: direct messages, buddy lists and away messages for a backend that serves one
process (memory://, sqlite:///).

The process is the whole chat: an account is online exactly while it has a connection here,
and who is away, who watches whom and whom the online block are known here. What lasts
(messages, conversations, lists) is the subclass's; everything that changes it goes through
one lock, so that a message and a block, or two automatic replies, never cross.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.backends.base import BackendError, DirectStore
from app.core.direct import (
    AwayChanged,
    BlockChanged,
    Buddy,
    Conversation,
    Delivered,
    Delivery,
    DirectMessage,
    Forbidden,
    Party,
    Seen,
    Snapshot,
    Unlisted,
    conversation_of,
)


@dataclass(slots=True)
class _Here:
    """An account with connections in this process: online."""

    name: str
    buddies: dict[str, str] = field(default_factory=dict)  # key -> name
    blocked: set[str] = field(default_factory=set)
    ready: bool = False  # its lists are read


class LocalDirect(DirectStore):
    def __init__(self, notify: Callable[[str, dict[str, Any]], None]) -> None:
        self._notify = notify  # Backend.notify: tells the hub (and `chatroom users` beside it)
        self._here: dict[str, _Here] = {}
        self._watchers: dict[str, set[str]] = {}  # key -> the accounts here with it on their list
        self._away: dict[str, str] = {}
        self._answered: dict[str, set[str]] = {}  # away key -> whom it answered in this period
        self._lock = asyncio.Lock()

    # What lasts: the subclass's

    @abstractmethod
    async def _append(self, sender: Party, recipient: Party, text: str, auto: bool) -> DirectMessage:
        """Store a message with the conversation's next id and the time now."""

    @abstractmethod
    async def _history(
        self, conversation: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        """See `DirectStore.history`."""

    @abstractmethod
    async def _conversations(self, key: str) -> dict[str, Conversation]:
        """The account's conversations, by the other's key."""

    @abstractmethod
    async def _buddies(self, key: str) -> dict[str, str]:
        """The account's buddy list: key -> name."""

    @abstractmethod
    async def _blocked(self, key: str) -> dict[str, str]:
        """Whom the account blocks: key -> name."""

    @abstractmethod
    async def _blocks(self, owner: str, other: str) -> bool:
        """Whether account `owner` blocks account `other`."""

    @abstractmethod
    async def _add_buddy(self, owner: str, buddy: Party, limit: int) -> bool:
        """Add, or keep; False if the list holds `limit` others."""

    @abstractmethod
    async def _remove_buddy(self, owner: str, buddy: str) -> str | None:
        """Remove; the name it had, if it was there."""

    @abstractmethod
    async def _add_block(self, owner: str, other: Party, limit: int) -> bool:
        """Add, or keep; False if the list holds `limit` others."""

    @abstractmethod
    async def _remove_block(self, owner: str, other: str) -> str | None:
        """Remove; the name it had, if it was there."""

    @abstractmethod
    async def _forget(self, key: str) -> list[str]:
        """Delete everything of the account; the keys of those that had it as a buddy."""

    # Who is here

    async def arrive(self, account: Party) -> Snapshot:
        async with self._lock:
            here = self._here[account.key] = _Here(account.name)
            try:
                buddies = await self._buddies(account.key)
                blocked = await self._blocked(account.key)
                conversations = await self._conversations(account.key)
            except BaseException:
                if self._here.get(account.key) is here:
                    del self._here[account.key]
                raise
            if self._here.get(account.key) is not here:
                raise BackendError(f"{account.name!r} left while its lists were read")
            here.buddies, here.blocked, here.ready = buddies, set(blocked), True
            for buddy in buddies:
                self._watchers.setdefault(buddy, set()).add(account.key)
            self._tell_watchers(account)
            seen = {key: self._seen(key, name, account.key) for key, name in buddies.items()}
            return Snapshot(seen, blocked, conversations)

    def depart(self, key: str) -> None:
        here = self._here.pop(key, None)
        if here is None:
            return
        for buddy in here.buddies:
            watching = self._watchers.get(buddy)
            if watching is not None:
                watching.discard(key)
                if not watching:
                    del self._watchers[buddy]
        away = self._away.pop(key, None)
        self._answered.pop(key, None)
        self._tell_watchers(Party(key, here.name))
        if away is not None:
            self._notify("away", {"key": key, "name": here.name, "message": None})

    def _seen(self, key: str, name: str, watcher: str) -> Buddy:
        """Account `key` as `watcher` sees it: offline if it blocks the watcher."""
        here = self._here.get(key)
        if here is None or watcher in here.blocked:
            return Buddy(name, False, None)
        return Buddy(name, True, self._away.get(key))

    def _tell_watchers(self, account: Party) -> None:
        for watcher in list(self._watchers.get(account.key, ())):
            seen = self._seen(account.key, account.name, watcher)
            self._deliver(watcher, Seen(account, seen.online, seen.away))

    def _deliver(self, key: str, delivery: Delivery) -> None:
        here = self._here.get(key)
        if self.handler is not None and here is not None and here.ready:
            self.handler.deliver(key, delivery)

    async def _blocking(self, owner: str, other: str) -> bool:
        here = self._here.get(owner)
        if here is not None and here.ready:
            return other in here.blocked
        return await self._blocks(owner, other)

    # Messages

    async def send(self, sender: Party, recipient: Party, text: str, seen: int = 0) -> list[DirectMessage]:
        async with self._lock:
            if await self._blocking(recipient.key, sender.key):
                raise Forbidden(f"{recipient.name} does not take direct messages from you")
            if await self._blocking(sender.key, recipient.key):
                raise Forbidden(f"You blocked {recipient.name}: unblock them to write to them")
            sent = [await self._append(sender, recipient, text, False)]
            self._deliver_message(sender, recipient, sent[0])
            away = self._away.get(recipient.key)
            answered = self._answered.setdefault(recipient.key, set()) if away is not None else None
            if away is not None and answered is not None and sender.key not in answered:
                answered.add(sender.key)
                sent.append(await self._append(recipient, sender, away, True))
                self._deliver_message(recipient, sender, sent[1])
            return sent

    def _deliver_message(self, sender: Party, recipient: Party, message: DirectMessage) -> None:
        self._deliver(sender.key, Delivered(recipient, message))
        self._deliver(recipient.key, Delivered(sender, message))

    async def history(
        self, one: str, other: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        return await self._history(conversation_of(one, other), before, after, limit)

    # Away

    async def away(self, account: Party, message: str | None) -> None:
        async with self._lock:
            if message is None:
                if self._away.pop(account.key, None) is None:
                    return
            elif self._away.get(account.key) == message:
                return
            else:
                self._away[account.key] = message
            self._answered.pop(account.key, None)  # a new period: everyone gets the message once
            for watcher in list(self._watchers.get(account.key, ())):
                if self._seen(account.key, account.name, watcher).online:
                    self._deliver(watcher, AwayChanged(account, message))
            self._notify("away", {"key": account.key, "name": account.name, "message": message})

    async def away_everywhere(self) -> dict[str, tuple[str, str]]:
        return {key: (self._here[key].name, message) for key, message in self._away.items() if key in self._here}

    # Lists

    async def add_buddy(self, owner: Party, buddy: Party, limit: int) -> bool:
        async with self._lock:
            if not await self._add_buddy(owner.key, buddy, limit):
                return False
            here = self._here.get(owner.key)
            if here is not None:
                here.buddies[buddy.key] = buddy.name
                self._watchers.setdefault(buddy.key, set()).add(owner.key)
            seen = self._seen(buddy.key, buddy.name, owner.key)
            self._deliver(owner.key, Seen(buddy, seen.online, seen.away, added=True))
            return True

    async def remove_buddy(self, owner: Party, buddy: Party) -> None:
        async with self._lock:
            name = await self._remove_buddy(owner.key, buddy.key)
            here = self._here.get(owner.key)
            if here is not None:
                here.buddies.pop(buddy.key, None)
                watching = self._watchers.get(buddy.key)
                if watching is not None:
                    watching.discard(owner.key)
                    if not watching:
                        del self._watchers[buddy.key]
            self._deliver(owner.key, Unlisted(Party(buddy.key, name or buddy.name)))

    async def block(self, owner: Party, other: Party, limit: int) -> bool:
        async with self._lock:
            if not await self._add_block(owner.key, other, limit):
                return False
            here = self._here.get(owner.key)
            if here is not None:
                here.blocked.add(other.key)
            if owner.key in self._buddies_here(other.key):
                self._deliver(other.key, Seen(owner, False, None))  # gone, as far as `other` can tell
            self._deliver(owner.key, BlockChanged(other, True))
            return True

    async def unblock(self, owner: Party, other: Party) -> None:
        async with self._lock:
            name = await self._remove_block(owner.key, other.key)
            here = self._here.get(owner.key)
            if here is not None:
                here.blocked.discard(other.key)
            if name is not None and owner.key in self._buddies_here(other.key):
                seen = self._seen(owner.key, owner.name, other.key)
                self._deliver(other.key, Seen(owner, seen.online, seen.away))
            self._deliver(owner.key, BlockChanged(Party(other.key, name or other.name), False))

    def _buddies_here(self, key: str) -> dict[str, str]:
        here = self._here.get(key)
        return here.buddies if here is not None else {}

    async def forget(self, key: str) -> None:
        async with self._lock:
            watchers = await self._forget(key)
            for watcher in watchers:
                here = self._here.get(watcher)
                name = here.buddies.pop(key, None) if here is not None else None
                if name is not None:
                    self._deliver(watcher, Unlisted(Party(key, name)))
            self._watchers.pop(key, None)
