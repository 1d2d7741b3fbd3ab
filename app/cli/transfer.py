"""`chatroom export` and `chatroom import`: a whole chat, or one room, as a file that moves
it between stores (from SQLite to Redis and back), ids and all.

    chatroom export [--room NAME] [--no-secret] [--backend URL] > chat.jsonl
    chatroom import [FILE] [--backend URL] < chat.jsonl

The format is app/core/transfer/format.py's. An export reads a snapshot of the store and
runs beside the servers. An import refuses to run beside a server of the target (stop
them first), reads the file twice, first checking all of it against the target (a pipe
is copied to a temporary file first), and writes nothing unless every line reads and
nothing conflicts with what the target holds (app/core/transfer/load.py says what does);
SQLite then writes in one transaction, Redis page by page. memory:// is a server's own
memory: neither command reaches it.

A refusal is one line on stderr and exit status 1 (2 for a command line argparse cannot
read, 130 for Ctrl-C). A progress bar is drawn on stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Coroutine, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.settings import Settings

if TYPE_CHECKING:
    from app.backends.base import Backend

COPY_CHUNK = 1024 * 1024


class Refused(Exception):
    """What the operator is told, in one line, before the command exits with status 1."""


def export_main(argv: Sequence[str]) -> None:
    defaults = _defaults("chatroom export")
    parser = argparse.ArgumentParser(
        prog="chatroom export",
        description="Write the chat (its rooms' histories, accounts with their password hashes, direct messages, "
        "buddy lists and blocks, rooms' rules, bans and mutes, the audit log) to stdout, one JSON object a line, "
        "from a consistent snapshot, while the servers run. Sessions are not exported. Works on sqlite:// and redis://.",
    )
    parser.add_argument("--room", help="one room only: its messages, rules, bans, mutes and audit entries")
    parser.add_argument(
        "--no-secret",
        action="store_true",
        help="leave out the key of guests' address hashes, and with it the bans and mutes of guests",
    )
    parser.add_argument("--backend", default=defaults.backend_url, help=f"default: {defaults.backend_url}")
    args = parser.parse_args(argv)
    _run("chatroom export", _export(Settings.from_env(backend_url=args.backend), args.room, not args.no_secret))


def import_main(argv: Sequence[str]) -> None:
    defaults = _defaults("chatroom import")
    parser = argparse.ArgumentParser(
        prog="chatroom import",
        description="Add what an export file holds to the store, with its ids, unless it conflicts with what "
        "the store holds; running it twice adds nothing. Stop the store's servers first. "
        "Works on sqlite:// and redis://.",
    )
    parser.add_argument("file", nargs="?", help="the export (default: stdin)")
    parser.add_argument("--backend", default=defaults.backend_url, help=f"default: {defaults.backend_url}")
    args = parser.parse_args(argv)
    _run("chatroom import", _import(Settings.from_env(backend_url=args.backend), args.file))


def _defaults(prog: str) -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        sys.exit(f"{prog}: {exc}")


def _run(prog: str, work: Coroutine[Any, Any, str]) -> None:
    try:
        message = asyncio.run(work)
    except (Refused, ValueError) as exc:
        sys.exit(f"{prog}: {exc}")
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): nothing more to say to anyone.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    print(message, file=sys.stderr if prog == "chatroom export" else sys.stdout)


def _failures(url: str) -> tuple[type[Exception], ...]:
    failures: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
    if urlsplit(url).scheme in ("redis", "rediss"):
        from app.backends.redis.commands import RedisErrors

        failures += RedisErrors
    return failures


async def _open(settings: Settings, creating: bool) -> Backend:
    from app.backends import create_backend

    url = settings.backend_url
    if urlsplit(url).scheme == "sqlite":
        from app.backends.sqlite.files import path_from_url

        path = path_from_url(url)
        if not path.exists():
            if not creating:  # a mistyped path must not export an empty chat
                raise Refused(f"No database at {path}: is --backend (or CHAT_BACKEND_URL) the server's?")
            path.parent.mkdir(parents=True, exist_ok=True)
    backend = create_backend(url, settings)
    try:
        await backend.open()
    except RuntimeError as exc:  # memory://, or a database of a newer schema
        raise Refused(f"{exc}; run the command against the server's sqlite:// or redis:// backend") from None
    except _failures(url) as exc:
        raise Refused(f"The backend did not answer: {exc}") from None
    return backend


async def _export(settings: Settings, room: str | None, secret: bool) -> str:
    from app.cli.progress import Progress
    from app.core.messages import now_ms
    from app.core.names import clean_room
    from app.core.transfer.export import NoSuchRoom, export
    from app.core.transfer.format import Header

    if sys.stdout.isatty():
        raise Refused("stdout is a terminal: send the export to a file (chatroom export > chat.jsonl)")
    name = clean_room(room) if room is not None else None
    backend = await _open(settings, creating=False)
    header = Header(urlsplit(settings.backend_url).scheme, now_ms(), name)
    progress = Progress("exporting")
    out = sys.stdout.buffer
    try:
        async with backend.transfer.snapshot() as snapshot:
            counts = await export(snapshot, out.write, header, secret, lambda done, total: progress.update(done, total))
        out.flush()
    except NoSuchRoom as exc:
        raise Refused(str(exc)) from None
    except BrokenPipeError:
        raise
    except _failures(settings.backend_url) as exc:
        raise Refused(f"The backend failed during the export, which is incomplete: {exc}") from None
    finally:
        progress.end()
        await backend.close()
    return f"Exported {counts}"


def _lines(file: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    from app.core.transfer.format import MAX_LINE, Unreadable

    number = 0
    while True:
        line = file.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise Unreadable(number, f"longer than {MAX_LINE:,} bytes: no record is")
        if not line.strip():
            raise Unreadable(number, "an empty line")
        yield number, line


def _seekable(path: str | None) -> IO[bytes]:
    """The file to read twice: the one named, stdin if it is a file, or a copy of stdin."""
    if path is not None:
        try:
            return open(path, "rb")
        except OSError as exc:
            raise Refused(f"Cannot read {path}: {exc.strerror}") from None
    stdin = sys.stdin.buffer
    if stdin.isatty():
        raise Refused("stdin is a terminal: give the export as a file (chatroom import < chat.jsonl)")
    if stdin.seekable():
        return stdin
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
    shutil.copyfileobj(stdin, copy, COPY_CHUNK)
    copy.seek(0)
    return copy


async def _import(settings: Settings, path: str | None) -> str:
    from app.backends.base import BackendError, InUse
    from app.cli.progress import Progress
    from app.core.messages import now_ms
    from app.core.transfer.format import Unreadable
    from app.core.transfer.load import Conflict, check, load

    file = _seekable(path)
    size = os.fstat(file.fileno()).st_size
    start = file.tell()
    failures: tuple[type[Exception], ...] = (BackendError, *_failures(settings.backend_url))
    backend = await _open(settings, creating=True)
    progress = Progress("importing")

    def position(_: int) -> None:
        progress.update(file.tell() - start, size - start, " bytes")

    written = False
    try:
        async with backend.transfer.loading() as loader:
            async with backend.transfer.snapshot() as target:
                plan = await check(_lines(file), target, now_ms())
            if plan.adds.empty:
                return "Nothing to import: the store holds all of it already"
            file.seek(start)
            written = True
            added = await load(_lines(file), plan, loader, position)
    except (Unreadable, Conflict) as exc:
        raise Refused(f"{exc}; nothing was imported") from None
    except InUse as exc:
        raise Refused(f"{exc}; nothing was imported") from None
    except failures as exc:
        if written and urlsplit(settings.backend_url).scheme in ("redis", "rediss"):
            raise Refused(
                f"The backend failed during the import: {exc}; what was written is kept, and running "
                "the import again adds the rest"
            ) from None
        raise Refused(f"The backend failed: {exc}; nothing was imported") from None
    finally:
        progress.end()
        file.close()
        await backend.close()
    skipped = f"; {plan.skipped:,} messages were there already" if plan.skipped else ""
    return f"Imported {added}{skipped}"
