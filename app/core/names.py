"""Screen names and room names: what is allowed, and when two names are the same.

A name is the PRECIS Nickname profile's (RFC 8266, as precis-i18n enforces it): spaces
mapped to U+0020, trimmed, runs of them made one; NFKC; and then only the code points of
PRECIS's FreeformClass (RFC 8264): letters, marks, digits, punctuation, symbols and spaces,
no control, format, private-use, noncharacter or unassigned ones. Three refusals of our own
come first or after, each against a name that looks like another or like nothing:

- no Default_Ignorable_Code_Point anywhere (variation selectors, zero-width characters,
  bidi controls, Hangul fillers, tags): they change nothing that can be seen. PRECIS
  refuses most of them but lets the zero-width joiners through where a script uses them;
- no combining mark first (RFC 5891's rule for domain labels): it would sit on whatever
  the page shows before the name;
- at least one character that can be seen: a letter, digit, punctuation mark or symbol
  other than the two that Chromium draws without ink (U+2800 BRAILLE PATTERN BLANK, U+FFFC
  OBJECT REPLACEMENT CHARACTER), found by drawing every one a name may hold
  (tests/browser/test_blank_names.py draws a sample of them on every run).
"""

from __future__ import annotations

import secrets
import unicodedata

import icu
from precis_i18n import get_profile

from app.core.protocol import MAX_CLOSE_REASON_BYTES, BadRequest

MAX_NAME_LENGTH = 24
# Longer input is refused before any work on it: what a connection attempt can make the
# server do stays small, and a name's spaces and combining marks still fit many times over.
MAX_RAW_NAME_LENGTH = 256
DEFAULT_ROOM = "lobby"
# Rounds of skeleton-then-case-fold before a key is stable; two or three suffice for every
# character ICU knows (tests/core/test_names.py), this bounds any string.
MAX_KEY_ROUNDS = 8

_NICKNAME = get_profile("NicknameCasePreserved")
_SKELETONS = icu.SpoofChecker()
_ROOM_SCRIPTS = icu.SpoofChecker()
_ROOM_SCRIPTS.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL)
_ROOM_SCRIPTS.setRestrictionLevel(icu.URestrictionLevel.MODERATELY_RESTRICTIVE)
_NO_SCRIPT = (icu.UScriptCode.COMMON, icu.UScriptCode.INHERITED)
_INVISIBLE = icu.UnicodeSet("[:Default_Ignorable_Code_Point:]")
_BLANK = frozenset("\u2800\ufffc")
_VISIBLE = ("L", "N", "P", "S")  # general categories, by their first letter

# What a refused code point is, by the profile's reason and then by its general category.
_BY_REASON = {
    "controls": "a control character",
    "old_hangul_jamo": "a conjoining Hangul jamo",
    "precis_ignorable_properties": "a noncharacter",  # default-ignorables are refused earlier
    "unassigned": "unassigned",
}
_BY_CATEGORY = {
    "Cf": "a format character",
    "Co": "for private use",
    "Cs": "a lone surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


class InvalidName(BadRequest):
    """A screen name or room name that breaks the rules; the message says which rule."""


def clean_name(raw: str, what: str = "name") -> str:
    """The displayed form of a name (see the module's docstring), or `InvalidName`."""
    if len(raw) > MAX_RAW_NAME_LENGTH:
        raise InvalidName(f"The {what} must be at most {MAX_NAME_LENGTH} characters, but has {len(raw)}")
    for char in raw:
        if _INVISIBLE.contains(char):
            raise InvalidName(_not_printable(what, char, "invisible"))
    try:
        name = _NICKNAME.enforce(raw)
    except UnicodeEncodeError as refused:
        raise InvalidName(_refusal(what, refused)) from None
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"The {what} must be at most {MAX_NAME_LENGTH} characters, but has {len(name)}")
    if unicodedata.category(name[0]).startswith("M"):
        raise InvalidName(f"The {what} must not begin with a combining mark (U+{ord(name[0]):04X})")
    if not any(unicodedata.category(char)[0] in _VISIBLE and char not in _BLANK for char in name):
        raise InvalidName(f"The {what} must have a letter, digit, punctuation mark or symbol that can be seen")
    return name


def _refusal(what: str, refused: UnicodeEncodeError) -> str:
    reason = refused.reason.removeprefix("DISALLOWED/")
    if reason == "empty":
        return f"The {what} must not be empty"
    if refused.end - refused.start != 1:  # the whole string: it changes each time it is enforced
        return f"The {what} may contain only printable characters, and this one keeps changing"
    char = refused.object[refused.start]
    description = _BY_REASON.get(reason) or _BY_CATEGORY.get(unicodedata.category(char), "not allowed there")
    return _not_printable(what, char, description)


def _not_printable(what: str, char: str, description: str) -> str:
    return f"The {what} may contain only printable characters, and U+{ord(char):04X} is {description}"


def name_key(name: str) -> str:
    """Two names with the same key are the same person as far as uniqueness goes.

    The key is the name's UTS #39 confusable skeleton (ICU's, from Unicode's confusables
    data: Cyrillic `а` for `a`, `rn` for `m`, `0` for `O`), NFKC case-folded as names are
    shown and compared, and both again until neither changes it. The skeleton comes first:
    folding first would keep capitals that look Latin apart from their Latin twins (Cyrillic
    `В` folds to `в`, which looks like no Latin letter, while its skeleton is `B`). So case
    makes no other name except where a capital looks like another letter: `Ian` is `lan` (I
    looks like l), not `ian`. A key is for comparing, never for showing.
    """
    key = name
    for _ in range(MAX_KEY_ROUNDS):
        skeleton: str = _SKELETONS.getSkeleton(0, key)
        folded = unicodedata.normalize("NFKC", skeleton.casefold())
        if folded == key:
            break
        key = folded
    return key


def clean_room(raw: str) -> str:
    """A room's name as the room is known: the welcome and `/api/rooms` show it.

    A room name follows the name rules and is case-folded (`Lobby` is `lobby`); it is not a
    key, which would be no name to show (`games` has the skeleton `garnes`). So look-alike
    rooms are refused instead of folded together: a room name must be at least "moderately
    restrictive" (UTS #39 section 5.2, ICU's check): one script, or Latin with one other
    that is not Cyrillic, Greek or Cherokee (or Han with the Japanese or Korean scripts),
    so `lobby` with a Cyrillic `о` is refused. A room named wholly in another script stays
    its own.
    """
    room = clean_name(clean_name(raw, "room name").casefold(), "room name")
    if _ROOM_SCRIPTS.check(room) & icu.USpoofChecks.RESTRICTION_LEVEL:
        raise InvalidName(_mixed_scripts(room))
    return room


def _mixed_scripts(room: str) -> str:
    scripts: list[str] = []
    for char in room:
        script = icu.Script.getScript(char)
        name: str = script.getName().replace("_", " ")
        if script.getScriptCode() not in _NO_SCRIPT and name not in scripts:
            scripts.append(name)
    listed = ", ".join(scripts[:-1]) + " and " + scripts[-1]
    reason = f"The room name must not mix {listed} letters (UTS #39)"
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        return "The room name must not mix the scripts of its letters (UTS #39)"
    return reason


def guest_name() -> str:
    return f"guest-{secrets.randbelow(10_000):04d}"
