"""Screen names that are yours, on the page: creating an account, staying signed in across a
reload, several tabs of one account, signing out, changing the password, guests marked, and
a server's own settings (no registration, no guests)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from app.backends import create_backend
from app.core.accounts import Accounts
from app.settings import Settings
from bench.server import free_port
from tests.support.browser import Tabs, fill_account, online, register, say, sign_in, sign_on, texts, try_name
from tests.support.certificates import Certificates
from tests.support.servers import CHATROOM_STACK, ROOT, Server, run_server, uvicorn_command

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"  # noqa: S105 - a test account's
NEW_PASSWORD = "staple nine lanterns"  # noqa: S105 - a test account's
SCREENSHOTS = ROOT / "test-results"
# While a server is down, Chromium logs each refused WebSocket handshake (test_reconnect.py).
REFUSED = (
    r"WebSocket connection to 'wss://127\.0\.0\.1:\d+/ws\?[^']*' failed: "
    r"Error in connection establishment: net::ERR_CONNECTION_REFUSED"
)


def status(page: Page) -> Locator:
    return page.locator("#status")


def open_name_menu(page: Page, name: str) -> None:
    page.get_by_role("button", name=f"Signed in as {name}").click()


def stays_stopped(page: Page) -> None:
    """Time passes well beyond any reconnect's delay, and the page does not connect again
    (its connection state changes at once when it tries)."""
    page.clock.fast_forward(120_000)
    assert page.evaluate("document.body.dataset.connection") == "stopped"


def test_an_account_is_created_and_stays_signed_in_across_a_reload(tabs: Tabs) -> None:
    page = tabs.open()
    register(page, "Ann", PASSWORD)
    expect(page.get_by_label("Message")).to_be_focused()
    expect(page.get_by_role("button", name="Signed in as Ann")).to_be_visible()
    say(page, "written before the reload")
    # The session is a cookie no script can read, kept only for this secure origin.
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["secure"]) == ("__Host-chatroom-session", True, True)
    assert page.evaluate("document.cookie") == ""

    page.reload()
    expect(status(page)).to_contain_text("Online as Ann in #lobby")  # with nothing typed
    expect(page.get_by_label("Screen name")).to_be_hidden()
    expect(page.locator("#log .message.own .text")).to_have_text(["written before the reload"])
    expect(page.locator("#online li")).to_have_text(["Ann (you)"])  # an account: no guest tag

    # Out of the room, the form asks for a room only.
    page.get_by_role("button", name="Leave room").click()
    expect(page.locator("#signon-title")).to_have_text("Pick a room")
    expect(page.locator("#signon-hint")).to_have_text("Signed in as Ann.")
    expect(page.get_by_label("Screen name")).to_be_hidden()
    expect(page.get_by_label("Password", exact=True)).to_be_hidden()
    expect(page.get_by_role("button", name="Continue as guest")).to_have_count(0)
    page.get_by_label("Room").fill("den")
    page.get_by_label("Room").press("Enter")
    expect(status(page)).to_contain_text("Online as Ann in #den")


def test_one_account_in_two_tabs_is_online_once(tabs: Tabs) -> None:
    first = tabs.open()
    register(first, "ann", PASSWORD)
    second = tabs.open(beside=first)  # the same browser: the same session
    expect(status(second)).to_contain_text("Online as ann in #lobby")
    guest = tabs.open()
    sign_on(guest, "cy")
    for page in (first, second):
        expect(page.locator("#online li")).to_have_text(["ann (you)", "cy guest"])
        expect(page.locator("#count")).to_have_text("2")
    expect(guest.locator("#online li")).to_have_text(["ann", "cy guest (you)"])
    say(second, "from the second tab")
    for page in (first, second, guest):
        expect(texts(page)).to_have_text(["from the second tab"])
    expect(first.locator("#log .message.own .text")).to_have_text(["from the second tab"])  # ann's, in every tab
    expect(guest.locator("#log .notice")).to_have_count(0)  # nobody joined or left since cy came
    expect(first.locator("#log .notice")).to_have_text([re.compile("^cy joined")])  # and nothing of its own tabs


def test_signing_out_ends_the_session_in_every_tab_of_the_browser(tabs: Tabs) -> None:
    first = tabs.open()
    register(first, "ann", PASSWORD)
    second = tabs.open(beside=first)
    expect(status(second)).to_contain_text("Online as ann")
    second.clock.install()

    open_name_menu(first, "ann")
    first.get_by_role("button", name="Sign out").click()
    expect(first.locator("#signon-message")).to_have_text("Signed out.")
    expect(first.get_by_label("Screen name")).to_have_value("ann")
    expect(first.get_by_label("Password", exact=True)).to_be_focused()
    expect(first.locator("#account")).to_be_hidden()
    expect(first.locator("#chat")).to_be_hidden()

    # The other tab's socket was closed (4401): it goes back to signing in, and stays there.
    expect(second.locator("#signon-message")).to_have_text("Signed out.")
    expect(second.get_by_role("button", name="Sign in")).to_be_visible()
    expect(second.locator("#chat")).to_be_hidden()
    stays_stopped(second)

    first.reload()  # no cookie any more: signed out for good
    expect(first.get_by_role("button", name="Sign in")).to_be_visible()
    expect(status(first)).to_have_text("Signed off")
    sign_in(first, "ann", PASSWORD)


def test_a_guest_is_refused_a_registered_name_and_may_sign_in_with_it(tabs: Tabs) -> None:
    owner = tabs.open()
    register(owner, "ann", PASSWORD, room="den")
    guest = tabs.open()
    try_name(guest, "ANN")  # in another room, and spelt otherwise: the same name
    name = guest.get_by_label("Screen name")
    error = guest.locator("#name-error")
    expect(error).to_contain_text("is registered to an account")
    expect(error).to_contain_text("If it is yours, type its password and sign in.")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(guest.locator("#chat")).to_be_hidden()
    # The hint, followed: with the password, Enter signs in.
    password = guest.get_by_label("Password", exact=True)
    password.fill(PASSWORD)
    password.press("Enter")
    expect(status(guest)).to_contain_text("Online as ann in #lobby")


def test_a_guest_whose_name_is_registered_meanwhile_goes_back_to_sign_on(tabs: Tabs) -> None:
    guest = tabs.open()
    sign_on(guest, "bob")
    guest.clock.install()
    register(tabs.open(), "Bob", PASSWORD, room="den")
    error = guest.locator("#name-error")
    expect(error).to_contain_text("was registered to an account just now")
    expect(error).to_contain_text("If it is yours")
    # Not taken for the page's own old connection, which a reconnect would wait out.
    stays_stopped(guest)
    expect(status(guest)).to_have_text("Signed off")


def test_changing_the_password_signs_out_the_other_devices(tabs: Tabs) -> None:
    tabs.tolerate_answer("/api/account/password", 401)  # the wrong current password, on purpose
    tabs.tolerate_answer("/api/account/password", 400)  # a new password too short, on purpose
    here = tabs.open()
    register(here, "ann", PASSWORD)
    elsewhere = tabs.open()  # another browser: a session of its own
    sign_in(elsewhere, "ann", PASSWORD)
    expect(online(here)).to_have_text(["ann"])
    elsewhere.clock.install()

    open_name_menu(here, "ann")
    here.get_by_role("button", name="Change password").click()
    dialog = here.get_by_role("dialog", name="Change password")
    current, new = dialog.get_by_label("Current password"), dialog.get_by_label("New password")
    expect(current).to_be_focused()
    current.fill("not my password")
    new.fill(NEW_PASSWORD)
    new.press("Enter")
    expect(here.locator("#current-password-error")).to_have_text("That is not your current password.")
    expect(current).to_have_attribute("aria-invalid", "true")
    current.fill(PASSWORD)
    new.fill("short")
    new.press("Enter")
    expect(here.locator("#new-password-error")).to_contain_text("at least 8 characters")
    new.fill(NEW_PASSWORD)
    new.press("Enter")
    expect(here.locator("#password-message")).to_have_text(
        "Your password is changed. Your other tabs and devices were signed out."
    )
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # The other browser's socket was closed (4401): back to signing in, with the reason.
    expect(elsewhere.locator("#signon-message")).to_have_text("Your password was changed.")
    expect(elsewhere.get_by_label("Screen name")).to_have_value("ann")
    expect(elsewhere.get_by_label("Password", exact=True)).to_be_focused()
    stays_stopped(elsewhere)

    # This tab stays signed in, and so does its session.
    say(here, "still here")
    expect(texts(here)).to_have_text(["still here"])
    here.reload()
    expect(status(here)).to_contain_text("Online as ann")

    fill_account(elsewhere, "ann", PASSWORD)
    elsewhere.get_by_role("button", name="Sign in").click()
    expect(elsewhere.locator("#password-error")).to_have_text("The name or the password is wrong.")
    sign_in(elsewhere, "ann", NEW_PASSWORD)
    expect(texts(elsewhere)).to_have_text(["still here"])


def test_guests_are_marked_in_the_online_list_and_on_their_messages(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    register(ann, "ann", PASSWORD)
    sign_on(bob, "bob")
    say(bob, "a guest speaks")
    say(ann, "an account answers")
    for page in (ann, bob):
        expect(texts(page)).to_have_text(["a guest speaks", "an account answers"])
        messages = page.locator("#log .message")
        expect(messages.nth(0).locator(".meta .guest")).to_have_text("guest")
        expect(messages.nth(1).locator(".guest")).to_have_count(0)
    expect(ann.locator("#online li")).to_have_text(["ann (you)", "bob guest"])
    expect(ann.locator("#online .guest")).to_have_attribute("title", "A guest: not signed in to an account")

    cy = tabs.open()
    sign_on(cy, "cy")  # told who is a guest by the welcome, its history included
    expect(cy.locator("#online li")).to_have_text(["ann", "bob guest", "cy guest (you)"])
    expect(cy.locator("#log .message .guest")).to_have_count(1)
    expect(ann.locator("#online li")).to_have_text(["ann (you)", "bob guest", "cy guest"])  # by the join


def test_too_many_wrong_passwords_say_when_to_try_again(tabs: Tabs) -> None:
    tabs.tolerate_answer("/api/session", 429)  # throttled, on purpose
    register(tabs.open(), "ann", PASSWORD)
    page = tabs.open()
    fill_account(page, "ann", "not the password")
    button = page.get_by_role("button", name="Sign in")
    message = page.locator("#signon-message")
    # 5 failures are free, then each attempt waits twice as long as the one before, from 1 s.
    for _ in range(12):
        button.click()
        expect(button).to_be_enabled()  # answered
        if message.text_content():
            break
        expect(page.locator("#password-error")).to_have_text("The name or the password is wrong.")
    expect(message).to_have_text(
        re.compile(r"^Too many failed sign-ins; try again later\. Try again in \d+ seconds?\.$")
    )
    expect(message).to_have_attribute("data-kind", "error")


def test_the_name_menu_works_from_the_keyboard(tabs: Tabs) -> None:
    page = tabs.open(viewport={"width": 1280, "height": 800})
    register(page, "ann", PASSWORD)
    menu = page.get_by_role("button", name="Signed in as ann")
    menu.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("button", name="Change password")).to_be_focused()
    for item in ("Change password", "Sign out"):  # under the name, at the end of the bar
        expect(page.get_by_role("button", name=item)).to_be_in_viewport(ratio=1)
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Change password")).to_be_hidden()
    expect(menu).to_be_focused()
    expect(menu).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign out")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#signon-message")).to_have_text("Signed out.")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_sign_on_and_the_name_menu_fit_a_phone(tabs: Tabs, theme: str) -> None:
    phone = tabs.open(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True, color_scheme=theme)
    expect(phone.get_by_role("button", name="Continue as guest")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    for button in ("Sign in", "Create account", "Continue as guest"):
        expect(phone.get_by_role("button", name=button)).to_be_in_viewport(ratio=1)
    SCREENSHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=SCREENSHOTS / f"sign-on-360px-{theme}.png")

    register(phone, "ann", PASSWORD)
    open_name_menu(phone, "ann")
    for item in ("Change password", "Sign out"):
        expect(phone.get_by_role("button", name=item)).to_be_in_viewport(ratio=1)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    background = phone.evaluate("getComputedStyle(document.getElementById('account-menu')).backgroundColor")
    assert background == {"light": "rgb(255, 255, 255)", "dark": "rgb(20, 20, 24)"}[theme]
    phone.screenshot(path=SCREENSHOTS / f"name-menu-360px-{theme}.png")


# Servers with settings of their own


@pytest.fixture
def server(request: pytest.FixtureRequest, certificates: Certificates, tmp_path: Path) -> Iterator[Server]:
    """The browser tests' server, with the `CHAT_*` settings a test passes as its parameter
    (`indirect`), if any."""
    env: dict[str, str] = getattr(request, "param", {})
    port = free_port()
    with run_server(uvicorn_command(port, certificates.cert, certificates.key), port, tmp_path, env) as server:
        yield server


def add_account(database: Path, name: str, password: str) -> None:
    """What the operator's `chatroom users add` does: an account written into the server's
    database beside it, while it runs."""

    async def add() -> None:
        url = f"sqlite:///{database}"
        settings = Settings(backend_url=url)
        backend = create_backend(url, settings)
        await backend.open()
        accounts = Accounts(backend.accounts, settings, backend.notify)
        try:
            await accounts.add_user(name, password)
        finally:
            accounts.close()
            await backend.close()

    # In a thread of its own: this one's event loop belongs to Playwright.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, add()).result()


@pytest.mark.parametrize("server", [{"CHAT_REGISTRATION": "closed"}], indirect=True)
def test_with_registration_closed_there_is_no_create_account(tabs: Tabs, tmp_path: Path) -> None:
    page = tabs.open()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Continue as guest")).to_be_visible()
    expect(page.get_by_role("button", name="Create account")).to_have_count(0)
    expect(page.locator("#signon-hint")).not_to_contain_text("create an account")
    add_account(tmp_path / "chat.db", "ann", PASSWORD)  # the server's database (run_server)
    sign_in(page, "ann", PASSWORD)
    sign_on(tabs.open(), "bob")  # guests as ever


@pytest.mark.parametrize("server", [{"CHAT_GUESTS": "off"}], indirect=True)
def test_with_guests_off_there_is_no_continue_as_guest(tabs: Tabs) -> None:
    page = tabs.open()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Continue as guest")).to_have_count(0)
    expect(page.locator("#signon-hint")).not_to_contain_text("guest")
    expect(page.locator("#password-hint")).to_be_hidden()
    # Enter signs in, and a password is needed to.
    page.get_by_label("Screen name").fill("ann")
    page.get_by_label("Screen name").press("Enter")
    expect(page.locator("#password-error")).to_have_text("Type your password.")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    register(page, "ann", PASSWORD)
    expect(page.locator("#online li")).to_have_text(["ann (you)"])


def test_a_guest_turned_away_by_a_server_without_guests_is_offered_to_sign_in(
    tabs: Tabs, certificates: Certificates, tmp_path: Path
) -> None:
    tabs.tolerate(REFUSED)  # between the two servers
    port = free_port()
    # On the stack `chatroom` runs: plain uvicorn may wait 10 s for the page's close.
    command = uvicorn_command(port, certificates.cert, certificates.key, *CHATROOM_STACK)
    for folder in ("guests", "no-guests"):
        (tmp_path / folder).mkdir()
    with run_server(command, port, tmp_path / "guests") as first:
        page = tabs.open(origin=first.origin)
        sign_on(page, "bob")
    # The page reconnects by itself, to a server that turns guests away (4401).
    with run_server(command, port, tmp_path / "no-guests", {"CHAT_GUESTS": "off"}):
        message = page.locator("#signon-message")
        expect(message).to_have_text("Sign in to chat here: this server has no guests.", timeout=30_000)
        expect(page.get_by_role("button", name="Continue as guest")).to_have_count(0)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        expect(page.locator("#password-hint")).to_be_hidden()
