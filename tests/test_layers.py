"""The layering of docs/ARCHITECTURE.md: no two modules of engine/ import each other (TYPE_CHECKING imports
included), and the SSE encoders do not reach into the log for the event kinds."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def import_graph() -> dict[str, set[str]]:
    mods = {}
    for path in ENGINE.rglob("*.py"):
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    if f"{target}.{alias.name}" in mods:
                        edges[name].add(f"{target}.{alias.name}")
                    elif target in mods:
                        edges[name].add(target)
            elif isinstance(node, ast.Import):
                edges[name].update(alias.name for alias in node.names if alias.name in mods)
    return edges


def test_no_two_engine_modules_import_each_other():
    edges = import_graph()
    assert "engine.app" in edges["engine.server"]  # the graph is real: a known edge is found
    cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a != b and a in edges[b]})
    assert cycles == []


def test_the_sse_encoders_take_the_event_kinds_from_below_the_log():
    edges = import_graph()
    assert "engine.kinds" in edges["engine.http.sse"]
    assert not any(m.startswith("engine.log") for m in edges["engine.http.sse"])
