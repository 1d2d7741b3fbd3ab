"""`RedisDirect`: direct messages, buddy lists and away messages shared by every process.

Every change is an operation of the DIRECT script (direct_scripts.py has it and the keys),
so that a message, the conversation's last id and the events it makes for both accounts are
stored together, and the automatic reply of an away account goes out once. Operations asked
during one turn of the event loop go to Redis together, in order, in one script call.

Each account with a connection here has an inbox, which this process's reader follows from
the instant of the account's snapshot (`arrive`, one script call): every event after that
instant is in the inbox, after that position. Events go only to the inboxes of accounts
online somewhere, so what a process reads grows with its own accounts, not with the chat.
An account is online while a process holds it (`account-nodes:KEY`); the heartbeats' sweep
of a process that died lets go of its accounts, whose watchers then see them go offline.
After the reader lost Redis, or this process was taken for dead, `catch_up` says again which
accounts it holds and brings each one's copy up to date.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.backends.base import BackendError, DirectStore
from app.backends.redis.commands import PREFIX, RedisErrors, Script, refusal
from app.backends.redis.direct_scripts import DIRECT as DIRECT_SOURCE
from app.backends.redis.reader import Reader
from app.core.direct import (
    AUTO_TAIL,
    DM_END,
    DM_HEAD,
    AwayChanged,
    BlockChanged,
    Buddy,
    Conversation,
    Delivered,
    Delivery,
    DirectMessage,
    Forbidden,
    Party,
    Seen,
    Snapshot,
    Unlisted,
    auto_head,
    conversation_of,
    dm_middle,
)

logger = logging.getLogger("chatroom.redis")

DIRECT = Script(DIRECT_SOURCE)
OPS_PER_SCRIPT = 100
EPOCH_KEY = PREFIX + b"epoch"
AWAY_KEY = PREFIX + b"away"

Op = tuple[str, ...]


def inbox_key(key: str) -> bytes:
    return PREFIX + b"inbox:" + key.encode()


@dataclass(eq=False, slots=True)
class _Reading:
    """An account this process has connections of, whose inbox it follows."""

    name: str


class RedisDirect(DirectStore):
    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        node: str,
        epoch: Callable[[], str],
        reader: Callable[[], Reader],
        notice_here: Callable[[str, dict[str, Any]], None],
        refused: Callable[[str], None],
        lost: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._node = node
        self._epoch = epoch  # the backend's, now
        self._reader = reader
        self._notice_here = notice_here  # a notice the script wrote: this process's hub hears it too
        self._refused = refused  # STALE_EPOCH or BEHIND: the backend finds out which epoch the chat is in
        self._lost = lost
        self._here: dict[str, _Reading] = {}
        self._pending: list[tuple[Op, asyncio.Future[Any] | None]] = []
        self._task: asyncio.Task[None] | None = None

    # Operations, in order, grouped per turn

    def _run(self, op: Op, wait: bool = True) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, done if wait else None))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write(), name="chatroom redis direct")
        return done

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:OPS_PER_SCRIPT], self._pending[OPS_PER_SCRIPT:]
                results = await self._call([op for op, _ in batch], self._epoch())
                for (op, done), result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        if done is None:
                            logger.warning("could not write to Redis (%s): %s", op[0], result)
                        elif not done.done():
                            done.set_exception(BackendError(f"Redis did not take it: {result}"))
                        continue
                    # What the script did is told here whether or not anyone still waits for it.
                    if op[0] == "depart" and result:
                        self._came_back(op[1], result)
                    elif op[0] in ("away", "back") and result:
                        self._notice_here("away", orjson.loads(op[-1]))
                    if done is not None and not done.done():
                        done.set_result(result)
        finally:
            self._task = None

    async def _call(self, ops: list[Op], epoch: str) -> list[Any]:
        """One script call; one result per operation, or the error in its place."""
        args = [PREFIX.decode(), self._node, epoch, DM_HEAD, DM_END, AUTO_TAIL, *(arg for op in ops for arg in op)]
        try:
            (reply,) = await DIRECT.run_many(self._redis(), [args], raise_on_error=False)
        except RedisErrors as exc:
            reply = exc
        except Exception as exc:
            logger.exception("writing to Redis failed")
            reply = exc
        if isinstance(reply, BaseException):
            reason = refusal(reply)
            if reason is not None:
                self._refused(reason)
            return [reply] * len(ops)
        return list(reply)

    async def stop(self) -> None:
        """Let what was asked reach Redis."""
        if self._task is not None:
            await asyncio.wait([self._task])

    # Who is here

    async def arrive(self, account: Party) -> Snapshot:
        reading = self._here[account.key] = _Reading(account.name)
        snapshot = await self._run(("arrive", account.key, account.name))
        if self._here.get(account.key) is not reading:
            raise BackendError(f"{account.name!r} left while its lists were read")
        position, found = _snapshot(snapshot)
        self._reader().follow(inbox_key(account.key), position, partial(self._entry, account.key, reading))
        return found

    def depart(self, key: str) -> None:
        if self._here.pop(key, None) is not None:
            self._reader().unfollow(inbox_key(key))
        self._run(("depart", key), wait=False)

    def _came_back(self, key: str, name: bytes | str) -> None:
        """The script ended the away period of an account that went offline: the rooms hear it."""
        shown = name.decode() if isinstance(name, bytes) else name
        self._notice_here("away", {"key": key, "name": shown, "message": None})

    def _entry(self, key: str, reading: _Reading, fields: dict[bytes, bytes]) -> None:
        if self.handler is None or self._here.get(key) is not reading:
            return
        try:
            delivery = _delivery(key, fields)
        except (KeyError, ValueError) as exc:
            logger.error("an inbox entry of %s that makes no sense: %r (%s)", reading.name, fields, exc)
            return
        self.handler.deliver(key, delivery)

    async def catch_up(self) -> None:
        """Say again which accounts this process has connections of, and bring each one's copy
        here up to date (the reader does not deliver meanwhile): after the reader lost
        Redis, or this process was taken for dead and its accounts were let go. Then reread
        who is away anywhere, for the rooms."""
        here = dict(self._here)
        if here:
            reader = self._reader()
            positions = {key: reader.unfollow(inbox_key(key)) or b"$" for key in here}
            sync: Op = ("sync", "\n".join(here), "\n".join(reading.name for reading in here.values()))
            try:
                results = await asyncio.gather(self._run(sync), *(self._run(("load", key)) for key in here))
            except BaseException:
                for key, reading in here.items():  # read on from where it was, until the next try
                    if self._here.get(key) is reading:
                        reader.follow(inbox_key(key), positions[key], partial(self._entry, key, reading))
                raise
            ended = results[0]
            for number in range(0, len(ended), 2):
                self._came_back(_text(ended[number]), ended[number + 1])
            for (key, reading), raw in zip(here.items(), results[1:], strict=True):
                if self._here.get(key) is not reading:
                    continue
                position, snapshot = _snapshot(raw)
                if self.handler is not None:
                    await self.handler.refresh(key, snapshot)
                if self._here.get(key) is reading:
                    reader.follow(inbox_key(key), position, partial(self._entry, key, reading))
        if self.handler is not None:
            self.handler.away_reloaded(await self.away_everywhere())

    def went_back(self) -> None:
        self._lost()

    # Messages

    async def send(self, sender: Party, recipient: Party, text: str, seen: int = 0) -> list[DirectMessage]:
        op: Op = (
            "dm",
            conversation_of(sender.key, recipient.key),
            sender.key,
            recipient.key,
            sender.name,
            recipient.name,
            dm_middle(sender.name, recipient.name, text).decode(),
            auto_head(recipient.name, sender.name).decode(),
            str(seen),
        )
        result = await self._run(op)
        if not result[0]:
            if _text(result[1]) == "blocked":
                raise Forbidden(f"{recipient.name} does not take direct messages from you")
            raise Forbidden(f"You blocked {recipient.name}: unblock them to write to them")
        number, ts, reply, away = result
        sent = [DirectMessage.create(int(number), sender.name, recipient.name, text, int(ts))]
        if reply:
            answer = orjson.loads(away)
            sent.append(DirectMessage.create(int(reply), recipient.name, sender.name, answer, int(ts), auto=True))
        return sent

    async def history(
        self, one: str, other: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        newest = b"(%d-0" % before if before is not None else b"+"
        oldest = b"(%d-0" % after if after is not None else b"-"
        epoch = self._epoch()
        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.get(EPOCH_KEY)
                pipe.xrevrange(PREFIX + b"dm:" + conversation_of(one, other).encode(), newest, oldest, limit + 1)
                stored_in, rows = await pipe.execute()
        except RedisErrors as exc:
            raise BackendError(f"Could not read direct messages from Redis: {exc}") from exc
        if stored_in != epoch.encode():
            self._refused("")
            raise BackendError("the chat's history started anew (a new epoch): try again")
        page = [DirectMessage.from_json(fields[b"j"]) for _, fields in rows[:limit]]
        return page[::-1], len(rows) > limit

    # Away

    async def away(self, account: Party, message: str | None) -> None:
        fields = {"key": account.key, "name": account.name, "message": message}
        body = orjson.dumps(fields).decode()
        if message is None:
            await self._run(("back", account.key, account.name, body))
        else:
            await self._run(("away", account.key, account.name, orjson.dumps(message).decode(), body))

    async def away_everywhere(self) -> dict[str, tuple[str, str]]:
        try:
            found = await self._redis().hgetall(AWAY_KEY)
        except RedisErrors as exc:
            raise BackendError(f"Could not read who is away from Redis: {exc}") from exc
        away: dict[str, tuple[str, str]] = {}
        for key, value in found.items():
            name, _, message = _text(value).partition("\n")
            away[_text(key)] = (name, orjson.loads(message))
        return away

    # Lists

    async def add_buddy(self, owner: Party, buddy: Party, limit: int) -> bool:
        return bool(await self._run(("buddy", owner.key, buddy.key, buddy.name, str(limit))))

    async def remove_buddy(self, owner: Party, buddy: Party) -> None:
        await self._run(("unbuddy", owner.key, buddy.key, buddy.name))

    async def block(self, owner: Party, other: Party, limit: int) -> bool:
        return bool(await self._run(("block", owner.key, owner.name, other.key, other.name, str(limit))))

    async def unblock(self, owner: Party, other: Party) -> None:
        await self._run(("unblock", owner.key, owner.name, other.key, other.name))

    async def forget(self, key: str) -> None:
        # Whatever the epoch: an operator's command, beside the servers, forgets an account.
        (result,) = await self._call([("forget", key)], "")
        if isinstance(result, BaseException):
            raise BackendError(f"Could not forget the account in Redis: {result}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _away(value: bytes) -> str | None:
    return orjson.loads(value) if value else None


def _snapshot(raw: list[Any]) -> tuple[bytes, Snapshot]:
    """The inbox position and the snapshot of the script's `snapshot`."""
    position, buddies, blocked, conversations = raw
    seen = {
        _text(key): Buddy(_text(name), online == b"1", _away(away) if online == b"1" else None)
        for key, name, online, away in buddies
    }
    blocks = {_text(blocked[number]): _text(blocked[number + 1]) for number in range(0, len(blocked), 2)}
    talks: dict[str, Conversation] = {}
    for number in range(0, len(conversations), 2):
        last, ts, name = _text(conversations[number + 1]).split("\n", 2)
        talks[_text(conversations[number])] = Conversation(name, int(last), int(ts))
    return position, Snapshot(seen, blocks, talks)


def _delivery(key: str, fields: dict[bytes, bytes]) -> Delivery:
    """What an entry of account `key`'s inbox says (direct_scripts.py)."""
    kind = fields[b"t"]
    if kind == b"d":
        message = DirectMessage.from_json(fields[b"j"])
        if fields[b"f"].decode() == key:
            return Delivered(Party(fields[b"r"].decode(), message.recipient), message)
        return Delivered(Party(fields[b"f"].decode(), message.sender), message)
    other = Party(fields[b"k"].decode(), fields[b"n"].decode())
    if kind in (b"s", b"+"):
        online = fields[b"o"] == b"1"
        return Seen(other, online, _away(fields[b"a"]) if online else None, added=kind == b"+")
    if kind == b"a":
        return AwayChanged(other, _away(fields[b"a"]))
    if kind == b"x":
        return Unlisted(other)
    if kind in (b"b", b"u"):
        return BlockChanged(other, kind == b"b")
    raise ValueError(f"unknown kind {kind!r}")
