"""Room life across two apps on one real Redis, as two servers on two hosts: every event
crosses, and the app that only saw the changes live welcomes, resumes and pages with them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from app.web.accounts import PLAIN_COOKIE
from tests.support.web import Event, Events, another_browser, app_with, chat

PASSWORD = "correct horse battery"  # noqa: S105 - a test account's


@pytest.fixture
def two_apps(redis_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(app_with(backend_url=redis_url, presence_ttl=1.0, welcome_history=3, rate_limit=0)) as first,
        TestClient(app_with(backend_url=redis_url, presence_ttl=1.0, welcome_history=3, rate_limit=0)) as second,
    ):
        yield first, second


def said(events: Events, text: str, *others: Events) -> Event:
    events.say(text)
    message = events.next_of("message")
    for other in others:
        assert other.next_of("message") == message
    return message


def page_of(events: Events) -> list[Event]:
    events.send({"type": "history", "limit": 100})
    messages: list[Event] = events.next_of("history")["messages"]
    return messages


def test_edits_deletions_and_reactions_cross_and_the_other_app_welcomes_with_them(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    with chat(first, "name=ann&room=den") as ann, chat(second, "name=bob&room=den") as bob:
        *_, edited, deleted, reacted = [said(ann, text, bob) for text in ("a", "b", "helo", "oops", "nice")]
        ann.send({"type": "edit", "id": edited["id"], "text": "hello"})
        edit = bob.next_of("edit")
        assert edit == ann.next_of("edit")
        ann.send({"type": "delete", "id": deleted["id"]})
        assert bob.next_of("delete") == {"type": "delete", "room": "den", "id": deleted["id"]}
        bob.send({"type": "react", "id": reacted["id"], "emoji": "🎉"})  # from the other app
        assert ann.next_of("reactions") == bob.next_of("reactions")
        now = [
            {**edited, "text": "hello", "edited_ts": edit["edited_ts"]},
            {**deleted, "text": "", "deleted": True},
            {**reacted, "reactions": {"🎉": 1}},
        ]
        last = said(bob, "the last", ann)
        assert page_of(bob)[2:5] == now  # the app that saw them live pages with them
        with chat(second, "name=cy&room=den") as cy:  # its welcome: the latest three, as they are now
            assert cy.welcome["history"] == [*now[1:], last]
        epoch = bob.welcome["epoch"]
        with chat(second, f"name=dee&room=den&since={edited['id'] - 1}&epoch={epoch}") as dee:
            assert dee.welcome["history"][:3] == now  # and resumes with them
            assert dee.welcome["history"][-1] == last
            assert dee.welcome["gap"] is False
        found = second.get("/api/rooms/den/search", params={"q": "hello"}).json()
        assert found == {"messages": [now[0]], "more": False}
        assert second.get("/api/rooms/den/search", params={"q": "oops"}).json()["messages"] == []


def test_typing_crosses_to_the_other_app_and_not_back(two_apps: tuple[TestClient, TestClient]) -> None:
    first, second = two_apps
    with chat(first, "name=ann&room=den") as ann, chat(second, "name=bob&room=den") as bob:
        assert ann.next() == {"type": "join", "name": "bob", "guest": True}
        ann.send({"type": "typing"})
        assert bob.next_of("typing") == {"type": "typing", "name": "ann"}
        ann.say("marker")
        heard: list[Event] = []
        ann.next_of("message", heard)
        assert heard == []  # not its own typing, not from Redis either
        with chat(second, "name=cy&room=den") as cy:
            assert [event["type"] for event in cy.welcome["history"]] == ["message"]


def test_a_read_position_follows_the_account_to_the_other_app(two_apps: tuple[TestClient, TestClient]) -> None:
    first, second = two_apps
    assert first.post("/api/account", json={"name": "Ann", "password": PASSWORD}).status_code == 201
    second.cookies.set(PLAIN_COOKIE, first.cookies[PLAIN_COOKIE])  # the same browser, on another host
    with chat(another_browser(first), "name=bob&room=den") as bob:
        messages = [said(bob, f"m{number}") for number in range(3)]
    with chat(first, "room=den") as here:
        here.send({"type": "read", "id": messages[1]["id"]})
        page_of(here)  # handled by now: the first position is written at once
    with chat(second, "room=den") as there:
        assert there.welcome["read"] == messages[1]["id"]
