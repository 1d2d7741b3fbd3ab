"""The wire protocol (docs/protocol.md): what clients send, and the events the server sends.

Every event leaves the server serialised exactly once, as a compact JSON object on one line;
a frame carries one or more of them separated by `\\n` (JSON never contains a raw newline).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson


class CloseCode(IntEnum):
    """Close codes the server uses, defined once: RFC 6455 codes and our own 4xxx ones."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down
    UNSUPPORTED_DATA = 1003  # a binary frame
    INVALID_DATA = 1007  # a text frame that is not UTF-8 (app/wsprotocol.py)
    POLICY_VIOLATION = 1008  # persistent flooding
    MESSAGE_TOO_BIG = 1009  # a frame over max_message_bytes
    TRY_AGAIN_LATER = 1013  # the client fell too far behind (its queue is full)
    INVALID_NAME = 4400  # the name or room name breaks the naming rules
    NAME_TAKEN = 4409  # the name is already online in that room
    TOO_MANY_CONNECTIONS = 4429  # the client's address holds max_connections_per_ip already


class ErrorCode(StrEnum):
    """`code` of an `error` event; the connection stays open after every one of them."""

    BAD_JSON = "bad_json"
    BAD_EVENT = "bad_event"
    UNKNOWN_TYPE = "unknown_type"
    EMPTY_TEXT = "empty_text"
    RATE_LIMITED = "rate_limited"
    NOT_STORED = "not_stored"


class ProtocolError(Exception):
    """An inbound event the server answers with an `error` event."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SendMessage:
    """`{"type":"message","text":…}`: the client says something to its room."""

    text: str


Command = SendMessage


def parse(frame: str) -> Command:
    """Turn one inbound text frame into a command, or raise `ProtocolError` saying why not."""
    try:
        event = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:  # also lone surrogates and nesting deeper than 1024
        raise ProtocolError(ErrorCode.BAD_JSON, f"Expected a JSON object, but the frame is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ProtocolError(ErrorCode.BAD_EVENT, f"Expected a JSON object, but got {_json_kind(event)}")
    kind = event.get("type")
    if kind == "message":
        text = event.get("text")
        if not isinstance(text, str):
            raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "text" to be a string, but got {_json_kind(text)}')
        if not text.strip():
            raise ProtocolError(ErrorCode.EMPTY_TEXT, "A message needs some text")
        return SendMessage(text)
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_EVENT, f'Expected "type" to be a string, but got {_json_kind(kind)}')
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Unknown event type {kind[:40]!r}")


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# Outgoing events. Each returns the event's JSON text, ready to be framed.


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def error_event(code: ErrorCode, detail: str) -> str:
    return dumps({"type": "error", "code": code.value, "detail": detail})


def join_event(name: str) -> str:
    return dumps({"type": "join", "name": name})


def leave_event(name: str) -> str:
    return dumps({"type": "leave", "name": name})


def welcome_event(name: str, room: str, epoch: str, online: list[str], history: list[str]) -> str:
    """The first event of every connection; `history` holds message events already serialised."""
    head = dumps({"type": "welcome", "name": name, "room": room, "epoch": epoch, "online": online})
    return f'{head[:-1]},"history":[{",".join(history)}]}}'
