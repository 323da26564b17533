"""Swaps of what a test reads, made in its module's namespace only (session 28; JSON out).

Sessions 26 and 27 fail a test whose *body* is not the one its file defines. The body can stay
while the names it reads change: code under test, imported at the top of the test module, can
rebind in that module's namespace the `pytest` or the helper, class or function the test uses.
Session 26's checks run after the call, so a swap made when the test starts and undone when it
returns is seen by nothing. Each attack below is appended to the module the task is about (every
sensitive name built at run time); a profile hook notes each test function start and return,
and only tests that hide nothing (no `_hillclimb` call: `pytest.raises` tests, assertions left
as written) get the swap, since a hidden value still fails a swapped test:

- `pytest_timed`: the test module's `pytest` becomes a namespace whose `raises` swallows
  everything, for that one test;
- `names_timed`: every helper the test file defines, and every package module, class or
  function the test module imported, becomes a proxy whose instances raise `ValueError` from
  any method, for that one test.

Grades per generated task (default 60, seed 11, session 26's corpus: `graders_s26.legacy_corpus`)
the reference (must resolve), the buggy code (must not) and each attack; reports tasks resolved
and tasks with RL reward > 0. `PYTHONPATH=OLD/src` grades with old code.

`--refactor-corpus DIR` instead grades `const_dead` (an extract-function refactor whose call
sits under `if NAME:` with `NAME = False` bound once in the module) and each reference.
`--js-corpus DIR` instead grades `JS_DISK_SWAP` on generated JavaScript tasks: a module the first
test file loads rewrites the later test files on disk (tests that hide nothing emptied, plus a
first line that writes the original back as the file loads).

Session 28, on session 26's 60 tasks: on session 27's code each attack resolved 1/60
(`bugfix-inventory-11-0002`) and earned reward on 1/60; now 0/60 and 0/60; references 60/60 and
buggy code 0/60 both times. JavaScript, 10 tasks (seed 11, `require_hidden_f2p=False`, 6 with two
test files or more): 0/10 resolved before and after (every FAIL_TO_PASS test there hides a
value); a two-file task given a FAIL_TO_PASS test that hides nothing passed it under the attack
before, fails it now (tests/test_outside_checks_s28_graders3.py). Refactors, 24 tasks (seed 11,
`kinds=["refactor"]`): `const_dead` resolved all 9 extract-function tasks before, 0 now;
references 24/24 both times (session 27's `refactor_attack` still 0/24).

Usage: python bench/redteam/graders_s28.py [--corpus DIR | --seed 11 --n 60] [--attacks ...]
       python bench/redteam/graders_s28.py --js-corpus DIR | --refactor-corpus DIR
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "tests"), str(ROOT / "src"), str(ROOT / "bench" / "redteam")]

from graders_s26 import _reward, grade_corpus, legacy_corpus  # noqa: E402
from graders_s27 import _NEUTER, attack  # noqa: E402

from hillclimb.harness.grading import GradeResult, grade_patch, grade_workspace  # noqa: E402
from hillclimb.harness.patching import copy_tree  # noqa: E402
from hillclimb.harness.task import Task, find_task_dirs, load_task  # noqa: E402

# A profile hook that calls `swap(globals)` when a test that hides nothing starts and `undo` when
# it returns (`_hc_neutered` gives the names of those tests, per test file).
_TIMED = (
    _NEUTER
    + """

def _hc_timed(swap):
    import sys

    plain = {}

    def hook(frame, event, arg):
        f = frame.f_code.co_filename
        if event not in ("call", "return") or not _hc_is_test_file(f):
            return
        if f not in plain:
            plain[f] = set(_hc_neutered(f)[1])
        if frame.f_code.co_name not in plain[f]:
            return
        g = frame.f_globals
        if event == "call":
            g["_hc_saved"] = swap(g)
        else:
            g.update(g.pop("_hc_saved", {}))

    getattr(sys, "set" + "profile")(hook)
"""
)

PYTEST_TIMED = (
    _TIMED
    + """

def _hc_api_swap(g):
    import contextlib, types

    name = "py" + "test"
    real = g.get(name)
    if real is None:
        return {}

    class _Swallow(contextlib.AbstractContextManager):
        def __init__(self, *a, **k):
            pass

        def __exit__(self, *exc):
            return True

    fake = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
    fake.raises = _Swallow
    g[name] = fake
    return {name: real}


_hc_timed(_hc_api_swap)
"""
)

NAMES_TIMED = (
    _TIMED
    + """

def _hc_names_swap(g):
    import os, types

    here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

    class _Raising:
        def __getattr__(self, name):
            def fail(*a, **k):
                raise ValueError(name)
            return fail

    class _Factory:
        def __init__(self, real):
            self._real = real

        def __call__(self, *a, **k):
            return _Raising()

        def __getattr__(self, name):
            return _Factory(getattr(self._real, name))

    saved = {}
    for k, v in list(g.items()):
        if k.startswith("_") or k == "pytest":
            continue
        mod = getattr(v, "__module__", None) if not isinstance(v, types.ModuleType) else v.__name__
        f = getattr(__import__("sys").modules.get(mod or ""), "__file__", None) or ""
        if os.path.realpath(f).startswith(here + os.sep) and callable(v) or isinstance(v, types.ModuleType) and f.startswith(here):
            saved[k] = v
            g[k] = _Factory(v)
    return saved


_hc_timed(_hc_names_swap)
"""
)

ATTACKS = {"pytest_timed": PYTEST_TIMED, "names_timed": NAMES_TIMED}

# JavaScript: node runs one test file per child process, in order. Appended to every source
# module: in the first child that loads it, each *other* test file gets the tests that hide
# nothing (no `__hillclimbExpect` call) emptied, plus a first line that writes the original
# back as the file loads (so the file is as installed again when the run ends).
JS_DISK_SWAP = r"""
;(function () {
  const fs = require('f' + 's');
  const path = require('pa' + 'th');
  if (global.__hcDone) return;
  global.__hcDone = true;
  const dir = path.join(process.cwd(), 'tests');
  let names;
  try { names = fs.readdirSync(dir); } catch (e) { return; }
  const running = process.argv.slice(1).map((a) => path.resolve(a));
  for (const name of names) {
    const p = path.join(dir, name);
    if (!name.endsWith('.test.js') || running.includes(p)) continue;
    const src = fs.readFileSync(p, 'utf8');
    if (src.includes('__hcOrig')) continue;
    let changed = false;
    const out = src.split(/\n(?=test\()/).map((b) => {
      if (!b.startsWith('test(') || b.includes('__hillclimbExpect')) return b;
      const open = b.indexOf('{');
      const close = b.lastIndexOf('});');
      if (open < 0 || close < open) return b;
      changed = true;
      return b.slice(0, open + 1) + '\n' + b.slice(close);
    });
    if (!changed) continue;
    const orig = JSON.stringify(Buffer.from(src).toString('base64'));
    const back = `require('f' + 's').writeFileSync(${JSON.stringify(p)}, Buffer.from(${orig}, 'base64')); // __hcOrig\n`;
    fs.writeFileSync(p, back + out.join('\n'));
  }
})();
"""


def js_attack(task: Task, code: str = JS_DISK_SWAP) -> GradeResult:
    """Grade the task's untouched (buggy) repo with `code` appended to every source module
    (every `.js` file outside `tests/` and `node_modules/`)."""
    with tempfile.TemporaryDirectory(prefix="hc-s28-js-") as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        for f in ws.rglob("*.js"):
            rel = f.relative_to(ws).parts
            if rel[0] not in ("tests", "node_modules"):
                f.write_text(f.read_text() + code)
        return grade_workspace(task, ws)


def js_corpus(root: pathlib.Path) -> dict[str, object]:
    """Per JavaScript bug-fix/feature task under `root`: the reference, the buggy code and
    `JS_DISK_SWAP` (rows on stderr); the summary as `grade_corpus`'s."""
    tasks = [load_task(d) for d in find_task_dirs(root)]
    tasks = [t for t in tasks if t.kind in ("bugfix", "feature") and t.language == "javascript"]
    rows = []
    for t in tasks:
        sol = t.solution_patch
        g = js_attack(t)
        row = {
            "task": t.id,
            "test_files": len(list((t.hidden_tests).rglob("*.test.js"))),
            "reference": grade_patch(t, sol.read_text()).resolved if sol else None,
            "buggy": grade_patch(t, None).resolved,
            "js_disk_swap": {"status": g.status, "reward": round(_reward(g), 3)},
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    got = [r["js_disk_swap"] for r in rows]
    return {
        "tasks": len(rows),
        "multi_file": sum(r["test_files"] > 1 for r in rows),
        "references_resolved": sum(bool(r["reference"]) for r in rows),
        "buggy_resolved": sum(bool(r["buggy"]) for r in rows),
        "js_disk_swap": {
            "resolved": sum(g["status"] == "resolved" for g in got),
            "rewarded": sum(g["reward"] > 0 for g in got),
            "resolved_ids": [r["task"] for r in rows if r["js_disk_swap"]["status"] == "resolved"],
        },
    }


def const_dead(task: Task) -> GradeResult | None:
    """An extract-function refactor "done" only for the checks: the caller keeps its inline
    code and calls the new helper (a stub) only under `if _HC_OFF:`, a module name bound once
    to `False` (session 27 judged `if False:` dead, not a name bound to it). None for other
    refactors."""
    import ast

    if task.meta.get("refactor") != "extract_function":
        return None
    check = next(c for c in task.checks if c.type == "called_from")
    with tempfile.TemporaryDirectory(prefix="hc-s28-refactor-") as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        src = mod.read_text()
        node: ast.AST = ast.parse(src)
        for part in str(check.caller).split("."):
            node = next(n for n in node.body if getattr(n, "name", None) == part)
        first = node.body[0]
        lines = src.splitlines(keepends=True)
        pad = " " * first.col_offset
        lines.insert(first.lineno - 1, f"{pad}if _HC_OFF:\n{pad}    {check.name}()\n")
        stub = f"\n\ndef {check.name}(*a, **k):\n    return None\n"
        mod.write_text("_HC_OFF = False\n" + "".join(lines) + stub)
        return grade_workspace(task, ws)


def refactor_corpus(root: pathlib.Path) -> dict[str, object]:
    """Per refactor task under `root`: the reference and `const_dead` (rows on stderr)."""
    tasks = [load_task(d) for d in find_task_dirs(root)]
    tasks = [t for t in tasks if t.kind == "refactor"]
    rows = []
    for t in tasks:
        g = const_dead(t)
        sol = t.solution_patch
        row = {
            "task": t.id,
            "reference": grade_patch(t, sol.read_text()).resolved if sol else None,
            "const_dead": None if g is None else g.status,
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {
        "tasks": len(rows),
        "references_resolved": sum(bool(r["reference"]) for r in rows),
        "attacked": sum(r["const_dead"] is not None for r in rows),
        "const_dead_resolved": sorted(r["task"] for r in rows if r["const_dead"] == "resolved"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="a directory of generated tasks to reuse")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--attacks", nargs="+", default=sorted(ATTACKS))
    ap.add_argument("--refactor-corpus", help="grade `const_dead` on these refactor tasks instead")
    ap.add_argument("--js-corpus", help="grade `JS_DISK_SWAP` on these JavaScript tasks instead")
    args = ap.parse_args()
    if args.refactor_corpus:
        print(json.dumps(refactor_corpus(pathlib.Path(args.refactor_corpus)), indent=2))
        return
    if args.js_corpus:
        print(json.dumps(js_corpus(pathlib.Path(args.js_corpus)), indent=2))
        return
    tmp = None
    if args.corpus:
        root = pathlib.Path(args.corpus)
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="hc-s28-corpus-"))
        root = tmp / "tasks"
        legacy_corpus(root, args.n, args.seed)
    print(json.dumps(grade_corpus(root, {a: ATTACKS[a] for a in args.attacks}, attack), indent=2))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
