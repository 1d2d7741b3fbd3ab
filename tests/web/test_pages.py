"""The page and its headers, over TestClient."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support.web import app_with, chat

STATIC = Path(__file__).resolve().parent.parent.parent / "static"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app_with()) as client:
        yield client


def test_the_page_loads_its_script_and_style_from_static(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    scripts = re.findall(r"<script\b[^>]*>", page.text)
    assert scripts
    assert all('src="/static/' in tag for tag in scripts)  # no inline script
    assert "style=" not in page.text  # no inline style either
    assert (
        client.get("/static/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))
    )
    assert client.get("/static/style.css").status_code == 200


def test_security_headers_forbid_inline_script_and_framing(client: TestClient) -> None:
    headers = client.get("/").headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in headers  # plain http: HSTS would be meaningless


def test_hsts_is_sent_over_https() -> None:
    with TestClient(app_with(), base_url="https://testserver") as client:
        assert client.get("/").headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize("path", ["/r/friends", "/?room=friends"])
def test_a_room_link_opens_the_page_on_that_room(client: TestClient, path: str) -> None:
    assert 'value="friends"' in client.get(path).text


def test_a_room_name_in_a_link_is_escaped(client: TestClient) -> None:
    page = client.get('/?room="><script>alert(1)</script>').text
    assert "<script>alert(1)" not in page


def test_the_page_is_told_the_message_size_limit() -> None:
    with TestClient(app_with(max_message_bytes=1234)) as client:
        assert 'data-max-bytes="1234"' in client.get("/").text


@pytest.mark.parametrize(("guests", "registration"), [("on", "open"), ("off", "closed")])
def test_the_page_is_told_whether_there_are_guests_and_whether_registration_is_open(
    guests: str, registration: str
) -> None:
    with TestClient(app_with(guests=guests, registration=registration)) as client:
        page = client.get("/").text
    assert f'data-guests="{guests}"' in page
    assert f'data-registration="{registration}"' in page


def test_the_rooms_list_is_empty_when_nobody_is_online(client: TestClient) -> None:
    listed = client.get("/api/rooms")
    assert listed.json() == {"rooms": []}
    assert listed.headers["cache-control"] == "no-store"


def test_the_rooms_list_counts_who_is_online_busiest_first(client: TestClient) -> None:
    with (
        chat(client, "name=ann&room=attic"),
        chat(client, "name=bob&room=Den"),
        chat(client, "name=cy&room=den"),
        chat(client, "name=dee&room=cellar"),
        chat(client, "name=eve&room=den"),
    ):
        assert client.get("/api/rooms").json() == {
            "rooms": [{"room": "den", "online": 3}, {"room": "attic", "online": 1}, {"room": "cellar", "online": 1}]
        }


def test_a_room_everyone_left_is_no_longer_listed(client: TestClient) -> None:
    with chat(client, "name=ann&room=attic"), chat(client, "name=bob&room=den"):
        pass
    with chat(client, "name=cy&room=den"):
        assert client.get("/api/rooms").json() == {"rooms": [{"room": "den", "online": 1}]}


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_page_script_never_renders_html() -> None:
    source = "\n".join(path.read_text() for path in STATIC.glob("**/*.js"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source
    assert "textContent" in source
