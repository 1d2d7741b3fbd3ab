"""The names the server answers to (DNS rebinding), the scheme of the origins it accepts, and
redirects that never name another host."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from app.core.protocol import CloseCode
from app.settings import Settings
from app.web.hosts import LOOPBACK_NAMES, UNKNOWN_HOST, host_of, implied_names
from tests.support.properties import budget
from tests.support.web import app_with, chat

# Hosts that are not the server's, written every way a Host header can be bent.
FOREIGN = [
    "evil.example",
    "evil.example:80",
    "EVIL.example.",
    "testserver.evil.example",
    "evil-testserver",
    "testserver@evil.example",
    "testserver:80@evil.example",
    "evil.example#testserver",
    "evil.example/testserver",
    "evil.example?testserver",
    "evil.example\\testserver",
    "testserver, evil.example",
    "testserver evil.example",
    "testserver:80:80",
    "testserver:http",
    "[testserver]",
    "[::1].evil.example",
    "127.0.0.1.nip.io",
    "localhost.evil.example",
    "xn--tstserver-b4a",
    "192.0.2.1",
    "[2001:db8::1]:80",
    "::1",
    "0.0.0.0",
    "",
    " ",
]
PAGES = ["/", "/r/lobby", "/healthz", "/api/rooms", "/static/app.js", "/r/lobby/", "/static", "/nowhere"]
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(labels, min_size=1, max_size=4).map(".".join)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app_with()) as client:
        yield client


@pytest.mark.parametrize("host", FOREIGN)
@pytest.mark.parametrize("path", PAGES)
def test_a_request_for_another_host_is_refused_with_400(client: TestClient, host: str, path: str) -> None:
    answer = client.get(path, headers={"host": host}, follow_redirects=False)
    assert answer.status_code == 400
    assert answer.text == UNKNOWN_HOST
    assert "CHAT_SERVER_NAMES" in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"  # the security headers still apply


@pytest.mark.parametrize("host", FOREIGN)
def test_a_handshake_for_another_host_is_refused_with_400_even_from_its_own_origin(
    client: TestClient, host: str
) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        chat(client, "name=ann", host=host, origin=f"http://{host}"),
    ):
        pass
    assert refused.value.status_code == 400
    assert "CHAT_SERVER_NAMES" in refused.value.text


@settings(max_examples=budget(200))
@given(dns_names, st.none() | st.integers(1, 65535))
@example("evil.example", 8443)
def test_any_other_name_is_refused_on_every_port(name: str, port: int | None) -> None:
    assume(name != "testserver")
    with TestClient(app_with()) as client:
        host = name if port is None else f"{name}:{port}"
        assert client.get("/healthz", headers={"host": host}).status_code == 400
        with pytest.raises(WebSocketDenialResponse), chat(client, "name=ann", host=host, origin=f"http://{host}"):
            pass


def test_two_host_headers_are_refused(client: TestClient) -> None:
    answer = client.get("/", headers=[("host", "testserver"), ("host", "evil.example")])
    assert answer.status_code == 400


@pytest.mark.parametrize("host", ["testserver", "TESTSERVER", "testserver.", "testserver:80", "testserver:8443"])
def test_the_servers_own_names_are_accepted_in_any_spelling_and_port(client: TestClient, host: str) -> None:
    assert client.get("/healthz", headers={"host": host}).json() == {"status": "ok"}
    with chat(client, "name=ann", host=host, origin=f"http://{host}") as ann:
        assert ann.welcome["name"] == "ann"


@pytest.mark.parametrize(
    ("chat_host", "answers", "refuses"),
    [
        ("127.0.0.1", ["localhost", "127.0.0.1", "[::1]", "LocalHost."], ["chat.example.com", "127.0.0.2", "::1"]),
        ("::1", ["localhost", "127.0.0.1", "[::1]:8443"], ["chat.example.com"]),
        ("chat.example.com", ["chat.example.com", "Chat.Example.Com:8443", "localhost"], ["evil.example.com"]),
        ("192.0.2.7", ["192.0.2.7", "192.0.2.7:8443", "localhost"], ["192.0.2.8", "example.com"]),
        ("2001:db8::7", ["[2001:db8::7]", "[2001:DB8:0::7]:8443", "localhost"], ["[2001:db8::8]"]),
    ],
)
def test_by_default_the_server_answers_to_what_chat_host_implies(
    chat_host: str, answers: list[str], refuses: list[str]
) -> None:
    # The client connects to an address of nobody's: no Host is accepted for being the one it reached.
    app = app_with(host=chat_host, server_names=())
    with TestClient(app, base_url="http://198.51.100.200") as client:
        for host in answers:
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in refuses:
            assert client.get("/healthz", headers={"host": host}).status_code == 400, host


@pytest.mark.parametrize("chat_host", ["0.0.0.0", "::"])
def test_listening_everywhere_the_server_answers_to_the_names_of_its_machine(chat_host: str) -> None:
    hostname = socket.gethostname()
    names = implied_names(chat_host)
    assert hostname in names
    assert socket.getfqdn(hostname) in names
    assert "." in hostname or f"{hostname}.local" in names
    assert set(LOOPBACK_NAMES) <= set(names)
    with TestClient(app_with(host=chat_host, server_names=()), base_url="http://198.51.100.200") as client:
        for host in names:
            shown = f"[{host}]" if ":" in host else host
            assert client.get("/healthz", headers={"host": shown}).status_code == 200, host
        assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400


@pytest.mark.parametrize("address", ["192.0.2.10", "10.1.2.3", "[2001:db8::10]", "[fe80::1]"])
def test_a_host_that_is_the_address_the_connection_reached_is_accepted(address: str) -> None:
    """What someone on the LAN types: no rebinding can produce it (a browser sends the name it looked up)."""
    with TestClient(app_with(server_names=("chat.example.com",)), base_url=f"http://{address}") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"host": "198.51.100.1"}).status_code == 400
        origin = {"origin": f"http://{address}"}
        with client.websocket_connect(f"ws://{address}/ws?name=ann", headers=origin) as websocket:
            assert '"type":"welcome"' in websocket.receive_text()


def test_server_names_take_wildcards_and_any_host() -> None:
    with TestClient(app_with(server_names=("*.Example.com", "chat.example.org", "*.bücher.example"))) as client:
        for host in ("a.example.com", "a.b.EXAMPLE.com", "chat.example.org", "www.xn--bcher-kva.example"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("example.com", "aexample.com", "example.com.evil", "testserver"):
            assert client.get("/healthz", headers={"host": host}).status_code == 400, host
    with TestClient(app_with(server_names=("*",))) as client:
        assert client.get("/healthz", headers={"host": "anything.example"}).status_code == 200


@pytest.mark.parametrize(
    "name", ["chat.example.com:443", "https://chat.example.com", "a b", "*chat.example.com", "a..b", "10.0.0.0/8"]
)
def test_a_server_name_that_could_never_match_is_refused_at_start(name: str) -> None:
    with pytest.raises(ValueError, match=r"server_names: expected host names or addresses without a port"):
        Settings(server_names=(name,))
    with pytest.raises(ValueError, match=r"server_names"):
        Settings.from_env({"CHAT_SERVER_NAMES": f"chat.example.org,{name}"})


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("chat.example.com", "chat.example.com"),
        ("Chat.Example.COM.:8443", "chat.example.com"),
        ("[::1]:8443", "::1"),
        ("[::FFFF:127.0.0.1]", "127.0.0.1"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("::1", None),
        ("[::1", None),
        ("a:b:c", None),
        ("chat.example.com:", None),
        ("chat.example.com:-1", None),
    ],
)
def test_a_host_header_is_read_as_a_browser_would_write_it(header: str, host: str | None) -> None:
    assert host_of(header) == host


# The scheme: an https page opens wss, an http page ws.


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("ws://testserver/ws", "https://testserver"),
        ("ws://testserver/ws", "https://testserver:80"),
        ("ws://testserver:8080/ws", "https://testserver:8080"),
        ("wss://testserver/ws", "http://testserver"),
        ("wss://testserver/ws", "http://testserver:443"),
        ("wss://testserver:8443/ws", "http://testserver:8443"),
    ],
)
def test_an_origin_of_the_right_host_but_the_other_scheme_is_refused(url: str, origin: str) -> None:
    with TestClient(app_with()) as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(f"{url}?name=ann", headers={"origin": origin}),
        ):
            pass
        assert refused.value.code == CloseCode.POLICY_VIOLATION


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("ws://testserver/ws", "http://testserver"),
        ("ws://testserver/ws", "http://TestServer:80"),
        ("ws://testserver:8080/ws", "http://testserver:8080"),
        ("wss://testserver/ws", "https://testserver"),
        ("wss://testserver:8443/ws", "https://testserver:8443"),
    ],
)
def test_an_origin_of_the_right_host_and_scheme_is_accepted(url: str, origin: str) -> None:
    with (
        TestClient(app_with()) as client,
        client.websocket_connect(f"{url}?name=ann", headers={"origin": origin}) as ws,
    ):
        assert '"type":"welcome"' in ws.receive_text()


# Redirects: Starlette's router adds or drops a trailing slash with a redirect built from Host.


OWN = ["testserver", "TESTSERVER:8443", "localhost"]


@pytest.mark.parametrize("host", [*OWN, *FOREIGN])
@pytest.mark.parametrize("path", ["/r/lobby/", "/static", "/healthz/", "/api/rooms/"])
def test_a_redirect_never_names_a_foreign_host(host: str, path: str) -> None:
    with TestClient(app_with(server_names=("testserver", "localhost"))) as client:
        answer = client.get(path, headers={"host": host}, follow_redirects=False)
    if host in OWN:
        assert answer.is_redirect
        assert urlsplit(answer.headers["location"]).hostname in ("testserver", "localhost")
    else:
        assert answer.status_code == 400
