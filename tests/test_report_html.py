"""`hillclimb report RUN`: one self-contained HTML file from a climb run or an eval output.

The fixtures are written here in the exact formats the stages write (stage markers, the trainer's
metrics/val/routing JSONL, RL metrics and curve records, `hillclimb-eval-v2`, `hillclimb-suite-v1`,
a speculative bench JSON), so the test takes a second instead of a climb's minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hillclimb.climb import report as R
from hillclimb.climb.html_report import SECTIONS, write_html_report
from hillclimb.errors import HillclimbError

ROOT = Path(__file__).resolve().parent.parent
EVIL = "</pre><script>alert('x')</script>"
FAMILIES = ["arith", "code_function"]
TIERS = [1, 2]
SPLITS = ["heldout", "heldout_phrasing"]


# ---- fixtures in the stages' formats --------------------------------------------------------------
def _jsonl(path: Path, recs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _stage(out: Path, dirname: str, key: str, seconds: float = 1.0) -> Path:
    d = out / dirname
    d.mkdir(parents=True, exist_ok=True)
    marker = {
        "format": "hillclimb-climb-stage-v1",
        "stage": key,
        "hash": "0" * 64,
        "section": {},
        "parents": [],
        "seconds": seconds,
        "finished": "2026-01-01T00:00:00+00:00",
        "result": {},
    }
    (d / "_started.json").write_text(json.dumps({"hash": "0" * 64}))
    (d / "_stage.json").write_text(json.dumps(marker))
    return d


def _train_run(run: Path, tokens_per_expert: list[int]) -> None:
    _jsonl(run / "metrics.jsonl", [{"step": s, "loss": 5.0 - s * 0.1} for s in range(1, 6)])
    _jsonl(run / "val.jsonl", [{"step": 5, "val_bpb": 2.5}])
    layers = [{"layer": i, "tokens_per_expert": tokens_per_expert} for i in range(2)]
    _jsonl(run / "routing.jsonl", [{"step": 5, "layers": layers}])


def _rl_run(run: Path) -> None:
    t = {"rollout_s": 1.0, "reward_s": 0.1, "update_s": 0.5, "sync_s": 0.01}
    steps = [
        {
            "step": s,
            "reward": 0.5,
            "pass_rate": 0.5,
            "completion_tokens": 100,
            "mean_tokens": 20.0,
            "logp_gap": 1e-7,
            "router_agreement": 1.0,
            "time": t,
        }
        for s in (1, 2)
    ]
    _jsonl(run / "metrics.jsonl", steps)
    cell = {"n": 8, "correct": 4, "accuracy": 0.5, "tokens_per_correct": 20.0}
    curve = [
        {
            "step": s,
            "split": "val",
            "accuracy": 0.5,
            "mean_tokens": 20.0,
            "cells": {"arith/1": cell},
        }
        for s in (0, 2)
    ]
    pareto = [
        {"step": s, "split": "val", "pareto": [{"budget": 4, "accuracy": 0.3, "mean_tokens": 9.0}]}
        for s in (0, 2)
    ]
    _jsonl(run / "curve.jsonl", curve + pareto)


def _tasks(acc: float) -> dict:
    cells, items, by_ft = [], [], {}
    for s in SPLITS:
        by_ft[s] = {}
        for f in FAMILIES:
            for t in TIERS:
                n, c = 10, round(acc * 10)
                cell = {
                    "n": n,
                    "correct": c,
                    "accuracy": c / n,
                    "truncated": 0,
                    "truncated_share": 0.0,
                    "statuses": {"pass": c, "fail": n - c},
                    "mean_completion_tokens": 10.0 * t,
                    "tokens_per_correct": 10.0 * t if c else None,
                    "baseline": {"lookup": 0.1, "majority": 0.0, "chance": None, "best": 0.1},
                    "pass_at_k": None,
                    "max_tokens": 64,
                    "family": f,
                    "tier": t,
                    "kind": "code" if f.startswith("code") else "reasoning",
                    "split": s,
                    "heldout_family": False,
                }
                cells.append(cell)
                by_ft[s].setdefault(f, {})[str(t)] = cell
                items += [
                    {"id": f"{f}/t{t}/{i}", "split": s, "family": f, "tier": t, "passed": i < c}
                    for i in range(n)
                ]
    samples = [
        {
            "id": f"{f}/t1/0",
            "family": f,
            "tier": 1,
            "split": "heldout",
            "prompt": f"a {f} problem",
            "expected": "18",
            "reasoning": "think",
            "content": EVIL if f == "code_function" else "The answer is 18.",
            "finish_reason": "stop",
            "status": "pass",
            "correct": f == "arith",
        }
        for f in FAMILIES
    ]
    splits = {
        s: {"accuracy": acc, "n": 40, "correct": int(40 * acc), "by_family_tier": by_ft[s]}
        for s in SPLITS
    }
    return {
        "format": "hillclimb-tasks-v2",
        "settings": {"n_per_tier": 10, "families": FAMILIES, "tiers": TIERS, "splits": SPLITS},
        "cells": cells,
        "splits": splits,
        "accuracy": acc,
        "finish_reasons": {"stop": 80},
        "samples": samples,
        "items": items,
    }


def _eval_rec(model: str, acc: float | None) -> dict:
    return {
        "format": "hillclimb-eval-v2",
        "model": f"/runs/{model}/final",
        "name": model,
        "preset": "thinking-micro",
        "bpb": {"val_bpb": 2.4, "unigram_bpb": 3.5},
        "tasks": _tasks(acc) if acc is not None else None,
        "seconds": 1.0,
    }


def make_climb_run(out: Path, *, rl: bool = True, evals: bool = True) -> Path:
    out.mkdir(parents=True)
    (out / "climb.json").write_text(json.dumps({"format": "hillclimb-climb-run-v1"}))
    _train_run(_stage(out, "04-pretrain-m", "pretrain-m") / "run", [6, 2, 0, 0])
    _stage(out, "05-sft-data", "sft-data")
    _train_run(_stage(out, "06-sft-m", "sft-m") / "run", [1, 1, 1, 1])
    if rl:
        _rl_run(_stage(out, "07-rl-m", "rl-m") / "run")
    if evals:
        d = _stage(out, "08-eval", "eval")
        rec = {"model": "m", "pretrain": _eval_rec("m", None), "sft": _eval_rec("m", 0.3)}
        if rl:
            rec["rl"] = _eval_rec("m", 0.5)
        (d / "m.json").write_text(json.dumps(rec))
        (d / "eval.json").write_text(json.dumps({"m": rec}))
    return out


# ---- parsing --------------------------------------------------------------------------------------
class _Doc(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.imgs: list[str] = []
        self.tags: list[str] = []
        self.figures: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(str(a.get("id")))
        if tag == "img":
            self.imgs.append(str(a.get("src")))
        if tag == "figure":
            self.figures.append(a)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Doc:
    doc = _Doc()
    doc.feed(path.read_text(encoding="utf-8"))
    doc.close()
    return doc


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Doc]:
    run = make_climb_run(tmp_path_factory.mktemp("html") / "run")
    out = write_html_report(run)
    return out, _parse(out)


# ---- tests ----------------------------------------------------------------------------------------
def test_one_self_contained_file_with_every_section(full: tuple[Path, _Doc]) -> None:
    out, doc = full
    assert out == out.parent / "report.html" and out.is_file()
    assert list(out.parent.glob("*.png")) == []  # nothing beside it
    assert doc.sections == [k for k, _ in SECTIONS]
    assert "script" not in doc.tags  # readable without JS, and the model's <script> is text
    assert len(doc.imgs) >= 6  # stage times, 2 loss, RL, tokens, heatmaps, accuracy
    assert all(src.startswith("data:image/png;base64,") for src in doc.imgs)
    html = out.read_text()
    assert "http://" not in html and "https://" not in html
    text = "".join(doc.text)
    for needle in (
        "pretrain-m", "sft-m", "rl-m", "thinking budget", "SFT vs RL", "baseline", "RL thinking / correct",
    ):  # fmt: skip
        assert needle in text, needle


def test_sample_generations_are_escaped(full: tuple[Path, _Doc]) -> None:
    out, doc = full
    html = out.read_text()
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert EVIL in "".join(doc.text)  # shown to the reader verbatim
    text = "".join(doc.text)
    assert "m — arith tier 1" in text and "m — code_function tier 1" in text


def test_bootstrap_intervals_beside_accuracy_and_baseline(full: tuple[Path, _Doc]) -> None:
    text = "".join(full[1].text)
    # rl: 5/10 per cell, 20/40 per split; the interval comes from the items
    lo, hi = R.cell_intervals(_tasks(0.5))[("heldout", "arith", 1)]
    assert lo < 0.5 < hi
    assert f"50% (5/10) [{lo:.0%}, {hi:.0%}]" in text
    assert "95% Wilson interval" in text and "bootstrap interval" not in text


def test_heatmaps_share_one_colour_scale(full: tuple[Path, _Doc], monkeypatch) -> None:
    # the document states the scale: max relative load is 6/8 x 4 experts = 3.0
    fig_attrs = [f for f in full[1].figures if f.get("class") == "heatmaps"]
    assert len(fig_attrs) == 1
    assert float(fig_attrs[0]["data-vmin"]) == 0.0
    assert float(fig_attrs[0]["data-vmax"]) == pytest.approx(3.0)
    assert float(fig_attrs[0]["data-even"]) == 1.0
    # and the figure really draws every heatmap with that one norm and a single colour bar
    seen = []
    monkeypatch.setattr(R, "_save", lambda fig, path: seen.append(fig))
    loads = [("a", [[3.0, 1.0, 0.0, 0.0]]), ("b", [[1.0, 1.0, 1.0, 1.0]]), ("c", [[0.5, 1.5]])]
    scale = R.plot_expert_load(loads, Path("unused.png"))
    assert scale == R.LoadScale(0.0, 3.0, 1.0)
    images = [im for ax in seen[0].axes for im in ax.images]
    assert len(images) == 3
    assert {(im.norm.vmin, im.norm.vmax, im.norm.vcenter) for im in images} == {(0.0, 3.0, 1.0)}
    assert len(seen[0].axes) == 4  # three heatmaps + ONE colour bar
    bar = seen[0].axes[-1]
    assert any(ln.get_ydata()[0] == 1.0 for ln in bar.lines)  # the even-load line


def test_missing_rl_and_eval_give_notes(tmp_path: Path) -> None:
    run = make_climb_run(tmp_path / "run", rl=False, evals=False)
    out = write_html_report(run, tmp_path / "x.html")
    doc = _parse(out)
    assert doc.sections == [k for k, _ in SECTIONS]
    html = out.read_text()
    for what in ("RL stages", "Evaluation results", "Sample generations", "Task evaluations"):
        assert f"{what}: not in this run." in html, what
    assert "Speculative acceptance: not measured in this run" in html
    assert len(doc.imgs) >= 3  # the curves and heatmaps that do exist


def test_speculative_and_suite_results_are_shown(tmp_path: Path) -> None:
    run = make_climb_run(tmp_path / "run", rl=False)
    (run / "bench").mkdir()
    bench = {"workloads": {"code": {"acceptance_rate": 0.625, "mean_accept_len": 2.5}}}
    (run / "bench" / "spec.json").write_text(json.dumps(bench))
    suite = {
        "format": "hillclimb-suite-v1",
        "suite": "humaneval",
        "model": "m",
        "n_items": 2,
        "metrics": {"pass@1": {"value": 0.5, "ci95": [0.0, 1.0], "n": 2}},
        "truncated_share": 0.0,
        "mean_completion_tokens": 4.0,
        "items": [{"id": "HumanEval/0", "passed": True, "completion": "return a < b"}],
    }
    (run / "08-eval" / "humaneval.json").write_text(json.dumps(suite))
    text = "".join(_parse(write_html_report(run)).text)
    assert "spec.json › workloads › code" in text and "0.625" in text
    assert "suite humaneval" in text and "[0.0%, 100.0%]" in text
    assert "return a < b" in text


def test_eval_json_file_and_eval_dir(tmp_path: Path) -> None:
    f = tmp_path / "eval.json"
    f.write_text(json.dumps(_eval_rec("solo", 0.5)))
    out = write_html_report(f)
    assert out == tmp_path / "eval.report.html"
    doc = _parse(out)
    text = "".join(doc.text)
    assert doc.sections == [k for k, _ in SECTIONS]
    assert "Pre-training and SFT curves: not in this run." in text
    assert "solo — code_function tier 1" in text
    d = tmp_path / "evaldir"
    d.mkdir()
    (d / "eval.json").write_text(f.read_text())
    assert "solo" in "".join(_parse(write_html_report(d)).text)


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HillclimbError, match="does not exist"):
        write_html_report(tmp_path / "nope")
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(HillclimbError, match="not a hillclimb eval"):
        write_html_report(tmp_path / "x.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HillclimbError, match="neither a climb run"):
        write_html_report(tmp_path / "empty")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run(
        [sys.executable, "-m", "hillclimb", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode != 0
    assert "hillclimb: error: report:" in p.stderr and "does not exist" in p.stderr
    assert not (tmp_path / "nope").exists()


def test_cli_writes_default_and_out(tmp_path: Path) -> None:
    from hillclimb.cli import main

    run = make_climb_run(tmp_path / "run", rl=False, evals=False)
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    assert main(["report", str(run), "--out", str(tmp_path / "o.html")]) == 0
    assert (tmp_path / "o.html").is_file()
    # a climb with its report stage done: the rebuild replaces that stage's HTML file (README:
    # "`hillclimb report RUN` rebuilds it"), not a second copy beside it
    (run / "report").mkdir()
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "report.html").is_file()


def test_a_partial_record_costs_one_section_not_the_report(tmp_path: Path) -> None:
    rec = _eval_rec("old", 0.5)
    for c in rec["tasks"]["cells"]:
        del c["mean_completion_tokens"]  # a field an older format did not write
    f = tmp_path / "old.json"
    f.write_text(json.dumps(rec))
    doc = _parse(write_html_report(f))
    text = "".join(doc.text)
    assert doc.sections == [k for k, _ in SECTIONS]
    assert "A readable tokens record (KeyError: 'mean_completion_tokens'" in text
    assert "old — arith tier 1" in text  # the other sections are intact
