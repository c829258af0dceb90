"""The package's import graph (every import statement, function-level ones included)
has no cycle."""

import ast
import os

from tests import ROOT

PACKAGE = os.path.join(ROOT, "lazy_hasty")


def _modules() -> dict[str, str]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = \
                    os.path.join(folder, f)
    return out


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name not in modules and "." in name:
                name = name.rpartition(".")[0]
            if name in modules and name != module:
                found.add(name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first search), or None."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_sees_a_function_level_import(tmp_path):
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from lazy_hasty.data import builtin\n")
    modules = {"lazy_hasty.data.builtin": "", "lazy_hasty.data": "", "m": str(module)}
    assert _imports("m", str(module), modules) == {"lazy_hasty.data.builtin"}


def test_the_package_has_no_import_cycle():
    modules = _modules()
    assert "lazy_hasty.datasets" in modules and "lazy_hasty.data.builtin" in modules
    graph = {m: _imports(m, path, modules) for m, path in modules.items()}
    assert "lazy_hasty.datasets" in graph["lazy_hasty.data.builtin"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
