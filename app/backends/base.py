"""The seam between the hub and where messages live.

A backend stores each room's history and carries each room's events to every process
that has clients in that room. The hub never knows which backend it holds: it subscribes
to the rooms its clients are in, publishes what they say, and fans out whatever the
backend delivers, its own clients' messages included, so one process and many behave alike.
Who holds which name is the backend's `presence`; accounts and their sessions are its
`accounts`; rooms' rules, bans, mutes and the audit log its `moderation`; direct messages,
buddy lists, blocks and away messages its `direct`; edits, deletions, reactions and search
its `changes` (changes.py); read positions its `reads` (reads.py); `notify` tells every
process's hub of a change that concerns its connections; `transfer` reads all of it out
and writes it back, ids and all (`chatroom export` and `chatroom import`).
"""

from __future__ import annotations

import asyncio
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from app.backends.changes import ChangeStore
from app.backends.reads import ReadStore
from app.core.identity import Online
from app.core.protocol import join_event, leave_event

if TYPE_CHECKING:
    from app.core.direct import DirectHandler, DirectMessage, Party, Snapshot
    from app.core.messages import Message
    from app.core.moderation.records import AuditEntry, Kind, Person, Role, RoomRules, Sanction, Topic
    from app.core.transfer.format import (
        StoredBlock,
        StoredBuddy,
        StoredConversation,
        StoredMessage,
        StoredRead,
        StoredRoom,
    )
    from app.core.users import SignIn, User
    from app.settings import Settings


class Subscriber(Protocol):
    """What a backend delivers to: the hub of this process."""

    def deliver(self, room: str, event: bytes, message: Message | None) -> None:
        """One event for `room`, in order with the others; `message` is set for chat messages."""

    def changed(self, room: str, kind: str, message: Message) -> None:
        """A stored message of `room` changed (`kind`: edit, delete or reactions); `message` is
        its latest state. In order with the room's other events, in every process alike."""

    def ephemeral(self, room: str, key: str, event: bytes) -> None:
        """An event for `room`'s members but those of name key `key` (someone typing), never
        stored: the room may drop it when it is busy (`Backend.ephemeral`)."""

    def evict(self, room: str, key: str) -> None:
        """Another process took over the name `key` holds here in `room` (`Presence.take_over`)."""

    def notice(self, kind: str, fields: dict[str, Any]) -> None:
        """A change that concerns connections in every process (`Backend.notify`), this one's too."""

    def epoch_changed(self) -> None:
        """The history began a new epoch (`Backend.epoch`), without a restart (a shared backend
        that lost data): ids delivered so far mean other messages in it. The backend forgot
        every room and name of this process; events of rooms not subscribed again never come."""


class BackendError(Exception):
    """The backend could not do what was asked (store a message, read history)."""


class Presence:
    """Who holds which name in each room, and who is online.

    This one is for backends that serve one process: the hub's own check that a name is
    free there is the whole truth, so every claim succeeds and nothing can be taken over
    from elsewhere; joins and leaves go to this process's subscriber. A backend shared by
    several processes has one that makes names unique across them.

    An account may be in a room from several connections, in several processes: the hub
    claims its name once per process (for its first connection there) and lets it go once
    (after its last); it is online while any process holds it.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._online: dict[str, dict[str, Online]] = {}  # room -> name key -> who, in the order they came

    async def claim(self, room: str, key: str, name: str, token: str | None = None, account: bool = False) -> bool:
        """Take screen name `name` (compared by `key`) in `room` for a newcomer of this process,
        whose welcome will give it `token` (None: nobody may take the name over); False if
        someone holds the name, in any process. An `account`'s name may be held by several
        processes at once, a guest's by one. Raises `BackendError` if it cannot tell.

        Must not suspend when there is nothing to ask anyone: the hub's check that the name is
        free in this process and its use of the name then happen with nothing in between.
        """
        return True

    async def take_over(self, room: str, key: str, token: str, new_token: str) -> str | None:
        """Take a guest's name `key` over from the connection of another process whose welcome
        gave it `token`, for a newcomer of this process whose welcome will give it `new_token`.

        Returns the name as the others know it; None if no other process holds the name
        for a connection with that token. That process's hub is told through `evict`.
        """
        return None

    def retoken(self, room: str, key: str, token: str) -> None:
        """A name held here passed to a newer connection of this process, whose token is `token`."""

    def joined(self, room: str, key: str, name: str, guest: bool) -> None:
        """The name claimed here is in `room`: unless it is online already (an account's, from
        another process), its `join` goes to this process's members of the room (a shared
        backend told the other processes when it claimed)."""
        online = self._online.setdefault(room, {})
        if key not in online:
            online[key] = Online(name, guest)
            self._backend.deliver_here(room, join_event(name, guest))

    def left(self, room: str, key: str, name: str, guest: bool) -> None:
        """This process holds the name no more: unless another holds it (an account's), its
        `leave` goes to everyone, and the name is free."""
        online = self._online.get(room)
        if online is not None:
            online.pop(key, None)
            if not online:
                del self._online[room]
        self._backend.deliver_here(room, leave_event(name))

    def online(self, room: str) -> list[Online]:
        """Who is online in `room` in every process, in the order they came, as of the events
        delivered here so far."""
        return list(self._online.get(room, {}).values())

    def is_online(self, room: str, key: str) -> bool:
        """Whether the name `key` is among `online(room)`."""
        return key in self._online.get(room, ())


class AccountStore(ABC):
    """Accounts and their sessions (app/core/accounts.py says what they mean and how they
    are used). Users are found by key, sessions by the hash of their id."""

    @abstractmethod
    async def add_user(self, user: User) -> bool:
        """Add `user`; False if a user with its key exists."""

    @abstractmethod
    async def user(self, key: str) -> User | None:
        """The user with this key, if any."""

    @abstractmethod
    async def users(self) -> list[User]:
        """Every user."""

    @abstractmethod
    async def update_user(self, user: User) -> bool:
        """Store `user`'s password and role; False if it does not exist (any more)."""

    @abstractmethod
    async def remove_user(self, key: str) -> list[str]:
        """Remove the user and its sessions; the hashes of the sessions that ended with it."""

    @abstractmethod
    async def add_session(self, session: SignIn) -> None:
        """Keep a new session (of an existing user)."""

    @abstractmethod
    async def session(self, hash: str) -> SignIn | None:
        """The session with this hash, if it has not ended."""

    @abstractmethod
    async def touch_session(self, hash: str, seen: int) -> None:
        """The session was used at `seen` (ms), which idle expiry counts from."""

    @abstractmethod
    async def end_session(self, hash: str) -> SignIn | None:
        """End the session; what it was, or None if there was no such session."""

    @abstractmethod
    async def end_sessions(self, user: str, keep: str | None = None) -> list[str]:
        """End every session of the user with key `user` but `keep`; the hashes that ended."""


class ModerationStore(ABC):
    """Rooms' rules, bans and mutes, and the audit log (app/core/moderation/ says what they
    mean and who may change them). Times are ms since the Unix epoch; a sanction whose
    `until` has passed is as good as gone, whether or not it was deleted yet."""

    @abstractmethod
    async def rules(self, room: str) -> RoomRules:
        """The room's rules; empty ones (no owner, an open door) for a room nobody set any for."""

    @abstractmethod
    async def claim(self, room: str, owner: Person) -> bool:
        """Make `owner` the room's owner if it has none; False if it has one."""

    @abstractmethod
    async def set_owner(self, room: str, owner: Person | None) -> None:
        """Give the room to `owner`; None: to nobody."""

    @abstractmethod
    async def set_role(self, room: str, role: Role, person: Person, granted: bool) -> bool:
        """Grant (or revoke) `role` (moderator or invited); False if that changed nothing."""

    @abstractmethod
    async def set_members_only(self, room: str, members_only: bool) -> None:
        """Close the room's door to all but its members, or open it."""

    @abstractmethod
    async def set_topic(self, room: str, topic: Topic | None) -> None:
        """The room's topic; None: none."""

    @abstractmethod
    async def add_sanction(self, sanction: Sanction) -> None:
        """Keep `sanction`, in place of any of its kind on its target in its scope."""

    @abstractmethod
    async def lift(self, scope: str, kind: Kind, key: str, now: int) -> list[Sanction]:
        """End every sanction of `kind` in `scope` on the name with key `key`; the active ones ended."""

    @abstractmethod
    async def sanction(self, scopes: list[str], kind: Kind, targets: list[str], now: int) -> Sanction | None:
        """An active sanction of `kind` on one of `targets` in one of `scopes`, if there is one."""

    @abstractmethod
    async def sanctions(self, scope: str, kind: Kind, now: int) -> list[Sanction]:
        """Every active sanction of `kind` in `scope`."""

    @abstractmethod
    async def record(self, entry: AuditEntry) -> AuditEntry:
        """Append `entry` to the audit log; returns it with its id (increasing)."""

    @abstractmethod
    async def audit(self, room: str | None, before: int | None, limit: int) -> list[AuditEntry]:
        """At most `limit` entries of `room` (of every room: None) with ids below `before`, newest first."""

    @abstractmethod
    async def secret(self) -> bytes:
        """This installation's key for hashing guests' addresses: made the first time, then kept."""


class DirectStore(ABC):
    """Direct messages, buddy lists, blocks and away messages of accounts (app/core/messenger.py
    says what they mean, app/core/direct.py what they are made of); and who is online
    anywhere, which buddy lists show.

    An account is online while a process has a connection of it; each process says so
    (`arrive`, `depart`) once per account, and from `arrive` on, what happens to the account
    goes to the handler (`listen`): its direct messages, sent and received; its buddies
    coming, going, going away and back; changes to its lists made from any of its
    connections. A backend shared by several processes tells each of them what happens to
    the accounts it has connections of, and no others.
    """

    handler: DirectHandler | None = None

    def listen(self, handler: DirectHandler) -> None:
        self.handler = handler

    @abstractmethod
    async def arrive(self, account: Party) -> Snapshot:
        """This process has a connection of `account` now, its first: the account is online,
        and whoever has it on their buddy list and is not blocked by it hears so. Returns
        what the account has; every event after that instant goes to the handler.
        Raises `BackendError`."""

    @abstractmethod
    def depart(self, key: str) -> None:
        """This process has no connection of account `key` left: nothing more is delivered for
        it here. Once no process has one, it is offline (its watchers hear so) and not away."""

    @abstractmethod
    async def send(self, sender: Party, recipient: Party, text: str, seen: int = 0) -> list[DirectMessage]:
        """Store a direct message and deliver it to both accounts; then, if the recipient is
        away and has not answered the sender automatically since it went away, its away
        message as an automatic reply, stored and delivered alike. Returns what was stored.

        `seen` is the highest id of the conversation this process knows of: a shared backend
        with a lower one lost data. Raises `Forbidden` if either blocks the other, and
        `BackendError` if the message may not have been stored."""

    @abstractmethod
    async def history(
        self, one: str, other: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        """The conversation's `limit` latest messages with `after` < id < `before` (either
        bound may be None), oldest first, and whether older ones exist above `after`."""

    @abstractmethod
    async def away(self, account: Party, message: str | None) -> None:
        """`account` (online) goes away with `message`, or comes back (None). An away period
        begins whenever the message changes: whoever writes then gets it once. Whoever sees
        the account on a buddy list hears it; so does every process (`Backend.notify`,
        kind "away": {key, name, message}), for the rooms the account is in."""

    @abstractmethod
    async def add_buddy(self, owner: Party, buddy: Party, limit: int) -> bool:
        """Put `buddy` on `owner`'s list (again: nothing changes); False if it holds `limit`
        buddies already. `owner` hears how the buddy is (`Seen`, added)."""

    @abstractmethod
    async def remove_buddy(self, owner: Party, buddy: Party) -> None:
        """Take `buddy` off `owner`'s list; `owner` hears so (`Unlisted`)."""

    @abstractmethod
    async def block(self, owner: Party, other: Party, limit: int) -> bool:
        """`owner` blocks `other`: no direct message between them, and `owner` is offline on
        `other`'s buddy list. False if `owner` blocks `limit` accounts already."""

    @abstractmethod
    async def unblock(self, owner: Party, other: Party) -> None:
        """`owner` blocks `other` no more."""

    @abstractmethod
    async def away_everywhere(self) -> dict[str, tuple[str, str]]:
        """Every account away now, in any process: key -> its name and away message."""

    @abstractmethod
    async def forget(self, key: str) -> None:
        """The account was removed: its conversations, both sides of them, its lists, and
        its place on other people's buddy lists go, so that whoever registers its name next
        inherits none of it."""

    def went_back(self) -> None:  # noqa: B027 - only a shared backend can lose what it told
        """A conversation has fewer messages than this process saw: the backend lost data."""


class InUse(Exception):
    """The store is in use by a server, and what was asked must not run beside one (an import)."""


class StoreSnapshot(ABC):
    """Everything a store holds, as of one moment: what `chatroom export` writes out
    (app/core/transfer/). Each backend says which moment it can give (its `snapshot`)."""

    @abstractmethod
    async def rooms(self) -> list[StoredRoom]:
        """Every room that has messages, a last id or rules, by name, with how many messages it holds."""

    @abstractmethod
    def messages(self, room: str, after: int = 0) -> AsyncIterator[list[StoredMessage]]:
        """The room's messages with ids above `after`, up to its last id in the snapshot,
        in pages, oldest first: each as it was at that moment (edited, a tombstone, its
        reactions, with who gave them)."""

    @abstractmethod
    async def users(self) -> list[User]:
        """Every account, by key (never its sessions)."""

    @abstractmethod
    async def sanctions(self) -> list[Sanction]:
        """Every sanction stored, in force or over, by scope, kind and target."""

    @abstractmethod
    def audit(self, after: int = 0) -> AsyncIterator[list[AuditEntry]]:
        """The audit log's entries with ids above `after`, in pages, oldest first."""

    @abstractmethod
    async def audit_last(self) -> int:
        """The id of the audit log's last entry (0: none)."""

    @abstractmethod
    async def secret(self) -> bytes | None:
        """The key of guests' address hashes, if one was ever made (never makes one)."""

    @abstractmethod
    async def conversations(self) -> list[StoredConversation]:
        """Every conversation both of whose accounts have it (`Conversation`s of each other), by
        its key, with its last id and how many messages it holds."""

    @abstractmethod
    def dms(self, conversation: str, after: int = 0) -> AsyncIterator[list[DirectMessage]]:
        """The conversation's messages with ids above `after`, up to its last id in the
        snapshot, in pages, oldest first."""

    @abstractmethod
    async def buddies(self) -> list[StoredBuddy]:
        """Every entry of every buddy list, by owner and key."""

    @abstractmethod
    async def blocks(self) -> list[StoredBlock]:
        """Every entry of every block list, by owner and key."""

    @abstractmethod
    async def reads(self) -> list[StoredRead]:
        """Every read position, by account key and room."""


class Loader(ABC):
    """Writes what `chatroom import` found missing from a store, with the ids it had
    (app/core/transfer/load.py decides what that is; this only writes it)."""

    @abstractmethod
    async def messages(self, room: str, messages: list[StoredMessage]) -> None:
        """Append `messages` (of `room`, ids increasing, all above the room's last id) with
        their ids, names, texts, times, edits, tombstones and reactions (who gave each, so
        that a person counts once); the room's last id follows them. Search finds them as
        they are (never a tombstone)."""

    @abstractmethod
    async def room(self, room: str, last_id: int, rules: RoomRules | None) -> None:
        """Raise the room's last id to at least `last_id`; and give it `rules` (where it had
        none) unless None."""

    @abstractmethod
    async def users(self, users: list[User]) -> None:
        """Add the accounts (no account with their keys exists)."""

    @abstractmethod
    async def sanctions(self, sanctions: list[Sanction]) -> None:
        """Keep the sanctions (none of their kind on their targets in their scopes exists)."""

    @abstractmethod
    async def audit(self, entries: list[AuditEntry]) -> None:
        """Append the entries with their ids (increasing, above the log's last); the next
        entry recorded gets an id above them."""

    @abstractmethod
    async def secret(self, key: bytes) -> None:
        """Make `key` the key of guests' address hashes."""

    @abstractmethod
    async def dms(self, conversation: StoredConversation, messages: list[DirectMessage]) -> None:
        """Append `messages` (ids increasing, all above the conversation's last id) with their
        ids; the conversation's last id follows them."""

    @abstractmethod
    async def conversation(self, conversation: StoredConversation) -> None:
        """Raise the conversation's last id to at least its `last_id`; where it is higher than
        the last id each account's list of conversations shows, show it, with its time."""

    @abstractmethod
    async def buddies(self, buddies: list[StoredBuddy]) -> None:
        """Put the buddies on their owners' lists (none of them is there)."""

    @abstractmethod
    async def blocks(self, blocks: list[StoredBlock]) -> None:
        """Put the blocks on their owners' lists (none of them is there)."""

    @abstractmethod
    async def reads(self, reads: list[StoredRead]) -> None:
        """Raise each account's read position in its room to at least the one given."""


class TransferStore(ABC):
    """Everything the backend holds, read out (`snapshot`) and written back (`loading`)."""

    @abstractmethod
    def snapshot(self) -> AbstractAsyncContextManager[StoreSnapshot]:
        """A consistent view of the store while servers run; reads only."""

    @abstractmethod
    def loading(self) -> AbstractAsyncContextManager[Loader]:
        """Write into the store; raises `InUse` if a server uses it. A backend that can
        writes everything or nothing (its block raised)."""


class Backend(ABC):
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.subscriber: Subscriber | None = None
        self.presence = Presence(self)
        self.accounts: AccountStore = self._account_store()
        self.changes: ChangeStore = self._change_store()
        self.reads: ReadStore = self._read_store()
        self.moderation: ModerationStore = self._moderation_store()
        self.transfer: TransferStore = self._transfer_store()
        self.direct: DirectStore = self._direct_store()
        # Names this history's lifetime: message ids are comparable only within one epoch.
        # A backend whose history can be lost (memory://) starts a new one each time.
        self.epoch = secrets.token_hex(8)

    async def start(self, subscriber: Subscriber) -> None:
        """Connect, migrate or whatever the backend needs; then events go to `subscriber`."""
        self.subscriber = subscriber

    async def stop(self) -> None:
        """Let go of every resource; nothing is delivered afterwards."""
        self.subscriber = None

    async def open(self) -> None:
        """Open the store alone, beside any servers that use it, for commands such as
        `chatroom users`: accounts and notices work, rooms do not. `close` ends it."""
        raise RuntimeError(f"{self.url} keeps its data in a server's memory: no other process can reach it")

    async def close(self) -> None:  # noqa: B027 - nothing to close where nothing opens
        """End what `open` began; what was written has reached the store."""

    async def check(self) -> str | None:
        """None when the backend works; otherwise what is wrong, for `GET /healthz` (503)."""
        return None

    @abstractmethod
    def _account_store(self) -> AccountStore:
        """Where this backend keeps accounts and sessions."""

    @abstractmethod
    def _change_store(self) -> ChangeStore:
        """Where this backend keeps edits, deletions and reactions, and how it searches."""

    @abstractmethod
    def _read_store(self) -> ReadStore:
        """Where this backend keeps read positions."""

    @abstractmethod
    def _moderation_store(self) -> ModerationStore:
        """Where this backend keeps rooms' rules, sanctions and the audit log."""

    @abstractmethod
    def _transfer_store(self) -> TransferStore:
        """How this backend's whole store is read out and written back."""

    @abstractmethod
    def _direct_store(self) -> DirectStore:
        """Where this backend keeps direct messages, buddy lists and blocks."""

    def notify(self, kind: str, fields: dict[str, Any]) -> None:
        """Tell every process's subscriber, this one's included, of a change that concerns
        its connections (a session that ended, a name that was registered). One process
        has only its own to tell; a backend shared by several carries it to the others,
        and so does one whose store other processes write to (the `chatroom users` command)."""
        if self.subscriber is not None:
            self.subscriber.notice(kind, fields)

    # Rooms

    @abstractmethod
    async def subscribe(self, room: str) -> list[Message]:
        """From now on, deliver `room`'s events to this process.

        Returns the room's latest messages (at most `settings.welcome_history`, oldest
        first); every message after them is delivered, none before them.
        """

    @abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """This process has no client left in `room`."""

    @abstractmethod
    def subscribed(self, room: str) -> bool:
        """Whether this process reads `room`."""

    def deliver_here(self, room: str, event: bytes, message: Message | None = None) -> None:
        """Hand an event to this process's subscriber, if it reads `room`."""
        if self.subscriber is not None and self.subscribed(room):
            self.subscriber.deliver(room, event, message)

    def deliver_change(self, room: str, kind: str, message: Message) -> None:
        """Hand a change of a stored message to this process's subscriber, if it reads `room`
        (a backend shared by several processes delivers it to each of them instead)."""
        if self.subscriber is not None and self.subscribed(room):
            self.subscriber.changed(room, kind, message)

    def ephemeral(self, room: str, key: str, event: bytes) -> None:
        """Carry an event that is never stored to every process reading `room`, for its members
        but those of name key `key`. At most: it may be dropped on the way when busy."""
        if self.subscriber is not None and self.subscribed(room):
            self.subscriber.ephemeral(room, key, event)

    # Messages

    @abstractmethod
    def publish(self, room: str, name: str, text: str, guest: bool = False) -> asyncio.Future[Message]:
        """Give the message an id and a time, store it, then deliver it to every subscriber;
        a `guest`'s message says so.

        Returns at once, so a sender's next message can be read while this one is stored;
        the future settles when the message is stored, or fails with `BackendError`.
        """

    def commit(self) -> None:  # noqa: B027 - most backends store as they publish
        """Store what was published and deliver it now, if that can be done at once.

        The hub calls this at the end of each turn of the event loop, right before its
        rooms send (app/core/turn.py): a message published during a turn goes out at its
        end, with the rest of its batch.
        """

    @property
    def backlogged(self) -> bool:
        """Whether publishing should pause until `pace` returns: messages wait to be stored."""
        return False

    async def pace(self) -> None:  # noqa: B027 - most backends are never backlogged
        """Return once the backend takes messages again without piling them up."""

    @abstractmethod
    async def history(self, room: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        """The `limit` messages just before id `before` (the latest if None), oldest first,
        and whether older ones exist."""

    @abstractmethod
    async def since(self, room: str, after: int, upto: int, limit: int) -> tuple[list[Message], bool]:
        """The messages with `after` < id <= `upto`, oldest first: the latest `limit` of them,
        and whether there were more (a gap before the first one returned)."""
