"""Which browser origins may open a WebSocket: defence against cross-site WebSocket hijacking."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str | None:
    """`scheme://host:port` in lower case with the port spelled out, or None if malformed."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def origin_allowed(headers: Mapping[str, str], allowed: Iterable[str]) -> bool:
    """A handshake without Origin (not a browser) passes; a browser's must be ours or allowed.

    "Ours", as in gorilla/websocket's default check, means the Origin names the very host
    and port the browser connected to (its Host header); the scheme is not compared, so the
    check also holds behind a proxy that terminates TLS.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        return False
    host = headers.get("host")
    if netloc and host and netloc.lower() == host.strip().lower():
        return True
    seen = normalise_origin(origin)
    return seen is not None and any(seen == normalise_origin(item) for item in allowed)
