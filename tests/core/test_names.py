"""Screen names, property by property: what any string becomes, and which names are the same."""

from __future__ import annotations

import asyncio
import functools
import unicodedata

import icu
import pytest
from hypothesis import assume, example, given, reject, settings
from hypothesis import strategies as st

from app.backends.memory import MemoryBackend
from app.core.hub import Hub, NameTaken
from app.core.names import (
    MAX_KEY_ROUNDS,
    MAX_NAME_LENGTH,
    MAX_RAW_NAME_LENGTH,
    InvalidName,
    clean_name,
    clean_room,
    name_key,
)
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


SKELETONS = icu.SpoofChecker()
# Unicode's Default_Ignorable_Code_Point, as ICU has it: every one of them, each tried.
DEFAULT_IGNORABLE = list(icu.UnicodeSet("[:Default_Ignorable_Code_Point:]"))
# Characters that show nothing by themselves: spaces, marks with nothing to sit on, the
# blanks Chromium draws without ink, and the default-ignorables.
SPACES = [chr(code) for code in range(0x110000) if unicodedata.category(chr(code)) == "Zs"]
MARKS = [chr(code) for code in range(0x300, 0x370) if code != 0x34F] + ["\u20dd", "\u0903", "\u093e", "\u1ab0"]
nothing_to_see = st.text(st.sampled_from([*SPACES, *MARKS, "\u2800", "\ufffc", *DEFAULT_IGNORABLE[:64]]), min_size=1)


def prototype(char: str) -> str:
    """What Unicode's confusables data (as ICU has it) maps a character to."""
    mapped: str = SKELETONS.getSkeleton(0, char)
    return mapped


@functools.cache
def confusables() -> list[tuple[str, str]]:
    """Every character of the data that looks like another, with that other (its prototype).

    Only those that NFKC keeps: a name is shown normalised, so the others never appear in one
    (the long s `ſ` is shown as `s`, whatever it looks like).
    """
    pairs = []
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) in ("Cn", "Cs", "Co"):
            continue
        mapped = prototype(char)
        if mapped != unicodedata.normalize("NFD", char) and unicodedata.is_normalized("NFKC", char):
            pairs.append((char, mapped))
    return pairs


@functools.cache
def capitals_that_look_like_another_letter() -> frozenset[str]:
    """Characters whose key is not their case fold's: the skeleton puts them with another letter."""
    return frozenset(char for char, _ in confusables() if name_key(char) != name_key(char.casefold()))


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
    assert "  " not in name
    assert name.isprintable()
    assert unicodedata.is_normalized("NFKC", name)
    assert not any(char in DEFAULT_IGNORABLE for char in name)
    assert not unicodedata.category(name[0]).startswith("M")
    assert any(unicodedata.category(char)[0] in "LNPS" and char not in "\u2800\ufffc" for char in name)
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
        if capitals_that_look_like_another_letter() & set(name + twin):
            continue  # see test_a_capital_that_looks_like_another_letter_is_that_letter
        assert name_key(twin) == name_key(name), twin


def test_a_capital_that_looks_like_another_letter_is_that_letter() -> None:
    """The skeleton comes before case folding: `Ian` is `lan`, as it looks, and so not `ian`."""
    assert name_key("Ian") == name_key("lan") == name_key("IAN") == name_key("1an")
    assert name_key("Ian") != name_key("ian")
    assert name_key("\u0412ob") == name_key("Bob") == name_key("bob")  # Cyrillic capital Ve
    assert name_key("\u0392ob") == name_key("Bob")  # Greek capital beta
    capitals = capitals_that_look_like_another_letter()
    assert {char for char in capitals if char.isascii()} == {"I"}  # the one such letter of ASCII
    assert {"\u0392", "\u0397", "\u041d", "\u0412"} <= capitals  # Greek and Cyrillic capitals that look Latin
    assert len(capitals) < 300


def test_every_confusable_character_is_one_name_with_what_it_looks_like() -> None:
    """All of Unicode's confusables, each inside a name: whatever looks the same shares a key."""
    alike: dict[str, list[str]] = {}  # prototype -> it and the characters that look like it
    for char, mapped in confusables():
        alike.setdefault(mapped, [mapped]).append(char)
    assert len(alike) > 12_000
    names = 0
    for spellings in alike.values():
        keys = set()
        for spelling in spellings:
            try:
                keys.add(name_key(clean_name(f"x{spelling}y")))
            except InvalidName:
                continue  # not a name at all (a conjoining jamo, a control character), so no look-alike of one
            names += 1
        assert len(keys) <= 1, spellings
    assert names > 15_000


confusable = st.deferred(lambda: st.sampled_from(confusables()))


@settings(max_examples=budget(500))
@given(letters, confusable, letters, st.integers(min_value=0, max_value=3))
def test_a_look_alike_anywhere_in_a_name_makes_the_same_name(
    before: str, pair: tuple[str, str], after: str, copies: int
) -> None:
    char, mapped = pair
    try:
        name, twin = clean_name(before + char * copies + after), clean_name(before + mapped * copies + after)
    except InvalidName:
        reject()
    assert name_key(name) == name_key(twin)


def test_every_default_ignorable_code_point_is_refused_anywhere_in_a_name() -> None:
    """Variation selectors, zero-width characters, fillers, tags: a name with one is refused."""
    assert len(DEFAULT_IGNORABLE) > 4000
    known = "\u00ad\u034f\u115f\u1160\u180b\u200b\u200c\u200d\u2060\u3164\ufe07\ufeff\uffa0\U000e0001\U000e0100"
    assert set(known) <= set(DEFAULT_IGNORABLE)
    for char in DEFAULT_IGNORABLE:
        for raw in (f"{char}ann", f"an{char}n", f"ann{char}", f"Zo\u00eb{char}", f"\u0915\u094d{char}\u0937"):
            with pytest.raises(InvalidName, match=f"U\\+{ord(char):04X} is invisible"):
                clean_name(raw)


@settings(max_examples=budget(300))
@given(letters, st.sampled_from(DEFAULT_IGNORABLE), letters, st.integers(min_value=1, max_value=3))
def test_a_default_ignorable_code_point_makes_a_valid_name_invalid(
    before: str, char: str, after: str, copies: int
) -> None:
    try:
        clean_name(before + after)
    except InvalidName:
        reject()
    with pytest.raises(InvalidName, match="invisible"):
        clean_name(before + char * copies + after)


@settings(max_examples=budget(300))
@given(nothing_to_see)
def test_a_name_with_nothing_to_see_is_refused(raw: str) -> None:
    with pytest.raises(InvalidName):
        clean_name(raw)


@settings(max_examples=budget(200))
@given(st.sampled_from(MARKS), letters)
def test_a_name_may_not_begin_with_a_combining_mark(mark: str, name: str) -> None:
    try:
        clean_name(name)
    except InvalidName:
        reject()
    with pytest.raises(InvalidName, match="must not begin with a combining mark"):
        clean_name(mark + name)
    try:
        clean_name(name[0] + mark + name[1:])  # after the first character, marks are welcome
        refusal = ""
    except InvalidName as refused:
        refusal = str(refused)  # but may make it too long, or its context wrong
    assert "combining mark" not in refusal


@settings(max_examples=budget(200))
@given(letters, st.lists(st.sampled_from(SPACES), min_size=1, max_size=4).map("".join), letters)
def test_spaces_inside_a_name_become_one_plain_space(before: str, spaces: str, after: str) -> None:
    try:
        name = clean_name(f"{before}{spaces}{after}")
    except InvalidName:
        reject()
    assert name == clean_name(f"{before} {after}")


@pytest.mark.parametrize(
    "raw",
    [
        "\u314b\u314b",  # ㅋㅋ: Hangul letters alone, which NFKC makes conjoining jamo
        "a\u00b7b",  # a middle dot not between two l
        "a\u0640b",  # ARABIC TATWEEL
        "a\u302eb",  # HANGUL SINGLE DOT TONE MARK
        "\u0375a",  # GREEK LOWER NUMERAL SIGN (keraia) before no Greek
        "a\u05f3",  # HEBREW PUNCTUATION GERESH after no Hebrew
        "a\u30fbb",  # KATAKANA MIDDLE DOT with no Japanese beside it
    ],
)
def test_what_the_profile_refuses_that_is_printable(raw: str) -> None:
    """docs/protocol.md, "What changed": printable, once allowed, refused by PRECIS."""
    assert raw.isprintable()
    with pytest.raises(InvalidName, match="may contain only printable characters, and U"):
        clean_name(raw)


@pytest.mark.parametrize("raw", ["\uae40\ubbfc\uc218", "l\u00b7l", "\u30a2\u30fb\u30a2", "\u05d0\u05f3", "Zo\u00eb"])
def test_their_context_makes_them_fine(raw: str) -> None:
    assert clean_name(raw) == raw


def test_a_huge_name_is_refused_before_any_work_on_it() -> None:
    with pytest.raises(InvalidName, match="at most 24 characters, but has 100000"):
        clean_name("\u0301" * 100_000)
    assert clean_name(" " * (MAX_RAW_NAME_LENGTH - 3) + "ann") == "ann"


def test_a_key_never_holds_a_newline() -> None:
    """Keys are fields of newline-separated values in Redis (app/backends/redis_scripts.py)."""
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) in ("Cn", "Cs") or "\n" not in prototype(char):
            continue
        with pytest.raises(InvalidName):
            clean_name(f"x{char}y")


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


# Strings made of confusables and their prototypes (some of which are several characters).
look_alikes = st.lists(st.deferred(lambda: st.sampled_from([text for pair in confusables() for text in pair]))).map(
    "".join
)


@settings(max_examples=budget(300))
@given(any_text | look_alikes)
def test_a_name_key_is_stable(raw: str) -> None:
    """Whatever a name's key is, the key of the key is the same: uniqueness cannot flip."""
    try:
        name = clean_name(raw)
    except InvalidName:
        return
    assert name_key(name_key(name)) == name_key(name)


def test_every_character_has_a_stable_key_within_the_rounds_allowed() -> None:
    for code in range(0x110000):
        if unicodedata.category(chr(code)) in ("Cn", "Cs", "Co"):
            continue
        key = name_key(chr(code))
        assert name_key(key) == key, hex(code)
    assert MAX_KEY_ROUNDS >= 4  # three rounds suffice for every character


@settings(max_examples=budget(300))
@given(any_text | letters)
def test_a_room_is_known_by_a_readable_name_that_opens_it_again(raw: str) -> None:
    """The name `/api/rooms` lists is the room's: joining by it finds the same room."""
    try:
        room = clean_room(raw)
    except InvalidName:
        return
    assert room == unicodedata.normalize("NFKC", clean_name(raw, "room name").casefold())  # not a key
    assert clean_room(room) == room
    assert clean_room(room.upper()) == room or capitals_that_look_like_another_letter() & set(room.upper())


def latin_look_alikes() -> dict[str, list[str]]:
    """ASCII letter -> the Cyrillic and Greek letters the data says look like it."""
    twins: dict[str, list[str]] = {}
    for char, mapped in confusables():
        script = icu.Script.getScript(char).getShortName()
        if mapped.isascii() and mapped.isalpha() and len(mapped) == 1 and script in ("Cyrl", "Grek"):
            twins.setdefault(mapped, []).append(char)
    return twins


@settings(max_examples=budget(300))
@given(st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=2, max_size=12), st.data())
def test_a_room_name_with_a_cyrillic_or_greek_look_alike_of_a_latin_letter_is_refused(
    room: str, data: st.DataObject
) -> None:
    twins = latin_look_alikes()
    assume(any(letter in twins for letter in room))
    index = data.draw(st.sampled_from([i for i, letter in enumerate(room) if letter in twins]))
    twin = data.draw(st.sampled_from(twins[room[index]]))
    spoof = room[:index] + twin + room[index + 1 :]
    assert clean_room(room) == room
    with pytest.raises(
        InvalidName, match=r"must not mix (Latin and (Cyrillic|Greek)|(Cyrillic|Greek) and Latin) letters"
    ):
        clean_room(spoof)


@pytest.mark.parametrize(
    "room",
    [
        "lobby",
        "клуб",
        "ελληνικά",
        "日本語 chat",
        "한국어 room",
        "ひらがなカタカナ漢字",
        "עברית",
        "c++ & co",
        "हिंदी dev",
    ],
)
def test_a_room_name_may_be_of_one_script_or_latin_with_one_unlike_it(room: str) -> None:
    assert clean_room(room) == room


@pytest.mark.parametrize(
    ("room", "scripts"),
    [
        ("l\u043ebby", "Latin and Cyrillic"),
        ("abc \u03b1\u03b2", "Latin and Greek"),
        ("\u043a\u03b1", "Cyrillic and Greek"),
    ],
)
def test_a_room_name_that_mixes_scripts_which_look_alike_is_refused(room: str, scripts: str) -> None:
    with pytest.raises(InvalidName, match=f"The room name must not mix {scripts} letters"):
        clean_room(room)


def test_a_room_named_wholly_in_another_script_is_a_room_of_its_own_even_when_it_looks_latin() -> None:
    """A limit (SECURITY.md): rooms are not folded by skeleton, so Cyrillic соре is not cope."""
    cyrillic = "\u0441\u043e\u0440\u0435"  # соре
    assert name_key(cyrillic) == name_key("cope")  # as names, one
    assert clean_room(cyrillic) == cyrillic != clean_room("cope")  # as rooms, two
    assert clean_room("garnes") != clean_room("games")  # and within one script too


def test_a_refusal_of_many_scripts_still_fits_in_a_close_frame() -> None:
    room = "\u1401\U00013000\U00014400\U000109a0\U00010b60\U00010a60\u0531\u10d0\u05d0"
    with pytest.raises(InvalidName, match="The room name must not mix") as refused:
        clean_room(room)
    assert len(str(refused.value).encode()) <= 123


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
    assume("i" not in name.lower())  # a capital I looks like l, not i: see test_a_capital_that_looks_like_...
    assert callable(disguise)
    asyncio.run(join_twins(name, disguise(name)))
