"""The pytest half of the grader's trusted result channel (a plugin the grader copies and loads).

Why a plugin instead of reading pytest's text: code under test shares stdout with pytest, so it
can print `PASSED tests/x.py::test_y` and exit; text is not evidence. This file is copied by
`results_channel.py` into a fresh directory inside the graded workspace (after the patch is
applied, under a random module name) and loaded with `-p NAME` through `PYTEST_ADDOPTS`, so pytest
imports it during argument parsing: before any conftest.py, before any test module, and — because
the grader runs the command with `PYTHONSAFEPATH=1` and only that directory on `PYTHONPATH` —
before anything in the workspace can even be imported. On import it

1. imports what it needs with the workspace off sys.path, and checks that no module loaded so
   far comes from the workspace (a shadowed stdlib module would be attacker code running before
   us; if one did, the key is destroyed unused and the run reports nothing);
2. claims the one-shot key: renames `key` to a private name, reads it, deletes it. A second
   pytest started by the same command finds no key and reports nothing (only a `nokey` note);
3. gives the command back its own environment (PYTHONPATH, PYTEST_ADDOPTS, PYTHONSAFEPATH) and
   sys.path (`python -m` puts the current directory first; the task's PYTHONPATH follows), so
   tests and the subprocesses they start see what they would have seen without us;
4. reports one record per test — setup/call/teardown worst wins, xfail/skip as pytest's `-rA`
   summary, except that a skip or xfail raised through the code under test (a frame in the
   workspace that is neither the test's own module nor a conftest.py) is a failure — plus
   collection errors (a module skipped by the code under test is one), and at the end the session's exit status and the conftest.py
   files that were loaded, each line signed with HMAC-SHA256 under the key. A test whose body,
   module objects or pytest's test API changed after collection, or whose body is code from
   outside its test directory, or not the code its test file (as the grader installed it and
   this plugin compiled it on import, `_pin_tests`) defines, is reported failed (`_swapped`),
   as is one whose module's namespace is not what its pinned file binds (`_namespace_mismatch`
   at collection; unchanged since, and no Python trace or profile hook set, when its call
   phase starts, for pytest functions and unittest TestCase methods alike; unchanged at every
   opcode of the frames that run with that module's globals during the call, in threads it
   starts too, with no trace event of those frames missed (session 30), `_NameGuard`;
   and with the builtins the file reads the interpreter's own, `_builtins_mismatch`;
   all in `pytest_runtest_call`). For a refactor task the grader lists its `called_from`
   checks (`grader.json` "calls"); around each test's setup and call this plugin's own profile
   function (`_CallWatch`, also in threads started meanwhile) notes whether each caller, as
   its file defines it, ran and called its helper, and the end record says so per check.

The key never appears in a file or in output after step 2, so records the grader accepts can only
come from this plugin — or from code that digs the key out of this process's memory (tests run in
the same interpreter; the threat model in grading.py says what that does and does not stop).

Stdlib only, and inert unless `grader.json` sits next to it (importing it from the installed
package does nothing).
"""

from __future__ import annotations

import os
import sys

CONFIG_NAME = "grader.json"
KEY_NAME = "key"
RECORDS_NAME = "records.jsonl"
PROTECTED_ENV = ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTHONSAFEPATH")
_SEVERITY = {"passed": 0, "xfailed": 1, "skipped": 1, "xpassed": 2, "failed": 3, "error": 4}
_DIR = os.path.dirname(os.path.realpath(__file__))
_WORKSPACE = os.path.dirname(_DIR)  # the grader directory sits at the workspace's top

# Set when this copy holds the key; the hooks below do nothing without it.
_state: dict | None = None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def workspace_modules(workspace: str, own_dir: str) -> list[str]:
    """Names of loaded modules whose file lies in `workspace` (outside `own_dir`)."""
    out = []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if isinstance(f, str) and f:
            real = os.path.realpath(f)
            if _under(real, workspace) and not _under(real, own_dir):
                out.append(name)
    return sorted(out)


def _claim_key(directory: str) -> str | None:
    path = os.path.join(directory, KEY_NAME)
    mine = f"{path}.{os.getpid()}"
    try:
        os.rename(path, mine)  # atomic: exactly one runner gets the key
    except OSError:
        return None
    try:
        with open(mine, encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):
        return None
    finally:
        _unlink(mine)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _restore_environment(cfg: dict) -> None:
    for name, value in cfg.get("env", {}).items():
        if name not in PROTECTED_ENV:
            continue
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    here = [i for i, p in enumerate(sys.path) if p and os.path.realpath(p) == _DIR]
    at = here[0] if here else 0
    sys.path[:] = [p for i, p in enumerate(sys.path) if i not in here]
    front: list[str] = []
    if cfg.get("safe_path_added") and sys.flags.safe_path:
        main = sys.modules.get("__main__")
        argv0 = sys.argv[0] if sys.argv else ""
        if getattr(main, "__spec__", None) is not None:  # python -m pytest
            front.append(os.getcwd())
        elif argv0 in ("", "-c"):
            front.append("")
        else:
            front.append(os.path.dirname(os.path.realpath(argv0)))
    front += [os.path.abspath(p) for p in cfg.get("pythonpath", []) if p]
    sys.path[at:at] = [p for p in front if p not in sys.path]


def _import_stdlib():
    """Import what the plugin needs with every workspace directory off sys.path (pytest's
    `pythonpath` option may have put one there, and a `hmac.py` in it would otherwise run before
    the key is claimed)."""
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if not _under(os.path.realpath(p or os.curdir), _WORKSPACE)]
    try:
        import ast  # noqa: F401  (ast, dis, linecache: for `_aliased_skip`, as unittest below)
        import dis  # noqa: F401  (also `_load_table`, `_foreign_reads`)
        import hashlib
        import hmac
        import importlib.util  # noqa: F401  (for `_expected_binding`'s relative imports)
        import json
        import linecache  # noqa: F401
        import threading  # noqa: F401  (for `_phase`)
        import unittest  # noqa: F401  (for `_skip_exceptions`: here, with the workspace off the path)
    finally:
        sys.path[:] = saved
    return hashlib, hmac, json


def _activate() -> None:
    global _state
    cfg_path = os.path.join(_DIR, CONFIG_NAME)
    if not os.path.isfile(cfg_path):
        return  # not a grader copy
    hashlib, hmac, json = _import_stdlib()
    foreign = workspace_modules(_WORKSPACE, _DIR)
    key = _claim_key(_DIR)
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    _restore_environment(cfg)
    fd = os.open(os.path.join(_DIR, RECORDS_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def note(payload: dict) -> None:  # unsigned: informs the grader's message, proves nothing
        _write(fd, json.dumps({"p": json.dumps(payload), "m": ""}))

    if key is None:
        note({"k": "nokey", "runner": "pytest", "pid": os.getpid()})
        return
    if foreign:
        note({"k": "tampered", "runner": "pytest", "modules": foreign[:20]})
        return
    secret = key.encode("ascii")

    def emit(payload: dict) -> None:
        text = json.dumps(payload, sort_keys=True)
        mac = hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
        _write(fd, json.dumps({"p": text, "m": mac}))

    _state = {
        "emit": emit, "outcomes": {}, "conftests": {}, "sha256": hashlib.sha256,
        "skips": _skip_exceptions(), "forced": set(), "raised": set(), "root": os.getcwd(),
        "api": _test_api(), "pytest": sys.modules.get("pytest"), "code": {}, "swapped": set(),
        "pins": _pin_tests(cfg.get("tests"), hashlib.sha256), "ns": {},
        "trace": sys.gettrace(), "profile": sys.getprofile(),
        "calls": _CallWatch.from_config(cfg.get("calls")), "guards": {},
        "builtins": _builtins_now(),
    }  # fmt: skip
    emit({"k": "start", "runner": "pytest", "pid": os.getpid()})


def _builtins_now() -> tuple[dict, dict]:
    """(the `builtins` module's dict, a copy of it), taken while pytest is loading us: before
    any workspace code exists, so the copy holds the interpreter's own builtins (`_NameGuard`,
    `_builtins_mismatch`)."""
    real = sys.modules["builtins"].__dict__
    return real, dict(real)


def _skip_exceptions() -> tuple[type, ...]:
    """What skips or xfails a test when raised (`pytest.skip`/`importorskip`, `pytest.xfail`,
    `unittest.SkipTest`), taken while pytest is loading us: before any workspace code exists."""
    out: list[type] = []
    outcomes = sys.modules.get("_pytest.outcomes")
    for name in ("Skipped", "XFailed"):
        cls = getattr(outcomes, name, None)
        if isinstance(cls, type):
            out.append(cls)
    skip_test = getattr(sys.modules.get("unittest"), "SkipTest", None)
    if isinstance(skip_test, type):
        out.append(skip_test)
    return tuple(out)


# The public test API a test calls by name: replaced while the tests run (`setattr` on names
# built at run time is beyond protected.py's text check), every later test is failed.
_API_NAMES = ("raises", "approx", "fail", "skip", "xfail", "importorskip", "warns")


def _test_api() -> dict[str, object]:
    """pytest's public API as pytest itself set it up, taken while pytest is loading us."""
    api = sys.modules.get("pytest")
    return {n: getattr(api, n, None) for n in _API_NAMES}


class _Pin:
    """A test file as the grader installed it: every code object the file compiles to (plain,
    and as pytest's assertion rewrite compiles it, with and without the assertion-pass hook),
    by qualified name, and the qualified names its source defines with only marks as
    decorators (the tests whose collected function must be exactly the file's), and `foreign`:
    the names its code reads as globals that no code of the file binds (builtins such as `len`
    or `sorted`, none of them the module's own). A plain class: this module imports nothing at
    load beyond `os`/`sys` (see `_import_stdlib`)."""

    __slots__ = ("codes", "plain", "binds", "foreign")

    def __init__(
        self,
        codes: dict[str, frozenset],
        plain: frozenset[str],
        binds: dict[str, tuple],
        foreign: frozenset[str],
    ) -> None:
        self.codes, self.plain, self.binds, self.foreign = codes, plain, binds, foreign


def _pin_tests(pinned: object, sha256) -> dict[str, _Pin | None]:
    """The grader's test files (path relative to the workspace -> sha256 of the bytes it
    installed), read and compiled now, while pytest loads us: no workspace code has run, so
    neither these bytes nor pytest's rewrite can have been tampered with yet. A file whose
    bytes already differ (changed by something the command ran before pytest) pins None:
    its tests are reported failed."""
    import ast

    out: dict[str, _Pin | None] = {}
    if not isinstance(pinned, dict):
        return out
    rewrite = getattr(sys.modules.get("_pytest.assertion.rewrite"), "rewrite_asserts", None)
    for rel, digest in pinned.items():
        path = os.path.join(_WORKSPACE, str(rel))
        try:
            with open(path, "rb") as f:
                data = f.read()
            if sha256(data).hexdigest() != digest:
                raise ValueError("changed")
            out[os.path.normpath(str(rel))] = _compile_pin(data, path, rewrite, ast)
        except (OSError, ValueError, SyntaxError, RecursionError):
            out[os.path.normpath(str(rel))] = None
    return out


class _PassHook:
    """The one config value pytest's rewrite reads (`enable_assertion_pass_hook`): on."""

    @staticmethod
    def getini(name: str) -> bool:
        return name == "enable_assertion_pass_hook"


def _compile_pin(data: bytes, path: str, rewrite, ast) -> _Pin:
    """Compile `data` as importlib does (plain) and as pytest's `_rewrite_test` does."""
    variants = [compile(data, path, "exec", dont_inherit=True)]
    for config in (None, _PassHook()) if rewrite is not None else ():
        tree = ast.parse(data, filename=path)
        try:
            rewrite(tree, data, path, config)
        except Exception:  # a pytest whose rewrite differs: the plain variant still pins
            continue
        variants.append(compile(tree, path, "exec", dont_inherit=True))
    codes: dict[str, set] = {}
    todo = list(variants)
    while todo:
        code = todo.pop()
        codes.setdefault(getattr(code, "co_qualname", code.co_name), set()).add(code)
        todo += [c for c in code.co_consts if type(c) is type(code)]
    tree = ast.parse(data)
    codes_ = {k: frozenset(v) for k, v in codes.items()}
    every = [c for v in codes.values() for c in v]
    return _Pin(codes_, _plain_defs(tree, ast), _namespace_binds(tree, ast), _foreign_reads(every))


def _foreign_reads(codes: list) -> frozenset[str]:
    """Names the given code objects read as globals (`LOAD_GLOBAL`, `LOAD_NAME`) that none of
    them binds or deletes (`STORE_*`/`DELETE_*` of a name or global, `import *`: then none),
    dunders left out (the import system sets `__file__` and kin) except the two builtins read
    by opcodes: `__import__` where the code imports, `__build_class__` where it makes a class.

    Why: a test reads such a name from builtins; code under test that puts one into the test
    module (`sorted`, `isinstance`) changes what the test calls without swapping any name the
    file binds (`_namespace_mismatch` at collection, `_NameGuard` during the call)."""
    import dis

    reads: set[str] = set()
    bound: set[str] = set()
    hidden: set[str] = set()  # `__import__`, `__build_class__`: read by opcodes from builtins
    for code in codes:
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                reads.add(str(ins.argval))
            elif ins.opname in ("STORE_NAME", "STORE_GLOBAL", "DELETE_NAME", "DELETE_GLOBAL"):
                bound.add(str(ins.argval))
            elif ins.opname == "IMPORT_STAR":
                return frozenset()
            elif ins.opname in _BUILTIN_OPS:
                hidden.add(_BUILTIN_OPS[ins.opname])
    out = {n for n in reads - bound if not (n.startswith("__") and n.endswith("__"))}
    return frozenset(out | hidden)


# Opcodes that read a builtin without naming it: an `import` inside a test calls the builtins'
# `__import__`, a `class` statement their `__build_class__` (pinned as the named builtins are).
_BUILTIN_OPS = {"IMPORT_NAME": "__import__", "LOAD_BUILD_CLASS": "__build_class__"}


def _plain_defs(tree, ast) -> frozenset[str]:
    """Qualified names of the functions a module's source defines at module or class level
    whose decorators are all marks (`@pytest.mark.parametrize(...)`) or `staticmethod`: pytest
    collects such a function as it is, so its code must be the file's. The last definition
    of a name decides (a redefinition replaces the first); a name the same body also assigns
    (`test_x = wrap(test_x)`) is left out."""

    def is_mark(d) -> bool:
        while isinstance(d, (ast.Call, ast.Attribute)):
            if isinstance(d, ast.Attribute) and d.attr == "mark":
                return True
            d = d.func if isinstance(d, ast.Call) else d.value
        return isinstance(d, ast.Name) and d.id in ("mark", "staticmethod")

    plain: set[str] = set()

    def walk(body, prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + node.name
                if all(is_mark(d) for d in node.decorator_list):
                    plain.add(name)
                else:
                    plain.discard(name)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:  # `test_x = wrap(test_x)`: no longer the def as written
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            rebound.add(prefix + n.id)

    rebound: set[str] = set()
    walk(tree.body, "")
    return frozenset(plain - rebound)


def _namespace_binds(tree, ast) -> dict[str, tuple]:
    """What a test module's namespace must hold after it ran, by name: the names its source
    binds exactly once, by a top-level statement, and nowhere else (no other assignment,
    `del`, `global`, or binding under `if`/`try`/`with`/loops): `import a.b` -> ("module",
    "a"), `from m import x` (and `import m.x as x`) -> ("from", m, x, level), an undecorated
    `def f` -> ("def", "f"), an undecorated `class C` -> ("class", "C").

    Why: the test's own function can stay the file's while the names it reads are swapped in
    its module only (session 28: the class or helper a test uses, or `pytest`, replaced there
    by package code that special-cases the test); these are the names whose value the file
    alone decides."""
    counts: dict[str, int] = {}
    spec: dict[str, tuple] = {}
    unsafe: set[str] = set()

    def bump(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    def stores(node) -> None:  # every name a statement binds outside nested scopes
        todo = [node]
        while todo:
            n = todo.pop()
            if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
                bump(n.id)
            elif isinstance(n, ast.alias):
                bump((n.asname or n.name).split(".")[0])
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bump(n.name)
                continue  # its body is another scope
            elif isinstance(n, ast.Global | ast.Nonlocal):
                unsafe.update(n.names)
            todo += list(ast.iter_child_nodes(n))

    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                name = a.asname or a.name.split(".")[0]
                parent, _, last = a.name.rpartition(".")
                if a.asname and parent:  # binds `c` as `from a import b` does (attribute first)
                    spec[name] = ("from", parent, last, 0)
                else:  # `import a.b` binds the top package `a`
                    spec[name] = ("module", a.name if a.asname else name)
                bump(name)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name == "*":
                    unsafe.add("*")
                    continue
                spec[a.asname or a.name] = ("from", node.module or "", a.name, node.level)
                bump(a.asname or a.name)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.decorator_list:
            spec[node.name] = ("def" if isinstance(node, ast.FunctionDef) else "class", node.name)
            bump(node.name)
        else:
            stores(node)
    for node in ast.walk(tree):  # `global x` in any function rebinds x at run time
        if isinstance(node, ast.Global):
            unsafe.update(node.names)
    if "*" in unsafe:
        return {}  # `from m import *` binds names the source does not spell
    return {k: v for k, v in spec.items() if counts.get(k) == 1 and k not in unsafe}


def _expected_binding(how: tuple, g: dict) -> tuple[bool, object]:
    """(known, value): what `how` (`_namespace_binds`) resolves to in the interpreter's module
    table now, as another importer would get it; known is False when the table cannot say."""
    modules = sys.modules
    if how[0] == "module":
        return how[1] in modules, modules.get(how[1])
    _, mod, attr, level = how
    if level:
        try:
            mod = sys.modules["importlib.util"].resolve_name(
                "." * level + mod, g.get("__package__")
            )
        except (ImportError, ValueError, KeyError, TypeError, AttributeError):
            return False, None
    owner = modules.get(mod)
    if owner is None:
        return False, None
    missing = object()
    try:
        value = getattr(owner, attr, missing)
    except Exception:  # a module `__getattr__` that raises: the table cannot say
        return False, None
    if value is missing:
        full = f"{mod}.{attr}"
        return full in modules, modules.get(full)
    return True, value


def _namespace_mismatch(pin: _Pin, g: dict) -> str | None:
    """Why a pinned test module's namespace (`g`) is not what its file binds, or None: an
    imported name must be what the module table gives any importer (not an object swapped in
    this module only), a function the file defines must be one of its module with the file's
    code, a class the file defines must be the class its statement made (its undecorated
    methods the file's code)."""
    func_type = type(_under)
    for name in sorted(pin.foreign):
        if name in g:
            return f"`{name}` in its module is bound by no code of its file"
    for name, how in pin.binds.items():
        if name not in g:
            return f"`{name}` is missing from its module"
        value = g[name]
        if how[0] in ("module", "from"):
            known, expected = _expected_binding(how, g)
            if known and value is not expected:
                return f"`{name}` in its module is not what its import gives"
        elif how[0] == "def":
            code = getattr(value, "__code__", None)
            if type(value) is not func_type or value.__globals__ is not g:
                return f"`{name}` in its module is not the function its file defines"
            if code not in pin.codes.get(name, ()):
                return f"`{name}` in its module has a body its file does not define"
        elif how[0] == "class":
            if not isinstance(value, type) or value.__qualname__ != name:
                return f"`{name}` in its module is not the class its file defines"
            if value.__dict__.get("__module__") != g.get("__name__"):
                return f"`{name}` in its module is not the class its file defines"
            for attr, member in list(value.__dict__.items()):
                qual = f"{name}.{attr}"
                plain = qual in pin.plain and type(member) is func_type
                if plain and member.__code__ not in pin.codes.get(qual, ()):
                    return f"`{qual}` has a body its file does not define"
    return None


def _builtins_mismatch(pin: _Pin, g: dict, fn=None) -> str | None:
    """Why the builtins a pinned test module reads (`_Pin.foreign`) are not the interpreter's
    own, or None: each such entry of the `builtins` module must still be the object it was when
    pytest loaded us, and the module (and `fn`, the test function, when given) must read its
    builtins from that module's dict.

    Why: a builtin the test file never binds is looked up in `builtins` (through the dict its
    functions were made with); package code that replaces `builtins.any` or `builtins.sorted`
    (at import, or only while a test runs), or gives the test module a `__builtins__` of its
    own before the test functions are defined, changes what the test's assertion computes
    without touching any name of the test module (session 30, `bench/redteam/graders_s30c.py`)."""
    real, then = _state["builtins"]
    own = g.get("__builtins__", real)
    if own is not real and getattr(own, "__dict__", None) is not real:
        return "its module's `__builtins__` is not the builtins module"
    if fn is not None and getattr(fn, "__builtins__", real) is not real:
        return "its function reads builtins other than the builtins module's"
    for name in sorted(pin.foreign):
        if name in then and (name not in real or real[name] is not then[name]):
            return f"the builtin `{name}` it reads was replaced"
    return None


def _foreign_hook() -> str | None:
    """A trace or profile function set now that was not set when pytest loaded us, written in
    Python (a C tracer such as coverage's cannot come from the submission: native modules are
    refused before the run), or None.

    Why: such a hook sees each test function start and return, so code under test can swap
    what the test reads (its module's `pytest`, a class or helper) for that one test and put
    it back before any check after the call (session 28: a transient `pytest` swap resolved a
    generated task with the bug in place on session 27's reporter)."""
    for now, then in ((sys.gettrace(), _state["trace"]), (sys.getprofile(), _state["profile"])):
        if now is None or now is then:
            continue
        fn, seen = now, 0
        while seen < 8 and fn is not None:
            seen += 1
            if getattr(fn, "__code__", None) is not None:
                return "a trace or profile hook was set while the tests ran"
            inner = getattr(fn, "__func__", None) or getattr(fn, "func", None)
            if inner is None:
                # a class's `__call__` written in Python (its own or inherited)
                mro = type(fn).__mro__
                call = next((c.__dict__["__call__"] for c in mro if "__call__" in c.__dict__), None)
                if getattr(call, "__code__", None) is not None:
                    return "a trace or profile hook was set while the tests ran"
            fn = inner
    return None


def _namespace_now(item) -> dict[str, int] | None:
    """Identity of each pinned name in `item`'s module (None: not a pinned module)."""
    pin = _pin_of(item)
    mod = getattr(item, "module", None)
    g = getattr(mod, "__dict__", None)
    if pin is None or type(g) is not dict:
        return None
    return {k: id(g.get(k)) for k in pin.binds}


def _pin_of(item) -> _Pin | None:
    """The pin of `item`'s test file, or None."""
    pins = _state["pins"] if _state is not None else {}
    if not pins:
        return None
    test_file = os.path.realpath(str(getattr(item, "path", None) or item.fspath))
    return pins.get(os.path.relpath(test_file, _WORKSPACE))


def _pinned_mismatch(item, fn, code) -> str | None:
    """Why `item`'s collected function is not the one the grader's test file defines, or None.

    Why: code under test runs while the test module that imports it is still executing, so it
    can replace a test before pytest collects it — set its `__code__`, execute other source
    into the module's namespace, or rewrite a test file not imported yet — with a body compiled
    under the test file's own name (session 27: a profile hook doing so resolved generated
    tasks whose FAIL_TO_PASS tests are `pytest.raises` tests with the bug in place). The noted
    collection-time body then already is the swapped one, so it is compared with the file as
    the grader installed it: a test the file defines with only marks as decorators must be a
    function of its module whose code equals the file's definition; any other body whose
    file is a pinned one must be code that file compiles to."""
    pins = _state["pins"] if _state is not None else {}
    if not pins:
        return None
    test_file = os.path.realpath(str(getattr(item, "path", None) or item.fspath))
    rel = os.path.relpath(test_file, _WORKSPACE)
    if rel in pins:
        pin = pins[rel]
        if pin is None:
            return "its test file changed before the run"
        qual = ".".join([*_class_names(item), str(getattr(item, "originalname", item.name))])
        if qual in pin.plain:
            mod = getattr(item, "module", None)
            if type(fn) is not type(_under) or fn.__globals__ is not getattr(mod, "__dict__", 0):
                return "it is not the function its test file defines"
            if code not in pin.codes.get(qual, ()):
                return "its body is not the one its test file defines"
            return None
    rel = os.path.relpath(os.path.realpath(code.co_filename), _WORKSPACE)
    if rel in pins:
        pin = pins[rel]
        known = pin.codes.get(getattr(code, "co_qualname", code.co_name), ()) if pin else ()
        if code not in known:
            return f"its body is not code that {os.path.basename(rel)} defines"
    return None


def _class_names(item) -> list[str]:
    """The test classes between `item` and its module, as pytest collected them (their names
    in the module's namespace, which the source's `class` statements bind)."""
    out = []
    for node in item.listchain():
        if any(c.__name__ == "Class" for c in type(node).__mro__):
            out.append(str(node.name))
    return out


def _test_code(item):
    """The code object of `item`'s test function (through a bound method), or None."""
    fn = getattr(item, "obj", None)
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    return fn, code if type(code).__name__ == "code" else None


def _module_globals(fn) -> dict[str, int]:
    """Identity of each module object the test function's globals name (`pytest`, the package
    under test): a test never rebinds those; code that swaps one in (a `pytest` whose `raises`
    swallows everything) changes what the test means."""
    g = getattr(fn, "__globals__", None)
    if type(g) is not dict:
        return {}
    return {k: id(v) for k, v in list(g.items()) if type(v).__name__ == "module"}


def _swapped(item) -> str | None:
    """Why `item`'s test is no longer the one collected, or None.

    Why: code under test shares the interpreter, and a thread it starts at import can give a
    test function another body (`test.__code__ = noop.__code__`) or another `pytest`; the
    phase then neither raises nor fails, and every test whose checks the grader could not hide
    (`pytest.raises` tests, assertions left as written) came back passed with the bug in place
    (session 26: partial RL reward on generated bug-fix tasks). The body must still be the one
    collected, from the test's own file (a conftest or code outside the workspace, as for
    `_trusted_file`, when a decorator wraps it), with the same module objects and test API."""
    if _state is None:
        return None
    fn, code = _test_code(item)
    if code is None:
        return None
    test_file = os.path.realpath(str(getattr(item, "path", None) or item.fspath))
    if not _trusted_body(code.co_filename, test_file):
        return "its body comes from " + os.path.basename(code.co_filename)
    pinned = _pinned_mismatch(item, fn, code)
    if pinned is not None:
        return pinned
    seen = _state["ns"].get(id(getattr(item, "module", None)))
    if seen is not None and seen[1] is not None:
        return seen[1]
    g = getattr(fn, "__globals__", None)
    if type(g) is dict and "pytest" in g and g["pytest"] is not _state["pytest"]:
        return "the name `pytest` in its module is not pytest"
    seen = _state["code"].get(item.nodeid)
    if seen is not None and (seen[0] is not code or seen[1] != _module_globals(fn)):
        return "its body or the modules it names changed after collection"
    now = _test_api()  # by identity: a replacement's own `__eq__` must not be asked
    if any(now[n] is not _state["api"][n] for n in _API_NAMES):
        return "pytest's test API was replaced"
    return None


def _trusted_body(filename: str, test_file: str) -> bool:
    """Where a test's body may come from: as `_trusted_file`, or a module beside the test file
    or below its directory (a base class in `tests/base.py`): the grader makes the test
    directory what the task has there before the run. Not for a test file in the workspace's
    top directory, whose neighbours are the submission's."""
    if _trusted_file(filename, test_file):
        return True
    here = os.path.dirname(test_file)
    return os.path.realpath(here) != os.path.realpath(_WORKSPACE) and _under(
        os.path.realpath(filename), here
    )


def pytest_itemcollected(item):
    """Note each test's body and module objects as collected (`_swapped`), and check once per
    pinned test module that its namespace is what its file binds (`_namespace_mismatch`)."""
    if _state is None:
        return
    fn, code = _test_code(item)
    if code is not None:
        _state["code"][item.nodeid] = (code, _module_globals(fn))
    mod = getattr(item, "module", None)
    if id(mod) in _state["ns"]:
        return
    pin, g = _pin_of(item), getattr(mod, "__dict__", None)
    if pin is not None and type(g) is dict:
        try:
            why = _namespace_mismatch(pin, g) or _builtins_mismatch(pin, g)
        except Exception:  # a check that cannot be made fails closed
            why = "its module's namespace could not be checked"
        # the module object is kept: its id must not be reused by another module
        _state["ns"][id(mod)] = (mod, why, _namespace_now(item))
        space = _guard_space(mod, pin) if why is None else None
        if space is not None:
            _state["guards"][id(g)] = space


class _CallWatch:
    """Which refactor callers ran during the test calls, and whether each called its helper
    (session 28, `called_from` checks the grader lists in `grader.json` under "calls").

    Why: the static `called_from` check cannot fold every condition (`if len(()):`, `if 1 > 2:`,
    `if os.environ.get("X"):`, a loop over an empty tuple): a caller that keeps its inline code
    and "calls" the helper only there met the check. A profile function set by this plugin
    only around each test's setup and call phases (`_phase`; session 29: also in threads
    started meanwhile, so fixtures, TestCase methods and threads count) sees each call: a
    caller's start (its code: `caller`'s qualified name, in the check's module file) and a
    helper's start (`name`) whose calling frame is that caller or a comprehension, genexpr or
    lambda inside it. A profile function instead of a wrapper on the helper: tests import the
    caller by name before any wrapper could be put in place, so only code identity can tell
    that the caller ran. Outside the test calls no hook is set, and `_foreign_hook` still sees
    the command's own hooks as before; a test whose call ends with another profile function
    set (ours removed or replaced) fails, so switching the recording off is no way out.

    Cost: a Python profile function slows call-heavy code several times, so once every
    watched caller has called its helper (all the grader needs) the hook removes itself and
    later test calls run without one (`done`)."""

    __slots__ = ("watches", "pinned", "ran", "hit", "roles", "files", "done")

    def __init__(self, watches: list[tuple[str, str, str]]) -> None:
        self.watches = watches  # (module file's real path, caller qualname, helper qualname)
        self.pinned = [_caller_codes(mod, caller) for mod, caller, _ in watches]
        self.ran = [False] * len(watches)
        self.hit = [False] * len(watches)
        self.roles: dict[int, tuple] = {}  # id(code) -> (code, callers, helpers, insides)
        self.files: dict[str, str] = {}  # co_filename -> real path
        self.done = False  # every helper seen called from its caller: nothing left to watch

    @classmethod
    def from_config(cls, calls: object) -> _CallWatch | None:
        if not isinstance(calls, list) or not calls:
            return None
        watches = []
        for c in calls:
            if not isinstance(c, dict):
                return None
            mod, caller, name = c.get("module"), c.get("caller"), c.get("name")
            if not all(isinstance(x, str) and x for x in (mod, caller, name)):
                return None
            watches.append((os.path.realpath(os.path.join(_WORKSPACE, mod)), caller, name))
        return cls(watches)

    def _role(self, code) -> tuple:
        """(callers, helpers, insides): indexes of the watches whose caller this code is, whose
        helper it is, and whose caller it lies inside (the caller or its comprehensions)."""
        got = self.roles.get(id(code))
        if got is not None and got[0] is code:
            return got[1:]
        fname = code.co_filename
        real = self.files.get(fname)
        if real is None:
            real = self.files[fname] = os.path.realpath(fname)
        qual = getattr(code, "co_qualname", code.co_name)
        callers, helpers, insides = [], [], []
        for i, (mod, caller, name) in enumerate(self.watches):
            if real != mod:
                continue
            if qual == name:
                helpers.append(i)
            if code not in self.pinned[i]:  # by value: the file's code, wherever compiled
                continue
            if qual == caller:
                callers.append(i)
                insides.append(i)
            elif qual.startswith(caller + ".<locals>.<"):  # <genexpr>, <listcomp>, <lambda>
                insides.append(i)
        self.roles[id(code)] = (code, tuple(callers), tuple(helpers), tuple(insides))
        return tuple(callers), tuple(helpers), tuple(insides)

    def hook(self, frame, event, arg) -> None:
        if event != "call":
            return
        callers, helpers, _ = self._role(frame.f_code)
        for i in callers:
            self.ran[i] = True
        if helpers and frame.f_back is not None:
            inside = self._role(frame.f_back.f_code)[2]
            for i in helpers:
                if i in inside:
                    self.hit[i] = True
            if all(self.hit):
                self.done = True
                sys.setprofile(None)

    def record(self) -> list[list[bool]]:
        return [[self.ran[i], self.hit[i]] for i in range(len(self.watches))]


# The structural checks parse no file larger than `structural.MAX_PARSE_BYTES` (2 MB):
# such a caller fails there anyway, and is not compiled here.
_MAX_CALLER_FILE = 8 << 20


def _caller_codes(path: str, caller: str) -> list:
    """The code objects the module file at `path` compiles to for `caller` and the code nested
    in it, compiled now, while pytest loads us (no workspace code has run). Compared by value
    with the code that runs: a function compiled elsewhere under the caller's file and name
    (`exec(compile(..., "<the module's path>", "exec"))`) whose body calls the helper is not
    the caller the static check read. Empty (nothing ever counts as the caller) when the file
    cannot be read or compiled."""
    try:
        if os.path.getsize(path) > _MAX_CALLER_FILE:
            return []
        with open(path, "rb") as f:
            todo = [compile(f.read(), path, "exec", dont_inherit=True)]
    except (OSError, ValueError, SyntaxError, RecursionError, MemoryError):
        return []
    out = []
    while todo:
        code = todo.pop()
        qual = getattr(code, "co_qualname", code.co_name)
        if qual == caller or qual.startswith(caller + ".<locals>."):
            out.append(code)
        todo += [c for c in code.co_consts if type(c) is type(code)]
    return out


def _call_checks(item) -> None:
    """Just before pytest runs a test's call phase (fixtures set up; a pytest function or a
    unittest TestCase method alike): fail it if a Python trace or profile hook is set
    (`_foreign_hook`), a name its file binds in its module no longer holds the object it
    held at collection, or a builtin it reads is not the interpreter's (`_builtins_mismatch`)."""
    try:
        why = _foreign_hook()
        seen = _state["ns"].get(id(getattr(item, "module", None)))
        if why is None and seen is not None and _namespace_now(item) != seen[2]:
            why = "a name its file binds was rebound in its module after collection"
        pin, mod = _pin_of(item), getattr(item, "module", None)
        g = getattr(mod, "__dict__", None)
        if why is None and pin is not None and type(g) is dict:
            why = _builtins_mismatch(pin, g, _test_code(item)[0])
    except Exception:  # a check that cannot be made fails closed
        why = "its module's namespace could not be checked"
    if why is not None:
        _state["swapped"].add(item.nodeid)


class _NameGuard:
    """Watches, opcode by opcode, every frame that runs with a pinned test module's globals
    during a test's call phase: before each `LOAD_GLOBAL` of a name the module's file binds
    once (the names `_namespace_mismatch` checked at collection) or of a builtin the file never
    binds (`_Pin.foreign`), the module must hold what it held at collection (absent, for the
    latter); otherwise the test fails.

    Why: checks just before and just after the call cannot see a swap made in between and
    undone before the end (session 29: package code the test calls reads `PYTEST_CURRENT_TEST`,
    swaps the test module's `pytest` for one whose `raises` swallows and puts the real one
    back as it exits; or a thread polling `sys._current_frames()` swaps it while the test's
    frame is on the stack; each resolved `bugfix-inventory-11-0002` with the bug in place).
    Whatever made the swap (package code, a thread, a finaliser, a `sys.monitoring` callback),
    the test's code can only read the swapped name at one of its own `LOAD_GLOBAL`s, and the
    trace event comes just before it. The comparison reads the dict and compares identities
    with no call in between, so no other Python thread can run between it and the opcode (in
    CPython a thread switch happens at a call, a function's start or a backward jump). Only `LOAD_GLOBAL` offsets are looked at
    (`_load_table`, per code object), line events are off, and frames of other globals get no
    local trace (the global function returns None): code under test runs at profile-hook cost.
    `open` counts guarded frames started and not yet returned: a frame whose local trace was
    removed never reports its return, and the call then fails; so does one whose opcode
    events were switched off when it returns.

    Session 30: code with frame access could switch a test frame's events off and on again
    between two of its events (`frame.f_trace_opcodes = False`, `frame.f_trace = None`,
    `sys.settrace(None)`, from package code the test calls or from a thread) and read a swapped
    name unseen in between (each resolved `bugfix-inventory-11-0002` with the bug in place,
    `bench/redteam/graders_s30b.py`). So every event of a guarded frame must also follow from
    the one before by the code's control flow (`_flow_table`: the next instruction, a jump
    target or the exception handler; an `exception` or `return` event at the instruction last
    seen), come from the frame's own local function (`f_trace` unchanged, the frame the local
    was made for), with the installed global function still `hook`. Events missed in between
    leave a gap no path explains, and the test fails. Threads started during the call get the
    same global function (`threading.settrace`).

    Session 30 (round 6): the builtin behind an absent name is checked too — at each such read
    the `builtins` dict (`real`) must hold the object it held when pytest loaded us, and a
    guarded frame must read its builtins from that dict (`f_builtins`) — so package code that
    swaps `builtins.any` or `builtins.sorted` while a test runs, or gave the test module a
    `__builtins__` of its own, fails the test (`bench/redteam/graders_s30c.py`)."""

    __slots__ = ("spaces", "tables", "changed", "open", "hook", "real")

    def __init__(self, spaces: dict[int, tuple], real: dict | None = None) -> None:
        # id(module dict) -> (dict, {name: object or _ABSENT}[, {name: builtin}])
        self.spaces = spaces
        self.real = real  # the `builtins` module's dict (None: builtins not checked)
        # (id(dict), code) -> ({offset: (name, object)}, _flow_table(code))
        self.tables: dict[tuple, tuple] = {}
        self.changed = False
        self.open = 0
        self.hook = self.trace  # the one bound method installed: compared by identity

    def trace(self, frame, event, arg):
        g = frame.f_globals
        space = self.spaces.get(id(g))
        if space is None or space[0] is not g:
            return None
        key = (id(g), frame.f_code)
        got = self.tables.get(key)
        if self.real is not None and frame.f_builtins is not self.real:
            self.changed = True  # made with a `__builtins__` of the package's
        if got is None:
            flow = _flow_table(frame.f_code)
            table = _load_table(frame.f_code, space[1], space[2] if len(space) > 2 else None)
            # an `EXTENDED_ARG` prefix reports the event of the `LOAD_GLOBAL` it extends
            table.update([(u, table[at]) for u, at in flow[0].items() if at in table])
            got = self.tables[key] = (table, flow)
        frame.f_trace_lines = False
        frame.f_trace_opcodes = True
        self.open += 1
        return self._local(g, got[0], got[1], id(frame))

    def _local(self, g: dict, table: dict, flow: tuple, fid: int):
        canon, succ, reraise = flow
        gettrace, hook = sys.gettrace, self.hook
        real = self.real if self.real is not None else {}
        prev = -1  # the code unit of the frame's last event; -1: none yet (any may come)

        def local(frame, event, arg):
            nonlocal prev
            at = frame.f_lasti
            if event == "opcode":
                # no event missed (tracing switched off in between leaves a gap no path
                # explains), from this frame's own local function, under the installed hook
                if (
                    at not in succ[prev]
                    or frame.f_trace is not local
                    or gettrace() is not hook
                    or id(frame) != fid
                ):
                    self.changed = True
                prev = at
                if at in table:
                    # `in` and `[]`, not `g.get`: no call between the read and the opcode, so
                    # no thread switch there (see the class)
                    name, obj, builtin = table[at]
                    if obj is _ABSENT:
                        if name in g or (
                            builtin is not _ABSENT
                            and (name not in real or real[name] is not builtin)
                        ):
                            self.changed = True
                    elif name not in g or g[name] is not obj:
                        self.changed = True
                return local
            if frame.f_trace is not local or gettrace() is not hook or id(frame) != fid:
                self.changed = True
            if event == "exception" or event == "return":
                # raised or returned elsewhere than last seen (a `RERAISE` restores the offset
                # of the instruction that raised first: a return after one may report it)
                last = canon.get(prev, prev)
                if prev >= 0 and canon.get(at, at) != last and last not in reraise:
                    self.changed = True
                prev = at
                if event == "return":
                    self.open -= 1
                    if not frame.f_trace_opcodes:
                        self.changed = True
            return local

        return local


def _flow_table(code) -> tuple[dict[int, int], dict[int, frozenset], frozenset[int]]:
    """(canon, succ, reraise) of `code`'s own instructions, by offset. `canon` maps every code unit to
    the instruction it belongs to: an `EXTENDED_ARG` prefix to the instruction it extends
    (CPython reports the opcode event at the prefix), an inline cache entry to its instruction
    (an `exception` event during a call reports the last cache entry). `succ`: the offsets
    whose opcode event may come next: the following instruction, a jump target, the handler of
    any exception-table entry covering it, and after a `RERAISE` (it restores the raising
    instruction's offset and unwinds from there, with no `exception` event) any handler.
    `reraise`: the offsets of the `RERAISE`s. Generous on purpose: a gap only has to be one no
    path explains."""
    import dis

    parse = getattr(dis, "_parse_exception_table", None)
    try:
        entries = [(e.start, e.end, e.target) for e in parse(code)] if parse else []
    except Exception:  # a dis that differs: handlers reachable from anywhere
        entries = []
    ins = list(dis.get_instructions(code))
    canon: dict[int, int] = {}
    real: list = []
    pending: list[int] = []
    for n, i in enumerate(ins):
        if i.opname == "EXTENDED_ARG":
            pending.append(i.offset)
            continue
        end = ins[n + 1].offset if n + 1 < len(ins) else len(code.co_code)
        for off in pending + list(range(i.offset, end, 2)):
            canon[off] = i.offset
        pending = []
        real.append(i)
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    handlers = {canon.get(t, t) for _, _, t in entries}
    aliases: dict[int, list[int]] = {}  # instruction -> every code unit reported as it
    for off, at in canon.items():
        aliases.setdefault(at, []).append(off)
    by_instruction: dict[int, frozenset] = {}
    for n, i in enumerate(real):
        nxt = {real[n + 1].offset} if n + 1 < len(real) else set()
        if i.opcode in jumps and isinstance(i.argval, int):
            nxt.add(canon.get(i.argval, i.argval))
        nxt.update(canon.get(t, t) for s, e, t in entries if s <= i.offset <= e)
        if i.opname == "RERAISE":
            nxt |= handlers
        by_instruction[i.offset] = frozenset(u for x in nxt for u in aliases.get(x, [x]))
    # by every code unit (the lookup on each opcode event is then one subscript), and -1: the
    # first event of a frame may be anywhere
    succ: dict[int, frozenset] = {off: by_instruction[at] for off, at in canon.items()}
    succ[-1] = frozenset(canon)
    reraise = frozenset(i.offset for i in real if i.opname == "RERAISE")
    return canon, succ, reraise


# What `_NameGuard` expects of a builtin the test file never binds: not in the module at all.
_ABSENT = object()


def _load_table(
    code, expect: dict[str, object], builtin: dict[str, object] | None = None
) -> dict[int, tuple]:
    """{offset: (name, expected object, expected builtin)} of the `LOAD_GLOBAL`s in `code` (its
    own, not its nested code's) of the names `expect` covers; the builtin (`builtin`'s entry,
    `_ABSENT` when it has none) is what the `builtins` module must hold under a name expected
    absent from the module."""
    import dis

    builtin = builtin or {}
    out = {}
    for ins in dis.get_instructions(code):
        name = _BUILTIN_OPS.get(ins.opname) if ins.opname != "LOAD_GLOBAL" else ins.argval
        if name is not None and name in expect:
            out[ins.offset] = (name, expect[name], builtin.get(name, _ABSENT))
    return out


def _guard_space(mod, pin: _Pin) -> tuple | None:
    """(globals, {name: object}, {name: builtin}) of a pinned test module whose namespace held
    what its file binds at collection, {name: _ABSENT} for the builtins it reads, and those
    builtins as the interpreter had them when pytest loaded us: `_NameGuard`'s."""
    g = getattr(mod, "__dict__", None)
    if type(g) is not dict:
        return None
    expect: dict[str, object] = {k: g.get(k) for k in pin.binds}
    expect.update((k, _ABSENT) for k in pin.foreign)
    then = _state["builtins"][1] if _state is not None else {}
    return g, expect, {k: then[k] for k in pin.foreign if k in then}


def _phase(item, when: str):
    """The hook-wrapper body around a test phase (`pytest_runtest_setup`/`call`): the call's
    checks and `_NameGuard` as the trace function (call phase), the refactor `_CallWatch` as
    the profile function (setup and call: a fixture may call the caller), for this thread and
    threads started meanwhile; afterwards the functions set before are put back, and a phase
    that ended with another trace or profile function in place, a guarded frame unreturned or
    a pinned name seen swapped fails the test."""
    if _state is None:
        yield
        return
    threading = sys.modules["threading"]  # imported by `_import_stdlib`, workspace off the path
    watch = _state["calls"]
    watch = None if watch is None or watch.done else watch
    guard = None
    if when == "call":
        _call_checks(item)
        if _state["trace"] is None and _state["guards"]:  # a C tracer (coverage) stays as it was
            guard = _NameGuard(_state["guards"], _state["builtins"][0])
    before = (sys.gettrace(), sys.getprofile(), threading.getprofile(), threading.gettrace())
    if watch is not None:
        threading.setprofile(watch.hook)
        sys.setprofile(watch.hook)
    if guard is not None:
        threading.settrace(guard.hook)  # a thread the test starts runs guarded too
        sys.settrace(guard.hook)
    try:
        yield
    finally:
        now_trace, now_profile = sys.gettrace(), sys.getprofile()
        now_threads = threading.gettrace()
        sys.settrace(before[0])
        sys.setprofile(before[1])
        threading.setprofile(before[2])
        threading.settrace(before[3])
        bad = False
        if guard is not None:
            bad = now_trace is not guard.hook or now_threads is not guard.hook
            bad = bad or guard.changed or guard.open != 0
        if watch is not None:  # the hook removes itself when done
            bad = bad or (now_profile != watch.hook and not (watch.done and now_profile is None))
        if bad:
            _state["swapped"].add(item.nodeid)


def pytest_runtest_setup(item):
    yield from _phase(item, "setup")


def pytest_runtest_call(item):
    yield from _phase(item, "call")


# pluggy's mark for a hook wrapper, set by hand: this module imports nothing from pytest
for _hook in (pytest_runtest_setup, pytest_runtest_call):
    _hook.pytest_impl = {  # type: ignore[attr-defined]
        "wrapper": False, "hookwrapper": True, "optionalhook": False, "tryfirst": False,
        "trylast": False, "specname": None,
    }  # fmt: skip


def _trusted_file(filename: str, test_file: str) -> bool:
    """Whether code in `filename` may skip or xfail the test in `test_file`: the test's own
    module, a conftest.py (the grader checks every loaded one against the task), or anything
    outside the workspace (pytest, plugins, the standard library). Not the code under test."""
    if filename.startswith("<frozen "):
        return True
    real = os.path.realpath(filename)
    if real == test_file or os.path.basename(real) == "conftest.py" or _under(real, _DIR):
        return True
    return not _under(real, _WORKSPACE)


def _raised_by_untrusted(tb, test_file: str) -> bool:
    """Whether a frame the exception passed through is untrusted code (see `_trusted_file`)."""
    while tb is not None:
        if not _trusted_file(tb.tb_frame.f_code.co_filename, test_file):
            return True
        tb = tb.tb_next
    return False


# The names under which a test's author calls what skips or xfails it (`pytest.skip`,
# `pytest.xfail`, `pytest.importorskip`, `self.skipTest`, `raise unittest.SkipTest`).
_SKIP_NAMES = frozenset({"skip", "xfail", "importorskip", "skipTest", "SkipTest"})


def _aliased_skip(tb) -> bool:
    """Whether a skip/xfail whose frames are all trusted was reached under another name: with
    `f = pytest.xfail` in the package (or a `functools.partial` of it) no frame of the package
    lies between the test and the xfail, so `_raised_by_untrusted` sees only the test and pytest,
    and a passing-to-passing test the submission broke came back "xfailed", which counts as
    passing (PASS_TO_PASS, and a refactor's green run). The last workspace frame (the test, a
    helper in it, or a conftest) must have raised it with `raise` or called it by one of
    `_SKIP_NAMES`; a call under any other name, or one we cannot read, counts as aliased."""
    last = None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.startswith("<frozen ") and _under(os.path.realpath(name), _WORKSPACE):
            last = tb
        tb = tb.tb_next
    if last is None:
        return False  # raised by pytest or the standard library alone (markers, skipIf)
    return _callee(last.tb_frame.f_code, last.tb_lasti) not in _SKIP_NAMES | {"<raise>"}


def _callee(code, lasti: int) -> str | None:
    """The name a frame's current instruction calls (`pytest.xfail(...)` → "xfail"), "<raise>"
    for a `raise` statement, None when it cannot be told."""
    import ast
    import dis
    import linecache

    try:
        # the instruction at `lasti`, or the one whose inline caches it points into (3.11)
        ins = None
        for i in dis.get_instructions(code):
            if i.offset > lasti:
                break
            ins = i
        if ins is None:
            return None
        if ins.opname in ("RAISE_VARARGS", "RERAISE"):
            return "<raise>"
        pos = ins.positions
        if pos is None or None in (pos.lineno, pos.end_lineno, pos.col_offset, pos.end_col_offset):
            return None
        lines = linecache.getlines(code.co_filename)[pos.lineno - 1 : pos.end_lineno]
        if not lines:
            return None
        lines[-1] = lines[-1].encode("utf-8")[: pos.end_col_offset].decode("utf-8", "replace")
        lines[0] = lines[0].encode("utf-8")[pos.col_offset :].decode("utf-8", "replace")
        node = ast.parse("".join(lines).strip(), mode="eval").body
    except (SyntaxError, ValueError, UnicodeError):
        return None
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _write(fd: int, line: str) -> None:
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    except OSError:
        return  # a lost record counts against the submission, never for it


def outcome_of(report) -> str | None:
    """One phase's outcome in the `-rA` vocabulary (None: nothing to report for this phase)."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.passed:
            return "xpassed" if xfail else "passed"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "failed"
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


# ---- hooks --------------------------------------------------------------------------------------


def pytest_configure(config):
    if _state is not None:
        _state["root"] = str(config.rootpath)


def pytest_plugin_registered(plugin, plugin_name, manager):
    if _state is None:
        return
    f = getattr(plugin, "__file__", None)
    if isinstance(f, str) and os.path.basename(f) == "conftest.py":
        real = os.path.realpath(f)
        try:
            with open(real, "rb") as fh:
                digest = _state["sha256"](fh.read()).hexdigest()
        except OSError:
            digest = ""
        _state["conftests"][real] = digest


def pytest_collectreport(report):
    if _state is None:
        return
    if report.failed or (report.skipped and _skipped_by_untrusted(report)):
        _state["emit"]({"k": "test", "id": report.nodeid, "o": "error"})


def _skipped_by_untrusted(report) -> bool:
    """A collection skip raised by the code under test (`pytest.skip(allow_module_level=True)`
    in the graded package takes every test module importing it out of the run, leaving a
    "green" run of the rest). pytest records where the skip was raised in `longrepr`."""
    where = report.longrepr[0] if isinstance(report.longrepr, tuple) else None
    if not isinstance(where, str):
        return True  # no location: not a skip we can vouch for
    # the collected file's id is relative to the rootdir, the skip's location to the cwd
    module = os.path.realpath(os.path.join(_state["root"], str(report.fspath)))
    return not _trusted_file(where, module)


def pytest_runtest_makereport(item, call):
    """Note a phase skipped or xfailed by the code under test: `pytest.xfail()` (or
    `pytest.skip()`) called from the graded package turned every test that reached it into
    "xfailed", which counts as passing, so a submission whose functions all just called
    `pytest.xfail()` resolved the task (session 21). Such a phase is reported failed (call) or
    an error (setup/teardown). Returns None: pytest builds the report as usual."""
    if _state is None:
        return None
    if call.when == "call":
        try:
            swapped = _swapped(item) is not None
        except Exception:  # a check that cannot be made fails closed
            swapped = True
        if swapped:
            _state["swapped"].add(item.nodeid)
    if call.excinfo is None:
        return None
    if not isinstance(call.excinfo.value, _state["skips"]):
        # the phase raised: whatever report is built from it, it did not pass (session 24: a
        # package patching pytest's report class turned raising tests into "passed")
        _state["raised"].add((item.nodeid, call.when))
        return None
    test_file = os.path.realpath(str(getattr(item, "path", None) or item.fspath))
    tb = call.excinfo.tb
    if _raised_by_untrusted(tb, test_file) or _aliased_skip(tb):
        _state["forced"].add((item.nodeid, call.when))
    return None


def pytest_runtest_logreport(report):
    if _state is None:
        return
    got = outcome_of(report)
    if (report.nodeid, report.when) in _state["raised"] and got in (None, "passed", "xpassed"):
        got = "failed" if report.when == "call" else "error"  # a report that contradicts the call
    if got is None:
        return
    if got in ("skipped", "xfailed") and (report.nodeid, report.when) in _state["forced"]:
        got = "failed" if report.when == "call" else "error"
    if report.when == "call" and report.nodeid in _state["swapped"]:
        got = "failed"  # the test that ran is not the one collected (`_swapped`)
    prev = _state["outcomes"].get(report.nodeid)
    if prev is None or _SEVERITY[got] > _SEVERITY[prev]:
        _state["outcomes"][report.nodeid] = got


def pytest_runtest_logfinish(nodeid, location):
    if _state is None:
        return
    got = _state["outcomes"].pop(nodeid, None)
    if got is not None:
        _state["emit"]({"k": "test", "id": nodeid, "o": got})


def pytest_sessionfinish(session, exitstatus):
    if _state is None:
        return
    # Tests still pending here never finished their teardown (interrupted): not reported.
    conftests = sorted(_state["conftests"].items())
    end = {"k": "end", "runner": "pytest", "exitstatus": int(exitstatus), "conftests": conftests}
    if _state["calls"] is not None:
        end["calls"] = _state["calls"].record()
    _state["emit"](end)


_activate()
