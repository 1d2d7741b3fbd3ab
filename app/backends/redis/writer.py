"""`Writer`: every write of this process to Redis, grouped, through the WRITE script.

Writes are grouped as with SQLite: whatever is asked during one turn of the event loop goes
to Redis in one pipeline of scripts (at most OPS_PER_SCRIPT operations each, for a script
runs alone in Redis), one batch at a time, the next one gathering meanwhile. A message
counts as stored once its script ran. Every script runs under the writer's epoch, or not at
all (scripts.py): a refusal goes to `refused`, and a new epoch (`restart`) fails whatever
was asked under the old one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from app.backends.base import BackendError
from app.backends.redis import scripts
from app.backends.redis.commands import WRITE, RedisErrors, refusal
from app.core.messages import WIRE_END, WIRE_HEAD, Message, wire_form

logger = logging.getLogger("chatroom.redis")

OPS_PER_SCRIPT = 200
CHANGES = ("e", "d", "x")  # the WRITE script's changes of stored messages: edit, delete, react

Args = tuple[bytes | str, ...]  # one operation of the WRITE script: its kind, then its arguments


@dataclass(eq=False, slots=True)
class Op:
    """One operation waiting for the next batch."""

    args: Args
    done: asyncio.Future[Any] | None  # None: nobody waits for it (a release)
    size: int = 0


class Writer:
    def __init__(
        self,
        redis: Callable[[], aioredis.Redis],
        node: str,
        kept_messages: int,
        kept_presence: int,
        max_pending_bytes: int,
        undo: Callable[[Args], Args | None],
        refused: Callable[[str], None],
    ) -> None:
        self._redis = redis
        self._head = [scripts.PREFIX, node, str(kept_messages), str(kept_presence), WIRE_HEAD, WIRE_END]
        self.epoch = ""  # the epoch every script runs under (its argument after the head)
        self._max_pending_bytes = max_pending_bytes
        # What a failed operation leaves to mend: the operation to run first in the next batch.
        self._undo = undo
        self._refused = refused  # told STALE_EPOCH or BEHIND when Redis refused a batch for it
        self._pending: list[Op] = []
        self._retries: list[Op] = []  # mends of failed operations: first in the next batch
        self._in_flight: list[Op] = []  # the batch on its way to Redis
        self._restarted = False  # a new epoch began while a batch was on its way: write on
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._written = asyncio.Event()
        self._failures = 0  # writes that failed since the last one that did not: logged once

    def write(self, args: Args, wait: bool = True) -> asyncio.Future[Any]:
        """Queue one operation; the future has its result once the script ran (unless not `wait`)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        size = sum(len(arg) for arg in args)
        self._pending.append(Op(args, done if wait else None, size))
        self._pending_bytes += size
        self.start()
        return done

    def restart(self, epoch: str, first: Args) -> None:
        """A new epoch: whatever was asked under the old one fails now, on its way or not (what
        Redis ran of it belongs to the old one); `first` is the first operation of the new."""
        self.epoch = epoch
        lost = BackendError("the chat's history started anew (a new epoch) before this was done")
        for op in (*self._in_flight, *self._retries, *self._pending):
            if op.done is not None and not op.done.done():
                op.done.set_exception(lost)
        self._retries, self._pending, self._pending_bytes = [Op(first, None)], [], 0
        self._restarted = True
        self._written.set()
        self.start()

    @property
    def backlogged(self) -> bool:
        return self._pending_bytes >= self._max_pending_bytes

    async def pace(self) -> None:
        while self._pending_bytes >= self._max_pending_bytes:
            self._written.clear()
            await self._written.wait()

    def start(self) -> None:
        """Write what waits, mends of failed operations included (after a reconnection)."""
        if self._task is None and (self._pending or self._retries):
            self._task = asyncio.get_running_loop().create_task(self._write_pending(), name="chatroom redis writer")

    async def stop(self) -> None:
        """Let what was accepted get to Redis."""
        if self._task is not None:
            await asyncio.wait([self._task])

    async def _write_pending(self) -> None:
        try:
            while self._pending or self._retries:
                # Mends go first: a name let go here may be claimed again next.
                batch, self._retries, self._pending = self._retries + self._pending, [], []
                self._pending_bytes = 0
                self._in_flight, self._restarted = batch, False
                try:
                    results = await self._run(batch)
                except Exception as exc:
                    if not isinstance(exc, RedisErrors):
                        logger.exception("writing to Redis failed")
                    results = [exc] * len(batch)  # the connection failed: any of it may have run
                finally:
                    self._in_flight = []
                    self._written.set()
                reasons = {refusal(result) for result in results if isinstance(result, BaseException)}
                for reason in sorted(reason for reason in reasons if reason is not None):
                    self._refused(reason)
                for op, result in zip(batch, results, strict=True):
                    if isinstance(result, BaseException):
                        self._failed(op, result)
                        continue
                    self._failures = 0
                    if op.done is not None and not op.done.done():
                        op.done.set_result(result)
                if self._retries and not self._pending and not self._restarted:
                    break  # mends that failed wait for the reader to reconnect
        finally:
            self._written.set()
            self._task = None

    async def _run(self, batch: list[Op]) -> list[Any]:
        """Apply `batch` in order, in as few round trips as possible; one result per operation,
        or the error of the script it was part of."""
        chunks = [batch[start : start + OPS_PER_SCRIPT] for start in range(0, len(batch), OPS_PER_SCRIPT)]
        head = [*self._head, self.epoch]
        calls: list[list[Any]] = [[*head, *(arg for op in chunk for arg in op.args)] for chunk in chunks]
        replies = await WRITE.run_many(self._redis(), calls, raise_on_error=False)
        results: list[Any] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, Exception):
                results.extend([reply] * len(chunk))
                continue
            ts = reply[0]
            for op, result in zip(chunk, reply[1:], strict=True):
                if op.args[0] == "m":
                    middle = op.args[2]
                    assert isinstance(middle, bytes)
                    results.append(Message.from_json(str(op.args[1]), int(result), wire_form(result, middle, ts)))
                elif op.args[0] == "c":
                    results.append(result if isinstance(result, bytes) else None)  # its join entry
                elif op.args[0] == "o":
                    results.append((result[0].decode(), result[1]) if isinstance(result, list) else None)
                elif op.args[0] in CHANGES:  # the message as it is now, or None: deleted or gone
                    room, number = str(op.args[1]), int(op.args[2])
                    results.append(Message.from_json(room, number, result) if isinstance(result, bytes) else None)
                else:
                    results.append(bool(result))
        return results

    def _failed(self, op: Op, exc: BaseException) -> None:
        kind = op.args[0]
        if self._failures == 0 or kind != "m":
            logger.warning("could not write to Redis (%s): %s", kind, exc or type(exc).__name__)
        self._failures += 1
        mend = self._undo(op.args) if refusal(exc) is None else None  # refused: none of it ran
        if mend is not None:
            self._retries.append(Op(mend, None))
        if op.done is not None and not op.done.done():
            op.done.set_exception(BackendError(f"Redis did not take it: {exc}"))
