"""`User` and `SignIn`: an account and a session, as the backends store them (app/core/accounts.py
says what they mean)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    key: str  # name_key(name): what makes two names one
    name: str  # as registered
    password: str  # the argon2id hash string, its parameters included
    admin: bool = False
    created: int = 0  # ms since the Unix epoch


@dataclass(frozen=True, slots=True)
class SignIn:
    """A session, as it is stored: never its id, only the id's hash."""

    hash: str
    user: str  # the user's key
    created: int  # ms since the Unix epoch
    seen: int  # ms: when it was last used (at most TOUCH_EVERY ago, while it is in use)
