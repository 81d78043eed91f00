"""The package's layering, checked from its source: no import cycle (type-only imports
included), ``_errors`` depends on nothing else in the package, and private proton is used from
the engine package only."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import proton_easy

ROOT = Path(proton_easy.__file__).parent
PACKAGE = "proton_easy"


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """Modules of the package that ``name`` imports, at run time or for typing: a module
    imported also imports each package above it (except the top one, which every import
    passes through first, and those above ``name`` itself, already being imported)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: List[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets.append(mod)
            targets.extend(f"{mod}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            targets.extend(alias.name for alias in node.names)
        for target in targets:
            if target not in modules:
                continue
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                found.add(".".join(parts[:i]))
    found.discard(name)
    # the packages above ``name`` are imported before it (or are being imported): no edge
    return {mod for mod in found if not name.startswith(mod + ".")}


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycle_in_the_package() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycle(graph) == []


def test_errors_import_nothing_from_the_package() -> None:
    modules = _modules()
    assert _imports("proton_easy._errors", modules["proton_easy._errors"], modules) == set()


def test_private_proton_is_used_by_the_engine_only() -> None:
    private = re.compile(r"\bcproton\b|\bproton\._[a-z]|\._impl\b")
    offenders = []
    for name, path in _modules().items():
        if name.startswith("proton_easy._engine"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if private.search(code):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []
