"""Source transforms located with `ast`, applied as minimal text edits.

Why AST-located text edits instead of `ast.unparse`: unparsing a module rewrites its formatting
and drops comments, so the "bug" diff would touch every line and the solution patch would be
unreadable. Here `ast` finds *where* (operator gaps between operands, statement spans, name
tokens) and only those bytes change, so a bug is a one-token diff, exactly like a real one.

Transforms (each returns candidate `Edit`s; the generator picks one with its seeded RNG):
- bugs: `wrong_operator` (+/-, * and /, and/or, ==/!=, in/not in), `off_by_one` (< vs <=,
  > vs >=, an integer constant ±1), `missing_case` (delete a guard `if ...: raise/return`),
  `wrong_variable` (a local name replaced by another local of the same function);
- features: `stub_function` (body replaced by `raise NotImplementedError`, docstring kept);
- refactors: `rename_symbol` (token-exact rename of a function/method everywhere) and
  `extract_function` (an expression moved into a new module-level helper that is called instead).
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import tokenize
from dataclasses import dataclass, field


@dataclass
class Edit:
    kind: str
    description: str
    function: str | None  # dotted enclosing function (Class.method), if any
    new_source: str
    extra: dict = field(default_factory=dict)


def _offsets(src: str) -> list[int]:
    """Byte offset of the start of each line (1-based lines -> index lineno-1)."""
    out, pos = [], 0
    for line in src.encode("utf-8").splitlines(keepends=True):
        out.append(pos)
        pos += len(line)
    out.append(pos)
    return out


def _abs(offs: list[int], lineno: int, col: int) -> int:
    return offs[lineno - 1] + col


def _replace_bytes(src: str, start: int, end: int, text: str) -> str:
    b = src.encode("utf-8")
    return (b[:start] + text.encode("utf-8") + b[end:]).decode("utf-8")


def _parses(src: str) -> bool:
    try:
        ast.parse(src)
        return True
    except SyntaxError:
        return False


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef]]:
    """(dotted name, node) for top-level functions and methods of top-level classes."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    out.append((f"{node.name}.{sub.name}", sub))
    return out


def _gap_edit(
    src: str, offs: list[int], left: ast.AST, right: ast.AST, old: str, new: str
) -> str | None:
    """Replace operator `old` by `new` in the source between two operand nodes."""
    start = _abs(offs, left.end_lineno, left.end_col_offset)  # type: ignore[arg-type]
    end = _abs(offs, right.lineno, right.col_offset)
    gap = src.encode("utf-8")[start:end].decode("utf-8")
    idx = gap.find(old)
    if idx < 0:
        return None
    if old.isalpha():  # `and`, `or`, `in`, `is`: must be whole words
        import re

        m = re.search(rf"\b{old}\b", gap)
        if m is None:
            return None
        idx = m.start()
    return _replace_bytes(
        src, start + len(gap[:idx].encode()), start + len(gap[: idx + len(old)].encode()), new
    )


_BINOP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
          ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "//")}  # fmt: skip
_CMP_WRONG = {ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.In: ("in", "not in"),
              ast.NotIn: ("not in", "in")}  # fmt: skip
_CMP_OBO = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">")}


def bug_edits(src: str) -> list[Edit]:
    """Every candidate injected bug in a module, in source order."""
    tree = ast.parse(src)
    offs = _offsets(src)
    out: list[Edit] = []

    def swap_operator(
        kind: str, fname: str, left: ast.AST, right: ast.AST, old: str, new: str, line: int
    ) -> None:
        """The operator `old` between two operands becomes `new` (kept if the result parses)."""
        s = _gap_edit(src, offs, left, right, old, new)
        if s and _parses(s):
            out.append(Edit(kind, f"`{old}` replaced by `{new}`", fname, s, {"line": line}))

    for fname, fn in _functions(tree):
        body_nodes = [n for stmt in fn.body for n in ast.walk(stmt)]
        for node in body_nodes:
            if isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
                old, new = _BINOP[type(node.op)]
                swap_operator("wrong_operator", fname, node.left, node.right, old, new, node.lineno)
            elif isinstance(node, ast.BoolOp):
                old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
                swap_operator(
                    "wrong_operator", fname, node.values[0], node.values[1], old, new, node.lineno
                )
            elif isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                for i, op in enumerate(node.ops):
                    for table, kind in ((_CMP_WRONG, "wrong_operator"), (_CMP_OBO, "off_by_one")):
                        if type(op) in table:
                            old, new = table[type(op)]
                            swap_operator(
                                kind, fname, operands[i], operands[i + 1], old, new, node.lineno
                            )
            elif (
                isinstance(node, ast.Constant)
                and type(node.value) is int
                and node.lineno == node.end_lineno
            ):
                new_v = node.value - 1 if node.value >= 1 else node.value + 1
                s = _replace_bytes(
                    src, _abs(offs, node.lineno, node.col_offset),
                    _abs(offs, node.end_lineno, node.end_col_offset), str(new_v),
                )  # fmt: skip
                if _parses(s):
                    out.append(
                        Edit(
                            "off_by_one",
                            f"constant {node.value} changed to {new_v}",
                            fname,
                            s,
                            {"line": node.lineno},
                        )
                    )
        # missing_case: drop a guard `if cond: raise/return` without else
        for node in body_nodes:
            if (
                isinstance(node, ast.If)
                and not node.orelse
                and isinstance(node.body[-1], ast.Raise | ast.Return)
            ):
                lines = src.splitlines(keepends=True)
                indent = lines[node.lineno - 1][: node.col_offset]
                parent_body = next((b for b in _bodies(fn) if node in b), None)
                repl = (
                    f"{indent}pass\n" if parent_body is not None and len(parent_body) == 1 else ""
                )
                s = "".join(lines[: node.lineno - 1]) + repl + "".join(lines[node.end_lineno :])
                if _parses(s):
                    out.append(
                        Edit(
                            "missing_case",
                            f"guard at line {node.lineno} removed",
                            fname,
                            s,
                            # every line it removes is its site (`common.edit_split`)
                            {
                                "line": node.lineno,
                                "lines": list(range(node.lineno, node.end_lineno + 1)),
                            },
                        )  # fmt: skip
                    )
        # wrong_variable: a loaded local replaced by another local of the same function
        locals_ = _local_names(fn)
        bound = _bound_before(fn)
        if len(locals_) >= 2:
            for node in body_nodes:
                if (
                    isinstance(node, ast.Name)
                    and isinstance(node.ctx, ast.Load)
                    and node.id in locals_
                    and node.id != "self"
                ):
                    others = [n for n in sorted(locals_) if n not in (node.id, "self")]
                    if not others:
                        continue
                    other = others[(node.lineno + node.col_offset) % len(others)]
                    s = _replace_bytes(
                        src, _abs(offs, node.lineno, node.col_offset),
                        _abs(offs, node.end_lineno, node.end_col_offset), other,
                    )  # fmt: skip
                    if _parses(s):
                        extra: dict = {"line": node.lineno}
                        if other not in bound(node):
                            extra["out_of_scope"] = True  # see `_bound_before`
                        out.append(
                            Edit("wrong_variable", f"`{node.id}` replaced by `{other}`", fname, s,
                                 extra)
                        )  # fmt: skip
    return out


_SCOPES = (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.ListComp,
           ast.SetComp, ast.DictComp, ast.GeneratorExp)  # fmt: skip


def _bound_before(fn: ast.FunctionDef):
    """`bound(node)`: the names surely bound where `node` reads one — the parameters, names the
    function's own scope assigns on an earlier line, and the targets of comprehensions around
    `node`. A `wrong_variable` swap to any other local (a comprehension's variable outside it,
    a local assigned only later) is a NameError / UnboundLocalError, not a wrong value: its
    message names the injected token, so the bug report would point at the line. Such edits
    are kept (the candidate list, hence every seed's draw, is unchanged) but marked
    `out_of_scope`, and the generator passes over them."""
    parents: dict[int, ast.AST] = {}
    for n in ast.walk(fn):
        for child in ast.iter_child_nodes(n):
            parents[id(child)] = n
    params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
    params |= {a.arg for a in (fn.args.vararg, fn.args.kwarg) if a is not None}
    stores: list[tuple[int, str]] = []  # (line, name) stored in the function's own scope
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            stores.append((n.lineno, n.id))
        if not isinstance(n, _SCOPES):
            todo.extend(ast.iter_child_nodes(n))

    def bound(node: ast.AST) -> set[str]:
        names = params | {name for line, name in stores if line < node.lineno}  # type: ignore[attr-defined]
        child, up, in_iter = node, parents.get(id(node)), False
        while up is not None and up is not fn:
            if isinstance(up, ast.comprehension):
                in_iter = child is up.iter
            elif isinstance(up, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
                # a generator's iterable sees only the generators before it; its conditions
                # and the element see its own target too
                gens = up.generators
                k = next((i for i, g in enumerate(gens) if g is child), len(gens))
                seen = gens[:k] + ([gens[k]] if k < len(gens) and not in_iter else [])
                for g in seen:
                    names |= {t.id for t in ast.walk(g.target) if isinstance(t, ast.Name)}
            child, up = up, parents.get(id(up))
        return names

    return bound


def _bodies(fn: ast.AST) -> list[list[ast.stmt]]:
    out = []
    for n in ast.walk(fn):
        for attr in ("body", "orelse", "finalbody"):
            b = getattr(n, attr, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                out.append(b)
        if isinstance(n, ast.Try):
            out += [h.body for h in n.handlers]
    return out


def _local_names(fn: ast.FunctionDef) -> set[str]:
    names = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
    return names


def docstring_end(fn: ast.FunctionDef) -> int | None:
    """Line number where the docstring ends, or None."""
    first = fn.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno
    return None


def stub_edits(src: str) -> list[Edit]:
    """Candidate features: a documented function whose body becomes NotImplementedError."""
    tree = ast.parse(src)
    out = []
    lines = src.splitlines(keepends=True)
    for fname, fn in _functions(tree):
        doc_end = docstring_end(fn)
        if doc_end is None or len(fn.body) < 2 or fname.split(".")[-1].startswith("__"):
            continue
        indent = lines[fn.body[1].lineno - 1][: fn.body[1].col_offset]
        body = (
            f'{indent}raise NotImplementedError("{fname.split(".")[-1]} is not implemented yet")\n'
        )
        s = "".join(lines[:doc_end]) + body + "".join(lines[fn.end_lineno :])
        if _parses(s):
            out.append(
                Edit(
                    "stub_function",
                    f"{fname} stubbed",
                    fname,
                    s,
                    {"doc": ast.get_docstring(fn) or ""},
                )
            )
    return out


def rename_tokens(src: str, old: str, new: str) -> str:
    """Replace NAME tokens equal to `old` (never inside strings or comments)."""
    toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    lines = src.splitlines(keepends=True)
    hits = [t.start for t in toks if t.type == tokenize.NAME and t.string == old]
    for row, col in reversed(hits):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[col + len(old) :]
    return "".join(lines)


def renameable(files: dict[str, str], module: str) -> list[tuple[str, str]]:
    """(dotted name, bare name) of functions in `module` that only ever appear as that function:
    in its def, as a call target, or as an attribute — so a token rename is exact."""
    tree = ast.parse(files[module])
    out = []
    for dotted, fn in _functions(tree):
        name = fn.name
        if name.startswith("_") or len(name) < 4:
            continue
        ok = True
        defs = 0
        for text in (t for p, t in files.items() if p.endswith(".py")):
            for n in ast.walk(ast.parse(text)):
                if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == name:
                    defs += 1
                elif (
                    isinstance(n, ast.arg)
                    and n.arg == name
                    or isinstance(n, ast.Name)
                    and n.id == name
                    or isinstance(n, ast.alias)
                    and name in (n.name, n.asname)
                    or isinstance(n, ast.keyword)
                    and n.arg == name
                ):
                    ok = False
        if ok and defs == 1:
            out.append((dotted, name))
    return out


_COMPLEX = (ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call)
_FORBIDDEN = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Await,
              ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Starred)  # fmt: skip


def extract_edits(src: str) -> list[Edit]:
    """Candidate extract-function refactors: `x = <expr>` / `return <expr>` inside a function,
    where <expr> only reads locals, module names and builtins, moved into a module-level helper."""
    tree = ast.parse(src)
    module_names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for n in tree.body:
        if isinstance(n, ast.Import | ast.ImportFrom):
            module_names |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.Assign):
            module_names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    offs = _offsets(src)
    src.splitlines(keepends=True)
    out = []
    for dotted, fn in _functions(tree):
        locals_ = _local_names(fn)
        top = next(n for n in tree.body if n.lineno <= fn.lineno <= n.end_lineno)
        for stmt in ast.walk(fn):
            if (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                expr, helper = stmt.value, f"compute_{stmt.targets[0].id}"
            elif isinstance(stmt, ast.Return) and stmt.value is not None:
                expr, helper = stmt.value, f"{fn.name.strip('_')}_result"
            else:
                continue
            if not isinstance(expr, _COMPLEX) or sum(1 for _ in ast.walk(expr)) < 5:
                continue
            if any(isinstance(n, _FORBIDDEN) for n in ast.walk(expr)):
                continue
            loads = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
            if "self" in loads or "cls" in loads:
                continue
            if not all(n in locals_ or n in module_names or hasattr(builtins, n) for n in loads):
                continue
            params = sorted(n for n in loads if n in locals_)
            if helper in module_names or helper in locals_ or keyword.iskeyword(helper):
                continue
            seg = ast.get_source_segment(src, expr)
            if seg is None:
                continue
            call = f"{helper}({', '.join(params)})"
            s = _replace_bytes(
                src,
                _abs(offs, expr.lineno, expr.col_offset),
                _abs(offs, expr.end_lineno, expr.end_col_offset),
                call,
            )
            s_lines = s.splitlines(keepends=True)
            helper_src = f"def {helper}({', '.join(params)}):\n    return {seg}\n\n\n"
            first = min([top.lineno] + [d.lineno for d in getattr(top, "decorator_list", [])])
            s = "".join(s_lines[: first - 1]) + helper_src + "".join(s_lines[first - 1 :])
            if _parses(s):
                out.append(Edit("extract_function", f"`{seg}` extracted into {helper}", dotted, s,
                                {"helper": helper, "params": params, "expr": seg}))  # fmt: skip
    return out
