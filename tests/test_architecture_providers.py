"""Only `providers/` knows a provider: guards read the source (its AST, never comments), so the
shape holds after the redesign.

- No whole `"waha"` / `"evolution"` string literal in `wasync/` outside `providers/`,
  `config/`, `sim/` and `demo.py`: code elsewhere asks `wasync.providers.KINDS`.
- No import of a provider package (`wasync.providers.waha…`) outside the same places: code goes
  through the registry of kinds.
- Nothing under `providers/` imports the store, the pipeline, the registry of sessions, ingest
  or the event log, directly or through another wasync module (function-level and
  TYPE_CHECKING imports count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import wasync
from wasync.providers import KINDS

PACKAGE = Path(wasync.__file__).parent
NAMES = frozenset(KINDS)  # every provider kind's name
# Where a provider may be named or its package imported.
ALLOWED = ("providers/", "config/", "sim/", "demo.py")
# What `providers/` must never import, directly or through another module.
FORBIDDEN = frozenset(
    {"wasync.store", "wasync.pipeline", "wasync.registry", "wasync.ingest", "wasync.eventlog"}
)


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _allowed(path: Path) -> bool:
    return _rel(path).startswith(ALLOWED)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__.py`)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


@cache
def tree(path: Path) -> ast.Module:
    """The parsed module."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(name: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything module `name` imports, anywhere in it; `from a import
    b` gives both `a` and `a.b` (b may be a module), relative imports are resolved."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def _within(dotted: str, packages: frozenset[str]) -> bool:
    """`dotted` is one of `packages` or inside one."""
    return any(dotted == p or dotted.startswith(f"{p}.") for p in packages)


def _provider_package(dotted: str) -> bool:
    return _within(dotted, frozenset(f"wasync.providers.{n}" for n in NAMES))


def test_no_provider_name_literals_outside_providers() -> None:
    """No module outside the allowed places holds `"waha"` or `"evolution"` as a whole string
    literal (comments and longer strings that mention them are fine)."""
    assert NAMES
    found = [
        f"{_rel(path)}:{node.lineno}: {node.value!r}"
        for path in modules().values()
        if not _allowed(path)
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Constant) and node.value in NAMES
    ]
    assert found == []


def test_no_provider_package_is_imported_outside_providers() -> None:
    """Code outside the allowed places reaches a provider through `wasync.providers` (its kinds),
    never by importing `wasync.providers.<name>`."""
    found = [
        f"{_rel(path)}:{line}: {dotted}"
        for name, path in modules().items()
        if not _allowed(path)
        for line, dotted in imports(name)
        if _provider_package(dotted)
    ]
    assert found == []


def _graph() -> dict[str, set[str]]:
    """Module -> the wasync modules it imports (and, for `a.b.c`, the packages `a.b`, `a`)."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name in known:
        for _, dotted in imports(name):
            parts = dotted.split(".")
            prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
            graph[name].update(p for p in prefixes if p in known)
    return graph


def _reached(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports directly or not, each with the chain that reaches it."""
    chains = {start: start}
    todo = [start]
    while todo:
        here = todo.pop()
        for there in sorted(graph[here] - chains.keys()):
            chains[there] = f"{chains[here]} -> {there}"
            todo.append(there)
    return chains


def test_providers_never_import_the_store_pipeline_or_registry() -> None:
    """Parsing a payload never drags the database in: no module under `wasync/providers/`
    imports the store, pipeline, registry, ingest or event log, even through another module.
    Each import that crosses into them is reported once, with a chain that reaches it."""
    graph = _graph()
    crossings: dict[str, str] = {}
    for name in sorted(n for n in graph if _within(n, frozenset({"wasync.providers"}))):
        for here, chain in _reached(graph, name).items():
            if _within(here, FORBIDDEN):
                continue
            for there in sorted(t for t in graph[here] if _within(t, FORBIDDEN)):
                crossings.setdefault(f"{here} -> {there}", f"{chain} -> {there}")
    assert sorted(crossings.values()) == []


def test_the_guards_see_what_they_guard() -> None:
    """The scan finds the provider packages and their imports, so an empty result means
    something (a guard that reads nothing passes everything)."""
    names = modules()
    assert {f"wasync.providers.{n}" for n in NAMES} <= names.keys()
    assert "wasync.registry" in _reached(_graph(), "wasync.api.webhook")
    assert any(_provider_package(d) for _, d in imports("wasync.providers"))
