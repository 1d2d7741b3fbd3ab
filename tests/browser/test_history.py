"""History the page pages back through, and reconnects that leave no hole and no duplicate.

The server side of paging and resume is not built yet: these tests play it in the browser
(tests/browser/fake_server.py), along with a server that does not page at all.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import Tabs, sign_on, texts
from tests.support.fake_server import FakeServer

pytestmark = pytest.mark.browser


def shown_ids(page: Page) -> list[int]:
    ids: list[int] = page.locator("#log .message").evaluate_all("items => items.map(item => Number(item.dataset.id))")
    return ids


def scroll_to_top(page: Page) -> None:
    page.locator("#scroller").evaluate("scroller => { scroller.scrollTop = 0 }")


def test_a_reconnect_resumes_after_the_last_message_and_pages_back_over_a_gap(tabs: Tabs) -> None:
    page = tabs.open()
    server = FakeServer(page)
    server.add(5)
    sign_on(page, "ann")
    expect(texts(page)).to_have_count(5)
    expect(page.locator("#older")).to_be_hidden()  # asked once: nothing before the first
    server.drop()
    server.add(250)  # while the page is away: more than the welcome replays
    expect(texts(page)).to_have_count(255)
    assert shown_ids(page) == list(range(1, 256))
    assert re.search(r"[?&]since=5(&|$)", server.urls[-1])
    assert [request["before"] for request in server.asked] == [1, 156, 56]
    expect(page.locator("#status")).to_contain_text("Online as ann")


def test_a_server_that_ignores_since_leaves_no_duplicates_either(tabs: Tabs) -> None:
    page = tabs.open()
    server = FakeServer(page, pages=False)
    server.add(5)
    sign_on(page, "ann")
    expect(page.locator("#older")).to_be_hidden()  # refused: not asked again on this connection
    server.drop()
    server.add(3)  # the welcome holds all 8 again
    expect(page.locator("#status")).to_contain_text("Online as ann")
    expect(texts(page)).to_have_count(8)
    assert shown_ids(page) == list(range(1, 9))
    expect(page.locator("#older")).to_be_hidden()
    assert len(server.asked) == 2  # once per connection
    expect(page.locator("#composer-error")).to_have_text("")  # the refusal is not the user's business


def test_reaching_the_top_loads_older_messages_and_keeps_the_place(tabs: Tabs) -> None:
    page = tabs.open()
    server = FakeServer(page)
    server.add(250)
    sign_on(page, "ann")
    expect(texts(page)).to_have_count(100)
    expect(page.locator("#older")).not_to_be_in_viewport()
    scroll_to_top(page)
    expect(texts(page)).to_have_count(200)
    expect(page.locator('#log [data-id="151"]')).to_be_in_viewport()  # what was at the top still is
    scroll_to_top(page)
    expect(texts(page)).to_have_count(250)
    expect(page.locator("#older")).to_be_hidden()  # the first message is shown
    assert shown_ids(page) == list(range(1, 251))
    assert [request["before"] for request in server.asked] == [151, 51]


def test_a_restarted_server_with_a_new_epoch_adds_to_what_was_shown(tabs: Tabs) -> None:
    page = tabs.open()
    server = FakeServer(page)
    server.add(3, "before")
    sign_on(page, "ann")
    expect(texts(page)).to_have_count(3)
    server.drop()
    server.restart("epoch-2")
    server.add(2, "after")  # ids 1 and 2 again, other messages
    expect(texts(page)).to_have_text(["before 1", "before 2", "before 3", "after 1", "after 2"])
    expect(page.locator("#log .divider")).to_have_count(1)
    # Resuming after id 3 of the old epoch missed ids 1 and 2 of the new one: asked for.
    assert server.asked[-1]["before"] == 4


def test_a_history_that_lost_its_end_shows_each_message_once(tabs: Tabs) -> None:
    """As after the server's Redis came back from an older snapshot: the server restarts the
    connection (1012), and its new epoch has the first messages again, then others."""
    page = tabs.open()
    server = FakeServer(page)
    server.add(5, "before")
    sign_on(page, "ann")
    expect(texts(page)).to_have_count(5)
    server.drop(1012, "The chat's history started anew: reconnect")
    server.restart("epoch-2", keep=3)
    server.add(2, "after")  # ids 4 and 5 again, other messages
    expect(page.locator("#status")).to_contain_text("Online as ann")
    # Above the divider what the server no longer has; below it, its history as it is now.
    expected = ["before 4", "before 5", "before 1", "before 2", "before 3", "after 4", "after 5"]
    expect(texts(page)).to_have_text(expected)
    divider = page.locator("#log > li").nth(2)
    expect(divider).to_have_class(re.compile(r"\bdivider\b"))
    expect(page.locator("#log .divider")).to_have_count(1)
    assert re.search(r"[?&]since=5&epoch=epoch-1(&|$)", server.urls[-1])


def test_new_messages_below_the_reader_are_announced_by_a_marker(tabs: Tabs) -> None:
    page = tabs.open()
    server = FakeServer(page)
    server.add(60)
    sign_on(page, "ann")
    last = page.locator('#log [data-id="60"]')
    expect(last).to_be_in_viewport()
    server.say("while at the bottom")
    expect(page.locator('#log [data-id="61"]')).to_be_in_viewport()  # followed
    expect(page.locator("#jump")).to_be_hidden()
    page.locator('#log [data-id="30"]').scroll_into_view_if_needed()
    server.say("while reading further up")
    expect(page.locator("#jump")).to_be_visible()
    expect(page.locator('#log [data-id="62"]')).not_to_be_in_viewport()  # the reader's place is kept
    page.locator("#jump").click()
    expect(page.locator('#log [data-id="62"]')).to_be_in_viewport()
    expect(page.locator("#jump")).to_be_hidden()
    expect(page.get_by_label("Message")).to_be_focused()
