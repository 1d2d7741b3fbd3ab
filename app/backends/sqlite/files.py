"""The SQLite file: its URL, its connections, its explicit transactions and its lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO


def path_from_url(url: str) -> Path:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"Expected sqlite:///relative/path.db or sqlite:////absolute/path.db, but got {url!r}")
    return Path(url[len(prefix) :])


class transaction:
    """`with transaction(db) as db:` BEGIN ... COMMIT, or ROLLBACK if the block raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN")
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN/COMMIT) and never left open by accident.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def lock_exclusively(path: Path) -> IO[bytes]:
    """One server per database: SQLite serves one process here; several need redis://."""
    lock = open(f"{path}.lock", "wb")  # noqa: SIM115 - held open for the server's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RuntimeError(
            f"{path} is in use by another chatroom process; one process serves a SQLite database "
            "(for several workers or hosts use CHAT_BACKEND_URL=redis://...)"
        ) from None
    os.set_inheritable(lock.fileno(), False)
    return lock
