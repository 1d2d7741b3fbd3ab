"""Screen names, property by property: what any string becomes, and which names are the same."""

from __future__ import annotations

import asyncio
import unicodedata

import pytest
from hypothesis import assume, example, given, reject, settings
from hypothesis import strategies as st

from app.backends.memory import MemoryBackend
from app.core.hub import Hub, NameTaken
from app.core.names import MAX_NAME_LENGTH, InvalidName, clean_name, name_key
from app.settings import Settings
from tests.support.fakes import FakeConnection
from tests.support.properties import budget

# Bidi controls (embeddings, overrides, isolates, marks) and other invisible format characters.
BIDI_AND_FORMAT = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200d\u2060\ufeff"
CONTROLS = [chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))]

any_text = st.text(st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=40)
ascii_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=MAX_NAME_LENGTH)
# The word characters of a name (letters, digits) in any script.
letters = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8)


def full_width(name: str) -> str:
    """The same name in full-width forms (U+FF01 to U+FF5E), as some keyboards type it."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in name)


@settings(max_examples=budget(1000))
@given(any_text)
@example("  \uff21nn ")
@example("\u0301")
@example("\ufdfa")  # one character that NFKC turns into 18
def test_any_string_is_refused_or_becomes_a_clean_name(raw: str) -> None:
    try:
        name = clean_name(raw)
    except InvalidName:
        return
    assert 1 <= len(name) <= MAX_NAME_LENGTH
    assert name == name.strip()
    assert name.isprintable()
    assert unicodedata.is_normalized("NFKC", name)
    assert clean_name(name) == name  # cleaning a clean name changes nothing


@settings(max_examples=budget(300))
@given(ascii_names)
def test_a_full_width_twin_is_the_same_name(name: str) -> None:
    assert clean_name(full_width(name)) == clean_name(name)
    assert name_key(clean_name(full_width(name))) == name_key(clean_name(name))


@settings(max_examples=budget(300))
@given(letters, letters)
def test_case_does_not_make_another_name(first: str, second: str) -> None:
    try:
        name = clean_name(f"{first} {second}")
    except InvalidName:
        reject()  # too long once normalised: not the case this test is about
    # Unicode's case folding keeps the Turkish dotless i apart from i, though its capital is I.
    assume(not {"\u0131", "\u0130"} & set(name))
    for twin in (name.upper(), name.lower(), name.swapcase(), name.title()):
        try:
            twin = clean_name(twin)
        except InvalidName:
            continue  # case mapping may lengthen a name past the limit (ß to SS)
        assert name_key(twin) == name_key(name), twin


@settings(max_examples=budget(300))
@given(letters, st.sampled_from(BIDI_AND_FORMAT), letters)
def test_bidi_controls_and_invisible_characters_are_refused_anywhere(before: str, char: str, after: str) -> None:
    for raw in (before + char + after, char + before, before + char):
        with pytest.raises(InvalidName):  # "printable", or too long once NFKC has expanded it
            clean_name(raw)


@settings(max_examples=budget(300))
@given(letters, st.sampled_from(CONTROLS), letters)
def test_control_characters_inside_a_name_are_refused(before: str, char: str, after: str) -> None:
    with pytest.raises(InvalidName):
        clean_name(before + char + after)


@settings(max_examples=budget(300))
@given(any_text)
def test_a_name_key_is_stable(raw: str) -> None:
    """Whatever a name's key is, the key of the key is the same: uniqueness cannot flip."""
    try:
        name = clean_name(raw)
    except InvalidName:
        return
    assert name_key(name_key(name)) == name_key(name)


async def join_twins(name: str, twin: str) -> None:
    settings = Settings(rate_limit=0)
    hub = Hub(MemoryBackend("memory://", settings), settings)
    await hub.start()
    first, second = FakeConnection(), FakeConnection()
    await hub.join(first, first.abort, "lobby", name)
    with pytest.raises(NameTaken):
        await hub.join(second, second.abort, "lobby", twin)
    await hub.stop()


@settings(max_examples=budget(100))
@given(ascii_names, st.sampled_from([full_width, str.upper, str.lower, lambda name: f"  {name} "]))
def test_a_look_alike_of_a_name_online_is_refused(name: str, disguise: object) -> None:
    assume(name.strip())
    assert callable(disguise)
    asyncio.run(join_twins(name, disguise(name)))
