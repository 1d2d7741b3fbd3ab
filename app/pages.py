"""The HTTP side: the chat page and the health check."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


async def index(request: Request) -> Response:
    """The chat page; `/r/NAME` and `/?room=NAME` open it on a room."""
    room = request.path_params.get("room") or request.query_params.get("room") or ""
    return templates.TemplateResponse(request, "index.html", {"room": room})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})
