"""A name in letters other than Latin ones shows its scripts beside it, in the lists and on messages."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import Tabs, online, say, sign_on
from tests.support.servers import ROOT

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "test-results"


def test_a_name_not_in_latin_letters_alone_is_tagged_with_its_scripts(tabs: Tabs) -> None:
    klub = tabs.open()
    sign_on(klub, "bob", "\u043a\u043b\u0443\u0431")  # клуб: a room named in Cyrillic, listed for the others
    ann, anya, mixed, sakura = tabs.open(), tabs.open(), tabs.open(), tabs.open()
    sign_on(ann, "Zo\u00eb")  # Latin, with a diaeresis: no tag
    sign_on(anya, "\u0430\u043d\u044f")  # аня, all Cyrillic
    sign_on(mixed, "Dmitr\u0438\u0439")  # Dmitrий: Latin, then two Cyrillic letters
    sign_on(sakura, "\u3055\u304f\u3089 7")  # さくら, Hiragana, and a digit every script shares
    for page in (ann, anya, mixed, sakura):
        expect(online(page)).to_have_count(4)
    people = ann.locator("#online li")
    expect(people).to_have_text(  # the scripts' tag beside a guest's own
        [
            "Dmitr\u0438\u0439 Latin + Cyrillic guest",
            "Zo\u00eb guest (you)",
            "\u0430\u043d\u044f Cyrillic guest",
            "\u3055\u304f\u3089 7 Hiragana guest",
        ]
    )
    expect(online(ann)).to_have_text(["Dmitr\u0438\u0439", "Zo\u00eb", "\u0430\u043d\u044f", "\u3055\u304f\u3089 7"])
    tags = ann.locator("#online .script")
    expect(tags).to_have_count(3)
    expect(tags.nth(0)).to_have_attribute("title", "Written in Latin and Cyrillic letters: more than one script")
    expect(tags.nth(1)).to_have_attribute("title", "Written in Cyrillic letters")

    say(mixed, "it is me, honest")
    say(ann, "hi")
    message = ann.locator("#log .message")
    expect(message.locator(".name")).to_have_text(["Dmitr\u0438\u0439", "Zo\u00eb"])
    expect(message.nth(0).locator(".meta .script")).to_have_text("Latin + Cyrillic")
    expect(message.nth(1).locator(".script")).to_have_count(0)

    expect(ann.locator("#rooms li").filter(has_text="\u043a\u043b\u0443\u0431")).to_contain_text("Cyrillic")
    expect(ann.locator("#rooms li").filter(has_text="lobby").locator(".script")).to_have_count(0)

    SCREENSHOTS.mkdir(exist_ok=True)
    ann.screenshot(path=SCREENSHOTS / "names-in-other-scripts.png")
