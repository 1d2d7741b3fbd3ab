"""What direct messages, buddy lists, away messages and blocks are made of, on the wire and
between the core and the backends (app/core/messenger.py is the policy; the backends'
`DirectStore` keeps them).

A conversation is the pair of its two accounts' name keys, sorted, so that it is the same
whoever writes first; its messages have ids that increase within it, from 1. Everything
here is about accounts: guests have no buddies, blocks or direct messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import orjson

# Limits (docs/protocol.md, "Direct messages"). A list is full at its maximum: adding one
# more is refused with `too_many`, the list stays as it was.
MAX_BUDDIES = 200
MAX_BLOCKED = 200
MAX_AWAY_LENGTH = 300  # characters of an away message, once trimmed
MAX_WELCOME_CONVERSATIONS = 100  # the most recent ones, in the welcome
DM_PAGE = 50  # messages in a dm_history page when the client does not say
MAX_DM_PAGE = 100
DEFAULT_AWAY = "I am away from my computer right now."

DM_HEAD = b'{"type":"dm","id":'
DM_END = b"}"


class Party(NamedTuple):
    """An account as a conversation, a buddy list or a block list names it."""

    key: str
    name: str


def conversation_of(one: str, other: str) -> str:
    """The conversation of two accounts (by key): the same whichever comes first.

    Name keys are printable (app/core/names.py): a newline never occurs in one.
    """
    return f"{one}\n{other}" if one <= other else f"{other}\n{one}"


def dm_middle(sender: str, recipient: str, text: str, auto: bool = False) -> bytes:
    """The wire form of a direct message between its id and its time (see `DirectMessage`)."""
    fields: dict[str, object] = {"from": sender, "to": recipient, "text": text}
    if auto:
        fields["auto"] = True
    return b"," + orjson.dumps(fields)[1:-1] + b',"ts":'


def auto_head(sender: str, recipient: str) -> bytes:
    """The start of an away message's automatic reply from `sender`, before its text's JSON:
    what a shared backend completes with the away message it keeps (and `AUTO_TAIL`)."""
    return b',"from":' + orjson.dumps(sender) + b',"to":' + orjson.dumps(recipient) + b',"text":'


AUTO_TAIL = b',"auto":true,"ts":'


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """One stored direct message. `json` is its wire form, built once:
    `{"type":"dm","id":…,"from":…,"to":…,"text":…,"ts":…}`, with `"auto":true` before the
    time for an away message's automatic reply. `ts` is in milliseconds since the Unix epoch."""

    id: int
    sender: str  # names, as registered
    recipient: str
    text: str
    ts: int
    auto: bool
    json: bytes

    @classmethod
    def create(cls, id: int, sender: str, recipient: str, text: str, ts: int, auto: bool = False) -> DirectMessage:
        json = b"%s%d%s%d%s" % (DM_HEAD, id, dm_middle(sender, recipient, text, auto), ts, DM_END)
        return cls(id, sender, recipient, text, ts, auto, json)

    @classmethod
    def from_json(cls, json: bytes) -> DirectMessage:
        """A message read back in its wire form (a shared backend stores that)."""
        fields = orjson.loads(json)
        return cls(
            fields["id"], fields["from"], fields["to"], fields["text"], fields["ts"], fields.get("auto", False), json
        )


class Conversation(NamedTuple):
    """An account's conversation with `name`, as of its last message."""

    name: str
    last: int  # the id of its last message
    ts: int  # and its time


class Buddy(NamedTuple):
    """A buddy as its watcher sees it: offline to a watcher it blocks, whatever it is."""

    name: str
    online: bool
    away: str | None  # the away message, while away (and online)


@dataclass(slots=True)
class Snapshot:
    """What an account has, at one instant: its buddies (as it sees them), whom it blocks,
    and its conversations; every event after that instant comes to its `DirectHandler`."""

    buddies: dict[str, Buddy]  # by key
    blocked: dict[str, str]  # key -> name
    conversations: dict[str, Conversation]  # by the other's key


# What happens to an account that has connections here: the backend hands each to the
# handler (app/core/messenger.py), which tells the account's connections.


class Delivered(NamedTuple):
    """A direct message the account sent or received, in its conversation with `partner`."""

    partner: Party
    message: DirectMessage


class Seen(NamedTuple):
    """How a buddy is now, as the account sees it; `added`: it was just put on its list."""

    buddy: Party
    online: bool
    away: str | None
    added: bool = False


class AwayChanged(NamedTuple):
    """A buddy went away (`message`) or came back (None)."""

    buddy: Party
    message: str | None


class Unlisted(NamedTuple):
    """A buddy was taken off the account's list (from one of its connections)."""

    buddy: Party


class BlockChanged(NamedTuple):
    """The account blocked (or unblocked) `other`."""

    other: Party
    blocked: bool


Delivery = Delivered | Seen | AwayChanged | Unlisted | BlockChanged


class DirectHandler(Protocol):
    """Who a `DirectStore` tells (the messenger of this process)."""

    def deliver(self, key: str, delivery: Delivery) -> None:
        """What happened to account `key`, which has connections in this process (`arrive`)."""

    async def refresh(self, key: str, snapshot: Snapshot) -> None:
        """A shared backend may have missed events of account `key` (it lost Redis for a while,
        or was taken for dead): how things are now. Nothing else is delivered meanwhile."""

    def away_reloaded(self, away: dict[str, tuple[str, str]]) -> None:
        """Who is away anywhere (key -> name, message), read afresh for the same reason."""


class Forbidden(Exception):
    """A direct message between accounts one of which blocks the other; says which."""
