"""`chatroom check`: what would keep the server from starting, or from working, one line each.

It reads the settings as `chatroom` would (the same options and CHAT_* variables), and
looks at what the server needs before it needs it: every setting in range, the certificate
and key readable and a pair, the address free to listen on, and the backend: Redis
answering and new enough, the SQLite file not held by a running server, its schema one this
version knows. It changes nothing (no certificate created, no database migrated) and exits 1
when something is wrong, 0 when nothing is.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import errno
import fcntl
import os
import socket
import sqlite3
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from app.backends import BACKENDS
from app.server.metrics_folder import MULTIPROCESS_DIR
from app.settings import ENV_PREFIX, SINGLE_PROCESS_BACKENDS, Settings

REDIS_AT_LEAST = (6, 2)  # the backend's scripts use commands of Redis 6.2 (XADD ... MINID, GETDEL)
REDIS_TIMEOUT = 3.0  # seconds Redis gets to answer each question
# Backends whose rooms live in one process: workers would each have their own chat.
Parse = Callable[[Sequence[str] | None, Settings], argparse.Namespace]


def check_command(argv: Sequence[str], parse: Parse, environ: Mapping[str, str] | None = None) -> int:
    """Run the checks with `chatroom`'s own options (`parse`), print what is wrong; the exit status."""
    env = os.environ if environ is None else environ
    problems, settings, good = settings_problems(env)
    args = parse(argv, settings)
    try:
        settings = Settings.from_env(
            good,
            host=args.host,
            port=args.port,
            certfile=args.cert,
            keyfile=args.key,
            backend_url=args.backend,
            forwarded_allow_ips=tuple(item.strip() for item in args.forwarded_allow_ips.split(",") if item.strip()),
        )
    except ValueError as exc:
        problems.append(f"options: {exc}")
    problems += server_problems(settings, args.workers)
    problems += metrics_folder_problems(env)
    for problem in problems:
        print(f"chatroom check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"chatroom check: ready to serve https://{settings.host}:{settings.port}/ on {_shown(settings.backend_url)}")
    return 0


def settings_problems(env: Mapping[str, str]) -> tuple[list[str], Settings, dict[str, str]]:
    """What is wrong with each CHAT_* variable, taken alone; the settings of the others, and
    the variables they come from."""
    bad = _bad_variables(env)
    problems = [bad[variable] for variable in sorted(bad)]
    good = {key: value for key, value in env.items() if key not in bad}
    try:
        return problems, Settings.from_env(good), good
    except ValueError as exc:  # good alone, not together
        return [*problems, str(exc)], Settings(), {}


def _bad_variables(env: Mapping[str, str]) -> dict[str, str]:
    known = set(Settings().to_env())
    bad = {}
    for variable, value in env.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        if variable not in known:
            bad[variable] = f"{variable}: no such setting (README.md, Configuration, lists them)"
            continue
        try:
            Settings.from_env({variable: value})
        except ValueError as exc:
            message = str(exc)
            bad[variable] = message if message.startswith(variable) else f"{variable}={value!r}: {message}"
    return bad


def server_problems(settings: Settings, workers: int) -> list[str]:
    """What is wrong with what the server needs: one line each."""
    problems = []
    scheme = urlsplit(settings.backend_url).scheme
    if workers > 1 and scheme in SINGLE_PROCESS_BACKENDS:
        problems.append(f"--workers {workers}: {settings.backend_url} serves one process; share redis://HOST:PORT/DB")
    problems += certificate_problems(Path(settings.certfile), Path(settings.keyfile))
    problems += listening_problems(settings.host, settings.port)
    if scheme not in BACKENDS:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        problems.append(f"backend {settings.backend_url!r}: expected a URL starting with one of {known}")
    elif scheme == "sqlite":
        problems += sqlite_problems(settings.backend_url)
    elif scheme in ("redis", "rediss"):
        problems += asyncio.run(redis_problems(settings.backend_url))
    return problems


def metrics_folder_problems(env: Mapping[str, str]) -> list[str]:
    """The folder of prometheus-client's multiprocess mode, if one is named: every worker
    writes its figures there (`chatroom` creates it; plain uvicorn does not)."""
    named = env.get(MULTIPROCESS_DIR)
    if not named:
        return []
    folder = Path(named)
    if folder.exists() and not folder.is_dir():
        return [f"{MULTIPROCESS_DIR}={named}: not a folder"]
    if not os.access(folder if folder.exists() else _existing_parent(folder), os.W_OK | os.X_OK):
        return [f"{MULTIPROCESS_DIR}={named}: not writable"]
    return []


def certificate_problems(certfile: Path, keyfile: Path, now: datetime.datetime | None = None) -> list[str]:
    if not certfile.exists() and not keyfile.exists():
        folder = _existing_parent(certfile)
        if not os.access(folder, os.W_OK | os.X_OK):
            return [f"certificate {certfile}: missing, and {folder} is not writable to create one"]
        return []  # `chatroom` creates a development certificate
    problems = []
    for kind, path in (("certificate", certfile), ("key", keyfile)):
        if not path.exists():
            return []  # the pair is replaced by a development certificate, as when both are missing
        try:
            path.read_bytes()
        except OSError as exc:
            problems.append(f"{kind} {path}: unreadable ({exc.strerror or exc})")
    if problems:
        return problems
    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    except ValueError:
        return [f"certificate {certfile}: not a PEM certificate"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        return [f"certificate {certfile} and key {keyfile}: cannot be used together ({exc.reason or exc})"]
    expiry = certificate.not_valid_after_utc
    if expiry <= (now or datetime.datetime.now(datetime.UTC)):
        return [f"certificate {certfile}: expired on {expiry:%Y-%m-%d}"]
    return []


def _existing_parent(path: Path) -> Path:
    folder = path.parent.absolute()
    while not folder.exists():
        folder = folder.parent
    return folder


def listening_problems(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return [f"--host {host}: not an address of this machine ({exc.strerror})"]
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return [f"{host}:{port}: in use by another program (a chatroom already running?)"]
            return [f"{host}:{port}: cannot listen there ({exc.strerror or exc})"]
    return []


def sqlite_problems(url: str) -> list[str]:
    from app.backends.sqlite.files import path_from_url
    from app.backends.sqlite.schema import VERSION

    try:
        path = path_from_url(url)
    except ValueError as exc:
        return [str(exc)]
    lock = Path(f"{path}.lock")
    if lock.exists():
        try:
            with lock.open("rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # let go as the file closes
        except BlockingIOError:
            return [f"{path}: in use by a running chatroom server (one process serves a SQLite file)"]
        except OSError as exc:
            return [f"{lock}: unreadable ({exc.strerror or exc})"]
    if not path.exists():
        folder = _existing_parent(path)
        if not os.access(folder, os.W_OK | os.X_OK):
            return [f"{path}: missing, and {folder} is not writable to create it"]
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        return [f"{path}: not a database chatroom can open ({exc})"]
    if version > VERSION:
        return [f"{path}: schema version {version}, from a newer chatroom (this one knows up to {VERSION})"]
    return []


async def redis_problems(url: str) -> list[str]:
    try:
        from app.backends.redis.commands import RedisErrors, connect
    except ImportError as exc:
        return [str(exc)]
    shown = _shown(url)
    redis = connect(url, socket_timeout=REDIS_TIMEOUT)
    try:
        async with asyncio.timeout(2 * REDIS_TIMEOUT):
            info = await redis.info("server")
    except (*RedisErrors, ValueError) as exc:
        return [f"Redis at {shown} does not answer: {exc or type(exc).__name__}"]
    finally:
        await redis.aclose()
    version = str(info.get("redis_version", "0"))
    if _version(version) < REDIS_AT_LEAST:
        needed = ".".join(map(str, REDIS_AT_LEAST))
        return [f"Redis at {shown} is version {version}: chatroom needs {needed} or newer"]
    return []


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(character for character in part if character.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _shown(url: str) -> str:
    """A backend URL without its password, to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
