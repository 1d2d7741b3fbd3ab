"""Signing on: names refused and explained, names and rooms remembered, rooms by link."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import Tabs, sign_on, texts, try_name

pytestmark = pytest.mark.browser


def test_a_name_already_taken_is_explained_and_another_is_picked_without_reloading(tabs: Tabs) -> None:
    ann, other = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    other.evaluate("window.sameDocument = true")
    try_name(other, "Ann")  # names are compared without case
    name = other.get_by_label("Screen name")
    expect(other.locator("#name-error")).to_contain_text("already online")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_be_focused()
    expect(other.locator("#chat")).to_be_hidden()
    name.fill("ann2")
    name.press("Enter")
    expect(other.locator("#status")).to_contain_text("Online as ann2 in #lobby")
    expect(other.locator("#name-error")).to_have_text("")
    assert other.evaluate("window.sameDocument") is True  # no reload on the way


def test_an_invalid_name_or_room_is_explained_beside_it(tabs: Tabs) -> None:
    page = tabs.open()
    try_name(page, "a\u200bb")  # a zero-width space: not printable
    expect(page.locator("#name-error")).to_contain_text("printable")
    expect(page.get_by_label("Screen name")).to_have_attribute("aria-invalid", "true")
    try_name(page, "ann", "a\u202eb")  # a right-to-left override in the room name
    expect(page.locator("#room-error")).to_contain_text("The room name may contain only printable characters")
    expect(page.locator("#name-error")).to_have_text("")
    expect(page.get_by_label("Room")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Screen name")).not_to_have_attribute("aria-invalid", "true")
    sign_on(page, "ann", "den")


def test_the_name_and_room_are_remembered(tabs: Tabs) -> None:
    page = tabs.open()
    sign_on(page, "ann", "Kitchen")
    expect(page).to_have_url(re.compile(r"/r/kitchen$"))  # as the server spells it: a link to share
    page.goto(tabs.server.origin + "/")
    expect(page.get_by_label("Screen name")).to_have_value("ann")
    expect(page.get_by_label("Room")).to_have_value("kitchen")


@pytest.mark.parametrize("path", ["/r/attic", "/?room=attic"])
def test_a_link_to_a_room_opens_that_room(tabs: Tabs, path: str) -> None:
    page = tabs.open(path)
    expect(page.get_by_label("Room")).to_have_value("attic")
    page.get_by_label("Screen name").fill("ann")
    page.get_by_label("Screen name").press("Enter")
    expect(page.locator("#status")).to_contain_text("Online as ann in #attic")
    expect(page.locator("#room-title")).to_have_text("#attic")
    expect(page).to_have_title("#attic · chatroom")


def test_the_page_works_from_the_keyboard_alone(tabs: Tabs) -> None:
    page = tabs.open()
    expect(page.get_by_label("Screen name")).to_be_focused()
    page.keyboard.type("ann")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.press("Tab")  # no password: Enter continues as a guest
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("den")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Online as ann in #den")
    expect(page.get_by_label("Message")).to_be_focused()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(texts(page)).to_have_text(["typed, not clicked"])
