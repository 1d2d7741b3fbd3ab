"""The layers of app/, read from the imports in the code: what may import what, and no circles."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
WEB_FRAMEWORKS = ("starlette", "uvicorn", "jinja2", "httptools", "websockets")


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in APP.rglob("*.py")}


def imports_of(module: str) -> set[str]:
    """Every module `module` imports, at the top, in functions and under TYPE_CHECKING alike."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name`, the module.
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return found


def test_the_core_imports_no_web_framework_and_nothing_of_the_layers_above_it() -> None:
    for module in MODULES:
        if not module.startswith(("app.core", "app.backends")):
            continue
        for imported in imports_of(module):
            assert not imported.startswith(("app.web", "app.server", "app.main", "app.cli")), (module, imported)
            assert imported.split(".")[0] not in WEB_FRAMEWORKS, (module, imported)


def test_the_web_layer_does_not_import_the_server_it_runs_on() -> None:
    for module in MODULES:
        if module.startswith("app.web"):
            for imported in imports_of(module):
                assert not imported.startswith(("app.server", "uvicorn")), (module, imported)


def test_no_module_of_the_app_imports_itself_through_others() -> None:
    graph = {module: {name for name in imports_of(module) if name in MODULES} for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_reading_of_imports_sees_the_circles_it_is_meant_to_see() -> None:
    # The check above is only as good as its reading: it must see these imports.
    assert "app.core.protocol" in imports_of("app.core.names")
    assert "app.backends.base" in imports_of("app.core.hub")  # under TYPE_CHECKING
