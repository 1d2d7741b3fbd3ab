"""`python -m app.cli`: what the `chatroom` script runs (app/server/allocator.py re-executes it so)."""

from __future__ import annotations

from app.cli import main

main()
