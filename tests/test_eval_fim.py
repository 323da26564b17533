"""`--suite fim`: items are single body lines cut from real sources with their prefix and
suffix, seeded; scoring is strict exact match with partial credit; the suite runs on a
checkpoint end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.eval.fim_suite import make_items, score

SRC = '''import os


def area(w, h):
    """Area of a rectangle."""
    total = w * h
    return total


class Box:
    def volume(self, d):
        base = area(self.w, self.h)
        return base * d
'''


def test_items_are_body_lines_with_their_context(tmp_path: Path):
    for i in range(3):
        (tmp_path / f"m{i}.py").write_text(SRC)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text(SRC)  # test trees are skipped
    items = make_items(10, seed=1, root=tmp_path)
    assert len(items) == 3 and {it["source"] for it in items} == {"m0.py", "m1.py", "m2.py"}
    for it in items:
        assert it["prefix"] + it["middle"] + it["suffix"] == SRC[: len(it["prefix"]) + len(
            it["middle"]) + len(it["suffix"])]  # fmt: skip
        assert it["middle"].strip() in {"total = w * h", "return total",
                                         "base = area(self.w, self.h)", "return base * d"}  # fmt: skip
    assert make_items(10, seed=1, root=tmp_path) == items  # seeded
    with pytest.raises(HillclimbError, match="no Python standard library"):
        make_items(3, 0, root=tmp_path / "tests" / "none")


def test_score_exact_prefix_and_failure_shapes():
    s = score("    total = w * h", "    total = w * h\n    return")
    assert s["exact"] and s["exact_stripped"] and s["prefix_match"] == 1.0
    s = score("    total = w * h", "total = w * h")
    assert not s["exact"] and s["exact_stripped"]
    s = score("    total = w * h", "    total = w + h")
    assert s["prefix_match"] == pytest.approx(14 / 17) and not s["exact_stripped"]
    assert score("x = 1", "")["empty"] and score("x = 1", "```python\nx = 1")["fence"]


def test_suite_runs_on_a_checkpoint(tmp_path: Path, capsys):
    import json

    ck = tmp_path / "ck"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(ck), "--seed", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(ck), "--suite", "fim", "--n-items", "4",
                 "--max-tokens", "8", "--json"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert res["n_items"] == 4 and len(res["items"]) == 4
    assert set(res["metrics"]) == {"exact", "exact_stripped", "prefix_match", "empty", "fence"}
    assert all(0 <= m["value"] <= 1 for m in res["metrics"].values())
    assert res["efficiency"]["items"] == 4
    assert set(res["baseline"]) == {"what", "exact_stripped", "prefix_match"}
