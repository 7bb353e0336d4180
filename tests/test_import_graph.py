"""No import cycle in mlbench/ or workers/, counting the imports made inside functions: every
module is parsed with ast (module-level and function-level imports, relative imports resolved)
and the graph of imports between the project's own modules must have no cycle. A cycle is named
module by module, so whoever adds one sees where to move the shared piece down.

The worker side imports its siblings by bare name (the workers folder is on sys.path of a
worker process) and its models package relatively; the parent imports `mlbench.*`. Each tree is
one graph of its own (neither imports the other: test_isolation.py)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules(base: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every .py under `base` (a package `foo/__init__.py` is `foo`)."""
    out = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(p for p in [package, *parts] if p)] = path
    return out


def _imported(name: str, path: Path, known: dict) -> set[str]:
    """The project modules that `name` (the file `path`) imports anywhere in its body (an
    import of anything else, a third-party module, is no edge)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def add(candidate: str) -> None:
        # `import a.b.c` imports a, a.b and a.b.c; the deepest one known is the dependency
        while candidate:
            if candidate in known and candidate != name:
                found.add(candidate)
                return
            candidate = candidate.rpartition(".")[0]

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod when there is one
                full = f"{module}.{alias.name}" if module else alias.name
                add(full if full in known else module)
    return found


def graph(base: Path, package: str) -> dict[str, set[str]]:
    """module -> the project modules it imports; `package` '' for the worker side, whose
    modules import their siblings by bare name."""
    known = _modules(base, package)
    return {name: _imported(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (or a module
    importing itself), in a stable order."""
    return [_one_cycle(c, edges) for c in components(edges)]


def components(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (or a module importing
    itself), sorted (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
            if len(component) > 1 or v in edges.get(v, ()):
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(components)


def _one_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start, members = component[0], set(component)
    previous = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v] & members):
            if w == start:
                path = [v]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    return component


def test_the_cycle_finder_finds_a_planted_cycle_and_no_false_one():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"d"}}
    assert cycles(edges) == [["a", "b", "c", "a"], ["e", "e"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_function_level_and_relative_imports_are_edges(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from .sub import c\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    import pkg.a\n    from ..b import x\n")
    edges = graph(pkg, "pkg")
    assert edges["pkg.a"] == {"pkg.b"} and edges["pkg.b"] == {"pkg.sub.c"}
    assert edges["pkg.sub.c"] == {"pkg.a", "pkg.b"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


@pytest.mark.parametrize("tree", ["mlbench", "workers"])
def test_no_import_cycle(tree):
    # the worker side imports its siblings by bare name (`import harness`) and its models
    # package relatively; the parent by `mlbench.x`
    edges = graph(ROOT / tree, "" if tree == "workers" else "mlbench")
    assert len(edges) > 10, sorted(edges)  # the tree was really read
    found = components(edges)
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(
        f"{' -> '.join(_one_cycle(c, edges))}  (modules in the loop: {', '.join(c)})"
        for c in found)
