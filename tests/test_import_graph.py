"""No import cycle among the modules of serve/ and deployments/, counting every import statement: at module level,
inside functions (deferred imports that only hide a cycle) and under `if TYPE_CHECKING:`. Parsed with `ast`,
nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("serve", "deployments")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement in `tree` may load: `from a.b import c` may load a.b or a.b.c."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules its imports run. Importing a.b.c runs the packages a and a.b first, except the
    packages the importer itself lives in (they are already being imported: the usual package pattern)."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets: set[str] = set()
        for dotted in imported_names(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py"):
            parts = dotted.split(".")
            targets.update(m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in mods)
        graph[name] = targets - own - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imported_names_resolve_relative_imports():
    tree = ast.parse("from . import x\nfrom ..y import z\nimport serve.config.base\n")
    assert imported_names(tree, "serve.storage.sql", False) >= {"serve.storage", "serve.storage.x", "serve.y",
                                                                "serve.y.z", "serve.config.base"}


def test_no_import_cycle_in_serve_or_deployments():
    graph = edges(modules())
    assert graph["serve.storage.sql"] >= {"serve.principal"}  # the graph sees what it should
    # the principal context sits below config and storage, which both need it
    assert not {m for m in graph["serve.principal"] if m.startswith(("serve.config", "serve.storage", "serve.auth"))}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
