"""Every limit and its answer: error events that keep the connection open, close codes that end it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import CloseCode
from tests.support.web import app_with, chat


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app_with()) as client:
        yield client


def test_a_frame_over_4_kib_closes_with_1009(client: TestClient) -> None:
    with chat(client, "name=ann") as ann, chat(client, "name=bob") as bob:
        text = "é" * 2100  # 2100 characters, 4200 bytes: the limit counts bytes
        ann.say(text)
        with pytest.raises(WebSocketDisconnect) as closed:
            ann.next_of("message")
        assert closed.value.code == CloseCode.MESSAGE_TOO_BIG
        assert bob.next() == {"type": "leave", "name": "ann"}


def test_a_frame_of_exactly_4_kib_is_accepted(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        envelope = len(json.dumps({"type": "message", "text": ""}, separators=(",", ":")))
        text = "x" * (4096 - envelope)
        ann.websocket.send_text(json.dumps({"type": "message", "text": text}, separators=(",", ":")))
        assert ann.next_of("message")["text"] == text


def test_a_binary_frame_closes_with_1003(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        ann.websocket.send_bytes(b'{"type":"message","text":"hi"}')
        with pytest.raises(WebSocketDisconnect) as closed:
            ann.next()
        assert closed.value.code == CloseCode.UNSUPPORTED_DATA


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ('{"type":"message","text":"unterminated', "bad_json"),
        ('"a string"', "bad_event"),
        ("[1, 2]", "bad_event"),
        ('{"text":"no type"}', "bad_event"),
        ('{"type":"message"}', "bad_event"),
        ('{"type":"message","text":42}', "bad_event"),
        ('{"type":"message","text":["a"]}', "bad_event"),
        ('{"type":"shout","text":"hi"}', "unknown_type"),
        ('{"type":"message","text":""}', "empty_text"),
        ('{"type":"message","text":" \\n\\t "}', "empty_text"),
        ('{"type":"message","text":"\\ud800"}', "bad_json"),  # a lone surrogate is not text
        ("[" * 2000 + "]" * 2000, "bad_json"),  # nesting deeper than the parser allows
    ],
)
def test_bad_events_get_an_error_event_and_the_connection_stays_open(client: TestClient, frame: str, code: str) -> None:
    with chat(client, "name=ann") as ann, chat(client, "name=bob") as bob:
        ann.websocket.send_text(frame)
        error = ann.next_of("error")
        assert error["code"] == code
        assert isinstance(error["detail"], str)
        assert error["detail"]
        ann.say("still here")
        assert ann.next_of("message")["text"] == "still here"
        assert bob.next_of("message")["text"] == "still here"  # nothing of the bad frame reached bob


def test_over_the_rate_limit_a_message_is_refused_and_not_broadcast() -> None:
    with (
        TestClient(app_with(rate_limit=0.001, rate_burst=3)) as client,
        chat(client, "name=ann") as ann,
        chat(client, "name=bob") as bob,
    ):
        for number in range(4):
            ann.say(f"m{number}")
        assert [ann.next_of("message")["text"] for _ in range(3)] == ["m0", "m1", "m2"]
        error = ann.next_of("error")
        assert error["code"] == "rate_limited"
        assert [bob.next_of("message")["text"] for _ in range(3)] == ["m0", "m1", "m2"]
        bob.websocket.send_text(json.dumps({"type": "message", "text": "from bob"}))
        assert bob.next_of("message")["text"] == "from bob"  # not m3


def test_the_default_rate_is_5_a_second_with_bursts_of_10(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        for number in range(11):
            ann.say(str(number))
        assert [ann.next_of("message")["text"] for _ in range(10)] == [str(number) for number in range(10)]
        assert ann.next_of("error")["code"] == "rate_limited"


def test_persistent_flooding_closes_with_1008() -> None:
    with (
        TestClient(app_with(rate_limit=0.001, rate_burst=1, flood_strikes=5)) as client,
        chat(client, "name=ann") as ann,
    ):
        for number in range(10):
            ann.say(str(number))
        events = [ann.next() for _ in range(6)]  # one echo, then an error for each of five strikes
        assert [event["type"] for event in events] == ["message"] + ["error"] * 5
        with pytest.raises(WebSocketDisconnect) as closed:
            ann.next()
        assert closed.value.code == CloseCode.POLICY_VIOLATION


def test_the_rate_limit_can_be_switched_off() -> None:
    with TestClient(app_with(rate_limit=0)) as client, chat(client, "name=ann") as ann:
        for number in range(200):
            ann.say(str(number))
        assert [ann.next_of("message")["text"] for _ in range(200)] == [str(number) for number in range(200)]


def test_a_handshake_without_origin_is_allowed(client: TestClient) -> None:
    with chat(client, "name=cli") as cli:
        assert cli.welcome["name"] == "cli"


def test_a_same_origin_handshake_is_allowed(client: TestClient) -> None:
    with chat(client, "name=ann", origin="http://testserver") as ann:
        assert ann.welcome["name"] == "ann"


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://testserver.evil.example", "http://testserver:8080", "null", "::"]
)
def test_a_cross_site_handshake_is_refused(client: TestClient, origin: str) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, chat(client, "name=ann", origin=origin):
        pass
    assert refused.value.code == CloseCode.POLICY_VIOLATION


def test_origins_listed_in_allowed_origins_are_allowed() -> None:
    app = app_with(allowed_origins=("https://chat.example.org", "http://localhost:3000"))
    with TestClient(app) as client:
        with chat(client, "name=ann", origin="https://CHAT.example.org:443") as ann:
            assert ann.welcome["name"] == "ann"
        with chat(client, "name=bob", origin="http://localhost:3000") as bob:
            assert bob.welcome["name"] == "bob"
        with pytest.raises(WebSocketDisconnect), chat(client, "name=cy", origin="https://other.example.org"):
            pass


def test_malformed_frames_count_toward_the_rate_limit_and_flooding_with_them_closes_with_1008() -> None:
    with (
        TestClient(app_with(rate_limit=0.001, rate_burst=3, flood_strikes=5)) as client,
        chat(client, "name=ann") as ann,
        chat(client, "name=bob") as bob,
    ):
        for _ in range(20):
            ann.websocket.send_text("not json")
        events = [ann.next() for _ in range(8)]
        assert [event["code"] for event in events] == ["bad_json"] * 3 + ["rate_limited"] * 5
        with pytest.raises(WebSocketDisconnect) as closed:
            ann.next()
        assert closed.value.code == CloseCode.POLICY_VIOLATION
        assert bob.next() == {"type": "leave", "name": "ann"}
