"""Per-connection rate limiting: a token bucket, and a tally of what it refused."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each message takes one."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend a token if one is there; False means over the limit."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Strikes:
    """Refused messages, each forgotten at one a second: over `limit` means flooding.

    A person who presses Enter too fast collects a strike or two that fade away; a client
    that keeps sending faster than the rate limit collects them faster than they fade.
    """

    __slots__ = ("_count", "_stamp", "limit")

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self._count = 0.0
        self._stamp = now

    def add(self, now: float) -> bool:
        """Count one refusal; True once the client is flooding."""
        self._count = max(0.0, self._count - (now - self._stamp)) + 1.0
        self._stamp = now
        return self._count > self.limit
