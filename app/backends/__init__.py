"""Backends, chosen by the scheme of `CHAT_BACKEND_URL`; each imports its driver only when chosen."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from app.backends.base import Backend, BackendError
from app.settings import Settings

__all__ = ["BACKENDS", "Backend", "BackendError", "create_backend"]

BACKENDS: dict[str, str] = {
    "memory": "app.backends.memory:MemoryBackend",
    "sqlite": "app.backends.sqlite:SQLiteBackend",
    "redis": "app.backends.redis:RedisBackend",
    "rediss": "app.backends.redis:RedisBackend",  # Redis over TLS
}


def create_backend(url: str, settings: Settings) -> Backend:
    scheme = urlsplit(url).scheme
    if scheme not in BACKENDS:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        raise ValueError(f"Expected a backend URL starting with one of {known}, but got {url!r}")
    module_name, _, class_name = BACKENDS[scheme].partition(":")
    backend_class: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class(url, settings)
