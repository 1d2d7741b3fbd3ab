"""Export and import of a large chat, measured: `python -m bench.transfer [--messages N] [--redis URL]`.

Builds a SQLite store of N messages (default 1,000,000, in 4 rooms, written straight through
the import's own loader), then runs the real commands, each in a process of its own:
`chatroom export` of it, `chatroom import` of the file into a fresh SQLite database and, with
--redis, into that Redis (which it empties first) and an export from there. For each it
prints the wall time, the time per 100,000 messages and the peak resident memory of that
process (its own `ru_maxrss`, from wait4), which stays flat however large the chat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.backends import create_backend
from app.core.messages import Message
from app.core.transfer.format import StoredMessage
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CHATROOM = ROOT / ".venv" / "bin" / "chatroom"
ROOMS = ("lobby", "den", "attic", "garden")
PAGE = 1000


async def build(url: str, count: int) -> None:
    backend = create_backend(url, Settings(backend_url=url))
    await backend.open()
    try:
        async with backend.transfer.loading() as loader:
            per_room = count // len(ROOMS)
            for room in ROOMS:
                for start in range(1, per_room + 1, PAGE):
                    ids = range(start, min(start + PAGE, per_room + 1))
                    await loader.messages(
                        room,
                        [
                            StoredMessage(
                                Message(
                                    room, id, f"guest-{id % 97:04d}", f"message {id} of {room}: " + "x" * 40, id, True
                                )
                            )
                            for id in ids
                        ],
                    )
                await loader.room(room, per_room, None)
    finally:
        await backend.close()


def run(what: str, args: list[str], url: str, count: int, stdin: Path | None, stdout: Path | None) -> None:
    environment = {**os.environ, "CHAT_BACKEND_URL": url}
    with (
        stdin.open("rb") if stdin is not None else open(os.devnull, "rb") as given,
        stdout.open("wb") if stdout is not None else open(os.devnull, "wb") as taken,
    ):
        started = time.monotonic()
        command = [str(CHATROOM), *args]
        child = subprocess.Popen(command, cwd=ROOT, env=environment, stdin=given, stdout=taken)  # noqa: S603
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.exit(f"{what} failed with status {child.returncode}")
    per_100k = elapsed / count * 100_000
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    print(f"{what:<20} {elapsed:7.1f} s   {per_100k:5.2f} s per 100k messages   peak RSS {peak:6.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--redis", help="a Redis URL to import into and export from too (it is emptied first)")
    parser.add_argument("--keep", help="a folder to keep the files in (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.keep or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        source, target = f"sqlite:///{folder / 'source.db'}", f"sqlite:///{folder / 'target.db'}"
        for name in ("source.db", "target.db"):
            for suffix in ("", "-wal", "-shm"):
                (folder / f"{name}{suffix}").unlink(missing_ok=True)
        started = time.monotonic()
        asyncio.run(build(source, args.messages))
        print(f"built {args.messages:,} messages in {time.monotonic() - started:.1f} s")
        exported = folder / "chat.jsonl"
        run("export from SQLite", ["export"], source, args.messages, None, exported)
        print(f"the file: {exported.stat().st_size / 2**20:.0f} MiB")
        run("import into SQLite", ["import"], target, args.messages, exported, None)
        if args.redis:
            import redis

            redis.Redis.from_url(args.redis).flushdb()
            run("import into Redis", ["import"], args.redis, args.messages, exported, None)
            run("export from Redis", ["export"], args.redis, args.messages, None, folder / "redis.jsonl")


if __name__ == "__main__":
    main()
