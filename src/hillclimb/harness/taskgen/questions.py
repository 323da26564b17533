"""Repository questions with answers computed from the code's AST.

Repository QA is one of the coder's production tasks ("where is X defined", "what raises Y").
Answers are derived mechanically from the source, so they are right by construction, and each
question is only asked when its answer is unique (one function raising that exception, one
caller). Several spellings of an answer are accepted (`Class.method`, `method`; `pkg/mod.py`,
`pkg.mod`), compared after normalisation by the grader.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass
class Question:
    kind: str
    text: str
    answers: list[str]


def _modules(files: dict[str, str]) -> dict[str, ast.Module]:
    return {
        p: ast.parse(t)
        for p, t in sorted(files.items())
        if p.endswith(".py") and not p.startswith("tests/")
    }


def _defs(tree: ast.Module) -> list[tuple[str, ast.FunctionDef]]:
    out = []
    for n in tree.body:
        if isinstance(n, ast.FunctionDef):
            out.append((n.name, n))
        elif isinstance(n, ast.ClassDef):
            out += [(f"{n.name}.{m.name}", m) for m in n.body if isinstance(m, ast.FunctionDef)]
    return out


def _spellings(path: str, dotted: str) -> list[str]:
    mod = path[:-3].replace("/", ".")
    bare = dotted.split(".")[-1]
    out = [dotted, f"{mod}.{dotted}"]
    if bare != dotted:
        out.append(bare)
    return list(dict.fromkeys(out))


def questions(files: dict[str, str]) -> list[Question]:
    """Every question with a unique answer we can ask about this repository."""
    mods = _modules(files)
    out: list[Question] = []
    packages = sorted({p.split("/")[0] for p in mods if "/" in p})

    # how many classes
    for pkg in packages:
        n = sum(
            1 for p, t in mods.items() if p.startswith(pkg + "/")
            for node in ast.walk(t) if isinstance(node, ast.ClassDef)
        )  # fmt: skip
        out.append(
            Question(
                "count_classes",
                f"How many classes are defined in the `{pkg}/` package (all its modules)?",
                [str(n)],
            )
        )
    # which function raises X
    raisers: dict[str, list[tuple[str, str]]] = {}
    for p, t in mods.items():
        for dotted, fn in _defs(t):
            for node in ast.walk(fn):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                    if isinstance(exc, ast.Name):
                        pair = (p, dotted)
                        if pair not in raisers.setdefault(exc.id, []):
                            raisers[exc.id].append(pair)
    for exc, where in sorted(raisers.items()):
        if len(where) == 1:
            p, dotted = where[0]
            out.append(
                Question(
                    "which_raises",
                    f"Which function or method in this repository raises `{exc}`? Answer with its name.",
                    _spellings(p, dotted),
                )
            )
    # where is X defined
    seen: dict[str, list[str]] = {}
    for p, t in mods.items():
        for n in t.body:
            if isinstance(n, ast.FunctionDef | ast.ClassDef):
                seen.setdefault(n.name, []).append(p)
    for name, paths in sorted(seen.items()):
        if len(paths) == 1 and not name.startswith("_"):
            p = paths[0]
            out.append(
                Question(
                    "defined_in",
                    f"Which file defines `{name}`? Answer with its path relative to the repository root.",
                    [p, p[:-3].replace("/", ".")],
                )
            )
    # parameter count and default values
    for p, t in mods.items():
        for dotted, fn in _defs(t):
            args = [a.arg for a in fn.args.args if a.arg not in ("self", "cls")]
            if dotted.split(".")[-1].startswith("__") or not args:
                continue
            out.append(
                Question(
                    "param_count",
                    f"How many parameters (not counting `self`) does `{dotted}` in `{p}` take?",
                    [str(len(args) + len(fn.args.kwonlyargs))],
                )
            )
            defaults = fn.args.defaults
            for a, d in zip(
                fn.args.args[len(fn.args.args) - len(defaults) :], defaults, strict=True
            ):
                out.append(
                    Question(
                        "default_value",
                        f"What is the default value of parameter `{a.arg}` of `{dotted}` in `{p}`?",
                        [ast.unparse(d)],
                    )
                )
    # the unique caller of a function
    callers: dict[str, set[tuple[str, str]]] = {}
    for p, t in mods.items():
        for dotted, fn in _defs(t):
            for node in ast.walk(fn):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = (
                        f.id
                        if isinstance(f, ast.Name)
                        else f.attr
                        if isinstance(f, ast.Attribute)
                        else None
                    )
                    if name and name in seen:
                        callers.setdefault(name, set()).add((p, dotted))
    for callee, who in sorted(callers.items()):
        if len(who) == 1:
            p, dotted = next(iter(who))
            if dotted.split(".")[-1] != callee:
                out.append(
                    Question(
                        "unique_caller",
                        f"Which function or method (outside the tests) calls `{callee}`? Answer with its name.",
                        _spellings(p, dotted),
                    )
                )
    return out
