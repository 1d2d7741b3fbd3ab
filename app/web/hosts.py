"""The names the server answers to: a request for any other host is refused.

A page on `evil.example` whose name the attacker re-points at the chat's address (DNS
rebinding) reaches the chat from the browser as `Host: evil.example`, and its Origin
matches that Host: only the Host tells it apart. So every HTTP request and WebSocket
handshake must name the server as its users know it (`CHAT_SERVER_NAMES`, by default what
`CHAT_HOST` implies), or the very address the connection reached, which no rebinding can
produce (a browser sends the name it resolved, never the address). Starlette builds its
redirects from the Host header: past this check, they can only name the server.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.settings import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("0.0.0.0", "::")
UNKNOWN_HOST = (
    "This server does not answer to the host this request names. To allow a name, add it to"
    " CHAT_SERVER_NAMES (comma-separated) where the server runs."
)

_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_PORT = re.compile(r"[0-9]{1,5}")


def implied_names(host: str) -> tuple[str, ...]:
    """The names a server listening on `host` (`CHAT_HOST`) answers to when not told.

    A loopback address: the loopback names. Every address (0.0.0.0, ::): the names people
    on the LAN type, the host's name (what `chatroom` prints), its full name and its mDNS
    name; the addresses they type need no listing, being the ones connections reach. Any
    other name or address: that one. The loopback names always.
    """
    if host in ANY_ADDRESS:
        hostname = socket.gethostname()
        names = [hostname, socket.getfqdn(hostname)]
        if "." not in hostname:
            names.append(f"{hostname}.local")
        return tuple(dict.fromkeys([*names, *LOOPBACK_NAMES]))
    if _is_loopback(host):
        return LOOPBACK_NAMES
    return tuple(dict.fromkeys([host, *LOOPBACK_NAMES]))


def normalise_name(name: str) -> str | None:
    """A host as compared: lower case, IP addresses in one spelling, no trailing dot; None
    if it is neither a DNS name nor an address."""
    name = name.strip().lower().removesuffix(".")
    if name.startswith("["):  # an IPv6 address, as a URL writes it
        return _address(name[1:-1]) if name.endswith("]") and ":" in name else None
    address = _address(name)
    if address is not None:
        return address
    try:
        name = name.encode("idna").decode("ascii")  # a name in any script, as a browser sends it
    except UnicodeError:
        return None
    return name if _NAME.fullmatch(name) and len(name) <= 253 else None


def host_of(header: str) -> str | None:
    """The host of a Host header (`name`, `name:port`, `[v6]:port`), normalised; None if malformed."""
    host, colon, port = header.rpartition(":")
    if not colon or host.endswith(":") or (header.startswith("[") and not host.endswith("]")):
        host, port = header, ""  # no port (an IPv6 address has colons of its own)
    elif not _PORT.fullmatch(port):
        return None
    if ":" in host and not host.startswith("["):
        return None  # an IPv6 address without brackets, or two ports
    return normalise_name(host)


class ServerNames:
    """Refuses (400) every request and handshake whose Host is not one of the server's names
    (`CHAT_SERVER_NAMES`, or those its `CHAT_HOST` implies) nor the address the connection
    reached. A name may be a wildcard, `*.example.com` for every name under it, or `*` for
    any host, which turns the check off."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        # Built with the app's middleware, at its first event: the names of the machine are
        # looked up once, when it starts, not when the module is imported.
        self.app = app
        names = list(settings.server_names or implied_names(settings.host))
        self.allow_any = "*" in names
        self.suffixes = tuple(f".{normalise_name(name[2:])}" for name in names if name.startswith("*."))
        self.names = frozenset(filter(None, (normalise_name(name) for name in names if not name.startswith("*"))))

    def answers_to(self, host: str, arrived_at: str | None) -> bool:
        return (
            host in self.names
            or host.endswith(self.suffixes)
            or (arrived_at is not None and host == _address(arrived_at))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allow_any:
            await self.app(scope, receive, send)
            return
        if self.allowed(scope):
            await self.app(scope, receive, send)
        else:
            await PlainTextResponse(UNKNOWN_HOST, status_code=400)(scope, receive, send)

    def allowed(self, scope: Scope) -> bool:
        hosts = Headers(scope=scope).getlist("host")
        if not hosts:
            return True  # HTTP/1.0 without Host: URLs are built from the server's own address
        if len(hosts) > 1:
            return False  # which one would a proxy have routed by? (RFC 9112: answer 400)
        host = host_of(hosts[0])
        server = scope.get("server")
        return host is not None and self.answers_to(host, server[0] if server else None)


def _address(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.partition("%")[0])  # a link-local zone is not sent
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # dual-stack sockets see IPv4 clients this way
    return str(address)


def _is_loopback(host: str) -> bool:
    address = _address(host)
    return host == "localhost" if address is None else ipaddress.ip_address(address).is_loopback
