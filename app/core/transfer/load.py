"""Reading an export file into a store: `check` it whole against the target, then `load` it.

The rule for a target that holds data already: an import adds, it never changes or
removes anything. Whatever the file holds that the target holds too must be the same:

- a room's messages with ids up to the room's last id in the target must be the very
  messages the target holds under those ids (name, text, time, guest, edit time, tombstone,
  who gave which reaction), or the target's copy must be ahead of the file's: the same
  message (name, time, guest) deleted since, or edited since (a later `edited_ts`; its
  reactions may have changed too), which the import leaves as the target has it. A file's
  copy ahead of the target's (edited later, deleted, or other reactions alone, which carry
  no time to tell which is newer) is a conflict: an import never edits, deletes or reacts.
  Those it no longer holds (retention deleted them) are skipped; the ones after its last id are added, with
  their ids, and the room's last id becomes the file's (if higher);
- a room's rules (owner, moderators, invited, door, topic) are added where the target has
  none, and must be the same where it has some;
- a conversation's direct messages follow the rule of a room's messages (by the
  conversation's last id in the target), and its accounts' names must be the ones the
  target shows; the accounts' lists of conversations show its last message if it is newer;
- an entry of a buddy list or a block list the target holds must name the same account,
  and no list may end up longer than its limit (MAX_BUDDIES, MAX_BLOCKED);
- a read position is added where the target has none for that account and room, and
  raised where the target's is lower: read positions only go forward;
- an account, a sanction (in force) or an audit entry the target holds must be the same;
- the key of guests' address hashes replaces the target's unless the target holds
  sanctions on guests made with its own.

Anything else is a conflict, which refuses the import before anything is written; so is a
line that is no record. Running an import twice adds nothing the second time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from app.core.direct import MAX_BLOCKED, MAX_BUDDIES, DirectMessage
from app.core.moderation.records import AuditEntry, RoomRules, Sanction
from app.core.names import name_key
from app.core.transfer.export import Counts
from app.core.transfer.format import (
    Content,
    End,
    Header,
    Listed,
    Secret,
    StoredBlock,
    StoredBuddy,
    StoredConversation,
    StoredMessage,
    StoredRead,
    StoredRoom,
    Unreadable,
    decode,
    decode_header,
)
from app.core.users import User

if TYPE_CHECKING:
    from app.backends.base import Loader, StoreSnapshot

PAGE = 1000  # records written at once
Lines = Iterable[tuple[int, bytes]]  # the file's lines with their numbers, from 1
Place = tuple[str, str, str]  # a sanction's scope, kind and target
Entry = tuple[bool, str, str]  # a list's entry: a block (or a buddy), its owner, the key on it


class Conflict(Exception):
    """The file holds something the target holds otherwise (see the module's docstring)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


@dataclass(slots=True)
class Plan:
    """What `check` found: how the target stands, so that `load` writes only what it lacks."""

    header: Header
    last_ids: dict[str, int] = field(default_factory=dict)  # room -> its last id in the target
    rules: dict[str, RoomRules | None] = field(default_factory=dict)  # room -> rules to give it
    users: set[str] = field(default_factory=set)  # keys of the accounts to add
    sanctions: set[Place] = field(default_factory=set)  # those to add
    dm_last: dict[str, int] = field(default_factory=dict)  # conversation -> its last id in the target
    conversations: set[str] = field(default_factory=set)  # those whose last id goes up
    entries: set[Entry] = field(default_factory=set)  # of lists, to add
    reads: set[tuple[str, str]] = field(default_factory=set)  # (account, room) whose position goes up
    audit_last: int = 0  # the target's last audit entry
    secret: bytes | None = None  # the key to write
    adds: Counts = field(default_factory=Counts)
    skipped: int = 0  # messages the target holds already (or deleted)


def _ahead(held: StoredMessage, record: StoredMessage) -> bool:
    """Whether the target's copy is the file's message, changed since: deleted, or edited later."""
    now, then = held.message, record.message
    if (now.name, now.ts, now.guest) != (then.name, then.ts, then.guest) or then.deleted:
        return False
    if now.deleted:
        return True
    return now.edited_ts is not None and (then.edited_ts is None or now.edited_ts > then.edited_ts)


def _unchanged(stored: StoredMessage) -> tuple[object, ...]:
    """What a message is but for its reactions."""
    message = stored.message
    return (message.name, message.ts, message.guest, message.text, message.edited_ts, message.deleted)


def _place(sanction: Sanction) -> Place:
    return (sanction.scope, sanction.kind.value, sanction.target)


def _entry(listed: Listed) -> Entry:
    return (isinstance(listed, StoredBlock), listed.owner, listed.other.key)


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


_T = TypeVar("_T", bound=_HasId)


class _Beside(Generic[_T]):
    """The target's items (messages of one room, audit entries), read page by page beside the
    file's, which come in the same order of ids."""

    def __init__(self, pages: AsyncIterator[list[_T]]) -> None:
        self._pages = pages
        self._page: list[_T] = []
        self._at = 0
        self._done = False

    async def find(self, id: int) -> _T | None:
        while True:
            page = self._page
            while self._at < len(page) and page[self._at].id < id:
                self._at += 1
            if self._at < len(page):
                return page[self._at] if page[self._at].id == id else None
            if self._done:
                return None
            following = await anext(self._pages, None)
            if following is None:
                self._done = True
                return None
            self._page, self._at = following, 0


def records(lines: Lines) -> Iterator[tuple[int, Content]]:
    """The file's records after its header (first), up to its end record (last), each checked
    for its place: messages follow their room's record, direct messages their conversation's,
    ids increase, nothing comes twice, what is an account's comes after the account."""
    numbered = iter(lines)
    first = next(numbered, None)
    if first is None:
        raise Unreadable(1, "the file is empty: expected the header of a chatroom export")
    yield 1, decode_header(first[1])
    room: StoredRoom | None = None
    last_message = 0
    rooms: set[str] = set()
    users: set[str] = set()
    places: set[Place] = set()
    last_audit = 0
    conversation: StoredConversation | None = None
    conversations: set[str] = set()
    entries: set[Entry] = set()
    reads: set[tuple[str, str]] = set()
    number = 1
    for number, line in numbered:
        record = decode(line, number)
        if isinstance(record, End):
            count = number - 2  # the lines between the header and this one
            if record.records != count:
                raise Unreadable(number, f"the end record counts {record.records} records, but {count} came before it")
            if next(numbered, None) is not None:
                raise Unreadable(number + 1, "a line after the end record")
            return
        if isinstance(record, StoredMessage):
            if room is None or record.room != room.name:
                raise Unreadable(number, f"a message of {record.room!r} outside that room's part of the file")
            if record.id <= last_message:
                raise Unreadable(number, f"message {record.id} after message {last_message}: ids must increase")
            if record.id > room.last_id:
                raise Unreadable(number, f"message {record.id} beyond the room's last id, {room.last_id}")
            last_message = record.id
        elif isinstance(record, DirectMessage):
            if conversation is None:
                raise Unreadable(number, "a direct message outside a conversation's part of the file")
            if record.id <= last_message:
                raise Unreadable(number, f"direct message {record.id} after {last_message}: ids must increase")
            if record.id > conversation.last_id:
                raise Unreadable(
                    number, f"direct message {record.id} beyond the conversation's last id, {conversation.last_id}"
                )
            parties = {party.key for party in conversation.accounts}
            if not {name_key(record.sender), name_key(record.recipient)} <= parties:
                raise Unreadable(
                    number,
                    f"a direct message from {record.sender!r} to {record.recipient!r} in the conversation of "
                    f"{' and '.join(repr(party.name) for party in conversation.accounts)}",
                )
            last_message = record.id
        else:
            room = None
            conversation = None
            if isinstance(record, StoredRoom):
                if record.name in rooms:
                    raise Unreadable(number, f"the room {record.name!r} a second time")
                rooms.add(record.name)
                room, last_message = record, 0
            elif isinstance(record, User):
                if record.key in users:
                    raise Unreadable(number, f"the account {record.name!r} a second time")
                users.add(record.key)
            elif isinstance(record, StoredConversation):
                for party in record.accounts:
                    if party.key not in users:
                        raise Unreadable(number, f"a conversation of {party.name!r}, but no account of it before")
                if record.key in conversations:
                    raise Unreadable(number, "the conversation of the same accounts a second time")
                conversations.add(record.key)
                conversation, last_message = record, 0
            elif isinstance(record, Listed):
                what = "block list" if isinstance(record, StoredBlock) else "buddy list"
                if record.owner not in users:
                    raise Unreadable(number, f"an entry of the {what} of {record.owner!r}, but no account of it before")
                if isinstance(record, StoredBuddy) and record.other.key not in users:
                    raise Unreadable(number, f"the buddy {record.other.name!r}, but no account of it before")
                if _entry(record) in entries:
                    raise Unreadable(number, f"{record.other.name!r} on the {what} of {record.owner!r} a second time")
                entries.add(_entry(record))
            elif isinstance(record, StoredRead):
                if record.key not in users:
                    raise Unreadable(number, f"a read position of {record.key!r}, but no account of it before")
                if (record.key, record.room) in reads:
                    raise Unreadable(number, f"the read position of {record.key!r} in {record.room!r} a second time")
                reads.add((record.key, record.room))
            elif isinstance(record, Sanction):
                if _place(record) in places:
                    raise Unreadable(number, f"a second {record.kind.value} of {record.name!r} in the same place")
                places.add(_place(record))
            elif isinstance(record, AuditEntry):
                if record.id <= last_audit:
                    raise Unreadable(number, f"audit entry {record.id} after entry {last_audit}: ids must increase")
                last_audit = record.id
            elif isinstance(record, Header):
                raise Unreadable(number, "a second header")
        yield number, record
    raise Unreadable(number + 1, "the file ends without its end record: it was cut short")


async def check(lines: Lines, target: StoreSnapshot, now: int) -> Plan:
    """Read the whole file against `target`; what `load` would add, or the first `Unreadable`
    line or `Conflict`."""
    stream = records(lines)
    _, header = next(stream)
    assert isinstance(header, Header)
    plan = Plan(header, audit_last=await target.audit_last())
    held_rooms = {room.name: room for room in await target.rooms()}
    held_users = {user.key: user for user in await target.users()}
    held_sanctions = {_place(s): s for s in await target.sanctions() if s.active(now)}
    held_secret = await target.secret()
    held_conversations = {conversation.key: conversation for conversation in await target.conversations()}
    held_entries: dict[Entry, Listed] = {
        _entry(listed): listed for listed in [*await target.buddies(), *await target.blocks()]
    }
    held_reads = {(read.key, read.room): read.id for read in await target.reads()}
    lengths: dict[tuple[bool, str], int] = {}
    for block, owner, _ in held_entries:
        lengths[block, owner] = lengths.get((block, owner), 0) + 1
    dms: _Beside[DirectMessage] | None = None
    conversation = ""
    beside: _Beside[StoredMessage] | None = None
    audit: _Beside[AuditEntry] | None = None
    room = ""
    for number, record in stream:
        if isinstance(record, StoredMessage):
            if record.id > plan.last_ids[room]:
                plan.adds.messages += 1
                continue
            if beside is None:
                beside = _Beside(target.messages(room, record.id - 1))
            held = await beside.find(record.id)
            if held is not None and held != record and not _ahead(held, record):
                if _ahead(record, held) or _unchanged(held) == _unchanged(record):
                    raise Conflict(
                        number,
                        f"message {record.id} of {room!r} changed in the file after the target's copy "
                        "(edited, deleted or reacted to): an import does not change a message the target holds",
                    )
                raise Conflict(
                    number,
                    f"message {record.id} of {room!r} is not the one the target holds under that id "
                    "(another chat's history)",
                )
            plan.skipped += 1
            continue
        beside = None
        if isinstance(record, DirectMessage):
            if record.id > plan.dm_last[conversation]:
                plan.adds.dms += 1
                continue
            if dms is None:
                dms = _Beside(target.dms(conversation, record.id - 1))
            held_dm = await dms.find(record.id)
            if held_dm is not None and held_dm != record:
                raise Conflict(
                    number,
                    f"direct message {record.id} is not the one the target holds under that id "
                    "(another chat's conversation)",
                )
            plan.skipped += 1
            continue
        dms = None
        if isinstance(record, StoredConversation):
            conversation = record.key
            stored_conversation = held_conversations.get(conversation)
            if stored_conversation is not None and stored_conversation.accounts != record.accounts:
                raise Conflict(number, "the target holds the conversation of these accounts under other names")
            plan.dm_last[conversation] = stored_conversation.last_id if stored_conversation is not None else 0
            if record.last_id > plan.dm_last[conversation]:
                plan.conversations.add(conversation)
            if stored_conversation is None:
                plan.adds.conversations += 1
        elif isinstance(record, Listed):
            held_listed = held_entries.get(_entry(record))
            block = isinstance(record, StoredBlock)
            if held_listed is None:
                length = lengths[block, record.owner] = lengths.get((block, record.owner), 0) + 1
                if length > (MAX_BLOCKED if block else MAX_BUDDIES):
                    raise Conflict(
                        number,
                        f"the {'block' if block else 'buddy'} list of {record.owner!r} would hold more than "
                        f"{MAX_BLOCKED if block else MAX_BUDDIES} accounts",
                    )
                plan.entries.add(_entry(record))
                if block:
                    plan.adds.blocks += 1
                else:
                    plan.adds.buddies += 1
            elif held_listed != record:
                raise Conflict(number, f"the target has {record.other.key!r} on that list under another name")
        elif isinstance(record, StoredRead):
            if record.id > held_reads.get((record.key, record.room), 0):
                plan.reads.add((record.key, record.room))
                plan.adds.reads += 1
        elif isinstance(record, StoredRoom):
            room = record.name
            stored = held_rooms.get(room)
            plan.last_ids[room] = stored.last_id if stored is not None else 0
            held_rules = stored.rules if stored is not None else RoomRules()
            if held_rules == record.rules or record.rules == RoomRules():
                plan.rules[room] = None
            elif held_rules == RoomRules():
                plan.rules[room] = record.rules
            else:
                raise Conflict(number, f"the rules of {room!r} (owner, moderators, invited, door, topic) differ")
            if stored is None:
                plan.adds.rooms += 1
        elif isinstance(record, User):
            user = held_users.get(record.key)
            if user is None:
                plan.users.add(record.key)
                plan.adds.users += 1
            elif user != record:
                raise Conflict(number, f"the target has an account {user.name!r} with another password, role or date")
        elif isinstance(record, Sanction):
            if not record.active(now):
                continue
            held_sanction = held_sanctions.get(_place(record))
            if held_sanction is None:
                plan.sanctions.add(_place(record))
                plan.adds.sanctions += 1
            elif held_sanction != record:
                raise Conflict(number, f"the target has another {record.kind.value} of {record.name!r} there")
        elif isinstance(record, AuditEntry):
            if record.id > plan.audit_last:
                plan.adds.audit += 1
                continue
            if audit is None:
                audit = _Beside(target.audit(record.id - 1))
            held_entry = await audit.find(record.id)
            if held_entry is not None and held_entry != record:
                raise Conflict(number, f"audit entry {record.id} is not the one the target holds under that id")
        elif isinstance(record, Secret) and record.key != held_secret:
            guests = [place for place in held_sanctions if place[2].startswith("g:")]
            if held_secret is not None and guests:
                raise Conflict(
                    number,
                    "the target has its own key for guests' address hashes, and bans or mutes of guests "
                    "made with it, which the file's key would make useless",
                )
            plan.secret = record.key
            plan.adds.secret = True
    return plan


async def load(lines: Lines, plan: Plan, loader: Loader, position: Callable[[int], None] | None = None) -> Counts:
    """Write what `check` found missing from the target (the same file, read again)."""
    added = Counts()
    messages: list[StoredMessage] = []
    users: list[User] = []
    reads: list[StoredRead] = []
    sanctions: list[Sanction] = []
    entries: list[AuditEntry] = []
    room: StoredRoom | None = None
    dms: list[DirectMessage] = []
    conversation: StoredConversation | None = None
    listed: list[Listed] = []

    async def close_conversation() -> None:
        nonlocal conversation, dms
        if conversation is None:
            return
        if dms:
            await loader.dms(conversation, dms)
            dms = []
        if conversation.key in plan.conversations:
            await loader.conversation(conversation)
        conversation = None

    async def close_room() -> None:
        nonlocal room, messages
        if room is None:
            return
        if messages:
            await loader.messages(room.name, messages)
            messages = []
        await loader.room(room.name, room.last_id, plan.rules[room.name])
        room = None

    for number, record in records(lines):
        if position is not None and number % PAGE == 0:
            position(number)
        if isinstance(record, StoredMessage):
            assert room is not None
            if record.id > plan.last_ids[room.name]:
                messages.append(record)
                added.messages += 1
                if len(messages) == PAGE:
                    await loader.messages(room.name, messages)
                    messages = []
            continue
        await close_room()
        if isinstance(record, DirectMessage):
            assert conversation is not None
            if record.id > plan.dm_last[conversation.key]:
                dms.append(record)
                added.dms += 1
                if len(dms) == PAGE:
                    await loader.dms(conversation, dms)
                    dms = []
            continue
        await close_conversation()
        if isinstance(record, StoredConversation):
            conversation = record
        elif isinstance(record, Listed) and _entry(record) in plan.entries:
            listed.append(record)
        elif isinstance(record, StoredRead) and (record.key, record.room) in plan.reads:
            reads.append(record)
        elif isinstance(record, StoredRoom):
            room = record
        elif isinstance(record, User) and record.key in plan.users:
            users.append(record)
        elif isinstance(record, Sanction) and _place(record) in plan.sanctions:
            sanctions.append(record)
        elif isinstance(record, AuditEntry) and record.id > plan.audit_last:
            entries.append(record)
            if len(entries) == PAGE:
                await loader.audit(entries)
                added.audit += len(entries)
                entries = []
    await close_room()
    await close_conversation()
    if users:
        await loader.users(users)
    buddies = [entry for entry in listed if isinstance(entry, StoredBuddy)]
    blocks = [entry for entry in listed if isinstance(entry, StoredBlock)]
    if buddies:
        await loader.buddies(buddies)
    if blocks:
        await loader.blocks(blocks)
    if reads:
        await loader.reads(reads)
    added.buddies, added.blocks, added.reads = len(buddies), len(blocks), len(reads)
    added.conversations = plan.adds.conversations
    if sanctions:
        await loader.sanctions(sanctions)
    if entries:
        await loader.audit(entries)
    if plan.secret is not None:
        await loader.secret(plan.secret)
    added.users, added.sanctions, added.secret = len(users), len(sanctions), plan.secret is not None
    added.audit += len(entries)
    added.rooms = plan.adds.rooms
    return added
