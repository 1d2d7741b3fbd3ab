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
from app.core.messenger import install as install_messenger
from app.core.moderation.service import Moderation, install
from app.core.reads import install as install_reads
from app.core.search import Search
from app.core.typists import install as install_typists
from app.logs import use_log_format
from app.server.stack import StackCheck
from app.settings import Settings
from app.web.accounts import AccountRoutes
from app.web.audit import AuditRoutes
from app.web.connections import Connections
from app.web.crosssite import CrossSiteRefusal
from app.web.endpoint import ChatEndpoint
from app.web.hosts import ServerNames
from app.web.logs import keep_tokens_out_of_logs, quiet_invalid_text
from app.web.metrics import Metrics
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
    moderation: Moderation
    search: Search


def create_app(settings: Settings | None = None) -> Starlette:
    """The chat app; without `settings`, they come from the `CHAT_*` environment variables."""
    settings = settings if settings is not None else Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        keep_tokens_out_of_logs()
        quiet_invalid_text()
        use_log_format(settings.log_format)
        backend = create_backend(settings.backend_url, settings)
        hub = Hub(backend, settings)
        # One `delete`: moderation's rule of who may, the store's deletion (changes.py).
        changes = install_changes(hub, settings)
        moderation = install(hub, delete_message=changes.delete_message)
        messenger = install_messenger(hub, backend.accounts)
        await hub.start()
        metrics.start(hub)
        accounts = Accounts(backend.accounts, settings, backend.notify)
        install_accounts(hub)
        accounts.removing.append(messenger.forget)
        install_typists(hub)
        install_reads(hub)
        restore_signals = close_clients_before_exit(hub, settings.close_timeout)
        try:
            await messenger.start()
            yield {
                "hub": hub,
                "settings": settings,
                "connections": Connections(settings.max_connections_per_ip),
                "accounts": accounts,
                "moderation": moderation,
                "search": Search(hub, settings),
            }
        finally:
            restore_signals()
            await moderation.stop()
            await hub.stop()
            await metrics.stop()
            accounts.close()

    operators = Operators(settings.metrics_allow)
    pages = Pages(operators)
    metrics = Metrics(operators)
    routes = [
        Route("/", pages.index, name="index"),
        Route("/r/{room}", pages.index, name="room"),
        Route("/healthz", pages.health, name="health"),
        Route("/metrics", metrics.endpoint, name="metrics"),
        Route("/api/rooms", pages.rooms, name="rooms"),
        *AccountRoutes(settings).routes,
        *AuditRoutes().routes,
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
