"""Instant messages, a buddy list and away messages, between accounts: what AIM was loved for.

Policy only, plugged into the hub (`install`): what the events mean, who may send them and
what a stranger gets; where everything is kept, and how it reaches every process, is the
backend's `DirectStore`; what this process keeps of its accounts is `Contacts`.

- Only accounts have direct messages, buddies, blocks and away messages: a guest that asks
  for any of them gets `forbidden`, and a guest's name (or a name nobody registered) as a
  recipient gets `no_such_user`, as an unknown name does: nobody learns who is a guest.
- A direct message goes to every connection of both accounts, whichever room each is in,
  in every process; the sender's copy is its acknowledgement. Neither may write to the other
  while either blocks the other (`forbidden`).
- An account blocked by another sees it offline on its buddy list, whatever it is.
- An away message goes to everyone who sees the account: on their buddy lists, and in the
  rooms it is in (`away`, `back` events; a welcome's `away`); a direct message to an account
  that is away gets its away message back, once per conversation and away period, marked
  `auto`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from app.core.contacts import Contacts, away_event
from app.core.direct import (
    DEFAULT_AWAY,
    DM_PAGE,
    MAX_AWAY_LENGTH,
    MAX_BLOCKED,
    MAX_BUDDIES,
    MAX_DM_PAGE,
    Delivery,
    Forbidden,
    Party,
    Snapshot,
)
from app.core.names import InvalidName, clean_name, name_key
from app.core.protocol import (
    Command,
    ErrorCode,
    ProtocolError,
    command,
    error_event,
    id_field,
    int_field,
    text_field,
)

if TYPE_CHECKING:
    from app.backends.base import AccountStore, DirectStore
    from app.core.hub import Hub
    from app.core.identity import Identity
    from app.core.member import Member
    from app.core.room import Room
    from app.core.session import Session

logger = logging.getLogger("chatroom")

GUESTS_HAVE_NONE = "Only signed-in accounts have direct messages, buddies and away messages: sign in"


# What clients send (docs/protocol.md, "Direct messages")


@dataclass(frozen=True, slots=True)
class SendDirect(Command):
    """`{"type":"dm","to":NAME,"text":T}`"""

    to: str
    text: str


@dataclass(frozen=True, slots=True)
class RequestDirectHistory(Command):
    """`{"type":"dm_history","with":NAME,"before":ID,"after":ID,"limit":N}`"""

    partner: str
    before: int | None
    after: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class ChangeList(Command):
    """`buddy_add`, `buddy_remove`, `block`, `unblock`: `{"type":…,"name":NAME}`"""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class SetAway(Command):
    """`{"type":"away","message":M}`; `{"type":"back"}` is a `SetAway` of None."""

    message: str | None


@command("dm")
def _dm(event: dict[str, Any]) -> SendDirect:
    to = text_field(event, "to")
    text = text_field(event, "text")
    if not text.strip():
        raise ProtocolError(ErrorCode.EMPTY_TEXT, "A message needs some text")
    return SendDirect(to, text)


@command("dm_history")
def _dm_history(event: dict[str, Any]) -> RequestDirectHistory:
    partner = text_field(event, "with")
    before = id_field(event, "before", optional=True)
    after = id_field(event, "after", optional=True)
    limit = int_field(event, "limit", 1, MAX_DM_PAGE, default=DM_PAGE)
    assert limit is not None
    return RequestDirectHistory(partner, before, after, limit)


def _list_change(kind: str) -> None:
    @command(kind)
    def parse(event: dict[str, Any]) -> ChangeList:
        return ChangeList(kind, text_field(event, "name"))


for _kind in ("buddy_add", "buddy_remove", "block", "unblock"):
    _list_change(_kind)


@command("away")
def _away(event: dict[str, Any]) -> SetAway:
    message = text_field(event, "message", optional=True).strip()
    if len(message) > MAX_AWAY_LENGTH:
        detail = f'Expected "message" to be at most {MAX_AWAY_LENGTH} characters, but it has {len(message)}'
        raise ProtocolError(ErrorCode.BAD_EVENT, detail)
    return SetAway(message or DEFAULT_AWAY)


@command("back")
def _back(event: dict[str, Any]) -> SetAway:
    return SetAway(None)


def dm_history_event(partner: str, messages: list[bytes], more: bool) -> bytes:
    """A page of a conversation, oldest first; `more` says whether older messages exist."""
    return b"".join(
        (
            b'{"type":"dm_history","with":',
            orjson.dumps(partner),
            b',"messages":[',
            b",".join(messages),
            b'],"more":',
            orjson.dumps(more),
            b"}",
        )
    )


class Messenger:
    """Direct messages, buddy lists, blocks and away messages in this process's hub."""

    def __init__(self, hub: Hub, users: AccountStore) -> None:
        self.hub = hub
        self.users = users
        self.store: DirectStore = hub.backend.direct
        self.contacts = Contacts(hub, self.store)
        # Who is away, in any process: every process hears every change (`notice`), for the
        # rooms the account is in, wherever those rooms' other members are.
        self._away: dict[str, tuple[str, str]] = {}  # key -> name, message
        self._away_names: dict[str, str] = {}  # name -> message

    def install(self) -> None:
        hub = self.hub
        hub.on(SendDirect, self._send)
        hub.on(RequestDirectHistory, self._history)
        hub.on(ChangeList, self._change_list)
        hub.on(SetAway, self._set_away)
        hub.admission.append(self._admit)
        hub.connected.append(self.contacts.connected)
        hub.disconnected.append(self.contacts.disconnected)
        hub.welcome_fields.append(self._welcome_fields)
        hub.notices["away"] = self._away_notice
        self.store.listen(self)

    async def start(self) -> None:
        """Learn who is away already (with a shared backend, other processes may have some)."""
        self.away_reloaded(await self.store.away_everywhere())

    async def forget(self, key: str) -> None:
        """An account was removed (Accounts.remove_user): its messages and lists go."""
        await self.store.forget(key)

    # Joining

    async def _admit(self, room: Room, who: Identity, address: str | None) -> None:
        await self.contacts.admit(who)

    def _welcome_fields(self, room: Room, member: Member) -> dict[str, Any]:
        fields = self.contacts.welcome_fields(member)
        if self._away_names:
            names = {person.name for person in self.hub.presence.online(room.name) if not person.guest}
            if member.identity.account:
                names.add(member.name)  # its other tabs' join may be on its way
            away = {name: self._away_names[name] for name in names if name in self._away_names}
            if away:
                fields = {**fields, "away": away}
        return fields

    # What the backend delivers (app.core.direct.DirectHandler)

    def deliver(self, key: str, delivery: Delivery) -> None:
        self.contacts.deliver(key, delivery)

    async def refresh(self, key: str, snapshot: Snapshot) -> None:
        await self.contacts.refresh(key, snapshot, self.hub.settings.replay_limit)

    def away_reloaded(self, away: dict[str, tuple[str, str]]) -> None:
        self._away = dict(away)
        self._away_names = dict(away.values())

    def _away_notice(self, fields: dict[str, Any]) -> None:
        """An account went away or came back, in some process: tell the rooms it is in here."""
        key, name, message = str(fields["key"]), str(fields["name"]), fields.get("message")
        if message is None:
            if self._away.pop(key, None) is None:
                return
            self._away_names.pop(name, None)
        else:
            if self._away.get(key) == (name, message):
                return
            self._away[key] = (name, str(message))
            self._away_names[name] = str(message)
        event = away_event(name, message if message is None else str(message))
        presence, backend = self.hub.presence, self.hub.backend
        for room in list(self.hub.rooms):
            if presence.is_online(room, key):
                backend.deliver_here(room, event)

    # What sessions ask

    def _refuse(self, session: Session, code: ErrorCode, detail: str) -> None:
        session.member.push(error_event(code, detail))

    def _account(self, session: Session) -> Party | None:
        identity = session.identity
        if identity.guest:
            self._refuse(session, ErrorCode.FORBIDDEN, GUESTS_HAVE_NONE)
            return None
        return Party(identity.key, identity.name)

    async def _named(self, session: Session, name: str, registered: bool = True) -> Party | None:
        """The account called `name`; with `registered` False, a name that may belong to
        nobody any more (to take it off a list). Refuses (`no_such_user`) if there is none."""
        try:
            shown = clean_name(name)
        except InvalidName:
            shown = None
        user = await self.users.user(name_key(shown)) if shown is not None else None
        if user is not None:
            return Party(user.key, user.name)
        if shown is not None and not registered:
            return Party(name_key(shown), shown)
        self._refuse(session, ErrorCode.NO_SUCH_USER, f"No account is named {name[:40]!r}")
        return None

    async def _send(self, session: Session, command: SendDirect) -> None:
        me = self._account(session)
        if me is None:
            return
        try:
            them = await self._named(session, command.to)
            if them is None:
                return
            if them.key == me.key:
                self._refuse(session, ErrorCode.FORBIDDEN, "A direct message goes to somebody else")
                return
            await self.store.send(me, them, command.text, self.contacts.last_id(me.key, them.key))
        except Forbidden as refused:
            self._refuse(session, ErrorCode.FORBIDDEN, str(refused))
        except Exception:
            logger.exception("direct message from %s not stored", me.name)
            self._refuse(session, ErrorCode.NOT_STORED, "Your message could not be stored; send it again")

    async def _history(self, session: Session, command: RequestDirectHistory) -> None:
        me = self._account(session)
        if me is None:
            return
        try:
            them = await self._named(session, command.partner)
            if them is None:
                return
            messages, more = await self.store.history(me.key, them.key, command.before, command.after, command.limit)
        except Exception:
            logger.exception("could not read the direct messages of %s", me.name)
            self._refuse(session, ErrorCode.UNAVAILABLE, "History cannot be read right now; try again")
            return
        session.member.push(dm_history_event(them.name, [message.json for message in messages], more))

    async def _change_list(self, session: Session, command: ChangeList) -> None:
        me = self._account(session)
        if me is None:
            return
        adding = command.kind in ("buddy_add", "block")
        try:
            them = await self._named(session, command.name, registered=adding)
            if them is None:
                return
            if them.key == me.key and adding:
                self._refuse(session, ErrorCode.FORBIDDEN, "That is you")
                return
            if command.kind == "buddy_add" and not await self.store.add_buddy(me, them, MAX_BUDDIES):
                self._refuse(session, ErrorCode.TOO_MANY, f"Your buddy list is full: at most {MAX_BUDDIES}")
            elif command.kind == "block" and not await self.store.block(me, them, MAX_BLOCKED):
                self._refuse(session, ErrorCode.TOO_MANY, f"You block as many as you may: at most {MAX_BLOCKED}")
            elif command.kind == "buddy_remove":
                await self.store.remove_buddy(me, them)
            elif command.kind == "unblock":
                await self.store.unblock(me, them)
        except Exception:
            logger.exception("could not change the lists of %s", me.name)
            self._refuse(session, ErrorCode.UNAVAILABLE, "That cannot be done right now; try again")

    async def _set_away(self, session: Session, command: SetAway) -> None:
        me = self._account(session)
        if me is None:
            return
        try:
            await self.store.away(me, command.message)
        except Exception:
            logger.exception("could not change the away message of %s", me.name)
            self._refuse(session, ErrorCode.UNAVAILABLE, "That cannot be done right now; try again")


def install(hub: Hub, users: AccountStore) -> Messenger:
    """Plug direct messages, buddy lists and away messages into `hub`; `start` it next."""
    messenger = Messenger(hub, users)
    messenger.install()
    return messenger
