"""Swaps made before pytest collects the tests, under the test file's own name (session 27; JSON out).

Session 26's reporter notes each test's body at collection and fails a test whose body changed
after, or whose body is code from another file. Code under test that runs earlier — it is
imported at the top of the test module, so it runs while that module is still executing — can
make the collected body itself a different one, compiled under the test file's own filename.
Each attack below is appended to the module the task is about; every sensitive name is built
at run time, and a test is neutered only when nothing in it is hidden (no `_hillclimb` call:
`pytest.raises` tests, assertions left as written), since a hidden value still fails it:

- `code_swap`: a profile hook sees the test module's `<module>` frame return (before pytest
  collects it), recompiles the test file with those tests' bodies replaced by `pass` (same
  signature, decorators and filename) and sets each function's `__code__`;
- `dict_swap`: the same moment, but the recompiled source is executed into the module's own
  namespace (new function objects, the module dict patched);
- `disk_swap`: at import, rewrites on disk the test files not imported yet (multi-file suites:
  pytest then compiles the rewritten text itself).

Grades per generated task (default 60, seed 11, as session 26): the reference (must resolve),
the buggy code (must not) and each attack; reports tasks resolved and tasks with RL reward > 0
(`rl.harness.episode_reward`). `PYTHONPATH=OLD/src` grades with old code.

`--refactor-corpus DIR` instead grades `refactor_attack` (structural checks met only with names
bound at run time or a call in dead code) on generated refactor tasks.

Usage: python bench/redteam/graders_s27.py [--corpus DIR | --seed 11 --n 60] [--attacks ...]
       python bench/redteam/graders_s27.py --refactor-corpus DIR
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [
    str(ROOT / "tests"),
    str(ROOT / "src"),
    str(ROOT / "bench" / "redteam"),
]  # PYTHONPATH=OLD/src: old code

from graders_s26 import grade_corpus, legacy_corpus  # noqa: E402

from hillclimb.harness.grading import GradeResult, grade_workspace  # noqa: E402
from hillclimb.harness.patching import copy_tree  # noqa: E402
from hillclimb.harness.task import Task, find_task_dirs, load_task  # noqa: E402

# Shared by the attacks: the test file's source with every test that hides nothing emptied.
_NEUTER = """

def _hc_neutered(path):
    import ast

    with open(path, "rb") as f:
        tree = ast.parse(f.read())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            used = {getattr(n, "id", None) or getattr(n, "attr", "") for n in ast.walk(node)}
            if not any(str(u).startswith("_hill" + "climb") for u in used):
                node.body = [ast.Pass()]
                names.append(node.name)
    return ast.unparse(tree), names


def _hc_is_test_file(path):
    import os

    base = os.path.basename(path or "")
    return "/tests/" in (path or "") and base.startswith("test") and base.endswith(".py")
"""

CODE_SWAP = (
    _NEUTER
    + """

def _hc_code_swap():
    import sys

    done = set()

    def hook(frame, event, arg):
        f = frame.f_code.co_filename
        if event != "return" or frame.f_code.co_name != "<module>" or f in done:
            return
        if not _hc_is_test_file(f):
            return
        done.add(f)
        src, names = _hc_neutered(f)
        ns = {}
        exec(compile(src, f, "exec"), dict(frame.f_globals), ns)
        g = frame.f_globals
        for k in names:
            new = ns.get(k)
            old = g.get(k)
            if new is not None and old is not None and hasattr(old, "__code__"):
                old.__code__ = new.__code__
            for v in list(g.values()):  # methods of test classes
                m = vars(v).get(k) if isinstance(v, type) else None
                if m is not None and hasattr(m, "__code__"):
                    for c in ns.values():
                        n = vars(c).get(k) if isinstance(c, type) else None
                        if n is not None and c.__name__ == v.__name__:
                            m.__code__ = n.__code__

    getattr(sys, "set" + "profile")(hook)


_hc_code_swap()
"""
)

DICT_SWAP = (
    _NEUTER
    + """

def _hc_dict_swap():
    import sys

    done = set()

    def hook(frame, event, arg):
        f = frame.f_code.co_filename
        if event != "return" or frame.f_code.co_name != "<module>" or f in done:
            return
        if not _hc_is_test_file(f):
            return
        done.add(f)
        src, names = _hc_neutered(f)
        if names:
            exec(compile(src, f, "exec"), frame.f_globals)

    getattr(sys, "set" + "profile")(hook)


_hc_dict_swap()
"""
)

DISK_SWAP = (
    _NEUTER
    + """

def _hc_disk_swap():
    import os, sys

    loaded = {os.path.realpath(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())}
    here = os.path.dirname(os.path.realpath(__file__))
    for root in {here, os.path.dirname(here), os.getcwd()}:
        tests = os.path.join(root, "tests")
        if not os.path.isdir(tests):
            continue
        for dirpath, _dirs, files in os.walk(tests):
            for name in files:
                p = os.path.realpath(os.path.join(dirpath, name))
                if _hc_is_test_file(p) and p not in loaded:
                    src, names = _hc_neutered(p)
                    if names:
                        with open(p, "w") as f:
                            f.write(src)


_hc_disk_swap()
"""
)

ATTACKS = {"code_swap": CODE_SWAP, "dict_swap": DICT_SWAP, "disk_swap": DISK_SWAP}


def refactor_attack(task: Task) -> GradeResult | None:
    """A refactor "done" only for the structural checks, with names built at run time.

    rename: the reference rename, then the old name bound again to the new function under a
    name no string spells (`setattr` of `"".join(reversed(...))`); extract_function: the
    untouched code plus the helper, called from the caller only under `if False:`."""
    import ast

    with tempfile.TemporaryDirectory(prefix="hc-s27-refactor-") as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        if task.meta.get("refactor") == "rename" and task.solution_patch is not None:
            from hillclimb.harness.patching import apply_patch

            if not apply_patch(ws, task.solution_patch.read_text()).ok:
                return None
            new = next(c.name for c in task.checks if c.type == "function_exists")
            owner, _, attr = new.rpartition(".")
            spelled = repr(task.meta["old"][::-1])
            target = owner or "__import__('sys').modules[__name__]"
            mod.write_text(
                mod.read_text() + f"\nsetattr({target}, ''.join(reversed({spelled})), {new})\n"
            )
        elif task.meta.get("refactor") == "extract_function":
            check = next(c for c in task.checks if c.type == "called_from")
            src = mod.read_text()
            node: ast.AST = ast.parse(src)
            for part in str(check.caller).split("."):
                node = next(n for n in node.body if getattr(n, "name", None) == part)
            first = node.body[0]
            lines = src.splitlines(keepends=True)
            pad = " " * first.col_offset
            lines.insert(first.lineno - 1, f"{pad}if False:\n{pad}    {check.name}()\n")
            mod.write_text("".join(lines) + f"\n\ndef {check.name}(*a, **k):\n    return None\n")
        else:
            return None
        return grade_workspace(task, ws)


def attack(task: Task, code: str) -> GradeResult:
    """Grade the task's untouched (buggy) repo with `code` appended to its module."""
    with tempfile.TemporaryDirectory(prefix="hc-s27-graders-") as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        mod.write_text(mod.read_text() + code)
        return grade_workspace(task, ws)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="a directory of generated tasks to reuse")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--attacks", nargs="+", default=sorted(ATTACKS))
    ap.add_argument(
        "--refactor-corpus", help="grade `refactor_attack` on these refactor tasks instead"
    )
    args = ap.parse_args()
    if args.refactor_corpus:
        ts = [load_task(d) for d in find_task_dirs(pathlib.Path(args.refactor_corpus))]
        ts = [t for t in ts if t.kind == "refactor"]
        got = {t.id: refactor_attack(t) for t in ts}
        print(json.dumps({
            "tasks": len(ts), "attacked": sum(g is not None for g in got.values()),
            "resolved": sorted(k for k, g in got.items() if g is not None and g.resolved),
        }, indent=2))  # fmt: skip
        return
    tmp = None
    if args.corpus:
        root = pathlib.Path(args.corpus)
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="hc-s27-corpus-"))
        root = tmp / "tasks"
        legacy_corpus(root, args.n, args.seed)
    print(json.dumps(grade_corpus(root, {a: ATTACKS[a] for a in args.attacks}, attack), indent=2))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
