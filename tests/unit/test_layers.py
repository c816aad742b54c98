"""The layering is a rule the build checks: every `import` in chalicelib/ (module level or inside a function)
is read with `ast`, and a forbidden edge or an import cycle fails here.

- the domain (`pipeline/`) imports no adapter (`providers/`, `stores/`), no API and no step;
- providers implement the domain's ports: they import the domain, never a store, the API or a step;
- stores import no domain logic beyond plain data, no API and no step; `tasklog` imports no store;
- nothing in chalicelib imports the local-only glue (`infra`).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "chalicelib"

FORBIDDEN = {
    "chalicelib.pipeline": ("chalicelib.providers", "chalicelib.stores", "chalicelib.api", "chalicelib.steps"),
    "chalicelib.providers": ("chalicelib.stores", "chalicelib.api", "chalicelib.steps"),
    "chalicelib.stores": ("chalicelib.api", "chalicelib.steps", "chalicelib.providers"),
    "chalicelib.tasklog": ("chalicelib.stores", "chalicelib.api", "chalicelib.steps"),
    "chalicelib": ("infra",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {imp for imp in _imports(path) if imp in modules and imp != name} for name, path in modules.items()}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_forbidden_import_between_layers():
    problems = []
    for name, path in {_module_name(p): p for p in PACKAGE.rglob("*.py")}.items():
        for layer, banned in FORBIDDEN.items():
            if not _inside(name, layer):
                continue
            for imported in _imports(path):
                if any(_inside(imported, b) for b in banned):
                    problems.append(f"{name} imports {imported}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_no_import_cycle():
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # A package's __init__ importing its own submodules is how Python packages are built, not a cycle.
    real = [c for c in cycles if not any(_inside(b, a) and a != b for a, b in zip(c, c[1:], strict=False))]
    assert not real, "\n".join(" -> ".join(c) for c in real)


def test_the_checker_sees_a_forbidden_import(tmp_path):
    # The rule can fail: a module written like the old qa.py is caught.
    sample = tmp_path / "sample.py"
    sample.write_text("from chalicelib.providers.llm import LLMProvider\n\n"
                      "def f():\n    import chalicelib.stores.files\n")
    assert {"chalicelib.providers.llm", "chalicelib.stores.files"} <= _imports(sample)
