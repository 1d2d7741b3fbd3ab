"""`Identity`: who a connection is, an account signed in by a session or a guest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Identity:
    """The name a connection speaks under, and whether an account stands behind it.

    An account's `name` is the spelling it registered, and its `key` (app/core/names.py)
    belongs to it alone: nobody else appears under a name with that key, in any room. A
    guest's name is its own only while it is online.
    """

    name: str
    key: str
    account: bool
    admin: bool = False
    session: str | None = None  # the hash of the session that signed the account in

    @property
    def guest(self) -> bool:
        return not self.account


class Online(NamedTuple):
    """Someone online in a room, as presence lists them."""

    name: str
    guest: bool
