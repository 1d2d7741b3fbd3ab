"""`Turn`: the end of an event loop turn, when the hub's rooms send what they received.

Whatever the hub's rooms receive while the loop runs its callbacks goes out together, once
those callbacks are done: first the backend stores what was published meanwhile (`commit`;
the messages it stores are delivered into their rooms as it does), then every room with
something to send sends it. However many messages arrive together, each member costs one
write, and a message is sent only once it is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger("chatroom")


class Sender(Protocol):
    name: str

    def send(self) -> None:
        """Send what is due; called once per turn in which `Turn.schedule` named it."""


class Turn:
    def __init__(self, commit: Callable[[], None]) -> None:
        self._commit = commit
        self._loop = asyncio.get_running_loop()
        self._due: list[Sender] = []
        self._handle: asyncio.Handle | None = None

    def schedule(self, sender: Sender | None = None) -> None:
        """Run the end of this turn; `sender` sends then (it asks once a turn: nothing checks).

        Without a sender, the turn only commits: what the backend stores is delivered into
        the rooms, which schedule themselves as it arrives.
        """
        if sender is not None:
            self._due.append(sender)
        if self._handle is None:
            self._handle = self._loop.call_soon(self._end)

    def _end(self) -> None:
        try:
            self._commit()  # rooms it delivers into join this turn's senders
        except Exception:  # a bug here must not keep the rooms from sending
            logger.exception("committing failed")
        self._handle = None
        due, self._due = self._due, []
        for sender in due:
            try:
                sender.send()
            except Exception:  # a bug in one room must not silence the others
                logger.exception("room %s: sending failed", sender.name)

    def stop(self) -> None:
        """Send what is due now, and schedule nothing more until asked again."""
        if self._handle is not None:
            self._handle.cancel()
            self._end()
