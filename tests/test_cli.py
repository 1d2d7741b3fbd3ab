"""The `chatroom` command's parts load only what the one that runs needs: serving starts no
faster for the users command living beside it, and that command starts no web server."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.servers import CHATROOM, ROOT


def modules_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running `code`."""
    report = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_serving_loads_no_password_hasher_and_no_backend_before_the_app_does() -> None:
    loaded = modules_after("import app.cli, app.cli.serve")
    assert "uvicorn" in loaded  # what serving needs
    expensive = ("argon2", "app.backends", "app.core.accounts", "app.core.passwords", "app.main", "app.cli.users")
    assert not [name for name in loaded if name.startswith(expensive)]


def test_the_users_command_loads_no_web_server() -> None:
    # memory:// is refused once the backend and the accounts are loaded: far enough.
    loaded = modules_after(
        "import contextlib\nfrom app.cli import main\nwith contextlib.suppress(SystemExit):\n"
        "    main(['users', 'list', '--backend', 'memory://'])"
    )
    assert "app.core.accounts" in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("uvicorn", "starlette")]
    assert not [name for name in loaded if name.startswith(("app.server", "app.web", "app.cli.serve"))]


def test_chatroom_help_names_the_users_command_and_each_has_its_own() -> None:
    serve = subprocess.run([CHATROOM, "--help"], capture_output=True, text=True, check=True, timeout=60)
    assert "--host" in serve.stdout
    assert "chatroom users --help" in serve.stdout
    users = subprocess.run([CHATROOM, "users", "--help"], capture_output=True, text=True, check=True, timeout=60)
    assert all(action in users.stdout for action in ("add", "list", "passwd", "remove", "role"))
