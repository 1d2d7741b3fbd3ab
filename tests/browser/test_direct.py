"""Instant messages, buddies and away messages in a real Chromium, for two signed-in accounts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from bench.server import free_port
from tests.support.browser import Tabs, online, sign_on
from tests.support.certificates import Certificates
from tests.support.servers import ROOT, run_server, uvicorn_command

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"  # noqa: S105 - the test accounts'
SCREENSHOTS = ROOT / "test-results"


def register(page: Page, name: str) -> None:
    """Create the account from the page's browser, which keeps its session's cookie."""
    origin = page.evaluate("location.origin")
    answer = page.request.post(f"{origin}/api/account", data={"name": name, "password": PASSWORD})
    assert answer.status == 201, answer.text()


def signed_in(tabs: Tabs, name: str, **options: Any) -> Page:
    page = tabs.open("/", **options)
    register(page, name)
    sign_on(page, name)
    return page


def im_log(page: Page) -> Locator:
    return page.locator("#im-log .message .text")


def test_two_accounts_exchange_instant_messages_and_an_away_one_answers_by_itself(tabs: Tabs) -> None:
    ann = signed_in(tabs, "ann", viewport={"width": 1280, "height": 800})
    bob = signed_in(tabs, "bob")
    expect(online(ann)).to_have_text(["ann", "bob"])
    expect(ann.get_by_role("button", name="Write to ann")).to_have_count(0)  # not to oneself
    ann.get_by_role("button", name="Write to bob").click()  # from the online list
    expect(ann.locator("#im-title")).to_have_text("bob")
    box = ann.get_by_label("Write an IM")
    expect(box).to_be_focused()
    box.fill("hi bob, <b>lunch</b>?")
    box.press("Enter")
    expect(im_log(ann)).to_have_text(["hi bob, <b>lunch</b>?"])
    expect(ann.locator("#im-log b")).to_have_count(0)  # text, never markup

    conversation = bob.locator("#conversations li")  # bob's window is closed: the list counts it
    expect(conversation).to_have_text("ann 1 unread")
    expect(bob.locator("#announcer")).to_contain_text("ann: hi bob")
    conversation.get_by_role("button").click()
    expect(im_log(bob)).to_have_text(["hi bob, <b>lunch</b>?"])
    expect(conversation).to_have_text("ann")  # read
    bob.get_by_label("Write an IM").fill("sure")
    bob.get_by_label("Write an IM").press("Enter")
    expect(im_log(ann)).to_have_text(["hi bob, <b>lunch</b>?", "sure"])

    bob.get_by_role("button", name="Away…").click()
    bob.get_by_label("Away note").fill("out to lunch")
    bob.get_by_role("button", name="Go away").click()
    expect(bob.locator("#away-status")).to_have_text("Away: out to lunch")
    expect(ann.locator("#online .away-mark")).to_have_count(1)  # beside bob, in the online list
    expect(ann.locator("#im-status")).to_have_text("away: out to lunch")
    box.fill("are you still there?")
    box.press("Enter")
    expect(im_log(ann)).to_have_text(["hi bob, <b>lunch</b>?", "sure", "are you still there?", "out to lunch"])
    expect(ann.locator("#im-log .message.auto .auto-reply")).to_have_text(["auto reply"])
    box.fill("ok, later")
    box.press("Enter")
    expect(im_log(ann)).to_have_count(5)  # once per away period: no second reply
    expect(im_log(bob)).to_have_count(5)

    SCREENSHOTS.mkdir(exist_ok=True)
    ann.screenshot(path=SCREENSHOTS / "page-instant-message.png")

    bob.get_by_role("button", name="I'm back").click()
    expect(ann.locator("#online .away-mark")).to_have_count(0)
    expect(bob.locator("#away-status")).to_have_text("")


def test_the_buddy_list_shows_who_is_online_anywhere_and_opens_an_im_window(tabs: Tabs) -> None:
    ann = signed_in(tabs, "ann")
    bob = tabs.open("/r/attic")
    register(bob, "bob")
    sign_on(bob, "bob", "attic")  # another room: only the buddy list tells ann
    ann.get_by_label("Add a buddy").fill("BOB")
    ann.get_by_role("button", name="Add buddy").click()
    buddy = ann.locator("#buddies li")
    expect(buddy).to_have_class("buddy online")
    expect(buddy.locator(".buddy-status")).to_have_text("online")
    ann.get_by_label("Add a buddy").fill("nobody")
    ann.get_by_role("button", name="Add buddy").click()
    expect(ann.locator("#buddy-error")).to_contain_text("No account is named 'nobody'")
    buddy.get_by_role("button", name="Write to bob").click()
    ann.get_by_label("Write an IM").fill("found you")
    ann.get_by_label("Write an IM").press("Enter")
    expect(bob.locator("#conversations li")).to_have_text("ann 1 unread")
    bob.close()
    expect(buddy).to_have_class("buddy offline")
    ann.reload()  # the list outlives the page; signed in, the page goes back to the room by itself
    expect(ann.locator("#status")).to_contain_text("Online as ann")
    expect(ann.locator("#buddies li .name")).to_have_text(["bob"])
    expect(ann.locator("#conversations li")).to_have_text("bob")  # read already, in this browser


def test_an_im_window_fits_a_phone(tabs: Tabs) -> None:
    phone = signed_in(tabs, "ann", viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    signed_in(tabs, "bob")
    expect(phone.locator("#buddies")).to_be_hidden()  # folded, as the other lists are
    phone.locator("#people summary").click()
    phone.get_by_role("button", name="Write to bob").click()
    expect(phone.get_by_label("Write an IM")).to_be_in_viewport()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    phone.get_by_label("Write an IM").fill("from my phone")
    phone.get_by_label("Write an IM").press("Enter")
    expect(im_log(phone)).to_have_text(["from my phone"])
    SCREENSHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=SCREENSHOTS / "page-360px-instant-message.png")
    phone.get_by_role("button", name="Close the IM window").click()
    expect(phone.get_by_label("Message")).to_be_in_viewport()


@pytest.fixture
def idle_tabs(browser: Browser, certificates: Certificates, tmp_path: Path) -> Iterator[Tabs]:
    """Tabs on a server whose pages set their account away after a second without a key press
    or a click."""
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path, env={"CHAT_AUTO_AWAY": "1"}) as server:
        tabs = Tabs(browser, server)
        yield tabs
        tabs.close()  # before the server stops, which the pages would log
    assert tabs.errors == []


def test_an_idle_page_goes_away_by_itself_and_comes_back_on_a_key_press(idle_tabs: Tabs) -> None:
    ann = idle_tabs.open()
    register(ann, "ann")
    sign_on(ann, "ann")
    guest = idle_tabs.open()
    sign_on(guest, "gus")
    expect(ann.locator("#away-status")).to_have_text("Away: I am away from my computer right now.")
    expect(guest.locator("#online .away-mark")).to_have_count(1)
    ann.keyboard.press("Shift")
    expect(ann.locator("#away-status")).to_have_text("")
    expect(guest.locator("#online .away-mark")).to_have_count(0)
    expect(guest.locator("#away-control")).to_be_hidden()  # guests have no away message
