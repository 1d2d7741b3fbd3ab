"""One frozen `Settings`, read from `CHAT_*` environment variables.

Every field is a setting a user may change; its environment variable is the field's name in
upper case with the `CHAT_` prefix (`rate_limit` -> `CHAT_RATE_LIMIT`). README.md,
"Configuration", lists them all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "CHAT_"

# Backends that live in one process: with --workers, each worker would have a chat of its own.
SINGLE_PROCESS_BACKENDS = ("memory", "sqlite")


@dataclass(frozen=True, slots=True)
class Settings:
    # Where the `chatroom` command listens, and its certificate.
    host: str = "127.0.0.1"
    port: int = 8443
    certfile: str = "certs/cert.pem"
    keyfile: str = "certs/key.pem"

    # Where history lives and how messages reach every process (see app/backends).
    backend_url: str = "sqlite:///data/chatroom.db"
    # Messages kept per room by the memory backend.
    history_limit: int = 1000
    # Retention of the durable backends: messages kept per room, and days; 0 keeps everything.
    retention_messages: int = 0
    retention_days: float = 0.0
    # Messages a newcomer receives in its welcome, and at most a reconnecting client (`since`).
    welcome_history: int = 100
    replay_limit: int = 1000
    # Seconds a process's users stay online for the other processes after its last heartbeat
    # (redis://): a process that dies without saying goodbye has its users leave this much later.
    presence_ttl: float = 20.0

    # Per-connection limits (docs/protocol.md gives each one's close code).
    max_message_bytes: int = 4096
    rate_limit: float = 5.0  # messages per second; 0 switches rate limiting off
    rate_burst: int = 10
    flood_strikes: int = 10  # rejected messages, decaying at one per second, before close 1008
    queue_size: int = 256  # frames waiting for one client before it counts as too slow
    queue_bytes: int = 1_048_576  # or characters waiting for it (frames carry many events)
    # A client whose socket has taken nothing for this long while its room waits on it is
    # taken for one that stopped reading, and closed (1013) so the room goes on.
    stall_timeout: float = 0.25
    close_timeout: float = 5.0  # seconds a close may take before the connection is cut
    # Seconds a peer's socket may stay full (what the server wrote for it over the high-water
    # mark, and it reads nothing) before it is cut off; meanwhile nothing more is read from it.
    write_timeout: float = 10.0

    # Browser origins allowed besides the server's own (comma-separated in the environment).
    allowed_origins: tuple[str, ...] = ()
    # The host names (or addresses) requests must name in their Host header, besides the
    # address each connection reached: `*.example.com` for every name under one, `*` for any
    # host. None given: what `host` implies (app/web/hosts.py, `implied_names`).
    server_names: tuple[str, ...] = ()

    # Addresses (or networks) of the reverse proxies whose X-Forwarded-For and -Proto the
    # `chatroom` command believes: the client's address (the per-address cap counts it) and
    # scheme. None by default: a client could claim any address, and get a cap of its own.
    forwarded_allow_ips: tuple[str, ...] = ()

    # Addresses or networks that may see the server's insides: what is wrong, in a 503 of
    # /healthz (others get only the status). Loopback by default.
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1")

    # Connection abuse (SECURITY.md). WebSockets one client address may hold open at once:
    # room for a class of 30 behind one NAT with a few tabs each; 0 switches the cap off.
    max_connections_per_ip: int = 100
    # Seconds a new connection has for its TLS handshake, and then for its HTTP request head
    # (the WebSocket upgrade request), each; applied by the `chatroom` command.
    handshake_timeout: float = 10.0
    # Largest HTTP request head (request line and headers) in bytes; 431 above.
    max_header_bytes: int = 32768

    # Accounts (app/core/accounts.py). Guests: "on", or "off" (only accounts may connect);
    # registration from the page: "open", or "closed" (only `chatroom users add`).
    guests: str = "on"
    registration: str = "open"
    # A session ends this many days after it began, and after this many days unused.
    session_days: float = 30.0
    session_idle_days: float = 7.0
    # Seconds without a key press or a click after which the page sets its account away (and
    # back on the next one, unless the user set it by hand); 0: never by itself.
    auto_away: float = 600.0

    # Seconds after it was sent that a message may still be edited by its author (app/core/changes.py).
    edit_window: float = 900.0
    # The log: "text" (readable), or "json" (one JSON object a line; app/logs.py).
    log_format: str = "text"

    # Protocol pings: a peer that does not answer within interval + timeout is dropped.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `CHAT_*` variables (default: the process environment), then `overrides`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _parse(field.name, field.type, raw)
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.retention_messages < 0 or self.retention_days < 0:
            raise ValueError("retention_messages and retention_days must be 0 (keep everything) or positive")
        if self.presence_ttl <= 0:
            raise ValueError(f"presence_ttl must be positive, got {self.presence_ttl}")
        if self.rate_limit < 0:
            raise ValueError(f"rate_limit must be 0 (off) or positive, got {self.rate_limit}")
        if self.max_connections_per_ip < 0:
            raise ValueError(f"max_connections_per_ip must be 0 (off) or positive, got {self.max_connections_per_ip}")
        if self.handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be positive, got {self.handshake_timeout}")
        if self.write_timeout <= 0:
            raise ValueError(f"write_timeout must be positive, got {self.write_timeout}")
        for proxy in self.forwarded_allow_ips:
            if proxy != "*" and not _is_network(proxy):
                raise ValueError(f"forwarded_allow_ips: expected addresses or networks, or *, but got {proxy!r}")
        for network in self.metrics_allow:
            if not _is_network(network):
                raise ValueError(f"metrics_allow: expected addresses or networks, but got {network!r}")
        for name in self.server_names:
            if not _is_host_name(name):
                raise ValueError(f"server_names: expected host names or addresses without a port, but got {name!r}")
        for name, allowed in (
            ("guests", ("on", "off")),
            ("registration", ("open", "closed")),
            ("log_format", ("text", "json")),
        ):
            if getattr(self, name) not in allowed:
                choices = " or ".join(repr(choice) for choice in allowed)
                raise ValueError(f"{name} must be {choices}, got {getattr(self, name)!r}")
        if self.session_days <= 0 or self.session_idle_days <= 0:
            raise ValueError("session_days and session_idle_days must be positive")
        if self.edit_window <= 0:
            raise ValueError(f"edit_window must be positive, got {self.edit_window}")
        if self.auto_away < 0:
            raise ValueError(f"auto_away must be 0 (never) or positive, got {self.auto_away}")
        if self.max_header_bytes < 1024:  # a browser's upgrade request alone takes several hundred
            raise ValueError(f"max_header_bytes must be at least 1024, got {self.max_header_bytes}")

    @property
    def guests_allowed(self) -> bool:
        return self.guests == "on"

    @property
    def registration_open(self) -> bool:
        return self.registration == "open"

    def to_env(self) -> dict[str, str]:
        """The `CHAT_*` variables that reproduce these settings in another process."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            env[ENV_PREFIX + field.name.upper()] = text
        return env


_AT_LEAST_ONE = (
    "history_limit",
    "welcome_history",
    "replay_limit",
    "max_message_bytes",
    "rate_burst",
    "queue_size",
    "queue_bytes",
)


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _is_host_name(text: str) -> bool:
    if text == "*" or (_is_network(text) and "/" not in text):
        return True
    try:
        ascii_name = text.removeprefix("*.").encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _HOST_NAME.fullmatch(ascii_name) is not None


_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def _parse(name: str, kind: Any, raw: str) -> Any:
    variable = ENV_PREFIX + name.upper()
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{variable}: expected a number, but got {raw!r}") from None
    if kind.startswith("tuple"):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw
