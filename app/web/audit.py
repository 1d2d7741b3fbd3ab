"""`GET /api/rooms/NAME/audit`: a room's audit log, for its owner, moderators and admins
(docs/protocol.md, "Audit log"). Policy is app/core/moderation/'s; this adapts HTTP to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.core.moderation.records import AuditEntry, iso
from app.core.moderation.service import AUDIT_PAGE, MAX_AUDIT_PAGE, Forbidden
from app.core.names import InvalidName, clean_room
from app.core.protocol import MAX_ID
from app.web.accounts import session_id_of

if TYPE_CHECKING:
    from app.core.accounts import Accounts
    from app.core.moderation.service import Moderation

_NO_STORE = {"cache-control": "no-store"}


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=_NO_STORE)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "ts": entry.at,
        "at": iso(entry.at),
        "room": entry.room,
        "by": entry.actor,
        "action": entry.action,
        "name": entry.target,
        "reason": entry.reason,
        "until": iso(entry.until) if entry.until is not None else None,
        "detail": entry.detail,
    }


def _number(request: Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


class AuditRoutes:
    """The endpoint of /api/rooms/NAME/audit; built by `create_app`."""

    @property
    def routes(self) -> list[Route]:
        return [Route("/api/rooms/{room}/audit", self.audit, methods=["GET"])]

    async def audit(self, request: Request) -> Response:
        """`{"room": R, "entries": [...], "more": bool}`, newest first; `before` an entry's id
        pages back, `limit` (1-200, 50 by default) entries a page."""
        accounts: Accounts = request.state.accounts
        moderation: Moderation = request.state.moderation
        cookie = session_id_of(request)
        identity = await accounts.identify(cookie) if cookie is not None else None
        if identity is None:
            return _error(401, "signed_out", "Sign in to read a room's audit log")
        try:
            room = clean_room(request.path_params["room"])
            before = _number(request, "before", 1, MAX_ID, None)
            limit = _number(request, "limit", 1, MAX_AUDIT_PAGE, AUDIT_PAGE)
        except (InvalidName, ValueError) as exc:
            return _error(400, "bad_request", str(exc))
        assert limit is not None
        try:
            entries, more = await moderation.audit_page(identity, room, before, limit)
        except Forbidden as exc:
            return _error(403, "forbidden", str(exc))
        body = {"room": room, "entries": [entry_json(entry) for entry in entries], "more": more}
        return JSONResponse(body, headers=_NO_STORE)
