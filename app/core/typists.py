"""Who is typing (docs/protocol.md, "typing"): ephemeral, never stored nor replayed, not
sent back to the typist, and the first thing a busy room drops (app/core/room.py,
`post_ephemeral`).

A person's typing goes out at most every TYPING_EVERY seconds in a room, whatever its
page sends (the rest is dropped, silently: nothing was lost), and not at all while the
room or the backend holds its senders back; a `stop` only after a start that went out.
Pages show someone as typing for TYPING_SHOWN seconds after the last start they heard.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core.protocol import Command, bool_field, command, typing_event

if TYPE_CHECKING:
    from app.core.hub import Hub
    from app.core.session import Session

TYPING_EVERY = 3.0  # seconds between two starts of one person that go out
TYPING_SHOWN = 6.0  # seconds a page shows someone typing after the last start
FORGET_PAST = 1024  # people remembered before those who stopped long ago are forgotten


@dataclass(frozen=True, slots=True)
class Typing(Command):
    """`{"type":"typing"}`, or `{"type":"typing","stop":true}` when the person stopped early."""

    stop: bool


@command("typing")
def _typing(event: dict[str, Any]) -> Typing:
    return Typing(bool_field(event, "stop"))


class Typists:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._started: dict[tuple[str, str], float] = {}  # (room, name key) -> its last start that went out

    async def typing(self, session: Session, command: Typing) -> None:
        room, key = session.room.name, session.identity.key
        now = asyncio.get_running_loop().time()
        if command.stop:
            started = self._started.pop((room, key), None)
            if started is None or now - started > TYPING_SHOWN:
                return  # nobody is shown it typing
        else:
            started = self._started.get((room, key))
            if started is not None and now - started < TYPING_EVERY:
                return
            if self._hub.holds_senders(session):
                return  # busy: messages first
            if len(self._started) >= FORGET_PAST:
                self._started = {where: at for where, at in self._started.items() if now - at <= TYPING_SHOWN}
            self._started[(room, key)] = now
        self._hub.backend.ephemeral(room, key, typing_event(session.name, command.stop))


def install(hub: Hub) -> Typists:
    typists = Typists(hub)
    hub.on(Typing, typists.typing)
    return typists
