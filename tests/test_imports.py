"""The house's one-way rule (../shared/DESIGN.md, The shape), checked on the source with `ast`.

Every import counts, lazy and type-checking ones included: a lazy import still ties the packages together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("configs", "retrieval", "finetune", "ingest", "agents", "api", "lab", "benchmarks")
# What each package may import besides itself.
ALLOWED: dict[str, set[str]] = {
    "configs": set(),
    "retrieval": {"configs"},
    "finetune": {"configs"},
    "ingest": {"configs", "retrieval"},
    "agents": {"configs", "retrieval", "finetune"},
    "api": {"configs", "retrieval", "finetune", "ingest", "agents"},
    "lab": {"configs", "retrieval", "finetune", "ingest", "agents"},
    "benchmarks": {"configs", "retrieval", "finetune", "ingest", "agents", "lab"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py")}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports; `from pkg import name` counts pkg.name when that is a module."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES and name in modules)
    found.discard(here)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among files, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child):], child]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_no_import_runs_back_up_the_house() -> None:
    forbidden = sorted(
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if (src := source.split(".")[0]) != (dst := target.split(".")[0]) and dst not in ALLOWED[src]
    )
    assert not forbidden, "imports against ../shared/DESIGN.md's order:\n" + "\n".join(forbidden)


def test_no_two_files_import_each_other_even_through_others() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a.x"}, "a.x": {"a"}}, True),
    ],
)
def test_the_cycle_finder_itself(graph: dict[str, set[str]], cyclic: bool) -> None:
    assert (find_cycle(graph) is not None) == cyclic


def test_the_walker_sees_imports_inside_functions_and_under_type_checking() -> None:
    modules = project_modules()
    # lab.alignment.evaluate imports the runner inside main() and its result type under TYPE_CHECKING only.
    assert {"lab.alignment.runner", "lab.alignment.report"} <= imported_modules(
        REPO_ROOT / "lab" / "alignment" / "evaluate.py", modules
    )
