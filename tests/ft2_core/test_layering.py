"""ft2_core's imports run one way: no circles, and no module imports from a layer above its own.

Run alone to see the graph's state: `python -m pytest tests/ft2_core/test_layering.py -q`.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ft2_core"
# Lowest first. A module may import from its own layer and the ones below it, never from one above.
LAYERS = (
    ("errors", "checks", "dimensions", "placement", "progress"),
    ("io",),
    ("models",),
    ("sampling", "scoring", "tlpo"),
    ("model_paths", "pipeline"),
    ("tiny", "miniature", "demo_inputs", "builtin_models"),
    ("cli", "__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (lazy imports inside functions count)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((index for index, names in enumerate(LAYERS) if top in names), None)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    graph = import_graph()
    assert [m for m in graph if m != "ft2_core" and layer(m) is None] == []


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_no_import_from_a_higher_layer():
    upward = [f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
              if m != "ft2_core" and layer(t) > layer(m)]
    assert upward == []


def test_the_checker_finds_a_circle_and_an_upward_import():
    graph = {"ft2_core.models.a": {"ft2_core.pipeline"}, "ft2_core.pipeline": {"ft2_core.models.a"}, "ft2_core.io.b": set()}
    assert cycles(graph) == [["ft2_core.models.a", "ft2_core.pipeline"]]
    assert layer("ft2_core.pipeline") > layer("ft2_core.models.a") > layer("ft2_core.io.b")
