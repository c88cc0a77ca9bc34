"""The package's shape, as CONTRIBUTING.md draws it: layers that import only downward (no cycle,
lazy and type-checking imports included), modules small enough to read in one sitting, each
opening with a docstring, and urllib3's frames read in one module only."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src" / "poolscope"
LIMIT = 350  # lines

# Each layer and what it may import besides itself. The entry points (top-level modules) may
# import any layer and each other; the command line, them too.
ENTRY = (
    "config",
    "loopback",
    "session",
    "httpx_client",
    "poolmanager",
    "process",
    "instrumentor",
)
LOWER = ("_version", "core", "instrumentation", "httpx_pools", "sinks", "reporting")
MAY_IMPORT = {
    "_version": (),
    "core": (),
    "instrumentation": ("core",),
    "httpx_pools": ("core",),
    "sinks": ("core", "_version"),
    "reporting": ("core",),
    **{name: (*LOWER, *ENTRY) for name in ENTRY},
    "cli": (*LOWER, *ENTRY),
    "__init__": (*LOWER, *ENTRY, "cli"),
    "__main__": ("cli",),
}


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(("poolscope", *parts)).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    parts = module.split(".")
    layer = parts[1] if len(parts) > 1 else "__init__"
    assert layer in MAY_IMPORT, f"{module} is in no layer: add it to MAY_IMPORT"
    return layer


def _imports(module: str, path: pathlib.Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (base + "." + node.module if node.module else base) if node.level else ""
            target = target or node.module or ""
            if target in MODULES:
                found.add(target)
            found.update(
                f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
    found.discard(module)
    # A package's __init__ importing its own children is not an upward import.
    if path.name == "__init__.py":
        found = {t for t in found if not t.startswith(module + ".")}
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    layer = _layer(module)
    allowed = {layer, *MAY_IMPORT[layer]}
    upward = sorted(t for t in GRAPH[module] if _layer(t) not in allowed)
    assert not upward, f"{module} imports beyond what its layer may: {upward}"


def test_no_import_cycle() -> None:
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH[module]):
            if seen.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_is_small_and_says_what_it_owns(module: str) -> None:
    path = MODULES[module]
    source = path.read_text()
    assert len(source.splitlines()) <= LIMIT, f"{path.name} is over {LIMIT} lines: split it"
    if path.name != "_version.py":
        assert ast.get_docstring(ast.parse(source)), f"{module} has no docstring"


def test_frames_are_read_in_one_module_per_client() -> None:
    readers = sorted(
        m for m, p in MODULES.items() if "_getframe" in (s := p.read_text()) or "f_locals" in s
    )
    assert readers == ["poolscope.httpx_pools.callsites", "poolscope.instrumentation.callsites"]


def test_there_are_layers_to_speak_of() -> None:
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"} - {"poolscope"}
    assert len(packages) >= 3
