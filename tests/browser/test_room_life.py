"""Room life in the page, in a real Chromium: the line at the first unread after a reload (and
on another device of an account), a notification for a mention while the page is hidden,
edits, deletions and reactions, who is typing, and search with a message read in context."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from bench.server import free_port
from tests.support.browser import Tabs, register, say, sign_in, sign_on, texts
from tests.support.certificates import Certificates
from tests.support.servers import Server, run_server, uvicorn_command

pytestmark = pytest.mark.browser

# As in test_attention.py: headless Chromium keeps every tab visible, so a test hides the
# page the way the browser would tell it.
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

# Writes the title of every notification Chromium shows on <html data-notified>, where the
# test can wait for it (the page's CSP forbids the eval a script condition would need).
NOTIFICATIONS = """
const Real = window.Notification;
class Watched extends Real {
  constructor(title, options) {
    super(title, options);
    this.addEventListener("show", () => {
      const root = document.documentElement;
      root.dataset.notified = `${root.dataset.notified ?? ""}|${title}`;
    });
  }
}
window.Notification = Watched;
"""


@pytest.fixture
def server(certificates: Certificates, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A real server whose welcome holds the latest 20 messages (what fills the view: the page
    loads no older ones by itself), with no rate limit: a test says a lot at once. A test may
    add settings (parametrized indirectly)."""
    port = free_port()
    command = uvicorn_command(port, certificates.cert, certificates.key)
    env = {"CHAT_WELCOME_HISTORY": "20", "CHAT_RATE_LIMIT": "0", **getattr(request, "param", {})}
    with run_server(command, port, tmp_path, env=env) as server:
        yield server


@pytest.fixture
def tabs(browser: Browser, server: Server) -> Iterator[Tabs]:
    tabs = Tabs(browser, server)
    yield tabs
    tabs.close()
    assert tabs.errors == []


def message(page: Page, text: str) -> Locator:
    return page.locator("#log .message").filter(has_text=text)


def test_the_line_above_the_first_unread_message_after_a_reload(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    ann.add_init_script(VISIBILITY)
    ann.reload()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(bob, "read already")
    expect(texts(ann)).to_have_count(1)  # seen: the page is visible, at the bottom
    ann.evaluate("setHidden(true)")
    say(bob, "new one")
    say(bob, "new two")
    expect(texts(ann)).to_have_count(3)
    expect(ann.locator(".unread-line")).to_have_count(0)
    ann.reload()  # what it had read is remembered in this browser
    sign_on(ann, "ann")
    expect(texts(ann)).to_have_count(3)
    line = ann.locator(".unread-line")
    expect(line).to_have_count(1)
    expect(line).to_have_text("New since you left")
    expect(message(ann, "new one").locator(".unread-line")).to_have_count(1)  # above the first unread
    ann.reload()  # read now, to the end: nothing new since
    sign_on(ann, "ann")
    expect(texts(ann)).to_have_count(3)
    expect(ann.locator(".unread-line")).to_have_count(0)


def test_a_button_jumps_up_to_the_line_when_it_is_out_of_view(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    ann.add_init_script(VISIBILITY)
    ann.reload()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(bob, "read already")
    expect(texts(ann)).to_have_count(1)
    ann.evaluate("setHidden(true)")
    away = [f"while away {number}\n{'more of it' * 3}" for number in range(19)]
    for text in away:
        say(bob, text)
    expect(texts(ann)).to_have_count(20)
    ann.reload()
    sign_on(ann, "ann")
    expect(texts(ann)).to_have_count(20)
    line = ann.locator(".unread-line")
    expect(line).not_to_be_in_viewport()  # the page shows the newest, at the bottom
    jump = ann.get_by_role("button", name="New since you left")
    jump.click()
    expect(line).to_be_in_viewport()
    expect(jump).to_be_hidden()


def test_an_account_finds_the_line_where_it_read_on_another_device(tabs: Tabs) -> None:
    laptop, bob = tabs.open(), tabs.open()
    laptop.add_init_script(VISIBILITY)
    laptop.reload()
    register(laptop, "ann", "correct horse battery")
    sign_on(bob, "bob")
    say(bob, "read on the laptop")
    expect(texts(laptop)).to_have_count(1)  # shown at the bottom of a visible page: reported read
    say(laptop, "ok")  # after the report on the same connection: once bob has it, so has the server
    expect(texts(bob)).to_have_count(2)
    laptop.evaluate("setHidden(true)")
    say(bob, "while away")
    expect(texts(laptop)).to_have_count(3)
    phone = tabs.open()  # another browser: nothing remembered in it, only what the server kept
    sign_in(phone, "ann", "correct horse battery")
    expect(texts(phone)).to_have_count(3)
    expect(phone.locator(".unread-line")).to_have_count(1)
    expect(message(phone, "while away").locator(".unread-line")).to_have_count(1)


def test_a_mention_while_the_page_is_hidden_raises_a_notification(tabs: Tabs) -> None:
    ann = tabs.open(permissions=["notifications"])
    bob = tabs.open()
    ann.add_init_script(VISIBILITY)
    ann.add_init_script(NOTIFICATIONS)
    ann.reload()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    ann.get_by_label("Notifications").check()  # the user turns them on: the browser allows
    ann.evaluate("setHidden(true)")
    say(bob, "nothing for ann here")
    say(bob, "hey @ann, look")
    root = ann.locator("html")
    expect(root).to_have_attribute("data-notified", "|bob mentioned you in #lobby")
    expect(ann).to_have_title("(2, @1) #lobby · chatroom")
    mention = message(ann, "hey @ann").locator(".mention.me")
    expect(mention).to_have_text("@ann")
    expect(message(bob, "hey @ann").locator(".mention")).to_have_text("@ann")  # highlighted for everyone
    ann.evaluate("setHidden(false)")
    expect(ann).to_have_title("#lobby · chatroom")
    say(bob, "@ann again, seen")  # visible: no notification
    expect(texts(ann)).to_have_count(3)
    expect(root).to_have_attribute("data-notified", "|bob mentioned you in #lobby")


def test_an_instant_message_while_the_page_is_hidden_raises_a_notification(tabs: Tabs) -> None:
    ann = tabs.open(permissions=["notifications"])
    ann.add_init_script(VISIBILITY)
    ann.add_init_script(NOTIFICATIONS)
    ann.reload()
    register(ann, "ann", "correct horse battery")
    bob = tabs.open()
    register(bob, "bob", "correct horse battery")
    ann.get_by_label("Notifications").check()
    ann.evaluate("setHidden(true)")
    bob.get_by_role("button", name="Write to ann").click()
    box = bob.get_by_label("Write an IM")
    box.fill("a word for you alone")
    box.press("Enter")
    expect(ann.locator("html")).to_have_attribute("data-notified", "|bob wrote to you")
    expect(ann).to_have_title("(1, @1) #lobby · chatroom")  # as much for ann as a mention


def test_edits_deletions_and_reactions_reach_the_others(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    say(ann, "helo")
    say(ann, "regret this")
    expect(texts(bob)).to_have_count(2)
    mine = message(ann, "helo")
    mine.hover()
    mine.get_by_role("button", name="Edit", exact=True).click()
    box = ann.get_by_label("New text")
    box.fill("hello")
    box.press("Enter")
    expect(message(bob, "hello").locator(".text")).to_have_text("hello")
    expect(message(bob, "hello").locator(".edited")).to_have_text("(edited)")
    regret = message(ann, "regret this")
    regret.hover()
    regret.get_by_role("button", name="Delete what ann wrote").click()
    regret.get_by_role("button", name="Delete it").click()
    expect(bob.locator("#log .message.deleted .text")).to_have_text("This message was deleted.")
    theirs = message(bob, "hello")
    theirs.hover()
    theirs.get_by_role("button", name="React", exact=True).click()
    theirs.get_by_role("button", name="React with 👍").click()
    expect(message(ann, "hello").locator(".reaction")).to_have_text("👍 1")
    expect(message(bob, "hello").get_by_role("button", name="Edit", exact=True)).to_have_count(0)  # not bob's
    expect(message(bob, "hello").get_by_role("button", name="Delete what ann wrote")).to_have_count(0)


@pytest.mark.parametrize("server", [{"CHAT_EDIT_WINDOW": "4"}], indirect=True)
def test_the_edit_button_goes_when_the_edit_window_ends(tabs: Tabs) -> None:
    ann = tabs.open()
    sign_on(ann, "ann")
    say(ann, "quick")
    edit = message(ann, "quick").get_by_role("button", name="Edit", exact=True)
    expect(edit).to_have_count(1)
    expect(edit).to_have_count(0, timeout=8000)  # without a reload: the server would answer too_late


def test_who_is_typing_shows_under_the_conversation_until_they_send(tabs: Tabs) -> None:
    ann, bob = tabs.open(), tabs.open()
    sign_on(ann, "ann")
    sign_on(bob, "bob")
    ann.get_by_label("Message").press_sequentially("hel")
    expect(bob.locator("#typing")).to_have_text("ann is typing…")
    expect(ann.locator("#typing")).to_have_text("")
    ann.get_by_label("Message").press("Enter")
    expect(texts(bob)).to_have_text(["hel"])
    expect(bob.locator("#typing")).to_have_text("")


def test_search_marks_the_words_and_shows_a_message_in_context(tabs: Tabs) -> None:
    bob = tabs.open()
    sign_on(bob, "bob")
    said = ["an apple pie", *[f"then {number}" for number in range(30)]]
    for text in said:
        say(bob, text)
    expect(texts(bob)).to_have_count(len(said))
    cy = tabs.open()
    sign_on(cy, "cy")
    expect(texts(cy)).to_have_count(20)  # the welcome's latest: the pie is older, the server's alone
    cy.get_by_role("button", name="Search").first.click()
    cy.get_by_label("Search for").fill("APPLE")
    cy.get_by_label("Search for").press("Enter")
    results = cy.locator("#search-results .result")
    expect(results).to_have_count(1)
    expect(results.locator("mark")).to_have_text("apple")
    results.get_by_role("button").click()  # not in the conversation: read around it
    expect(cy.locator("#search-status")).to_have_text("In context:")
    expect(cy.locator("#search-results .result.found .text")).to_have_text("an apple pie")
    expect(cy.locator("#search-results .result")).to_have_count(11)  # it, and the ten after it
    expect(texts(cy)).to_have_count(20)  # the conversation is as it was
    cy.get_by_role("button", name="Back to the results").click()
    expect(results).to_have_count(1)
    cy.get_by_label("Search for").fill("then 29")
    cy.get_by_label("Search for").press("Enter")
    expect(results).to_have_count(1)
    results.get_by_role("button").click()  # in the conversation: shown there
    expect(message(cy, "then 29")).to_have_class(re.compile(r"\bfound\b"))
