"""The package's modules import each other without cycles, counting imports inside functions: a cycle hidden
behind a function-level import still ties two modules into one (no module imports one that imports it back).

A package `__init__`'s lazy `_LAZY` table is a facade for users (it imports on attribute access, never when the
package is imported), so it is no edge of its own; a module that imports a name through it depends on the
module the table names."""

import ast
import pathlib

import ie_jax

ROOT = pathlib.Path(ie_jax.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lazy_table(tree: ast.Module) -> dict[str, str]:
    """name -> module of a package's `_LAZY = {"name": ("module", attr), ...}`."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return {k.value: v.elts[0].value for k, v in zip(node.value.keys, node.value.values)}
    return {}


def import_graph() -> dict[str, set[str]]:
    """module -> the ie_jax modules it imports anywhere in its file (`from ie_jax.x import y` counts as x.y when
    that is a module, as the module x's lazy table names for y, else as x)."""
    trees = {_module_name(p): ast.parse(p.read_text()) for p in ROOT.rglob("*.py")}
    lazy = {name: _lazy_table(tree) for name, tree in trees.items()}
    graph = {}
    for name, tree in trees.items():
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in trees else lazy.get(node.module, {}).get(a.name, node.module))
        graph[name] = {t for t in targets if t in trees and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_ie_jax():
    graph = import_graph()
    assert "ie_jax.fileio" in graph["ie_jax.ie.store"]  # the scan sees top-level imports
    assert "ie_jax.plan" in graph["ie_jax.cli"]  # ... and those inside functions
    assert cycles(graph) == []
