"""What a user does on the page, for the browser tests."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect


def sign_on(page: Page, name: str, room: str = "lobby") -> None:
    """Sign on and wait until the page is in the room."""
    try_name(page, name, room)
    expect(page.locator("#status")).to_contain_text(f"Online as {name}")


def try_name(page: Page, name: str, room: str = "lobby") -> None:
    page.get_by_label("Screen name").fill(name)
    page.get_by_label("Room").fill(room)
    page.get_by_role("button", name="Sign on").click()


def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")


def texts(page: Page) -> Locator:
    """The text of every message shown, in order."""
    return page.locator("#log .message .text")


def online(page: Page) -> Locator:
    return page.locator("#online .name")
