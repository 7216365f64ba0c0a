"""gpuvalid's imports point one way: no two modules import each other, directly or through others, counting
the imports made inside functions too (style lesson: imports pointing down, no import cycle)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gpuvalid"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Modules of gpuvalid that ``name`` imports anywhere in its file (``from . import sub``: the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            subs = {f"{base}.{a.name}" for a in node.names} & modules.keys()
            found |= subs if subs else {base}
    return {m for m in found if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def test_cycle_finder_finds_a_known_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert len(graph) > 50 and graph["gpuvalid.pipeline"]          # the graph was read
    assert _cycles(graph) == []


#: the numerical floor: array backend, resampling, masks, transforms and fits, memory, the per-map context
CORE = ("gpuvalid.backend", "gpuvalid.resample", "gpuvalid.masks", "gpuvalid.spiral", "gpuvalid.guinier",
        "gpuvalid.monores", "gpuvalid.memory", "gpuvalid.ledger", "gpuvalid.context", "gpuvalid.lazy", "gpuvalid.errors")
#: what sits on top of it: sections, figures, reports, Level 1, the pipeline and the front ends
UPPER = ("gpuvalid.analyses", "gpuvalid.figures", "gpuvalid.report", "gpuvalid.level1", "gpuvalid.archive",
         "gpuvalid.pipeline", "gpuvalid.runner", "gpuvalid.cli", "gpuvalid.selftest")


def test_the_numerical_floor_imports_nothing_above_it():
    modules = _modules()
    up = {m: sorted(t for t in _imports(m, modules[m], modules) if t.startswith(UPPER)) for m in CORE}
    assert {m: t for m, t in up.items() if t} == {}


def test_figures_draw_without_knowing_the_sections():
    # presentation below the sections: figures/ imports nothing from analyses/ or level1/
    modules = _modules()
    up = {m: sorted(t for t in _imports(m, p, modules) if t.startswith(("gpuvalid.analyses", "gpuvalid.level1")))
          for m, p in modules.items() if m.startswith("gpuvalid.figures")}
    assert {m: t for m, t in up.items() if t} == {}
