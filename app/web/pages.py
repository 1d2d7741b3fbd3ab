"""The HTTP side: the chat page, the list of active rooms, and the health check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from app.web.accounts import session_id_of
from app.web.operators import Operators

if TYPE_CHECKING:
    from app.core.accounts import Accounts
    from app.core.hub import Hub
    from app.core.moderation.service import Moderation
    from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

_NO_STORE = {"cache-control": "no-store"}
MAX_LISTED_ROOMS = 50  # the busiest; a page lists rooms to pick from, not a census


class Pages:
    """The HTTP endpoints; built by `create_app`, which owns their templates."""

    def __init__(self, operators: Operators, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.templates = Jinja2Templates(directory=templates_dir)
        self.operators = operators

    async def index(self, request: Request) -> Response:
        """The chat page; `/r/NAME` and `/?room=NAME` open it on a room."""
        settings: Settings = request.state.settings
        room = request.path_params.get("room") or request.query_params.get("room") or ""
        context = {
            "room": room,
            "max_message_bytes": settings.max_message_bytes,
            # Which ways to sign on the page offers (app/core/accounts.py enforces them).
            "guests": settings.guests,
            "registration": settings.registration,
            "edit_window": f"{settings.edit_window:g}",  # seconds: the page offers to edit within it
            "auto_away": settings.auto_away,
        }
        return self.templates.TemplateResponse(request, "index.html", context)

    async def rooms(self, request: Request) -> Response:
        """`{"rooms": [{"room": "lobby", "online": 3}, ...]}`: the rooms with someone in them, busiest
        first; a room for members only only to those who may come in."""
        hub: Hub = request.state.hub
        moderation: Moderation = request.state.moderation
        counts = hub.online_counts()
        if any(moderation.members_only(room) for room in counts):
            accounts: Accounts = request.state.accounts
            cookie = session_id_of(request)
            identity = await accounts.identify(cookie) if cookie is not None else None
            counts = {room: online for room, online in counts.items() if moderation.listed(room, identity)}
        busiest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_LISTED_ROOMS]
        listed = [{"room": room, "online": online} for room, online in busiest]
        return JSONResponse({"rooms": listed}, headers=_NO_STORE)

    async def health(self, request: Request) -> Response:
        """`{"status": "ok"}`, or 503 when the backend cannot serve (Redis unreachable), with
        what is wrong for the addresses of `CHAT_METRICS_ALLOW` only."""
        hub: Hub = request.state.hub
        problem = await hub.backend.check()
        if problem is None:
            return JSONResponse({"status": "ok"}, headers=_NO_STORE)
        answer = {"status": "unavailable"}
        if self.operators.admit(request.client.host if request.client else None, request.headers):
            answer["detail"] = problem
        return JSONResponse(answer, status_code=503, headers=_NO_STORE)
