"""Direct messages, buddy lists and away messages across two apps sharing one real Redis, as
two server processes (or hosts) would: every connection of both accounts, buddies on the
other process, a process taken for dead and back, the rooms they share."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from app.backends.redis import RedisBackend
from app.backends.redis.direct import inbox_key
from app.web.accounts import PLAIN_COOKIE
from tests.support.redis_faults import reconnection_held, start_heartbeats, stop_heartbeats
from tests.support.web import Event, Events, another_browser, app_with, chat

PASSWORD = "correct horse battery"  # noqa: S105 - the test accounts'


@pytest.fixture
def two_apps(redis_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(app_with(backend_url=redis_url, presence_ttl=1.0)) as first,
        TestClient(app_with(backend_url=redis_url, presence_ttl=1.0)) as second,
    ):
        yield first, second


def account(client: TestClient, name: str) -> TestClient:
    browser = another_browser(client)
    assert browser.post("/api/account", json={"name": name, "password": PASSWORD}).status_code == 201
    return browser


def same_browser_on(signed_in: TestClient, other_app: TestClient) -> TestClient:
    """The browser `signed_in`, talking to the other app (the session is shared in Redis)."""
    browser = another_browser(other_app)
    browser.cookies.set(PLAIN_COOKIE, signed_in.cookies[PLAIN_COOKIE])
    return browser


def backend_of(client: TestClient) -> RedisBackend:
    backend = client.app_state["hub"].backend
    assert isinstance(backend, RedisBackend)
    return backend


def dm(events: Events, to: str, text: str) -> None:
    events.send({"type": "dm", "to": to, "text": text})


def dms_until(events: Events, last: str, seen: list[Event] | None = None) -> list[Event]:
    seen = list(seen or [])
    while not seen or seen[-1]["text"] != last:
        seen.append(events.next_of("dm"))
    return seen


def test_direct_messages_reach_every_connection_of_both_accounts_on_both_apps_once(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    ann, bob = account(first, "Ann"), account(second, "Bob")
    with (
        chat(ann, "room=lobby") as ann_here,
        chat(same_browser_on(ann, second), "room=den") as ann_there,
        chat(bob, "room=attic") as bob_there,
        chat(same_browser_on(bob, first), "room=lobby") as bob_here,
    ):
        for number in range(3):
            dm(ann_here, "Bob", f"m{number}")
        seen_by_bob = dms_until(bob_there, "m2")
        dm(bob_there, "Ann", "from the other app")
        dm(bob_there, "Ann", "the end")
        expected = ["m0", "m1", "m2", "from the other app", "the end"]
        for events in (ann_here, ann_there, bob_here, bob_there):
            seen = dms_until(events, "the end", seen_by_bob if events is bob_there else None)
            assert [event["text"] for event in seen] == expected
            assert [event["id"] for event in seen] == [1, 2, 3, 4, 5]
            events.send({"type": "dm_history", "with": "Bob" if events in (ann_here, ann_there) else "Ann"})
            skipped: list[Event] = []
            page = events.next_of("dm_history", skipped)
            assert [event for event in skipped if event["type"] == "dm"] == []  # nothing twice
            assert [event["text"] for event in page["messages"]] == expected


def test_a_buddy_on_the_other_app_is_seen_coming_going_away_and_taken_for_dead(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    ann, bob = account(first, "Ann"), account(second, "Bob")
    with chat(ann) as a:
        a.send({"type": "buddy_add", "name": "Bob"})
        assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": False, "away": False}
        with chat(bob, "room=den") as b:
            assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": True, "away": False}
            with chat(same_browser_on(bob, first), "room=attic"):
                b.send({"type": "away", "message": "lunch"})
                assert a.next_of("away") == {"type": "away", "name": "Bob", "message": "lunch"}
            b.send({"type": "back"})  # the tab on the first app went: bob is still online
            skipped: list[Event] = []
            assert a.next_of("back", skipped) == {"type": "back", "name": "Bob"}
            assert [event for event in skipped if event["type"] == "buddy"] == []
        assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": False, "away": False}
        with chat(bob, "room=den"):
            assert a.next_of("buddy")["online"] is True
            assert second.portal is not None
            second.portal.call(stop_heartbeats, backend_of(second))  # as if that process had died
            started = time.monotonic()
            assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": False, "away": False}
            assert time.monotonic() - started < 1.0 + 0.25 + 2  # the ttl, a heartbeat of the first, slack
            second.portal.call(start_heartbeats, backend_of(second))  # it was only paused
            assert a.next_of("buddy") == {"type": "buddy", "name": "Bob", "online": True, "away": False}


def test_a_process_taken_for_dead_catches_up_with_what_its_accounts_missed(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    ann, bob = account(first, "Ann"), account(second, "Bob")
    with chat(ann) as a, chat(bob, "room=den") as b:
        a.send({"type": "buddy_add", "name": "Bob"})
        assert a.next_of("buddy")["online"] is True
        assert second.portal is not None
        second.portal.call(stop_heartbeats, backend_of(second))
        assert a.next_of("buddy")["online"] is False  # swept: its accounts went offline
        dm(a, "Bob", "are you there?")  # bob's inbox is not written while it is offline
        assert a.next_of("dm")["text"] == "are you there?"
        second.portal.call(start_heartbeats, backend_of(second))
        assert a.next_of("buddy")["online"] is True
        missed = b.next_of("dm")  # told all the same, once its process is back
        assert (missed["text"], missed["id"]) == ("are you there?", 1)
        dm(a, "Bob", "good")
        assert b.next_of("dm")["text"] == "good"


def test_a_reconnection_to_the_other_app_resumes_without_loss(two_apps: tuple[TestClient, TestClient]) -> None:
    first, second = two_apps
    ann, bob = account(first, "Ann"), account(second, "Bob")
    with chat(bob) as b:
        with chat(ann) as a:
            dm(b, "Ann", "one")
            assert a.next_of("dm")["id"] == 1
        dm(b, "Ann", "two")
        dm(b, "Ann", "three")
        dms_until(b, "three")
        with chat(same_browser_on(ann, second)) as back:
            assert [(c["with"], c["last"]) for c in back.welcome["conversations"]] == [("Bob", 3)]
            dm(b, "Ann", "four")
            back.send({"type": "dm_history", "with": "Bob", "after": 1, "before": 4})
            skipped: list[Event] = []
            page = back.next_of("dm_history", skipped)
            assert [event["text"] for event in page["messages"]] == ["two", "three"]
            live = [event for event in skipped if event["type"] == "dm"] or [back.next_of("dm")]
            assert [event["text"] for event in live] == ["four"]


def test_away_reaches_a_room_shared_across_apps(two_apps: tuple[TestClient, TestClient]) -> None:
    first, second = two_apps
    bob = account(second, "Bob")
    with chat(another_browser(first), "room=den&name=gus") as gus, chat(bob, "room=den") as b:
        assert gus.next_of("join")["name"] == "Bob"
        b.send({"type": "away", "message": "brb"})
        assert gus.next_of("away") == {"type": "away", "name": "Bob", "message": "brb"}
        with chat(another_browser(first), "room=den&name=hal") as hal:
            assert hal.welcome["away"] == {"Bob": "brb"}
            b.send({"type": "back"})
            assert hal.next_of("back") == {"type": "back", "name": "Bob"}
            assert gus.next_of("back") == {"type": "back", "name": "Bob"}
    assert "away" not in gus.welcome


def test_a_process_that_lost_redis_catches_up_with_what_its_accounts_missed_each_once(
    two_apps: tuple[TestClient, TestClient],
) -> None:
    first, second = two_apps
    ann, bob = account(first, "Ann"), account(second, "Bob")
    with chat(ann) as a, chat(bob, "room=den") as b:
        dm(a, "Bob", "before")
        assert b.next_of("dm")["text"] == "before"
        assert second.portal is not None
        backend = backend_of(second)
        with second.portal.wrap_async_context_manager(reconnection_held(backend)):
            dm(a, "Bob", "while away")  # the reader of bob's process is not reading
            dm(a, "Bob", "still away")
            dms_until(a, "still away")
            # As if its inbox had been trimmed meanwhile: only the conversation has them now.
            second.portal.call(backend.redis.xtrim, inbox_key("bob"), 0)
        dm(a, "Bob", "after")
        assert [event["text"] for event in dms_until(b, "after")] == ["while away", "still away", "after"]
        b.send({"type": "dm_history", "with": "Ann"})
        skipped: list[Event] = []
        b.next_of("dm_history", skipped)
        assert [event for event in skipped if event["type"] == "dm"] == []  # none twice
