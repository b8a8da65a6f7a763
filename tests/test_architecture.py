"""The package's layout promises (docs/architecture.md), read from its source.

- no import circle between dask_meta's modules, counting imports inside functions;
- one module talks to the cluster: calls of the Dask client (and computes of Dask
  collections) appear in ``dask_meta/runtime.py`` only;
- no module over 900 lines;
- comments and docstrings point to pages of the repository, not to documents outside it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dask_meta"
ROOT = PACKAGE.parent

#: method names that put work on a cluster or bring results back
CLUSTER_CALLS = {"submit", "compute", "gather", "persist", "scatter", "cancel", "map"}
#: ``.run(...)`` is also a client call when the receiver is a client
CLIENT_ONLY_CALLS = {"run"}
ALLOWED = {"dask_meta.runtime"}
#: receivers that are not the cluster: the runtime itself, the planner's and the metrics
#: runner's own methods (which go through the runtime), and local thread pools
NOT_THE_CLUSTER = re.compile(r"^(runtime|self|.*planner|.*runner|pool|.*_pool)$")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The dask_meta modules ``module`` imports anywhere in its source (functions included)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` imports that module, ``from m import name`` m
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.append(sub if sub in modules else base)
        for name in names:
            if name in modules and name != module:
                found.add(name)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imported(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_function_level_imports_and_circles():
    source = "def f():\n    from dask_meta.b import x\n"
    tree = ast.parse(source)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in imports] == ["dask_meta.b"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_counting_imports_inside_functions():
    graph = _import_graph()
    assert "dask_meta.learners.base" in graph
    assert "dask_meta.crossfit" in graph["dask_meta.learners.base"]
    assert _cycles(graph) == []


def _cluster_calls(path: Path, thread_futures: bool = False) -> list[str]:
    """Calls in ``path`` that reach a Dask client or compute a Dask collection.

    ``self.x(...)`` counts only in the planner (whose own methods are the way to the
    runtime); ``future.cancel()`` only where ``thread_futures`` is False.
    """
    tree = ast.parse(path.read_text())
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        attr = node.func.attr
        receiver = ast.unparse(node.func.value)
        clientish = "client" in receiver.lower()
        if attr in CLUSTER_CALLS and (attr != "map" or clientish):
            if clientish or not NOT_THE_CLUSTER.match(receiver):
                if not (thread_futures and receiver == "future"):
                    calls.append(f"{path.name}:{node.lineno}: {receiver}.{attr}(...)")
        elif attr in CLIENT_ONLY_CALLS and clientish:
            calls.append(f"{path.name}:{node.lineno}: {receiver}.{attr}(...)")
    return calls


def test_the_call_finder_sees_client_and_collection_calls():
    tmp = ast.parse("client.submit(f)\nx.compute()\nruntime.compute(c, x)\nself.client.run(f)\n")
    path = PACKAGE / "_probe_for_test.py"
    try:
        path.write_text(ast.unparse(tmp))
        found = _cluster_calls(path)
    finally:
        path.unlink()
    assert [f.split(": ", 1)[1] for f in found] == [
        "client.submit(...)",
        "x.compute(...)",
        "self.client.run(...)",
    ]


def test_only_the_runtime_module_calls_the_cluster():
    calls = []
    for module, path in _modules().items():
        if module not in ALLOWED:
            # the grid search runs candidates in a local thread pool
            calls += _cluster_calls(path, thread_futures=module == "dask_meta.grid_search")
    assert calls == []


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_over_900_lines(module):
    path = _modules()[module]
    assert len(path.read_text().splitlines()) <= 900


def test_no_pointers_to_documents_outside_the_repository():
    pattern = re.compile(r"DESIGN §|reference §|DESIGN\.md")
    hits = []
    for folder in ("dask_meta", "tests", "docs", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".md"} or path.name == Path(__file__).name:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{number}")
    assert hits == []
