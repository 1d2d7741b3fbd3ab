"""Accounts and sessions in Redis, shared by every process (keys in scripts.py's docstring).

- `users`: a hash, user key -> the user as JSON (its name, password hash, role, creation).
- `session:HASH`: a session as JSON, found by the SHA-256 of its id; it expires by itself
  when its absolute lifetime is over.
- `sessions-of:KEY`: a set of the hashes of a user's sessions, to end them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from app.backends.base import AccountStore
from app.backends.redis.commands import PREFIX
from app.core.users import SignIn, User

USERS_KEY = PREFIX + b"users"


def _session_key(hash: str) -> bytes:
    return PREFIX + b"session:" + hash.encode()


def _sessions_of(user: str) -> bytes:
    return PREFIX + b"sessions-of:" + user.encode()


def _bytes(value: bytes | str) -> bytes:
    """What redis-py's types call `bytes | str`: bytes, with this backend's connections."""
    return value if isinstance(value, bytes) else value.encode()


def _user_json(user: User) -> bytes:
    return orjson.dumps({"name": user.name, "password": user.password, "admin": user.admin, "created": user.created})


def _user(key: bytes | str, raw: bytes) -> User:
    fields: dict[str, Any] = orjson.loads(raw)
    name = key.decode() if isinstance(key, bytes) else key
    return User(name, fields["name"], fields["password"], bool(fields["admin"]), int(fields["created"]))


def _session(hash: str, raw: bytes) -> SignIn:
    fields: dict[str, Any] = orjson.loads(raw)
    return SignIn(hash, fields["user"], int(fields["created"]), int(fields["seen"]))


class RedisAccounts(AccountStore):
    def __init__(self, redis: Callable[[], aioredis.Redis], lifetime_ms: int) -> None:
        self._redis = redis
        self._lifetime_ms = lifetime_ms  # CHAT_SESSION_DAYS: Redis forgets a session after it

    async def add_user(self, user: User) -> bool:
        return bool(await self._redis().hsetnx(USERS_KEY, user.key, _user_json(user)))

    async def user(self, key: str) -> User | None:
        raw = await self._redis().hget(USERS_KEY, key)
        return _user(key, _bytes(raw)) if raw is not None else None

    async def users(self) -> list[User]:
        found = await self._redis().hgetall(USERS_KEY)
        return [_user(_bytes(key), _bytes(raw)) for key, raw in found.items()]

    async def update_user(self, user: User) -> bool:
        redis = self._redis()
        # Only a user that exists: one removed meanwhile must not come back.
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hexists(USERS_KEY, user.key)
            exists, *_ = await pipe.execute()
        if not exists:
            return False
        await redis.hset(USERS_KEY, user.key, _user_json(user))
        return True

    async def remove_user(self, key: str) -> list[str]:
        await self._redis().hdel(USERS_KEY, key)
        return await self.end_sessions(key)

    async def add_session(self, session: SignIn) -> None:
        body = orjson.dumps({"user": session.user, "created": session.created, "seen": session.seen})
        async with self._redis().pipeline(transaction=True) as pipe:
            pipe.set(_session_key(session.hash), body, pxat=session.created + self._lifetime_ms)
            pipe.sadd(_sessions_of(session.user), session.hash)
            await pipe.execute()

    async def session(self, hash: str) -> SignIn | None:
        raw = await self._redis().get(_session_key(hash))
        return _session(hash, _bytes(raw)) if raw is not None else None

    async def touch_session(self, hash: str, seen: int) -> None:
        session = await self.session(hash)
        if session is not None:
            body = orjson.dumps({"user": session.user, "created": session.created, "seen": max(seen, session.seen)})
            await self._redis().set(_session_key(hash), body, xx=True, keepttl=True)

    async def end_session(self, hash: str) -> SignIn | None:
        raw = await self._redis().getdel(_session_key(hash))
        if raw is None:
            return None
        session = _session(hash, _bytes(raw))
        await self._redis().srem(_sessions_of(session.user), hash)
        return session

    async def end_sessions(self, user: str, keep: str | None = None) -> list[str]:
        redis = self._redis()
        hashes = [_bytes(hash).decode() for hash in await redis.smembers(_sessions_of(user))]
        ended = [hash for hash in hashes if hash != keep]
        if ended:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(*[_session_key(hash) for hash in ended])
                pipe.srem(_sessions_of(user), *ended)
                await pipe.execute()
        return ended
