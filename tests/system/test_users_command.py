"""`chatroom users` against a running server, on SQLite (a real `chatroom` beside the command)
and on a real Redis (uvicorn): accounts added, listed, changed and removed while people are
signed in, their sockets closed at once, and every refusal one line and a non-zero status."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from app.core.protocol import CloseCode
from bench.server import free_port
from tests.support.accounts import (
    PASSWORD,
    open_signed_in,
    request,
    sign_in,
    signed_in_as,
    users_command,
)
from tests.support.certificates import Certificates
from tests.support.servers import (
    CHATROOM,
    ROOT,
    Server,
    chatroom_command,
    client_context,
    open_peer,
    run_server,
    uvicorn_command,
)

pytestmark = pytest.mark.anyio

# The longest the command's change may take to close a socket: a SQLite server looks for
# notices every 0.5 s (app/backends/sqlite/notices.py); Redis streams them at once.
CLOSED_WITHIN = 2.0
NEW_PASSWORD = "a new password"  # noqa: S105 - a test account's
TOO_SHORT = "short"  # one the rules refuse


@pytest.fixture(params=["sqlite", "redis"])
def running(request: pytest.FixtureRequest, certificates: Certificates, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A server at work, and the backend URL the command is given: the server's own."""
    port = free_port()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chat.db'}"
        command = chatroom_command(port, certificates.cert, certificates.key, "--backend", url)
    else:
        url = request.getfixturevalue("redis_url")
        command = uvicorn_command(port, certificates.cert, certificates.key)
    with run_server(command, port, tmp_path, env={"CHAT_BACKEND_URL": url}) as server:
        yield server, url
    log = server.read_log()
    assert "Traceback" not in log
    assert "ERROR" not in log


async def users(url: str, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(users_command, url, *args, password=password)


def refused(result: subprocess.CompletedProcess[str], why: str) -> None:
    """The command failed with status 1 and one line that says `why`."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("chatroom users: ")
    assert why in result.stderr


async def test_a_new_password_ends_every_session_of_the_account_at_once(
    running: tuple[Server, str], certificates: Certificates
) -> None:
    server, url = running
    added = await users(url, "add", "Ann", "--password-stdin", password=PASSWORD)
    assert (added.returncode, added.stdout) == (0, "Added Ann\n")
    laptop, phone = await sign_in(server, certificates.ca, "ann"), await sign_in(server, certificates.ca, "ANN")
    ann = await open_signed_in(server, certificates.ca, laptop)
    assert (ann.welcome["name"], ann.welcome["guest"]) == ("Ann", False)

    changed = await users(url, "passwd", "ann", "--password-stdin", password=NEW_PASSWORD)
    done = time.monotonic()
    assert (changed.returncode, changed.stdout) == (0, "Changed the password of Ann; 2 sessions ended\n")
    await asyncio.wait_for(ann.connection.wait_closed(), CLOSED_WITHIN)
    print(f"socket closed {1000 * (time.monotonic() - done):.0f} ms after the command ended")
    assert ann.connection.close_code == CloseCode.NOT_SIGNED_IN
    assert ann.connection.close_reason == "Your password was changed"
    for old in (laptop, phone):
        assert await signed_in_as(server, certificates.ca, old) is None
    wrong = await asyncio.to_thread(
        request, server, certificates.ca, "POST", "/api/session", {"name": "ann", "password": PASSWORD}
    )
    assert wrong.status == 401
    again = await sign_in(server, certificates.ca, "ann", NEW_PASSWORD)
    assert await signed_in_as(server, certificates.ca, again) == {"name": "Ann", "admin": False}


async def test_a_removed_account_is_signed_out_everywhere_and_its_name_is_free(
    running: tuple[Server, str], certificates: Certificates
) -> None:
    server, url = running
    assert (await users(url, "add", "Ann", "--password-stdin", password=PASSWORD)).returncode == 0
    session = await sign_in(server, certificates.ca, "ann")
    ann = await open_signed_in(server, certificates.ca, session)
    refused_guest = await open_peer_closed(server, certificates.ca, "name=ann")
    assert refused_guest == CloseCode.NAME_TAKEN  # registered: no guest may take it

    removed = await users(url, "remove", "ANN")
    assert (removed.returncode, removed.stdout) == (0, "Removed Ann; 1 session ended\n")
    await asyncio.wait_for(ann.connection.wait_closed(), CLOSED_WITHIN)
    assert ann.connection.close_code == CloseCode.NOT_SIGNED_IN
    assert ann.connection.close_reason == "Your account was removed"
    assert await signed_in_as(server, certificates.ca, session) is None
    gone = await asyncio.to_thread(
        request, server, certificates.ca, "POST", "/api/session", {"name": "ann", "password": PASSWORD}
    )
    assert gone.status == 401
    guest = await open_peer(server, "name=ann", certificates.ca)  # anybody's again
    assert (guest.welcome["name"], guest.welcome["guest"]) == ("ann", True)
    await guest.connection.close()
    assert (await users(url, "list")).stdout.splitlines()[1:] == []


async def test_a_guest_online_under_a_name_the_operator_adds_is_closed(
    running: tuple[Server, str], certificates: Certificates
) -> None:
    server, url = running
    guest = await open_peer(server, "name=bob", certificates.ca)
    assert (await users(url, "add", "Bob", "--password-stdin", password=PASSWORD)).returncode == 0
    await asyncio.wait_for(guest.connection.wait_closed(), CLOSED_WITHIN)
    assert guest.connection.close_code == CloseCode.NAME_TAKEN


async def test_list_shows_names_roles_and_dates_and_never_a_hash(
    running: tuple[Server, str], certificates: Certificates
) -> None:
    server, url = running
    assert (await users(url, "add", "Bob", "--admin", "--password-stdin", password=PASSWORD)).returncode == 0
    assert (await users(url, "add", "ann", "--password-stdin", password=PASSWORD)).returncode == 0
    listed = await users(url, "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["name", "admin", "created"]
    assert [line.split()[:2] for line in lines[1:]] == [["ann", "no"], ["Bob", "yes"]]  # by key
    assert all(line.endswith(" UTC") for line in lines[1:])
    assert "argon2" not in listed.stdout
    assert PASSWORD not in listed.stdout

    session = await sign_in(server, certificates.ca, "bob")
    assert await signed_in_as(server, certificates.ca, session) == {"name": "Bob", "admin": True}
    role = await users(url, "role", "bob", "user")
    assert (role.returncode, role.stdout) == (0, "Bob is a user now\n")
    assert await signed_in_as(server, certificates.ca, session) == {"name": "Bob", "admin": False}  # at once
    assert (await users(url, "role", "BOB", "admin")).stdout == "Bob is an admin now\n"
    assert [line.split()[:2] for line in (await users(url, "list")).stdout.splitlines()[1:]] == [
        ["ann", "no"],
        ["Bob", "yes"],
    ]


async def test_every_refusal_is_one_line_and_status_1(running: tuple[Server, str]) -> None:
    _, url = running
    assert (await users(url, "add", "Ann", "--password-stdin", password=PASSWORD)).returncode == 0
    refused(await users(url, "add", "ann", "--password-stdin", password=PASSWORD), "is registered already")
    refused(await users(url, "add", "\u0430nn", "--password-stdin", password=PASSWORD), "is registered already")
    refused(await users(url, "add", "bob", "--password-stdin", password=TOO_SHORT), "at least 8 characters")
    refused(await users(url, "add", "bob", "--password-stdin", password="x" * 1025), "at most 1024 bytes")
    refused(await users(url, "add", "bob", "--password-stdin", password=""), "No password on stdin")
    refused(await users(url, "add", "a\u202eb", "--password-stdin", password=PASSWORD), "U+202E")
    refused(await users(url, "add", "guest-0042", "--password-stdin", password=PASSWORD), "are for guests")
    refused(await users(url, "add", "bob"), "use --password-stdin")  # stdin is no terminal
    for action in (["passwd", "nobody", "--password-stdin"], ["remove", "nobody"], ["role", "nobody", "admin"]):
        refused(await users(url, *action, password=PASSWORD), "No account is named 'nobody'")
    bad_role = await users(url, "role", "ann", "root")
    assert bad_role.returncode == 2  # argparse's status for a command line it cannot read
    assert "invalid choice: 'root'" in bad_role.stderr
    assert [line.split()[0] for line in (await users(url, "list")).stdout.splitlines()] == ["name", "Ann"]


async def test_the_command_refuses_what_it_cannot_reach(tmp_path: Path) -> None:
    refused(await users("memory://", "list"), "no other process can reach it")
    refused(await users(f"redis://127.0.0.1:{free_port()}/0", "list"), "The backend did not answer")
    refused(await users("mysql://x", "list"), "Expected a backend URL")
    missing = tmp_path / "typo.db"
    refused(await users(f"sqlite:///{missing}", "remove", "ann"), f"No database at {missing}")
    assert not missing.exists()
    # A first account before the first start: the database is made, as the server would.
    first = tmp_path / "new" / "chat.db"
    assert (
        await users(f"sqlite:///{first}", "add", "root", "--admin", "--password-stdin", password=PASSWORD)
    ).returncode == 0
    assert "root" in (await users(f"sqlite:///{first}", "list")).stdout


INTERRUPT = b""  # in `typed`: Ctrl-C at that prompt (SIGINT, as a terminal sends it)


def run_in_a_terminal(url: str, *args: str, typed: list[bytes]) -> tuple[int, bytes]:
    """`chatroom users ARGS` on a pseudo-terminal, typing each of `typed` (with its Enter)
    after a prompt; its status and everything the terminal showed."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [str(CHATROOM), "users", *args, "--backend", url],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # no controlling terminal: getpass works on stdin, the pty
    )
    os.close(slave)
    deadline = time.monotonic() + 30
    shown = b""

    def read(until: Callable[[bytes], bool]) -> bool:
        """Read what the terminal shows until `until` holds; False once the command closed it."""
        nonlocal shown
        while not until(shown):
            ready, _, _ = select.select([master], [], [], max(0, deadline - time.monotonic()))
            assert ready, f"the command showed {shown!r} and nothing more for 30 s"
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the command ended and closed the terminal
                return False
            if not chunk:
                return False
            shown += chunk
        return True

    try:
        for number, line in enumerate(typed, start=1):
            read(lambda shown: shown.count(b": ") >= number and shown.endswith(b": "))  # noqa: B023 - read at once
            if line == INTERRUPT:
                process.send_signal(signal.SIGINT)
            else:
                os.write(master, line)
        read(lambda shown: False)
        return process.wait(30), shown
    finally:
        process.kill()
        os.close(master)


async def test_passwords_are_asked_twice_without_echo(running: tuple[Server, str], certificates: Certificates) -> None:
    server, url = running
    typed = [b"typed on a terminal\n", b"typed on a terminal\n"]
    status, shown = await asyncio.to_thread(run_in_a_terminal, url, "add", "Cy", typed=typed)
    assert status == 0, shown
    assert b"Password for Cy: " in shown
    assert b"Again: " in shown
    assert b"typed" not in shown
    assert b"Added Cy" in shown
    assert await signed_in_as(
        server, certificates.ca, await sign_in(server, certificates.ca, "cy", "typed on a terminal")
    )
    status, shown = await asyncio.to_thread(
        run_in_a_terminal, url, "passwd", "cy", typed=[b"one new password\n", b"another new one\n"]
    )
    assert status == 1
    assert b"The two passwords differ: nothing was changed" in shown
    assert b"new" not in shown.replace(b"New password", b"")
    await sign_in(server, certificates.ca, "cy", "typed on a terminal")  # unchanged
    status, shown = await asyncio.to_thread(run_in_a_terminal, url, "passwd", "cy", typed=[INTERRUPT])
    assert status == 130  # as the shell reports SIGINT
    assert b"Traceback" not in shown
    await sign_in(server, certificates.ca, "cy", "typed on a terminal")  # unchanged


async def open_peer_closed(server: Server, cafile: Path, query: str) -> int | None:
    """The close code of a connection that the server refuses right after its handshake."""
    connection = await connect(server.url(query), ssl=client_context(cafile), open_timeout=10)
    await asyncio.wait_for(connection.wait_closed(), 10)
    return connection.close_code
