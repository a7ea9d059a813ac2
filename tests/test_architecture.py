"""The layers hold: no import cycle, no import that runs up a layer, no SQL outside bot/data.

Reads the source with `ast`, so function-level imports count as much as top-level ones.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers")

# layer number: higher may import lower (and its own), never higher
LAYERS = [
    ("bot.core", 0),
    ("bot.data", 1),
    ("bot.domain", 2),
    ("handlers", 3), ("bot.web", 3), ("bot.transports", 3),
    ("bot.app", 4), ("bot.cli", 4), ("bot.server", 4), ("bot.demo", 4), ("bot.demo_loops", 4), ("bot.__main__", 4),
]
SIBLINGS = ("handlers", "bot.web", "bot.transports")  # doors: independent of each other
WORLD_MAY_IMPORT = ("bot.core", "bot.world")

SQL_WORDS = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH\s+RECURSIVE|CREATE|ALTER|DROP|PRAGMA)\s")
SQL_CALLS = {"execute", "executemany", "executescript", "q", "q1", "scalar"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def layer_of(mod: str) -> tuple[str, int] | None:
    best = None
    for prefix, n in LAYERS:
        if mod == prefix or mod.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, n)
    return best


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_not_empty():
    g = graph()
    assert len(g) > 30 and sum(map(len, g.values())) > 50


def test_no_import_cycle():
    found = cycles(graph())
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_import_runs_up_a_layer():
    bad = []
    for mod, deps in graph().items():
        if mod == "bot.world" or mod.startswith("bot.world."):
            bad += [f"{mod} -> {d} (the world is a peer: bot.core only)" for d in deps
                    if not any(d == p or d.startswith(p + ".") for p in WORLD_MAY_IMPORT)]
            continue
        mine = layer_of(mod)
        if mine is None:
            continue
        for d in deps:
            theirs = layer_of(d)
            if d.startswith("bot.world"):
                if mine[1] < 4:
                    bad.append(f"{mod} -> {d} (only the entry layer starts the world)")
                continue
            if theirs is None:
                continue
            if theirs[1] > mine[1]:
                bad.append(f"{mod} -> {d}")
            elif theirs[1] == mine[1] == 3 and theirs[0] != mine[0]:
                bad.append(f"{mod} -> {d} (doors are siblings)")
    assert bad == [], "imports that run up a layer:\n" + "\n".join(sorted(bad))


def sql_sites(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_WORDS.match(node.value):
            lines.add(node.lineno)
        elif isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and SQL_WORDS.match(first.value):
                lines.add(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in SQL_CALLS and isinstance(node.func.value, (ast.Attribute, ast.Name))
              and getattr(node.func.value, "attr", getattr(node.func.value, "id", "")) in
              ("store", "conn", "db", "_conn", "record_conn")):
            lines.add(node.lineno)
    return sorted(lines)


def sql_outside_data() -> dict[str, list[int]]:
    out = {}
    for mod, path in modules().items():
        if mod.startswith("bot.data") or mod.startswith("bot.world"):
            continue
        sites = sql_sites(path)
        if sites:
            out[str(path.relative_to(ROOT))] = sites
    return out


def test_no_sql_outside_the_data_layer():
    found = sql_outside_data()
    assert found == {}, "SQL outside bot/data:\n" + "\n".join(f"{f}: lines {v}" for f, v in sorted(found.items()))


if __name__ == "__main__":  # python tests/test_architecture.py: print what is left to fix
    for c in cycles(graph()):
        print("cycle:", " -> ".join(c))
    for f, v in sorted(sql_outside_data().items()):
        print(f"sql: {f}: {len(v)} sites, lines {v}")
