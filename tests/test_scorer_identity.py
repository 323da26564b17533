"""`scorer_sha256`: results name the code that made their items and judged them.

Why: checkers became stricter every session (hedges, hidden cases, held-out twins); a result
scored by older code was compared with today's as like for like, and `hillclimb_version` (a
release number) could not tell them apart. The hash covers the problem generators and checkers,
the evaluation package but its arena/routing/CLI, and the harness's grading.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import hillclimb

SRC = Path(hillclimb.__file__).resolve().parent


def _hash_of(copy: Path) -> str:
    code = "from hillclimb.eval.core import scorer_sha256; print(scorer_sha256())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_the_scorer_hash_follows_the_checkers_not_the_reports(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "hillclimb", ignore=shutil.ignore_patterns("__pycache__"))
    base = _hash_of(copy)
    assert len(base) == 64 and base == _hash_of(copy)  # deterministic
    for rel in ("eval/cli.py", "eval/arena/models.py", "serve/engine.py", "climb/report.py"):
        with open(copy / "hillclimb" / rel, "a") as f:
            f.write("\n# an edit that scores nothing\n")
    assert _hash_of(copy) == base
    for rel in ("problems/verify.py", "eval/programs.py", "harness/grading.py"):
        f = copy / "hillclimb" / rel
        before = f.read_bytes()
        f.write_bytes(before + b"\n# a checker edit\n")
        assert _hash_of(copy) != base, rel
        f.write_bytes(before)
    assert _hash_of(copy) == base


def test_model_identity_carries_the_scorer(tmp_path: Path) -> None:
    from hillclimb.eval.core import model_identity, scorer_sha256

    (tmp_path / "tokenizer.json").write_text("{}")
    assert model_identity(tmp_path)["scorer_sha256"] == scorer_sha256()
