"""The `chatroom` command: `chatroom [OPTIONS]` serves the chat (serve.py; `chatroom check`
says what would keep it from working), `chatroom users ...` manages accounts beside the
running servers (users.py), and `chatroom audit` reads the moderation audit log (audit.py).

One module per command, each imported only when it is the one run: serving does not load
the password hasher or a backend before the app needs them, and `chatroom users` starts
no web server, nor re-executes itself on jemalloc.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["users"]:
        from app.cli.users import main as users

        users(args[1:])
        return
    if args[:1] == ["audit"]:
        from app.cli.audit import main as audit

        audit(args[1:])
        return
    from app.cli.serve import main as serve

    serve(args)
