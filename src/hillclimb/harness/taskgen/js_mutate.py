"""JavaScript source transforms for the task generator: a small tokenizer plus token-exact edits.

Why a hand-written tokenizer and not an AST: no JavaScript parser is available from Python here
(and npm packages are out of bounds), but every edit the generator needs is *local* — swap one
operator token, nudge one integer literal, drop one guard statement, replace one identifier, stub
or delete one function — and a tokenizer that gets strings, template literals, comments and
regex literals right is enough to find those spots without touching text inside strings or
comments. Structure (which function a token belongs to, JSDoc comments, `module.exports`) is
recovered from brace matching over the token stream, which is exact for the conventions the
corpus follows (corpus.py). Whatever the tokenizer cannot judge (a replaced variable still
in scope? a mutation still parses?) is settled the way the Python generator settles it: by
running `node --check` and the tests in the sandbox, and discarding candidates that do not make a
test fail.

Edits mirror mutate.py: bugs `wrong_operator` (+/-, * and /, &&/||, ===/!==, ==/!=),
`off_by_one` (< vs <=, > vs >=, an integer literal ±1), `missing_case` (delete an
`if (...) return/throw` guard without else), `wrong_variable` (a local read replaced by another
local of the same function); features `stub_function` (body replaced by a throw, JSDoc kept) and
`remove_function` (a top-level function deleted and dropped from `module.exports`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hillclimb.harness.taskgen.mutate import Edit

_PUNCT = sorted(
    [
        ">>>=",
        "...",
        "===",
        "!==",
        "**=",
        "<<=",
        ">>=",
        ">>>",
        "&&=",
        "||=",
        "??=",
        "=>",
        "==",
        "!=",
        "<=",
        ">=",
        "&&",
        "||",
        "??",
        "?.",
        "++",
        "--",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "&=",
        "|=",
        "^=",
        "**",
        "<<",
        ">>",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ";",
        ",",
        "<",
        ">",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "|",
        "^",
        "!",
        "~",
        "?",
        ":",
        "=",
        ".",
        "@",
        "#",
    ],
    key=len,
    reverse=True,
)
_REGEX_AFTER_WORD = {
    "return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw",
    "instanceof", "yield", "await",
}  # fmt: skip
KEYWORDS = {
    "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do",
    "else", "export", "extends", "finally", "for", "function", "if", "import", "in", "instanceof",
    "let", "new", "return", "super", "switch", "this", "throw", "try", "typeof", "var", "void",
    "while", "with", "yield", "await", "async", "static", "get", "set", "of", "null", "true",
    "false", "undefined", "require", "module",
}  # fmt: skip
_CONTROL = {"if", "for", "while", "switch", "catch", "with", "function"}
_ASSIGN = {"=", "+=", "-=", "*=", "/=", "%=", "**=", "<<=", ">>=", ">>>=", "&=", "|=", "^=",
           "&&=", "||=", "??=", "++", "--"}  # fmt: skip


@dataclass(frozen=True)
class Tok:
    kind: str  # ident | num | str | template | regex | punct | comment
    text: str
    start: int  # character offsets into the source
    end: int


class JSSyntaxError(ValueError):
    """The tokenizer met something it cannot read (unterminated string, comment, ...)."""


def tokenize(src: str) -> list[Tok]:
    """Tokens of `src`, comments included, whitespace dropped."""
    toks: list[Tok] = []
    i, n = 0, len(src)

    def last_code() -> Tok | None:
        for t in reversed(toks):
            if t.kind != "comment":
                return t
        return None

    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            toks.append(Tok("comment", src[i:j], i, j))
            i = j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise JSSyntaxError("unterminated comment")
            toks.append(Tok("comment", src[i : j + 2], i, j + 2))
            i = j + 2
            continue
        if ch in "'\"":
            j = _scan_string(src, i, ch)
            toks.append(Tok("str", src[i:j], i, j))
            i = j
            continue
        if ch == "`":
            j = _scan_template(src, i)
            toks.append(Tok("template", src[i:j], i, j))
            i = j
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and src[i + 1].isdigit()):
            m = re.compile(r"0[xXoObB][0-9a-fA-F_]+n?|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?n?").match(src, i)  # fmt: skip
            assert m is not None
            toks.append(Tok("num", m.group(), i, m.end()))
            i = m.end()
            continue
        if ch.isalpha() or ch in "_$":
            m = re.compile(r"[\w$]+").match(src, i)
            assert m is not None
            toks.append(Tok("ident", m.group(), i, m.end()))
            i = m.end()
            continue
        if ch == "/":
            prev = last_code()
            if (
                prev is None
                or (prev.kind == "punct" and prev.text not in (")", "]", "}"))
                or (prev.kind == "ident" and prev.text in _REGEX_AFTER_WORD)
            ):
                j = _scan_regex(src, i)
                toks.append(Tok("regex", src[i:j], i, j))
                i = j
                continue
        for p in _PUNCT:
            if src.startswith(p, i):
                toks.append(Tok("punct", p, i, i + len(p)))
                i += len(p)
                break
        else:
            raise JSSyntaxError(f"unexpected character {ch!r} at offset {i}")
    return toks


def _scan_string(src: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            return j + 1
        if c == "\n":
            break
        j += 1
    raise JSSyntaxError(f"unterminated string at offset {i}")


def _scan_template(src: str, i: int) -> int:
    j = i + 1
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == "`":
            return j + 1
        if src.startswith("${", j):
            # the substitution is code: skip it by matching braces over its tokens
            depth, k = 1, j + 2
            while depth and k < len(src):
                sub = src[k]
                if sub in "'\"":
                    k = _scan_string(src, k, sub)
                    continue
                if sub == "`":
                    k = _scan_template(src, k)
                    continue
                depth += {"{": 1, "}": -1}.get(sub, 0)
                k += 1
            j = k
            continue
        j += 1
    raise JSSyntaxError(f"unterminated template literal at offset {i}")


def _scan_regex(src: str, i: int) -> int:
    j, in_class = i + 1, False
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == "\n":
            break
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            j += 1
            while j < len(src) and (src[j].isalnum() or src[j] == "_"):
                j += 1
            return j
        j += 1
    raise JSSyntaxError(f"unterminated regex literal at offset {i}")


# ---- structure ---------------------------------------------------------------------------------


@dataclass
class JSFunction:
    name: str  # `f` for a top-level function, `Class.method` for a method
    bare: str
    top_level: bool  # a `function` declaration at module level
    decl: int  # code-token index where the declaration starts (`function`, modifiers, name)
    params: tuple[int, int]  # code-token indices of `(` and `)`
    body: tuple[int, int]  # code-token indices of `{` and `}`
    doc: str = ""  # JSDoc text, cleaned
    doc_tok: Tok | None = None

    def param_names(self, code: list[Tok]) -> list[str]:
        a, b = self.params
        names, depth, expect = [], 0, True
        for t in code[a + 1 : b]:
            if t.text in "([{":
                depth += 1
            elif t.text in ")]}":
                depth -= 1
            elif depth == 0 and t.text == ",":
                expect = True
            elif depth == 0 and expect and t.kind == "ident":
                names.append(t.text)
                expect = False
            elif depth == 0 and t.text == "...":
                continue
            else:
                expect = False if depth == 0 else expect
        return names


@dataclass
class Module:
    src: str
    toks: list[Tok]
    code: list[Tok]  # tokens without comments
    match: dict[int, int]  # bracket index -> its partner (code indices)
    functions: list[JSFunction] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def owner(self, idx: int) -> JSFunction | None:
        """The innermost named function whose body contains code token `idx`."""
        best = None
        for f in self.functions:
            if f.body[0] < idx < f.body[1] and (best is None or f.body[0] > best.body[0]):
                best = f
        return best


def _clean_doc(text: str) -> str:
    body = text[3:-2]
    lines = [re.sub(r"^\s*\*\s?", "", ln).strip() for ln in body.splitlines()]
    return " ".join(ln for ln in lines if ln)


def parse_module(src: str) -> Module:
    """Tokenize `src` and recover its functions, methods, classes and JSDoc comments."""
    toks = tokenize(src)
    code = [t for t in toks if t.kind != "comment"]
    match: dict[int, int] = {}
    stack: list[int] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for i, t in enumerate(code):
        if t.kind != "punct":
            continue
        if t.text in "([{":
            stack.append(i)
        elif t.text in pairs:
            if not stack or code[stack[-1]].text != pairs[t.text]:
                raise JSSyntaxError(f"unbalanced {t.text!r} at offset {t.start}")
            j = stack.pop()
            match[i], match[j] = j, i
    if stack:
        raise JSSyntaxError("unbalanced brackets at end of file")
    mod = Module(src, toks, code, match)
    class_bodies: dict[int, str] = {}  # `{` index -> class name
    for i, t in enumerate(code):
        if t.kind == "ident" and t.text == "class" and i + 1 < len(code):
            k = i + 1
            name = code[k].text if code[k].kind == "ident" else "<anonymous>"
            while k < len(code) and code[k].text != "{":
                k += 1
            if k < len(code):
                class_bodies[k] = name
                mod.classes.append(name)
    depth_open: list[int] = []
    for i, t in enumerate(code):
        if t.text == "{" and t.kind == "punct":
            depth_open.append(i)
        elif t.text == "}" and t.kind == "punct" and depth_open:
            depth_open.pop()
        if t.text != "(" or t.kind != "punct" or i == 0:
            continue
        close = match[i]
        if close + 1 >= len(code) or code[close + 1].text != "{":
            continue
        name_tok = code[i - 1]
        body = (close + 1, match[close + 1])
        if name_tok.kind != "ident" or name_tok.text in _CONTROL:
            continue
        if i >= 2 and code[i - 2].text == "function":
            decl = i - 2
            if decl >= 1 and code[decl - 1].text == "async":
                decl -= 1
            fn = JSFunction(name_tok.text, name_tok.text, not depth_open, decl, (i, close), body)
        elif depth_open and depth_open[-1] in class_bodies:
            decl = i - 1
            while decl >= 1 and code[decl - 1].text in ("static", "async", "get", "set", "*"):
                decl -= 1
            cls = class_bodies[depth_open[-1]]
            fn = JSFunction(f"{cls}.{name_tok.text}", name_tok.text, False, decl, (i, close), body)
        else:
            continue
        # the JSDoc is the comment right before the declaration's first token
        first = code[fn.decl]
        k = toks.index(first)
        if k > 0 and toks[k - 1].kind == "comment" and toks[k - 1].text.startswith("/**"):
            fn.doc_tok = toks[k - 1]
            fn.doc = _clean_doc(toks[k - 1].text)
        mod.functions.append(fn)
    return mod


def _line_start(src: str, pos: int) -> int:
    return src.rfind("\n", 0, pos) + 1


def _line_end(src: str, pos: int) -> int:
    j = src.find("\n", pos)
    return len(src) if j < 0 else j + 1


def _alone_on_lines(src: str, start: int, end: int) -> bool:
    """Only whitespace before `start` on its line and after `end` on its line."""
    return (
        src[_line_start(src, start) : start].strip() == ""
        and src[end : _line_end(src, end)].strip() == ""
    )


def _indent_of(src: str, pos: int) -> str:
    ls = _line_start(src, pos)
    return src[ls : ls + len(src[ls:]) - len(src[ls:].lstrip(" \t"))]


# ---- bugs --------------------------------------------------------------------------------------

_SWAP = {"+": ("-", "wrong_operator"), "-": ("+", "wrong_operator"),
         "*": ("/", "wrong_operator"), "/": ("*", "wrong_operator"),
         "&&": ("||", "wrong_operator"), "||": ("&&", "wrong_operator"),
         "===": ("!==", "wrong_operator"), "!==": ("===", "wrong_operator"),
         "==": ("!=", "wrong_operator"), "!=": ("==", "wrong_operator"),
         "<": ("<=", "off_by_one"), "<=": ("<", "off_by_one"),
         ">": (">=", "off_by_one"), ">=": (">", "off_by_one")}  # fmt: skip


def _is_operand_end(t: Tok) -> bool:
    return (
        t.kind in ("num", "str", "template", "regex")
        or (t.kind == "ident" and t.text not in _REGEX_AFTER_WORD)
        or t.text in (")", "]")
    )


def _replace(src: str, start: int, end: int, text: str) -> str:
    return src[:start] + text + src[end:]


def bug_edits(src: str) -> list[Edit]:
    """Every candidate injected bug inside a named function or method, in source order."""
    mod = parse_module(src)
    code = mod.code
    out: list[Edit] = []
    for idx, t in enumerate(code):
        fn = mod.owner(idx)
        if fn is None:
            continue
        line = src.count("\n", 0, t.start) + 1
        if t.kind == "punct" and t.text in _SWAP and idx > 0 and _is_operand_end(code[idx - 1]):
            new, kind = _SWAP[t.text]
            out.append(Edit(kind, f"`{t.text}` replaced by `{new}`", fn.name,
                            _replace(src, t.start, t.end, new), {"line": line}))  # fmt: skip
        elif t.kind == "num" and t.text.isdigit():
            v = int(t.text)
            new_v = v - 1 if v >= 1 else v + 1
            out.append(Edit("off_by_one", f"constant {v} changed to {new_v}", fn.name,
                            _replace(src, t.start, t.end, str(new_v)), {"line": line}))  # fmt: skip
        elif t.kind == "ident" and t.text == "if":
            e = _missing_case(mod, idx, fn, line)
            if e is not None:
                out.append(e)
    out += _wrong_variable(mod)
    return out


def _missing_case(mod: Module, idx: int, fn: JSFunction, line: int) -> Edit | None:
    code, src = mod.code, mod.src
    if idx + 1 >= len(code) or code[idx + 1].text != "(" or (idx and code[idx - 1].text == "else"):
        return None
    close = mod.match[idx + 1]
    k = close + 1
    if k >= len(code):
        return None
    if code[k].text == "{":
        end = mod.match[k]
        inner = code[k + 1 : end]
        if not inner or inner[0].text not in ("return", "throw"):
            return None
        # exactly one statement: no `;` before the last token at the block's own depth
        depth, semis = 0, 0
        for t in inner:
            depth += (t.text in "([{") - (t.text in ")]}") if t.kind == "punct" else 0
            semis += depth == 0 and t.text == ";"
        if semis != 1 or inner[-1].text != ";":
            return None
    elif code[k].text in ("return", "throw"):
        end = k
        while end < len(code) and not (code[end].text == ";" and code[end].kind == "punct"):
            end = mod.match.get(end, end) + 1 if code[end].text in "([{" else end + 1
        if end >= len(code):
            return None
    else:
        return None
    if end + 1 < len(code) and code[end + 1].text == "else":
        return None
    start_c, end_c = code[idx].start, code[end].end
    if not _alone_on_lines(src, start_c, end_c):
        return None
    s = src[: _line_start(src, start_c)] + src[_line_end(src, end_c) :]
    last = line + src.count("\n", start_c, end_c)  # every line it removes is its site
    return Edit("missing_case", f"guard at line {line} removed", fn.name, s,
                {"line": line, "lines": list(range(line, last + 1))})  # fmt: skip


def _locals(mod: Module, fn: JSFunction) -> set[str]:
    code = mod.code
    names = set(fn.param_names(code))
    a, b = fn.body
    for i in range(a + 1, b):
        if code[i].text in ("let", "const", "var") and i + 1 < b and code[i + 1].kind == "ident":
            names.add(code[i + 1].text)
    return {n for n in names if n not in KEYWORDS}


def _wrong_variable(mod: Module) -> list[Edit]:
    code, src = mod.code, mod.src
    out = []
    for fn in mod.functions:
        locs = _locals(mod, fn)
        if len(locs) < 2:
            continue
        a, b = fn.body
        for i in range(a + 1, b):
            t = code[i]
            if t.kind != "ident" or t.text not in locs or mod.owner(i) is not fn:
                continue
            prev, nxt = code[i - 1], code[i + 1]
            if prev.text in (".", "?.", "let", "const", "var", "{") or nxt.text in _ASSIGN:
                continue
            if nxt.text in (":", "=>") or prev.text == "...":
                continue
            if prev.text == "," and nxt.text in (",", "}"):
                continue  # maybe a shorthand property or a destructuring target
            others = sorted(locs - {t.text})
            line = src.count("\n", 0, t.start) + 1
            col = t.start - _line_start(src, t.start)
            other = others[(line + col) % len(others)]
            out.append(Edit("wrong_variable", f"`{t.text}` replaced by `{other}`", fn.name,
                            _replace(src, t.start, t.end, other), {"line": line}))  # fmt: skip
    return out


# ---- features ----------------------------------------------------------------------------------


def signature(mod: Module, fn: JSFunction) -> str:
    """`name(a, b = 1)` as written in the source."""
    a, b = fn.params
    return fn.bare + mod.src[mod.code[a].start : mod.code[b].end]


def stub_edits(src: str) -> list[Edit]:
    """Candidate features: a documented function or method whose body becomes a throw."""
    mod = parse_module(src)
    out = []
    for fn in mod.functions:
        if not fn.doc or fn.bare == "constructor":
            continue
        a, b = fn.body
        open_t, close_t = mod.code[a], mod.code[b]
        if b - a < 2 or not _alone_on_lines(src, close_t.start, close_t.end):
            continue
        indent = _indent_of(src, close_t.start)
        body = f'{{\n{indent}  throw new Error("{fn.bare} is not implemented yet");\n{indent}}}'
        s = src[: open_t.start] + body + src[close_t.end :]
        out.append(Edit("stub_function", f"{fn.name} stubbed", fn.name, s,
                        {"doc": fn.doc, "signature": signature(mod, fn)}))  # fmt: skip
    return out


def _exports_span(mod: Module) -> tuple[int, int] | None:
    """Code indices of the `{`/`}` of `module.exports = { ... }`."""
    c = mod.code
    for i in range(len(c) - 3):
        if (c[i].text, c[i + 1].text, c[i + 2].text, c[i + 3].text) == (
            "module", ".", "exports", "=",
        ) and i + 4 < len(c) and c[i + 4].text == "{":  # fmt: skip
            return i + 4, mod.match[i + 4]
    return None


def remove_edits(src: str) -> list[Edit]:
    """Candidate features: a documented top-level function deleted (with its JSDoc) and dropped
    from `module.exports = { ... }` — the task is to add it back."""
    mod = parse_module(src)
    span = _exports_span(mod)
    if span is None:
        return []
    out = []
    for fn in mod.functions:
        if not fn.top_level or not fn.doc or fn.doc_tok is None:
            continue
        a, b = span
        entries = [i for i in range(a + 1, b) if mod.code[i].text == fn.bare]
        if len(entries) != 1 or mod.code[entries[0] + 1].text not in (",", "}"):
            continue
        e = entries[0]
        # drop `name,` or `, name` from the exports object
        if mod.code[e + 1].text == ",":
            cut = (mod.code[e].start, mod.code[e + 2].start)
        elif mod.code[e - 1].text == ",":
            cut = (mod.code[e - 1].start, mod.code[e].end)
        else:
            cut = (mod.code[e].start, mod.code[e].end)
        start, end = fn.doc_tok.start, mod.code[fn.body[1]].end
        if not _alone_on_lines(src, start, end):
            continue
        del_from, del_to = _line_start(src, start), _line_end(src, end)
        if src[del_to : del_to + 1] == "\n":  # and the blank line after it
            del_to += 1
        if cut[0] < del_to:
            continue  # exports before the function: not the corpus layout
        s = src[: cut[0]] + src[cut[1] :]
        s = s[:del_from] + s[del_to:]  # the cut lies after the function: offsets still valid
        out.append(Edit("remove_function", f"{fn.name} removed", fn.name, s,
                        {"doc": fn.doc, "signature": signature(mod, fn)}))  # fmt: skip
    return out


# ---- tests -------------------------------------------------------------------------------------


def string_value(tok: Tok) -> str:
    """The value of a simple string literal token (quotes stripped, common escapes undone)."""
    body = tok.text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


def test_names(src: str) -> list[str]:
    """Names of the top-level `test('name', ...)` blocks of a test file."""
    return [name for name, _, _ in _test_blocks(src)]


def _test_blocks(src: str) -> list[tuple[str, int, int]]:
    mod = parse_module(src)
    c = mod.code
    out, depth = [], 0
    for i, t in enumerate(c):
        if t.kind == "punct" and t.text in "([{":
            depth += 1
        elif t.kind == "punct" and t.text in ")]}":
            depth -= 1
        elif (
            depth == 0
            and t.text in ("test", "it")
            and i + 2 < len(c)
            and c[i + 1].text == "("
            and c[i + 2].kind == "str"
        ):
            close = mod.match[i + 1]
            end = (
                c[close + 1].end
                if close + 1 < len(c) and c[close + 1].text == ";"
                else c[close].end
            )
            out.append((string_value(c[i + 2]), t.start, end))
    return out


def drop_tests(src: str, names: set[str]) -> str:
    """`src` without the top-level `test('name', ...)` blocks whose name is in `names`."""
    spans = [(s, e) for name, s, e in _test_blocks(src) if name in names]
    for s, e in sorted(spans, reverse=True):
        if not _alone_on_lines(src, s, e):
            raise JSSyntaxError("test block shares a line with other code")
        a, b = _line_start(src, s), _line_end(src, e)
        if src[b : b + 1] == "\n":
            b += 1
        src = src[:a] + src[b:]
    return src.rstrip("\n") + "\n"
