"""The shape of the house, guarded: one writer of the core tables, no import cycles.

These read the package's source (the AST), not its behaviour: they fail when a change adds a
second writer (an INSERT, UPDATE or DELETE of a core table outside `wasync/ingest/`,
`wasync/store/` and `wasync/eventlog.py`) or an import cycle between wasync's modules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wasync"
# The core tables and the SQLModel classes behind them (wasync/store/models.py).
CORE_TABLES = {
    "messages": "Message",
    "chats": "Chat",
    "leads": "Lead",
    "identities": "Identity",
    "notifications": "Notification",
    "pending_updates": "PendingUpdate",
    "events": "EventRow",
    "session_health": "SessionHealthRow",
}
CORE_MODELS = set(CORE_TABLES.values())
# Who may write them: the one writer, the store itself (schema, migrations), the event log
# (which alone appends and prunes `events`).
WRITERS = ("ingest/", "store/", "eventlog.py")
VERBS = {"insert", "update", "delete"}
RAW_SQL = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(" + "|".join(CORE_TABLES) + r")\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Module:
    """One source file of the package."""

    path: Path
    name: str  # dotted, `wasync.ingest.tx`
    tree: ast.Module

    @property
    def rel(self) -> str:
        """The path below `wasync/`."""
        return self.path.relative_to(PACKAGE).as_posix()

    @property
    def is_package(self) -> bool:
        """An `__init__.py`."""
        return self.path.name == "__init__.py"


def modules() -> list[Module]:
    """Every module of the package, parsed."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(Module(path, ".".join(parts), ast.parse(path.read_text(), str(path))))
    return out


# --- one writer ---------------------------------------------------------------------------------


def _core_table_names() -> set[str]:
    """Module-level names bound to a core table anywhere in the package (`T_CHATS = ...`), so
    an imported one is recognised too."""
    names: set[str] = set()
    for mod in modules():
        for node in mod.tree.body:
            if isinstance(node, ast.Assign) and _is_core_table(node.value, set()):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _is_core_table(node: ast.AST, names: set[str]) -> bool:
    """`m.Chat.__table__`, `Chat.__table__`, `m.Chat`, a name bound to one, or
    `Table("chats", ...)`."""
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        return _is_core_table(node.value, names)
    if isinstance(node, ast.Attribute):
        return node.attr in CORE_MODELS
    if isinstance(node, ast.Name):
        return node.id in names or node.id in CORE_MODELS
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
        func = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        first = node.args[0] if node.args else None
        return func == "Table" and isinstance(first, ast.Constant) and first.value in CORE_TABLES
    return False


def core_writes(mod: Module, names: set[str]) -> Iterator[tuple[int, str]]:
    """`(line, what)` for each write of a core table in `mod`."""
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Call):
            func = node.func
            verb = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if verb not in VERBS:
                continue
            # insert(T_CHATS), postgresql.insert(T_CHATS), delete(m.Chat)
            if node.args and _is_core_table(node.args[0], names):
                yield node.lineno, f"{verb}({ast.unparse(node.args[0])})"
            # T_CHATS.insert(), m.Chat.__table__.update()
            elif isinstance(func, ast.Attribute) and _is_core_table(func.value, names):
                yield node.lineno, f"{ast.unparse(func.value)}.{verb}()"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (found := RAW_SQL.search(node.value))
        ):
            yield node.lineno, found.group(0)


def test_only_ingest_writes_the_core_tables() -> None:
    """No module outside ingest/, store/ and eventlog.py inserts, updates or deletes rows of
    messages, chats, leads, identities, notifications, pending_updates, events or
    session_health."""
    names = _core_table_names()
    found = [
        f"{mod.rel}:{line}: {what}"
        for mod in modules()
        if not mod.rel.startswith(WRITERS)
        for line, what in core_writes(mod, names)
    ]
    assert found == [], "core tables written outside ingest/:\n" + "\n".join(found)


def test_the_writer_guard_sees_each_form_of_write() -> None:
    """The guard recognises the ways SQLAlchemy code writes a table, and raw SQL."""
    source = """
from wasync.store import models as m
T_CHATS = m.Chat.__table__
a = update(T_CHATS).values(status="x")
b = postgresql.insert(m.Lead.__table__)
c = T_CHATS.delete()
d = text("UPDATE chats SET status = 'x'")
e = text('DELETE FROM "events" WHERE id < 3')
f = delete(m.Notification)
g = update(T_OUTBOX).values(status="x")
h = text("SELECT * FROM chats")
"""
    mod = Module(PACKAGE / "api" / "x.py", "wasync.api.x", ast.parse(source))
    lines = sorted(line for line, _ in core_writes(mod, {"T_CHATS"}))
    assert lines == [4, 5, 6, 7, 8, 9]


# --- no import cycles ---------------------------------------------------------------------------


def import_graph() -> dict[str, set[str]]:
    """Each wasync module → the wasync modules it imports (anywhere in it: top level, inside
    functions, under TYPE_CHECKING). `from pkg import name` counts `pkg.name` when that is a
    module, else `pkg`."""
    mods = {m.name: m for m in modules()}
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for mod in mods.values():
        for node in ast.walk(mod.tree):
            for target in _imported(mod, node, mods.keys()):
                if target != mod.name:
                    graph[mod.name].add(target)
    return graph


def _imported(mod: Module, node: ast.AST, known: object) -> Iterator[str]:
    names = known  # a KeysView: membership only
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in names:  # type: ignore[operator]
                yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = _absolute(mod, node)
        if base is None or not base.startswith("wasync"):
            return
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in names:  # type: ignore[operator]
                yield full
            elif base in names:  # type: ignore[operator]
                yield base


def _absolute(mod: Module, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    parts = mod.name.split(".")
    anchor = parts if mod.is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    """wasync's modules import each other in one direction only: zero cycles."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """Three modules in a ring, one alone: one cycle of three."""
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(ring) == [["a", "b", "c"]]
