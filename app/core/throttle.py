"""`Backoff`: failed attempts per key (an account, an address) make the next one wait.

The first `free` failures cost nothing; after them each attempt must wait twice as long
as the one before (from `first_wait` up to `max_wait`) after the latest failure. Nothing is
ever locked for good: once the wait is over the owner may try again, and a key whose last
failure is `forget` seconds old is forgotten. At most `max_keys` keys are kept (the
oldest go first), so the table cannot grow without bound under a spray of addresses.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class Backoff:
    def __init__(self, free: int, first_wait: float, max_wait: float, forget: float, max_keys: int = 100_000) -> None:
        self.free = free
        self.first_wait = first_wait
        self.max_wait = max_wait
        self.forget = forget
        self.max_keys = max_keys
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 if it may now."""
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        if now - failures.last >= self.forget:
            del self._failures[key]
            return 0.0
        if failures.count < self.free:
            return 0.0
        wait = min(self.max_wait, self.first_wait * 2.0 ** (failures.count - self.free))
        return max(0.0, failures.last + wait - now)

    def failed(self, key: str, now: float) -> None:
        failures = self._failures.pop(key, None)
        if failures is None or now - failures.last >= self.forget:
            failures = _Failures(0, now)
        failures.count += 1
        failures.last = now
        self._failures[key] = failures  # the most recent last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
