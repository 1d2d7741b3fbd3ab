"""Accounts: screen names that belong to someone, and the sessions that sign them in.

Policy only; where users and sessions are kept is the backend's `AccountStore`
(app/backends/base.py), and HTTP is the web layer's (app/web/accounts.py).

- A registered name is reserved by its key (app/core/names.py): nobody else appears under
  a name with that key, online or not, in any room.
- Passwords are kept as argon2id hashes only (app/core/passwords.py).
- A session id is 256 random bits, given to the browser once (its cookie) and kept as its
  SHA-256 only: a copy of the store signs nobody in. A session ends when its owner signs
  out, when the password changes (every other session of the account), when the account
  is removed, after `session_idle_days` without use and after `session_days` whatever.
- Sign-ins back off per account and per address (app/core/throttle.py); registrations
  are limited per address. Both are counted in each process.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.core.identity import Identity
from app.core.names import InvalidName, clean_name, name_key
from app.core.passwords import MAX_BYTES, BadPassword, Passwords, clean_password
from app.core.protocol import CloseCode
from app.core.throttle import Backoff
from app.core.users import SignIn, User

if TYPE_CHECKING:
    from app.backends.base import AccountStore
    from app.core.hub import Hub
    from app.settings import Settings

GUEST_PREFIX = "guest-"  # guests get names such as guest-0042: nobody may register one

# Sign-ins: an account may fail 5 times in a row at once, then waits 1 s, 2 s, 4 s ... up to
# 15 minutes between attempts; an address (an IPv6 /64) 20 times, then the same. Both
# forget a failure an hour after the last one. Registrations: 5 an hour per address.
ACCOUNT_FREE_FAILURES, ADDRESS_FREE_FAILURES = 5, 20
FIRST_WAIT, MAX_WAIT, FORGET = 1.0, 900.0, 3600.0  # seconds
REGISTRATIONS_PER_HOUR = 5
TOUCH_EVERY = 3600.0  # seconds: how often a session in use records that it was used


class AccountError(Exception):
    """Refused; `detail` says why, for people."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidAccount(AccountError):
    """A name or a new password that breaks the rules (HTTP 400)."""


class NameRegistered(AccountError):
    """Somebody registered that name already (HTTP 409)."""


class RegistrationClosed(AccountError):
    """Only the operator adds accounts (HTTP 403)."""


class WrongPassword(AccountError):
    """The name or the password is wrong: the same answer for both (HTTP 401)."""


class SignedOut(AccountError):
    """The request's session signs nobody in (any more) (HTTP 401)."""


class NoSuchUser(AccountError):
    """For the operator: no account has that name."""


class Throttled(AccountError):
    """Too many attempts: try again in `retry_after` seconds (HTTP 429)."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Accounts:
    """Registering, signing in and out, changing passwords; and the operator's commands."""

    def __init__(
        self,
        store: AccountStore,
        settings: Settings,
        notify: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.passwords = Passwords()
        self._notify = notify  # tells every process (Backend.notify)
        self._clock = clock
        self._by_account = Backoff(ACCOUNT_FREE_FAILURES, FIRST_WAIT, MAX_WAIT, FORGET)
        self._by_address = Backoff(ADDRESS_FREE_FAILURES, FIRST_WAIT, MAX_WAIT, FORGET)
        self._registrations = Backoff(free=REGISTRATIONS_PER_HOUR, first_wait=3600.0, max_wait=3600.0, forget=3600.0)
        # What else goes with a removed account (its direct messages, say), by its key.
        self.removing: list[Callable[[str], Awaitable[None]]] = []

    def close(self) -> None:
        self.passwords.close()

    # From the page

    async def register(self, name: str, password: str, address: str) -> tuple[User, str]:
        """A new account, signed in: the user and the new session's id."""
        if not self.settings.registration_open:
            raise RegistrationClosed("Registration is closed: the operator adds accounts")
        now = self._clock()
        if (wait := self._registrations.retry_after(address, now)) > 0:
            raise Throttled("Too many accounts created from your address; try again later", wait)
        user = await self.new_user(name, password)
        if not await self.store.add_user(user):
            raise NameRegistered(f"{user.name!r} is registered already")
        self._registrations.failed(address, now)  # counts registrations, not failures
        self._notify("registered", {"key": user.key})
        return user, await self._open_session(user)

    async def sign_in(self, name: str, password: str, address: str) -> tuple[User, str]:
        """The user and a new session's id; `WrongPassword` whether the name or the password
        is wrong, after the same work; `Throttled` after too many failures."""
        user = await self._authenticate(name, password, address)
        return user, await self._open_session(user)

    async def _authenticate(self, name: str, password: str, address: str) -> User:
        try:
            key: str | None = name_key(clean_name(name))
        except InvalidName:
            key = None
        now = self._clock()
        wait = max(self._by_account.retry_after(key or "", now), self._by_address.retry_after(address, now))
        if wait > 0:
            raise Throttled("Too many failed sign-ins; try again later", wait)
        user = await self.store.user(key) if key is not None else None
        typed = _as_typed(password)
        if typed is None or not await self.passwords.verify(user.password if user else None, typed):
            self._by_account.failed(key or "", now)
            self._by_address.failed(address, now)
            raise WrongPassword("The name or the password is wrong")
        assert user is not None
        self._by_account.succeeded(user.key)
        if self.passwords.needs_rehash(user.password):
            user = replace(user, password=await self.passwords.hash(typed))
            await self.store.update_user(user)
        return user

    async def identify(self, session_id: str) -> Identity | None:
        """Who the session signs in; None if there is no such session (any more)."""
        if not session_id or len(session_id) > 100:
            return None
        hashed = session_hash(session_id)
        record = await self.store.session(hashed)
        if record is None:
            return None
        now = now_ms()
        day = 86_400_000
        expired = (
            now - record.created > self.settings.session_days * day
            or now - record.seen > self.settings.session_idle_days * day
        )
        user = await self.store.user(record.user) if not expired else None
        if user is None:
            await self.store.end_session(hashed)
            return None
        if now - record.seen > TOUCH_EVERY * 1000:
            await self.store.touch_session(hashed, now)
        return Identity(user.name, user.key, account=True, admin=user.admin, session=hashed)

    async def sign_out(self, session_id: str) -> None:
        ended = await self.store.end_session(session_hash(session_id))
        if ended is not None:
            self._notify("sessions_ended", {"sessions": [ended.hash], "why": "Signed out"})

    async def change_password(self, session_id: str, password: str, new_password: str, address: str) -> None:
        """Change the password of the session's account; its other sessions end."""
        identity = await self.identify(session_id)
        if identity is None:
            raise SignedOut("Not signed in")
        user = await self._authenticate(identity.name, password, address)  # throttled like a sign-in
        changed = replace(user, password=await self.passwords.hash(_new_password(new_password)))
        await self.store.update_user(changed)
        ended = await self.store.end_sessions(user.key, keep=identity.session)
        if ended:
            self._notify("sessions_ended", {"sessions": ended, "why": "Your password was changed"})

    # For the operator (`chatroom users`)

    async def new_user(self, name: str, password: str, admin: bool = False) -> User:
        """A user to add: its name and password checked, the password hashed."""
        display = _account_name(name)
        hashed = await self.passwords.hash(_new_password(password))
        return User(name_key(display), display, hashed, admin, now_ms())

    async def free_name(self, name: str) -> str:
        """`name` as an account registered under it would be shown; `InvalidAccount` or
        `NameRegistered` if none can be (asked before the operator types a password)."""
        display = _account_name(name)
        if await self.store.user(name_key(display)) is not None:
            raise NameRegistered(f"{display!r} is registered already")
        return display

    async def add_user(self, name: str, password: str, admin: bool = False) -> User:
        user = await self.new_user(name, password, admin)
        if not await self.store.add_user(user):
            raise NameRegistered(f"{user.name!r} is registered already")
        self._notify("registered", {"key": user.key})
        return user

    async def set_password(self, name: str, password: str) -> int:
        """A new password; every session of the account ends. How many did."""
        user = await self.user_named(name)
        await self.store.update_user(replace(user, password=await self.passwords.hash(_new_password(password))))
        ended = await self.store.end_sessions(user.key)
        if ended:
            self._notify("sessions_ended", {"sessions": ended, "why": "Your password was changed"})
        return len(ended)

    async def set_admin(self, name: str, admin: bool) -> User:
        user = replace(await self.user_named(name), admin=admin)
        await self.store.update_user(user)
        return user

    async def remove_user(self, name: str) -> tuple[User, int]:
        """The account goes, and with it its sessions, at once, on every process: what it
        was, and how many sessions ended."""
        user = await self.user_named(name)
        ended = await self.store.remove_user(user.key)
        self._notify("sessions_ended", {"sessions": ended, "why": "Your account was removed"})
        for remove in self.removing:
            await remove(user.key)
        return user, len(ended)

    async def users(self) -> list[User]:
        return sorted(await self.store.users(), key=lambda user: user.key)

    async def user_named(self, name: str) -> User:
        """The account whose name is `name`, however it is spelt; `NoSuchUser` if none is."""
        try:
            key = name_key(clean_name(name))
        except InvalidName:
            key = ""
        user = await self.store.user(key) if key else None
        if user is None:
            raise NoSuchUser(f"No account is named {name!r}")
        return user

    async def _open_session(self, user: User) -> str:
        session_id = new_session_id()
        now = now_ms()
        await self.store.add_session(SignIn(session_hash(session_id), user.key, now, now))
        return session_id


def _as_typed(password: str) -> str | None:
    """A password as it was hashed when it was set; None if it could not have been set."""
    if len(password) > MAX_BYTES:  # characters: checked before any work
        return None
    try:
        return clean_password(password)
    except BadPassword:
        return None


def _account_name(name: str) -> str:
    try:
        display = clean_name(name)
    except InvalidName as exc:
        raise InvalidAccount(str(exc)) from None
    if display.casefold().startswith(GUEST_PREFIX):
        raise InvalidAccount(f"Names starting with {GUEST_PREFIX!r} are for guests")
    return display


def _new_password(password: str) -> str:
    try:
        return clean_password(password)
    except BadPassword as exc:
        raise InvalidAccount(str(exc)) from None


def install(hub: Hub) -> None:
    """What the accounts' notices do to the connections of each process: those of sessions
    that ended close (4401), and a guest under a name that was just registered (4409)."""

    def sessions_ended(fields: dict[str, Any]) -> None:
        ended = set(fields.get("sessions", ()))
        why = str(fields.get("why", "Signed out"))
        for member in hub.members():
            if member.identity.session in ended:
                member.close(CloseCode.NOT_SIGNED_IN, why)

    def registered(fields: dict[str, Any]) -> None:
        key = fields.get("key")
        for member in hub.connections.get(str(key), []):
            if member.identity.guest:
                member.close(CloseCode.NAME_TAKEN, f"{member.name!r} was registered to an account just now")

    hub.notices["sessions_ended"] = sessions_ended
    hub.notices["registered"] = registered
