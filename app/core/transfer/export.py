"""Writing a store's snapshot out as an export file (format.py), page by page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.transfer.format import (
    End,
    Header,
    Record,
    Secret,
    StoredBlock,
    StoredBuddy,
    StoredConversation,
    StoredRead,
    encode,
)

if TYPE_CHECKING:
    from app.backends.base import StoreSnapshot

Progress = Callable[[int, int], None]  # messages done, messages in all


class NoSuchRoom(Exception):
    """`--room` names a room the store does not hold."""


@dataclass(slots=True)
class Counts:
    """What an export wrote, or an import added."""

    rooms: int = 0
    messages: int = 0
    users: int = 0
    sanctions: int = 0
    audit: int = 0
    conversations: int = 0
    dms: int = 0
    buddies: int = 0
    blocks: int = 0
    reads: int = 0
    secret: bool = False

    def __str__(self) -> str:
        parts = [
            _count(self.messages, "message"),
            _count(self.rooms, "room"),
            _count(self.users, "account"),
            _count(self.dms, "direct message"),
            _count(self.conversations, "conversation"),
            _count(self.buddies, "buddy", "buddies"),
            _count(self.blocks, "block"),
            _count(self.reads, "read position"),
            _count(self.sanctions, "ban or mute", "bans or mutes"),
            _count(self.audit, "audit entry", "audit entries"),
        ]
        if self.secret:
            parts.append("the key of guests' address hashes")
        return ", ".join(parts)

    @property
    def empty(self) -> bool:
        return not (
            self.rooms
            or self.messages
            or self.users
            or self.sanctions
            or self.audit
            or self.conversations
            or self.dms
            or self.buddies
            or self.blocks
            or self.reads
            or self.secret
        )


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number:,} {one if number == 1 else many or one + 's'}"


async def export(
    snapshot: StoreSnapshot,
    write: Callable[[bytes], object],
    header: Header,
    secret: bool = True,
    progress: Progress | None = None,
) -> Counts:
    """Write every record of `snapshot` (of `header.room` alone, if set: its messages, rules,
    sanctions and audit entries, without accounts, and so without direct messages, lists and
    read positions)
    through `write`; returns what it wrote.

    Conversations, buddies and blocks come only with the accounts they belong to: a
    conversation whose accounts are both exported, an entry of an account's list whose owner
    is (and, for a buddy, the buddy: a block may name an account removed since), a read
    position whose account is.

    Sanctions that are over at `header.ts` are left out; without `secret`, so are the key of
    guests' address hashes and the sanctions on guests, which are useless without it.
    """
    counts = Counts()
    records = 0

    def out(lines: list[Record]) -> None:
        nonlocal records
        records += len(lines)
        write(b"".join(encode(record) for record in lines))

    rooms = await snapshot.rooms()
    if header.room is not None:
        rooms = [room for room in rooms if room.name == header.room]
        if not rooms:
            raise NoSuchRoom(f"The store holds no room named {header.room!r}")
    write(encode(header))
    key = await snapshot.secret() if secret else None
    if key is not None:
        out([Secret(key)])
        counts.secret = True
    conversations: list[StoredConversation] = []
    buddies: list[StoredBuddy] = []
    blocks: list[StoredBlock] = []
    reads: list[StoredRead] = []
    if header.room is None:
        users = await snapshot.users()
        out(list(users))
        counts.users = len(users)
        accounts = {user.key for user in users}
        conversations = [
            conversation
            for conversation in await snapshot.conversations()
            if all(party.key in accounts for party in conversation.accounts)
        ]
        buddies = [
            buddy for buddy in await snapshot.buddies() if buddy.owner in accounts and buddy.other.key in accounts
        ]
        blocks = [block for block in await snapshot.blocks() if block.owner in accounts]
        reads = [read for read in await snapshot.reads() if read.key in accounts]
    total = sum(room.messages for room in rooms) + sum(conversation.messages for conversation in conversations)
    done = 0
    for room in rooms:
        out([room])
        counts.rooms += 1
        async for page in snapshot.messages(room.name):
            out(list(page))
            done += len(page)
            if progress is not None:
                progress(done, total)
    counts.messages = done
    for conversation in conversations:
        out([conversation])
        counts.conversations += 1
        async for dms in snapshot.dms(conversation.key):
            out(list(dms))
            counts.dms += len(dms)
            done += len(dms)
            if progress is not None:
                progress(done, total)
    out(list(buddies))
    out(list(blocks))
    out(list(reads))
    counts.buddies, counts.blocks, counts.reads = len(buddies), len(blocks), len(reads)
    sanctions = [
        sanction
        for sanction in await snapshot.sanctions()
        if sanction.active(header.ts)
        and (header.room is None or sanction.scope == header.room)
        and (secret or not sanction.target.startswith("g:"))
    ]
    out(list(sanctions))
    counts.sanctions = len(sanctions)
    async for entries in snapshot.audit():
        kept = [entry for entry in entries if header.room is None or entry.room == header.room]
        out(list(kept))
        counts.audit += len(kept)
    write(encode(End(records)))
    return counts
