"""The app's settings as the uvicorn protocols of app/server see them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.settings import Settings


def of_server(app_state: Mapping[str, Any]) -> Settings:
    """The app's settings as a uvicorn protocol sees them: from the app's lifespan state
    (app.main.State), or from the environment, as create_app reads them, without one."""
    settings = app_state.get("settings")
    return settings if isinstance(settings, Settings) else Settings.from_env()
