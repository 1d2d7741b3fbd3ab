"""Screen names and room names: what is allowed, and when two names are the same."""

from __future__ import annotations

import secrets
import unicodedata

import icu

from app.protocol import BadRequest

MAX_NAME_LENGTH = 24
DEFAULT_ROOM = "lobby"
# Rounds of skeleton-then-case-fold before a key is stable; two or three suffice for every
# character ICU knows (tests/test_names.py), this bounds any string.
MAX_KEY_ROUNDS = 8

_SKELETONS = icu.SpoofChecker()


class InvalidName(BadRequest):
    """A screen name or room name that breaks the rules; the message says which rule."""


def clean_name(raw: str, what: str = "name") -> str:
    """The displayed form of a name: NFKC-normalised and trimmed, or `InvalidName`.

    NFKC folds compatibility look-alikes (full-width letters, ligatures) into their plain
    forms; `isprintable` then refuses control, format (bidi overrides, zero-width
    characters), separator, private-use, surrogate and unassigned code points.
    """
    name = unicodedata.normalize("NFKC", raw).strip()
    if not name:
        raise InvalidName(f"The {what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"The {what} must be at most {MAX_NAME_LENGTH} characters, but has {len(name)}")
    if not name.isprintable():
        raise InvalidName(f"The {what} may contain only printable characters and spaces")
    return name


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
    """Room names follow the name rules and are case-insensitive: `Lobby` is `lobby`.

    A room is known by this form, which the welcome and `/api/rooms` show, so it is the
    readable NFKC case fold, not a key.
    """
    return unicodedata.normalize("NFKC", clean_name(raw, "room name").casefold())


def guest_name() -> str:
    return f"guest-{secrets.randbelow(10_000):04d}"
