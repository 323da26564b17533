"""Does code under test that swaps the tests it is judged by earn reward? (session 26; JSON out)

Generates Python bug-fix/feature tasks (default: 60, seed 11, as session 26 measured; or reuses
`--corpus DIR`) and grades, per task: the reference patch (must resolve), the untouched buggy
code (must not), and each attack of `tests/test_outside_checks_s26_redteam.py` (`ATTACKS`,
appended to the module the task is about, every sensitive name built at run time): a thread
that gives each test with nothing hidden in it a no-op body (`body_swap`), `pytest.raises`
replaced by a context manager that swallows everything (`api_swap`), the test modules' `pytest`
replaced by a namespace holding that (`module_swap`). Reports per attack the tasks resolved, the
tasks with reward > 0 under the harness RL reward (`rl.harness.episode_reward`: 0.5 x the
FAIL_TO_PASS share for an unresolved episode whose PASS_TO_PASS tests all pass) and its mean.

Session 26, 60 tasks (30 bug-fix, 30 feature, seed 11): before the fix (`PYTHONPATH=OLD/src`)
each attack resolved 1/60 (bugfix-inventory-11-0002, whose only FAIL_TO_PASS test is a
`pytest.raises` test) and earned reward on 11/60 (mean 0.049 body_swap, 0.0485 the others);
after: 0/60 resolved, 0/60 rewarded; references 60/60 and buggy code 0/60 both times.

Usage: python bench/redteam/graders_s26.py [--corpus DIR | --seed 11 --n 60] [--attacks ...]
"""

from __future__ import annotations

import argparse
import inspect
import json
import pathlib
import shutil
import sys
import tempfile
import types
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "tests"), str(ROOT / "src")]  # PYTHONPATH=OLD/src compares old code

import test_outside_checks_s26_redteam as redteam  # noqa: E402
from hillclimb.harness.grading import GradeResult, grade_patch, grade_workspace  # noqa: E402
from hillclimb.harness.patching import copy_tree  # noqa: E402
from hillclimb.harness.task import Task, find_task_dirs, load_task  # noqa: E402
from hillclimb.harness.taskgen.generate import generate_tasks  # noqa: E402
from hillclimb.rl.harness import episode_reward  # noqa: E402


def _reward(g: GradeResult) -> float:
    return episode_reward(types.SimpleNamespace(grade=g.to_json(), resolved=g.resolved, edits=[]))


def _attack(task: Task, code: str) -> GradeResult:
    with tempfile.TemporaryDirectory(prefix="hc-s26-graders-") as tmp:
        ws = pathlib.Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        mod = ws / task.meta["module"]
        mod.write_text(mod.read_text() + code)
        return grade_workspace(task, ws)


def legacy_corpus(root: pathlib.Path, n: int, seed: int) -> None:
    """Session 26's corpus: since session 27 the generator discards tasks whose FAIL_TO_PASS
    tests all hide nothing (`require_hidden_f2p`), the very tasks these attacks resolved; old
    code (`PYTHONPATH=OLD/src`) has no such switch."""
    keep = "require_hidden_f2p" in inspect.signature(generate_tasks).parameters
    extra = {"require_hidden_f2p": False} if keep else {}
    generate_tasks(root, n, seed=seed, kinds=["bugfix", "feature"], **extra)


def grade_corpus(
    root: pathlib.Path, attacks: dict[str, str], attack: Callable[[Task, str], GradeResult]
) -> dict[str, object]:
    """Per Python bug-fix/feature task under `root`: the reference, the buggy code and each
    attack (a row on stderr as it finishes); the summary per attack (resolved, rewarded)."""
    tasks = [load_task(d) for d in find_task_dirs(root)]
    tasks = [t for t in tasks if t.kind in ("bugfix", "feature") and t.language == "python"]
    rows = []
    for t in tasks:
        sol = t.solution_patch
        row = {
            "task": t.id,
            "reference": grade_patch(t, sol.read_text()).resolved if sol else None,
            "buggy": grade_patch(t, None).resolved,
        }
        for name, code in attacks.items():
            g = attack(t, code)
            row[name] = {"status": g.status, "reward": round(_reward(g), 3)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    summary: dict[str, object] = {
        "tasks": len(rows),
        "references_resolved": sum(bool(r["reference"]) for r in rows),
        "buggy_resolved": sum(bool(r["buggy"]) for r in rows),
    }
    for name in attacks:
        got = [r[name] for r in rows]
        summary[name] = {
            "resolved": sum(g["status"] == "resolved" for g in got),
            "rewarded": sum(g["reward"] > 0 for g in got),
            "mean_reward": round(sum(g["reward"] for g in got) / max(1, len(got)), 4),
            "resolved_ids": [r["task"] for r in rows if r[name]["status"] == "resolved"],
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="a directory of generated tasks to reuse")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--attacks", nargs="+", default=sorted(redteam.ATTACKS))
    args = ap.parse_args()
    tmp = None
    if args.corpus:
        root = pathlib.Path(args.corpus)
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="hc-s26-corpus-"))
        root = tmp / "tasks"
        legacy_corpus(root, args.n, args.seed)
    summary = grade_corpus(root, {a: redteam.ATTACKS[a] for a in args.attacks}, _attack)
    print(json.dumps(summary, indent=2))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
