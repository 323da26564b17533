"""Does code that reads the hidden tests resolve generated harness tasks? (session 25; JSON out)

Generates Python bug-fix/feature tasks (seeds 1 and 2, 5 each, as the session measured) and
grades, per task with a module-level function: the reference patch (must resolve), the
untouched buggy code (must not), and each attack of `tests/test_outside_checks_s25_harnessread.py`
(`ATTACKS`: read the hidden test file at import / at call time, or the test functions' bytecode
constants in-process through names built at run time; each returns what the test asserts).
Default run, session 25: 8 tasks; the code before the grader hid the expected values
(`PYTHONPATH=OLD/src`) resolved 7/8 (disk, import), 7/8 (disk, call), 4/8 (in-process); after: 0;
references 8/8, buggy code 0/8.

Usage: python bench/redteam/hidden_tests.py [--seeds 1,2] [--n 5]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
from collections import Counter

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path += [str(ROOT / "tests"), str(ROOT / "src")]  # PYTHONPATH=OLD/src compares old code

import test_outside_checks_s25_harnessread as attacks  # noqa: E402
from hillclimb.harness.grading import grade_patch  # noqa: E402
from hillclimb.harness.task import find_task_dirs, load_task  # noqa: E402
from hillclimb.harness.taskgen.generate import generate_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--n", type=int, default=5)
    args = ap.parse_args()
    resolved: Counter[str] = Counter()
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            out = pathlib.Path(tmp) / str(seed)
            generate_tasks(
                out, args.n, seed=seed, kinds=["bugfix", "feature"], languages=["python"]
            )
            for d in find_task_dirs(out):
                task = load_task(d)
                if "." in task.meta["function"]:
                    continue  # the attacks wrap module-level functions
                n += 1
                resolved["reference"] += grade_patch(task, task.solution_patch.read_text()).resolved
                resolved["buggy"] += grade_patch(task, None).resolved
                for name in sorted(attacks.ATTACKS):
                    resolved[name] += attacks.attack_grade(task, name).resolved
    print(json.dumps({"bench": "redteam_hidden_tests", "tasks": n, "resolved": dict(resolved)}))


if __name__ == "__main__":
    main()
