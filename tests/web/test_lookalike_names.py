"""Names that look like another, end to end: refused over a real socket, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import CloseCode
from tests.support.web import app_with, chat


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    with TestClient(app_with(backend_url=backend_url)) as client:
        yield client


def refused(client: TestClient, query: str) -> WebSocketDisconnect:
    with pytest.raises(WebSocketDisconnect) as closed, chat(client, query):
        pass
    return closed.value


def test_a_name_online_with_an_invisible_character_added_is_refused(client: TestClient) -> None:
    with chat(client, "name=ann"):
        closed = refused(client, "name=" + quote("ann\ufe07"))  # U+FE07 VARIATION SELECTOR-8
    assert closed.code == CloseCode.INVALID_NAME
    assert "U+FE07" in closed.reason


@pytest.mark.parametrize(
    ("online", "twin"),
    [
        ("ann", "\u0430nn"),  # CYRILLIC SMALL LETTER A
        ("Bob", "\u0412ob"),  # CYRILLIC CAPITAL LETTER VE: a capital that looks like B, as its small letter does not
        ("ANN", "\u0391\u039d\u039d"),  # GREEK CAPITAL LETTERS ALPHA, NU, NU
        ("paypal", "p\u0430yp\u0430l"),
    ],
)
def test_a_name_that_looks_like_a_name_online_is_refused_with_4409(client: TestClient, online: str, twin: str) -> None:
    with chat(client, "name=" + quote(online)) as first:
        closed = refused(client, "name=" + quote(twin))
        assert closed.code == CloseCode.NAME_TAKEN
        first.say("still here")
        assert first.next_of("message")["text"] == "still here"
    with chat(client, "name=" + quote(twin)) as later:  # free once the look-alike left
        assert later.welcome["name"] == twin


@pytest.mark.parametrize(
    "blank",
    [
        "\u3164\u3164\u3164",  # HANGUL FILLER
        "\u2800\u2800",  # BRAILLE PATTERN BLANK
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
        "\u2800 \u3164",
        "\u0301\u0301",  # combining marks with nothing to sit on
    ],
)
def test_a_name_with_nothing_to_see_is_refused_with_4400(client: TestClient, blank: str) -> None:
    closed = refused(client, "name=" + quote(blank))
    assert closed.code == CloseCode.INVALID_NAME


@pytest.mark.parametrize(
    "twin",
    [
        "lobby\ufe07",  # U+FE07 VARIATION SELECTOR-8
        "lob\u200dby",  # ZERO WIDTH JOINER
        "l\u043ebby",  # CYRILLIC SMALL LETTER O
    ],
)
def test_a_room_that_looks_like_another_is_refused_and_opens_no_room(client: TestClient, twin: str) -> None:
    with chat(client, "name=ann&room=lobby"):
        closed = refused(client, "name=bob&room=" + quote(twin))
        assert closed.code == CloseCode.INVALID_NAME
        assert closed.reason.startswith("The room name")
        assert client.get("/api/rooms").json() == {"rooms": [{"room": "lobby", "online": 1}]}


def test_a_look_alike_is_refused_by_another_process_on_the_same_redis(redis_url: str) -> None:
    with (
        TestClient(app_with(backend_url=redis_url)) as first,
        TestClient(app_with(backend_url=redis_url)) as second,
        chat(first, "name=ann"),
    ):
        closed = refused(second, "name=" + quote("\u0430nn"))  # the second process has nobody of its own
        assert closed.code == CloseCode.NAME_TAKEN
