"""No import circles in tflm: no module imports another that imports it back, directly or through
other modules, at module level or inside a function (a function-level import only hides a circle)."""

import ast
import os

import tflm

ROOT = os.path.dirname(os.path.abspath(tflm.__file__))


def _modules():
    """Dotted name -> file of every tflm module (a package is its __init__.py)."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(folder, f)
    return out


def _imports(name, path, modules):
    """(imported tflm module, line) for every import statement anywhere in the file."""
    is_package = path.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # `from pkg import module`: the module itself
                    yield sub, node.lineno
                elif base in modules:  # `from module import name`
                    yield base, node.lineno


def import_graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {}
        for target, line in _imports(name, path, modules):
            if target != name:
                graph[name].setdefault(target, f"{os.path.relpath(path, os.path.dirname(ROOT))}:{line}")
    return graph


def find_cycles(graph):
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_the_walker_sees_every_kind_of_import():
    graph = import_graph()
    # module level, `from package import module`, and function level (each an edge the walker must see)
    assert "tflm.tasks.loaders" in graph["tflm.tasks.registry"]
    assert "tflm.network" in graph["tflm.tasks.sources"]
    assert "tflm.models" in graph["tflm"]  # inside tflm.__getattr__
    assert "tflm.jobs.tables_job" in graph["tflm.cli"]  # inside a command function


def test_find_cycles_finds_a_planted_circle():
    graph = {"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}, "d": {"a": ""}, "e": {}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b": ""}, "b": {}}) == []


def test_no_import_circles():
    graph = import_graph()
    cycles = find_cycles(graph)
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{a} -> {b} ({graph[a][b]})" for a in c for b in c if b in graph[a])
              for c in cycles]
    assert not cycles, "import circles:\n" + "\n".join(detail)
