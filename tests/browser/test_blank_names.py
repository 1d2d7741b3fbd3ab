"""What the name rule counts as something to see, Chromium draws; what it does not, it does not."""

from __future__ import annotations

import random
import unicodedata

import pytest
from playwright.sync_api import Page

from app.core.names import InvalidName, clean_name
from tests.support.browser import Tabs

pytestmark = pytest.mark.browser

SAMPLE = 3000  # of some 140,000: drawing every one takes Chromium 40 s here
BLANKS = [0x2800, 0xFFFC]  # BRAILLE PATTERN BLANK, OBJECT REPLACEMENT CHARACTER

# Draws each character alone in a cell of a canvas, in the page's own font, and returns the
# code points whose cell has not one pixel of ink.
DRAW = """(codes) => {
  const CELL = 40, PER = 50, SIDE = CELL * PER;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = SIDE;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const font = getComputedStyle(document.body).fontFamily;
  const blank = [];
  for (let start = 0; start < codes.length; start += PER * PER) {
    const batch = codes.slice(start, start + PER * PER);
    context.clearRect(0, 0, SIDE, SIDE);
    context.font = `16px ${font}`;
    context.textBaseline = "middle";
    batch.forEach((code, i) => {
      const x = (i % PER) * CELL, y = Math.floor(i / PER) * CELL;
      context.save();
      context.beginPath();
      context.rect(x, y, CELL, CELL);
      context.clip();
      context.fillText(String.fromCodePoint(code), x + 4, y + CELL / 2);
      context.restore();
    });
    const pixels = context.getImageData(0, 0, SIDE, SIDE).data;
    batch.forEach((code, i) => {
      const x0 = (i % PER) * CELL, y0 = Math.floor(i / PER) * CELL;
      for (let y = y0; y < y0 + CELL; y++) {
        for (let x = x0; x < x0 + CELL; x++) if (pixels[(y * SIDE + x) * 4 + 3]) return;
      }
      blank.push(code);
    });
  }
  return blank;
}"""


def blank(page: Page, codes: list[int]) -> list[int]:
    drawn: list[int] = page.evaluate(DRAW, codes)
    return drawn


def names_of_one_character() -> list[int]:
    """Every character that is a name by itself: what the rule counts as something to see."""
    codes = []
    for code in range(0x110000):
        if unicodedata.category(chr(code))[0] in "LNPS":
            try:
                clean_name(chr(code))
            except InvalidName:
                continue
            codes.append(code)
    return codes


def test_every_character_that_is_a_name_by_itself_draws_something(tabs: Tabs) -> None:
    page = tabs.open()
    codes = names_of_one_character()
    assert len(codes) > 130_000
    sample = sorted(random.Random(0).sample(codes, SAMPLE))  # the same every run
    assert blank(page, sample) == []


def test_the_characters_that_draw_nothing_are_no_name_by_themselves(tabs: Tabs) -> None:
    page = tabs.open()
    assert blank(page, [0x20, *BLANKS, ord("a")]) == [0x20, *BLANKS]  # as drawn, for the rule's list
    for code in BLANKS:
        with pytest.raises(InvalidName, match="that can be seen"):
            clean_name(chr(code) * 3)
        assert clean_name(f"a{chr(code)}") == f"a{chr(code)}"  # beside something to see, they may stay
