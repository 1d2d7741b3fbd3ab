"""The ASGI application: `create_app(settings)` and the module-level `app` uvicorn serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.backends import create_backend
from app.core.accounts import Accounts
from app.core.accounts import install as install_accounts
from app.core.changes import install as install_changes
from app.core.hub import Hub
from app.core.reads import install as install_reads
from app.core.search import Search
from app.core.typists import install as install_typists
from app.server.stack import StackCheck
from app.settings import Settings
from app.web.accounts import AccountRoutes
from app.web.connections import Connections
from app.web.crosssite import CrossSiteRefusal
from app.web.endpoint import ChatEndpoint
from app.web.hosts import ServerNames
from app.web.logs import keep_tokens_out_of_logs
from app.web.operators import Operators
from app.web.pages import STATIC_DIR, Pages
from app.web.search import SearchRoutes
from app.web.security import SecurityHeaders
from app.web.shutdown import close_clients_before_exit


class State(TypedDict):
    hub: Hub
    settings: Settings
    connections: Connections
    accounts: Accounts
    search: Search


def create_app(settings: Settings | None = None) -> Starlette:
    """The chat app; without `settings`, they come from the `CHAT_*` environment variables."""
    settings = settings if settings is not None else Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        keep_tokens_out_of_logs()
        backend = create_backend(settings.backend_url, settings)
        hub = Hub(backend, settings)
        await hub.start()
        accounts = Accounts(backend.accounts, settings, backend.notify)
        install_accounts(hub)
        install_changes(hub, settings)
        install_typists(hub)
        install_reads(hub)
        restore_signals = close_clients_before_exit(hub, settings.close_timeout)
        try:
            yield {
                "hub": hub,
                "settings": settings,
                "connections": Connections(settings.max_connections_per_ip),
                "accounts": accounts,
                "search": Search(hub, settings),
            }
        finally:
            restore_signals()
            await hub.stop()
            accounts.close()

    pages = Pages(Operators(settings.metrics_allow))
    routes = [
        Route("/", pages.index, name="index"),
        Route("/r/{room}", pages.index, name="room"),
        Route("/healthz", pages.health, name="health"),
        Route("/api/rooms", pages.rooms, name="rooms"),
        *AccountRoutes(settings).routes,
        *SearchRoutes().routes,
        WebSocketRoute("/ws", ChatEndpoint, name="ws"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(StackCheck, settings=settings),
        Middleware(SecurityHeaders),
        Middleware(ServerNames, settings=settings),
        Middleware(CrossSiteRefusal, allowed_origins=settings.allowed_origins),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


app = create_app()
