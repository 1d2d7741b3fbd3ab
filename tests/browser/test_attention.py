"""Getting the user's attention: the unread count in the title, and sounds when asked for."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import Tabs, say, sign_on, texts

pytestmark = pytest.mark.browser

# Headless Chromium keeps every tab visible (bringing another tab to the front changes
# nothing), so a test hides the page the way the browser would tell it: `document.hidden`,
# `document.visibilityState` and a `visibilitychange` event.
VISIBILITY = """
let hidden = false;
Object.defineProperty(Document.prototype, "hidden", { get: () => hidden, configurable: true });
Object.defineProperty(Document.prototype, "visibilityState", {
  get: () => (hidden ? "hidden" : "visible"),
  configurable: true,
});
window.setHidden = (value) => {
  hidden = value;
  document.dispatchEvent(new Event("visibilitychange"));
};
"""

# Writes the frequency of every tone started on <html data-tones>, where the test can wait
# for it (waiting on a script condition would need eval, which the page's CSP forbids).
TONES = """
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  const root = document.documentElement;
  root.dataset.tones = `${root.dataset.tones ?? ""} ${this.frequency.value}`.trim();
  return start.apply(this, args);
};
"""


def test_the_title_counts_messages_that_arrive_while_the_tab_is_hidden(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    ann.add_init_script(VISIBILITY)
    ann.reload()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    expect(ann).to_have_title("#lobby · chatroom")
    say(bob, "seen at once")
    expect(texts(ann)).to_have_count(1)
    ann.evaluate("setHidden(true)")
    say(bob, "one")
    say(bob, "two")
    expect(ann).to_have_title("(2) #lobby · chatroom")
    say(ann, "my own message does not count")
    expect(texts(ann)).to_have_count(4)
    expect(ann).to_have_title("(2) #lobby · chatroom")
    ann.evaluate("setHidden(false)")
    expect(ann).to_have_title("#lobby · chatroom")


def test_sounds_are_off_until_turned_on_and_then_remembered(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    ann.add_init_script(TONES)
    ann.reload()
    toggle = ann.get_by_label("Sounds")
    expect(toggle).not_to_be_checked()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(bob, "quiet")
    expect(texts(ann)).to_have_count(1)
    tones = ann.locator("html")
    expect(tones).not_to_have_attribute("data-tones", re.compile("."))
    toggle.check()  # a user gesture: the browser lets the page make sounds from now on
    say(bob, "ding")
    expect(tones).to_have_attribute("data-tones", "880")
    bob.close()
    expect(tones).to_have_attribute("data-tones", "880 784 523")  # and a door closing
    ann.reload()
    expect(ann.get_by_label("Sounds")).to_be_checked()
