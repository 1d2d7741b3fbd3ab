"""`redis://`: many processes on many hosts as one chat (see backend.py)."""

from app.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
