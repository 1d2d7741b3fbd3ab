"""The model of every frame a client can send, and of the answer docs/protocol.md gives it.

Whatever a client sends, it gets the answer docs/protocol.md gives (an `error` event with the
documented code, its message's echo, the event that tells the room of a change it made,
nothing at all for typing and read positions, or a documented close code), and the others
in its room receive nothing but valid events. The expected answer comes from `Oracle`,
written from docs/protocol.md with Python's own JSON parser, not from the server's code; the
strategies make frames of every shape for hypothesis.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, TypeGuard

from hypothesis import strategies as st

from app.core.protocol import CloseCode, ErrorCode

MAX_BYTES = 4096  # CHAT_MAX_MESSAGE_BYTES, the default
ACTION_BURST = 10  # docs/protocol.md, "Moderation": an account's moderation actions at once

# What a frame can be: text (str), or the raw bytes of a text frame (which may not be UTF-8),
# or a binary frame.
Frame = str | bytes


@dataclass(frozen=True)
class Binary:
    data: bytes


@dataclass(frozen=True)
class RawText:
    """A text frame sent as these bytes, UTF-8 or not."""

    data: bytes


Sent = str | RawText | Binary


# The answers a frame may get.
@dataclass(frozen=True)
class Echo:
    text: str


@dataclass(frozen=True)
class Error:
    code: ErrorCode


@dataclass(frozen=True)
class Close:
    code: CloseCode


@dataclass(frozen=True)
class Changed:
    """The event that tells the room of a change the client made: edit, delete or reactions."""

    kind: str
    id: int
    text: str | None = None  # an edit's new text


@dataclass(frozen=True)
class Silence:
    """No answer at all (someone typing, a read position)."""


Answer = Echo | Error | Close | Changed | Silence


@dataclass(frozen=True)
class OneOf:
    """Any of these answers: where the client cannot know (someone else's message, or none)."""

    answers: frozenset[Answer]


Expected = Answer | OneOf


def matches(answer: Answer, wanted: Expected) -> bool:
    return answer in wanted.answers if isinstance(wanted, OneOf) else answer == wanted


# docs/protocol.md, "react": the reactions anyone may give, each with or without U+FE0F.
REACTIONS = {"\U0001f44d", "\u2764", "\U0001f602", "\U0001f389", "\U0001f62e", "\U0001f622", "\U0001f440", "\U0001f64f"}


class NotJSON(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not JSON")


def _number(text: str) -> float | int:
    if not any(char in text for char in ".eE"):
        integer = int(text)
        if -(2**63) <= integer < 2**64:
            return integer
    value = float(text)  # larger integers are read as doubles
    if math.isinf(value):
        raise NotJSON("a number beyond a double")  # docs/protocol.md: bad_json
    return value


def _no_surrogates(value: Any) -> None:
    pending = [value]  # a list, not recursion: values nest up to 1024 deep
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if any("\ud800" <= char <= "\udfff" for char in item):
                raise NotJSON("a lone surrogate")  # docs/protocol.md: bad_json
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())


def _depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def reference_parse(text: str) -> Any:
    """The frame's JSON value as docs/protocol.md defines JSON, or `NotJSON`."""
    if _depth(text) > 1024:
        raise NotJSON("nesting deeper than 1024")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 2000)  # json's parser recurses once a level: let it reach 1024
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_number, parse_int=_number)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise NotJSON(str(exc)) from None
    finally:
        sys.setrecursionlimit(limit)
    _no_surrogates(value)
    return value


def is_id(value: Any) -> TypeGuard[int]:
    """docs/protocol.md: a message id is an integer from 1 to 2^63 - 1."""
    return type(value) is int and 1 <= value < 2**63


class Oracle:
    """The answers docs/protocol.md gives one client, a guest in a room nobody owns, in order:
    it knows the ids of the messages it wrote (from their echoes) and which it deleted (each
    deletion is also a `moderation` event, which comes with the `delete`). With `others`, people it
    does not know of may have written other messages in the room (whose ids it cannot tell)."""

    def __init__(self, others: bool = False) -> None:
        self.others = others
        self.mine: dict[int, bool] = {}  # id of each message it wrote -> whether it deleted it
        self.deletions = 0  # moderation actions, the rate counts them

    def learn(self, answer: Answer, event: dict[str, Any]) -> None:
        """The answer came, as this event: the echo of a message gives its id."""
        if isinstance(answer, Echo):
            self.mine[event["id"]] = False
        elif isinstance(answer, Changed) and answer.kind == "delete":
            self.mine[answer.id] = True
            self.deletions += 1

    def expected(self, sent: Sent) -> Expected:
        """The answer docs/protocol.md gives for a frame."""
        if isinstance(sent, Binary):
            return Close(CloseCode.UNSUPPORTED_DATA)
        if isinstance(sent, RawText):
            if len(sent.data) > MAX_BYTES:
                return Close(CloseCode.MESSAGE_TOO_BIG)
            try:
                sent = sent.data.decode()
            except UnicodeDecodeError:
                return Close(CloseCode.INVALID_DATA)
        if len(sent.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            return Close(CloseCode.MESSAGE_TOO_BIG)
        try:
            event = reference_parse(sent)
        except NotJSON:
            return Error(ErrorCode.BAD_JSON)
        if not isinstance(event, dict):
            return Error(ErrorCode.BAD_EVENT)
        kind = event.get("type")
        if kind == "message":
            text = event.get("text")
            if not isinstance(text, str):
                return Error(ErrorCode.BAD_EVENT)
            return Echo(text) if text.strip() else Error(ErrorCode.EMPTY_TEXT)
        if kind in ("edit", "delete", "react"):
            return self._change(kind, event)
        if kind == "typing":
            stop = event.get("stop", False)
            return Silence() if type(stop) is bool else Error(ErrorCode.BAD_EVENT)
        if kind == "read":  # a guest's position is kept in its browser, not on the server
            return Silence() if is_id(event.get("id")) else Error(ErrorCode.BAD_EVENT)
        if isinstance(kind, str) and kind in MODERATION:
            # The sender is a guest in a room nobody owns: a well-formed order is forbidden.
            well_formed = all(_field_fits(event, name, rule) for name, rule in MODERATION[kind].items())
            return Error(ErrorCode.FORBIDDEN if well_formed else ErrorCode.BAD_EVENT)
        if kind in GUESTS_REFUSED:
            return guest_refused(kind, event)
        return Error(ErrorCode.UNKNOWN_TYPE if isinstance(kind, str) else ErrorCode.BAD_EVENT)

    def _change(self, kind: str, event: dict[str, Any]) -> Expected:
        id = event.get("id")
        if not is_id(id):
            return Error(ErrorCode.BAD_EVENT)
        if kind == "edit":
            text = event.get("text")
            if not isinstance(text, str):
                return Error(ErrorCode.BAD_EVENT)
            if not text.strip():
                return Error(ErrorCode.EMPTY_TEXT)
        if kind == "react":
            emoji = event.get("emoji")
            if not isinstance(emoji, str) or emoji.replace("\ufe0f", "") not in REACTIONS:
                return Error(ErrorCode.BAD_EVENT)
        not_found = Error(ErrorCode.NOT_FOUND)
        if id in self.mine:
            if self.mine[id]:
                return not_found  # it deleted it
            if kind == "edit":
                return Changed("edit", id, event["text"])  # within CHAT_EDIT_WINDOW: just written
            if kind == "react":
                return Changed("reactions", id)
            # "Moderation": a deletion is a moderation action, 10 at once, then one a second.
            if self.deletions >= ACTION_BURST:
                return OneOf(frozenset({Changed("delete", id), Error(ErrorCode.RATE_LIMITED)}))
            return Changed("delete", id)
        if not self.others:
            return not_found
        if kind == "react":  # anyone's message takes reactions
            return OneOf(frozenset({not_found, Changed("reactions", id)}))
        return OneOf(frozenset({not_found, Error(ErrorCode.FORBIDDEN)}))  # not its own, or none


def expected(sent: Sent) -> Expected:
    """The answer docs/protocol.md gives a frame sent first (by a client that wrote nothing yet)."""
    return Oracle().expected(sent)


# docs/protocol.md, "Moderation": each order's fields. A rule's first word says what the value
# must be; "optional" fields may also be left out or null.
_NAME = "text 256"
MODERATION: dict[str, dict[str, str]] = {
    "kick": {"name": _NAME, "reason": "text 200 optional"},
    "mute": {"name": _NAME, "seconds": "seconds optional", "reason": "text 200 optional"},
    "unmute": {"name": _NAME},
    "ban": {"name": _NAME, "seconds": "seconds optional", "reason": "text 200 optional", "everywhere": "flag optional"},
    "unban": {"name": _NAME, "everywhere": "flag optional"},
    "delete": {"id": "id"},
    "topic": {"text": "text 300"},
    "grant": {"name": _NAME, "role": "role"},
    "revoke": {"name": _NAME, "role": "role"},
    "mode": {"members_only": "flag"},
    "invite": {"name": _NAME},
    "uninvite": {"name": _NAME},
    "claim": {},
}


def _field_fits(event: dict[str, Any], name: str, rule: str) -> bool:
    value = event.get(name)
    what, *rest = rule.split()
    if value is None and "optional" in rest:
        return True
    if what == "text":
        return isinstance(value, str) and len(value) <= int(rest[0])
    if what == "seconds":
        return type(value) is int and 1 <= value <= 10 * 365 * 86_400
    if what == "flag":
        return type(value) is bool
    if what == "role":
        return value in ("moderator", "owner")
    return type(value) is int and 1 <= value <= 2**63 - 1  # a message id


# docs/protocol.md, "Direct messages": the events of accounts. A well-formed one from a guest
# (the fuzzer is one) gets `forbidden`; a malformed one, what any malformed event gets.
GUESTS_REFUSED = ("dm", "dm_history", "buddy_add", "buddy_remove", "block", "unblock", "away", "back")
MAX_AWAY_CHARACTERS = 300
MAX_DM_PAGE = 100


def _an_id(value: Any) -> bool:
    """An optional id: absent (or null), or a whole number from 1 to 2**63 - 1, not a boolean."""
    return value is None or (type(value) is int and 1 <= value <= 2**63 - 1)


def guest_refused(kind: str, event: dict[str, Any]) -> Answer:
    if kind == "dm":
        to, text = event.get("to"), event.get("text")
        if not isinstance(to, str) or not isinstance(text, str):
            return Error(ErrorCode.BAD_EVENT)
        if not text.strip():
            return Error(ErrorCode.EMPTY_TEXT)
    elif kind == "dm_history":
        limit = event.get("limit", 50)
        well_formed = (
            isinstance(event.get("with"), str)
            and _an_id(event.get("before"))
            and _an_id(event.get("after"))
            and type(limit) is int
            and 1 <= limit <= MAX_DM_PAGE
        )
        if not well_formed:
            return Error(ErrorCode.BAD_EVENT)
    elif kind == "away":
        message = event.get("message")
        if message is not None and (not isinstance(message, str) or len(message.strip()) > MAX_AWAY_CHARACTERS):
            return Error(ErrorCode.BAD_EVENT)
    elif kind != "back" and not isinstance(event.get("name"), str):
        return Error(ErrorCode.BAD_EVENT)
    return Error(ErrorCode.FORBIDDEN)


# Strategies: what a client may send.

odd_text = st.text(
    st.characters(codec=None)  # every code point but lone surrogates...
    | st.characters(categories=["Cs"])  # ...and those too
    | st.sampled_from("\u202e\u2066\u200b\u200d\ufeff\u0000\u001f\u2028\u3000\ufffd\U0010ffff"),
    max_size=40,
)
huge_numbers = (
    st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**308, 10**309])
)
leaves = st.none() | st.booleans() | huge_numbers | odd_text
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12
)
kinds = ["message", "error", "welcome", "join", "Message", "message ", "", "edit", "delete", "react", "typing", "read"]
field = st.sampled_from(kinds) | st.sampled_from(sorted(MODERATION)) | st.sampled_from(GUESTS_REFUSED) | json_values
fitting = st.integers(0, 2**63) | st.sampled_from(["moderator", "owner", "bob", "x" * 201]) | st.booleans()
small_ids = st.sampled_from([None, 0, 1, 2**63 - 1, 2**63, -1, True, 1.5, "1"])
emoji = (
    st.sampled_from(["\U0001f44d", "\u2764", "\u2764\ufe0f", "\U0001f389", "\U0001f984", "\ufe0f", ":+1:"])
    | json_values
)
events = st.fixed_dictionaries(
    {},
    optional={
        "type": field,
        "text": field | odd_text,
        "id": st.integers(0, 6) | json_values | fitting,  # small: the ids of the client's own messages too
        "emoji": emoji,
        "stop": st.booleans() | json_values,
        "name": odd_text | json_values | fitting,
        "room": json_values,
        "reason": json_values | fitting,
        "seconds": json_values | fitting,
        "everywhere": json_values | fitting,
        "role": json_values | fitting,
        "members_only": json_values | fitting,
        "to": odd_text | json_values,
        "with": odd_text | json_values,
        "message": odd_text | json_values,
        "before": small_ids | json_values,
        "limit": st.sampled_from([0, 1, 100, 101, None]) | json_values,
    },
)


def dumps(value: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(value, ensure_ascii=ascii_only)
    except (
        ValueError
    ):  # integers too long for str(): https://docs.python.org/3/library/stdtypes.html#int-max-str-digits
        return "0"


@st.composite
def serialised(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> str:
    return dumps(draw(values), draw(st.booleans()))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid message with a few characters deleted, replaced or inserted."""
    text = json.dumps({"type": "message", "text": draw(odd_text) or "hi"}, ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(["", '"', "\\", "{", "}", ",", ":", "\\u", "\ud800", "\n"]))
            + text[at + 1 :]
        )
    return text


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"type":"message","text":' + "[" * depth + '"x"' + "]" * depth + "}"


deep = st.builds(
    nested, st.integers(1, 1100) | st.just(1024) | st.just(1025), st.sampled_from(["array", "object", "text"])
)
huge = st.builds(
    lambda n: json.dumps({"type": "message", "text": "x" * n}), st.integers(MAX_BYTES - 40, MAX_BYTES + 10)
)
# Room life's events, mostly well formed, about the client's own messages (small ids) or none.
life_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["edit", "delete", "react", "typing", "read"])},
    optional={
        "id": st.integers(0, 6) | st.sampled_from([True, 1.0, "1", None, 2**63]),
        "text": st.sampled_from(["new text", " ", "", "\u202e"]) | odd_text | st.integers(),
        "emoji": emoji,
        "stop": st.booleans() | st.sampled_from([0, "true", None]),
    },
)
# Moderation orders (docs/protocol.md, "Moderation"): each with its fields, mostly of the
# right kind, so that both answers (forbidden to a guest, bad_event) come often.
near_names = st.sampled_from(["bob", "Bob", "", " ", "x" * 256, "x" * 257, "a\u202eb"]) | odd_text
near_values = {
    "name": near_names | json_values,
    "reason": st.none() | st.sampled_from(["spam", "x" * 200, "x" * 201]) | json_values,
    "seconds": st.none() | st.integers(-1, 10 * 365 * 86_400 + 1) | json_values,
    "everywhere": st.none() | st.booleans() | json_values,
    "id": st.integers(-1, 2**63) | json_values,
    "text": st.sampled_from(["", "topic", "x" * 300, "x" * 301]) | odd_text | json_values,
    "role": st.sampled_from(["moderator", "owner", "admin"]) | json_values,
    "members_only": st.booleans() | json_values,
}
orders = st.sampled_from(sorted(MODERATION)).flatmap(
    lambda kind: st.fixed_dictionaries(
        {"type": st.just(kind)}, optional={name: near_values[name] for name in MODERATION[kind]}
    )
)
text_frames = (
    serialised(events)
    | serialised(orders)
    | serialised(life_events)
    | serialised(life_events)
    | serialised(json_values)
    | mutated()
    | deep
    | huge
    | st.text(max_size=60)
    | odd_text
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "\ufeff{}", "{}", "null", " ", ""])
)
raw_frames = st.builds(RawText, st.binary(max_size=50)) | st.builds(
    RawText, st.sampled_from([b"\xed\xa0\x80", b'{"type":"message","text":"\xed\xa0\x80"}', b"\xff", b"\xc0\xaf"])
)
frames: st.SearchStrategy[Sent] = text_frames | raw_frames | st.builds(Binary, st.binary(max_size=20))
# A client that says something, then changes what it said (and types, and reads).
conversations: st.SearchStrategy[list[Sent]] = st.builds(
    lambda said, then: [*said, *then],
    st.lists(
        st.builds(lambda text: json.dumps({"type": "message", "text": text}), st.sampled_from(["hi", "x"])),
        min_size=1,
        max_size=3,
    ),
    st.lists(
        serialised(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["edit", "delete", "react", "typing", "read"]),
                    "id": st.integers(1, 3),
                    "text": st.sampled_from(["new text", "again", " "]),
                    "emoji": st.sampled_from(["\U0001f44d", "\u2764", "\u2764\ufe0f", "\U0001f64f", "\U0001f984"]),
                },
                optional={"stop": st.booleans()},
            )
        ),
        min_size=1,
        max_size=5,
    ),
)


# What the others may receive.


def check_event(event: Any, room: str) -> None:
    """Fail unless `event` is a valid event of docs/protocol.md for someone else in `room`."""
    assert isinstance(event, dict), event
    kind = event["type"]
    if kind == "message":
        assert event.keys() - {"guest"} == {"type", "id", "room", "name", "text", "ts"}, event
        assert type(event["id"]) is int
        assert type(event["ts"]) is int
        assert event["room"] == room
        assert isinstance(event["name"], str)
        assert isinstance(event["text"], str)
        assert event["text"].strip()
        event["text"].encode()  # real text: no lone surrogates
    elif kind == "edit":
        assert event.keys() == {"type", "room", "id", "text", "edited_ts"}, event
        assert event["room"] == room
        assert type(event["id"]) is int
        assert type(event["edited_ts"]) is int
        assert isinstance(event["text"], str)
        assert event["text"].strip()
        event["text"].encode()
    elif kind == "delete":
        assert event.keys() == {"type", "room", "id"}, event
        assert event["room"] == room
        assert type(event["id"]) is int
    elif kind == "reactions":
        assert event.keys() == {"type", "room", "id", "reactions"}, event
        assert event["room"] == room
        assert type(event["id"]) is int
        counts = event["reactions"]
        assert isinstance(counts, dict)
        assert all(emoji in REACTIONS or emoji.replace("\ufe0f", "") in REACTIONS for emoji in counts), counts
        assert all(type(count) is int and count > 0 for count in counts.values()), counts
    elif kind == "typing":
        assert event.keys() in ({"type", "name"}, {"type", "name", "stop"}), event
        assert isinstance(event["name"], str)
        assert event.get("stop", True) is True
    elif kind == "moderation":  # the only one a guest's frames can cause: its own deletion
        assert event.keys() == {"type", "room", "action", "by", "ts", "name", "id"}, event
        assert event["room"] == room
        assert event["action"] == "delete"
        assert isinstance(event["by"], str)
        assert event["name"] == event["by"]
        assert type(event["id"]) is int
        assert type(event["ts"]) is int
    elif kind == "join":
        assert event.keys() in ({"type", "name"}, {"type", "name", "guest"}), event
        assert isinstance(event["name"], str)
    elif kind == "leave":
        assert event.keys() == {"type", "name"}, event
        assert isinstance(event["name"], str)
    else:
        raise AssertionError(f"an observer received {event!r}")
