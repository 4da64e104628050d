"""The package's layers, read from the source: imports go down only, no private name crosses a package,
no import circle, and every module imports on its own whichever module a program starts from."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Higher layers may import lower ones, never the reverse (DESIGN.md "Layers"). Within one package
# anything goes. A new top-level module or package needs its place here.
LAYERS = {
    6: {"testing"},  # helpers for tests and benchmarks (a fake encoder, a throwaway PostgreSQL)
    5: {"cli", "api", "distributed"},  # thin: parse, call, print
    4: {"suggest", "evaluate", "report", "train", "refit"},  # built on tagging
    3: {"library"},  # store + index + pipeline
    2: {"pipeline"},  # decode -> encode -> decide
    1: {"encoders", "heads", "index", "store", "artifact", "data"},
    0: {"taxonomy", "ingest", "decide", "metrics", "types", "config", "registry", "keywords", "demo", "usertags",
        "modelfolder", "progress", "read", ""},
}
LAYER_OF = {package: level for level, packages in LAYERS.items() for package in packages}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "autotag").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _package(module: str) -> str:
    """autotag.encoders.base -> encoders; autotag.pipeline -> pipeline; autotag -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, bool, int, list[str]]]:
    """(imported autotag module, at module level?, line, names) for every import in the file, lazy ones too."""
    tree = ast.parse(path.read_text())
    top_level = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names if a.name.startswith("autotag")]
            out += [(name, id(node) in top_level, node.lineno, []) for name in found]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autotag"):
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
            targets = submodules or [node.module]
            out += [(t, id(node) in top_level, node.lineno, names) for t in targets]
    return out


def test_every_module_has_a_layer():
    missing = sorted({_package(m) for m in _modules()} - set(LAYER_OF))
    assert not missing, f"give these packages a layer in LAYERS: {missing}"


def test_imports_go_down_and_no_private_name_crosses_a_package():
    modules = _modules()
    problems = []
    for module, path in modules.items():
        here = _package(module)
        for target, _, line, names in _imports(path, modules):
            there = _package(target)
            if there == here:
                continue
            if LAYER_OF[there] > LAYER_OF[here]:
                problems.append(f"{path.relative_to(SRC)}:{line} imports {target}, a higher layer")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                problems.append(f"{path.relative_to(SRC)}:{line} imports private {private} from {target}")
    assert not problems, "\n".join(problems)


def test_plain_vocabulary_code_never_imports_the_pipeline_or_suggestions():
    modules = _modules()
    for module, path in modules.items():
        if _package(module) == "taxonomy":
            reached = {_package(t) for t, _, _, _ in _imports(path, modules)}
            assert not reached & {"pipeline", "suggest", "library"}, module


def test_no_import_circle():
    """Lazy imports count too: two modules importing each other inside functions are still a circle
    (the encoder registry and its backends were one). Registry plugins are named as strings instead."""
    modules = _modules()
    graph = {m: {t for t, _, _, _ in _imports(p, modules) if t in modules and t != m} for m, p in modules.items()}
    # A package's __init__ re-exporting its own submodules is how packages work, not a circle.
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_every_module_imports_first_in_a_fresh_module_table():
    """Import each module as the first autotag module (a circle shows only from some entry points), and
    import the registries' plugins lazily: looking a name up must not need anything imported first."""
    code = """
import importlib, sys, traceback
names = sys.argv[1:]
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "autotag" or m.startswith("autotag.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
for m in [m for m in sys.modules if m == "autotag" or m.startswith("autotag.")]:
    del sys.modules[m]
from autotag.encoders import list_encoders
assert "efficientnet_lite0-int8" in list_encoders(), list_encoders()
print("\\n".join(failed))
"""
    names = sorted(_modules(), key=lambda m: (LAYER_OF[_package(m)], m))
    for order in (names, names[::-1]):
        done = subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(SRC)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "", done.stdout
