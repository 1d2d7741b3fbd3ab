"""`Passwords`: argon2id hashes, computed off the event loop, a bounded number at a time.

A hash takes tens of milliseconds of CPU by design. On the event loop that would stall
every room; on unbounded threads a burst of sign-ins would take every core. So hashes run
on one worker thread (the loop keeps a core of a two-core machine), and when more than
`MAX_WAITING` are waiting, the next is refused at once (`Busy`) instead of queued.

On Linux the worker runs WORKER_NICENESS below the server's priority: when the machine is
short of CPU, the chat goes first and sign-ins wait (and, past MAX_WAITING, are refused).
Sign-ins that keep the worker busy then take no share of the CPU from the event loop.
Measured with 20 wrong sign-ins a second on a shared two-core machine under a load of 5 to
9 (tests/system/test_accounts.py): the middle of three windows' p99 chat latency was
12-270 ms, under 100 ms in 1 run of 6, at the same priority; 6-68 ms, under 100 ms in 7 of
9, at nice 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's first recommendation for argon2id (Password Storage Cheat Sheet): 19 MiB, 2
# passes, 1 lane. About 30 ms a hash here; a stored hash says its own parameters, and one
# made with weaker ones is made again at the next sign-in (`needs_rehash`).
MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1
MAX_WAITING = 32  # hashes queued for the worker before more are refused
WORKER_NICENESS = 10  # how much lower the worker's priority is than the server's (Linux)
MIN_LENGTH = 8  # characters
MAX_BYTES = 1024  # UTF-8 bytes: argon2 takes any length, a request must not


_T = TypeVar("_T")


class Busy(Exception):
    """Too many passwords are being checked right now: try again in a moment."""


class BadPassword(ValueError):
    """A new password that breaks the rules; the message says which."""


def clean_password(password: str) -> str:
    """The password as it is hashed: NFC-normalised, so that the same characters typed on
    another system are the same password; `BadPassword` if it breaks the rules.

    The only rules are its length (NIST SP 800-63B): at least MIN_LENGTH characters, at
    most MAX_BYTES bytes. No classes of characters are required.
    """
    password = unicodedata.normalize("NFC", password)
    if len(password) < MIN_LENGTH:
        raise BadPassword(f"A password needs at least {MIN_LENGTH} characters")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise BadPassword(f"A password may have at most {MAX_BYTES} bytes")
    return password


def give_way() -> None:
    """Lower the priority of the calling thread (the worker, as it starts) by WORKER_NICENESS.

    Linux keeps a nice value per thread, so this leaves the event loop's alone; elsewhere
    the value is the process's, and is left as it is."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox may forbid it: hashes then run as they would
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICENESS))


class Passwords:
    def __init__(self) -> None:
        self._hasher = argon2.PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="chatroom-passwords", initializer=give_way)
        self._waiting = 0
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches the `stored` hash; with no hash (an unknown name), the
        same work is done against a hash of nothing, so that the answer takes as long."""
        if stored is None:
            if self._dummy is None:
                # Making it is the work of one check: the first unknown name costs no more.
                self._dummy = await self.hash("no account has this password")
            else:
                await self._run(self._check, self._dummy, password)
            return False
        return await self._run(self._check, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _run(self, function: Callable[..., _T], *args: str) -> _T:
        if self._waiting >= MAX_WAITING:
            raise Busy("Too many sign-ins at once; try again in a moment")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
