"""The accounts API (docs/protocol.md, "Accounts"): registering, signing in and out, changing
a password, and the session cookie. Policy is app/core/accounts.py's; this adapts HTTP to it.

The cookie holds the session id and nothing else: HttpOnly (no script reads it), SameSite=Lax
(no other site's request carries it, but a link to the chat does), Path=/, Secure over TLS
under the `__Host-` prefix (which a browser keeps only from a secure origin, for this host
alone). Every request that changes something must come from the chat's own pages
(`CrossSiteRefusal`, app/web/origins.py).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.core.accounts import (
    AccountError,
    Accounts,
    InvalidAccount,
    NameRegistered,
    RegistrationClosed,
    SignedOut,
    Throttled,
    WrongPassword,
)
from app.core.passwords import Busy
from app.core.stats import Stats
from app.settings import Settings
from app.web.connections import address_key

SECURE_COOKIE = "__Host-chatroom-session"  # over TLS
PLAIN_COOKIE = "chatroom-session"  # over plain HTTP (behind a proxy that terminates TLS, or in tests)
MAX_BODY = 4096  # bytes: a name and two passwords of at most 1024 bytes each, as JSON
BUSY_RETRY = 2  # seconds a client is asked to wait when too many passwords are being checked

_NO_STORE = {"cache-control": "no-store"}


def session_id_of(connection: HTTPConnection) -> str | None:
    """The session id a request or a WebSocket handshake carries in its cookie, if any."""
    cookies = connection.cookies
    return cookies.get(SECURE_COOKIE) or cookies.get(PLAIN_COOKIE)


def _address(request: Request) -> str:
    return address_key(request.client.host) if request.client is not None else "unix"


class BadBody(Exception):
    pass


async def _fields(request: Request, *names: str) -> list[str]:
    """The JSON object's string fields `names`; `BadBody` if it is not that, or too big."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadBody(f"Expected a JSON object of at most {MAX_BODY} bytes")
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadBody("Expected a JSON object") from None
    if not isinstance(fields, dict) or not all(isinstance(fields.get(name), str) for name in names):
        raise BadBody(f"Expected a JSON object with the strings {', '.join(names)}")
    return [fields[name] for name in names]


def _error(status: int, error: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers={**_NO_STORE, **headers})


def _status_and_error(exc: AccountError | Busy | BadBody) -> tuple[int, str]:
    if isinstance(exc, Throttled):
        return 429, "throttled"
    if isinstance(exc, Busy):
        return 503, "busy"
    if isinstance(exc, BadBody):
        return 400, "bad_request"
    return {
        InvalidAccount: (400, "invalid"),
        NameRegistered: (409, "registered"),
        RegistrationClosed: (403, "closed"),
        WrongPassword: (401, "wrong"),
        SignedOut: (401, "signed_out"),
    }.get(type(exc), (400, "invalid"))


def _refusal(exc: AccountError | Busy | BadBody) -> JSONResponse:
    status, error = _status_and_error(exc)
    if isinstance(exc, Throttled):
        return _error(status, error, exc.detail, **{"retry-after": str(math.ceil(exc.retry_after))})
    if isinstance(exc, Busy):
        return _error(status, error, str(exc), **{"retry-after": str(BUSY_RETRY)})
    return _error(status, error, exc.detail if isinstance(exc, AccountError) else str(exc))


class AccountRoutes:
    """The endpoints of /api/account and /api/session; built by `create_app`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/api/account", self.register, methods=["POST"]),
            Route("/api/account/password", self.change_password, methods=["POST"]),
            Route("/api/session", self.session, methods=["GET", "POST", "DELETE"]),
        ]

    def _signed_in(self, request: Request, body: dict[str, Any], session_id: str, status: int) -> Response:
        response = JSONResponse(body, status_code=status, headers=_NO_STORE)
        secure = request.url.scheme == "https"
        response.set_cookie(
            SECURE_COOKIE if secure else PLAIN_COOKIE,
            session_id,
            max_age=int(self.settings.session_days * 86_400),
            path="/",
            secure=secure,
            httponly=True,
            samesite="lax",
        )
        return response

    async def register(self, request: Request) -> Response:
        accounts: Accounts = request.state.accounts
        try:
            name, password = await _fields(request, "name", "password")
            user, session_id = await accounts.register(name, password, _address(request))
        except (AccountError, Busy, BadBody) as exc:
            return _refusal(exc)
        return self._signed_in(request, {"name": user.name, "admin": user.admin}, session_id, 201)

    async def session(self, request: Request) -> Response:
        accounts: Accounts = request.state.accounts
        if request.method == "POST":
            stats: Stats = request.state.hub.stats
            try:
                name, password = await _fields(request, "name", "password")
                user, session_id = await accounts.sign_in(name, password, _address(request))
            except (AccountError, Busy, BadBody) as exc:
                stats.sign_in_failures[_status_and_error(exc)[1]] += 1
                return _refusal(exc)
            stats.sign_ins += 1
            return self._signed_in(request, {"name": user.name, "admin": user.admin}, session_id, 200)
        cookie = session_id_of(request)
        if request.method == "DELETE":
            if cookie is not None:
                await accounts.sign_out(cookie)
            response = Response(status_code=204, headers=_NO_STORE)
            for cookie, secure in ((SECURE_COOKIE, True), (PLAIN_COOKIE, False)):
                response.delete_cookie(cookie, path="/", secure=secure, httponly=True, samesite="lax")
            return response
        identity = await accounts.identify(cookie) if cookie is not None else None
        if identity is None:
            return _error(401, "signed_out", "Not signed in")
        return JSONResponse({"name": identity.name, "admin": identity.admin}, headers=_NO_STORE)

    async def change_password(self, request: Request) -> Response:
        accounts: Accounts = request.state.accounts
        session_id = session_id_of(request)
        if session_id is None:
            return _error(401, "signed_out", "Not signed in")
        try:
            password, new_password = await _fields(request, "password", "new_password")
            await accounts.change_password(session_id, password, new_password, _address(request))
        except (AccountError, Busy, BadBody) as exc:
            return _refusal(exc)
        return Response(status_code=204, headers=_NO_STORE)
