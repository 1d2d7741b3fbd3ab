"""Which browser origins may open a WebSocket: defence against cross-site WebSocket hijacking."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The scheme of a page that may open a WebSocket of each scheme.
_PAGE_SCHEMES = {"ws": "http", "wss": "https"}
_OTHER = {"http": "https", "https": "http"}

logger = logging.getLogger("chatroom.origins")


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


def origin_allowed(headers: Mapping[str, str], allowed: Iterable[str], scheme: str) -> bool:
    """A handshake without Origin (not a browser) passes; a browser's must be ours or allowed.

    "Ours" means the page's origin is the very scheme, host and port the browser connected
    to: its Host header (which `app.web.hosts` has checked to be one of the server's names),
    and `scheme`, the connection's (`wss` for an https page, `ws` for an http one). Behind a
    proxy that terminates TLS, that is the scheme the proxy says it received, when its
    X-Forwarded-Proto is believed (`CHAT_FORWARDED_ALLOW_IPS`): uvicorn sets it so.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    seen = normalise_origin(origin)
    if seen is None:
        return False
    host = (headers.get("host") or "").strip()
    page_scheme = _PAGE_SCHEMES.get(scheme)
    if host and page_scheme and seen == normalise_origin(f"{page_scheme}://{host}"):
        return True
    if any(seen == normalise_origin(item) for item in allowed):
        return True
    if host and page_scheme and seen == normalise_origin(f"{_OTHER[page_scheme]}://{host}"):
        # Our own page, over the other scheme: an http page that may be anyone's, or a
        # proxy that terminates TLS without being believed. Say so, for the second.
        logger.warning(
            "refused a WebSocket over %s from %s: behind a proxy that terminates TLS, believe its"
            " X-Forwarded-Proto (CHAT_FORWARDED_ALLOW_IPS, or uvicorn's --forwarded-allow-ips)",
            scheme,
            seen,
        )
    return False
