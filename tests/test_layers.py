"""The layer order of docs/ARCHITECTURE.md, enforced: imports point down, and no module imports back.

Why: a newcomer should be able to work in one layer knowing only the layers below it (issue 16).
That holds only while no module imports a package above its own, so this test reads every module
of src/hillclimb and fails naming the file and line of an import that points up, unless the edge
is one of the few listed, documented exceptions. It also fails on import cycles between modules.

Why AST parsing and not importing: nothing is executed (fast, no torch), and lazy imports inside
functions and `if TYPE_CHECKING:` imports are seen too. They count: a lazy import is still a
dependency, and every cycle the issue named was hidden behind one. So the cycle check uses every
import (module-level, TYPE_CHECKING and function-level) except the listed upward exceptions.

The picture at the top of docs/ARCHITECTURE.md is checked against `LAYERS` and `ALLOWED_UP`, so
the doc and the test cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hillclimb"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

# Bottom first. A unit is a top-level package or module of hillclimb; "hillclimb" is the package's
# own __init__ (the public facade: load_model, load_tokenizer, __version__). A module may import
# its own unit and any unit in a LOWER layer; units sharing a layer are peers and import neither.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("io", "sandbox", "config_types", "stats"),
    ("plots", "tokenizer"),
    ("model",),
    ("hillclimb",),
    ("problems",),
    ("data",),
    ("train",),
    ("serve",),
    ("harness",),
    ("rl",),
    ("eval",),
    ("registry",),
    ("climb",),
    ("cli",),
    ("__main__",),
]

# (importing file relative to src/hillclimb, imported module or package) -> why it is allowed.
# Each must be a lazy (function-level) import; each is shown in the ARCHITECTURE.md picture.
ALLOWED_UP: dict[tuple[str, str], str] = {
    ("serve/cli.py", "hillclimb.registry.db"): (
        "the serve *command* resolves `--thinking thinking@prod` through the registry; the serving "
        "library (engine, server) never imports it"
    ),
    ("rl/cli.py", "hillclimb.climb.climb_recipe"): (
        "the rl *command*'s `--recipe` reads a climb recipe's [rl] settings for one model, merged "
        "as the climb merges them; the RL library (train, loss, rollouts) never imports it"
    ),
    ("data/decontam.py", "hillclimb.eval.probes"): (
        "decontamination must know every evaluation item; the standard suites' items are defined "
        "beside their scorers in eval, and only their texts are read (no model, no torch)"
    ),
}


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


# Package data that happens to be Python: the task generator's corpus, each project a repository
# of its own (`inventory/store.py` imports `inventory`), read as text and never imported as
# hillclimb modules.
DATA_TREES = ("harness/taskgen/projects",)


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(SRC.rglob("*.py")):
        if any(_rel(p).startswith(d + "/") for d in DATA_TREES):
            continue
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hillclimb"


def _resolve(target: str) -> str:
    """The deepest module of ours that `target` names (a name imported from a module maps to it)."""
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported hillclimb module, line, lazy) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: list[tuple[str, int, bool]] = []

    def walk(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = package.split(".")
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([child.module] if child.module else []))
                for a in child.names:  # `from hillclimb import problems` imports a package
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in MODULES else base, child.lineno, lazy))
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            walk(child, inner)

    walk(tree, False)
    return [
        (_resolve(t), line, lazy)
        for t, line, lazy in out
        if t == "hillclimb" or t.startswith("hillclimb.")
    ]


def _layer_of() -> dict[str, int]:
    return {unit: i for i, units in enumerate(LAYERS) for unit in units}


def test_every_unit_has_a_layer() -> None:
    layer = _layer_of()
    missing = sorted({_unit(m) for m in MODULES} - set(layer))
    assert not missing, (
        f"packages/modules with no layer: {missing}; place them in LAYERS (tests/test_layers.py) "
        "and in the picture at the top of docs/ARCHITECTURE.md"
    )


def test_imports_point_down() -> None:
    layer = _layer_of()
    bad: list[str] = []
    used: set[tuple[str, str]] = set()
    for module, path in MODULES.items():
        src = _unit(module)
        for target, line, lazy in _imports(module, path):
            dst = _unit(target)
            if src not in layer or dst not in layer:  # reported by test_every_unit_has_a_layer
                continue
            if dst == src or layer[dst] < layer[src]:
                continue
            key = (_rel(path), target)
            if key in ALLOWED_UP:
                used.add(key)
                if not lazy:
                    bad.append(f"src/hillclimb/{key[0]}:{line}: allowed exception must stay lazy")
                continue
            how = "a peer" if layer[dst] == layer[src] else "a higher layer"
            bad.append(
                f"src/hillclimb/{_rel(path)}:{line}: {src} (layer {layer[src]}) imports {target}, "
                f"{how} ({dst}, layer {layer[dst]})"
            )
    stale = sorted(set(ALLOWED_UP) - used)
    assert not bad, "imports against the layer order (docs/ARCHITECTURE.md):\n" + "\n".join(bad)
    assert not stale, (
        f"ALLOWED_UP entries no longer needed, remove them (and from the doc): {stale}"
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    where: dict[tuple[str, str], str] = {}
    for module, path in MODULES.items():
        for target, line, _lazy in _imports(module, path):
            if target == module or (_rel(path), target) in ALLOWED_UP:
                continue
            graph[module].add(target)
            where.setdefault((module, target), f"src/hillclimb/{_rel(path)}:{line}")
    report = []
    for comp in _cycles(graph):
        members = set(comp)
        edges = [
            f"  {where[(a, b)]}: {a} -> {b}" for a in comp for b in sorted(graph[a]) if b in members
        ]
        report.append(" <-> ".join(comp) + "\n" + "\n".join(edges))
    assert not report, "import cycles (break them with a shared lower module):\n" + "\n".join(
        report
    )


def test_cycle_finder_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(g) == [["a", "b", "c"]]


def test_architecture_picture_matches() -> None:
    """The picture opening docs/ARCHITECTURE.md: one row per layer, top first, `N  units ...`."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"## Layers.*?```\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no `## Layers` picture"
    rows = {}
    for line in block.group(1).splitlines():
        m = re.match(r"\s*(\d+)\s+(.+?)(?:\s{2,}|$)", line)
        if m:
            rows[int(m.group(1))] = tuple(m.group(2).split())
    expected = {i: units for i, units in enumerate(LAYERS)}
    assert rows == expected, f"picture rows {rows} != LAYERS {expected}"
    for file, target in ALLOWED_UP:
        assert file in block.group(1) and target.removeprefix("hillclimb.") in block.group(1), (
            f"exception {file} -> {target} is not shown in the picture"
        )
