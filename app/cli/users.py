"""`chatroom users`: the operator's side of accounts, while the servers run.

    chatroom users add NAME [--admin] [--password-stdin]
    chatroom users list
    chatroom users passwd NAME [--password-stdin]
    chatroom users remove NAME
    chatroom users role NAME admin|user

The command opens the servers' store alone (`Backend.open`: the SQLite database beside the
server that serves it, or the Redis they share) and tells every server what concerns its
connections (`Backend.notify`): the sockets of the sessions that end are closed with 4401,
on every process (a SQLite server looks every half second). memory:// keeps everything in
the server's own memory: no command can reach it, and this one says so.

Every refusal is one line on stderr and exit status 1 (2 for a command line argparse
cannot read, 130 for Ctrl-C); passwords are asked twice without echo, or read from the
first line of stdin with --password-stdin, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sqlite3
import sys
import warnings
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from app.settings import Settings

if TYPE_CHECKING:
    from app.backends.base import Backend
    from app.core.accounts import Accounts
    from app.core.users import User

PROG = "chatroom users"
ROLES = {"admin": True, "user": False}
# A password is at most 1024 bytes (app/core/passwords.py): a line longer than this holds none.
MAX_LINE = 4 * 1024 + 2

_T = TypeVar("_T")


class Refused(Exception):
    """What the operator is told, in one line, before the command exits with status 1."""


def parse_args(argv: Sequence[str], defaults: Settings) -> argparse.Namespace:
    # --backend is taken before the action or after it, as people type it.
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument(
        "--backend", default=argparse.SUPPRESS, help="the servers' backend URL (default: CHAT_BACKEND_URL)"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Add, list, change and remove accounts, while the servers run: sessions that end "
        "have their sockets closed at once, on every process. Works on sqlite:// and redis://.",
    )
    parser.add_argument("--backend", default=defaults.backend_url, help=f"default: {defaults.backend_url}")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[backend], help="add an account (its password is asked twice)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="an admin of the chat")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    actions.add_parser("list", parents=[backend], help="every account: name, admin, created")
    passwd = actions.add_parser("passwd", parents=[backend], help="a new password; every session of it ends")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    remove = actions.add_parser("remove", parents=[backend], help="remove an account; its sessions end")
    remove.add_argument("name")
    role = actions.add_parser("role", parents=[backend], help="make an account an admin, or a user again")
    role.add_argument("name")
    role.add_argument("role", choices=sorted(ROLES))
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    try:
        defaults = Settings.from_env()
    except ValueError as exc:
        sys.exit(f"{PROG}: {exc}")
    args = parse_args(argv, defaults)
    try:
        settings = Settings.from_env(backend_url=args.backend)
        with asyncio.Runner() as runner:
            print(Command(runner, settings).run(args))
    except (Refused, ValueError) as exc:
        sys.exit(f"{PROG}: {exc}")
    except KeyboardInterrupt:
        print(file=sys.stderr)  # a prompt was cut short: end its line
        sys.exit(130)  # the shell's status for SIGINT


class Command:
    """One run of `chatroom users` on the store of `settings.backend_url`.

    Its steps run one at a time on `runner`'s event loop; a prompt for a password waits
    between two of them, with the loop idle, so that Ctrl-C ends it as it ends any command.
    """

    def __init__(self, runner: asyncio.Runner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        self._failures: tuple[type[Exception], ...] = (sqlite3.Error, OSError)

    def run(self, args: argparse.Namespace) -> str:
        backend = self._open(creating=args.action == "add")
        from app.core.accounts import Accounts

        accounts = Accounts(backend.accounts, self.settings, backend.notify)
        accounts.removing.append(backend.direct.forget)  # as the server's do: its direct messages go too
        try:
            return self._do(accounts, args)
        finally:
            accounts.close()
            # What was written, notices included, reaches the store before the command ends.
            self._step(backend.close())

    def _do(self, accounts: Accounts, args: argparse.Namespace) -> str:
        if args.action == "list":
            return _table(self._step(accounts.users()))
        if args.action == "add":
            name = self._step(accounts.free_name(args.name))
            password = _password(args.password_stdin, f"Password for {name}: ")
            user = self._step(accounts.add_user(name, password, admin=args.admin))
            return f"Added {user.name}{' (admin)' if user.admin else ''}"
        if args.action == "passwd":
            user = self._step(accounts.user_named(args.name))
            password = _password(args.password_stdin, f"New password for {user.name}: ")
            ended = self._step(accounts.set_password(user.name, password))
            return f"Changed the password of {user.name}; {_sessions(ended)} ended"
        if args.action == "remove":
            user, ended = self._step(accounts.remove_user(args.name))
            return f"Removed {user.name}; {_sessions(ended)} ended"
        assert args.action == "role"
        user = self._step(accounts.set_admin(args.name, ROLES[args.role]))
        return f"{user.name} is {'an admin' if user.admin else 'a user'} now"

    def _open(self, creating: bool) -> Backend:
        from app.backends import create_backend

        url = self.settings.backend_url
        scheme = urlsplit(url).scheme
        if scheme == "sqlite":
            from app.backends.sqlite.files import path_from_url

            path = path_from_url(url)
            if not path.exists():
                if not creating:  # a mistyped path must not answer "no such account"
                    raise Refused(f"No database at {path}: is --backend (or CHAT_BACKEND_URL) the server's?")
                path.parent.mkdir(parents=True, exist_ok=True)  # as the server would, at its first start
        elif scheme in ("redis", "rediss"):
            from app.backends.redis.commands import RedisErrors

            self._failures += RedisErrors
        backend = create_backend(url, self.settings)
        try:
            self._step(backend.open())
        except RuntimeError as exc:  # memory://
            raise Refused(f"{exc}; run the command against the server's sqlite:// or redis:// backend") from None
        return backend

    def _step(self, step: Coroutine[Any, Any, _T]) -> _T:
        """Run one step; an account's refusal or a store out of reach becomes `Refused`."""
        from app.backends.base import BackendError
        from app.core.accounts import AccountError
        from app.core.passwords import Busy

        unreachable: tuple[type[Exception], ...] = (BackendError, *self._failures)
        try:
            return self.runner.run(step)
        except AccountError as exc:
            raise Refused(exc.detail) from None
        except Busy as exc:
            raise Refused(str(exc)) from None
        except unreachable as exc:
            raise Refused(f"The backend did not answer: {exc or type(exc).__name__}") from None


def _password(from_stdin: bool, prompt: str) -> str:
    if from_stdin:
        line = sys.stdin.buffer.readline(MAX_LINE)
        try:
            password = line.decode()
        except UnicodeDecodeError:
            raise Refused("The password on stdin is not UTF-8") from None
        password = password.removesuffix("\n").removesuffix("\r")
        if not password:
            raise Refused("No password on stdin: give it as its first line")
        return password
    with warnings.catch_warnings():
        # getpass echoes what is typed when it finds no terminal, and warns: refuse instead.
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            password = getpass.getpass(prompt)
            again = getpass.getpass("Again: ")
        except getpass.GetPassWarning:
            raise Refused("No terminal to ask for the password on: use --password-stdin") from None
    if password != again:
        raise Refused("The two passwords differ: nothing was changed")
    return password


def _sessions(count: int) -> str:
    return f"{count} session{'' if count == 1 else 's'}"


def _table(users: list[User]) -> str:
    rows = [("name", "admin", "created")]
    for user in users:
        created = datetime.fromtimestamp(user.created / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        rows.append((user.name, "yes" if user.admin else "no", created))
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    return "\n".join(f"{name:<{widths[0]}}  {admin:<{widths[1]}}  {created}" for name, admin, created in rows)
