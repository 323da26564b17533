"""Whole-function fingerprints of Python code, blind to the disguises a copy is given.

Why: a short held-out function (`def pair_value(a, b): return a * b // 5`) has too few words
for a 13-word run and too few tokens for a 30-token code skeleton, so a copy with type hints
added, names renamed, a docstring added or removed, or reformatted passed decontamination (588
of 4,005 disguised held-out functions; 86 of 87 short ones with names renamed, hints and a
docstring added; session 22). A function's *canonical form* drops what such copies change:
annotations, decorators, docstrings and other bare string statements; every name it chose
itself (function, parameters, locals, globals it reads; not builtins, attributes, keyword
arguments or imported module names) is numbered by first appearance; constants and structure
stay, and `name = lambda ...: expr` reads as `def name(...): return expr`. The form is hashed
whole (64-bit BLAKE2b), so only the complete function matches, never a fragment.

Functions of fewer than `MIN_NODES` canonical nodes are not fingerprinted, nor stubs: `def f(x):
return x ** 2` or `return len(x)` is in every code base. Of 219,134 functions in the stdlib and
its site-packages, the canonical forms of 12 held-out functions matched: 3 stubs (`pass`), 7
below 10 nodes, and the leap-year rule and list chunking, which *are* those items (session 22).

The serialisation walks the AST directly (no copy, no `ast.unparse`), skipping absent fields,
so it is the same on every Python that parses the code alike.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import keyword
import re
import textwrap
import warnings
from collections.abc import Iterator

MIN_NODES = 10  # canonical nodes a fingerprinted function needs (see the module docstring)

_KEEP = frozenset((*dir(builtins), *keyword.kwlist))
# fields a disguise changes freely: dropped from the canonical form
_SKIP_FIELDS = frozenset(
    ("annotation", "returns", "decorator_list", "type_params", "type_comment", "kind", "ctx")
)
_UNCOUNTED = (ast.expr_context, ast.operator, ast.cmpop, ast.unaryop, ast.boolop)
_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)


def _is_doc(s: ast.AST) -> bool:
    """A bare string statement (a docstring anywhere): no effect on what the code does."""
    return (
        isinstance(s, ast.Expr)
        and isinstance(s.value, ast.Constant)
        and isinstance(s.value.value, str)
    )


class _Canon:
    """One function's canonical serialisation: tokens and the count of counted nodes."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.out: list[str] = []
        self.nodes = 0

    def name(self, n: str) -> str:
        if n in _KEEP:
            return n
        return self.names.setdefault(n, f"_{len(self.names)}")

    def stmts(self, body: list[ast.stmt]) -> None:
        self.out.append("[")
        for s in body:
            if _is_doc(s):
                continue
            if isinstance(s, ast.AnnAssign):  # `x: int = 1` is `x = 1`; `x: int` is nothing
                if s.value is None:
                    continue
                s = ast.Assign(targets=[s.target], value=s.value)
            self.node(s)
        self.out.append("]")

    def node(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr_context):
            return
        if not isinstance(node, _UNCOUNTED):
            self.nodes += 1
        if isinstance(node, ast.Constant):
            self.out.append(repr(node.value))
            return
        self.out.append(type(node).__name__)
        for field in node._fields:
            if field in _SKIP_FIELDS:
                continue
            v = getattr(node, field, None)
            if v is None or (isinstance(v, list) and not v):
                continue
            self.out.append(field)
            if isinstance(v, str):
                renamed = field in ("id", "name") and not isinstance(node, ast.alias)
                self.out.append(self.name(v) if renamed or isinstance(node, ast.arg) else v)
            elif isinstance(v, list) and field in ("body", "orelse", "finalbody"):
                self.stmts(v)
            elif isinstance(v, list):
                self.out.append("[")
                for x in v:
                    if isinstance(x, str):  # Global / Nonlocal names
                        self.out.append(self.name(x))
                    elif x is None:  # a dict's `**` entry
                        self.out.append("None")
                    else:
                        self.node(x)
                self.out.append("]")
            elif isinstance(v, ast.AST):
                self.node(v)
            else:
                self.out.append(repr(v))
        self.out.append(")")


def canonical(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, int]:
    """(the canonical form of `fn`, its counted nodes); an empty form for a stub (a body of
    nothing but a docstring)."""
    if all(_is_doc(s) for s in fn.body):
        return "", 0
    c = _Canon()
    c.node(fn)
    return " ".join(c.out), c.nodes


def _as_function(node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """`node` as a function: a def, or `name = lambda args: expr` read as `def name(args):
    return expr` (a new node; the tree is not changed)."""
    if isinstance(node, _FUNC):
        return node
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Lambda)
    ):
        lam = node.value
        return ast.FunctionDef(
            name=node.targets[0].id, args=lam.args, body=[ast.Return(lam.body)], decorator_list=[]
        )
    return None


def _hash(form: str) -> int:
    return int.from_bytes(hashlib.blake2b(form.encode(), digest_size=8).digest(), "little")


def tree_fingerprints(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(hash, canonical form) of every function of `tree` with at least `MIN_NODES` nodes."""
    for node in ast.walk(tree):
        fn = _as_function(node)
        if fn is None:
            continue
        try:
            form, nodes = canonical(fn)
        except RecursionError:  # `x + x + ... + x` thousands deep: no evaluated function
            continue
        if nodes >= MIN_NODES:
            yield _hash(form), form


def _parse(text: str) -> ast.AST | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in a document's strings
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# `def name(` or `name = lambda` starting a line (after indentation): where a function of a
# document that is not Python as a whole (Markdown, a web page, a JSON view) may begin.
_START = re.compile(
    r"(?m)^([ \t]*)(?:async[ \t]+)?(?:def[ \t]+\w+[ \t]*\(|\w+[ \t]*=[ \t]*lambda\b)"
)


def _blocks(text: str) -> Iterator[str]:
    """Each `_START` line with the lines indented deeper below it (blank lines and lines that
    close a bracket at its own indentation, `) -> int:`, included), dedented."""
    lines = text.split("\n")  # rows as `_START` and the count below see them
    row, last = 0, 0
    for m in _START.finditer(text):
        row += text.count("\n", last, m.start())  # matches come in order: count on from the last
        last = m.start()
        indent = len(m.group(1).expandtabs())
        end = row + 1
        while end < len(lines):
            stripped = lines[end].strip()
            line = lines[end].expandtabs()
            deeper = not stripped or len(line) - len(line.lstrip()) > indent
            if not (deeper or stripped[:1] in (")", "]")):
                break
            end += 1
        yield textwrap.dedent("\n".join(lines[row:end]))


def looks_like_functions(text: str) -> bool:
    """The cheap hint for `text_fingerprints`: a line opening a def or a lambda assignment."""
    return ("def" in text or "lambda" in text) and _START.search(text) is not None


def text_fingerprints(text: str) -> Iterator[tuple[int, str]]:
    """Fingerprints of the functions in `text`: all of them when it parses as Python, else those
    of each block that starts with a def or lambda line (`_blocks`) and parses."""
    tree = _parse(text)
    if tree is not None:
        yield from tree_fingerprints(tree)
        return
    for block in _blocks(text):
        tree = _parse(block)
        if tree is not None:
            yield from tree_fingerprints(tree)
