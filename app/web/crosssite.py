"""`CrossSiteRefusal`: a request that changes something must come from the chat's own pages.

A page on another site can make a visitor's browser send a form or a `fetch` to the chat,
and the browser adds the visitor's cookie to some of them (a form's POST, for one). Every
request whose method may change something (anything but GET, HEAD and OPTIONS) is refused
with 403 when the browser says it comes from another site: `Sec-Fetch-Site` other than
`same-origin` or `none`, or, from browsers that do not send that, an `Origin` that is not the
chat's own (app/web/origins.py). A request with neither is not a browser's (curl, a bot) and
carries no visitor's cookie by accident: it passes. Sign-in is refused cross-site too, so
that another site cannot sign a visitor in under its own account.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.web.origins import origin_allowed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})  # `none`: the user typed the address


class CrossSiteRefusal:
    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_origins = tuple(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and self._cross_site(scope):
            response = JSONResponse(
                {"error": "cross_site", "detail": "Refused: this request came from another site"},
                status_code=403,
                headers={"cache-control": "no-store"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _cross_site(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in SAME_SITE_FETCHES:
            return True
        # The check is the WebSocket handshake's: an https page for wss, an http page for ws.
        socket_scheme = "wss" if scope.get("scheme") == "https" else "ws"
        return "origin" in headers and not origin_allowed(headers, self.allowed_origins, socket_scheme)
