"""Moderation in a real Chromium: a moderator bans a guest from the name's menu, and the guest's
page says so and cannot come back; slash commands; the topic; mutes and kicks explained."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import Tabs, online, say, sign_on, texts, try_name

pytestmark = pytest.mark.browser


def moderator(tabs: Tabs, name: str = "Mod") -> Page:
    """A tab signed in to a new account that owns the lobby."""
    page = tabs.open()
    answer = page.request.post(
        f"{tabs.server.origin}/api/account", data={"name": name, "password": "correct horse battery"}
    )
    assert answer.status == 201
    sign_on(page, name)
    say(page, "/claim")
    expect(page.locator("#log .notice.moderation")).to_contain_text([f"{name} claimed the room"])
    return page


def test_a_moderator_bans_a_guest_whose_page_says_so_and_cannot_come_back(tabs: Tabs) -> None:
    mod = moderator(tabs)
    guest = tabs.open()
    sign_on(guest, "troll")
    expect(online(mod)).to_have_text(["Mod", "troll"])
    expect(guest.get_by_label("Actions for Mod")).to_have_count(0)  # a guest may do nothing
    expect(mod.get_by_label("Actions for Mod")).to_have_count(0)  # nor to oneself
    mod.get_by_label("Actions for troll").click()
    mod.get_by_role("button", name="Ban for a day").click()
    banner = guest.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(re.compile(r"Removed from #lobby: Banned from this room until \S+ by Mod"))
    expect(guest.locator("#status")).to_have_attribute("data-state", "stopped")  # no reconnecting
    expect(guest.locator("#status")).to_contain_text("Removed from this room.")
    expect(mod.locator("#log .notice.moderation").last).to_contain_text("Mod banned troll until")
    expect(online(mod)).to_have_text(["Mod"])
    guest.reload()  # and once more, under another name, from the same address
    try_name(guest, "troll2")
    expect(guest.locator("#banner")).to_contain_text("Banned from this room until")
    expect(guest.locator("#status")).to_have_attribute("data-state", "stopped")
    expect(online(mod)).to_have_text(["Mod"])


def test_slash_commands_set_the_topic_mute_and_kick_and_the_pages_say_so(tabs: Tabs) -> None:
    mod = moderator(tabs)
    guest = tabs.open()
    sign_on(guest, "bob")
    say(mod, "/topic Be kind, and on topic")
    for page in (mod, guest):
        expect(page.locator("#topic")).to_have_text("Be kind, and on topic")
    say(mod, "/mute bob 10m shouting")
    expect(guest.locator("#banner")).to_contain_text("You are muted in #lobby until")
    expect(guest.locator("#banner")).to_contain_text("by Mod: shouting")
    say(guest, "HELLO?")
    expect(guest.locator("#composer-error")).to_contain_text("You are muted here")
    expect(guest.get_by_label("Message")).to_have_value("HELLO?")  # given back, not sent
    expect(texts(mod)).to_have_count(0)
    say(mod, "/unmute bob")
    expect(guest.locator("#banner")).to_be_hidden()
    guest.get_by_label("Message").press("Enter")
    expect(texts(mod)).to_have_text(["HELLO?"])
    say(mod, "/help")
    expect(mod.locator("#log .notice.moderation")).to_contain_text(["/ban NAME [1d] [reason]: kick NAME"])
    say(mod, "/frobnicate")
    expect(mod.locator("#composer-error")).to_contain_text("Unknown command /frobnicate")
    expect(mod.get_by_label("Message")).to_have_value("/frobnicate")  # kept, to fix
    mod.get_by_label("Message").fill("//not a command")
    mod.get_by_label("Message").press("Enter")
    expect(texts(guest)).to_have_text(["HELLO?", "/not a command"])
    say(mod, "/kick bob calm down")
    expect(guest.locator("#banner")).to_contain_text("Removed from #lobby: Kicked by Mod: calm down")
    expect(guest.locator("#status")).to_have_attribute("data-state", "stopped")
    guest.get_by_role("button", name="Reconnect").click()  # a kick is not a ban: back by hand
    expect(guest.locator("#status")).to_contain_text("Online as bob")
    expect(guest.locator("#banner")).to_be_hidden()


def test_a_deleted_message_disappears_from_every_open_page_and_from_a_newcomers_history(tabs: Tabs) -> None:
    mod = moderator(tabs)
    guest = tabs.open()
    sign_on(guest, "bob")
    say(mod, "welcome all")
    say(guest, "delete me")
    say(guest, "keep me")
    expect(texts(mod)).to_have_text(["welcome all", "delete me", "keep me"])
    theirs = guest.locator("#log .message").filter(has_text="welcome all")
    theirs.hover()
    expect(theirs.get_by_role("button", name="Delete what Mod wrote")).to_have_count(0)  # not the guest's to delete
    doomed = mod.locator("#log .message").filter(has_text="delete me")
    doomed.hover()
    doomed.get_by_role("button", name="Delete what bob wrote").click()  # a moderator's on every message
    doomed.get_by_role("button", name="Delete it").click()
    for page in (mod, guest):
        expect(texts(page)).to_have_text(["welcome all", "This message was deleted.", "keep me"])
    expect(guest.locator("#log .notice.moderation")).to_contain_text(["Mod deleted a message of bob"])
    newcomer = tabs.open()
    sign_on(newcomer, "cy")
    expect(texts(newcomer)).to_have_text(["welcome all", "This message was deleted.", "keep me"])
    expect(newcomer.locator("#log")).not_to_contain_text("delete me")
