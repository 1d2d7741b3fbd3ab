"""The export file: one JSON object a line (JSON Lines), UTF-8.

The first line is the header: `{"format": "chatroom-export", "version": 1, "backend":
"sqlite", "exported": "2025-01-31T12:00:00Z", "ts": <ms>, "room": null}` (`room`: the one
room exported, or null for the whole chat). Then records, each with a `kind`:

- `secret`: the installation's key for guests' address hashes (`key`, hex);
- `user`: an account: `key`, `name`, `password` (the argon2id hash string as stored),
  `admin`, `created` (ms); sessions are never exported;
- `room`: a room: `room`, `last_id` (the last id given out: the next message gets the one
  after, even when retention deleted the last ones), and its rules: `owner` and each of
  `moderators` and `invited` as `{"key", "name"}`, `members_only`, `topic` (`{"text", "by",
  "ts"}` or null). Its messages follow it, ids increasing;
- `message`: `room`, `id`, `name`, `text`, `ts` (ms), `guest`; and what happened to it
  since, each only when it did: `edited_ts` (when its text was last edited), `deleted`
  (true: a tombstone, whose text is gone: `text` is "", and it has no `edited_ts` and no
  `reactions`), `reactions` (each emoji of REACTIONS given, in their order, with the sorted
  name keys of who gave it: `{"👍": ["ann", "bob"]}`);
- `conversation`: the direct messages between two accounts: `accounts`, both of them as
  `{"key", "name"}` (sorted by key; one, twice, for notes to oneself), `last_id` (the last id
  given out in it) and `ts` (the time of its last message). Its messages follow it, ids
  increasing. A conversation comes only with both its accounts' records before it;
- `dm`: a direct message: `id`, `from` and `to` (the names, as registered), `text`, `ts`,
  `auto` (an away message's automatic reply);
- `buddy` and `block`: an entry of an account's buddy list or block list: `owner` (the
  account's key), `key` and `name` of the account on it; the owner's record comes before;
- `read`: how far an account read in a room: `key` (the account's), `room`, `id` (the
  highest message id read there); the account's record comes before;
- `sanction`: a ban or mute: `sanction` (ban or mute), `scope` (a room, or "" for the whole
  server), `target` (`a:KEY` an account, `g:HASH` a guest's address as a keyed hash),
  `name`, `key`, `by`, `reason`, `at`, `until` (ms or null);
- `audit`: an entry of the moderation log: `id`, `at`, `room`, `actor`, `action`, `target`,
  `reason`, `until`, `detail`;
- `end`, last: `records`, how many records came between the header and it, so that a file
  cut short is told from a whole one.

A reader refuses a file whose header names another format or a newer version than
`VERSION`, and any line that is not one of these records, with the line's number.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from app.core.direct import DirectMessage, Party, conversation_of
from app.core.messages import REACTIONS, Message, ordered
from app.core.moderation.records import AuditEntry, Kind, Person, RoomRules, Sanction, Topic, iso
from app.core.names import MAX_RAW_NAME_LENGTH, InvalidName, clean_room, name_key
from app.core.users import User

FORMAT = "chatroom-export"
VERSION = 1
MAX_LINE = 1024 * 1024  # bytes: a message is a few KiB at most; a longer line holds no record
SECRET_BYTES = 32


class Unreadable(Exception):
    """A line of the file that is no record of this format: its number and what is wrong."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    backend: str  # the scheme of the store it came from: memory, sqlite, redis
    ts: int  # ms since the Unix epoch: when the export began
    room: str | None = None  # the one room exported, or None for the whole chat
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Secret:
    key: bytes


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A room as a store holds it: its last id given out, its rules, and (for the progress of
    an export, never written) how many messages it holds."""

    name: str
    last_id: int
    rules: RoomRules = field(default_factory=RoomRules)
    messages: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class StoredConversation:
    """A conversation as a store holds it: its two accounts (sorted by key), its last id given
    out and the time of its last message; and (for the progress, never written) how many
    messages it holds."""

    accounts: tuple[Party, Party]
    last_id: int
    ts: int
    messages: int = field(default=0, compare=False)

    @property
    def key(self) -> str:
        """The conversation as the stores name it (app/core/direct.py)."""
        return conversation_of(self.accounts[0].key, self.accounts[1].key)


@dataclass(frozen=True, slots=True)
class Listed:
    """An entry of account `owner`'s buddy list (`Buddy`) or block list (`Block`)."""

    owner: str
    other: Party


class StoredBuddy(Listed):
    __slots__ = ()


class StoredBlock(Listed):
    __slots__ = ()


Reactors = tuple[tuple[str, tuple[str, ...]], ...]  # (emoji, the sorted name keys of who gave it), in REACTIONS' order


def reactors(given: dict[str, set[str]] | dict[str, list[str]] | dict[str, tuple[str, ...]]) -> Reactors:
    """Who gave which reaction, in the one order the file and the comparisons use."""
    return tuple((emoji, tuple(sorted(given[emoji]))) for emoji in REACTIONS if given.get(emoji))


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A room's message as a store holds it: as it is now (its wire form: text, `edited_ts`,
    `deleted`, reaction counts) and who gave each reaction, so that a person still counts
    once, and can take theirs back, after an import."""

    message: Message
    reactions: Reactors = ()

    @property
    def id(self) -> int:
        return self.message.id

    @property
    def room(self) -> str:
        return self.message.room


@dataclass(frozen=True, slots=True)
class StoredRead:
    """How far the account of name key `key` read in `room`: the highest id it read there."""

    key: str
    room: str
    id: int


@dataclass(frozen=True, slots=True)
class End:
    records: int


# What a file holds between its header's line and its end record, the header included.
Content = (
    Header
    | Secret
    | User
    | StoredRoom
    | StoredMessage
    | StoredConversation
    | DirectMessage
    | StoredBuddy
    | StoredBlock
    | StoredRead
    | Sanction
    | AuditEntry
)
Record = Content | End


def encode(record: Record) -> bytes:
    """One line of the file, its newline included."""
    return orjson.dumps(_fields(record), option=orjson.OPT_APPEND_NEWLINE)


def _fields(record: Record) -> dict[str, Any]:
    if isinstance(record, StoredMessage):
        message = record.message
        fields: dict[str, Any] = {
            "kind": "message",
            "room": message.room,
            "id": message.id,
            "name": message.name,
            "text": message.text,
            "ts": message.ts,
            "guest": message.guest,
        }
        if message.edited_ts is not None:
            fields["edited_ts"] = message.edited_ts
        if message.deleted:
            fields["deleted"] = True
        if record.reactions:
            fields["reactions"] = {emoji: list(keys) for emoji, keys in record.reactions}
        return fields
    if isinstance(record, StoredRead):
        return {"kind": "read", "key": record.key, "room": record.room, "id": record.id}
    if isinstance(record, DirectMessage):
        return {
            "kind": "dm",
            "id": record.id,
            "from": record.sender,
            "to": record.recipient,
            "text": record.text,
            "ts": record.ts,
            "auto": record.auto,
        }
    if isinstance(record, StoredConversation):
        return {
            "kind": "conversation",
            "accounts": [_person(Person(*party)) for party in record.accounts],
            "last_id": record.last_id,
            "ts": record.ts,
        }
    if isinstance(record, Listed):
        return {
            "kind": "buddy" if isinstance(record, StoredBuddy) else "block",
            "owner": record.owner,
            "key": record.other.key,
            "name": record.other.name,
        }
    if isinstance(record, Header):
        return {
            "format": FORMAT,
            "version": record.version,
            "backend": record.backend,
            "exported": iso(record.ts),
            "ts": record.ts,
            "room": record.room,
        }
    if isinstance(record, Secret):
        return {"kind": "secret", "key": record.key.hex()}
    if isinstance(record, User):
        return {
            "kind": "user",
            "key": record.key,
            "name": record.name,
            "password": record.password,
            "admin": record.admin,
            "created": record.created,
        }
    if isinstance(record, StoredRoom):
        rules = record.rules
        return {
            "kind": "room",
            "room": record.name,
            "last_id": record.last_id,
            "owner": _person(rules.owner) if rules.owner is not None else None,
            "moderators": [_person(person) for person in rules.moderators],
            "invited": [_person(person) for person in rules.invited],
            "members_only": rules.members_only,
            "topic": (
                {"text": rules.topic.text, "by": rules.topic.by, "ts": rules.topic.ts}
                if rules.topic is not None
                else None
            ),
        }
    if isinstance(record, Sanction):
        return {
            "kind": "sanction",
            "sanction": record.kind.value,
            "scope": record.scope,
            "target": record.target,
            "name": record.name,
            "key": record.key,
            "by": record.by,
            "reason": record.reason,
            "at": record.at,
            "until": record.until,
        }
    if isinstance(record, AuditEntry):
        return {
            "kind": "audit",
            "id": record.id,
            "at": record.at,
            "room": record.room,
            "actor": record.actor,
            "action": record.action,
            "target": record.target,
            "reason": record.reason,
            "until": record.until,
            "detail": record.detail,
        }
    return {"kind": "end", "records": record.records}


def _person(person: Person) -> dict[str, str]:
    return {"key": person.key, "name": person.name}


def decode_header(line: bytes) -> Header:
    """The file's first line, or `Unreadable` (line 1)."""
    fields = _object(line, 1)
    if "format" not in fields:
        raise Unreadable(1, f"expected the header of a chatroom export ({FORMAT!r}): is this an export?")
    read = _Fields(fields, 1)
    if read.text("format") != FORMAT:
        raise Unreadable(1, f"expected the format {FORMAT!r}, but the header says {fields['format']!r}")
    version = read.integer("version")
    if version > VERSION:
        raise Unreadable(
            1, f"the file has format version {version}, but this chatroom reads only up to {VERSION}: upgrade chatroom"
        )
    if version < 1:
        raise Unreadable(1, f"expected a format version from 1 to {VERSION}, but got {version}")
    room = read.optional_text("room")
    return Header(read.text("backend"), read.integer("ts"), read.room(room) if room is not None else None, version)


def decode(line: bytes, number: int) -> Record:
    """A record of the file (any line but the first), or `Unreadable`."""
    fields = _object(line, number)
    read = _Fields(fields, number)
    kind = read.text("kind")
    if kind == "message":
        return read.message()
    if kind == "read":
        return StoredRead(read.name(read.text("key")), read.room(read.text("room")), read.id("id"))
    if kind == "dm":
        return DirectMessage.create(
            read.id("id"),
            read.name(read.text("from")),
            read.name(read.text("to")),
            read.text("text"),
            read.integer("ts"),
            read.boolean("auto"),
        )
    if kind == "conversation":
        accounts = fields.get("accounts")
        if not isinstance(accounts, list) or len(accounts) != 2:
            raise Unreadable(number, f"expected 'accounts' to be a list of two accounts, but got {accounts!r}")
        one, other = (read.account(read.person(value, "accounts")) for value in accounts)
        if one.key > other.key:
            raise Unreadable(number, "expected the conversation's accounts sorted by key")
        return StoredConversation(
            (Party(one.key, one.name), Party(other.key, other.name)),
            read.integer("last_id", minimum=0),
            read.integer("ts"),
        )
    if kind in ("buddy", "block"):
        listed = read.account(Person(read.name(read.text("key")), read.name(read.text("name"))))
        entry = StoredBuddy if kind == "buddy" else StoredBlock
        return entry(read.name(read.text("owner")), Party(listed.key, listed.name))
    if kind == "room":
        owner = fields.get("owner")
        topic = fields.get("topic")
        return StoredRoom(
            read.room(read.text("room")),
            read.integer("last_id", minimum=0),
            RoomRules(
                owner=read.person(owner, "owner") if owner is not None else None,
                moderators=read.people("moderators"),
                invited=read.people("invited"),
                members_only=read.boolean("members_only"),
                topic=read.topic(topic) if topic is not None else None,
            ),
        )
    if kind == "user":
        name, key = read.name(read.text("name")), read.text("key")
        if name_key(name) != key:
            raise Unreadable(number, f"the account {name!r} has the key {key!r}, but its name's key is another")
        return User(key, name, read.text("password"), read.boolean("admin"), read.integer("created"))
    if kind == "sanction":
        sanction = read.text("sanction")
        if sanction not in Kind._value2member_map_:
            raise Unreadable(number, f"expected a sanction of ban or mute, but got {sanction!r}")
        scope, target = read.text("scope"), read.text("target")
        if scope:
            read.room(scope)
        if not target.startswith(("a:", "g:")):
            raise Unreadable(number, f"expected a sanction's target a:KEY or g:HASH, but got {target!r}")
        return Sanction(
            scope,
            Kind(sanction),
            read.name(target),
            read.name(read.text("name")),
            read.name(read.text("key")),
            read.text("by"),
            read.text("reason"),
            read.integer("at"),
            read.optional_integer("until"),
        )
    if kind == "audit":
        return AuditEntry(
            read.id("id"),
            read.integer("at"),
            read.room(read.text("room")),
            read.text("actor"),
            read.text("action"),
            read.optional_text("target"),
            read.text("reason"),
            read.optional_integer("until"),
            read.text("detail"),
        )
    if kind == "secret":
        try:
            secret = bytes.fromhex(read.text("key"))
        except ValueError:
            secret = b""
        if len(secret) != SECRET_BYTES:
            raise Unreadable(number, f"expected the secret as {SECRET_BYTES * 2} hexadecimal digits")
        return Secret(secret)
    if kind == "end":
        return End(read.integer("records", minimum=0))
    raise Unreadable(number, f"unknown kind of record {kind!r}")


def _object(line: bytes, number: int) -> dict[str, Any]:
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise Unreadable(number, f"not JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise Unreadable(number, "expected a JSON object")
    return fields


@lru_cache(maxsize=4096)
def _room_name(room: str) -> bool:
    try:
        return clean_room(room) == room
    except InvalidName:
        return False


@lru_cache(maxsize=65536)
def _printable(name: str) -> bool:
    """A name as stored: a line of its own (the Redis keys rely on it), never empty."""
    return 0 < len(name) <= MAX_RAW_NAME_LENGTH and not any(unicodedata.category(char) == "Cc" for char in name)


class _Fields:
    """The fields of one record, each read with the check of its type."""

    __slots__ = ("fields", "number")

    def __init__(self, fields: dict[str, Any], number: int) -> None:
        self.fields = fields
        self.number = number

    def _get(self, name: str) -> Any:
        if name not in self.fields:
            raise Unreadable(self.number, f"the record has no {name!r}")
        return self.fields[name]

    def _wrong(self, name: str, expected: str) -> Unreadable:
        return Unreadable(self.number, f"expected {name!r} to be {expected}, but got {self.fields.get(name)!r}")

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._wrong(name, "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and not isinstance(value, str):
            raise self._wrong(name, "a string or null")
        return value

    def integer(self, name: str, minimum: int = -(2**63)) -> int:
        value = self._get(name)
        if type(value) is not int or not minimum <= value < 2**63:
            raise self._wrong(name, "an integer" if minimum < 0 else f"an integer of at least {minimum}")
        return value

    def id(self, name: str) -> int:
        return self.integer(name, minimum=1)

    def optional_integer(self, name: str) -> int | None:
        return None if self._get(name) is None else self.integer(name)

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self._wrong(name, "true or false")
        return value

    def room(self, room: str) -> str:
        if not _room_name(room):
            raise Unreadable(self.number, f"{room!r} is not a room's name as chatroom keeps it")
        return room

    def name(self, name: str) -> str:
        if not _printable(name):
            raise Unreadable(self.number, f"{name!r} is not a name as chatroom keeps it")
        return name

    def person(self, value: Any, what: str) -> Person:
        if not (isinstance(value, dict) and isinstance(value.get("key"), str) and isinstance(value.get("name"), str)):
            raise Unreadable(self.number, f'expected {what} as {{"key": ..., "name": ...}}, but got {value!r}')
        return Person(self.name(value["key"]), self.name(value["name"]))

    def account(self, person: Person) -> Person:
        """A person who is an account: its key is its name's."""
        if name_key(person.name) != person.key:
            raise Unreadable(
                self.number, f"the account {person.name!r} has the key {person.key!r}, but its name's key is another"
            )
        return person

    def people(self, name: str) -> tuple[Person, ...]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._wrong(name, "a list")
        return tuple(sorted((self.person(item, name) for item in value), key=lambda person: person.key))

    def message(self) -> StoredMessage:
        room, id, name = self.room(self.text("room")), self.id("id"), self.name(self.text("name"))
        text, ts, guest = self.text("text"), self.integer("ts"), self.boolean("guest")
        edited_ts = self.optional_integer("edited_ts") if "edited_ts" in self.fields else None
        deleted = self.boolean("deleted") if "deleted" in self.fields else False
        given = self.reactions() if "reactions" in self.fields else ()
        if deleted and (text or edited_ts is not None or given):
            raise Unreadable(
                self.number, f"message {id} is deleted, but the record keeps its text, an edit or reactions"
            )
        counts = ordered({emoji: len(keys) for emoji, keys in given})
        return StoredMessage(Message(room, id, name, text, ts, guest, edited_ts, deleted, counts), given)

    def reactions(self) -> Reactors:
        value = self._get("reactions")
        expected = 'an object of reactions, each with the name keys of who gave it ({"👍": ["ann"]})'
        if not isinstance(value, dict):
            raise self._wrong("reactions", expected)
        for emoji, keys in value.items():
            if emoji not in REACTIONS:
                raise Unreadable(self.number, f"{emoji!r} is not a reaction chatroom gives ({' '.join(REACTIONS)})")
            if not isinstance(keys, list) or not keys or not all(isinstance(key, str) for key in keys):
                raise self._wrong("reactions", expected)
            if len(set(keys)) != len(keys):
                raise Unreadable(self.number, f"someone gave the reaction {emoji} twice: a person counts once")
            for key in keys:
                self.name(key)
        return reactors(value)

    def topic(self, value: Any) -> Topic:
        if not isinstance(value, dict):
            raise Unreadable(self.number, f'expected the topic as {{"text", "by", "ts"}}, but got {value!r}')
        topic = _Fields(value, self.number)
        return Topic(topic.text("text"), topic.text("by"), topic.integer("ts"))
