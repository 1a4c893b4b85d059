"""How the code is layered, checked on every import in the source tree.

- Packages point one way: storage <- auth <- connectors <- server; clients stand apart.
- Inside server: core <- web and mcp (the two edges); core knows neither HTTP nor MCP, and the
  edges never import each other.
- No module imports another package's `_private` module.
- No import cycles between modules (type-only imports included).
- A connection's status has one writer: server/core/connections.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "auth", "connectors", "server", "clients")
FORBIDDEN = {
    "storage": {"auth", "connectors", "server", "clients"},
    "auth": {"connectors", "server", "clients"},
    "connectors": {"server", "clients"},
    "clients": {"server", "connectors", "auth", "storage"},
}
# The HTTP and MCP frameworks, which only the edges (and the composition root) may use.
EDGE_LIBRARIES = {"starlette", "uvicorn", "mcp", "mcp_types", "httpx2", "jinja2"}
# The one exception: workflow step templates render in Jinja2's sandbox, which is the engine's
# business (the core's), not page rendering. Nothing else in the core may import jinja2.
CORE_MAY_IMPORT = {"server.core.workflows.templates": {"jinja2"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


FILES = source_files()
IMPORTS = {name: imported_modules(path) for name, path in FILES.items()}


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_lower_layers(package: str) -> None:
    offenders = {
        name: sorted({top(m) for m in imported} & FORBIDDEN[package])
        for name, imported in IMPORTS.items()
        if top(name) == package
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_core_knows_neither_http_nor_mcp_nor_its_edges() -> None:
    offenders = {
        name: sorted(
            m
            for m in imported
            if (top(m) in EDGE_LIBRARIES and top(m) not in CORE_MAY_IMPORT.get(name, set()))
            or m.startswith(("server.web", "server.mcp", "server.app", "server.cli"))
        )
        for name, imported in IMPORTS.items()
        if name.startswith("server.core")
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_two_edges_never_import_each_other() -> None:
    offenders = {
        name: sorted(m for m in imported if m.startswith(other))
        for name, imported in IMPORTS.items()
        for edge, other in (("server.web", "server.mcp"), ("server.mcp", "server.web"))
        if name.startswith(edge)
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_no_module_imports_another_packages_private_module() -> None:
    offenders: dict[str, list[str]] = {}
    for name, imported in IMPORTS.items():
        package = name if FILES[name].name == "__init__.py" else name.rpartition(".")[0]
        for module in imported:
            if top(module) not in PACKAGES:
                continue
            parts = module.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_")), None)
            if private is None:
                continue
            owner = ".".join(parts[:private])  # the package the private module belongs to
            if package != owner and not package.startswith(f"{owner}."):
                offenders.setdefault(name, []).append(module)
    assert offenders == {}


def test_no_import_cycles() -> None:
    graph = {name: {m for m in imported if m in FILES and m != name} for name, imported in IMPORTS.items()}
    # A package's __init__ re-exporting its own modules is not a cycle through them.
    for name in graph:
        graph[name] = {
            m for m in graph[name] if not (FILES[m].name == "__init__.py" and name.startswith(f"{m}."))
        }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_only_the_connections_use_case_writes_a_connections_status() -> None:
    writers = {
        name
        for name, path in FILES.items()
        if ".move_connection(" in path.read_text(encoding="utf-8") and not name.startswith("storage")
    }
    assert writers == {"server.core.connections"}
