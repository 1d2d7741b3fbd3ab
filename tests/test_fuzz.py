"""Hypothesis throws frames of every shape at the chat, through the core and through a real server.

Whatever a client sends, it gets the answer docs/protocol.md gives (an `error` event with the
documented code, its message's echo, or a documented close code), the others in its room
receive nothing but valid events, and the server goes on serving them.

The expected answer comes from `expected`, written from docs/protocol.md with Python's own
JSON parser, not from the server's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.backends.memory import MemoryBackend
from app.core.hub import Hub
from app.core.protocol import CloseCode, ErrorCode
from app.settings import Settings
from tests.conftest import budget
from tests.fakes import FakeConnection
from tests.servers import Server, chatroom_command, client_context, free_port, run_server

T = TypeVar("T")
MAX_BYTES = 4096  # CHAT_MAX_MESSAGE_BYTES, the default

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


Answer = Echo | Error | Close


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


def expected(sent: Sent) -> Answer:
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
    return Error(ErrorCode.UNKNOWN_TYPE if isinstance(kind, str) else ErrorCode.BAD_EVENT)


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
field = st.sampled_from(["message", "error", "welcome", "join", "Message", "message ", ""]) | json_values
events = st.fixed_dictionaries(
    {},
    optional={"type": field, "text": field | odd_text, "id": json_values, "name": json_values, "room": json_values},
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
text_frames = (
    serialised(events)
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


# What the others may receive.


def check_event(event: Any, room: str) -> None:
    """Fail unless `event` is a valid event of docs/protocol.md for someone else in `room`."""
    assert isinstance(event, dict), event
    kind = event["type"]
    if kind == "message":
        assert event.keys() == {"type", "id", "room", "name", "text", "ts"}, event
        assert type(event["id"]) is int
        assert type(event["ts"]) is int
        assert event["room"] == room
        assert isinstance(event["name"], str)
        assert isinstance(event["text"], str)
        assert event["text"].strip()
        event["text"].encode()  # real text: no lone surrogates
    elif kind in ("join", "leave"):
        assert event.keys() == {"type", "name"}, event
        assert isinstance(event["name"], str)
    else:
        raise AssertionError(f"an observer received {event!r}")


# The core: a Client in a Hub, with fake connections.


async def exchange(sent: list[str | bytes]) -> tuple[list[Answer], list[dict[str, Any]]]:
    """Feed `sent` to one client, one frame at a time; its answers, and what an observer got."""
    settings = Settings(rate_limit=0, close_timeout=0.5)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    await hub.start()
    watching, fuzzing = FakeConnection(), FakeConnection()
    await hub.join(watching, watching.abort, "lobby", "observer")
    fuzzer = await hub.join(fuzzing, fuzzing.abort, "lobby", "fuzzer")
    await fuzzing.wait_for(lambda c: c.events)  # its welcome
    answers: list[Answer] = []
    for frame in sent:
        seen = len(fuzzing.events)
        await fuzzer.receive(frame)
        if fuzzer.closing:
            await fuzzing.wait_for(lambda c: c.close_code is not None)
            assert fuzzing.close_code is not None
            answers.append(Close(CloseCode(fuzzing.close_code)))
            break
        await fuzzing.wait_for(lambda c: len(c.events) > seen)  # noqa: B023 (awaited here, in this iteration)
        new = fuzzing.events[seen:]
        assert len(new) == 1, new  # one answer per frame, nothing more
        answer = new[0]
        if answer["type"] == "error":
            assert isinstance(answer["detail"], str)
            assert answer["detail"]
            answers.append(Error(ErrorCode(answer["code"])))
        else:
            assert answer["type"] == "message", answer
            assert answer["name"] == "fuzzer"
            answers.append(Echo(answer["text"]))
    await fuzzer.finished()
    await hub.stop()
    return answers, watching.events


def to_core(sent: Sent) -> str | bytes:
    """What the endpoint hands the core: text, or bytes for a binary frame."""
    if isinstance(sent, Binary):
        return sent.data
    if isinstance(sent, RawText):
        return sent.data.decode()  # only UTF-8 reaches the core: the server closes others with 1007
    return sent


@settings(max_examples=budget(500))
@given(st.lists(frames, min_size=1, max_size=6))
@example([RawText(b'{"type":"message","text":"\xed\xa0\x80"}')])
@example(["[" * 1025 + "]" * 1025, '{"type":"message","text":"after the deep one"}'])
@example([json.dumps({"type": "message", "text": 10**400})])
@example(["[" * 1024 + "]" * 1024, '{"type":' * 1024 + "1" + "}" * 1024])
def test_the_core_answers_every_frame_as_documented(sent: list[Sent]) -> None:
    # Only UTF-8 text reaches the core; uvicorn (tests below) closes the rest with 1007.
    sent = [frame for frame in sent if expected(frame) != Close(CloseCode.INVALID_DATA)]
    answers, observed = asyncio.run(exchange([to_core(frame) for frame in sent]))
    wanted = [expected(frame) for frame in sent]
    closes = [number for number, answer in enumerate(wanted) if isinstance(answer, Close)]
    if closes:
        wanted = wanted[: closes[0] + 1]  # a close ends it: later frames are never read
    assert answers == wanted
    assert observed[0]["type"] == "welcome"
    for event in observed[1:]:
        check_event(event, "lobby")
    echoes = [answer.text for answer in answers if isinstance(answer, Echo)]
    assert [event["text"] for event in observed if event["type"] == "message"] == echoes


def test_the_reference_parser_agrees_with_the_documented_cases() -> None:
    """The oracle itself, on the cases docs/protocol.md names."""
    assert expected('{"type":"message","text":"\\ud800"}') == Error(ErrorCode.BAD_JSON)
    assert expected("[" * 1025 + "]" * 1025) == Error(ErrorCode.BAD_JSON)
    assert expected("[" * 1024 + "]" * 1024) == Error(ErrorCode.BAD_EVENT)
    assert expected('{"type":"message","text":1e400}') == Error(ErrorCode.BAD_JSON)
    assert expected('{"type":"message","text":" \\n "}') == Error(ErrorCode.EMPTY_TEXT)
    assert expected(RawText(b"\xff")) == Close(CloseCode.INVALID_DATA)


# A real server, with a smaller budget: every frame crosses TLS, uvicorn and the endpoint.


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    command = chatroom_command(port, folder / "cert.pem", folder / "key.pem")
    with run_server(command, port, folder, env={"CHAT_RATE_LIMIT": "0", "CHAT_CLOSE_TIMEOUT": "1"}) as server:
        yield server
    log = server.read_log()
    assert "Traceback" not in log
    assert "ERROR" not in log


class LoopThread:
    """An event loop in a thread of its own, for asyncio clients that outlive one example.

    Not websockets' sync client: its reader thread and its writer share one SSL socket, and
    over TLS 1.3 its opening handshake now and then never gets its answer (seen here about
    once in 500 connections; never with TLS 1.2, never with the asyncio client).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Observer:
    """A connection that reads everything as it comes, so it never falls behind."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.events: list[Any] = []
        self.reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.connection:
                assert isinstance(frame, str)
                self.events.extend(json.loads(line) for line in frame.split("\n"))

    async def close(self) -> None:
        await self.connection.close()
        await self.reading


@pytest.fixture(scope="module")
def clients() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture(scope="module")
def observer(server: Server, clients: LoopThread) -> Iterator[Observer]:
    context = client_context(server.log.parent / "cert.pem")

    async def start() -> Observer:
        return Observer(await connect(server.url("name=observer"), ssl=context, open_timeout=10))

    observer = clients.run(start())
    yield observer
    clients.run(observer.close())
    assert observer.events[0]["type"] == "welcome"
    for event in observer.events[1:]:
        check_event(event, "lobby")


def on_the_wire(frame: Sent) -> RawText | Binary:
    """A frame as the server receives it: a `str` with lone surrogates is not UTF-8 any more."""
    return RawText(frame.encode("utf-8", "surrogatepass")) if isinstance(frame, str) else frame


async def answer_of(connection: ClientConnection) -> Answer:
    try:
        frame = await asyncio.wait_for(connection.recv(), 10)
    except ConnectionClosed:
        assert connection.close_code is not None
        return Close(CloseCode(connection.close_code))
    assert isinstance(frame, str)
    lines = frame.split("\n")
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    if event["type"] == "error":
        return Error(ErrorCode(event["code"]))
    assert event["type"] == "message", event
    return Echo(event["text"])


async def fuzz(server: Server, name: str, frames: list[RawText | Binary]) -> list[Answer]:
    """Send each frame (bytes as they are, UTF-8 or not) and read its answer, until a close."""
    context = client_context(server.log.parent / "cert.pem")
    answers: list[Answer] = []
    async with connect(server.url(f"name={name}"), ssl=context, open_timeout=10, max_size=None) as fuzzer:
        assert json.loads(await asyncio.wait_for(fuzzer.recv(), 10))["type"] == "welcome"
        for frame in frames:
            await fuzzer.send(frame.data, text=isinstance(frame, RawText))
            answers.append(await answer_of(fuzzer))
            if isinstance(answers[-1], Close):
                break
    return answers


fuzzer_number = iter(range(1_000_000))


@settings(max_examples=budget(100), suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=5))
@example([RawText(b'{"type":"message","text":"\xed\xa0\x80"}')])  # a lone surrogate, UTF-8 encoded
@example([RawText(b'{"type":"message","text":"hi"}\xff')])
@example(["\ud800"])
def test_a_real_server_answers_every_frame_as_documented(
    server: Server, clients: LoopThread, observer: Observer, sent: list[Sent]
) -> None:
    wire = [on_the_wire(frame) for frame in sent]
    answers = clients.run(fuzz(server, f"f{next(fuzzer_number)}", wire))
    assert answers == [expected(frame) for frame in wire[: len(answers)]]
    assert isinstance(answers[-1], Close) or len(answers) == len(sent)
