"""The wire protocol (docs/protocol.md): what clients send, and the events the server sends.

Every event leaves the server serialised exactly once, as a compact JSON object on one line;
a frame carries one or more of them separated by `\\n` (JSON never contains a raw newline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from app.core.messages import Message

# RFC 6455: a close frame carries at most 125 bytes, two of them the code; a longer reason
# makes the WebSocket library refuse to send the close at all.
MAX_CLOSE_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """`text` cut to what a close frame carries, at a character boundary."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


class CloseCode(IntEnum):
    """Close codes the server uses, defined once: RFC 6455 codes and our own 4xxx ones."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down
    UNSUPPORTED_DATA = 1003  # a binary frame
    INVALID_DATA = 1007  # a text frame that is not UTF-8 (app/server/websocket.py)
    POLICY_VIOLATION = 1008  # persistent flooding
    MESSAGE_TOO_BIG = 1009  # a frame over max_message_bytes
    SERVICE_RESTART = 1012  # the history began a new epoch without a restart: reconnect, resuming
    TRY_AGAIN_LATER = 1013  # the client fell too far behind (its queue is full)
    INVALID_NAME = 4400  # the name, room name, since or token breaks the rules (the token in the URL too)
    NOT_SIGNED_IN = 4401  # guests are off and the connection signs no account in, or its session ended;
    # or a guest at the door of a room for members only
    FORBIDDEN = 4403  # kicked or banned from the room, or not one of the members of a room for members only
    NAME_TAKEN = 4409  # the name is already online in that room, or registered to an account
    REPLACED = 4410  # a newer connection of the same client (its welcome's token) took the name over
    TOO_MANY_CONNECTIONS = 4429  # the client's address holds max_connections_per_ip already


# The handshake's subprotocols (Sec-WebSocket-Protocol). A client may offer SUBPROTOCOL and
# the server then answers with it (a browser fails a handshake whose offered subprotocols get
# no answer). A resuming client offers its welcome's token as TOKEN_SUBPROTOCOL + token: a
# header, unlike the URL, is in no access log, and base64url is valid in a subprotocol.
SUBPROTOCOL = "chatroom"
TOKEN_SUBPROTOCOL = "chatroom.token."  # noqa: S105 - the prefix of one, not a secret


def resume_subprotocols(token: str) -> list[str]:
    """What a client offers to take its name over with `token` (docs/protocol.md, "Resuming")."""
    return [SUBPROTOCOL, TOKEN_SUBPROTOCOL + token]


class ErrorCode(StrEnum):
    """`code` of an `error` event; the connection stays open after every one of them."""

    BAD_JSON = "bad_json"
    BAD_EVENT = "bad_event"
    UNKNOWN_TYPE = "unknown_type"
    EMPTY_TEXT = "empty_text"
    RATE_LIMITED = "rate_limited"
    NOT_STORED = "not_stored"
    UNAVAILABLE = "unavailable"
    # Not allowed: what only its author, a moderator or the one it names may do (see
    # "Moderation"); guests' or blocked direct messages.
    FORBIDDEN = "forbidden"
    MUTED = "muted"  # the sender is muted in this room: the message was not stored
    # No such message (never was, deleted, or gone with retention), or nobody, ban or role of that name.
    NOT_FOUND = "not_found"
    NO_SUCH_USER = "no_such_user"  # no account has that name
    TOO_MANY = "too_many"  # a list at its maximum length
    TOO_LATE = "too_late"  # an edit after CHAT_EDIT_WINDOW


class BadRequest(ValueError):
    """A connection parameter that breaks the rules (close 4400); the message says which."""


class ProtocolError(Exception):
    """An inbound event the server answers with an `error` event."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Command:
    """What a client asks with one event; each kind of event has a parser (`command`)."""

    __slots__ = ()


Parser = Callable[[dict[str, Any]], Command]
_PARSERS: dict[str, Parser] = {}


def command(kind: str) -> Callable[[Parser], Parser]:
    """Register the parser of client events of type `kind`: it turns the event's JSON object
    into a `Command`, or raises `ProtocolError`. Each part of the core registers its own."""

    def register(parser: Parser) -> Parser:
        if kind in _PARSERS:
            raise ValueError(f"two parsers for events of type {kind!r}")
        _PARSERS[kind] = parser
        return parser

    return register


def known_commands() -> frozenset[str]:
    """The types of client event the server understands (the others get `unknown_type`)."""
    return frozenset(_PARSERS)


@dataclass(frozen=True, slots=True)
class SendMessage(Command):
    """`{"type":"message","text":…}`: the client says something to its room."""

    text: str


@dataclass(frozen=True, slots=True)
class RequestHistory(Command):
    """`{"type":"history","before":ID,"limit":N}`: the N messages just before ID (the latest if no ID)."""

    before: int | None
    limit: int


HISTORY_PAGE = 50  # messages in a history page when the client does not say
MAX_HISTORY_PAGE = 100
MAX_ID = 2**63 - 1  # ids are SQLite integers


def is_message_id(value: object) -> bool:
    """A possible message id: an integer (not a boolean) from 1 to 2**63 - 1."""
    return type(value) is int and 1 <= value <= MAX_ID


def parse(frame: str) -> Command:
    """Turn one inbound text frame into a command, or raise `ProtocolError` saying why not."""
    try:
        event = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:  # also lone surrogates and nesting deeper than 1024
        raise ProtocolError(ErrorCode.BAD_JSON, f"Expected a JSON object, but the frame is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ProtocolError(ErrorCode.BAD_EVENT, f"Expected a JSON object, but got {_json_kind(event)}")
    kind = event.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "type" to be a string, but got {_json_kind(kind)}')
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown event type {kind[:40]!r}")
    return parser(event)


# What parsers ask of an event's fields; each raises `ProtocolError` (bad_event) saying what it expected.


def text_field(event: dict[str, Any], field: str, optional: bool = False) -> str:
    """A string field; with `optional`, "" when it is absent."""
    value = event.get(field)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "{field}" to be a string, but got {_json_kind(value)}')
    return value


def id_field(event: dict[str, Any], field: str, optional: bool = False) -> int | None:
    """A message id field (an integer from 1 to 2**63 - 1); None when absent and `optional`."""
    value = event.get(field)
    if value is None and optional:
        return None
    if not is_message_id(value):
        detail = f'Expected "{field}" to be a message id (a positive integer), but got {value!r:.40}'
        raise ProtocolError(ErrorCode.BAD_EVENT, detail)
    assert isinstance(value, int)
    return value


def int_field(event: dict[str, Any], field: str, low: int, high: int, default: int | None = None) -> int | None:
    """An integer field from `low` to `high`; `default` when absent."""
    value = event.get(field, default)
    if value is None and default is None and field not in event:
        return None
    if type(value) is not int or not low <= value <= high:
        detail = f'Expected "{field}" to be an integer from {low} to {high}, but got {value!r:.40}'
        raise ProtocolError(ErrorCode.BAD_EVENT, detail)
    return value


def bool_field(event: dict[str, Any], field: str, default: bool = False) -> bool:
    value = event.get(field, default)
    if type(value) is not bool:
        raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "{field}" to be true or false, but got {value!r:.40}')
    return value


@command("message")
def _message(event: dict[str, Any]) -> SendMessage:
    text = text_field(event, "text")
    if not text.strip():
        raise ProtocolError(ErrorCode.EMPTY_TEXT, "A message needs some text")
    return SendMessage(text)


@command("history")
def _history(event: dict[str, Any]) -> RequestHistory:
    before = id_field(event, "before", optional=True)
    limit = int_field(event, "limit", 1, MAX_HISTORY_PAGE, default=HISTORY_PAGE)
    assert limit is not None
    return RequestHistory(before, limit)


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# Outgoing events. Each returns the event's UTF-8 JSON, ready to be framed: serialised once,
# whoever receives it, and written as it is.

# Batched frames stay below this many bytes (an event longer than that goes alone): big
# enough that a burst costs a few writes, small enough that nothing waits behind a huge frame.
MAX_BATCH = 65536


def frames_of(events: list[bytes]) -> list[bytes]:
    """Join events into as few frames as MAX_BATCH allows, in order."""
    if len(events) == 1:
        return events
    frames: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for event in events:
        if batch and size + len(event) >= MAX_BATCH:
            frames.append(b"\n".join(batch))
            batch, size = [], 0
        batch.append(event)
        size += len(event) + 1
    frames.append(b"\n".join(batch))
    return frames


dumps = orjson.dumps


def error_event(code: ErrorCode, detail: str) -> bytes:
    return dumps({"type": "error", "code": code.value, "detail": detail})


def join_event(name: str, guest: bool = False) -> bytes:
    """A join; a guest's says so (`"guest": true`), an account's does not."""
    return dumps({"type": "join", "name": name, "guest": True} if guest else {"type": "join", "name": name})


def leave_event(name: str) -> bytes:
    return dumps({"type": "leave", "name": name})


def welcome_event(
    name: str,
    room: str,
    epoch: str,
    token: str,
    online: list[str],
    history: list[bytes],
    gap: bool | None = None,
    guests: list[str] | None = None,
    guest: bool = False,
    extras: dict[str, Any] | None = None,
) -> bytes:
    """The first event of every connection; `history` holds message events already serialised.

    `token` lets this connection's successor take its name over; `gap` answers a resuming
    client: whether messages it missed are not all in `history`. `guests` are those of
    `online` who are guests; `guest` says whether this connection is one. `extras` are the
    fields the other parts of the core add (a room's topic, a person's buddies, ...).
    """
    head: dict[str, Any] = {"type": "welcome", "name": name, "room": room, "epoch": epoch, "token": token}
    head["guest"] = guest
    head["online"] = online
    head["guests"] = guests or []
    if extras:
        head.update(extras)
    if gap is not None:
        head["gap"] = gap
    return b"".join((dumps(head)[:-1], b',"history":[', b",".join(history), b"]}"))


def edit_event(message: Message) -> bytes:
    """A message's new text, for everyone in its room."""
    return dumps(
        {"type": "edit", "room": message.room, "id": message.id, "text": message.text, "edited_ts": message.edited_ts}
    )


def delete_event(message: Message) -> bytes:
    return dumps({"type": "delete", "room": message.room, "id": message.id})


def reactions_event(message: Message) -> bytes:
    """Every reaction a message has now, counted (an empty object once none is left)."""
    return dumps({"type": "reactions", "room": message.room, "id": message.id, "reactions": message.reactions})


# What changed in a stored message (`Subscriber.changed`'s kinds), and the event that says so.
CHANGE_EVENTS: dict[str, Callable[[Message], bytes]] = {
    "edit": edit_event,
    "delete": delete_event,
    "reactions": reactions_event,
}


def typing_event(name: str, stop: bool = False) -> bytes:
    return dumps({"type": "typing", "name": name, "stop": True} if stop else {"type": "typing", "name": name})


def history_event(room: str, messages: list[bytes], more: bool) -> bytes:
    """A page of history, oldest first; `more` says whether older messages exist."""
    return b"".join(
        (
            b'{"type":"history","room":',
            dumps(room),
            b',"messages":[',
            b",".join(messages),
            b'],"more":',
            dumps(more),
            b"}",
        )
    )
