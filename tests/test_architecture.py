"""Import rules of the project's modules, read from the source with ast: no cycles, annotations/ stays below reliability/,
the UI reaches the database only through the services, and the app does not lean on the CLI."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reliability", "annotations")
SCRIPTS = ("app.py",)
# the shared vocabulary: annotations/ may use these and nothing else of reliability/, and they use nothing of the project
VOCABULARY = {"reliability.types", "reliability.errors"}
# the UI calls the services (reliability/services/); the store, its database driver and their errors stay behind them
STORE_SIDE = ("annotations", "sqlite3", "sqlite_utils")


def module_files() -> dict[str, Path]:
    """Every project module by dotted name: the .py files of the packages (a package by its __init__.py) and app.py."""
    files = {path.stem: ROOT / path for path in map(Path, SCRIPTS)}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_names(name: str, path: Path, modules: set[str]) -> set[str]:
    """The dotted names `name` imports anywhere in its file (inside functions too), relative imports resolved.

    `from package import thing` names package.thing when that is a module, else the package.
    """
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # a package's own __init__ is level 1 of itself; a plain module's level 1 is its package
                parts = name.split(".")
                parent = parts[: len(parts) - node.level + is_package]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return names


def all_imports() -> dict[str, set[str]]:
    """Project module -> every dotted name it imports, the standard library's and other packages' included."""
    files = module_files()
    return {name: imported_names(name, path, set(files)) for name, path in files.items()}


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports.

    The backend registry's "module:Class" strings (imported with importlib when a backend is built,
    so start-up never imports torch) are not edges: ast sees only import statements.
    """
    files = module_files()
    modules = set(files)
    return {name: (imported_names(name, path, modules) & modules) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first search for a back edge)."""
    done, path = set(), []

    def visit(node: str) -> list[str]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return []

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return []


def test_the_graph_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "__init__.py"
    source.write_text(
        "import pkg.a\n"
        "from pkg.b import thing\n"
        "from pkg import c, not_a_module\n"
        "from . import d\n"
        "from .e import other\n"
        "def later():\n"
        "    import pkg.sub.f\n"
    )
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e", "pkg.sub", "pkg.sub.f"}
    assert imported_names("pkg", source, modules) == {"pkg.a", "pkg.b", "pkg.c", "pkg", "pkg.d", "pkg.e", "pkg.sub.f"}
    module = tmp_path / "f.py"
    module.write_text("from . import a\nfrom .. import b\nfrom ..c import x\n")
    assert imported_names("pkg.sub.f", module, modules) == {"pkg.sub", "pkg.b", "pkg.c"}


def test_the_graph_covers_the_project():
    graph = import_graph()
    assert {"app", "reliability", "reliability.cli.main", "reliability.backends.base", "annotations.db"} <= set(graph)
    assert "reliability.cli.common" in graph["reliability.cli.training"]


def test_the_cycle_finder_reports_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_annotations_import_only_the_vocabulary_of_reliability():
    graph = import_graph()
    wrong = {
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name.split(".")[0] == "annotations"
        for target in targets
        if target.split(".")[0] == "reliability" and target not in VOCABULARY
    }
    assert not wrong, f"annotations/ may import only {sorted(VOCABULARY)} from reliability: {sorted(wrong)}"


def test_the_vocabulary_modules_import_nothing_of_the_project():
    graph = import_graph()
    wrong = {name: sorted(graph[name]) for name in sorted(VOCABULARY) if graph[name]}
    assert not wrong, f"leaf modules that import project modules: {wrong}"


def test_the_ui_reaches_the_store_only_through_the_services():
    wrong = {
        f"{name} imports {target}"
        for name, targets in all_imports().items()
        if name.startswith("reliability.ui.") or name == "reliability.ui"
        for target in targets
        if target.split(".")[0] in STORE_SIDE
    }
    assert not wrong, f"reliability/ui/ may not import {STORE_SIDE}; ask a service instead: {sorted(wrong)}"


def test_the_app_imports_nothing_of_the_cli():
    imports = all_imports()
    wrong = sorted(t for app in ("app", "reliability.ui.app") for t in imports[app] if t == "reliability.cli" or t.startswith("reliability.cli."))
    assert not wrong, f"the app imports the CLI: {wrong}"
