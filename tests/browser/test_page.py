"""The page in a real Chromium: sign on, chat, and see history."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Tabs

pytestmark = pytest.mark.browser


def sign_on(page: Page, name: str, room: str = "lobby") -> None:
    page.get_by_label("Screen name").fill(name)
    page.get_by_label("Room").fill(room)
    page.get_by_role("button", name="Sign on").click()
    expect(page.locator("#status")).to_contain_text(name)


def say(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def test_two_pages_chat_and_a_third_sees_the_history(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(ann, "hello bob")
    say(bob, "hi ann")
    for page in (ann, bob):
        expect(page.locator("#log .message .text")).to_have_text(["hello bob", "hi ann"])
    cy = tabs.open()
    sign_on(cy, "cy")
    expect(cy.locator("#log .message .text")).to_have_text(["hello bob", "hi ann"])
    expect(cy.locator("#log .message .name")).to_have_text(["ann", "bob"])
