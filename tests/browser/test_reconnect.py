"""A server restart, or a network blip, in the middle of a conversation: the page comes back by itself."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from bench.server import free_port
from tests.support.browser import Tabs, online, say, sign_on, texts
from tests.support.certificates import Certificates
from tests.support.proxy import BlipProxy
from tests.support.servers import CHATROOM_STACK, Server, run_server, uvicorn_command

pytestmark = pytest.mark.browser

# While the server is down, the page's attempts to reconnect are refused, and Chromium logs
# each refused WebSocket handshake as a console error of its own (no script can prevent
# it). Exactly that message is tolerated here; any other error still fails the test.
REFUSED = (
    r"WebSocket connection to 'wss://127\.0\.0\.1:\d+/ws\?[^']*' failed: "
    r"Error in connection establishment: net::ERR_CONNECTION_REFUSED"
)
# The same, for what the reconnecting page asks over HTTP first (whether it is still signed in).
REFUSED_REQUEST = r"Failed to load resource: net::ERR_CONNECTION_REFUSED"
# Likewise when the network drops a connection before its handshake is through.
CUT_OFF = r"WebSocket connection to 'wss://127\.0\.0\.1:\d+/ws\?[^']*' failed: .*"


@pytest.fixture
def server(certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    """The browser tests' server, on the stack `chatroom` runs. These tests stop servers while
    pages are connected, and plain uvicorn waits up to 10 s for the answer to a WebSocket
    close and 30 s for the answer to a TLS close: on plain uvicorn, 3 stops in 25 took more
    than 15 s here."""
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key, *CHATROOM_STACK)
    with run_server(command, port, tmp_path) as server:
        yield server


def test_after_a_server_restart_the_page_reconnects_and_shows_everything_once(
    tabs: Tabs, certificates: Certificates, tmp_path: Path
) -> None:
    tabs.tolerate(REFUSED)
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(ann, "before the restart")
    say(bob, "me too")
    expect(texts(ann)).to_have_text(["before the restart", "me too"])

    tabs.server.stop()
    for page in (ann, bob):
        expect(page.locator("#status")).to_contain_text("The server is restarting. Reconnecting in")
    say(ann, "said while it was down")
    expect(ann.locator("#composer-error")).to_contain_text("Not connected")
    expect(ann.get_by_label("Message")).to_have_value("said while it was down")  # kept, not lost

    port = tabs.server.port
    (tmp_path / "restarted").mkdir()
    restarted = uvicorn_command(port, certificates.cert, certificates.key, *CHATROOM_STACK)
    with run_server(restarted, port, tmp_path / "restarted"):
        for page, name in ((ann, "ann"), (bob, "bob")):
            # Backoff: the page may have been refused a few times before the server came back.
            expect(page.locator("#status")).to_contain_text(f"Online as {name}", timeout=30_000)
        ann.get_by_label("Message").press("Enter")
        expect(texts(bob)).to_have_text(["before the restart", "me too", "said while it was down"])
        say(bob, "after the restart")
        expected = ["before the restart", "me too", "said while it was down", "after the restart"]
        for page in (ann, bob):
            expect(texts(page)).to_have_text(expected)
            # memory:// lost the history: a new epoch, whose ids start again, after a divider.
            expect(page.locator("#log .divider")).to_have_count(1)


def chat_across_a_blip(proxy: BlipProxy, ann: Page, bob: Page, back_to: int | None = None) -> None:
    """ann, whose page is behind `proxy`, and bob chat; ann's side of her connection drops
    (her next one goes to port `back_to`, if given). Her page takes the name back from the
    old connection, which the server still has, with the token of its welcome, at once and
    without the server's pings, and nobody sees her leave or come back. The token travels
    in a header: no URL the page opens holds it, so no log does."""
    urls: list[str] = []
    ann.on("websocket", lambda socket: urls.append(socket.url))
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(bob, "before the blip")
    expect(texts(ann)).to_have_text(["before the blip"])

    if back_to is not None:
        proxy.target = back_to
    proxy.blip()
    say(bob, "while ann was cut off")
    expect(ann.locator("#status")).to_contain_text("Online as ann")
    expect(texts(ann)).to_have_text(["before the blip", "while ann was cut off"])
    say(ann, "back")
    expect(texts(bob)).to_have_text(["before the blip", "while ann was cut off", "back"])
    expect(online(bob)).to_have_text(["ann", "bob"])
    # Nobody saw ann leave or come back: any such notice would have come before "back".
    expect(bob.locator("#log .notice")).to_have_count(0)
    assert len(urls) >= 2
    assert not [url for url in urls if "token" in url]


def test_after_a_blip_the_page_takes_its_name_back_from_its_old_connection_at_once(tabs: Tabs) -> None:
    tabs.tolerate(REFUSED)  # the proxy stops before the page does, which then tries to reconnect
    tabs.tolerate(REFUSED_REQUEST)
    with BlipProxy(tabs.server.port) as proxy:
        chat_across_a_blip(proxy, tabs.open(origin=proxy.origin), tabs.open())


def test_after_a_blip_onto_another_server_the_page_takes_its_name_over_from_there(
    tabs: Tabs, certificates: Certificates, tmp_path: Path, redis_url: str
) -> None:
    tabs.tolerate(REFUSED)  # the servers stop before the pages do, which then try to reconnect
    tabs.tolerate(REFUSED_REQUEST)
    shared = {"CHAT_BACKEND_URL": redis_url}
    first, second = free_port(), free_port()
    with (
        run_server(uvicorn_command(first, certificates.cert, certificates.key), first, tmp_path, shared),
        run_server(uvicorn_command(second, certificates.cert, certificates.key), second, tmp_path, shared),
        BlipProxy(first) as proxy,
    ):
        # The first server holds ann's name for her old connection; the second, where her
        # page comes back, hands it to her new one through Redis, and the first closes the old.
        ann, bob = tabs.open(origin=proxy.origin), tabs.open(origin=f"https://127.0.0.1:{second}")
        chat_across_a_blip(proxy, ann, bob, back_to=second)


def test_a_page_whose_name_was_taken_while_it_was_away_keeps_trying_for_a_while(
    tabs: Tabs, certificates: Certificates
) -> None:
    tabs.tolerate(CUT_OFF)
    with BlipProxy(tabs.server.port) as proxy:
        ann, bob = tabs.open(origin=proxy.origin), tabs.open()
        sign_on(ann, "ann")
        sign_on(bob, "bob")

        proxy.hold()  # the network stays down a while
        proxy.blip()
        expect(ann.locator("#status")).to_contain_text("Connection lost. Reconnecting")
        proxy.release_ghosts()  # the server finds the old connection dead
        expect(bob.locator("#log .notice")).to_contain_text(["ann left"])
        context = ssl.create_default_context(cafile=str(certificates.ca))
        with connect(tabs.server.url("name=ann"), ssl=context) as impostor:
            proxy.let_through()
            # The name is held, and not for the connection whose token the page shows: the
            # page cannot tell that from its own old connection, so it keeps trying.
            expect(ann.locator("#status")).to_contain_text("Your previous connection is still open")
            say(bob, "while someone else was ann")
            expect(ann.locator("#signon")).to_be_hidden()
            impostor.close()
        expect(ann.locator("#status")).to_contain_text("Online as ann", timeout=20_000)
        expect(texts(ann)).to_have_text(["while someone else was ann"])
