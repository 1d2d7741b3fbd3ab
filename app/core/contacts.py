"""`Contacts`: the accounts with connections in this process, with their buddies, blocks and
conversations, and the way what happens to each reaches all its connections, whichever
room each is in.

An account is read from the backend (`DirectStore.arrive`) when its first connection here
is admitted, before its welcome, and let go (`depart`) when its last one ends, or when the
join that read it fails. From `arrive` on, the backend delivers everything that happens to
it; each delivery changes the copy kept here and goes to every connection of the account.
A welcome is built from that copy, at the same instant as the connection starts getting
deliveries: every direct message is either in a welcome's `conversations` (the last id of
each) or arrives after it, never both, never neither.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

import orjson

from app.core.direct import (
    MAX_WELCOME_CONVERSATIONS,
    AwayChanged,
    BlockChanged,
    Buddy,
    Conversation,
    Delivered,
    Delivery,
    Party,
    Seen,
    Snapshot,
    Unlisted,
)

if TYPE_CHECKING:
    from app.backends.base import DirectStore
    from app.core.hub import Hub
    from app.core.identity import Identity
    from app.core.member import Member

logger = logging.getLogger("chatroom")


def buddy_event(name: str, online: bool, away: str | None) -> bytes:
    """`{"type":"buddy","name","online","away"}`, and the away message while away."""
    event: dict[str, Any] = {"type": "buddy", "name": name, "online": online, "away": away is not None}
    if away is not None:
        event["message"] = away
    return orjson.dumps(event)


def away_event(name: str, message: str | None) -> bytes:
    """`{"type":"away","name","message"}`, or `{"type":"back","name"}` for None."""
    if message is None:
        return orjson.dumps({"type": "back", "name": name})
    return orjson.dumps({"type": "away", "name": name, "message": message})


def _buddy_fields(buddy: Buddy) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": buddy.name, "online": buddy.online, "away": buddy.away is not None}
    if buddy.away is not None:
        fields["message"] = buddy.away
    return fields


class _Account:
    """What this process keeps of an account with connections here."""

    __slots__ = ("blocked", "buddies", "conversations", "holds", "loading", "party", "pending")

    def __init__(self, party: Party) -> None:
        self.party = party
        self.holds = 1  # connections, and joins admitted that have not become one yet
        self.loading: asyncio.Future[None] | None = None
        self.pending: list[Delivery] | None = []  # delivered while it was being read
        self.buddies: dict[str, Buddy] = {}
        self.blocked: dict[str, str] = {}
        self.conversations: dict[str, Conversation] = {}

    def apply(self, snapshot: Snapshot) -> None:
        self.buddies = dict(snapshot.buddies)
        self.blocked = dict(snapshot.blocked)
        self.conversations = dict(snapshot.conversations)


class Contacts:
    def __init__(self, hub: Hub, store: DirectStore) -> None:
        self.hub = hub
        self.store = store
        self._accounts: dict[str, _Account] = {}
        self._joining: dict[asyncio.Task[Any], list[str]] = {}  # admitted here, not connected yet
        self._counted: dict[Member, str] = {}  # connections that hold their account here
        # A welcome held back for history (a resuming connection) is built after the
        # connection started getting deliveries: it shows the account as it was then.
        self._welcomed: weakref.WeakSet[Member] = weakref.WeakSet()
        self._as_connected: weakref.WeakKeyDictionary[Member, dict[str, Any]] = weakref.WeakKeyDictionary()

    def last_id(self, key: str, partner: str) -> int:
        """The last id of the conversation of `key` (here) with `partner`, as known here."""
        entry = self._accounts.get(key)
        conversation = entry.conversations.get(partner) if entry is not None else None
        return conversation.last if conversation is not None else 0

    # A connection's life (Hub.admission, connected, disconnected, welcome_fields)

    async def admit(self, who: Identity) -> None:
        """Read the account before its first connection here is welcomed. Raises `BackendError`."""
        if who.guest:
            return
        entry = self._accounts.get(who.key)
        if entry is None:
            entry = self._accounts[who.key] = _Account(Party(who.key, who.name))
            entry.loading = asyncio.ensure_future(self._load(entry))
        else:
            entry.holds += 1
        assert entry.loading is not None
        try:
            await asyncio.shield(entry.loading)
        except BaseException:
            self._release(who.key)
            raise
        task = asyncio.current_task()
        assert task is not None
        joining = self._joining.get(task)
        if joining is None:
            joining = self._joining[task] = []
            # A join admitted here may yet fail (a name in use, another check, the backend):
            # the connection's task ends soon after, and lets the account go.
            task.add_done_callback(self._join_ended)
        joining.append(who.key)

    async def _load(self, entry: _Account) -> None:
        snapshot = await self.store.arrive(entry.party)
        entry.apply(snapshot)
        pending, entry.pending = entry.pending or [], None
        for delivery in pending:
            self._apply(entry, delivery)

    def _join_ended(self, task: asyncio.Task[Any]) -> None:
        for key in self._joining.pop(task, []):
            self._release(key)

    def connected(self, member: Member) -> None:
        if not member.identity.account:
            return
        task = asyncio.current_task()
        joining = self._joining.get(task) if task is not None else None
        if joining is not None and member.key in joining:
            joining.remove(member.key)
        elif member.key in self._accounts:
            self._accounts[member.key].holds += 1
        else:
            logger.error("a connection of %s that was not admitted here: no direct messages", member.name)
            return
        self._counted[member] = member.key
        if member in self._welcomed:
            self._welcomed.discard(member)
        else:
            self._as_connected[member] = self.account_fields(member.key)

    def disconnected(self, member: Member) -> None:
        key = self._counted.pop(member, None)
        if key is not None:
            self._release(key)

    def welcome_fields(self, member: Member) -> dict[str, Any]:
        """`buddies`, `blocked` and `conversations` for a connection of an account."""
        if not member.identity.account:
            return {}
        fields = self._as_connected.pop(member, None)
        if fields is not None:
            return fields
        self._welcomed.add(member)
        return self.account_fields(member.key)

    def account_fields(self, key: str) -> dict[str, Any]:
        entry = self._accounts.get(key)
        if entry is None:
            return {}
        buddies = sorted(entry.buddies.values(), key=lambda buddy: (buddy.name.casefold(), buddy.name))
        latest = sorted(entry.conversations.values(), key=lambda conversation: -conversation.ts)
        return {
            "buddies": [_buddy_fields(buddy) for buddy in buddies],
            "blocked": sorted(entry.blocked.values(), key=lambda name: (name.casefold(), name)),
            "conversations": [
                {"with": conversation.name, "last": conversation.last, "ts": conversation.ts}
                for conversation in latest[:MAX_WELCOME_CONVERSATIONS]
            ],
        }

    def _release(self, key: str) -> None:
        entry = self._accounts.get(key)
        if entry is None:
            return
        entry.holds -= 1
        if entry.holds == 0:
            del self._accounts[key]
            self.store.depart(key)

    # What the backend delivers (app.core.direct.DirectHandler)

    def deliver(self, key: str, delivery: Delivery) -> None:
        entry = self._accounts.get(key)
        if entry is None:
            return
        if entry.pending is not None:
            entry.pending.append(delivery)
            return
        self._apply(entry, delivery)

    def _apply(self, entry: _Account, delivery: Delivery) -> None:
        if isinstance(delivery, Delivered):
            partner, message = delivery
            known = entry.conversations.get(partner.key)
            if known is not None and message.id <= known.last:
                return  # in the account's copy already
            entry.conversations[partner.key] = Conversation(partner.name, message.id, message.ts)
            self._tell(entry, message.json)
        elif isinstance(delivery, Seen):
            buddy, online, away, added = delivery
            if added or buddy.key in entry.buddies:
                entry.buddies[buddy.key] = Buddy(buddy.name, online, away if online else None)
                self._tell(entry, buddy_event(buddy.name, online, away if online else None))
        elif isinstance(delivery, AwayChanged):
            listed = entry.buddies.get(delivery.buddy.key)
            if listed is not None and listed.online:
                entry.buddies[delivery.buddy.key] = listed._replace(away=delivery.message)
                self._tell(entry, away_event(listed.name, delivery.message))
        elif isinstance(delivery, Unlisted):
            entry.buddies.pop(delivery.buddy.key, None)
            self._tell(entry, orjson.dumps({"type": "buddy_removed", "name": delivery.buddy.name}))
        elif isinstance(delivery, BlockChanged):
            other, blocked = delivery
            if blocked:
                entry.blocked[other.key] = other.name
            else:
                entry.blocked.pop(other.key, None)
            self._tell(entry, orjson.dumps({"type": "blocked" if blocked else "unblocked", "name": other.name}))

    def _tell(self, entry: _Account, event: bytes) -> None:
        for member in self.hub.connections.get(entry.party.key, ()):
            if member in self._counted:
                member.push(event)

    async def refresh(self, key: str, snapshot: Snapshot, replay_limit: int) -> None:
        """Bring the account's copy, and its connections, up to `snapshot`: what changed is
        told as if it had been delivered, the direct messages missed included."""
        entry = self._accounts.get(key)
        if entry is None or entry.pending is not None:
            return
        for buddy_key, buddy in snapshot.buddies.items():
            if entry.buddies.get(buddy_key) != buddy:
                self._apply(entry, Seen(Party(buddy_key, buddy.name), buddy.online, buddy.away, added=True))
        for buddy_key, buddy in list(entry.buddies.items()):
            if buddy_key not in snapshot.buddies:
                self._apply(entry, Unlisted(Party(buddy_key, buddy.name)))
        for other, name in snapshot.blocked.items():
            if other not in entry.blocked:
                self._apply(entry, BlockChanged(Party(other, name), True))
        for other, name in list(entry.blocked.items()):
            if other not in snapshot.blocked:
                self._apply(entry, BlockChanged(Party(other, name), False))
        for partner, conversation in snapshot.conversations.items():
            known = entry.conversations.get(partner)
            after = known.last if known is not None else 0
            if conversation.last < after:
                self.store.went_back()
                return
            if conversation.last == after:
                continue
            missed, _ = await self.store.history(key, partner, conversation.last + 1, after, replay_limit)
            if self._accounts.get(key) is not entry:
                return
            for message in missed:
                self._apply(entry, Delivered(Party(partner, conversation.name), message))
