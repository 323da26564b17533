"""Outside checks (session 20): the climb's summary, the registry's evaluation files and gate.

No model is trained here: checkpoints are directories with a fake weights file (the registry
only hashes bytes), evaluation results are synthetic, as in tests/test_registry.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.registry.db import Registry
from hillclimb.registry.gate import GateConfig, compare, promote


def fake_ckpt(path: Path, seed: int, family: str = "thinking") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(f"weights {seed}".encode() * 50)
    (path / "hillclimb.json").write_text(
        json.dumps({"family": family, "preset": f"{family}-micro", "lineage": {"stage": "sft"}})
    )
    return path


def suite_result(model: Path, suite: str, seed: int, passed: list[bool], **extra) -> dict:
    """A `hillclimb eval --suite S` result as `eval.suites.run_suite` writes it."""
    prefix = "ifeval" if suite == "ifeval" else suite
    return {
        "format": "hillclimb-suite-v1",
        "suite": suite,
        "model": str(model),
        "backend": "local",
        "settings": {"seed": seed, "max_tokens": 64, "form": "completion", "timeout_s": 10.0},
        "metrics": {},
        "items": [{"id": f"{prefix}-{i:03d}", "passed": p, **extra} for i, p in enumerate(passed)],
    }


def task_result(model: Path, passed: list[bool], **extra) -> dict:
    """A `run_eval` result (one split) with item-level results."""
    items = [
        {"id": f"arith/t1/{i:05d}", "split": "heldout", "family": "arith", "tier": 1,
         "passed": p, **extra}
        for i, p in enumerate(passed)
    ]  # fmt: skip
    return {
        "format": "hillclimb-eval-v2",
        "model": str(model),
        "tasks": {
            "settings": {"max_tokens": 64},
            "splits": {"heldout": {"n": len(passed), "correct": sum(passed)}},
            "items": items,
        },
    }


# ---- the gate never compares different items under the same ids ---------------------------------
@pytest.mark.parametrize("suite", ["ifeval", "fim"])
def test_seeded_suite_items_from_other_seeds_are_not_compared(tmp_path, suite):
    """ifeval / fim draw their prompts from the seed and number them by position
    (`ifeval-000`): under seed 0 and seed 1 the same id is another prompt. The registry dropped
    the seed, so `compare` paired unrelated prompts and `promote` moved the alias on them
    (0% -> 100%, "improves beyond noise")."""
    with Registry(tmp_path / "r.sqlite") as reg:
        a_d, b_d = fake_ckpt(tmp_path / "a", 1), fake_ckpt(tmp_path / "b", 2)
        a, b = reg.register_checkpoint(a_d).id, reg.register_checkpoint(b_d).id
        reg.add_eval_result(a, suite_result(a_d, suite, 0, [False] * 30))
        reg.add_eval_result(b, suite_result(b_d, suite, 1, [True] * 30))
        with pytest.raises(HillclimbError, match="seed"):
            compare(reg, a, b, suite, resamples=500)
        with pytest.raises(HillclimbError, match="seed"):
            promote(reg, b, a, GateConfig(target=suite, resamples=500), alias="thinking@prod")
        assert reg.find_alias("thinking@prod") is None and reg.decisions() == []
        # the same seed is the same prompts: compared as before
        reg.add_eval_result(b, suite_result(b_d, suite, 0, [True] * 30))
        assert compare(reg, a, b, suite, resamples=500).stats.delta == 1.0
        # HumanEval's problems are fixed (`HumanEval/0` is one problem whatever the seed):
        # evaluations with different seeds stay comparable
        reg.add_eval_result(a, suite_result(a_d, "humaneval", 0, [False] * 30))
        reg.add_eval_result(b, suite_result(b_d, "humaneval", 3, [True] * 30))
        assert compare(reg, a, b, "humaneval", resamples=500).stats.n == 30


# ---- scores in an evaluation file -------------------------------------------------------------------
BAD_SCORES = [
    ("suite", {"samples": 2, "samples_passed": float("nan")}),
    ("suite", {"samples": 2, "samples_passed": float("inf")}),
    ("suite", {"samples": 2, "samples_passed": 5}),
    ("suite", {"samples": "0"}),
    ("suite", {"samples": "x"}),
    ("suite", {"samples": 2, "samples_passed": [1]}),
    ("task", {"sample_pass_rate": float("nan")}),
    ("task", {"sample_pass_rate": -0.5}),
]


@pytest.mark.parametrize(("kind", "extra"), BAD_SCORES)
def test_bad_item_scores_are_a_clear_error_and_store_nothing(tmp_path, capsys, kind, extra):
    """A NaN score broke SQLite's NOT NULL (IntegrityError), `samples: "0"` divided by zero,
    `samples: "x"` raised ValueError: tracebacks from `registry add-eval`; inf or a score above
    1 was stored as it came."""
    d = fake_ckpt(tmp_path / "ck", 1)
    res = (
        suite_result(d, "humaneval", 0, [True, False], **extra)
        if kind == "suite"
        else task_result(d, [True, False], **extra)
    )
    f = tmp_path / "eval.json"
    f.write_text(json.dumps(res))  # NaN / Infinity as Python's json writes them
    db = tmp_path / "r.sqlite"
    assert main(["registry", "add-eval", str(d), str(f), "--registry", str(db)]) == 2
    err = capsys.readouterr().err
    assert "hillclimb: error:" in err and "score" in err and "Traceback" not in err
    assert main(["registry", "list", "--json", "--registry", str(db)]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == []


# ---- names that look like rich markup -----------------------------------------------------------------
@pytest.mark.parametrize("run_dir", ["runs/ablation[lr=3e-5]", "runs/a[/]b", "runs/[bold]x"])
def test_summary_table_prints_paths_as_they_are(run_dir):
    """The summary's title and `report:` line went through rich markup: `[lr=3e-5]` vanished
    (the printed report path did not exist) and `[/]` raised MarkupError after the climb."""
    from hillclimb.climb.runner import print_summary_table

    report = f"{run_dir}/report/report.md"
    s = {"recipe": "r[/]", "run_dir": run_dir, "models": {}, "stages_run": [],
         "total_stage_seconds": 0.0, "report": report}  # fmt: skip
    out = io.StringIO()
    print_summary_table(s, file=out)
    text = out.getvalue()
    assert f"report: {report}" in text and run_dir in text and "r[/]" in text


def test_registry_list_prints_paths_as_they_are(tmp_path, capsys, monkeypatch):
    """`registry list` put checkpoint paths into a rich table as markup (`[/]`: MarkupError)."""
    monkeypatch.setenv("COLUMNS", "400")
    d = fake_ckpt(tmp_path / "run[/]x" / "final", 1)
    db = str(tmp_path / "r.sqlite")
    assert main(["registry", "add", str(d), "--registry", db]) == 0
    capsys.readouterr()
    assert main(["registry", "list", "--registry", db]) == 0
    assert "run[/]x" in capsys.readouterr().out


# ---- recipes whose model names collide with stage names -----------------------------------------
def _smoke_with_model_renamed(old: str, new: str) -> dict:
    import tomllib

    from hillclimb.climb.climb_recipe import resolve_recipe_path

    raw = tomllib.loads(resolve_recipe_path("smoke").read_text())
    raw["models"][new] = raw["models"].pop(old)
    for t in ("pretrain", "sft", "sft_data", "rl", "rl_harness", "eval"):
        if isinstance(raw.get(t), dict) and old in raw[t]:
            raw[t][new] = raw[t].pop(old)
    return raw


def test_a_model_named_data_is_refused_before_any_work():
    """A model named `data` is a legal name, but its SFT stage is `sft-data`, the key of the SFT
    examples' stage: the climb trained it into `08-sft-data/` and then looked for its checkpoint
    in `06-sft-data/run/final` (the RL stage failed after pre-training and SFT had run)."""
    from hillclimb.climb.climb_recipe import parse_recipe, resolve_recipe_path
    from hillclimb.climb.runner import plan
    from hillclimb.errors import ConfigError

    path = resolve_recipe_path("smoke").resolve()
    with pytest.raises(ConfigError, match=r"\['sft-data'\].*rename the model"):
        plan(parse_recipe(_smoke_with_model_renamed("thinking", "data"), path))
    keys = [s.key for s in plan(parse_recipe(_smoke_with_model_renamed("thinking", "dat"), path))]
    assert len(keys) == len(set(keys))  # a near name is fine


# ---- the climb's registry stage after its evaluation changed ----------------------------------
def test_a_stored_refusal_is_not_reused_once_the_evaluation_changed(tmp_path):
    """The registry stage reused an earlier decision for the same (candidate, incumbent, alias)
    even after the eval stage re-ran (`[eval]` edited, `--restart-from eval`) and imported new
    item results: the gate's stored verdict and statistics came from items no longer in the
    registry. A re-run with the same evaluations still reuses the decision."""
    from hillclimb.climb.promotion import registry_stage
    from test_registry import _FakeClimb, eval_result, outcomes

    db = tmp_path / "r.sqlite"
    (tmp_path / "g1").mkdir()
    (tmp_path / "g2").mkdir()
    first = registry_stage(_FakeClimb(tmp_path / "c1", db, rl_rate=0.7, seed=1), tmp_path / "g1")
    prod = first["models"]["thinking"]["checkpoints"]["rl"]
    c2 = _FakeClimb(tmp_path / "c2", db, rl_rate=0.4, seed=2)
    assert registry_stage(c2, tmp_path / "g2")["models"]["thinking"]["decision"] == "refused"
    again = registry_stage(c2, tmp_path / "g2")["models"]["thinking"]
    assert again["decision"] == "refused" and again["reused"]  # same evidence: reused
    # the eval stage ran again (a new [eval]): the same RL weights now pass far more items
    ev_file = tmp_path / "c2" / "eval" / "thinking.json"
    ev = json.loads(ev_file.read_text())
    ev["rl"] = eval_result(
        c2.final("rl-thinking"),
        {"heldout": outcomes(0.95, 400, 3), "heldout_phrasing": outcomes(0.5, 400, 9)},
    )
    ev_file.write_text(json.dumps(ev))
    rec = registry_stage(c2, tmp_path / "g2")["models"]["thinking"]
    assert not rec.get("reused") and rec["decision"] == "promoted"
    assert rec["checks"][0]["mean_b"] > 0.9
    with Registry(db) as reg:
        assert reg.alias("thinking@prod").checkpoint_id != prod


# ---- a registry file damaged after it was opened ---------------------------------------------------
def _damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table` with garbage (the header stays valid, so the file
    still opens: the damage shows only when that table is read)."""
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    con.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(b"\xab" * page)


def test_a_damaged_registry_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    """The file opened (its header and schema were fine), then `compare` / `promote` read a
    damaged page: sqlite3.DatabaseError "database disk image is malformed" as a traceback."""
    db = tmp_path / "r.sqlite"
    dirs = [fake_ckpt(tmp_path / n, i) for i, n in enumerate(("a", "b"))]
    with Registry(db) as reg:
        for d, rate in zip(dirs, (0.2, 0.9), strict=True):
            ck = reg.register_checkpoint(d)
            reg.add_eval_result(ck.id, task_result(d, [i < rate * 40 for i in range(40)]))
    _damage_table(db, "eval_items")
    r = ["--registry", str(db)]
    for cmd in (
        ["registry", "compare", str(dirs[0]), str(dirs[1]), "--suite", "heldout", *r],
        ["promote", str(dirs[1]), "--over", str(dirs[0]), "--target", "heldout", *r],
    ):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith("hillclimb: error:") and "malformed" in err and str(db) in err


def test_a_damaged_arena_database_is_a_clear_error(tmp_path, capsys):
    """`hillclimb arena --results` on a votes file damaged after its header: a traceback."""
    from hillclimb.eval.arena.store import ArenaStore

    db = tmp_path / "arena.sqlite"
    store = ArenaStore(db)
    for i in range(3):
        b = store.add_battle(voter="v", prompt=f"p{i}", source="typed", left=("A", "x", "stop"),
                             right=("B", "y", "stop"), seed=1)  # fmt: skip
        store.vote(b, "v", "left")
    store.close()
    _damage_table(db, "votes")
    assert main(["arena", "--results", "--arena-db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hillclimb: error:") and "malformed" in err and str(db) in err


# ---- two promotions of one alias at once ------------------------------------------------------------
class _RacedRegistry(Registry):
    """A registry in which another process moves `alias` to `to` while this one's gate runs
    (between the gate's reads and its write) — through its own connection, as another
    `hillclimb promote` or climb would."""

    alias_name: str = "thinking@prod"
    to: str = ""

    def record_decision(self, *args, **kwargs) -> int:  # noqa: ANN002, ANN003
        with Registry(self.path) as other:
            other.set_alias(self.alias_name, self.to, "another promotion")
        return super().record_decision(*args, **kwargs)


def test_an_alias_moved_while_the_gate_ran_is_not_overwritten(tmp_path):
    """Two promotions of `thinking@prod` at once (two climbs sharing the registry): each judged
    its candidate against the alias as it read it, and the later write moved the alias over
    the other's promotion — to a candidate never compared with the checkpoint it replaced."""
    db = tmp_path / "r.sqlite"
    d = {n: fake_ckpt(tmp_path / n, i) for i, n in enumerate(("inc", "cand", "rival"))}
    with Registry(db) as reg:
        ids = {}
        for n, rate in (("inc", 0.2), ("cand", 0.9), ("rival", 0.95)):
            ids[n] = reg.register_checkpoint(d[n]).id
            reg.add_eval_result(ids[n], task_result(d[n], [i < rate * 60 for i in range(60)]))
        reg.set_alias("thinking@prod", ids["inc"], "first")
        n_decisions = len(reg.decisions())
    with _RacedRegistry(db) as raced:
        raced.to = ids["rival"]
        cfg = GateConfig(target="heldout", resamples=500)
        with pytest.raises(HillclimbError, match="moved"):
            promote(raced, ids["cand"], None, cfg, alias="thinking@prod")
    with Registry(db) as reg:
        assert reg.alias("thinking@prod").checkpoint_id == ids["rival"]  # the other one stands
        assert len(reg.decisions()) == n_decisions + 1  # only the rival's; nothing of ours
        # unraced, the same promotion goes through (judged against the rival now)
        dec = promote(reg, ids["cand"], None, cfg, alias="thinking@prod")
        assert dec.incumbent == ids["rival"]


def test_an_alias_with_a_trailing_newline_is_refused(tmp_path):
    """`^...$` let "thinking@prod\\n" through (`$` matches before a final newline): a second
    alias that lists like thinking@prod and that `serve --thinking thinking@prod` never finds."""
    with Registry(tmp_path / "r.sqlite") as reg:
        ck = reg.register_checkpoint(fake_ckpt(tmp_path / "a", 1)).id
        with pytest.raises(HillclimbError, match="bad alias"):
            reg.set_alias("thinking@prod\n", ck, "typo")
        assert reg.aliases() == []
