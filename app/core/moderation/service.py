"""`Moderation`: who may do what to whom in each room, and doing it on every process.

What it keeps is the backend's `ModerationStore`; what each process must know at once (a
kick, a ban, a mute, a new moderator) travels as a notice (`Backend.notify`, kind NOTICE),
which every process's hub hears, this one's first:

- `event`: the `moderation` event for the members of `room` this process holds;
- `changes`: what changed in the room's rules or mutes, applied to this process's copy of
  them (the copy of a room open here, loaded from the store when it opened, and read again
  after each change so that two changes made at once on two processes end up the same);
- `close`: connections to close with 4403: by name key (`keys`), and guests by the keyed
  hash of their address (`targets`), in `room` or, `everywhere`, in every room;
- `guest`: a ban or a mute of a guest, which is by its address: the process holding the
  guest stores it (it alone knows the address), then sends the `close` or the `changes`.

A mute is checked where every message passes (`Hub.gates`): a muted member is a key of that
dict, everyone else costs one lookup that finds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from app.backends.base import BackendError
from app.core.hub import Refused
from app.core.identity import Identity
from app.core.limits import TokenBucket
from app.core.messages import Message, now_ms
from app.core.moderation.commands import Order, moderation_event, standing_event
from app.core.moderation.ranks import NEEDS, Action, Rank, may, rank_of, role_name
from app.core.moderation.records import (
    SERVER_WIDE,
    AuditEntry,
    Kind,
    Person,
    Role,
    RoomRules,
    Sanction,
    Topic,
    account_target,
    address_target,
    iso,
    sanction_fields,
    sanction_from,
)
from app.core.names import InvalidName, clean_name, name_key
from app.core.protocol import MAX_ID, CloseCode, ErrorCode, close_reason, dumps, error_event
from app.core.room import Room

if TYPE_CHECKING:
    from app.backends.base import ModerationStore
    from app.core.hub import Hub
    from app.core.member import Member
    from app.core.session import Session

logger = logging.getLogger("chatroom.moderation")

NOTICE = "moderation"
# Each account may act 10 times at once, then once a second (in each process): enough to clear
# out a raid, not enough to flood the audit log and every process with notices.
ACTION_RATE, ACTION_BURST = 1.0, 10
MAX_MODERATORS = 100  # per room
MAX_INVITED = 1000  # accounts invited to a room
AUDIT_PAGE, MAX_AUDIT_PAGE = 50, 200

# Deletes a message from the store (its text gone, a tombstone in its place) and tells
# everyone online (the `delete` event); False if it was deleted or gone already.
DeleteMessage = Callable[[Message], Awaitable[bool]]


class Forbidden(Exception):
    """The one asking may not see or do this (the audit log of a room not theirs)."""


class _Refusal(Exception):
    """An order refused: `error` `code` with `detail`, to its sender alone."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _forbidden(detail: str) -> _Refusal:
    return _Refusal(ErrorCode.FORBIDDEN, detail)


@dataclass(frozen=True, slots=True)
class RoomState:
    """What this process knows of a room open here: its rules, and who is muted in it."""

    rules: RoomRules = field(default_factory=RoomRules)
    mutes: dict[str, Sanction] = field(default_factory=dict)  # target -> its mute


@dataclass(frozen=True, slots=True)
class _Target:
    """Whom an order names: `here` if online in the room (in any process)."""

    key: str
    name: str
    guest: bool
    admin: bool
    here: bool

    def rank(self, rules: RoomRules) -> Rank:
        return rank_of(self.key, not self.guest, self.admin, rules)


class _Muted:
    """The gate of a muted member: each message gets `error` `muted`, until the mute ends."""

    __slots__ = ("_gates", "sanction")

    def __init__(self, sanction: Sanction, gates: dict[Member, Callable[[Session], bool]]) -> None:
        self.sanction = sanction
        self._gates = gates

    def __call__(self, session: Session) -> bool:
        until = self.sanction.until
        if until is not None and now_ms() >= until:
            self._gates.pop(session.member, None)  # over: the timer's announcement may still be on its way
            return False
        session.member.push(error_event(ErrorCode.MUTED, f"{_muted_text(self.sanction)}: your message was not sent"))
        return True


def _muted_text(sanction: Sanction) -> str:
    until = f" until {iso(sanction.until)}" if sanction.until is not None else ""
    why = f": {sanction.reason}" if sanction.reason else ""
    return f"You are muted here{until} (by {sanction.by}{why})"


def _ban_text(sanction: Sanction) -> str:
    where = "this server" if sanction.scope == SERVER_WIDE else "this room"
    until = f" until {iso(sanction.until)}" if sanction.until is not None else ""
    why = f": {sanction.reason}" if sanction.reason else ""
    return f"Banned from {where}{until} by {sanction.by}{why}"


def _person(fields: dict[str, Any] | None) -> Person | None:
    return None if fields is None else Person(str(fields["key"]), str(fields["name"]))


def _person_fields(person: Person | None) -> dict[str, str] | None:
    return None if person is None else {"key": person.key, "name": person.name}


def _topic_fields(topic: Topic | None) -> dict[str, Any] | None:
    return None if topic is None else {"text": topic.text, "by": topic.by, "ts": topic.ts}


def apply_changes(state: RoomState, changes: list[dict[str, Any]]) -> RoomState:
    """`state` with the `changes` of a notice made."""
    rules, mutes = state.rules, dict(state.mutes)
    for change in changes:
        if "owner" in change:
            rules = replace(rules, owner=_person(change["owner"]))
        if "role" in change:
            person = _person(change["person"])
            assert person is not None
            moderators = change["role"] == Role.MODERATOR.value
            people = [
                someone for someone in (rules.moderators if moderators else rules.invited) if someone.key != person.key
            ]
            if change["granted"]:
                people.append(person)
            ordered = tuple(sorted(people, key=lambda someone: someone.key))
            rules = replace(rules, moderators=ordered) if moderators else replace(rules, invited=ordered)
        if "members_only" in change:
            rules = replace(rules, members_only=bool(change["members_only"]))
        if "topic" in change:
            topic = change["topic"]
            rules = replace(rules, topic=None if topic is None else Topic(topic["text"], topic["by"], topic["ts"]))
        if "mute" in change:
            sanction = sanction_from(change["mute"])
            mutes[sanction.target] = sanction
        for target in change.get("unmute", ()):
            mutes.pop(target, None)
    return RoomState(rules, mutes)


class Moderation:
    """Roles, sanctions, doors and topics of every room, for the hub of this process."""

    def __init__(self, hub: Hub, delete_message: DeleteMessage) -> None:
        self.hub = hub
        self.store: ModerationStore = hub.backend.moderation
        self._delete_message = delete_message
        self._secret: bytes | None = None
        self._states: WeakKeyDictionary[Room, RoomState] = WeakKeyDictionary()
        self._changes: WeakKeyDictionary[Room, int] = WeakKeyDictionary()  # notices heard, per room
        self._refreshing: WeakKeyDictionary[Room, asyncio.Task[None]] = WeakKeyDictionary()
        self._timers: WeakKeyDictionary[Room, asyncio.TimerHandle] = WeakKeyDictionary()
        self._targets: WeakKeyDictionary[Member, str | None] = WeakKeyDictionary()
        self._told: WeakKeyDictionary[Member, dict[str, Any]] = WeakKeyDictionary()  # its last standing
        self._buckets: dict[str, TokenBucket] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        hub = self.hub
        hub.on(Order, self._order)
        hub.admission.append(self._admit)
        hub.room_opening.append(self._opening)
        hub.welcome_fields.append(self._welcome)
        hub.connected.append(self._connected)
        hub.disconnected.append(self._disconnected)
        hub.notices[NOTICE] = lambda fields: self._notice(NOTICE, fields)
        hub.may_read.append(self.may_read)

    async def stop(self) -> None:
        """Cancel the timers of mutes, and wait for what is being stored."""
        for timer in list(self._timers.values()):
            timer.cancel()
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # Rooms

    async def _opening(self, room: Room) -> None:
        try:
            if self._secret is None:
                self._secret = await self.store.secret()
            await self._refresh(room)
        except Exception as exc:
            logger.exception("could not read the rules of %s", room.name)
            raise BackendError(f"the rules of {room.name!r} cannot be read: {exc}") from exc

    async def _load(self, room: str) -> RoomState:
        rules = await self.store.rules(room)
        mutes = await self.store.sanctions(room, Kind.MUTE, now_ms())
        return RoomState(rules, {mute.target: mute for mute in mutes})

    async def _refresh(self, room: Room) -> None:
        """Read the room's rules and mutes until no notice came for it meanwhile, and use them."""
        while True:
            seen = self._changes.get(room, 0)
            state = await self._load(room.name)
            if self._changes.get(room, 0) == seen:
                break
        self._use(room, state)

    def _converge(self, room: Room) -> None:
        """Read the room's state again soon: a copy changed by notices ends up as the store has it."""
        if room in self._refreshing or not room.opened.done():
            return  # the refresh under way reads it again, seeing that a notice came
        self._refreshing[room] = self._spawn(self._refresh_quietly(room))

    async def _refresh_quietly(self, room: Room) -> None:
        try:
            await self._refresh(room)
        except Exception:
            logger.exception("could not read the rules of %s again", room.name)
        finally:
            self._refreshing.pop(room, None)

    def _state(self, room: Room) -> RoomState:
        return self._states.get(room) or RoomState()

    def _use(self, room: Room, state: RoomState) -> None:
        """Make `state` the room's: gates, standings and the timer of the next mute to end follow it.

        A mute over by now is left out, and announced if the state before had it: a state read
        just before a mute ended, and used just after, says nothing twice."""
        now = now_ms()
        state = RoomState(state.rules, {target: mute for target, mute in state.mutes.items() if mute.active(now)})
        before = self._states.get(room)
        self._states[room] = state
        if before is not None:
            for target, mute in before.mutes.items():
                if target not in state.mutes and not mute.active(now):
                    self._announce_end(room, mute)
        self._follow(room, state, now)

    def _follow(self, room: Room, state: RoomState, now: int) -> None:
        for member in room.members:
            self._gate(member, state, now)
            standing = self._standing(member, state, now)
            if self._told.get(member) != standing:
                self._told[member] = standing
                member.push(standing_event(room.name, standing))
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        ends = [mute.until for mute in state.mutes.values() if mute.until is not None]
        if ends:
            delay = max(0.0, (min(ends) - now) / 1000)
            self._timers[room] = asyncio.get_running_loop().call_later(delay, self._mutes_end, room)

    def _mutes_end(self, room: Room) -> None:
        """The first mute of the room to end has ended: everyone hears it, and it may speak."""
        self._timers.pop(room, None)
        state = self._states.get(room)
        if state is None or self.hub.rooms.get(room.name) is not room:
            return
        now = now_ms()
        over = [mute for mute in state.mutes.values() if not mute.active(now)]
        kept = {target: mute for target, mute in state.mutes.items() if mute.active(now)}
        self._states[room] = RoomState(state.rules, kept)
        for mute in over:
            self._announce_end(room, mute)
        self._follow(room, self._states[room], now)

    def _announce_end(self, room: Room, mute: Sanction) -> None:
        event = moderation_event(room.name, Action.UNMUTE, None, now_ms(), name=mute.name, expired=True)
        self.hub.backend.deliver_here(room.name, dumps(event))

    # Connections

    def _target(self, member: Member) -> str | None:
        """What sanctions on `member` name: its account, or a guest's address (hashed)."""
        if member in self._targets:
            return self._targets[member]
        target = self._target_of(member.identity, member.address)
        self._targets[member] = target
        return target

    def _target_of(self, identity: Identity | None, address: str | None) -> str | None:
        """What sanctions on someone name: its account, or a guest's (None: a guest from
        outside the room) address, hashed."""
        if identity is not None and identity.account:
            return account_target(identity.key)
        if address is None or self._secret is None:
            return None  # a Unix socket's: no address to ban
        return address_target(self._secret, address)

    def _gate(self, member: Member, state: RoomState, now: int) -> None:
        target = self._target(member)
        mute = state.mutes.get(target) if target is not None and state.mutes else None
        gates = self.hub.gates
        if mute is not None and mute.active(now):
            current = gates.get(member)
            if not isinstance(current, _Muted) or current.sanction != mute:
                gates[member] = _Muted(mute, gates)
        elif member in gates:
            del gates[member]

    def _standing(self, member: Member, state: RoomState, now: int) -> dict[str, Any]:
        """What the connection is to its room and may do there (the welcome's, and `standing`)."""
        identity = member.identity
        rank = rank_of(identity.key, identity.account, identity.admin, state.rules)
        target = self._target(member)
        mute = state.mutes.get(target) if target is not None else None
        muted = None
        if mute is not None and mute.active(now):
            muted = {"until": iso(mute.until) if mute.until is not None else None, "by": mute.by, "reason": mute.reason}
        return {"role": role_name(rank), "may": may(rank, identity.account, state.rules), "muted": muted}

    def _welcome(self, room: Room, member: Member) -> dict[str, Any]:
        state = self._state(room)
        rules = state.rules
        standing = self._standing(member, state, now_ms())
        self._told[member] = standing
        return {
            "owner": rules.owner.name if rules.owner is not None else None,
            "moderators": [person.name for person in rules.moderators],
            "members_only": rules.members_only,
            "topic": _topic_fields(rules.topic),
            **standing,
        }

    def _connected(self, member: Member) -> None:
        room = member.owner
        state = self._states.get(room) if isinstance(room, Room) else None
        if state is not None and state.mutes:
            self._gate(member, state, now_ms())

    def _disconnected(self, member: Member) -> None:
        self.hub.gates.pop(member, None)
        if member.key not in self.hub.connections:
            self._buckets.pop(member.key, None)

    async def _admit(self, room: Room, who: Identity, address: str | None) -> None:
        """Refuse the banned (4403) and, at a door for members only, the others (4403; guests 4401)."""
        target = self._target_of(who, address)
        if target is not None:
            try:
                ban = await self._ban(room.name, target)
            except Exception as exc:
                logger.exception("could not read the bans of %s", room.name)
                raise BackendError(f"the bans of {room.name!r} cannot be read: {exc}") from exc
            if ban is not None:
                raise Refused(CloseCode.FORBIDDEN, _ban_text(ban))
        rules = self._state(room).rules
        if rules.members_only and not _member_of(rules, who):
            if who.guest:
                raise Refused(CloseCode.NOT_SIGNED_IN, "This room is for its members: sign in to an invited account")
            raise Refused(CloseCode.FORBIDDEN, "This room is for its members: ask its owner for an invitation")

    # What the web layer asks

    def _rules_here(self, room: str) -> RoomRules:
        found = self.hub.rooms.get(room)
        return self._state(found).rules if found is not None else RoomRules()

    def members_only(self, room: str) -> bool:
        """Whether `room` (open in this process) is for its members only."""
        return self._rules_here(room).members_only

    def listed(self, room: str, identity: Identity | None) -> bool:
        """Whether `/api/rooms` shows `room` (open in this process) to `identity`: not a room
        for members only to someone who cannot come in."""
        rules = self._rules_here(room)
        return not rules.members_only or (identity is not None and _member_of(rules, identity))

    async def may_read(self, room: str, identity: Identity | None, address: str | None) -> bool:
        """Whether `identity` (None: a guest) from `address` may read `room` from outside it
        (search): not a room for members only, unless a member of it asks; not whoever is
        banned from it (an account by its account, a guest by its address)."""
        found = self.hub.rooms.get(room)
        rules = self._state(found).rules if found is not None else await self.store.rules(room)
        if rules.members_only and not (identity is not None and _member_of(rules, identity)):
            return False
        if self._secret is None:  # no room opened here yet
            self._secret = await self.store.secret()
        target = self._target_of(identity, address)
        return target is None or await self._ban(room, target) is None

    async def _ban(self, room: str, target: str) -> Sanction | None:
        """The ban in force on `target` in `room` or server-wide, if there is one."""
        return await self.store.sanction([room, SERVER_WIDE], Kind.BAN, [target], now_ms())

    async def audit_page(
        self, identity: Identity, room: str, before: int | None, limit: int = AUDIT_PAGE
    ) -> tuple[list[AuditEntry], bool]:
        """A page of the room's audit log, newest first, and whether older entries exist: for
        its owner, its moderators and admins; `Forbidden` to others."""
        found = self.hub.rooms.get(room)
        rules = self._state(found).rules if found is not None else await self.store.rules(room)
        if rank_of(identity.key, identity.account, identity.admin, rules) < Rank.MODERATOR:
            raise Forbidden("Only the room's owner, its moderators and admins may read its audit log")
        limit = min(limit, MAX_AUDIT_PAGE)
        entries = await self.store.audit(room, before, limit + 1)
        return entries[:limit], len(entries) > limit

    # Orders

    async def _order(self, session: Session, order: Order) -> None:
        try:
            await self._carry_out(session, order)
        except _Refusal as refusal:
            session.member.push(error_event(refusal.code, refusal.detail))
        except Exception:
            logger.exception("%s by %s in %s failed", order.action, session.name, session.room.name)
            detail = "That cannot be done right now; try again"
            session.member.push(error_event(ErrorCode.UNAVAILABLE, detail))

    async def _carry_out(self, session: Session, order: Order) -> None:
        room, actor = session.room, session.identity
        rules = self._state(room).rules
        rank = rank_of(actor.key, actor.account, actor.admin, rules)
        action = order.action
        if action is Action.CLAIM:
            return await self._claim(session, rules)
        if action is Action.DELETE:
            return await self._delete(session, order, rank, rules)
        if rank < NEEDS[action]:
            raise _forbidden(f"Only {_who_may(NEEDS[action])} may {action.value} here")
        if order.everywhere and rank < Rank.ADMIN:
            raise _forbidden("Only admins may ban from the whole server")
        if order.role is Role.OWNER and rank < Rank.ADMIN and action is Action.REVOKE:
            raise _forbidden("Only admins may take a room from its owner")
        if action is Action.TOPIC:
            return await self._topic(session, order)
        if action is Action.MODE:
            return await self._mode(session, order)
        target = await self._find(room, order.name)
        if action in (Action.UNBAN, Action.UNMUTE):
            return await self._lift(session, order, target)
        if target is None:
            raise _Refusal(ErrorCode.NOT_FOUND, f"Nobody named {order.name!r} is here or has an account")
        if target.rank(rules) >= rank:
            raise _forbidden(f"{target.name} ranks as high as you here, or higher: only someone above may do that")
        if action is Action.KICK:
            return await self._kick(session, order, target)
        if action in (Action.BAN, Action.MUTE):
            return await self._sanction(session, order, target)
        if target.guest:
            raise _forbidden(f"{target.name} is a guest: roles and invitations are for accounts")
        if action in (Action.GRANT, Action.REVOKE):
            return await self._role(session, order, target, rank)
        return await self._invite(session, order, target)

    def _take_turn(self, session: Session) -> None:
        """Count the action against its actor's rate (refusals before this cost nothing here)."""
        now = asyncio.get_running_loop().time()
        bucket = self._buckets.get(session.identity.key)
        if bucket is None:
            bucket = self._buckets[session.identity.key] = TokenBucket(ACTION_RATE, ACTION_BURST, now)
        if not bucket.take(now):
            raise _Refusal(
                ErrorCode.RATE_LIMITED,
                f"Slow down: at most {ACTION_BURST} moderation actions at once, then one a second",
            )

    async def _find(self, room: Room, name: str) -> _Target | None:
        try:
            cleaned = clean_name(name)
        except InvalidName as exc:
            raise _Refusal(ErrorCode.BAD_EVENT, str(exc)) from None
        key = name_key(cleaned)
        holders = room.people.get(key)
        if holders:
            identity = holders[0].identity
            return _Target(key, identity.name, identity.guest, identity.admin, here=True)
        here = next((person for person in self.hub.presence.online(room.name) if name_key(person.name) == key), None)
        if here is not None and here.guest:
            return _Target(key, here.name, guest=True, admin=False, here=True)
        user = await self.hub.backend.accounts.user(key)
        if user is None:
            return None
        return _Target(key, user.name, guest=False, admin=user.admin, here=here is not None)

    async def _author_rank(self, message: Message, rules: RoomRules) -> Rank:
        """The rank here of who wrote `message`: a guest's is a member's; an account's, its role."""
        if message.guest:
            return Rank.MEMBER
        key = name_key(message.name)
        user = await self.hub.backend.accounts.user(key)
        return rank_of(key, True, user is not None and user.admin, rules)

    def _tell(self, room: Room, event: dict[str, Any] | None = None, **fields: Any) -> None:
        """Tell every process (this one first) of what was done in `room` (see the module's docstring)."""
        notice: dict[str, Any] = {"room": room.name, **fields}
        if event is not None:
            notice["event"] = event
        self.hub.backend.notify(NOTICE, notice)

    async def _record(
        self,
        session: Session,
        action: Action,
        target: str | None = None,
        reason: str = "",
        until: int | None = None,
        detail: str = "",
    ) -> int:
        now = now_ms()
        entry = AuditEntry(0, now, session.room.name, session.name, action.value, target, reason, until, detail)
        await self.store.record(entry)
        return now

    async def _kick(self, session: Session, order: Order, target: _Target) -> None:
        if not target.here:
            raise _Refusal(ErrorCode.NOT_FOUND, f"{target.name} is not in this room")
        self._take_turn(session)
        now = await self._record(session, Action.KICK, target.name, order.reason)
        event = moderation_event(
            session.room.name, Action.KICK, session.name, now, name=target.name, reason=order.reason
        )
        why = f"Kicked by {session.name}" + (f": {order.reason}" if order.reason else "")
        self._tell(session.room, event, close={"keys": [target.key], "reason": why})

    async def _sanction(self, session: Session, order: Order, target: _Target) -> None:
        kind = Kind.BAN if order.action is Action.BAN else Kind.MUTE
        if target.guest and not target.here:
            raise _Refusal(ErrorCode.NOT_FOUND, f"{target.name} is not here: a guest is {kind.value}ned by its address")
        self._take_turn(session)
        now = now_ms()
        until = now + order.seconds * 1000 if order.seconds is not None else None
        scope = SERVER_WIDE if order.everywhere else session.room.name
        sanction = Sanction(
            scope, kind, account_target(target.key), target.name, target.key, session.name, order.reason, now, until
        )
        if not target.guest:
            await self.store.add_sanction(sanction)
        await self._record(
            session, order.action, target.name, order.reason, until, "everywhere" if order.everywhere else ""
        )
        event = moderation_event(
            session.room.name,
            order.action,
            session.name,
            now,
            name=target.name,
            reason=order.reason,
            until=iso(until) if until is not None else None,
            everywhere=True if order.everywhere else None,
        )
        if target.guest:
            spec = {**sanction_fields(sanction), "everywhere": order.everywhere}
            self._tell(session.room, event, guest=spec)
        elif kind is Kind.BAN:
            close = {"keys": [target.key], "reason": _ban_text(sanction), "everywhere": order.everywhere}
            self._tell(session.room, event, close=close)
        else:
            self._tell(session.room, event, changes=[{"mute": sanction_fields(sanction)}])

    async def _lift(self, session: Session, order: Order, target: _Target | None) -> None:
        kind = Kind.BAN if order.action is Action.UNBAN else Kind.MUTE
        key = target.key if target is not None else name_key(clean_name(order.name))
        self._take_turn(session)
        scope = SERVER_WIDE if order.everywhere else session.room.name
        lifted = await self.store.lift(scope, kind, key, now_ms())
        if not lifted:
            raise _Refusal(ErrorCode.NOT_FOUND, f"{order.name} is not {kind.value}ned here")
        name = lifted[0].name
        now = await self._record(session, order.action, name, detail="everywhere" if order.everywhere else "")
        everywhere = True if order.everywhere else None
        event = moderation_event(session.room.name, order.action, session.name, now, name=name, everywhere=everywhere)
        changes = [{"unmute": [sanction.target for sanction in lifted]}] if kind is Kind.MUTE else []
        self._tell(session.room, event, changes=changes)

    async def _topic(self, session: Session, order: Order) -> None:
        self._take_turn(session)
        text = order.text.strip()
        now = now_ms()
        topic = Topic(text, session.name, now) if text else None
        await self.store.set_topic(session.room.name, topic)
        await self._record(session, Action.TOPIC, detail=text)
        event = moderation_event(session.room.name, Action.TOPIC, session.name, now, text=text)
        self._tell(session.room, event, changes=[{"topic": _topic_fields(topic)}])

    async def _mode(self, session: Session, order: Order) -> None:
        self._take_turn(session)
        await self.store.set_members_only(session.room.name, order.members_only)
        now = await self._record(session, Action.MODE, detail="members only" if order.members_only else "open")
        event = moderation_event(session.room.name, Action.MODE, session.name, now, members_only=order.members_only)
        self._tell(session.room, event, changes=[{"members_only": order.members_only}])

    async def _claim(self, session: Session, rules: RoomRules) -> None:
        actor = session.identity
        if not actor.account:
            raise _forbidden("Sign in to claim a room: rooms are owned by accounts")
        if rules.owner is not None:
            raise _forbidden(f"This room is {rules.owner.name}'s already")
        self._take_turn(session)
        me = Person(actor.key, actor.name)
        if not await self.store.claim(session.room.name, me):
            raise _forbidden("Someone claimed this room just now")
        changes: list[dict[str, Any]] = [{"owner": _person_fields(me)}]
        if rules.has(Role.MODERATOR, me.key):
            await self.store.set_role(session.room.name, Role.MODERATOR, me, False)
            changes.append({"role": Role.MODERATOR.value, "person": _person_fields(me), "granted": False})
        now = await self._record(session, Action.CLAIM)
        self._tell(session.room, self._role_event(session, Action.CLAIM, now, rules, changes), changes=changes)

    async def _role(self, session: Session, order: Order, target: _Target, rank: Rank) -> None:
        room = session.room
        rules = self._state(room).rules
        person = Person(target.key, target.name)
        changes: list[dict[str, Any]] = []
        if order.role is Role.MODERATOR:
            granted = order.action is Action.GRANT
            if granted == rules.has(Role.MODERATOR, target.key):
                state = "a moderator already" if granted else "not a moderator"
                raise _Refusal(ErrorCode.NOT_FOUND, f"{target.name} is {state} here")
            if granted and len(rules.moderators) >= MAX_MODERATORS:
                raise _forbidden(f"A room has at most {MAX_MODERATORS} moderators")
            self._take_turn(session)
            await self.store.set_role(room.name, Role.MODERATOR, person, granted)
            changes.append({"role": Role.MODERATOR.value, "person": _person_fields(person), "granted": granted})
        elif order.action is Action.GRANT:  # the room to someone else
            self._take_turn(session)
            await self.store.set_owner(room.name, person)
            changes.append({"owner": _person_fields(person)})
            if rules.has(Role.MODERATOR, person.key):
                await self.store.set_role(room.name, Role.MODERATOR, person, False)
                changes.append({"role": Role.MODERATOR.value, "person": _person_fields(person), "granted": False})
            previous = rules.owner
            if rank is Rank.OWNER and previous is not None:  # handed over: the old owner stays a moderator
                await self.store.set_role(room.name, Role.MODERATOR, previous, True)
                changes.append({"role": Role.MODERATOR.value, "person": _person_fields(previous), "granted": True})
        else:  # an admin takes the room from its owner
            if not rules.has(Role.OWNER, target.key):
                raise _Refusal(ErrorCode.NOT_FOUND, f"{target.name} does not own this room")
            self._take_turn(session)
            await self.store.set_owner(room.name, None)
            changes.append({"owner": None})
        assert order.role is not None
        now = await self._record(session, order.action, target.name, detail=order.role.value)
        event = self._role_event(session, order.action, now, rules, changes, name=target.name, role=order.role.value)
        self._tell(room, event, changes=changes)

    def _role_event(
        self, session: Session, action: Action, now: int, rules: RoomRules, changes: list[dict[str, Any]], **fields: Any
    ) -> dict[str, Any]:
        """A `moderation` event of a change of roles, with the room's owner and moderators after it."""
        after = apply_changes(RoomState(rules), changes).rules
        event = moderation_event(session.room.name, action, session.name, now, **fields)
        event["owner"] = after.owner.name if after.owner is not None else None
        event["moderators"] = [person.name for person in after.moderators]
        return event

    async def _invite(self, session: Session, order: Order, target: _Target) -> None:
        room = session.room
        rules = self._state(room).rules
        granted = order.action is Action.INVITE
        if granted == rules.has(Role.INVITED, target.key):
            state = "invited already" if granted else "not invited"
            raise _Refusal(ErrorCode.NOT_FOUND, f"{target.name} is {state}")
        if granted and len(rules.invited) >= MAX_INVITED:
            raise _forbidden(f"A room invites at most {MAX_INVITED} accounts")
        self._take_turn(session)
        person = Person(target.key, target.name)
        await self.store.set_role(room.name, Role.INVITED, person, granted)
        now = await self._record(session, order.action, target.name)
        event = moderation_event(room.name, order.action, session.name, now, name=target.name)
        changes = [{"role": Role.INVITED.value, "person": _person_fields(person), "granted": granted}]
        self._tell(room, event, changes=changes)

    async def _delete(self, session: Session, order: Order, rank: Rank, rules: RoomRules) -> None:
        room = session.room
        found, _ = await self.hub.backend.history(room.name, min(order.id + 1, MAX_ID), 1)
        message = found[0] if found and found[0].id == order.id and not found[0].deleted else None
        if message is None:
            raise _Refusal(ErrorCode.NOT_FOUND, f"There is no message {order.id} in this room")
        # Whose own it is, the hub's rules say (app/core/changes.py: an account's messages are
        # its own; a guest's, while it keeps its name). Anyone else's: a moderator's to delete,
        # as for any action on a person, if the author ranks lower.
        if not any(rule(session, message) for rule in self.hub.may_delete):
            if rank < Rank.MODERATOR:
                raise _forbidden("Only its author and moderators may delete a message")
            if await self._author_rank(message, rules) >= rank:
                raise _forbidden(f"{message.name} ranks as high as you here, or higher: only someone above may do that")
        self._take_turn(session)
        if not await self._delete_message(message):
            raise _Refusal(ErrorCode.NOT_FOUND, "That message is gone")
        now = await self._record(session, Action.DELETE, message.name, detail=f"message {order.id}")
        event = moderation_event(room.name, Action.DELETE, session.name, now, name=message.name, id=order.id)
        self._tell(room, event)

    # Notices, from every process (this one's included)

    def _notice(self, kind: str, fields: dict[str, Any]) -> None:
        if kind != NOTICE:
            return
        room = self.hub.rooms.get(str(fields.get("room")))
        if room is not None:
            self._changes[room] = self._changes.get(room, 0) + 1
            changes = fields.get("changes")
            if changes:
                state = self._states.get(room)
                if state is not None:
                    self._use(room, apply_changes(state, changes))
                self._converge(room)
            if "guest" in fields:
                self._sanction_guest(room, fields["guest"])
            event = fields.get("event")
            if event is not None:
                self.hub.backend.deliver_here(room.name, dumps(event))
        close = fields.get("close")
        if close is not None:
            self._close(room, close)

    def _close(self, room: Room | None, close: dict[str, Any]) -> None:
        keys, targets = set(close.get("keys", ())), set(close.get("targets", ()))
        reason = close_reason(str(close.get("reason", "Removed from the room")))
        if close.get("everywhere"):
            members = [member for open_room in list(self.hub.rooms.values()) for member in open_room.members]
        else:
            members = room.members if room is not None else []
        for member in members:
            if member.key in keys or (targets and member.identity.guest and self._target(member) in targets):
                member.close(CloseCode.FORBIDDEN, reason)

    def _sanction_guest(self, room: Room, spec: dict[str, Any]) -> None:
        """A guest of this process is banned or muted: by its address, which only this process knows."""
        holders = [member for member in room.people.get(str(spec["key"]), ()) if member.identity.guest]
        if holders:
            self._spawn(self._store_guest_sanction(room, holders[0], spec))

    async def _store_guest_sanction(self, room: Room, member: Member, spec: dict[str, Any]) -> None:
        target = self._target(member)
        if target is None:
            logger.warning("%s in %s has no address to %s", member.name, room.name, spec["kind"])
            return
        sanction = replace(sanction_from(spec), target=target)
        try:
            await self.store.add_sanction(sanction)
        except Exception:
            logger.exception("could not store the %s of %s in %s", sanction.kind.value, member.name, room.name)
            member.push(error_event(ErrorCode.UNAVAILABLE, "moderation failed"))  # never seen: it is closed next
            if sanction.kind is Kind.MUTE:
                return
        # Stored first: a guest closed only once its ban is kept cannot come back in between.
        if sanction.kind is Kind.BAN:
            close = {"targets": [target], "reason": _ban_text(sanction), "everywhere": bool(spec.get("everywhere"))}
            self.hub.backend.notify(NOTICE, {"room": room.name, "close": close})
        else:
            self.hub.backend.notify(NOTICE, {"room": room.name, "changes": [{"mute": sanction_fields(sanction)}]})

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _member_of(rules: RoomRules, who: Identity) -> bool:
    """Whether `who` may come in when the room is for its members only."""
    if not who.account:
        return False
    return (
        who.admin
        or rules.has(Role.OWNER, who.key)
        or rules.has(Role.MODERATOR, who.key)
        or rules.has(Role.INVITED, who.key)
    )


def _who_may(rank: Rank) -> str:
    return {Rank.MODERATOR: "moderators", Rank.OWNER: "the room's owner", Rank.ADMIN: "admins"}.get(rank, "members")


def install(hub: Hub, delete_message: DeleteMessage) -> Moderation:
    """Plug moderation into `hub`. `delete_message(message)` removes a message's text from the
    store and tells everyone online (the `delete` event): app/core/changes.py's."""
    moderation = Moderation(hub, delete_message)
    moderation.install()
    return moderation
