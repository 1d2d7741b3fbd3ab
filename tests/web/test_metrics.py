"""`GET /metrics` of one process: Prometheus's text format, values that move as people chat, and
served only to the addresses of CHAT_METRICS_ALLOW."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import CloseCode
from tests.support.web import app_with, chat
from tests.web.test_health import LOOPBACK, OTHERS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PASSWORD = "correct horse battery"  # noqa: S105 - a test account's


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    with TestClient(app_with(backend_url=backend_url, rate_limit=5, rate_burst=3), client=("127.0.0.1", 5000)) as http:
        yield http


def test_the_figures_move_as_people_chat(client: TestClient) -> None:
    before = scrape(client)
    assert value(before, "chatroom_connections_open") == 0
    with chat(client, "name=ann&room=lobby") as ann, chat(client, "name=bob&room=lobby") as bob:
        ann.next_of("join")
        for text in ("one", "two"):
            ann.say(text)
            assert ann.next_of("message")["text"] == text
            assert bob.next_of("message")["text"] == text
        ann.websocket.send_text("not json")
        assert ann.next_of("error")["code"] == "bad_json"
        during = scrape(client)
        assert value(during, "chatroom_connections_open") == 2
        assert value(during, "chatroom_rooms") == 1
        with pytest.raises(WebSocketDisconnect) as twin, chat(client, "name=ANN&room=lobby"):
            pass
        assert twin.value.code == CloseCode.NAME_TAKEN
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("chatroom_messages_received_total") == 3  # two messages and the frame that was not JSON
    assert moved("chatroom_messages_stored_total") == 2
    assert moved("chatroom_messages_delivered_total") == 4  # two messages, each to two people
    assert moved("chatroom_messages_refused_total", code="bad_json") == 1
    assert moved("chatroom_connections_opened_total") == 3
    assert moved("chatroom_connections_closed_total", code="1000", by="client") == 2
    assert moved("chatroom_connections_closed_total", code="4409", by="server") == 1
    assert value(after, "chatroom_connections_open") == 0
    assert value(after, "chatroom_rooms") == 0
    # Welcomes, a join, four message frames, an error: at least eight frames, and their bytes.
    assert moved("chatroom_frames_written_total") >= 8
    assert moved("chatroom_bytes_written_total") > moved("chatroom_frames_written_total") * 20
    assert moved("chatroom_backend_seconds_count", operation="store") == 2
    assert moved("chatroom_backend_seconds_bucket", operation="store", le="+Inf") == 2
    assert moved("chatroom_backend_seconds_count", operation="read") >= 1  # the room's latest messages
    assert (
        moved("chatroom_backend_seconds_count", operation="presence") == 2
    )  # ann and bob (the twin: refused here first)


def test_messages_over_the_rate_are_counted_as_refused(client: TestClient) -> None:
    with chat(client, "name=ann") as ann:
        for number in range(5):  # a burst of 3 is allowed
            ann.say(str(number))
        assert ann.next_of("error")["code"] == "rate_limited"
        ann.next_of("error")
    assert value(scrape(client), "chatroom_messages_refused_total", code="rate_limited") == 2


def test_sign_ins_and_their_failures_by_why(client: TestClient) -> None:
    assert client.post("/api/account", json={"name": "Ann", "password": PASSWORD}).status_code == 201
    assert client.post("/api/session", json={"name": "Ann", "password": PASSWORD}).status_code == 200
    assert client.post("/api/session", json={"name": "Ann", "password": "wrong password"}).status_code == 401
    assert client.post("/api/session", json={"name": "Nobody", "password": PASSWORD}).status_code == 401
    assert client.post("/api/session", content=b"[]").status_code == 400
    samples = scrape(client)
    assert value(samples, "chatroom_sign_ins_total") == 1
    assert value(samples, "chatroom_sign_in_failures_total", error="wrong") == 2
    assert value(samples, "chatroom_sign_in_failures_total", error="bad_request") == 1


def test_every_metric_is_documented_and_typed(client: TestClient) -> None:
    families = {family.name: family for family in text_string_to_metric_families(client.get("/metrics").text)}
    expected = {
        "chatroom_connections_open": "gauge",
        "chatroom_connections_opened": "counter",
        "chatroom_connections_closed": "counter",
        "chatroom_rooms": "gauge",
        "chatroom_messages_received": "counter",
        "chatroom_messages_stored": "counter",
        "chatroom_messages_refused": "counter",
        "chatroom_messages_delivered": "counter",
        "chatroom_frames_written": "counter",
        "chatroom_bytes_written": "counter",
        "chatroom_slow_readers_dropped": "counter",
        "chatroom_pacing_stalls": "counter",
        "chatroom_pacing_stall_seconds": "counter",
        "chatroom_sign_ins": "counter",
        "chatroom_sign_in_failures": "counter",
        "chatroom_backend_seconds": "histogram",
        "process_resident_memory_bytes": "gauge",
        "process_cpu_seconds": "counter",
    }
    for name, kind in expected.items():
        assert name in families, name
        assert families[name].type == kind, name
        assert families[name].documentation, name


# Who may scrape: the addresses of CHAT_METRICS_ALLOW, as for the detail of /healthz.


def metrics_status(client_address: str, headers: dict[str, str] | None = None, **settings: object) -> int:
    with TestClient(app_with(**settings), client=(client_address, 50000)) as http:
        answer = http.get("/metrics", headers=headers or {})
        if answer.status_code != 200:
            assert "chatroom_" not in answer.text
        return answer.status_code


@pytest.mark.parametrize("address", LOOPBACK)
def test_by_default_loopback_may_scrape(address: str) -> None:
    assert metrics_status(address) == 200


@pytest.mark.parametrize("address", OTHERS)
def test_by_default_others_are_refused(address: str) -> None:
    assert metrics_status(address) == 403


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_through_a_proxy_even_loopback_is_refused(header: str) -> None:
    assert metrics_status("127.0.0.1", {header: "203.0.113.9"}) == 403


def test_metrics_allow_names_who_may_scrape() -> None:
    allow = ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7")
    for address, allowed in (("10.1.2.3", True), ("2001:db8:5::1", True), ("192.0.2.7", True), ("127.0.0.1", False)):
        assert metrics_status(address, metrics_allow=allow) == (200 if allowed else 403), address
    assert metrics_status("127.0.0.1", metrics_allow=()) == 403
