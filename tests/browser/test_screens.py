"""The page on a phone (360 px wide) and on a desktop, with screenshots of both for people to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import Tabs, online, register, say, sign_on, texts
from tests.support.servers import ROOT

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "test-results"  # ignored by git; docs/screenshot.png is a copy of one


def test_a_conversation_fits_a_phone_and_a_desktop(tabs: Tabs) -> None:
    desktop = tabs.open(viewport={"width": 1280, "height": 800})
    phone = tabs.open(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    register(desktop, "ann", "correct horse battery")  # signed in, beside a guest
    sign_on(phone, "bob")
    say(desktop, "Anyone up for lunch? The menu is at https://example.com/menu")
    say(phone, "Yes!\nGive me ten minutes.")
    say(desktop, "Great, see you at the door.")
    for page in (desktop, phone):
        expect(texts(page)).to_have_count(3)

    # Nothing is wider than the phone, and the lists fold away above the conversation.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    expect(phone.locator("#online")).to_be_hidden()
    expect(phone.get_by_label("Message")).to_be_in_viewport()
    phone.locator("#people summary").click()
    expect(online(phone)).to_have_text(["ann", "bob"])
    phone.locator("#people summary").click()

    SCREENSHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=SCREENSHOTS / "page-360px.png")
    desktop.screenshot(path=SCREENSHOTS / "page-desktop.png")


def test_the_theme_follows_the_system_setting(tabs: Tabs) -> None:
    light, dark = tabs.open(color_scheme="light"), tabs.open(color_scheme="dark")
    background = "getComputedStyle(document.body).backgroundColor"
    assert light.evaluate(background) == "rgb(255, 255, 255)"
    assert dark.evaluate(background) == "rgb(20, 20, 24)"
