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
    # where is X defined: only a name no other def or class anywhere carries (a method, a
    # nested function, a test helper of that name is a second right answer)
    seen: dict[str, list[str]] = {}
    for p, t in mods.items():
        for n in t.body:
            if isinstance(n, ast.FunctionDef | ast.ClassDef):
                seen.setdefault(n.name, []).append(p)
    defined = _definitions(files)
    for name, paths in sorted(seen.items()):
        if len(paths) == 1 and not name.startswith("_") and defined[name] == {paths[0]}:
            p = paths[0]
            out.append(
                Question(
                    "defined_in",
                    f"Which file defines `{name}`? Answer with its path relative to the repository root.",
                    [p, p[:-3].replace("/", ".")],
                )
            )
    # parameter count and default values: not for a name defined twice in its module (a
    # property and its setter), nor for `*args` / `**kwargs` (whether they count is a guess)
    for p, t in mods.items():
        dotted_names = [d for d, _ in _defs(t)]
        for dotted, fn in _defs(t):
            a = fn.args
            positional = a.posonlyargs + a.args
            args = [x.arg for x in positional if x.arg not in ("self", "cls")]
            if (
                dotted.split(".")[-1].startswith("__")
                or not args
                or dotted_names.count(dotted) > 1
                or a.vararg
                or a.kwarg
            ):
                continue
            out.append(
                Question(
                    "param_count",
                    f"How many parameters (not counting `self`) does `{dotted}` in `{p}` take?",
                    [str(len(args) + len(a.kwonlyargs))],
                )
            )
            # defaults belong to the last positional parameters, then to keyword-only ones
            with_default = list(
                zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True)
            )
            with_default += [
                (x, d) for x, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None
            ]
            for x, d in with_default:
                out.append(
                    Question(
                        "default_value",
                        f"What is the default value of parameter `{x.arg}` of `{dotted}` in `{p}`?",
                        [ast.unparse(d)],
                    )
                )
    # the unique caller of a function
    callers, unclear = _callers(mods, set(seen))
    for callee, who in sorted(callers.items()):
        if len(who) == 1 and callee not in unclear:
            p, dotted = next(iter(who))
            if dotted.split(".")[-1] != callee:
                out.append(
                    Question(
                        "unique_caller",
                        f"Which function or method (outside the tests) calls `{callee}`? Answer with its name.",
                        _spellings(p, dotted),
                    )
                )
    return gradable(out)


def gradable(qs: list[Question]) -> list[Question]:
    """The questions whose every accepted answer survives the grader's normalisation: an answer
    such as the default `'...'` normalises to the empty string (quotes and trailing dots are
    stripped), which then matches any reply made only of quotes, dots or `!`."""
    from hillclimb.harness.testparse import normalize_answer

    return [q for q in qs if all(normalize_answer(a) for a in q.answers)]


def _definitions(files: dict[str, str]) -> dict[str, set[str]]:
    """Every file (tests included) defining a function, method or class of each name, at any
    depth."""
    out: dict[str, set[str]] = {}
    for p, text in files.items():
        if p.endswith(".py"):
            for n in ast.walk(ast.parse(text)):
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    out.setdefault(n.name, set()).add(p)
    return out


def _callers(
    mods: dict[str, ast.Module], names: set[str]
) -> tuple[dict[str, set[tuple[str, str]]], set[str]]:
    """(the functions and methods calling each top-level name, the names with a call that
    cannot be placed). A call resolves to the top-level `f` when written `f(...)` or
    `module.f(...)` on an imported module; `obj.f(...)` on anything else may be a method or a
    builtin's (`seen.add(x)` is not a call of a module's `add`), and a call at module level has
    no enclosing function, so either makes "the one caller" unknowable."""
    callers: dict[str, set[tuple[str, str]]] = {}
    unclear: set[str] = set()
    for p, t in mods.items():
        imported = _imported_modules(t, set(mods))
        inside: set[int] = set()
        for dotted, fn in _defs(t):
            for node in ast.walk(fn):
                inside.add(id(node))
                name = _callee(node, imported)
                if name in names:
                    callers.setdefault(name, set()).add((p, dotted))
        for node in ast.walk(t):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if id(node) not in inside and _callee(node, imported) in names:
                unclear.add(_callee(node, imported))  # type: ignore[arg-type]
            elif isinstance(f, ast.Attribute) and _callee(node, imported) is None:
                unclear.add(f.attr)
    return callers, unclear


def _imported_modules(tree: ast.Module, paths: set[str]) -> set[str]:
    """Names bound to modules: `import m` (as `m`), `from pkg import mod` where `pkg/mod.py` is
    a module of the repository (`from x import Name` binds a class or function, not one)."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.asname or a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            base = n.module.replace(".", "/")
            out |= {a.asname or a.name for a in n.names if f"{base}/{a.name}.py" in paths}
    return out


def _callee(node: ast.AST, imported: set[str]) -> str | None:
    """The name a call resolves to: `f(...)`, or `mod.f(...)` on an imported module."""
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in imported:
        return f.attr
    return None
