"""What happens to a message after it is sent: its author edits it (within
CHAT_EDIT_WINDOW) or deletes it, and anyone reacts to it (docs/protocol.md, "edit",
"delete", "react"). Policy only: the changes are stored, and told to every process, by
the backend's `ChangeStore` (app/backends/changes.py). The `delete` command is
moderation's (app/core/moderation/), which says who may delete what (`authored` here, for
an author's own) and has the store delete it through `delete_message`.

Whose message it is: an account's messages are the account's. A guest's name is anyone's
once it is free, so a guest's messages are its own only for as long as it keeps the name
(this connection, and those that take it over with its token in this process): from its
first message on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.backends.base import BackendError
from app.core.identity import Identity
from app.core.messages import REACTIONS, Message, now_ms, reaction
from app.core.names import name_key
from app.core.protocol import Command, ErrorCode, ProtocolError, command, error_event, id_field, text_field

if TYPE_CHECKING:
    from app.core.hub import Hub
    from app.core.member import Member
    from app.core.session import Session
    from app.settings import Settings

logger = logging.getLogger("chatroom")


@dataclass(frozen=True, slots=True)
class EditMessage(Command):
    """`{"type":"edit","id":ID,"text":T}`: the author's new text for its message."""

    id: int
    text: str


@dataclass(frozen=True, slots=True)
class React(Command):
    """`{"type":"react","id":ID,"emoji":E}`: give the reaction E, or take it back."""

    id: int
    emoji: str


def _id(event: dict[str, Any]) -> int:
    found = id_field(event, "id")
    assert found is not None
    return found


@command("edit")
def _edit(event: dict[str, Any]) -> EditMessage:
    id = _id(event)
    text = text_field(event, "text")
    if not text.strip():
        raise ProtocolError(ErrorCode.EMPTY_TEXT, "A message needs some text: delete it instead")
    return EditMessage(id, text)


@command("react")
def _react(event: dict[str, Any]) -> React:
    id = _id(event)
    given = reaction(text_field(event, "emoji"))
    if given is None:
        detail = f'Expected "emoji" to be one of {" ".join(REACTIONS)}, but got {event["emoji"]!r:.40}'
        raise ProtocolError(ErrorCode.BAD_EVENT, detail)
    return React(id, given)


@dataclass(slots=True)
class _Claim:
    """A guest's hold of its name in a room: its messages from `first` on are its own."""

    identity: Identity  # the very object, kept by connections that take the name over
    first: int


class Changes:
    def __init__(self, hub: Hub, settings: Settings) -> None:
        self._hub = hub
        self._store = hub.backend.changes
        self._window_ms = int(settings.edit_window * 1000)
        self._claims: dict[tuple[str, str], _Claim] = {}  # (room, guest's name key) -> its claim

    def authored(self, session: Session, message: Message) -> bool:
        """Whether `message` is the session's own (see the module's docstring)."""
        identity = session.identity
        if message.guest != identity.guest or name_key(message.name) != identity.key:
            return False
        if identity.account:
            return True
        claim = self._claims.get((session.room.name, identity.key))
        return claim is not None and claim.identity is identity and message.id >= claim.first

    # What the hub tells (install)

    def stored(self, session: Session, message: Message) -> None:
        identity = session.identity
        if identity.account:
            return
        claim = self._claims.get((session.room.name, identity.key))
        if claim is None or claim.identity is not identity:
            self._claims[(session.room.name, identity.key)] = _Claim(identity, message.id)

    def disconnected(self, member: Member) -> None:
        if member.identity.guest:
            # After the turn: a connection taking the name over comes in right after this one goes.
            asyncio.get_running_loop().call_soon(self._forget, member.identity)

    def _forget(self, identity: Identity) -> None:
        if any(member.identity is identity for member in self._hub.connections.get(identity.key, ())):
            return
        for where in [where for where, claim in self._claims.items() if claim.identity is identity]:
            del self._claims[where]

    # Commands

    async def edit(self, session: Session, command: EditMessage) -> None:
        message = await self._find(session, command.id)
        if message is None:
            return
        if not self.authored(session, message):
            _refuse(session, ErrorCode.FORBIDDEN, "Only its author may edit a message")
            return
        if now_ms() - message.ts > self._window_ms:
            minutes = f"{self._window_ms / 60_000:g} minutes"
            _refuse(session, ErrorCode.TOO_LATE, f"A message may be edited for {minutes} after it was sent")
            return
        await self._change(session, self._store.edit(message, command.text, now_ms()))

    async def delete_message(self, message: Message) -> bool:
        """Moderation's `delete_message`: the store deletes `message` (its text gone for good, a
        tombstone in its place) and tells everyone; False if it was deleted or gone already."""
        return await self._store.delete(message) is not None

    async def react(self, session: Session, command: React) -> None:
        await self._change(
            session, self._store.react(session.room.name, command.id, session.identity.key, command.emoji)
        )

    async def _find(self, session: Session, id: int) -> Message | None:
        try:
            message = await self._store.message(session.room.name, id)
        except BackendError:
            logger.exception("could not read message %d of %s", id, session.room.name)
            _refuse(session, ErrorCode.UNAVAILABLE, "That cannot be done right now; try again")
            return None
        if message is None or message.deleted:
            _refuse(session, ErrorCode.NOT_FOUND, f"No message {id} in this room")
            return None
        return message

    @staticmethod
    async def _change(session: Session, change: Awaitable[Message | None]) -> None:
        """Await a change of the store: everyone hears of it, the session only if it failed."""
        try:
            changed = await change
        except BackendError:
            logger.exception("could not change a message of %s", session.room.name)
            _refuse(session, ErrorCode.UNAVAILABLE, "That cannot be done right now; try again")
            return
        if changed is None:
            _refuse(session, ErrorCode.NOT_FOUND, "That message is gone")


def _refuse(session: Session, code: ErrorCode, detail: str) -> None:
    session.member.push(error_event(code, detail))


def install(hub: Hub, settings: Settings) -> Changes:
    """Edits and reactions: the commands, and whose messages are whose (`authored`, which
    moderation's `delete` asks too: `Hub.may_delete`); deletions for moderation to do."""
    changes = Changes(hub, settings)
    hub.on(EditMessage, changes.edit)
    hub.on(React, changes.react)
    hub.may_delete.append(changes.authored)
    hub.stored.append(changes.stored)
    hub.disconnected.append(changes.disconnected)
    return changes
