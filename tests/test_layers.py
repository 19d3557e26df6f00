"""The layering, as import contracts: every import of a provbot module goes down (or sideways), never up.

From the top: the CLI, its commands and the demo; the service; the candidate-parent index; the
database; the settings; the detectors library, with its Hub client at the bottom. The local Hub
server is a test and demo tool that only the CLI and the demo may start. No module takes part in an
import cycle. Imports anywhere in a file count, also inside functions: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"bot": "provbot.bot", "detectors": "provbot.detectors"}

#: Layers from the top; a module belongs to the first (longest) prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("provbot.bot.cli", "provbot.bot.commands", "provbot.bot.demo"),
    ("provbot.bot.service",),
    ("provbot.bot.index",),
    ("provbot.bot.db",),
    ("provbot.bot.settings", "provbot.bot.paths"),
    ("provbot.detectors",),
    ("provbot.detectors.hub", "provbot.detectors.errors", "provbot.detectors.declared"),
]
#: Side tools and who may use them.
SIDE = {"provbot.bot.localhub": ("provbot.bot.cli", "provbot.bot.commands", "provbot.bot.demo", "provbot.bot.localhub")}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        found |= {t for n in names if n.startswith("provbot.") and (t := _resolve(n))}
    return found


EDGES = {m: _imports(p) - {m} for m, p in MODULES.items()}


def _prefix(module: str, prefixes: tuple[str, ...]) -> str | None:
    hits = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else None


def layer_of(module: str) -> int | None:
    if module == "provbot.bot":  # the package's __init__: imports nothing, sits on top
        return 0
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, prefixes in enumerate(LAYERS):
        hit = _prefix(module, prefixes)
        if hit is not None and (best is None or len(hit) > best[0]):
            best = (len(hit), i)
    return None if best is None else best[1]


def test_every_module_has_a_layer_or_is_a_side_tool() -> None:
    homeless = [m for m in MODULES if layer_of(m) is None and _prefix(m, tuple(SIDE)) is None]
    assert homeless == [], "give these modules a layer in tests/test_layers.py"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down(module: str) -> None:
    if _prefix(module, tuple(SIDE)) is not None:
        return
    mine = layer_of(module)
    upward = [t for t in EDGES[module] if (lt := layer_of(t)) is not None and mine is not None and lt < mine]
    assert upward == [], f"{module} (layer {mine}) imports from higher layers"


def test_side_tools_are_used_only_by_who_may() -> None:
    bad = [
        (m, t)
        for m, targets in EDGES.items()
        for t in targets
        for side, allowed in SIDE.items()
        if _prefix(t, (side,)) and not _prefix(m, allowed)
    ]
    assert bad == []


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in EDGES[v]:
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
                cycles.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_hub_client_sits_below_the_rest_of_detectors() -> None:
    """provbot.detectors.hub imports only itself and provbot.detectors.errors (plus pydantic, huggingface_hub, httpx)."""
    allowed = ("provbot.detectors.hub", "provbot.detectors.errors")
    bad = {
        (m, t)
        for m, targets in EDGES.items()
        if _prefix(m, ("provbot.detectors.hub",))
        for t in targets
        if not _prefix(t, allowed)
    }
    assert bad == set()
    third_party = {
        node.module.split(".")[0] if isinstance(node, ast.ImportFrom) and node.module else a.name.split(".")[0]
        for m, p in MODULES.items()
        if _prefix(m, ("provbot.detectors.hub",))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "level", 0) == 0
        for a in (node.names if isinstance(node, ast.Import) else [node])  # type: ignore[attr-defined]
    }
    import sys

    assert third_party - set(sys.stdlib_module_names) - {"__future__"} <= {
        "provbot",
        "pydantic",
        "huggingface_hub",
        "httpx",
    }
