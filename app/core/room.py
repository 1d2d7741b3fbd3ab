"""`Room`: the members of one room in this process, and the events on their way to them.

Fan-out is batched: every event a room receives during a turn of the event loop is joined
into frames (serialised once, under MAX_BATCH each) at the end of that turn (app/core/turn.py)
and handed to each member once. The room is also the pace of its senders: a member far
behind holds them up until it catches up, or is found to have stopped reading.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core.protocol import CloseCode, frames_of, welcome_event
from app.core.stats import Stats

if TYPE_CHECKING:
    from app.core.identity import Online
    from app.core.member import Member, SinkMember
    from app.core.messages import Message
    from app.core.turn import Turn

PRESENCE_DELAY = 0.1  # seconds a join or leave may wait to share a frame with others

# Ephemeral events (someone typing) are the first thing a busy room drops: all of a turn's
# when a member is far behind or the turn has more than BUSY_EVENTS other events to send,
# those past MAX_EPHEMERAL in one turn, and, for a member with more than EPHEMERAL_QUEUE
# bytes waiting already, every one: they never make anybody fall behind.
BUSY_EVENTS = 64
MAX_EPHEMERAL = 16
EPHEMERAL_QUEUE = 16_384


@dataclass(frozen=True, slots=True)
class Resume:
    """A resuming member's welcome is waiting for history: the messages after `after`, up to
    `upto` (what the room had when the member came), and who was online then."""

    after: int
    upto: int
    online: list[Online]


class Room:
    def __init__(
        self,
        name: str,
        epoch: str,
        recent_size: int,
        turn: Turn,
        left: Callable[[Room, Member], None],
        extras: Callable[[Room, Member], dict[str, Any]] | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.name = name
        self.stats = stats if stats is not None else Stats()  # the process's counts (app/core/stats.py)
        self.epoch = epoch
        self._turn = turn
        self._left = left  # told of each member that leaves (not of one whose name was handed over)
        self._extras = extras  # more fields for each welcome (Hub.welcome_fields)
        # The connections holding each name here (a guest's: one; an account's: each of its
        # tabs), in the order they came; `_receivers` get every frame (a newcomer joins them
        # once the events its welcome covers have gone out).
        self.people: dict[str, list[Member]] = {}
        self._receivers: dict[Member, None] = {}
        self.recent_size = recent_size
        self.recent: deque[Message] = deque(maxlen=recent_size)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()  # subscribed to the backend
        self.waiting = 0  # joins that keep the room open while they wait for something
        self._events: list[bytes] = []
        self._messages: list[Message] = []
        self._ephemeral: list[tuple[str, bytes]] = []  # (the name key it is not for, the event)
        self._message_events: list[int] = []  # where in `_events` they are (for the newcomers' count)
        # Welcomed while events were pending: (member, how many of them its welcome covers).
        self._newcomers: list[tuple[Member, int]] = []
        self._events_due = False  # pending events go out at the end of this turn
        self._scheduled = False  # the turn's end will call `send`
        self._presence_timer: asyncio.TimerHandle | None = None
        self._woken: list[SinkMember] = []  # members whose own frames wait for their sink
        self._closing: tuple[int, str] | None = None  # close everyone after the next send
        # Members far behind (Member.behind): senders wait until they catch up (`pace`).
        self._behind: set[Member] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def empty(self) -> bool:
        return not self.people and not self.waiting

    @property
    def members(self) -> list[Member]:
        """Every connection in the room."""
        return [member for holders in self.people.values() for member in holders]

    def holding(self, key: str, token: str) -> Member | None:
        """The connection holding the name `key` whose welcome gave it `token`, if any."""
        for member in self.people.get(key, ()):
            if member.holds_token(token):
                return member
        return None

    def post(self, event: bytes, message: Message | None) -> None:
        """Queue an event for every member.

        A chat message goes out at the end of this turn. Presence waits up to PRESENCE_DELAY
        for company: when hundreds connect at once, each member gets a few frames of joins
        instead of one frame per join. Events never overtake each other.
        """
        self._events.append(event)
        if message is not None:
            self._messages.append(message)
            self._message_events.append(len(self._events) - 1)
            self._events_are_due()
        elif not self._events_due and self._presence_timer is None:
            self._presence_timer = asyncio.get_running_loop().call_later(PRESENCE_DELAY, self._events_are_due)

    def change(self, event: bytes, message: Message) -> None:
        """A stored message changed (edited, deleted, reacted to): its copy here is replaced,
        so that welcomes hold it as it is now, and `event` goes out with the other events."""
        for kept in (self._messages, self.recent):
            for index in range(len(kept) - 1, -1, -1):
                if kept[index].id <= message.id:
                    if kept[index].id == message.id:
                        kept[index] = message
                    break
        self._events.append(event)
        self._events_are_due()

    def post_ephemeral(self, key: str, event: bytes) -> None:
        """An event for every member but those of name key `key`, never stored nor replayed:
        sent at the end of this turn unless the room is busy then (see BUSY_EVENTS)."""
        if self._behind or len(self._ephemeral) >= MAX_EPHEMERAL:
            return
        self._ephemeral.append((key, event))
        self._events_are_due()

    def _events_are_due(self) -> None:
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        self._events_due = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._turn.schedule(self)

    def send(self) -> None:
        """Send the pending events, then close whom `close_all` said, then write what members
        with a sink have of their own; at the end of the turn."""
        self._scheduled = False
        if self._events_due:
            self.flush()
        if self._closing is not None:
            for member in self.members:
                member.close(*self._closing)
        woken, self._woken = self._woken, []
        for member in woken:
            member.woken = False
            member.drain()

    def flush(self) -> None:
        """Send every pending event to every receiving member, each frame serialised once."""
        self._events_due = False
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        events, self._events = self._events, []
        delivered = len(self._messages)
        message_events = self._message_events
        if delivered:
            self.recent.extend(self._messages)
            self._messages = []
            self._message_events = []
        ephemeral: list[tuple[str, bytes]] = []
        if self._ephemeral:
            ephemeral, self._ephemeral = self._ephemeral, []
            if self._behind or len(events) > BUSY_EVENTS:
                ephemeral = []  # busy: the first thing to go
        if ephemeral:
            receivers = tuple(self._receivers)
            self._send_with(events, ephemeral, receivers)
            self.stats.delivered += delivered * len(receivers)
        elif events:
            receivers = tuple(self._receivers)
            self._send(events, receivers)
            self.stats.delivered += delivered * len(receivers)
        if self._newcomers:
            for member, covered in self._newcomers:
                if member in self.people.get(member.key, ()):
                    due = events[covered:] + [event for key, event in ephemeral if key != member.key]
                    for frame in frames_of(due) if due else ():
                        self.stats.frames += 1
                        self.stats.bytes += len(frame)
                        member.deliver(frame)
                    self.stats.delivered += sum(1 for index in message_events if index >= covered)
                    self._receivers[member] = None
            self._newcomers = []

    def _send(self, events: list[bytes], receivers: tuple[Member, ...]) -> None:
        stats = self.stats
        for frame in frames_of(events):
            # Counted per frame, not per member: the loop below is the hot path.
            stats.frames += len(receivers)
            stats.bytes += len(frame) * len(receivers)
            for member in receivers:
                member.deliver(frame)

    def _send_with(
        self, events: list[bytes], ephemeral: list[tuple[str, bytes]], receivers: tuple[Member, ...]
    ) -> None:
        """Send `events` and the ephemeral events to everyone but whom each is not for; a
        member with much waiting for it already gets `events` alone."""
        everyone = frames_of(events + [event for _, event in ephemeral])
        plain = frames_of(events) if events else []
        not_for = {key for key, _ in ephemeral}
        theirs: dict[str, list[bytes]] = {}  # what a typist gets: the others' typing, not its own
        sent = {id(everyone): 0, id(plain): 0}  # how many members got each list of frames
        lists = {id(everyone): everyone, id(plain): plain}
        for member in receivers:
            if member.key in not_for:
                frames = theirs.get(member.key)
                if frames is None:
                    others = events + [event for key, event in ephemeral if key != member.key]
                    frames = theirs[member.key] = frames_of(others) if others else []
                    lists[id(frames)] = frames
                    sent[id(frames)] = 0
            elif member.queued > EPHEMERAL_QUEUE:
                frames = plain
            else:
                frames = everyone
            sent[id(frames)] += 1
            for frame in frames:
                member.deliver(frame)
        stats = self.stats
        for which, members in sent.items():
            frames = lists[which]
            stats.frames += len(frames) * members
            stats.bytes += sum(map(len, frames)) * members

    def close_all(self, code: int, reason: str) -> list[Member]:
        """Close every member once the events already posted have reached them."""
        self._closing = (code, reason)
        self._events_are_due()
        return self.members

    def stop(self) -> None:
        self._ephemeral = []
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None

    # Members

    def admit(
        self, member: Member, online: list[Online], since: int | None, replay_limit: int, stale: bool = False
    ) -> Resume | None:
        """Make `member` a member and queue its welcome, which covers the pending events.

        Without `since`, the welcome holds the latest messages (with `gap` set if the member
        resumes from a `stale` epoch). With it, the messages after `since`: when this room's
        recent messages do not reach back that far, the member is held and a `Resume`
        returned, saying what the hub must read from the backend. `online` is who is in the
        room, in every process.
        """
        self.people.setdefault(member.key, []).append(member)
        known = [*self.recent, *self._messages]
        if since is None:
            member.push(self.welcome(member, online, known[-self.recent_size :], gap=True if stale else None))
        elif not known or known[0].id <= since or len(self.recent) < self.recent_size:
            # Everything after `since` is here: the backend had no more when we subscribed.
            newer = [message for message in known if message.id > since]
            member.push(self.welcome(member, online, newer[-replay_limit:], gap=len(newer) > replay_limit))
            since = None
        else:
            member.hold()
        if self._events:
            self._newcomers.append((member, len(self._events)))
        else:
            self._receivers[member] = None
        return None if since is None else Resume(since, known[-1].id, online)

    def welcome(self, member: Member, online: list[Online], history: list[Message], gap: bool | None = None) -> bytes:
        names = [person.name for person in online]
        if member.name not in names:  # another tab's join is on its way: it is online all the same
            names.append(member.name)
        guests = [person.name for person in online if person.guest]
        history_json = [message.json for message in history]
        extras = self._extras(self, member) if self._extras is not None else None
        return welcome_event(
            member.name,
            self.name,
            self.epoch,
            member.token,
            names,
            history_json,
            gap,
            guests,
            member.identity.guest,
            extras,
        )

    def hand_over(self, holder: Member) -> None:
        """`holder`'s name passes to a newer connection of the same client, admitted next:
        the others are told nothing, as nobody left."""
        self._take_out(holder)

    def remove(self, member: Member) -> bool:
        """Take the member out; False if it was not a member (already gone, or handed over)."""
        return self._take_out(member)

    def _take_out(self, member: Member) -> bool:
        self.caught_up(member)
        self._receivers.pop(member, None)
        if self._newcomers:
            self._newcomers = [(newcomer, count) for newcomer, count in self._newcomers if newcomer is not member]
        holders = self.people.get(member.key)
        if holders is None or member not in holders:
            return False
        holders.remove(member)
        if not holders:
            del self.people[member.key]
        return True

    # What members tell their room (app.core.member.Owner)

    def wake(self, member: SinkMember) -> None:
        if not member.woken:
            member.woken = True
            self._woken.append(member)
            self._schedule()

    def fell_behind(self, member: Member) -> None:
        self._behind.add(member)
        self._flowing.clear()

    def caught_up(self, member: Member) -> None:
        self._behind.discard(member)
        if not self._behind:
            self._flowing.set()

    def leave(self, member: Member) -> None:
        if member.close_code == CloseCode.TRY_AGAIN_LATER:
            self.stats.slow_readers += 1
        if self.remove(member):
            self._left(self, member)

    # Pacing

    @property
    def holds_senders(self) -> bool:
        """Whether a member is so far behind that senders should wait for it."""
        return bool(self._behind)

    async def pace(self, stall_timeout: float) -> None:
        """Wait until no member is far behind.

        A member that falls behind because the server is busy, or because it reads slowly,
        slows the senders down to its pace; one whose socket took nothing for
        `stall_timeout` has stopped reading and is closed, so the room goes on without it.
        """
        loop = asyncio.get_running_loop()
        while self._behind:
            try:
                async with asyncio.timeout(stall_timeout):
                    await self._flowing.wait()
            except TimeoutError:
                now = loop.time()
                for member in tuple(self._behind):
                    if member.stalled(now):
                        self.stats.stalled_readers += 1
                        member.close(CloseCode.TRY_AGAIN_LATER, "Too slow: stopped reading")
