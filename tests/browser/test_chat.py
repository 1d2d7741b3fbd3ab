"""Chatting in a real Chromium: messages, presence, text that stays text, the rooms list."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import Tabs, online, say, sign_on, texts

pytestmark = pytest.mark.browser


def test_two_people_chat_and_a_newcomer_sees_the_history(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(ann, "hello bob")
    say(bob, "hi ann")
    for page in (ann, bob):
        expect(texts(page)).to_have_text(["hello bob", "hi ann"])
        expect(page.locator("#log .message .name")).to_have_text(["ann", "bob"])
    expect(ann.locator("#log .message.own .text")).to_have_text(["hello bob"])  # own messages set apart
    expect(bob.locator("#log .message.own .text")).to_have_text(["hi ann"])
    cy = tabs.open()
    sign_on(cy, "cy")
    expect(texts(cy)).to_have_text(["hello bob", "hi ann"])
    expect(cy.locator("#log .message.own")).to_have_count(0)


def test_the_online_list_follows_joins_and_leaves(tabs: Tabs) -> None:
    ann = tabs.open()
    sign_on(ann, "ann")
    expect(online(ann)).to_have_text(["ann"])
    expect(ann.locator("#count")).to_have_text("1")
    bob = tabs.open()
    sign_on(bob, "bob")
    for page in (ann, bob):
        expect(online(page)).to_have_text(["ann", "bob"])
        expect(page.locator("#count")).to_have_text("2")
    expect(ann.locator("#log .notice.join")).to_contain_text(["bob joined"])
    bob.close()
    expect(online(ann)).to_have_text(["ann"])
    expect(ann.locator("#count")).to_have_text("1")
    expect(ann.locator("#log .notice.leave")).to_contain_text(["bob left"])
    expect(ann.locator("#announcer")).to_contain_text("bob left")


def test_markup_in_a_message_is_shown_as_text(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    markup = "<img src=x onerror=alert(1)> <b>not bold</b>"
    say(ann, markup)
    for page in (ann, bob):
        expect(texts(page)).to_have_text([markup])
        expect(page.locator("#log img, #log b")).to_have_count(0)
    # An alert would have been a dialog, which the fixture counts as a failure.


def test_shift_enter_makes_a_new_line_that_everyone_sees(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    box = ann.get_by_label("Message")
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")  # not sent yet
    box.press("Enter")
    expect(box).to_have_value("")
    for page in (ann, bob):
        text = texts(page)
        expect(text).to_have_count(1)
        assert text.inner_text() == "first line\nsecond line"  # as rendered: a space would do otherwise


def test_nothing_empty_is_sent(tabs: Tabs) -> None:
    ann = tabs.open()
    sign_on(ann, "ann")
    say(ann, "   \n  ")
    say(ann, "something")
    expect(texts(ann)).to_have_text(["something"])


def test_web_links_are_links_and_nothing_else_is(tabs: Tabs) -> None:
    ann = tabs.open()
    sign_on(ann, "ann")
    text = "see https://example.com/a_(b). or javascript:alert(1) or http://example.org/x?y=1, done"
    say(ann, text)
    links = ann.locator("#log .message .text a")
    expect(links).to_have_text(["https://example.com/a_(b)", "http://example.org/x?y=1"])
    expect(links.first).to_have_attribute("href", "https://example.com/a_(b)")
    for link in links.all():
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(link).to_have_attribute("target", "_blank")
    expect(texts(ann)).to_have_text([text])


def test_the_rooms_list_shows_active_rooms_and_moves_between_them(tabs: Tabs) -> None:
    bob, cy, ann = tabs.open(), tabs.open(), tabs.open()
    ann.clock.install()  # the list is asked for again every 15 s: the test need not wait that long
    sign_on(bob, "bob", "den")
    sign_on(cy, "cy", "den")
    say(bob, "welcome to the den")
    sign_on(ann, "ann", "attic")
    rooms = ann.locator("#rooms li")
    expect(rooms).to_have_text(["den 2 online", "attic 1 online"])  # the busiest first
    dee, eve = tabs.open(), tabs.open()
    sign_on(dee, "dee", "cellar")
    sign_on(eve, "eve", "cellar")
    ann.clock.fast_forward(16_000)
    expect(rooms).to_have_text(["cellar 2 online", "den 2 online", "attic 1 online"])
    ann.get_by_role("link", name="den").click()
    expect(ann.locator("#status")).to_contain_text("Online as ann in #den")
    expect(texts(ann)).to_have_text(["welcome to the den"])
    expect(online(ann)).to_have_text(["ann", "bob", "cy"])
    expect(rooms).to_have_text(["den 3 online", "cellar 2 online"])
    expect(ann.locator("#rooms a[aria-current=page]")).to_have_text("den")
    expect(ann).to_have_url(re.compile(r"/r/den$"))


def test_the_counter_appears_near_the_size_limit_and_too_long_is_not_sent(tabs: Tabs) -> None:
    ann = tabs.open()
    sign_on(ann, "ann")
    box, counter = ann.get_by_label("Message"), ann.locator("#counter")
    box.fill("short")
    expect(counter).to_have_text("")
    box.fill("x" * 4000)  # the frame around it takes 28 bytes of the 4096
    expect(counter).to_have_text("68 bytes left")
    box.fill("é" * 2100)  # two bytes each in UTF-8
    expect(counter).to_have_text("132 bytes too many")
    expect(box).to_have_attribute("aria-invalid", "true")
    box.press("Enter")
    expect(ann.locator("#composer-error")).to_contain_text("Too long by 132 bytes")
    expect(box).to_have_value("é" * 2100)  # kept, to be shortened
    expect(texts(ann)).to_have_count(0)


def test_a_message_over_the_rate_limit_comes_back_with_the_reason(tabs: Tabs) -> None:
    ann = tabs.open()
    sign_on(ann, "ann")
    # Faster than anyone types: a burst of 10 is allowed, then about 5 a second.
    ann.evaluate(
        """() => {
            const box = document.getElementById("text");
            for (let number = 1; number <= 12; number++) {
                box.value = `message ${number}`;
                box.form.requestSubmit();
            }
        }"""
    )
    expect(ann.locator("#composer-error")).to_contain_text("Slow down")
    expect(ann.get_by_label("Message")).to_have_value("message 12")  # back in the box, to send again
