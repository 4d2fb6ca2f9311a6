"""Package structure: every langadapt module imports on its own, and no two modules import each other, directly or
through a cycle (a helper two modules share lives in a third, lower one)."""

import ast
import os
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "langadapt")


def module_names() -> list[str]:
    return sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py") and f != "__init__.py")


def import_graph() -> dict[str, set[str]]:
    """langadapt module -> the langadapt modules it imports anywhere in its source (function-level imports too:
    a lazy import is still a dependency, and the usual way a cycle hides)."""
    names = set(module_names())
    graph = {}
    for name in names:
        with open(os.path.join(PACKAGE, name + ".py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "langadapt":
                    deps.update(a.name for a in node.names)
                elif node.module.startswith("langadapt."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("langadapt."))
        graph[name] = (deps & names) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_sees_direct_and_indirect_cycles():
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_the_bottom_layers_import_nothing_above_them():
    graph = import_graph()
    assert graph["errors"] == set() and graph["dist"] == set()
    assert graph["metadata"] <= {"io", "normalize", "templates", "errors"}
    assert graph["loading"] <= {"embeddings", "errors", "metadata", "io", "normalize", "templates", "lineage",
                                "hf_normalizer", "portable"}
    assert graph["portable"] <= {"templates", "errors", "io"}
    assert graph["lineage"] <= {"errors", "io"} and graph["hf_normalizer"] <= {"errors", "normalize", "io", "scripts"}


def test_every_module_imports_in_a_fresh_interpreter():
    # A fresh interpreter, not this one: the test session has already imported most modules. Each module is
    # imported in turn and must come up whole (a cycle shows as an ImportError of a partly initialised module).
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module('langadapt.' + m)\n"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(PACKAGE)}
    proc = subprocess.run([sys.executable, "-c", code, *module_names()], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
