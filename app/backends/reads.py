"""The seam of read positions: how far each account has read in each room (app/core/reads.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod


class ReadStore(ABC):
    @abstractmethod
    async def position(self, key: str, room: str) -> int | None:
        """The highest message id the account with name key `key` has read in `room`, if any."""

    @abstractmethod
    async def mark(self, key: str, room: str, id: int) -> None:
        """The account read up to `id`: kept if it is higher than what it read before."""
