"""The import rules of the project's packages, checked from their source (``make lint`` runs this).

Every ``import`` in a module counts: at its top, inside a function (an import placed in a
function to dodge a cycle is still a dependency) or under ``if TYPE_CHECKING:`` (a module that
names another's types depends on it). Rules:

- ``raw_data`` and ``contracts`` import no other package of the project; ``tasks`` only
  ``raw_data``; ``audit`` none (it reads the chain with its own code);
- ``node`` and ``coordinator`` import only the layers below them (``contracts``, ``raw_data``,
  ``tasks``); no package imports ``deploy`` or ``benchmarks``, which sit on top;
- no module imports, directly or not, a module that imports it back (no cycles), counting a
  package's ``__init__`` as a module of its own.

Run: ``python -m tests.import_rules`` (exit 1 and one line per broken rule).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("raw_data", "contracts", "tasks", "node", "coordinator", "audit", "deploy", "benchmarks")
#: The project packages each package may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "raw_data": frozenset(),
    "contracts": frozenset(),
    "audit": frozenset(),
    "tasks": frozenset({"raw_data"}),
    "node": frozenset({"raw_data", "contracts", "tasks"}),
    "coordinator": frozenset({"raw_data", "contracts", "tasks"}),
    "deploy": frozenset({"raw_data", "contracts", "tasks", "node", "coordinator"}),
    "benchmarks": frozenset({"raw_data", "contracts", "tasks", "node", "coordinator", "deploy"}),
}


def modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``, wherever it stands."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def imports_of(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The project modules module ``name`` (file ``path``) imports.

    ``from package import name`` counts as importing the submodule ``package.name`` when there
    is one, and the package itself otherwise.
    """
    out = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets = []
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.append(sub if sub in known else source)
        for target in targets:
            # `import a.b.c` binds and runs a, a.b and a.b.c: the nearest known module is imported.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph(root: Path = REPO) -> dict[str, set[str]]:
    """Every project module and the project modules it imports."""
    known = modules(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer_violations(edges: Mapping[str, set[str]]) -> list[str]:
    """One line per import that crosses the package rules."""
    out = []
    for source, targets in sorted(edges.items()):
        package = source.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                out.append(f"{source} imports {target}: {package} may import "
                           f"{', '.join(sorted(ALLOWED[package])) or 'no other package'}")
    return out


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles: each group of modules that import one another, directly or not (sorted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's strongly connected components, without recursion
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return sorted(found)


def problems(root: Path = REPO) -> list[str]:
    """Every broken rule, one line each (empty: the rules hold)."""
    edges = graph(root)
    return layer_violations(edges) + [f"import cycle: {' <-> '.join(group)}" for group in cycles(edges)]


def main() -> int:
    """Print every broken rule; return 1 if there is one."""
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    print(f"import rules: {len(graph())} modules, {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
