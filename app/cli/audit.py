"""`chatroom audit`: the moderation audit log, for the operator, while the servers run.

    chatroom audit [--room NAME] [--before ID] [--limit N] [--backend URL]

Newest first: one line per action, saying when, where, who, what, to whom, until when and
why. `--before` pages back from an entry's id. The command opens the servers' store alone
(`Backend.open`: the SQLite database beside the server that serves it, or the Redis they
share) and only reads it. memory:// keeps everything in the server's own memory: no command
can reach it, and this one says so. A refusal is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from app.settings import Settings

PROG = "chatroom audit"
DEFAULT_LIMIT = 100


class Refused(Exception):
    """What the operator is told, in one line, before the command exits with status 1."""


def parse_args(argv: Sequence[str], defaults: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print the moderation audit log, newest first. Works on sqlite:// and redis://."
    )
    parser.add_argument("--room", help="one room's actions only (default: every room's)")
    parser.add_argument("--before", type=int, help="only entries older than this id (to page back)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"entries at most (default {DEFAULT_LIMIT})")
    parser.add_argument("--backend", default=defaults.backend_url, help=f"default: {defaults.backend_url}")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    try:
        defaults = Settings.from_env()
    except ValueError as exc:
        sys.exit(f"{PROG}: {exc}")
    args = parse_args(argv, defaults)
    try:
        if args.limit < 1 or (args.before is not None and args.before < 1):
            raise Refused("--limit and --before must be positive")
        settings = Settings.from_env(backend_url=args.backend)
        lines = asyncio.run(_read(settings, args.room, args.before, args.limit))
    except (Refused, ValueError) as exc:
        sys.exit(f"{PROG}: {exc}")
    print("\n".join(lines) if lines else "No moderation actions recorded")


async def _read(settings: Settings, room: str | None, before: int | None, limit: int) -> list[str]:
    from app.backends import create_backend
    from app.core.moderation.records import iso
    from app.core.names import clean_room

    url = settings.backend_url
    failures: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
    if urlsplit(url).scheme == "sqlite":
        from app.backends.sqlite.files import path_from_url

        if not path_from_url(url).exists():  # a mistyped path must not answer "nothing recorded"
            raise Refused(f"No database at {path_from_url(url)}: is --backend (or CHAT_BACKEND_URL) the server's?")
    elif urlsplit(url).scheme in ("redis", "rediss"):
        from app.backends.redis.commands import RedisErrors

        failures += RedisErrors
    room_key = clean_room(room) if room is not None else None
    backend = create_backend(url, settings)
    try:
        await backend.open()
    except RuntimeError as exc:  # memory://
        raise Refused(f"{exc}; run the command against the server's sqlite:// or redis:// backend") from None
    except failures as exc:
        raise Refused(f"The backend did not answer: {exc}") from None
    try:
        entries = await backend.moderation.audit(room_key, before, limit)
    except failures as exc:
        raise Refused(f"The backend did not answer: {exc}") from None
    finally:
        await backend.close()
    lines = []
    for entry in entries:
        parts = [f"{entry.id:>6}", iso(entry.at), f"#{entry.room}", entry.actor, entry.action]
        if entry.target is not None:
            parts.append(entry.target)
        if entry.until is not None:
            parts.append(f"until {iso(entry.until)}")
        if entry.detail:
            parts.append(f"[{entry.detail}]")
        if entry.reason:
            parts.append(f"reason: {entry.reason}")
        lines.append("  ".join(parts))
    return lines
