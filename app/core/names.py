"""Screen names and room names: what is allowed, and when two names are the same."""

from __future__ import annotations

import secrets
import unicodedata

from app.core.protocol import BadRequest

MAX_NAME_LENGTH = 24
DEFAULT_ROOM = "lobby"


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
    """Two names with the same key are the same person as far as uniqueness goes."""
    return unicodedata.normalize("NFKC", name.casefold())


def clean_room(raw: str) -> str:
    """Room names follow the name rules and are case-insensitive: `Lobby` is `lobby`."""
    return name_key(clean_name(raw, "room name"))


def guest_name() -> str:
    return f"guest-{secrets.randbelow(10_000):04d}"
