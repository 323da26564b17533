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
    # 4 stdlib items + 4 // 10 -> 1 test-based item per tier (tier 1's one-line bodies have
    # no middle to cut: 3)
    assert res["n_text_items"] == 4 and res["n_test_items"] == 3
    assert res["n_items"] == 7 and len(res["items"]) == 7
    assert set(res["metrics"]) == {"exact", "exact_stripped", "prefix_match", "empty", "fence",
                                   "test_pass", "test_exact_stripped"}  # fmt: skip
    assert all(0 <= m["value"] <= 1 for m in res["metrics"].values())
    assert res["metrics"]["test_pass"]["n"] == 3
    assert res["efficiency"]["items"] == 7
    assert set(res["baseline"]) == {"what", "exact", "exact_stripped", "prefix_match", "test_pass",
                                    "test_exact_stripped"}  # fmt: skip


def test_test_based_items_pass_with_the_right_line_and_fail_without():
    """The removed line itself passes its function's tests, `pass` in its place fails; a
    different but equivalent line (same semantics, other spelling) also passes — what exact
    match cannot credit."""
    from hillclimb.eval.fim_suite import make_test_items, test_programs
    from hillclimb.eval.humaneval import hidden_paths
    from hillclimb.eval.programs import run_programs

    items = make_test_items(3, seed=0)
    assert len(items) >= 8 and len({it["id"] for it in items}) == len(items)
    assert make_test_items(3, seed=0) == items  # seeded
    for it in items:
        assert it["prefix"].startswith("def ") and '"""' in it["prefix"]
        assert it["suffix"].startswith("\n") and it["middle"].strip()
    right = run_programs(test_programs(items, [it["middle"] for it in items]), hide=hidden_paths())
    assert all(r.passed for r in right), [r.detail for r in right if not r.passed][:2]
    indent = [it["middle"][: len(it["middle"]) - len(it["middle"].lstrip())] for it in items]
    wrong = run_programs(test_programs(items, [i + "pass" for i in indent]), hide=hidden_paths())
    assert sum(r.passed for r in wrong) <= len(items) // 4
    # the same statement with redundant parentheses around a return value is not an exact
    # match, and still passes
    rets = [(it, it["middle"].replace("return ", "return (", 1) + ")") for it in items
            if it["middle"].lstrip().startswith("return ")]  # fmt: skip
    if rets:
        alt = run_programs(test_programs([i for i, _ in rets], [a for _, a in rets]),
                           hide=hidden_paths())  # fmt: skip
        assert all(r.passed for r in alt)


def test_fim_items_come_from_stdlib_files_no_corpus_ingests():
    """The default data recipe ingests this Python's stdlib (`python_env`); the FIM suite cuts
    its items from the stdlib. So a third of the stdlib files is held out: FIM items come only
    from those, and the python_env source skips exactly those (`heldout_eval`)."""
    import sysconfig

    from hillclimb.data.config import SourceConfig
    from hillclimb.data.sources import source_items
    from hillclimb.eval.fim_suite import stdlib_files
    from hillclimb.io import stdlib_heldout

    base = Path(sysconfig.get_paths()["stdlib"])
    fim = {p.relative_to(base).as_posix() for p in stdlib_files()}
    assert len(fim) >= 150 and all(stdlib_heldout(r) for r in fim)
    items = list(source_items(SourceConfig(kind="python_env", name="env", max_files=100_000)))
    std = {i.path.removeprefix("stdlib/"): i for i in items if i.path.startswith("stdlib/")}
    assert all(std[r].skip == "heldout_eval" for r in fim if r in std)
    assert not any(i.file for r, i in std.items() if stdlib_heldout(r))  # none read
    assert any(i.file for i in std.values())  # the other two thirds are ingested
    assert len(make_items(100, 0)) == 100
