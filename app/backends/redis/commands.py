"""What every part of the Redis backend shares: connections, keys, ids, and running scripts."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("redis:// needs the redis client: pip install 'chatroom[redis]'") from exc

from app.backends.redis import scripts

PREFIX = scripts.PREFIX.encode()
EPOCH_KEY = PREFIX + b"epoch"
IDS_KEY = PREFIX + b"ids"
RETENTION_KEY = PREFIX + b"retention"  # held by the process running this interval's retention pass

COMMAND_TIMEOUT = 5.0  # seconds a command may take before Redis counts as unreachable
CONNECT_TIMEOUT = 2.0
NO_TOKEN = "-"  # noqa: S105 - the token hash of a name nobody may take over: no SHA-256 digest is this


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait for its end; cancel it again while it lives. A cancellation that
    meets a timeout of redis-py's at the same instant can come out as the timeout (Python
    3.11's asyncio.timeout), which a loop that rides out Redis's timeouts takes for one."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


# Why the WRITE script refused to run (scripts.py): the chat's epoch is not the writer's, or a
# room's last id went back below what the writer knew (Redis came back with older data).
STALE_EPOCH, BEHIND = "STALE_EPOCH", "BEHIND"

RedisErrors = (RedisError, OSError, TimeoutError)
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry as redis-py reads it: id, fields


def connect(url: str, **options: Any) -> aioredis.Redis:
    # No retries inside the client: a script that failed may have run, and running it
    # twice would store a message twice. Faults are handled where each one happens.
    return aioredis.Redis.from_url(
        url,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        **options,
    )


def room_key(kind: bytes, room: str) -> bytes:
    """`messages:ROOM`, `presence:ROOM`, `names:ROOM` (scripts.py says what each holds)."""
    return PREFIX + kind + b":" + room.encode()


def stream_id(entry: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry.partition(b"-")
    return int(milliseconds), int(sequence or 0)


def message_id(entry: bytes) -> int:
    """Message N is the stream entry `N-0`."""
    return int(entry.partition(b"-")[0])


def token_hash(token: str | None) -> str:
    """What Redis keeps of a token: enough to check one, not to show one."""
    if token is None:
        return NO_TOKEN
    return hashlib.sha256(token.encode()).hexdigest()


class Script:
    """A Lua script of scripts.py, run by its SHA-1 and loaded whenever Redis forgot it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    async def run(self, redis: aioredis.Redis, args: list[str]) -> Any:
        (reply,) = await self.run_many(redis, [args])
        return reply

    async def run_many(self, redis: aioredis.Redis, calls: list[list[Any]], raise_on_error: bool = True) -> list[Any]:
        """Run the script once per argument list, in one round trip, loading it first if Redis
        does not know it (a restarted Redis has forgotten every script). Errors of single
        calls are raised, or returned in their place if not `raise_on_error`."""
        replies: list[Any] = []
        for attempt in range(2):
            async with redis.pipeline(transaction=False) as pipe:
                for args in calls:
                    pipe.evalsha(self.sha, 0, *args)
                replies = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(reply, NoScriptError) for reply in replies):
                # NOSCRIPT means the script did not run at all: running it now is safe.
                await redis.script_load(self.source)
                redo = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                if len(redo) < len(calls):
                    again = await self.run_many(redis, [calls[index] for index in redo], raise_on_error)
                    for index, reply in zip(redo, again, strict=True):
                        replies[index] = reply
                    break
                continue
            break
        for reply in replies:
            if raise_on_error and isinstance(reply, Exception):
                raise reply
        return replies


WRITE, BEAT, GOODBYE = Script(scripts.WRITE), Script(scripts.BEAT), Script(scripts.GOODBYE)
EXPIRE, SWITCH = Script(scripts.EXPIRE), Script(scripts.SWITCH)


def refusal(error: BaseException) -> str | None:
    """STALE_EPOCH or BEHIND if the WRITE script refused to run for that reason, else None."""
    if isinstance(error, ResponseError):
        reason = str(error).partition(" ")[0]
        if reason in (STALE_EPOCH, BEHIND):
            return reason
    return None
