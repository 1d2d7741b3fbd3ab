"""The chat over TestClient: fan-out, message fields, history, rooms, names and presence."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import SUBPROTOCOL, TOKEN_SUBPROTOCOL, CloseCode, resume_subprotocols
from tests.support.web import app_with, chat


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    with TestClient(app_with(backend_url=backend_url)) as client:
        yield client


def test_a_message_reaches_everyone_in_the_room_including_its_sender(client: TestClient) -> None:
    with chat(client, "name=ann") as ann, chat(client, "name=bob") as bob, chat(client, "name=cy") as cy:
        bob.say("hello, room")
        for events in (ann, bob, cy):
            message = events.next_of("message")
            assert message["text"] == "hello, room"
            assert message["name"] == "bob"


def test_a_message_carries_id_room_name_text_and_server_time(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann:
        before = time.time() * 1000
        ann.say("first")
        ann.say("second")
        first, second = ann.next_of("message"), ann.next_of("message")
        after = time.time() * 1000
    assert set(first) == {"type", "id", "room", "name", "text", "guest", "ts"}  # a guest's says so
    assert (first["room"], first["name"], first["text"], first["guest"]) == ("den", "ann", "first", True)
    assert isinstance(first["id"], int)
    assert second["id"] > first["id"]
    assert before - 1 <= first["ts"] <= second["ts"] <= after + 1


def test_text_is_kept_as_sent_newlines_and_markup_included(client: TestClient) -> None:
    text = 'line one\nline two <img src=x onerror=alert(1)> "quoted" \u00e9\u4e2d'
    with chat(client, "name=ann") as ann:
        ann.say(text)
        assert ann.next_of("message")["text"] == text


def test_a_newcomer_gets_the_history_oldest_first_in_its_welcome_frame(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        for number in range(5):
            ann.say(f"message {number}")
        for _ in range(5):
            ann.next_of("message")
        with chat(client, "name=bob") as bob:
            history = bob.welcome["history"]
            assert bob.frames == 1
    assert [message["text"] for message in history] == [f"message {number}" for number in range(5)]
    assert [message["type"] for message in history] == ["message"] * 5


def test_the_welcome_replays_only_the_latest_messages(backend_url: str) -> None:
    with TestClient(app_with(backend_url=backend_url, history_limit=8, welcome_history=3)) as client:
        with chat(client, "name=ann") as ann:
            for number in range(10):
                ann.say(str(number))
            for _ in range(10):
                ann.next_of("message")
        with chat(client, "name=bob") as bob:
            assert [message["text"] for message in bob.welcome["history"]] == ["7", "8", "9"]


def test_the_welcome_names_the_epoch_of_the_history(backend_url: str) -> None:
    with (
        TestClient(app_with(backend_url=backend_url)) as client,
        chat(client, "name=ann") as ann,
        chat(client, "name=bob&room=other") as bob,
    ):
        assert isinstance(ann.welcome["epoch"], str)
        assert ann.welcome["epoch"]
        assert ann.welcome["epoch"] == bob.welcome["epoch"]
    with TestClient(app_with(backend_url=backend_url)) as restarted, chat(restarted, "name=ann") as again:
        if backend_url == "memory://":
            assert again.welcome["epoch"] != ann.welcome["epoch"]  # memory:// forgot everything
        else:
            assert again.welcome["epoch"] == ann.welcome["epoch"]  # the history and its ids live on


def test_rooms_are_isolated(client: TestClient) -> None:
    with chat(client, "name=ann&room=red") as ann, chat(client, "name=bob&room=blue") as bob:
        ann.say("in red")
        bob.say("in blue")
        assert ann.next_of("message")["text"] == "in red"
        assert bob.next_of("message")["text"] == "in blue"
        with chat(client, "name=cy&room=red") as cy:
            assert [message["text"] for message in cy.welcome["history"]] == ["in red"]
            assert cy.welcome["online"] == ["ann", "cy"]


def test_room_defaults_to_lobby_and_room_names_ignore_case(client: TestClient) -> None:
    with chat(client, "name=ann") as ann, chat(client, "name=bob&room=LOBBY") as bob:
        assert ann.welcome["room"] == bob.welcome["room"] == "lobby"
        assert bob.welcome["online"] == ["ann", "bob"]


def test_without_a_name_the_server_assigns_a_guest_name(client: TestClient) -> None:
    with chat(client) as first, chat(client) as second:
        names = {first.welcome["name"], second.welcome["name"]}
        assert len(names) == 2
        assert all(name.startswith("guest-") for name in names)


def test_names_are_trimmed_and_normalised(client: TestClient) -> None:
    with chat(client, "name=%20%20%EF%BC%A1nn%20") as ann:  # two spaces, a full-width A, "nn", a space
        assert ann.welcome["name"] == "Ann"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("name=", "empty"),
        ("name=%20%20", "empty"),
        ("name=" + "x" * 25, "at most 24"),
        ("name=ann%07", "printable"),
        ("name=%E2%80%AEnna", "printable"),  # U+202E RIGHT-TO-LEFT OVERRIDE
        ("name=a%E2%80%8Bb", "printable"),  # U+200B ZERO WIDTH SPACE
        ("name=ann&room=", "empty"),
        ("name=ann&room=" + "r" * 25, "at most 24"),
        ("name=ann&room=a%0Ab", "printable"),
    ],
)
def test_invalid_names_are_refused_with_4400(client: TestClient, query: str, why: str) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, chat(client, query):
        pass
    assert refused.value.code == CloseCode.INVALID_NAME
    assert why in refused.value.reason


@pytest.mark.parametrize("twin", ["ann", "ANN", "%EF%BD%81nn"])  # the same, another case, a full-width a
def test_a_name_already_online_in_the_room_is_refused_with_4409(client: TestClient, twin: str) -> None:
    with chat(client, "name=ann") as ann:
        with pytest.raises(WebSocketDisconnect) as refused, chat(client, f"name={twin}"):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
        with chat(client, f"name={twin}&room=elsewhere") as elsewhere:  # other rooms are other rooms
            assert elsewhere.welcome["room"] == "elsewhere"
        ann.say("still here")
        assert ann.next_of("message")["text"] == "still here"


def test_a_reconnection_with_the_token_of_the_welcome_takes_the_name_over(client: TestClient) -> None:
    with chat(client, "name=bob") as bob, chat(client, "name=ann") as ann:
        assert bob.next_of("join")["name"] == "ann"
        guessed = secrets.token_urlsafe(16)
        with pytest.raises(WebSocketDisconnect) as refused, chat(client, "name=ann", token=guessed):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
        with chat(client, "name=ANN", token=ann.welcome["token"]) as back:
            accepted: str | None = back.websocket.accepted_subprotocol  # typed None by Starlette
            assert accepted == SUBPROTOCOL
            assert back.welcome["name"] == "ann"  # as the others know it
            assert back.welcome["online"] == ["bob", "ann"]
            with pytest.raises(WebSocketDisconnect) as replaced:
                ann.next()
            assert replaced.value.code == CloseCode.REPLACED
            back.say("back")
            assert bob.next() == back.next()  # the message: nobody left, nobody joined


@pytest.mark.parametrize(
    "offered",
    [None, [], ["chatroom"], ["chatroom.token.guessed"], ["other", "chatroom"], ["chatroom.tokens", "chatroom"]],
)
def test_the_server_answers_with_the_chatroom_subprotocol_whenever_it_is_offered(
    client: TestClient, offered: list[str] | None
) -> None:
    with client.websocket_connect("/ws?name=ann", offered) as websocket:
        assert json.loads(websocket.receive_text())["type"] == "welcome"
        accepted: str | None = websocket.accepted_subprotocol
        assert accepted == (SUBPROTOCOL if offered and SUBPROTOCOL in offered else None)


@pytest.mark.parametrize(
    "query", ["name=ann&token={live}", "token={live}&name=ANN", "name=ann&token=", "token=x&token=y", "room=d&token=z"]
)
def test_a_token_in_the_url_is_refused_with_4400_and_takes_nothing_over(client: TestClient, query: str) -> None:
    """Even a token that would match: the URL, with it, is in the access log already."""
    with chat(client, "name=ann") as ann:
        live = ann.welcome["token"]
        with pytest.raises(WebSocketDisconnect) as refused, chat(client, query.format(live=live)):
            pass
        assert refused.value.code == CloseCode.INVALID_NAME
        assert "Sec-WebSocket-Protocol" in refused.value.reason
        ann.say("still mine")
        assert ann.next_of("message")["name"] == "ann"
        with chat(client, "name=ann", token=live) as back:  # and the token is still good, once
            assert back.welcome["name"] == "ann"


def test_two_tokens_offered_at_once_are_refused_with_4400(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        offered = [*resume_subprotocols(ann.welcome["token"]), TOKEN_SUBPROTOCOL + "another"]
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws?name=ann", offered) as ws:
            ws.receive_text()
        assert refused.value.code == CloseCode.INVALID_NAME
        assert "one chatroom.token.TOKEN" in refused.value.reason


def test_a_name_is_free_again_once_its_owner_left(client: TestClient) -> None:
    with chat(client, "name=ann"):
        pass
    with chat(client, "name=ann") as again:
        assert again.welcome["name"] == "ann"


def test_presence_welcome_lists_who_is_online_and_others_hear_joins_and_leaves(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        assert ann.welcome["online"] == ["ann"]
        with chat(client, "name=bob") as bob:
            assert bob.welcome["online"] == ["ann", "bob"]
            assert ann.next() == {"type": "join", "name": "bob", "guest": True}
            bob.say("hi")  # bob hears no join of his own: his first event after the welcome is his echo
            assert bob.next()["type"] == "message"
        assert ann.next_of("message")["text"] == "hi"
        assert ann.next() == {"type": "leave", "name": "bob"}
