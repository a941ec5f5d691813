"""The package's layout (docs/design.md): modules grouped by stage, imports only downwards, no
import cycle. Imports are read with ``ast``, those inside functions too; nothing is imported
or run to check this."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiocl"

# lowest first; a module may import from its own layer and the ones below it (docs/design.md)
LAYERS = [
    ("base", ["errors", "fileio", "paths", "config"]),
    ("io", ["io"]),
    ("data", ["data"]),
    ("nn", ["nn"]),
    ("objectives", ["objectives"]),
    ("modelfile", ["modelfile"]),
    ("interop", ["interop"]),
    ("inference", ["inference"]),
    ("scoring", ["scoring"]),
    ("training", ["training"]),
    ("app", ["app"]),
    ("entry", ["__main__"]),
]
MAX_TOP_LEVEL = 12


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the audiocl modules it imports (a package's ``__init__`` counts as a module;
    ``from pkg import mod`` is an import of ``pkg.mod``)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    for mod, path in paths.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for name in names:
                while name and name not in paths:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def layer_of(mod: str) -> int | None:
    """The layer index of ``audiocl.X...`` by its first part; None for the package itself."""
    if mod == "audiocl":
        return None
    first = mod.split(".")[1]
    for i, (_, members) in enumerate(LAYERS):
        if first in members:
            return i
    raise AssertionError(f"{mod}: in no layer of tests/test_layout.py (and docs/design.md)")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_cycles_and_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    g = import_graph()
    # a function-level import is an edge (the CLI imports every command inside run())
    assert "audiocl.training.stages" in g["audiocl.app.commands.train"]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_go_only_to_the_same_or_a_lower_layer():
    upward = []
    for mod, targets in import_graph().items():
        here = layer_of(mod)
        for target in targets:
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                upward.append(f"{mod} -> {target}")
    assert upward == []


def test_the_package_folder_holds_a_handful_of_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len([t for t in top if t != "__main__"]) <= MAX_TOP_LEVEL, top
    for sub in PACKAGE.iterdir():
        if sub.is_dir() and any(sub.glob("*.py")):
            assert (sub / "__init__.py").is_file(), f"{sub} is no package"


# subpackages whose ``__init__`` is the registry of their modules (as it was before the move)
REGISTRY_PACKAGES = {"objectives"}


def test_subpackage_entries_are_docstrings():
    """Importing ``audiocl.scoring.operating_points`` (the CLI's --help does) must not pull in
    the rest of its stage: a subpackage's ``__init__`` says what the stage holds, and no more."""
    inits = sorted(PACKAGE.glob("*/**/__init__.py"))
    assert len(inits) >= 10
    for init in inits:
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init}: say what the stage holds"
        if init.parent.name not in REGISTRY_PACKAGES:
            assert len(tree.body) == 1, f"{init}: holds code; put it in a module of its own"


def test_design_doc_names_every_layer():
    text = (PACKAGE.parent / "docs" / "design.md").read_text(encoding="utf-8")
    for _, members in LAYERS:
        for m in members:
            if m != "__main__":
                assert re.search(rf"`{re.escape(m)}(/|\.py)`", text), f"docs/design.md: {m}"
