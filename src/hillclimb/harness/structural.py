"""Structural checks for refactor tasks, evaluated with `ast` (never by importing the code).

A refactor is "tests stay green *and* the code has the new shape": the extracted function exists
and is called from where the code used to be, the old name is gone everywhere. Parsing is safe on
untrusted code (nothing executes), so these checks run in-process; a file that does not parse
fails the check with the SyntaxError as its detail.

Names bound at run time (session 27): `name_absent` also fails a file that spells the old name
in more strings, or binds names dynamically (`globals()[k] =`, `setattr`, `exec`) in more
places, than the task's own copy; `called_from` counts only calls the caller's control flow can
reach (not dead branches of constant tests, not after `return`, not in nested defs); since
session 28 a name bound once to a constant (`DEBUG = False`) counts as that constant there.
Conditions no static reading folds (`if len(()):`, `if os.environ.get("X"):`) are left to the
run: the grader also needs the graded tests to have run the caller and seen it call the helper
(`pytest_reporter._CallWatch`, `grading._runtime_calls`). Calls alone cannot show that the code
moved (a caller that keeps its inline code and also calls the helper calls it), so since
session 29 `called_from` also compares expression shapes with the caller as the task's own
repository has it (`moved_out`). Since session 30 a task may name the expression it extracts
(`StructuralCheck.expr`): then that expression, up to cheap rewrites that keep its value
(`_Shaper`), must have left the caller and be computed by the helper (`_named_moved`).
"""

from __future__ import annotations

import ast
import builtins
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hillclimb.harness.patching import MAX_DIFF_FILE_BYTES, iter_files
from hillclimb.harness.task import StructuralCheck

# ast.parse costs ~400x a file's size in memory (12 MB of `x = 1` lines: 4.7 GB, a minute), in
# the harness process, outside the sandbox; an agent's command may write 256 MB files. Larger
# files fail the check, at the bound the tools and the recorded patch use.
MAX_PARSE_BYTES = MAX_DIFF_FILE_BYTES


@dataclass
class CheckResult:
    check: str
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


class _NotInRepo(Exception):
    """A path that is a symlink out of the workspace, or not a regular file."""


def _parse(path: Path, workspace: Path) -> ast.Module:
    """Parse a workspace file. The workspace is the model's and this runs outside the sandbox,
    so a symlink is followed only to a regular file inside the workspace (never to /dev/zero, a
    FIFO or a host file)."""
    real = path.resolve()
    if not real.is_relative_to(workspace.resolve()) or not real.is_file():
        raise _NotInRepo(f"{path.relative_to(workspace).as_posix()} is not a regular file inside the repository")  # fmt: skip
    size = real.stat().st_size
    if size > MAX_PARSE_BYTES:  # the check fails closed: a name could hide in an unread file
        raise ValueError(
            f"{path.relative_to(workspace).as_posix()} is {size} bytes, more than the "
            f"{MAX_PARSE_BYTES} a structural check parses"
        )
    return ast.parse(real.read_bytes().decode("utf-8"), filename=str(path))


def _find_def(tree: ast.Module, dotted: str) -> ast.AST | None:
    """Top-level function/class `name`, or method `Class.method`."""
    parts = dotted.split(".")
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in parts:
        node = next(
            (
                n
                for n in body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = getattr(node, "body", [])
    return node


def _calls(node: ast.AST, name: str, consts: dict[str, bool] | None = None) -> bool:
    """Whether `node` (a function or class) calls `name` in code that can run.

    Why not any call in its subtree: `if False: helper()`, a call after `return`, or one in a
    nested function nobody calls satisfied "`f` calls `helper`" while `f` kept its inline code
    (session 26's red team: refactor checks gameable). A call counts when it is reachable by
    the body's own control flow: not after an unconditional return/raise/break/continue in its
    block, not in the dead arm of an `if`/`while`/conditional expression whose test is a
    constant, not behind a constant that short-circuits `and`/`or`, not in a nested def, class
    or lambda. A name bound once to a constant counts as that constant (`constant_names`:
    `DEBUG = False; if DEBUG:`); other values are not followed, and a call through one (an
    alias, `functools.partial`, a dict of functions, `getattr`) does not count."""
    body = getattr(node, "body", None)
    return isinstance(body, list) and _live_block(body, name, consts or {})


_ENDS_BLOCK = (ast.Return, ast.Raise, ast.Break, ast.Continue)


def constant_names(tree: ast.Module, caller: ast.AST) -> dict[str, bool]:
    """Names whose value a `called_from` check may fold, with the truth of that value: bound
    exactly once in the whole module (parameters, imports, defs, loop targets, `del` and
    `global` all count), by a plain assignment of a constant, at the module's top level or at
    the top of the caller's own body (`DEBUG = False` ... `if DEBUG: helper()`).

    Why: session 27 made `called_from` skip calls under constant-false tests (`if False:`),
    and the same dead call behind a name bound to `False` still met the check while the caller
    kept its inline code. Names bound any other way are not judged (values are not followed
    further: an alias of the helper, `functools.partial`, a dict of functions or `getattr`
    never count as calling it)."""
    counts: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names = [node.id]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, ast.alias):
            names = [(node.asname or node.name).split(".")[0]]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names = list(node.names) * 2  # bound from elsewhere: never a constant
        for n in names:
            counts[n] = counts.get(n, 0) + 1
    out: dict[str, bool] = {}
    for stmt in [*tree.body, *getattr(caller, "body", [])]:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Constant)
            and counts.get(stmt.targets[0].id) == 1
        ):
            out[stmt.targets[0].id] = bool(stmt.value.value)
    return out


def _truth(expr: ast.expr, consts: dict[str, bool]) -> bool | None:
    """The truth value of a constant test (`False`, `0`, `None`, `not True`), else None."""
    if isinstance(expr, ast.Constant):
        return bool(expr.value)
    if isinstance(expr, ast.Name) and expr.id in consts:
        return consts[expr.id]
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
        inner = _truth(expr.operand, consts)
        return None if inner is None else not inner
    return None


def _live_block(body: list[ast.stmt], name: str, consts: dict[str, bool]) -> bool:
    for stmt in body:
        if _live_stmt(stmt, name, consts):
            return True
        if isinstance(stmt, _ENDS_BLOCK):
            return False  # what follows in this block never runs
    return False


def _live_stmt(stmt: ast.stmt, name: str, consts: dict[str, bool]) -> bool:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return False  # runs only if something calls it; defaults and decorators aside
    if isinstance(stmt, ast.If | ast.While):
        t = _truth(stmt.test, consts)
        if _live_expr(stmt.test, name, consts):
            return True
        if t is False:
            return _live_block(stmt.orelse, name, consts)
        if t is True and isinstance(stmt, ast.If):
            return _live_block(stmt.body, name, consts)
        return _live_block(stmt.body, name, consts) or _live_block(stmt.orelse, name, consts)
    blocks = [getattr(stmt, f, None) for f in ("body", "orelse", "finalbody")]
    blocks += [h.body for h in getattr(stmt, "handlers", [])]
    blocks += [c.body for c in getattr(stmt, "cases", [])]
    if any(isinstance(b, list) and _live_block(b, name, consts) for b in blocks):
        return True
    for field, value in ast.iter_fields(stmt):
        if field in ("body", "orelse", "finalbody", "handlers", "cases"):
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.expr) and _live_expr(child, name, consts):
                return True
            if isinstance(child, ast.withitem) and _live_expr(child.context_expr, name, consts):
                return True
    return False


def _live_expr(expr: ast.expr, name: str, consts: dict[str, bool]) -> bool:
    if isinstance(expr, ast.Lambda):
        return False
    if isinstance(expr, ast.Call):
        f = expr.func
        if (isinstance(f, ast.Name) and f.id == name) or (
            isinstance(f, ast.Attribute) and f.attr == name
        ):
            return True
    if isinstance(expr, ast.IfExp):
        t = _truth(expr.test, consts)
        if _live_expr(expr.test, name, consts):
            return True
        if t is not None:
            return _live_expr(expr.body if t else expr.orelse, name, consts)
        return _live_expr(expr.body, name, consts) or _live_expr(expr.orelse, name, consts)
    if isinstance(expr, ast.BoolOp):
        stop = isinstance(expr.op, ast.Or)  # `True or x`, `False and x`: x never runs
        for value in expr.values:
            if _live_expr(value, name, consts):
                return True
            if _truth(value, consts) is stop:
                return False
        return False
    for child in ast.iter_child_nodes(expr):
        if isinstance(child, ast.expr) and _live_expr(child, name, consts):
            return True
        if isinstance(child, ast.comprehension) and any(
            _live_expr(e, name, consts) for e in (child.iter, *child.ifs)
        ):
            return True
        if isinstance(child, ast.keyword) and _live_expr(child.value, name, consts):
            return True
    return False


_TOKEN = r"(?<![A-Za-z0-9_]){}(?![A-Za-z0-9_])"


def _folded_strings(tree: ast.AST) -> list[str]:
    """Every string the code spells out, but docstrings: constants, `+` of constants,
    f-strings of constants. A name the code binds at run time under a written name
    (`globals()["old"] = f`, `setattr(mod, "old", f)`, `exec("def old(): ...")`) shows here."""
    docs: set[int] = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and (
            isinstance(body, list) and body and isinstance(body[0], ast.Expr)
        ):
            docs.add(id(body[0].value))
    out: list[str] = []

    def fold(e: ast.AST) -> str | None:
        if isinstance(e, ast.Constant) and isinstance(e.value, str):
            return e.value
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
            a, b = fold(e.left), fold(e.right)
            return a + b if a is not None and b is not None else None
        if isinstance(e, ast.JoinedStr):  # f"{'ol'}d"
            parts = [fold(v.value if isinstance(v, ast.FormattedValue) else v) for v in e.values]
            return None if None in parts else "".join(p for p in parts if p is not None)
        return None

    for n in ast.walk(tree):
        if id(n) in docs:
            continue
        if isinstance(n, ast.BinOp | ast.Constant | ast.JoinedStr):
            got = fold(n)
            if got is not None:
                out.append(got)
    return out


# Ways code binds a name whose spelling the source need not contain (`globals()[k] = f`,
# `setattr(m, k, f)`, `exec(text)`): counted per file, and a file with more of them than the
# task's own copy fails `name_absent` (the old name may come back under a name built at run time).
_NAMESPACES = ("globals", "vars", "locals")


def dynamic_bindings(tree: ast.AST) -> int:
    """How many places in `tree` bind names the source does not spell: `exec`/`eval` calls,
    `setattr`/`__setattr__` with a computed name, stores into or `.update` of
    `globals()`/`vars()`/`locals()`/`__dict__` with a computed key."""

    def namespace(e: ast.AST) -> bool:
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            return e.func.id in _NAMESPACES
        return isinstance(e, ast.Attribute) and e.attr == "__dict__"

    count = 0
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            fname = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if fname in ("exec", "eval"):
                count += 1
            elif fname in ("setattr", "__setattr__") and len(n.args) >= 2:
                named = n.args[1] if fname == "setattr" or isinstance(f, ast.Name) else n.args[0]
                count += not (isinstance(named, ast.Constant) and isinstance(named.value, str))
            elif fname in ("update", "setdefault") and isinstance(f, ast.Attribute):
                count += namespace(f.value)
        elif isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store | ast.Del):
            key = n.slice
            computed = not (isinstance(key, ast.Constant) and isinstance(key.value, str))
            count += namespace(n.value) and computed
    return count


def identifiers(tree: ast.AST) -> set[str]:
    """Every identifier a module mentions: defs, classes, names, attributes, args, imports."""
    out: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(n.name)
        elif isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.arg) or isinstance(n, ast.keyword) and n.arg:
            out.add(n.arg)
        elif isinstance(n, ast.alias):
            out.update(n.name.split("."))
            if n.asname:
                out.add(n.asname)
    return out


def _rebinds(tree: ast.Module, name: str, baseline: Path | None, rel: str) -> bool:
    """Whether a file may bind `name` at run time: it spells `name` in more strings, or has
    more `dynamic_bindings`, than the baseline's file of the same path (none: zero of each).
    Compared with the task's own copy because the original code may rightly hold both (an
    error message naming the function, a `setattr` loop), and an honest rename keeps those."""
    token = re.compile(_TOKEN.format(re.escape(name)))

    def counts(t: ast.Module) -> tuple[int, int]:
        return sum(bool(token.search(x)) for x in _folded_strings(t)), dynamic_bindings(t)

    spelled, dynamic = counts(tree)
    if not spelled and not dynamic:
        return False
    before = (0, 0)
    if baseline is not None:
        try:
            before = counts(_parse(baseline / rel, baseline))
        except (OSError, _NotInRepo, SyntaxError, ValueError, RecursionError, UnicodeDecodeError):
            before = (0, 0)
    return spelled > before[0] or dynamic > before[1]


# Extracted code (session 29): `called_from` also asks that the caller no longer does the
# helper's work itself. Expressions are compared by shape: the AST with the function's own
# names (parameters, locals) numbered by first use, so renaming locals does not hide a copy;
# module names, attributes and constants stay as written. Expressions smaller than this
# (`ast.walk` nodes, as the task generator counts them: `a * b` is 6) are too common to say
# where code came from. Larger ones than MAX_SHAPE_NODES are not compared whole (their parts
# are): a shape costs its size, and every expression of a caller gets one.
MIN_SHAPE_NODES = 5
MAX_SHAPE_NODES = 200


def _local_names(fn: ast.AST) -> set[str]:
    """Names a function binds itself: parameters (nested ones too) and every store."""
    out: set[str] = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
    return out


# Rewrites that keep a value and cost nothing to undo (session 30): operands of these operators
# are put in one order (`b + a` is `a + b`, `y == x` is `x == y`, `b > a` is `a < b`), and
# `x * 1`, `1 * x`, `x + 0`, `0 + x`, `x - 0` are `x`. Only shapes of tasks that name their
# expression (`StructuralCheck.expr`) use them; a copy rewritten any other way is not seen.
_COMMUTATIVE = (ast.Add, ast.Mult, ast.BitAnd, ast.BitOr, ast.BitXor)
_SYMMETRIC = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)
_FLIPPED = {ast.Gt: ast.Lt, ast.GtE: ast.LtE}


def _is_num(n: ast.AST, value: int) -> bool:
    return isinstance(n, ast.Constant) and type(n.value) is int and n.value == value


def _unwrap(n: ast.AST) -> ast.AST:
    """`n` without identity arithmetic around it (`x * 1`, `0 + x`, `x - 0` -> `x`)."""
    while isinstance(n, ast.BinOp):
        left, right, op = n.left, n.right, n.op
        if (
            isinstance(op, ast.Mult)
            and _is_num(right, 1)
            or (isinstance(op, ast.Add | ast.Sub) and _is_num(right, 0))
        ):
            n = left
        elif (
            isinstance(op, ast.Mult)
            and _is_num(left, 1)
            or (isinstance(op, ast.Add) and _is_num(left, 0))
        ):
            n = right
        else:
            break
    return n


class _Shaper:
    """Shapes of expressions (see `shape`), sharing one memo of order keys per function."""

    def __init__(
        self, local: set[str], normal: bool = False, inline: dict[str, ast.expr] | None = None
    ) -> None:
        self.local, self.normal, self.inline = local, normal, inline or {}
        self.texts: dict[tuple[int, str | None], str] = {}
        self.fields: dict[int, list[tuple[str, object]]] = {}
        # names read as their expressions can repeat one (`b = a + a; c = b + b; ...`): a
        # shape of more nodes than this is not compared
        self.limit = 20 * MAX_SHAPE_NODES if inline else -1
        self.budget = self.limit

    def _fields(self, n: ast.AST) -> list[tuple[str, object]]:
        """`n`'s fields, commutative operands in one order when normalising (kept per node:
        every enclosing expression's shape reads them again)."""
        if self.inline:
            return self._ordered_fields(n)
        if id(n) not in self.fields:
            self.fields[id(n)] = self._ordered_fields(n)
        return self.fields[id(n)]

    def _ordered_fields(self, n: ast.AST) -> list[tuple[str, object]]:
        fields = [(f, v) for f, v in ast.iter_fields(n) if f not in ("ctx", "type_comment")]
        if not self.normal:
            return fields
        if isinstance(n, ast.BinOp) and isinstance(n.op, _COMMUTATIVE):
            a, b = self._order([_unwrap(n.left), _unwrap(n.right)])
            return [("left", a), ("op", n.op), ("right", b)]
        if isinstance(n, ast.BoolOp):
            return [("op", n.op), ("values", self._order([_unwrap(v) for v in n.values]))]
        if isinstance(n, ast.Compare) and len(n.ops) == 1:
            op, left, right = n.ops[0], _unwrap(n.left), _unwrap(n.comparators[0])
            if type(op) in _FLIPPED:
                op, left, right = _FLIPPED[type(op)](), right, left
            elif isinstance(op, _SYMMETRIC):
                left, right = self._order([left, right])
            return [("left", left), ("ops", [op]), ("comparators", [right])]
        return [(f, _unwrap(v) if isinstance(v, ast.expr) else v) for f, v in fields]

    def _order(self, operands: list[ast.AST]) -> list[ast.AST]:
        """Commutative operands in one order: by their text with every local written `$`,
        then (only operands alike but for their locals) as written."""
        anon = [self._fixed(v, "$") for v in operands]
        alike = Counter(anon)
        keys = [
            (a, self._fixed(v, None) if alike[a] > 1 else "")
            for a, v in zip(anon, operands, strict=True)
        ]
        return [v for _, v in sorted(zip(keys, operands, strict=True), key=lambda kv: kv[0])]

    def _fixed(self, n: ast.AST, mode: str | None) -> str:
        """`_text` in a mode that numbers nothing, kept per node (a parent's text reuses its
        operands': linear in the function's size) unless names are read in."""
        if self.inline:
            return self._text(n, mode, set())
        key = (id(n), mode)
        if key not in self.texts:
            self.texts[key] = self._text(n, mode, set())
        return self.texts[key]

    def _text(self, n: object, mode: str | dict[str, int] | None, seen: set[str]) -> str:
        """`n` as text: locals numbered (`mode` a dict), all `$` (`mode` "$") or as written."""
        if isinstance(n, ast.AST):
            n = _unwrap(n) if self.normal else n
            self.budget -= 1
            if self.budget == 0:
                raise _TooBig
        if isinstance(n, ast.Name) and n.id in self.inline and n.id not in seen:
            return self._text(self.inline[n.id], mode, seen | {n.id})
        if isinstance(n, ast.Name | ast.arg) and mode is not None:
            ident = n.id if isinstance(n, ast.Name) else n.arg
            if ident in self.local:
                tag = "$" if mode == "$" else f"${mode.setdefault(ident, len(mode))}"  # type: ignore[union-attr]
                if isinstance(n, ast.Name):
                    return tag
                return f"arg({tag},{self._text(n.annotation, mode, seen)})"
        if isinstance(n, ast.AST):
            if not isinstance(mode, dict) and not self.inline and (id(n), mode) in self.texts:
                return self.texts[(id(n), mode)]
            parts = (self._text(v, mode, seen) for _, v in self._fields(n))
            return f"{type(n).__name__}({','.join(parts)})"
        if isinstance(n, list):
            return "[" + ",".join(self._text(x, mode, seen) for x in n) + "]"
        return repr(n)

    def shape(self, expr: ast.AST) -> str:
        """The shape, or "" where reading bound names in made it too big to compare."""
        self.budget = self.limit
        try:
            return self._text(expr, {}, set())
        except _TooBig:
            return ""


class _TooBig(Exception):
    """A shape past `_Shaper.budget`."""


def shape(
    expr: ast.AST,
    local: set[str],
    normal: bool = False,
    inline: dict[str, ast.expr] | None = None,
) -> str:
    """`expr` as text with the names in `local` numbered by first use (`a * b + 1` and
    `x * y + 1` share a shape when all four are locals); contexts (load/store) ignored.
    `normal` also drops identity arithmetic and orders commutative operands (`_Shaper`);
    `inline` reads a name as the expression bound to it (a helper written in steps)."""
    return _Shaper(local, normal, inline).shape(expr)


def _sizes(root: ast.AST) -> dict[int, int]:
    """`ast.walk` node counts of every node under `root` (by id), in one pass: counting each
    expression on its own costs the square of a long chain (`a + a + ... + a`)."""
    order, todo = [], [root]
    while todo:
        n = todo.pop()
        order.append(n)
        todo.extend(ast.iter_child_nodes(n))
    size: dict[int, int] = {}
    for n in reversed(order):  # children before parents
        size[id(n)] = 1 + sum(size[id(c)] for c in ast.iter_child_nodes(n))
    return size


def _comparable(expr: ast.AST) -> bool:
    return MIN_SHAPE_NODES <= _sizes(expr)[id(expr)] <= MAX_SHAPE_NODES


def computations(fn: ast.AST, rename: bool = True, normal: bool = False) -> Counter[str]:
    """The shapes of every expression of at least `MIN_SHAPE_NODES` nodes in `fn`'s body
    (nested defs and lambdas included: a copy hidden in one still runs), docstring aside;
    `rename=False` keeps every name as written; `normal` as in `shape` (an `x * 1` around an
    expression is not counted beside it)."""
    shaper = _Shaper(_local_names(fn) if rename else set(), normal)
    body = list(getattr(fn, "body", []))
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    out: Counter[str] = Counter()
    for stmt in body:
        size = _sizes(stmt)
        for n in ast.walk(stmt):
            if not isinstance(n, ast.expr) or (normal and _unwrap(n) is not n):
                continue
            if MIN_SHAPE_NODES <= size[id(n)] <= MAX_SHAPE_NODES:
                out[shaper.shape(n)] += 1
    return out


def _own_nodes(fn: ast.AST) -> list[ast.AST]:
    """The nodes of `fn`'s body outside nested defs, classes and lambdas."""
    out: list[ast.AST] = []
    todo = list(getattr(fn, "body", []))
    while todo:
        n = todo.pop()
        out.append(n)
        if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(n))
    return out


def _returned(fn: ast.AST) -> list[ast.expr]:
    """The values `fn` itself returns, bare `return` and `return None` aside."""
    return [
        n.value
        for n in _own_nodes(fn)
        if isinstance(n, ast.Return)
        and n.value is not None
        and not (isinstance(n.value, ast.Constant) and n.value.value is None)
    ]


def _result_used(caller: ast.AST, name: str) -> bool:
    """Whether some call of `name` in `caller` keeps its result: not a bare expression
    statement (`helper(x)`, `await helper(x)`), not only stored in names the caller never
    reads (`_ = helper(x)`). What is done with a kept result is not followed further."""
    parent: dict[int, ast.AST] = {}
    for p in ast.walk(caller):
        for c in ast.iter_child_nodes(p):
            parent[id(c)] = p
    reads = {n.id for n in ast.walk(caller) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}  # fmt: skip
    for call in ast.walk(caller):
        if not isinstance(call, ast.Call):
            continue
        f = call.func
        if not (isinstance(f, ast.Name) and f.id == name) and not (
            isinstance(f, ast.Attribute) and f.attr == name
        ):
            continue
        node: ast.AST = call
        up = parent.get(id(node))
        while isinstance(up, ast.Await):
            node, up = up, parent.get(id(up))
        if isinstance(up, ast.Expr):
            continue
        if isinstance(up, ast.Assign | ast.AnnAssign) and up.value is node:
            targets = up.targets if isinstance(up, ast.Assign) else [up.target]
            if all(isinstance(t, ast.Name) for t in targets) and not any(
                isinstance(t, ast.Name) and t.id in reads for t in targets
            ):
                continue
        return True
    return False


def _baseline_caller(baseline: Path | None, check: StructuralCheck) -> ast.AST | None:
    """The caller as the task's own repository has it (before the refactor), or None."""
    if baseline is None:
        return None
    try:
        tree = _parse(baseline / str(check.module), baseline)
    except (OSError, _NotInRepo, SyntaxError, ValueError, RecursionError, UnicodeDecodeError):
        return None
    return _find_def(tree, str(check.caller))


def named_expr(check: StructuralCheck) -> ast.expr | None:
    """The expression a `called_from` check's task named (`StructuralCheck.expr`), or None.

    Parsed inside parentheses: a source segment may continue over lines as written."""
    if check.expr is None:
        return None
    try:
        return ast.parse("(\n" + check.expr + "\n)", mode="eval").body
    except SyntaxError as exc:  # `load_task` refuses these; a check built in code may not
        raise ValueError(f"the check's expr {check.expr[:60]!r} is not one Python expression: {exc.msg}") from None  # fmt: skip


def _module_names(tree: ast.Module) -> set[str]:
    """Names the module's top-level statements bind (defs, classes, imports, assignments)."""
    out: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(stmt.name)
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            out |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
        else:
            out |= {
                n.id
                for n in ast.walk(stmt)
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
    return out


def _bound_once(fn: ast.AST) -> dict[str, ast.expr]:
    """Names `fn` binds exactly once, by `name = expr` (not parameters): a helper written in
    steps (`t = a * b; return t + c`) is read as the expression it returns."""
    counts: Counter[str] = Counter()
    assigned: dict[str, ast.expr] = {}
    for n in ast.walk(fn):
        if isinstance(n, ast.arg):
            counts[n.arg] += 2
        elif isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            counts[n.id] += 1
        elif isinstance(n, ast.Global | ast.Nonlocal):
            counts.update({x: 2 for x in n.names})
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            assigned[n.targets[0].id] = n.value
    return {k: v for k, v in assigned.items() if counts[k] == 1}


def _helper_computes(helper: ast.AST, want: str) -> bool:
    """Whether `helper` computes an expression of shape `want` (normalised, locals numbered):
    anywhere in its body, or in what it returns with its once-bound names read as their
    expressions (`_bound_once`)."""
    local = _local_names(helper)
    if want in computations(helper, True, True):
        return True
    shaper = _Shaper(local, True, _bound_once(helper))
    return any(
        shaper.shape(n) == want
        for v in _returned(helper)
        for n in ast.walk(v)
        if isinstance(n, ast.expr)
    )


def _named_moved(
    tree: ast.Module,
    caller: ast.AST,
    helper: ast.AST,
    check: StructuralCheck,
    named: ast.expr,
    before: ast.AST | None,
) -> str:
    """`moved_out` for a task that names its expression: that expression (normalised: `b + a`
    is `a + b`, `x * 1` is `x`; locals renamed alike) must have left the caller (fewer copies
    than before, none without `before`) and be computed by the helper."""
    code = ast.unparse(named)
    code = code if len(code) <= 60 else code[:57] + "..."
    # the expression's names are the caller's; without `before`, a name the module does not
    # bind and Python does not define was a local of it, whatever the caller calls it now
    module = _module_names(tree)
    if before is not None:
        local = _local_names(before)
    else:
        reads = {n.id for n in ast.walk(named) if isinstance(n, ast.Name)}
        local = _local_names(caller) | {
            r for r in reads if r not in module and not hasattr(builtins, r)
        }
    want = shape(named, local, normal=True)
    now = computations(caller, True, True)
    was = computations(before, True, True) if before is not None else Counter()
    if now[want] >= max(1, was[want]):
        return f"{check.caller} still computes the expression the task named ({code})"
    if not _helper_computes(helper, want):
        return f"{check.name} does not compute the expression the task named ({code})"
    # what it returns, its steps read in (`t = a * b; return t + c` is not `x + y`)
    shaper = _Shaper(_local_names(helper), True, _bound_once(helper))
    for v in _returned(helper):
        s = shaper.shape(v)
        if _comparable(v) and now[s] >= max(1, was[s]):
            return (
                f"{check.caller} still computes what {check.name} returns ({ast.unparse(v)[:60]})"
            )
    if _returned(helper) and not _result_used(caller, check.name.split(".")[-1]):
        return f"{check.caller} drops what {check.name} returns"
    return ""


def moved_out(
    tree: ast.Module, caller: ast.AST, check: StructuralCheck, before: ast.AST | None
) -> str:
    """Why `caller` (which calls the helper) still does the helper's work itself, or "".

    Why: a caller that keeps its inline code, also calls the helper and drops the result
    met every check by calls, the run-time record included (session 29's red team,
    `graders_s29.call_discard`: 9/9 generated extract-function tasks). Judged by shapes
    (`shape`): the caller must not hold as many copies of a value the helper returns as it
    did before (one, for a caller the repository did not have); against the caller as the
    task's repository has it (`before`), some expression must have left the caller and one
    that left must be in the helper (a sub-expression counts: the helper may be written in
    steps); and when the helper returns a value, some call must keep it (`_result_used`).
    Without `before` (no such caller in the task's repository), shapes keep every name as
    written: there is no count of look-alikes the caller had (`x * y + 1` beside the
    extracted `a * b + 1`) to compare with, and a renamed copy is not seen.
    Without `check.expr` (task files before session 30) what an expression means is not
    judged: a copy written differently (`b + a` for `a + b`), or code of the caller moved into
    the helper in place of the named expression, meets these checks; with it,
    `_named_moved` judges that expression. A helper not defined in the module is left to
    `function_exists`."""
    name = check.name.split(".")[-1]
    helper = _find_def(tree, check.name)
    if not isinstance(helper, ast.FunctionDef | ast.AsyncFunctionDef):
        return ""
    named = named_expr(check)
    if named is not None:
        return _named_moved(tree, caller, helper, check, named, before)
    rename = before is not None
    now = computations(caller, rename)
    was = computations(before) if before is not None else Counter()
    local = _local_names(helper) if rename else set()
    values = _returned(helper)
    for v in values:
        if not _comparable(v):
            continue
        s = shape(v, local)
        if now[s] >= max(1, was[s]):
            code = ast.unparse(v)
            code = code if len(code) <= 60 else code[:57] + "..."
            return f"{check.caller} still computes what {check.name} returns ({code})"
    if was:
        lost = was - now
        if not lost:
            return f"{check.caller} still computes all it did before the refactor"
        if not set(lost) & set(computations(helper)):
            return f"none of the code that left {check.caller} is in {check.name}"
    if values and not _result_used(caller, name):
        return f"{check.caller} drops what {check.name} returns"
    return ""


def run_check(
    workspace: Path,
    check: StructuralCheck,
    exclude: tuple[str, ...] = (),
    baseline: Path | None = None,
) -> CheckResult:
    """Evaluate one check on `workspace`; `exclude` are path prefixes ignored by name checks.

    `name_absent` also fails where a file may bind the name at run time (`_rebinds`), judged
    against `baseline` (the task's own repo); without one, every such place counts."""
    desc = check.describe()
    try:
        if check.type in ("function_exists", "class_exists", "called_from"):
            mod = workspace / str(check.module)
            if not mod.is_file():
                return CheckResult(desc, False, f"{check.module} does not exist")
            tree = _parse(mod, workspace)
            if check.type == "called_from":
                caller = _find_def(tree, str(check.caller))
                if caller is None:
                    return CheckResult(desc, False, f"{check.caller} not found in {check.module}")
                consts = constant_names(tree, caller)
                ok = _calls(caller, check.name.split(".")[-1], consts)
                if not ok:
                    return CheckResult(desc, False, f"{check.caller} does not call {check.name}")
                why = moved_out(tree, caller, check, _baseline_caller(baseline, check))
                return CheckResult(desc, not why, why)
            node = _find_def(tree, check.name)
            want = (
                ast.ClassDef
                if check.type == "class_exists"
                else (ast.FunctionDef, ast.AsyncFunctionDef)
            )
            ok = isinstance(node, want)
            return CheckResult(
                desc, ok, "" if ok else f"{check.name} not defined in {check.module}"
            )
        # name_absent / name_present over every .py file under `path`
        base = workspace / (check.path or ".")
        found_in: list[str] = []
        if not base.resolve().is_relative_to(workspace.resolve()):
            files = {}  # a link out of the repository (`path -> /` would walk the host)
        else:
            files = {base.name: base} if base.is_file() else iter_files(base)
        for rel, p in files.items():
            full_rel = (p.relative_to(workspace)).as_posix()
            if not rel.endswith(".py") or any(full_rel.startswith(e) for e in exclude):
                continue
            try:
                tree = _parse(p, workspace)
            except _NotInRepo:
                continue  # not code in the repository (a link out of it, a FIFO)
            if check.name in identifiers(tree):
                found_in.append(full_rel)
            elif check.type == "name_absent" and _rebinds(tree, check.name, baseline, full_rel):
                found_in.append(full_rel + " (bound at run time)")
        if check.type == "name_absent":
            ok = not found_in
            return CheckResult(
                desc, ok, "" if ok else f"{check.name} still appears in {found_in[:5]}"
            )
        ok = bool(found_in)
        return CheckResult(desc, ok, "" if ok else f"{check.name} appears nowhere")
    except _NotInRepo as exc:
        return CheckResult(desc, False, str(exc))
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        return CheckResult(desc, False, f"cannot parse: {type(exc).__name__}: {exc}")
