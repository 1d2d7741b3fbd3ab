"""Accounts over HTTP and the WebSocket, on every backend: registering, signing in and out,
changing passwords, the cookie, guests beside accounts, and the same account in several tabs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.core.accounts import session_hash
from app.core.protocol import CloseCode
from app.core.users import SignIn
from app.web.accounts import PLAIN_COOKIE, SECURE_COOKIE
from tests.support.web import another_browser, app_with, chat

PASSWORD = "correct horse battery"  # noqa: S105 - a test account's


@pytest.fixture
def client(backend_url: str) -> Iterator[TestClient]:
    with TestClient(app_with(backend_url=backend_url)) as client:
        yield client


def register(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    return client.post("/api/account", json={"name": name, "password": password})


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    return client.post("/api/session", json={"name": name, "password": password})


def test_registering_signs_the_account_in(client: TestClient) -> None:
    response = register(client, "Ann")
    assert response.status_code == 201
    assert response.json() == {"name": "Ann", "admin": False}
    assert client.get("/api/session").json() == {"name": "Ann", "admin": False}


def test_a_registered_name_and_every_look_alike_of_it_is_taken(client: TestClient) -> None:
    assert register(client, "Ann").status_code == 201
    for twin in ("ann", "ANN", "ａｎｎ", "\u0430nn"):  # case, full width, a Cyrillic а
        response = register(another_browser(client), twin)
        assert response.status_code == 409, twin
        assert response.json()["error"] == "registered"


@pytest.mark.parametrize(
    ("name", "password", "why"),
    [
        ("", PASSWORD, "empty"),
        ("a\u202eb", PASSWORD, "printable"),
        ("guest-0042", PASSWORD, "guests"),
        ("ann", "short", "8 characters"),
        ("ann", "x" * 1025, "1024 bytes"),
        ("ann", "\u00e9" * 600, "1024 bytes"),  # 600 characters, 1200 bytes
    ],
)
def test_a_bad_name_or_password_is_refused_with_400_and_a_reason(
    client: TestClient, name: str, password: str, why: str
) -> None:
    response = register(client, name, password)
    assert response.status_code == 400
    assert why in response.json()["detail"]


@pytest.mark.parametrize("body", ["", "[]", '{"name": "ann"}', '{"name": 1, "password": "x"}', "{" * 10_000])
def test_a_malformed_body_is_refused_with_400(client: TestClient, body: str) -> None:
    response = client.post("/api/account", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400


def test_when_registration_is_closed_the_page_cannot_register() -> None:
    with TestClient(app_with(registration="closed")) as client:
        response = register(client, "ann")
        assert response.status_code == 403
        assert response.json()["error"] == "closed"


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(client: TestClient) -> None:
    register(client, "ann")
    wrong = sign_in(another_browser(client), "ann", "not the password")
    unknown = sign_in(another_browser(client), "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert SECURE_COOKIE not in wrong.headers.get("set-cookie", "")
    assert PLAIN_COOKIE not in wrong.headers.get("set-cookie", "")


def test_signing_in_elsewhere_and_out_again(client: TestClient) -> None:
    register(client, "ann")
    laptop = another_browser(client)
    assert sign_in(laptop, "ANN").json() == {"name": "ann", "admin": False}  # any spelling of the name
    copied = laptop.cookies.get(PLAIN_COOKIE)
    assert copied
    assert laptop.delete("/api/session").status_code == 204
    assert laptop.get("/api/session").status_code == 401
    thief = another_browser(client)
    thief.cookies.set(PLAIN_COOKIE, copied)
    assert thief.get("/api/session").status_code == 401  # the session ended on the server
    assert client.get("/api/session").status_code == 200  # the other session goes on


def test_the_cookie_is_http_only_same_site_and_secure_over_tls(backend_url: str) -> None:
    with TestClient(app_with(backend_url=backend_url), base_url="https://testserver") as client:
        cookie = register(client, "ann").headers["set-cookie"]
    name, _, attributes = cookie.partition(";")
    assert name.startswith(f"{SECURE_COOKIE}=")
    parts = {part.strip().split("=")[0].lower() for part in attributes.split(";")}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= parts
    assert "samesite=lax" in cookie.lower()
    assert "path=/" in cookie.lower()
    assert "domain" not in parts  # the __Host- prefix: this host alone


def test_the_cookie_holds_a_random_id_that_the_server_keeps_only_hashed(client: TestClient) -> None:
    register(client, "ann")
    session_id = client.cookies[PLAIN_COOKIE]
    assert len(session_id) >= 43  # 256 bits
    store = _accounts(client).store
    assert portal(client).call(store.session, session_id) is None
    assert portal(client).call(store.session, session_hash(session_id)) is not None


@pytest.mark.parametrize("cookie", ["", "forged", "x" * 200, "%C3%A9t%C3%A9", "a" * 43])
def test_a_forged_cookie_signs_nobody_in(client: TestClient, cookie: str) -> None:
    client.cookies.set(PLAIN_COOKIE, cookie)
    assert client.get("/api/session").status_code == 401


def test_a_socket_with_a_cookie_that_signs_nobody_in_is_closed_with_4401(client: TestClient) -> None:
    client.cookies.set(PLAIN_COOKIE, "forged")
    with pytest.raises(WebSocketDisconnect) as closed, chat(client, "name=ann"):
        pass
    assert closed.value.code == CloseCode.NOT_SIGNED_IN


def test_a_signed_in_socket_speaks_under_its_account_whatever_name_it_asks_for(client: TestClient) -> None:
    register(client, "Ann")
    with chat(client, "name=somebody-else") as ann, chat(another_browser(client), "name=bob") as bob:
        assert ann.welcome["name"] == "Ann"
        assert ann.welcome["guest"] is False
        assert bob.welcome["guest"] is True
        assert bob.welcome["guests"] == ["bob"]
        ann.say("hello")
        message = bob.next_of("message")
        assert message["name"] == "Ann"
        assert "guest" not in message
        bob.say("hi")
        assert ann.next_of("join") == {"type": "join", "name": "bob", "guest": True}
        assert ann.next_of("message")["text"] == "hello"  # her own
        assert ann.next_of("message")["guest"] is True


def test_a_guest_can_never_take_a_registered_name(client: TestClient) -> None:
    register(client, "Ann")
    guest = another_browser(client)
    for spelling in ("Ann", "ann", "\u0430nn"):
        with pytest.raises(WebSocketDisconnect) as refused, chat(guest, f"name={spelling}"):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
        assert "registered" in refused.value.reason


def test_an_account_s_welcome_token_lets_no_guest_take_its_name(client: TestClient) -> None:
    register(client, "ann")
    with chat(client) as ann:
        stolen = ann.welcome["token"]
        with pytest.raises(WebSocketDisconnect) as refused, chat(another_browser(client), "name=ann", token=stolen):
            pass
        assert refused.value.code == CloseCode.NAME_TAKEN
        ann.say("still mine")
        assert ann.next_of("message")["text"] == "still mine"


def test_a_guest_online_under_a_name_someone_registers_is_closed(client: TestClient) -> None:
    guest = another_browser(client)
    with chat(guest, "name=ann") as ann:
        assert register(client, "ann").status_code == 201
        with pytest.raises(WebSocketDisconnect) as closed:
            ann.next()
        assert closed.value.code == CloseCode.NAME_TAKEN


def test_without_guests_only_accounts_may_connect() -> None:
    with TestClient(app_with(guests="off")) as client:
        with pytest.raises(WebSocketDisconnect) as refused, chat(client, "name=ann"):
            pass
        assert refused.value.code == CloseCode.NOT_SIGNED_IN
        register(client, "ann")
        with chat(client) as ann:
            assert ann.welcome["name"] == "ann"


def test_the_same_account_in_two_tabs_is_online_once(client: TestClient) -> None:
    register(client, "ann")
    with chat(another_browser(client), "name=bob") as bob:
        with chat(client) as first:
            assert bob.next_of("join")["name"] == "ann"
            with chat(client) as second:
                assert second.welcome["online"].count("ann") == 1
                first.say("from the first tab")
                assert second.next_of("message")["text"] == "from the first tab"
            bob.say("still here?")  # the second tab went: nobody left
            skipped: list[dict[str, Any]] = []
            assert bob.next_of("message", skipped)["text"] == "from the first tab"
            assert bob.next_of("message", skipped)["text"] == "still here?"
            assert [event for event in skipped if event["type"] == "leave"] == []
        assert bob.next_of("leave") == {"type": "leave", "name": "ann"}  # the last tab went


def test_signing_out_closes_that_session_s_sockets_with_4401(client: TestClient) -> None:
    register(client, "ann")
    with chat(client) as ann:
        client.delete("/api/session")
        with pytest.raises(WebSocketDisconnect) as closed:
            ann.next()
        assert closed.value.code == CloseCode.NOT_SIGNED_IN


def test_a_new_password_ends_every_other_session_and_closes_its_sockets(client: TestClient) -> None:
    register(client, "ann")
    laptop = another_browser(client)
    sign_in(laptop, "ann")
    with chat(laptop) as elsewhere, chat(client) as here:
        response = client.post("/api/account/password", json={"password": PASSWORD, "new_password": "a new one!"})
        assert response.status_code == 204
        with pytest.raises(WebSocketDisconnect) as closed:
            elsewhere.next()
        assert closed.value.code == CloseCode.NOT_SIGNED_IN
        here.say("still signed in")
        assert here.next_of("message")["text"] == "still signed in"
    assert laptop.get("/api/session").status_code == 401
    assert sign_in(another_browser(client), "ann", PASSWORD).status_code == 401
    assert sign_in(another_browser(client), "ann", "a new one!").status_code == 200


def test_a_password_change_needs_the_old_password(client: TestClient) -> None:
    register(client, "ann")
    response = client.post("/api/account/password", json={"password": "wrong one", "new_password": "a new one!"})
    assert response.status_code == 401
    assert client.get("/api/session").status_code == 200


def test_a_password_change_from_an_ended_session_says_signed_out(client: TestClient) -> None:
    register(client, "ann")
    ended = client.cookies[PLAIN_COOKIE]
    client.delete("/api/session")
    client.cookies.set(PLAIN_COOKIE, ended)
    response = client.post("/api/account/password", json={"password": PASSWORD, "new_password": "a new one!"})
    assert response.status_code == 401
    assert response.json() == {"error": "signed_out", "detail": "Not signed in"}  # not "wrong": sign in again
    assert sign_in(another_browser(client), "ann", PASSWORD).status_code == 200  # nothing changed


def test_an_expired_session_signs_nobody_in(client: TestClient) -> None:
    register(client, "ann")
    session_id = "an id the server never gave out, but stored as if it had, long ago"
    month = 31 * 86_400_000

    async def plant() -> None:
        accounts = _accounts(client)
        await accounts.store.add_session(SignIn(session_hash(session_id), "ann", 0, 0))
        await accounts.store.add_session(SignIn(session_hash(session_id + "!"), "ann", 1, month * 10))

    portal(client).call(plant)
    for cookie in (session_id, session_id + "!"):  # older than 30 days; unused for more than 7
        browser = another_browser(client)
        browser.cookies.set(PLAIN_COOKIE, cookie)
        assert browser.get("/api/session").status_code == 401


def test_a_socket_open_when_its_session_expires_stays_open_until_it_closes(backend_url: str) -> None:
    """Expiry is checked when a request or a handshake shows the cookie, not on open sockets;
    what ends a session on purpose (signing out, a new password, removal) closes them."""
    lifetime = 1.0  # second
    with TestClient(app_with(backend_url=backend_url, session_days=lifetime / 86_400)) as client:
        register(client, "ann")
        session_id = client.cookies[PLAIN_COOKIE]
        with chat(client) as ann:
            time.sleep(lifetime + 0.1)  # for the session's lifetime to pass: no event to wait for
            client.cookies.set(PLAIN_COOKIE, session_id)  # the client's jar let it go too (Max-Age)
            assert client.get("/api/session").status_code == 401
            ann.say("still here")
            assert ann.next_of("message")["text"] == "still here"
        with pytest.raises(WebSocketDisconnect) as refused, chat(client):
            pass
        assert refused.value.code == CloseCode.NOT_SIGNED_IN


@pytest.mark.parametrize(
    "headers",
    [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}],
)
def test_a_request_from_another_site_is_refused_sign_in_included(client: TestClient, headers: dict[str, str]) -> None:
    for path, body in (
        ("/api/account", {"name": "ann", "password": PASSWORD}),
        ("/api/session", {"name": "ann", "password": PASSWORD}),
        ("/api/account/password", {"password": PASSWORD, "new_password": "a new one!"}),
    ):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 403, (path, headers)
        assert response.json()["error"] == "cross_site"
    assert client.delete("/api/session", headers=headers).status_code == 403


def test_a_request_from_the_chat_s_own_page_is_not(client: TestClient) -> None:
    own = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert client.post("/api/account", json={"name": "ann", "password": PASSWORD}, headers=own).status_code == 201


def test_failed_sign_ins_back_off_and_say_when_to_try_again(client: TestClient) -> None:
    register(client, "ann")
    attacker = another_browser(client)
    answers = [sign_in(attacker, "ann", f"guess {number}").status_code for number in range(7)]
    assert answers[:5] == [401] * 5
    throttled = sign_in(attacker, "ann", PASSWORD)  # even the right password waits its turn
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1


def test_registrations_are_limited_per_address(client: TestClient) -> None:
    answers = [register(another_browser(client), f"user{number}").status_code for number in range(7)]
    assert answers[:5] == [201] * 5
    assert answers[5:] == [429, 429]


def portal(client: TestClient) -> BlockingPortal:
    assert client.portal is not None, "the client runs the app (with TestClient(...) as client)"
    return client.portal


def _accounts(client: TestClient) -> Any:
    """The running app's accounts service (its lifespan state)."""
    return client.app_state["accounts"]
