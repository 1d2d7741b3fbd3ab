"""History over the wire, on every backend: paging back in time and resuming after a disconnect."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app.core.hub import Hub
from tests.support.web import Event, Events, app_with, chat

ROOMS = itertools.count()


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    # memory:// keeps a bounded log: make it big enough for the rooms these tests build.
    with TestClient(app_with(backend_url=backend_url, history_limit=20_000, rate_limit=0)) as client:
        yield client


def prefill(client: TestClient, room: str, count: int, start: int = 0) -> None:
    """Store `count` messages in `room` through the app's own hub and backend."""
    hub: Hub = client.app_state["hub"]

    async def publish() -> None:
        stored = [hub.backend.publish(room, "filler", f"m{number}") for number in range(start, start + count)]
        for future in stored:
            await future

    async def open_and_publish() -> None:
        # A backend numbers only the rooms it serves: serve this one while filling it, then let
        # it go, as the hub does, so that the hub's own subscription starts from what is stored.
        await hub.backend.subscribe(room)
        await publish()
        if room not in hub.rooms:
            await hub.backend.unsubscribe(room)

    assert client.portal is not None
    client.portal.call(open_and_publish)


def page(events: Events, before: int | None, limit: int = 100, skipped: list[Event] | None = None) -> Event:
    request: dict[str, Any] = {"type": "history", "limit": limit}
    if before is not None:
        request["before"] = before
    events.send(request)
    return events.next_of("history", skipped)


def test_paging_walks_a_room_of_10000_messages_back_to_its_first(client: TestClient) -> None:
    prefill(client, "big", 10_000)
    with chat(client, "name=ann&room=big") as ann:
        seen = [message["text"] for message in ann.welcome["history"]]
        oldest = ann.welcome["history"][0]["id"]
        more = True
        pages = 0
        while more:
            answer = page(ann, oldest)
            assert answer["room"] == "big"
            messages = answer["messages"]
            ids = [message["id"] for message in messages]
            assert ids == sorted(ids)
            assert all(message_id < oldest for message_id in ids)
            seen[:0] = [message["text"] for message in messages]
            more = answer["more"]
            if messages:
                oldest = messages[0]["id"]
            pages += 1
    assert seen == [f"m{number}" for number in range(10_000)]
    assert pages == 99  # 100 in the welcome, then 9900 in pages of 100


def test_a_page_without_before_is_the_latest(client: TestClient) -> None:
    prefill(client, "den", 30)
    with chat(client, "name=ann&room=den") as ann:
        answer = page(ann, None, limit=10)
        assert [message["text"] for message in answer["messages"]] == [f"m{number}" for number in range(20, 30)]
        assert answer["more"] is True
        first = page(ann, answer["messages"][0]["id"] - 19, limit=10)
        assert [message["text"] for message in first["messages"]] == ["m0"]
        assert first["more"] is False


def test_paging_while_others_write(client: TestClient) -> None:
    prefill(client, "busy", 500)
    with chat(client, "name=reader&room=busy") as reader, chat(client, "name=writer&room=busy") as writer:
        collected = list(reader.welcome["history"])
        oldest = collected[0]["id"]
        written = 0
        live: list[Event] = []
        while True:
            writer.say(f"new {written}")
            written += 1
            answer = page(reader, oldest, limit=37, skipped=live)
            collected[:0] = answer["messages"]
            if not answer["more"]:
                break
            oldest = answer["messages"][0]["id"]
        news = [event for event in live if event["type"] == "message"]
        news.extend(reader.next_of("message") for _ in range(written - len(news)))
    texts = [message["text"] for message in collected]
    assert texts == [f"m{number}" for number in range(500)]
    assert [message["text"] for message in news] == [f"new {number}" for number in range(written)]
    assert news[0]["id"] > collected[-1]["id"]


@pytest.mark.parametrize(
    "request_",
    [
        {"type": "history", "before": -1},
        {"type": "history", "before": 0},
        {"type": "history", "before": 2**64},
        {"type": "history", "before": "12"},
        {"type": "history", "before": 12.5},
        {"type": "history", "before": True},
        {"type": "history", "before": [1]},
        {"type": "history", "limit": 0},
        {"type": "history", "limit": 101},
        {"type": "history", "limit": "10"},
        {"type": "history", "limit": None},
    ],
)
def test_bad_paging_requests_get_an_error_event(client: TestClient, request_: dict[str, Any]) -> None:
    with chat(client, "name=ann") as ann:
        ann.send(request_)
        error = ann.next_of("error")
        assert error["code"] == "bad_event"
        ann.say("still here")
        assert ann.next_of("message")["text"] == "still here"


def test_resume_gets_exactly_the_messages_after_since(client: TestClient) -> None:
    prefill(client, "den", 40)
    with chat(client, "name=ann&room=den") as ann:
        last_seen = ann.welcome["history"][-1]["id"]
        epoch = ann.welcome["epoch"]
    prefill(client, "den", 7, start=40)
    with chat(client, f"name=ann&room=den&since={last_seen}&epoch={epoch}") as again:
        assert [message["text"] for message in again.welcome["history"]] == [f"m{n}" for n in range(40, 47)]
        assert again.welcome["gap"] is False


def test_resume_from_beyond_the_recent_messages_reads_the_backend(client: TestClient) -> None:
    prefill(client, "den", 10)
    with chat(client, "name=ann&room=den") as ann:
        last_seen = ann.welcome["history"][-1]["id"]
        prefill(client, "den", 250, start=10)  # the room stays open: its recent messages move on
        for _ in range(250):
            ann.next_of("message")
        with chat(client, f"name=bob&room=den&since={last_seen}") as bob:
            assert [message["text"] for message in bob.welcome["history"]] == [f"m{n}" for n in range(10, 260)]
            assert bob.welcome["gap"] is False


def test_resume_after_more_than_the_replay_limit_says_gap(backend_url: str) -> None:
    app = app_with(backend_url=backend_url, replay_limit=20, welcome_history=5, rate_limit=0)
    with TestClient(app) as client:
        prefill(client, "den", 3)
        with chat(client, "name=ann&room=den") as ann:
            last_seen = ann.welcome["history"][-1]["id"]
            prefill(client, "den", 50, start=3)
            with chat(client, f"name=bob&room=den&since={last_seen}") as bob:
                assert [message["text"] for message in bob.welcome["history"]] == [f"m{n}" for n in range(33, 53)]
                assert bob.welcome["gap"] is True
                older = page(bob, bob.welcome["history"][0]["id"], limit=30)  # the client pages for the rest
                assert [message["text"] for message in older["messages"]] == [f"m{n}" for n in range(3, 33)]


def test_resume_from_another_epoch_gets_the_latest_and_a_gap(client: TestClient) -> None:
    prefill(client, "den", 5)
    with chat(client, "name=ann&room=den&since=3&epoch=somebody-elses") as ann:
        assert [message["text"] for message in ann.welcome["history"]] == [f"m{n}" for n in range(5)]
        assert ann.welcome["gap"] is True


def test_resume_since_a_future_id_gets_nothing(client: TestClient) -> None:
    prefill(client, "den", 5)
    with chat(client, "name=ann&room=den&since=1000") as ann:
        assert ann.welcome["history"] == []
        assert ann.welcome["gap"] is False


@pytest.mark.parametrize("since", ["-1", "abc", "1.5", "", "99999999999999999999", "١٢"])
def test_a_malformed_since_is_refused_with_4400(client: TestClient, since: str) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused, chat(client, f"name=ann&since={since}"):
        pass
    assert refused.value.code == 4400
    assert "since" in refused.value.reason


@pytest.fixture
def small_cache_client(backend_url: str) -> Iterator[TestClient]:
    """Rooms remember only 5 recent messages, so resuming often has to read the backend."""
    with TestClient(app_with(backend_url=backend_url, welcome_history=5, rate_limit=0)) as client:
        yield client


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=4), data=st.data())
def test_resume_after_disconnects_at_random_points_misses_nothing(
    small_cache_client: TestClient, cuts: list[int], data: st.DataObject
) -> None:
    """A reader that drops at random points and comes back with `since` sees every message once."""
    client = small_cache_client
    room = f"resume{next(ROOMS)}"  # a fresh room for each example
    total = 0
    seen: list[Event] = []
    last_seen: int | None = None
    epoch: str | None = None
    with chat(client, f"name=writer&room={room}") as writer:
        for cut in cuts:
            query = f"name=reader&room={room}"
            if last_seen is not None:
                query += f"&since={last_seen}&epoch={epoch}"
            with chat(client, query) as reader:
                epoch = reader.welcome["epoch"]
                seen.extend(reader.welcome["history"])
                assert reader.welcome.get("gap", False) is False
                written = data.draw(st.integers(0, 40))
                for _ in range(written):
                    writer.say(f"w{total}")
                    total += 1
                readable = [reader.next_of("message") for _ in range(min(cut, written))]
                seen.extend(readable)
                last_seen = seen[-1]["id"] if seen else 0  # an empty welcome: nothing before now
            # Disconnected here: whatever was sent but not yet read must come back on resume.
        with chat(client, f"name=reader&room={room}&since={last_seen}&epoch={epoch}") as reader:
            seen.extend(reader.welcome["history"])
        for _ in range(total):
            writer.next_of("message")
    assert [message["text"] for message in seen] == [f"w{number}" for number in range(total)]
    ids = [message["id"] for message in seen]
    assert ids == sorted(set(ids))
