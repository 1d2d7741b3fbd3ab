"""Accounts' policy with plain asyncio (app/core/accounts.py, passwords.py): how passwords are
hashed and checked, the throttles' numbers, and how long sessions live."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Literal

import argon2
import pytest

from app.backends.memory import MemoryAccounts
from app.core.accounts import (
    FORGET,
    MAX_WAIT,
    Accounts,
    Throttled,
    WrongPassword,
    new_session_id,
    now_ms,
    session_hash,
)
from app.core.passwords import (
    MAX_WAITING,
    MEMORY_KIB,
    PARALLELISM,
    TIME_COST,
    WORKER_NICENESS,
    Busy,
    Passwords,
)
from app.core.users import SignIn
from app.settings import Settings

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"  # noqa: S105 - a test account's
DAY = 86_400_000  # ms


class Clock:
    """The throttles' time, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def accounts(clock: Clock) -> AsyncIterator[Accounts]:
    accounts = Accounts(MemoryAccounts(), Settings(backend_url="memory://"), lambda kind, fields: None, clock)
    yield accounts
    accounts.close()


class CountingHasher(argon2.PasswordHasher):
    """The hasher, noting each argon2 computation, made or checked, and its parameters."""

    computed: list[tuple[str, argon2.Parameters]]

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        made = super().hash(password, salt=salt)
        self.computed.append(("hash", argon2.extract_parameters(made)))
        return made

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.computed.append(("verify", argon2.extract_parameters(hash if isinstance(hash, str) else hash.decode())))
        return super().verify(hash, password)


def counting(passwords: Passwords) -> CountingHasher:
    hasher = CountingHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)
    hasher.computed = []
    passwords._hasher = hasher
    return hasher


# Passwords


async def test_a_password_is_kept_as_an_argon2id_hash_with_owasp_s_parameters(accounts: Accounts) -> None:
    user = await accounts.add_user("ann", PASSWORD)
    assert PASSWORD not in user.password
    parameters = argon2.extract_parameters(user.password)
    assert parameters.type is argon2.Type.ID
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (19 * 1024, 2, 1)
    assert parameters.salt_len == 16  # bytes, random for each hash
    assert await accounts.store.user("ann") == user  # the hash string is all there is


async def test_a_hash_made_with_weaker_parameters_is_made_again_at_sign_in(accounts: Accounts) -> None:
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    user = await accounts.add_user("ann", PASSWORD)
    await accounts.store.update_user(type(user)(user.key, user.name, weak.hash(PASSWORD), False, user.created))
    await accounts.sign_in("ann", PASSWORD, "192.0.2.1")
    stored = await accounts.store.user("ann")
    assert stored is not None
    assert argon2.extract_parameters(stored.password).memory_cost == MEMORY_KIB
    await accounts.sign_in("ann", PASSWORD, "192.0.2.1")  # and it still signs in


async def test_an_unknown_name_costs_the_same_work_as_a_wrong_password(accounts: Accounts) -> None:
    """One argon2 computation for each wrong sign-in, with the parameters of every real hash,
    whether the name is registered, unknown (the first one since the start too) or no name."""
    await accounts.add_user("ann", PASSWORD)
    hasher = counting(accounts.passwords)
    for number, name in enumerate(("nobody", "ann", "somebody", "not a name\u202e", "ann")):
        with pytest.raises(WrongPassword) as refused:
            await accounts.sign_in(name, "not the password", f"192.0.2.{number}")
        assert refused.value.detail == "The name or the password is wrong"
        assert len(hasher.computed) == number + 1, (name, hasher.computed)
    assert all(parameters == hasher.computed[0][1] for _, parameters in hasher.computed)
    assert hasher.computed[0][1].memory_cost == MEMORY_KIB


async def test_hashes_run_off_the_event_loop_which_turns_meanwhile(accounts: Accounts) -> None:
    """Each check runs on the passwords' worker thread, at a lower priority, and while it runs
    the event loop goes on turning: argon2's C code lets go of the GIL (a check on the loop
    would stop it for the whole check: 30 ms or so each). tests/system/test_accounts.py
    measures what a room sees of it."""
    passwords = accounts.passwords
    stored = await passwords.hash(PASSWORD)
    loop_thread = threading.current_thread()
    turns = 0
    during: list[tuple[str, int]] = []  # per check: its thread, and the loop's turns while it ran
    niceness: set[int] = set()

    class Watched(argon2.PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            before = turns
            niceness.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            try:
                return super().verify(hash, password)
            finally:
                during.append((threading.current_thread().name, turns - before))

    passwords._hasher = Watched(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)

    async def tick() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    ticker = asyncio.ensure_future(tick())
    checks = [passwords.verify(stored, f"guess {n}") for n in range(4)]
    assert await asyncio.gather(*checks) == [False] * 4
    ticker.cancel()
    print(f"the loop's turns during each check: {[count for _, count in during]}")
    assert len(during) == 4
    assert all(name.startswith("chatroom-passwords") and name != loop_thread.name for name, _ in during)
    assert all(count > 0 for _, count in during)
    # It gives way to the loop when the CPU is short (Linux: a nice value per thread).
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness == {min(19, ours + WORKER_NICENESS) if sys.platform == "linux" else ours}


async def test_past_32_waiting_the_next_password_is_refused_at_once(accounts: Accounts) -> None:
    passwords = accounts.passwords
    stored = await passwords.hash(PASSWORD)
    waiting = [asyncio.ensure_future(passwords.verify(stored, f"guess {n}")) for n in range(MAX_WAITING)]
    await asyncio.sleep(0)  # every one of them is waiting for the worker now
    assert MAX_WAITING == 32
    with pytest.raises(Busy):
        await passwords.verify(stored, PASSWORD)
    with pytest.raises(Busy):
        await accounts.sign_in("ann", PASSWORD, "192.0.2.1")  # HTTP 503 busy (app/web/accounts.py)
    assert await asyncio.gather(*waiting) == [False] * MAX_WAITING
    assert await passwords.verify(stored, PASSWORD)  # room again once they are done


# Throttles


async def fail(accounts: Accounts, name: str, address: str) -> None:
    with pytest.raises(WrongPassword):
        await accounts.sign_in(name, "not the password", address)


async def throttled_for(accounts: Accounts, name: str, address: str, password: str = PASSWORD) -> float:
    with pytest.raises(Throttled) as throttled:
        await accounts.sign_in(name, password, address)
    return throttled.value.retry_after


async def test_an_account_s_failures_back_off_from_1_s_doubling_to_15_minutes(accounts: Accounts, clock: Clock) -> None:
    """5 failures in a row are free, then each attempt waits 1 s, 2 s, 4 s ... at most 15
    minutes after the last failure, from whatever address; never a lockout for good."""
    await accounts.add_user("ann", PASSWORD)
    _, signed_in = await accounts.sign_in("ann", PASSWORD, "198.51.100.1")
    addresses = (f"192.0.2.{number}" for number in range(100))  # one each: the address throttle stays out of it
    for _ in range(5):
        await fail(accounts, "ANN", next(addresses))
    waits = []
    for _ in range(12):
        waits.append(await throttled_for(accounts, "ann", next(addresses)))  # the right password too
        clock.now += waits[-1]
        await fail(accounts, "ann", next(addresses))
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, MAX_WAIT, MAX_WAIT]
    assert MAX_WAIT == 15 * 60
    assert await accounts.identify(signed_in) is not None  # a session signed in before goes on
    clock.now += MAX_WAIT
    user, _ = await accounts.sign_in("ann", PASSWORD, next(addresses))  # the owner, once the wait is over
    assert user.name == "ann"
    await fail(accounts, "ann", next(addresses))  # and a success starts the count again
    await accounts.sign_in("ann", PASSWORD, next(addresses))


async def test_an_account_s_failures_are_forgotten_an_hour_after_the_last(accounts: Accounts, clock: Clock) -> None:
    await accounts.add_user("ann", PASSWORD)
    for number in range(5):
        await fail(accounts, "ann", f"192.0.2.{number}")
    assert await throttled_for(accounts, "ann", "192.0.2.9") == 1
    clock.now += FORGET
    assert FORGET == 3600
    for number in range(5):
        await fail(accounts, "ann", f"198.51.100.{number}")  # five free again


async def test_an_address_s_failures_back_off_after_20_whatever_the_names(accounts: Accounts, clock: Clock) -> None:
    await accounts.add_user("ann", PASSWORD)
    for number in range(20):
        await fail(accounts, f"name{number}", "192.0.2.1")
    assert await throttled_for(accounts, "ann", "192.0.2.1") == 1  # its owner waits too, from there
    await accounts.sign_in("ann", PASSWORD, "192.0.2.2")  # not from elsewhere
    clock.now += 1
    await fail(accounts, "name20", "192.0.2.1")
    assert await throttled_for(accounts, "name21", "192.0.2.1") == 2


async def test_an_address_registers_5_accounts_an_hour(accounts: Accounts, clock: Clock) -> None:
    for number in range(5):
        clock.now += 60
        await accounts.register(f"user{number}", PASSWORD, "192.0.2.1")
    with pytest.raises(Throttled) as throttled:
        await accounts.register("user5", PASSWORD, "192.0.2.1")
    assert throttled.value.retry_after == 3600  # an hour after the latest
    await accounts.register("user5", PASSWORD, "192.0.2.2")  # another address
    clock.now += 3600
    await accounts.register("user6", PASSWORD, "192.0.2.1")


# Sessions


async def planted(accounts: Accounts, created_days_ago: float, seen_days_ago: float) -> str:
    """A session of ann's, begun and last used so many days ago: its id."""
    session_id, now = new_session_id(), now_ms()
    seen = now - int(seen_days_ago * DAY)
    await accounts.store.add_session(SignIn(session_hash(session_id), "ann", now - int(created_days_ago * DAY), seen))
    return session_id


@pytest.mark.parametrize(
    ("created", "seen", "alive"),
    [
        (29.9, 0.01, True),  # old, in use
        (30.1, 0.01, False),  # past 30 days, whatever its use (CHAT_SESSION_DAYS)
        (10, 6.9, True),  # unused for less than 7 days
        (10, 7.1, False),  # unused for more (CHAT_SESSION_IDLE_DAYS)
    ],
)
async def test_a_session_ends_30_days_after_it_began_or_7_days_unused(
    accounts: Accounts, created: float, seen: float, alive: bool
) -> None:
    await accounts.add_user("ann", PASSWORD)
    session_id = await planted(accounts, created, seen)
    identity = await accounts.identify(session_id)
    assert (identity is not None) is alive
    stored = await accounts.store.session(session_hash(session_id))
    assert (stored is not None) is alive  # an expired one is deleted as it is found
    if stored is not None and seen > 1 / 24:
        assert now_ms() - stored.seen < 60_000  # using it counts: its idle days start again
    elif stored is not None:
        assert now_ms() - stored.seen > 0.009 * DAY  # recorded at most once an hour (TOUCH_EVERY)


async def test_the_lifetimes_are_settings(clock: Clock) -> None:
    settings = Settings(backend_url="memory://", session_days=2, session_idle_days=0.5)
    accounts = Accounts(MemoryAccounts(), settings, lambda kind, fields: None, clock)
    await accounts.add_user("ann", PASSWORD)
    assert await accounts.identify(await planted(accounts, 1.9, 0.4)) is not None
    assert await accounts.identify(await planted(accounts, 2.1, 0)) is None
    assert await accounts.identify(await planted(accounts, 1, 0.6)) is None
    accounts.close()


def test_a_session_id_is_256_random_bits_and_its_hash_another_string() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(session_id) == 43 for session_id in ids)  # 32 bytes, base64url
    session_id = next(iter(ids))
    assert session_hash(session_id) != session_id
    assert len(session_hash(session_id)) == 64
