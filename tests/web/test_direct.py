"""Direct messages, buddy lists, away messages and blocks over the WebSocket, on every backend:
what two accounts exchange, on every connection of each, resumed without loss; who sees
whom; what guests and strangers get."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.core import messenger
from tests.support.web import Event, Events, another_browser, app_with, chat

PASSWORD = "correct horse battery"  # noqa: S105 - the test accounts'


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    with TestClient(app_with(backend_url=backend_url)) as client:
        yield client


def account(client: TestClient, name: str) -> TestClient:
    """A browser of its own, signed in to a new account called `name`."""
    browser = another_browser(client)
    assert browser.post("/api/account", json={"name": name, "password": PASSWORD}).status_code == 201
    return browser


def dm(events: Events, to: str, text: str) -> None:
    events.send({"type": "dm", "to": to, "text": text})


def until(events: Events, kind: str) -> tuple[Event, list[Event]]:
    """The next event of type `kind`, and the direct messages before it."""
    skipped: list[Event] = []
    found = events.next_of(kind, skipped)
    return found, [event for event in skipped if event["type"] == "dm"]


def texts(events: list[Event]) -> list[str]:
    return [event["text"] for event in events]


def test_a_direct_message_reaches_both_accounts_and_nobody_else(client: TestClient) -> None:
    ann, bob, cy = account(client, "Ann"), account(client, "Bob"), account(client, "Cy")
    with chat(ann, "room=lobby") as a, chat(bob, "room=den") as b, chat(cy, "room=lobby") as c:
        dm(a, "bob", "hi bob")  # any spelling of the name
        sent = a.next_of("dm")
        assert sent.keys() == {"type", "id", "from", "to", "text", "ts"}
        assert (sent["id"], sent["from"], sent["to"], sent["text"]) == (1, "Ann", "Bob", "hi bob")
        assert type(sent["ts"]) is int
        assert b.next_of("dm") == sent  # the same event, byte for byte as JSON
        dm(b, "Ann", "hello ann")
        answer = b.next_of("dm")
        assert (answer["id"], answer["from"], answer["to"]) == (2, "Bob", "Ann")
        assert a.next_of("dm") == answer
        c.say("anyone?")
        message, missed = until(c, "message")
        assert message["text"] == "anyone?"
        assert missed == []  # cy, in ann's room, saw nothing of it


def test_every_connection_of_both_accounts_gets_each_message_once_whichever_room(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    with (
        chat(ann, "room=lobby") as a1,
        chat(ann, "room=den") as a2,
        chat(bob, "room=lobby") as b1,
        chat(bob, "room=attic") as b2,
    ):
        for number in range(3):
            dm(a1, "Bob", f"from the lobby {number}")
        b2_seen = [b2.next_of("dm") for _ in range(3)]
        dm(b2, "Ann", "from the attic")  # after those, which it saw: no race between tabs
        b2_seen.append(b2.next_of("dm"))
        dm(a2, "Bob", "the end")
        expected = [*(f"from the lobby {number}" for number in range(3)), "from the attic", "the end"]
        for events in (a1, a2, b1, b2):
            seen = b2_seen[:] if events is b2 else []
            while not seen or seen[-1]["text"] != "the end":
                seen.append(events.next_of("dm"))
            assert [event["id"] for event in seen] == [1, 2, 3, 4, 5]
            assert texts(seen) == expected
            events.send({"type": "dm_history", "with": "Bob" if events in (a1, a2) else "Ann", "limit": 1})
            page, extra = until(events, "dm_history")
            assert extra == []  # nothing twice
            assert texts(page["messages"]) == ["the end"]


def test_history_pages_back_to_the_first_message(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    with chat(ann) as a, chat(bob) as b:
        for number in range(1, 8):
            dm(a if number % 2 else b, "Bob" if number % 2 else "Ann", f"m{number}")
            a.next_of("dm")
        a.send({"type": "dm_history", "with": "BOB", "limit": 3})
        page, _ = until(a, "dm_history")
        assert page["with"] == "Bob"  # as registered
        assert (texts(page["messages"]), page["more"]) == (["m5", "m6", "m7"], True)
        walked = texts(page["messages"])
        while page["more"]:
            a.send({"type": "dm_history", "with": "Bob", "before": page["messages"][0]["id"], "limit": 3})
            page, _ = until(a, "dm_history")
            walked = texts(page["messages"]) + walked
        assert walked == [f"m{number}" for number in range(1, 8)]
        a.send({"type": "dm_history", "with": "Bob", "after": 2, "before": 6})
        page, _ = until(a, "dm_history")
        assert (texts(page["messages"]), page["more"]) == (["m3", "m4", "m5"], False)


@pytest.mark.parametrize("since", [False, True])
def test_a_reconnection_resumes_every_conversation_without_loss(backend_url: str, since: bool) -> None:
    # A welcome of two messages: resuming the room with `since` waits for the room's history.
    with TestClient(app_with(backend_url=backend_url, welcome_history=2)) as client:
        ann, bob, cy = account(client, "Ann"), account(client, "Bob"), account(client, "Cy")
        with chat(bob) as b, chat(cy) as c:
            with chat(ann) as a:
                for number in range(5):
                    a.say(f"room {number}")
                last_room_id = [a.next_of("message") for _ in range(5)][-1]["id"]
                dm(b, "Ann", "one")
                dm(b, "Ann", "two")
                assert texts([a.next_of("dm"), a.next_of("dm")]) == ["one", "two"]
            dm(b, "Ann", "three")  # while ann is away
            dm(c, "Ann", "a new conversation")
            dm(b, "Ann", "four")
            while b.next_of("dm")["text"] != "four":
                pass
            c.next_of("dm")
            query = f"since={last_room_id}&epoch={a.welcome['epoch']}" if since else ""
            with chat(ann, query) as back:
                conversations = {entry["with"]: entry["last"] for entry in back.welcome["conversations"]}
                assert conversations == {"Bob": 4, "Cy": 1}
                assert back.welcome["conversations"][0]["with"] == "Bob"  # the latest first
                dm(b, "Ann", "five")
                live = back.next_of("dm")
                back.send({"type": "dm_history", "with": "Bob", "after": 2, "before": conversations["Bob"] + 1})
                page, more_live = until(back, "dm_history")
                assert texts(page["messages"]) == ["three", "four"]  # exactly what it missed
                assert texts([live, *more_live]) == ["five"]  # and what came after, once


def test_an_away_account_answers_once_per_conversation_and_away_period(client: TestClient) -> None:
    ann, bob, cy = account(client, "Ann"), account(client, "Bob"), account(client, "Cy")
    with chat(ann) as a, chat(bob, "room=den") as b, chat(cy, "room=attic") as c:
        b.send({"type": "away", "message": "  out for lunch  "})
        assert b.next_of("away") == {"type": "away", "name": "Bob", "message": "out for lunch"}  # in its room
        dm(a, "Bob", "there?")
        mine, reply = a.next_of("dm"), a.next_of("dm")
        assert mine["text"] == "there?"
        assert reply == {
            "type": "dm",
            "id": mine["id"] + 1,
            "from": "Bob",
            "to": "Ann",
            "text": "out for lunch",
            "auto": True,
            "ts": reply["ts"],
        }
        assert [b.next_of("dm"), b.next_of("dm")] == [mine, reply]  # bob sees what was said for him
        dm(a, "Bob", "still there?")
        dm(a, "Bob", "hello?")
        ids = [a.next_of("dm")["id"], a.next_of("dm")["id"]]
        assert ids == [reply["id"] + 1, reply["id"] + 2]  # no other reply in between
        dm(c, "Bob", "hi")  # another conversation gets it once too
        assert texts([c.next_of("dm"), c.next_of("dm")]) == ["hi", "out for lunch"]
        b.send({"type": "back"})
        assert b.next_of("back") == {"type": "back", "name": "Bob"}
        b.send({"type": "away"})  # a new period, with the default message
        b.next_of("away")
        dm(a, "Bob", "and now?")
        assert texts([a.next_of("dm"), a.next_of("dm")]) == ["and now?", "I am away from my computer right now."]


def test_away_and_back_reach_the_rooms_the_account_is_in(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    guest = another_browser(client)
    with chat(ann, "room=den") as a, chat(guest, "room=den&name=gus") as g:
        a.send({"type": "away", "message": "brb"})
        assert g.next_of("away") == {"type": "away", "name": "Ann", "message": "brb"}
        with chat(another_browser(client), "room=den&name=hal") as h, chat(bob, "room=den") as b:
            assert h.welcome["away"] == {"Ann": "brb"}
            assert b.welcome["away"] == {"Ann": "brb"}
            with chat(ann, "room=attic") as other_tab:
                assert other_tab.welcome["away"] == {"Ann": "brb"}  # its own, in another room
                other_tab.send({"type": "back"})
                assert other_tab.next_of("back") == {"type": "back", "name": "Ann"}  # in its room too
            assert h.next_of("back") == {"type": "back", "name": "Ann"}
            assert g.next_of("back") == {"type": "back", "name": "Ann"}
            assert a.next_of("back") == {"type": "back", "name": "Ann"}
        with chat(another_browser(client), "room=den&name=ivy") as i:
            assert "away" not in i.welcome


def test_buddies_are_seen_coming_and_going_and_the_list_outlives_the_connection(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    with chat(ann) as a:
        assert (a.welcome["buddies"], a.welcome["blocked"]) == ([], [])
        a.send({"type": "buddy_add", "name": "bob"})
        assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": False, "away": False}
        with chat(bob, "room=den") as b:
            assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": True, "away": False}
            b.send({"type": "away", "message": "brb"})
            assert a.next_of("away") == {"type": "away", "name": "Bob", "message": "brb"}
            with chat(ann, "room=attic") as other_tab:
                assert other_tab.welcome["buddies"] == [{"name": "Bob", "online": True, "away": True, "message": "brb"}]
        assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": False, "away": False}
    with chat(ann) as a:
        assert a.welcome["buddies"] == [{"name": "Bob", "online": False, "away": False}]
        with chat(another_browser(client), "room=x&name=guest") as g, chat(ann, "room=y") as other_tab:
            assert "buddies" not in g.welcome
            a.send({"type": "buddy_remove", "name": "BOB"})
            assert a.next_of("buddy_removed") == {"type": "buddy_removed", "name": "Bob"}
            assert other_tab.next_of("buddy_removed") == {"type": "buddy_removed", "name": "Bob"}  # every tab
    with chat(ann) as a:
        assert a.welcome["buddies"] == []


def test_a_block_refuses_messages_both_ways_and_hides_the_blocker(client: TestClient) -> None:
    ann, bob = account(client, "Ann"), account(client, "Bob")
    with chat(ann) as a, chat(bob, "room=den") as b:
        a.send({"type": "buddy_add", "name": "Bob"})
        assert a.next_of("buddy")["online"] is True
        b.send({"type": "block", "name": "ann"})
        assert b.next_of("blocked") == {"type": "blocked", "name": "Ann"}
        assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": False, "away": False}
        dm(a, "Bob", "why?")
        refused = a.next_of("error")
        assert refused["code"] == "forbidden"
        assert "Bob does not take direct messages from you" in refused["detail"]
        dm(b, "Ann", "go away")
        assert b.next_of("error")["code"] == "forbidden"  # the one who blocks cannot write either
        b.send({"type": "away", "message": "hidden"})
        b.next_of("away")  # in its room
        with chat(ann, "room=attic") as other_tab:
            assert other_tab.welcome["buddies"] == [{"name": "Bob", "online": False, "away": False}]
        with chat(bob, "room=attic") as bobs_tab:
            assert bobs_tab.welcome["blocked"] == ["Ann"]
            bobs_tab.send({"type": "unblock", "name": "Ann"})
            assert bobs_tab.next_of("unblocked") == {"type": "unblocked", "name": "Ann"}
        assert b.next_of("unblocked") == {"type": "unblocked", "name": "Ann"}
        seen = a.next_of("buddy")
        assert seen == {"type": "buddy", "name": "Bob", "online": True, "away": True, "message": "hidden"}
        dm(a, "Bob", "friends again?")
        assert a.next_of("dm")["text"] == "friends again?"


def test_guests_and_strangers_get_no_direct_messages(client: TestClient) -> None:
    ann = account(client, "Ann")
    guest = another_browser(client)
    with chat(ann) as a, chat(guest, "name=gus") as g:
        for event in (
            {"type": "dm", "to": "Ann", "text": "hi"},
            {"type": "dm_history", "with": "Ann"},
            {"type": "buddy_add", "name": "Ann"},
            {"type": "block", "name": "Ann"},
            {"type": "away", "message": "x"},
            {"type": "back"},
        ):
            g.send(event)
            refused = g.next_of("error")
            assert refused["code"] == "forbidden", event
            assert "sign in" in refused["detail"]
        for to in ("gus", "nobody", "a\u202eb", "x" * 300):  # a guest, a stranger, names that cannot be
            dm(a, to, "hello?")
            assert a.next_of("error")["code"] == "no_such_user", to
        for event in ({"type": "buddy_add", "name": "gus"}, {"type": "dm_history", "with": "nobody"}):
            a.send(event)
            assert a.next_of("error")["code"] == "no_such_user", event
        dm(a, "ann", "to myself")
        assert a.next_of("error")["code"] == "forbidden"
        g.say("the rooms still work")
        assert g.next_of("message")["text"] == "the rooms still work"


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "dm", "to": "Bob"}, "bad_event"),
        ({"type": "dm", "to": 1, "text": "x"}, "bad_event"),
        ({"type": "dm", "to": "Bob", "text": "  "}, "empty_text"),
        ({"type": "dm_history", "with": "Bob", "limit": 101}, "bad_event"),
        ({"type": "dm_history", "with": "Bob", "after": 0}, "bad_event"),
        ({"type": "buddy_add"}, "bad_event"),
        ({"type": "away", "message": "x" * 301}, "bad_event"),
        ({"type": "away", "message": 5}, "bad_event"),
    ],
)
def test_a_malformed_request_gets_bad_event_and_changes_nothing(
    client: TestClient, event: dict[str, Any], code: str
) -> None:
    ann = account(client, "Ann")
    account(client, "Bob")
    with chat(ann) as a:
        a.send(event)
        assert a.next_of("error")["code"] == code
        a.send({"type": "dm_history", "with": "Bob"})
        assert a.next_of("dm_history")["messages"] == []


def test_lists_have_a_maximum_length(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messenger, "MAX_BUDDIES", 2)
    monkeypatch.setattr(messenger, "MAX_BLOCKED", 1)
    ann = account(client, "Ann")
    for name in ("Bob", "Cy", "Dee"):
        account(client, name)
    with chat(ann) as a:
        for name in ("Bob", "Cy", "Bob"):  # the second Bob is on the list already: nothing changes
            a.send({"type": "buddy_add", "name": name})
            assert a.next_of("buddy")["name"] == name
        a.send({"type": "buddy_add", "name": "Dee"})
        refused = a.next_of("error")
        assert (refused["code"], "at most 2" in refused["detail"]) == ("too_many", True)
        a.send({"type": "block", "name": "Cy"})
        a.next_of("blocked")
        a.send({"type": "block", "name": "Dee"})
        assert a.next_of("error")["code"] == "too_many"
    with chat(ann) as a:
        assert [buddy["name"] for buddy in a.welcome["buddies"]] == ["Bob", "Cy"]
        assert a.welcome["blocked"] == ["Cy"]


def test_direct_messages_count_against_the_rate_limit(backend_url: str) -> None:
    with TestClient(app_with(backend_url=backend_url, rate_limit=0.1, rate_burst=2)) as client:
        ann = account(client, "Ann")
        account(client, "Bob")
        with chat(ann) as a:
            dm(a, "Bob", "one")
            dm(a, "Bob", "two")
            dm(a, "Bob", "three")
            assert texts([a.next_of("dm"), a.next_of("dm")]) == ["one", "two"]
            assert a.next_of("error")["code"] == "rate_limited"


def test_a_removed_account_takes_its_conversations_and_place_on_lists_with_it(client: TestClient) -> None:
    account(client, "Ann")
    bob = account(client, "Bob")
    with chat(bob) as b:
        dm(b, "Ann", "a secret")
        b.next_of("dm")
        b.send({"type": "buddy_add", "name": "Ann"})
        b.next_of("buddy")
    accounts = client.app_state["accounts"]
    assert client.portal is not None
    client.portal.call(accounts.remove_user, "Ann")
    newcomer = account(client, "ANN")  # somebody else takes the name
    with chat(newcomer) as n, chat(bob) as b:
        assert n.welcome["conversations"] == []
        assert b.welcome["conversations"] == []
        assert b.welcome["buddies"] == []
        n.send({"type": "dm_history", "with": "Bob"})
        assert n.next_of("dm_history")["messages"] == []
