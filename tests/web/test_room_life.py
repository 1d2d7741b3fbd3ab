"""Room life over the wire, on every backend: edits, deletions, reactions, typing, read
positions and search, as docs/protocol.md describes them, and as welcomes, resumes and
pages return them afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.core.hub import Hub
from app.core.identity import Identity
from app.core.search import SEARCH_BURST
from tests.support.web import Event, Events, another_browser, app_with, chat

PASSWORD = "correct horse battery"  # noqa: S105 - a test account's


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    # A short welcome, so that resuming from before it reads the backend's history.
    with TestClient(app_with(backend_url=backend_url, welcome_history=3, rate_limit=0)) as client:
        yield client


def said(events: Events, text: str, *others: Events) -> Event:
    """Say `text`; its message event, once everyone has it."""
    events.say(text)
    message = events.next_of("message")
    for other in others:
        assert other.next_of("message") == message
    return message


def error_of(events: Events, event: dict[str, Any]) -> str:
    events.send(event)
    error = events.next_of("error")
    assert error["detail"]
    return str(error["code"])


def page_of(events: Events) -> list[Event]:
    events.send({"type": "history", "limit": 100})
    messages: list[Event] = events.next_of("history")["messages"]
    return messages


def register(client: TestClient, name: str) -> TestClient:
    assert client.post("/api/account", json={"name": name, "password": PASSWORD}).status_code == 201
    return client


# Edits


def test_an_author_edits_its_message_and_the_room_sees_the_new_text_then_and_afterwards(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann, chat(client, "name=bob&room=den") as bob:
        first = said(ann, "helo", bob)
        for number in range(4):
            said(ann, f"filler {number}", bob)
        ann.send({"type": "edit", "id": first["id"], "text": "hello"})
        edit = ann.next_of("edit")
        assert bob.next_of("edit") == edit
        assert set(edit) == {"type", "room", "id", "text", "edited_ts"}
        assert (edit["room"], edit["id"], edit["text"]) == ("den", first["id"], "hello")
        assert edit["edited_ts"] >= first["ts"]
        edited = {**first, "text": "hello", "edited_ts": edit["edited_ts"]}
        assert page_of(bob)[0] == edited  # paging
        with chat(client, f"name=cy&room=den&since=0&epoch={ann.welcome['epoch']}") as cy:
            assert cy.welcome["history"][0] == edited  # resuming from before the welcome's messages
            assert cy.welcome["gap"] is False
        ann.send({"type": "edit", "id": first["id"], "text": "hello again"})
        assert bob.next_of("edit")["text"] == "hello again"
    with chat(client, "name=dee&room=den") as dee:  # a process opening the room again reads it
        assert [message["text"] for message in dee.welcome["history"]] == [f"filler {n}" for n in range(1, 4)]
        assert page_of(dee)[0]["text"] == "hello again"


def test_a_recent_message_edited_is_in_the_welcome_as_it_is_now(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann:
        message = said(ann, "typo")
        ann.send({"type": "edit", "id": message["id"], "text": "no typo"})
        edit = ann.next_of("edit")
        with chat(client, "name=bob&room=den") as bob:
            assert bob.welcome["history"] == [{**message, "text": "no typo", "edited_ts": edit["edited_ts"]}]


def test_only_the_author_edits_and_only_within_the_window(backend_url: str) -> None:
    with (
        TestClient(app_with(backend_url=backend_url, edit_window=0.2)) as client,
        chat(client, "name=ann&room=den") as ann,
        chat(client, "name=bob&room=den") as bob,
    ):
        message = said(ann, "mine", bob)
        assert error_of(bob, {"type": "edit", "id": message["id"], "text": "yours?"}) == "forbidden"
        assert error_of(ann, {"type": "edit", "id": message["id"] + 100, "text": "x"}) == "not_found"
        assert error_of(ann, {"type": "edit", "id": message["id"], "text": "  "}) == "empty_text"
        assert error_of(ann, {"type": "edit", "id": "1", "text": "x"}) == "bad_event"
        assert error_of(ann, {"type": "edit", "id": message["id"]}) == "bad_event"
        time.sleep(0.3)  # the window, which is time itself, passes
        assert error_of(ann, {"type": "edit", "id": message["id"], "text": "too late"}) == "too_late"
        assert page_of(bob)[-1] == message  # unchanged


def test_a_guest_keeps_its_messages_only_while_it_keeps_its_name(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann:
        old = said(ann, "the first ann's")
        with chat(client, "name=ann&room=den", token=ann.welcome["token"]) as back:  # the same guest, back
            back.send({"type": "edit", "id": old["id"], "text": "still mine"})
            assert back.next_of("edit")["text"] == "still mine"
    with chat(client, "name=ann&room=den") as someone:  # the name was free: anyone's
        assert error_of(someone, {"type": "edit", "id": old["id"], "text": "mine now"}) == "forbidden"
        assert error_of(someone, {"type": "delete", "id": old["id"]}) == "forbidden"
        new = said(someone, "the second ann's")
        assert error_of(someone, {"type": "edit", "id": old["id"], "text": "mine now"}) == "forbidden"
        someone.send({"type": "delete", "id": new["id"]})
        assert someone.next_of("delete") == {"type": "delete", "room": "den", "id": new["id"]}


def test_an_account_edits_its_messages_from_any_tab(client: TestClient) -> None:
    register(client, "Ann")
    with chat(client, "room=den") as tab:
        message = said(tab, "from the first tab")
    with chat(client, "room=den") as other_tab:
        other_tab.send({"type": "edit", "id": message["id"], "text": "from the second"})
        assert other_tab.next_of("edit")["text"] == "from the second"
    with chat(another_browser(client), "name=bob&room=den") as bob:
        assert error_of(bob, {"type": "delete", "id": message["id"]}) == "forbidden"


# Deletions


def test_a_deleted_message_is_a_tombstone_in_welcomes_resumes_and_pages(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann, chat(client, "name=bob&room=den") as bob:
        gone = said(ann, "regret", bob)
        for number in range(4):
            said(bob, f"after {number}", ann)
        assert error_of(bob, {"type": "delete", "id": gone["id"]}) == "forbidden"
        ann.send({"type": "delete", "id": gone["id"]})
        assert ann.next_of("delete") == bob.next_of("delete") == {"type": "delete", "room": "den", "id": gone["id"]}
        tombstone = {**gone, "text": "", "deleted": True}
        assert page_of(bob)[0] == tombstone
        with chat(client, f"name=cy&room=den&since=0&epoch={ann.welcome['epoch']}") as cy:
            assert cy.welcome["history"][0] == tombstone
            assert cy.welcome["gap"] is False  # no hole where it was
        assert error_of(ann, {"type": "delete", "id": gone["id"]}) == "not_found"
        assert error_of(ann, {"type": "edit", "id": gone["id"], "text": "back"}) == "not_found"
        assert error_of(bob, {"type": "react", "id": gone["id"], "emoji": "👍"}) == "not_found"
        latest = said(ann, "the latest", bob)
        ann.send({"type": "delete", "id": latest["id"]})
        bob.next_of("delete")
        with chat(client, "name=dee&room=den") as dee:
            assert dee.welcome["history"][-1] == {**latest, "text": "", "deleted": True}


# Reactions


def test_reactions_toggle_and_count_each_person_once(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann, chat(client, "name=bob&room=den") as bob:
        message = said(ann, "react to me", bob)

        def react(events: Events, emoji: str) -> dict[str, int]:
            events.send({"type": "react", "id": message["id"], "emoji": emoji})
            event = ann.next_of("reactions")
            assert bob.next_of("reactions") == event
            assert (event["room"], event["id"]) == ("den", message["id"])
            counts: dict[str, int] = event["reactions"]
            return counts

        assert react(bob, "👍") == {"👍": 1}
        assert react(ann, "👍") == {"👍": 2}
        assert react(ann, "❤") == {"👍": 2, "❤️": 1}  # with or without the presentation selector
        assert react(bob, "👍") == {"👍": 1, "❤️": 1}  # bob's again: taken back
        assert error_of(bob, {"type": "react", "id": message["id"], "emoji": "🦄"}) == "bad_event"
        assert error_of(bob, {"type": "react", "id": message["id"] + 9, "emoji": "👍"}) == "not_found"
        with chat(client, "name=cy&room=den") as cy:
            assert cy.welcome["history"][-1]["reactions"] == {"👍": 1, "❤️": 1}
        assert react(ann, "❤️") == {"👍": 1}
        assert react(ann, "👍") == {}
        assert "reactions" not in page_of(bob)[-1]  # none left: as if there never were any


# Typing


def test_typing_reaches_the_others_and_never_the_typist_nor_a_newcomer(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann, chat(client, "name=bob&room=den") as bob:
        ann.send({"type": "typing"})
        assert bob.next_of("typing") == {"type": "typing", "name": "ann"}
        ann.send({"type": "typing", "stop": True})
        assert bob.next_of("typing") == {"type": "typing", "name": "ann", "stop": True}
        assert error_of(ann, {"type": "typing", "stop": "yes"}) == "bad_event"
        ann.say("after typing")
        bob_heard: list[Event] = []
        bob.next_of("message", bob_heard)
        assert bob_heard == []  # nothing more than the typing and its stop
        with chat(client, "name=cy&room=den") as cy:
            assert [event["type"] for event in cy.welcome["history"]] == ["message"]
        assert [event["type"] for event in page_of(ann)] == ["message"]


def test_the_typist_hears_nothing_of_its_own_typing(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann, chat(client, "name=bob&room=den") as bob:
        ann.send({"type": "typing"})
        bob.next_of("typing")
        ann.say("marker")  # everything sent to ann before its echo arrives before it
        heard: list[Event] = []
        ann.next_of("message", heard)
        assert [event for event in heard if event["type"] == "typing"] == []
        assert heard == [{"type": "join", "name": "bob", "guest": True}]


# Read positions


def test_an_account_finds_where_it_read_in_any_tab_and_a_guest_has_nothing_kept(client: TestClient) -> None:
    register(client, "Ann")
    with chat(another_browser(client), "name=bob&room=den") as bob:
        messages = [said(bob, f"m{number}") for number in range(3)]
        with chat(client, "room=den") as tab:
            assert "read" not in tab.welcome  # nothing read yet
            tab.send({"type": "read", "id": messages[1]["id"]})
            tab.send({"type": "read", "id": messages[0]["id"]})  # an older tab's: the highest stays
            page_of(tab)  # handled by now
        with chat(client, "room=den") as again:
            assert again.welcome["read"] == messages[1]["id"]
            again.send({"type": "read", "id": 10**9})  # beyond the room: what the room has
            page_of(again)
        with chat(client, "room=den") as later:
            assert later.welcome["read"] == messages[2]["id"]
            assert error_of(later, {"type": "read", "id": 0}) == "bad_event"
        bob.send({"type": "read", "id": messages[2]["id"]})  # a guest: accepted, kept nowhere
        page_of(bob)
        with chat(another_browser(client), "name=bob2&room=den") as other:
            assert "read" not in other.welcome


# Search


def search(client: TestClient, room: str, **query: Any) -> Any:
    return client.get(f"/api/rooms/{room}/search", params=query)


def test_search_finds_messages_as_they_are_now_newest_first_in_pages(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann:
        apples = [said(ann, f"apple number {number}") for number in range(25)]
        said(ann, "a pear")
        ann.send({"type": "edit", "id": apples[24]["id"], "text": "banana now"})
        ann.next_of("edit")
        ann.send({"type": "delete", "id": apples[23]["id"]})
        ann.next_of("delete")
    answer = search(client, "den", q="APPLE")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert [message["id"] for message in body["messages"]] == [m["id"] for m in reversed(apples[:23])][:20]
    assert body["messages"][0] == apples[22]
    assert body["more"] is True
    rest = search(client, "den", q="apple", before=body["messages"][-1]["id"]).json()
    assert [message["id"] for message in rest["messages"]] == [m["id"] for m in reversed(apples[:3])]
    assert rest["more"] is False
    banana = search(client, "den", q="banana").json()["messages"]
    assert [(m["id"], m["text"], "edited_ts" in m) for m in banana] == [(apples[24]["id"], "banana now", True)]
    assert search(client, "den", q="apple 7 number").json()["messages"] == [apples[7]]  # every word
    assert search(client, "Den", q="pear").json()["messages"][0]["text"] == "a pear"  # the room as cleaned
    assert search(client, "elsewhere", q="apple").json() == {"messages": [], "more": False}


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({}, "bad_query"),
        ({"q": "  "}, "bad_query"),
        ({"q": "?!"}, "bad_query"),
        ({"q": "x" * 201}, "bad_query"),
        ({"q": " ".join("abcdefghi")}, "bad_query"),
        ({"q": "x", "before": "0"}, "bad_request"),
        ({"q": "x", "before": "ten"}, "bad_request"),
    ],
)
def test_a_search_that_cannot_be_made_says_why(client: TestClient, query: dict[str, str], error: str) -> None:
    answer = search(client, "den", **query)
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert answer.json()["detail"]


def test_searches_are_limited_per_address(backend_url: str) -> None:
    with TestClient(app_with(backend_url=backend_url)) as client:
        for _ in range(SEARCH_BURST):
            assert search(client, "den", q="x").status_code == 200
        refused = search(client, "den", q="x")
        assert refused.status_code == 429
        assert refused.json()["error"] == "throttled"
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/api/rooms/den/messages", params={"around": "1"}).status_code == 429


def test_only_who_may_read_a_room_searches_it(backend_url: str) -> None:
    with TestClient(app_with(backend_url=backend_url, guests="off")) as client:
        assert search(client, "den", q="x").status_code == 401
        register(client, "Ann")
        assert search(client, "den", q="x").status_code == 200
        hub: Hub = client.app_state["hub"]

        async def members_only(room: str, identity: Identity | None, address: str | None) -> bool:
            return room != "secret" or (identity is not None and identity.key == "bob")

        hub.may_read.append(members_only)
        assert search(client, "secret", q="x").status_code == 403
        assert client.get("/api/rooms/secret/messages", params={"around": "1"}).status_code == 403
        assert search(client, "den", q="x").status_code == 200
    with TestClient(app_with(backend_url=backend_url)) as client:
        assert search(client, "a\u202eb", q="x").json()["error"] == "bad_room"


def test_the_messages_around_one_a_search_found_read_it_in_context(client: TestClient) -> None:
    with chat(client, "name=ann&room=den") as ann:
        messages = [said(ann, f"m{number}") for number in range(30)]
    found = messages[15]
    around = client.get("/api/rooms/den/messages", params={"around": found["id"]})
    assert around.status_code == 200
    assert around.json() == {"messages": messages[5:26]}  # ten before, ten after, oldest first
    assert (
        client.get("/api/rooms/den/messages", params={"around": messages[-1]["id"]}).json()["messages"]
        == (messages[-11:])
    )
    assert client.get("/api/rooms/den/messages").status_code == 400
