"""Registry + promotion gate: the paired bootstrap on synthetic data with a known effect, the gate's
decisions, lineage, alias serving and bad input (which must leave the database unchanged).

No model is trained here: checkpoints are directories with a fake weights file (the registry only
hashes bytes) and evaluation results are synthetic `run_eval` / suite results with item lists.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.eval.bootstrap import paired_bootstrap
from hillclimb.registry.db import Registry, content_hash
from hillclimb.registry.gate import GateConfig, compare, decide, promote

FAMS = ("arith", "logic", "code_function", "sequence")


# ---- helpers ------------------------------------------------------------------------------------
def fake_ckpt(
    path: Path, seed: int, family: str = "thinking", parent: Path | None = None, stage: str = "sft"
) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(f"weights {seed}".encode() * 50)
    lineage = {"stage": stage, "parent": str(parent) if parent else None}
    (path / "hillclimb.json").write_text(
        json.dumps({"family": family, "preset": f"{family}-micro", "lineage": lineage})
    )
    return path


def eval_result(model: Path, passed: dict[str, list[bool]], max_tokens: int | None = None) -> dict:
    """A `run_eval`-shaped result with item-level results; item i of every split is the same
    problem for every model (ids depend only on split and i)."""
    items, splits = [], {}
    for split, ps in passed.items():
        for i, p in enumerate(ps):
            fam = FAMS[i % len(FAMS)]
            items.append(
                {"id": f"{fam}/t{1 + i % 2}/{split}-{i:05d}", "split": split, "family": fam,
                 "tier": 1 + i % 2, "passed": bool(p), "status": "ok" if p else "wrong"}
            )  # fmt: skip
        splits[split] = {"n": len(ps), "correct": int(sum(ps)), "accuracy": sum(ps) / len(ps),
                         "by_family_tier": {}, "by_kind_tier": {}}  # fmt: skip
    return {
        "format": "hillclimb-eval-v2",
        "model": str(model),
        "name": "thinking",
        "preset": "thinking-micro",
        "bpb": None,
        "tasks": {
            "format": "hillclimb-tasks-v2",
            "settings": {"max_tokens": max_tokens, "max_tokens_margin": 1.5},
            "splits": splits,
            "items": items,
        },
    }


def outcomes(rate: float, n: int, seed: int) -> list[bool]:
    rng = np.random.default_rng(seed)
    return list(rng.random(n) < rate)


def snapshot(db: Path) -> list[tuple]:
    """Every row of every table (to show that a failed call changed nothing)."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, sorted(map(repr, con.execute(f"SELECT * FROM {t}")))) for t in sorted(tables)]
    finally:
        con.close()


@pytest.fixture
def reg(tmp_path: Path):
    r = Registry(tmp_path / "reg.sqlite")
    yield r
    r.close()


def add(reg: Registry, tmp_path: Path, name: str, seed: int, passed: dict, **kw) -> str:
    d = fake_ckpt(tmp_path / name, seed, **kw)
    ck = reg.register_checkpoint(d)
    reg.add_eval_result(ck.id, eval_result(d, passed), source=name)
    return ck.id


# ---- the paired bootstrap on synthetic data with a known effect ---------------------------------
def _pair(n: int, pa: float, pb: float, rho_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated pass/fail pairs: a shared item difficulty u; a passes u < pa, b passes u < pb,
    with 30% of items re-drawn independently for b (so the models disagree on some items)."""
    rng = np.random.default_rng(rho_seed)
    u = rng.random(n)
    v = np.where(rng.random(n) < 0.3, rng.random(n), u)
    return (u < pa).astype(float), (v < pb).astype(float)


def test_bootstrap_ci_coverage_is_near_nominal() -> None:
    true_delta = 0.10
    hits, reps = 0, 300
    for r in range(reps):
        a, b = _pair(200, 0.5, 0.6, r)
        s = paired_bootstrap(a, b, resamples=2000, seed=r)
        hits += s.ci_low <= true_delta <= s.ci_high
    assert 0.90 <= hits / reps <= 0.99, hits / reps


def test_bootstrap_detects_a_real_ten_point_effect_at_n400() -> None:
    detected = 0
    for r in range(100):
        rng = np.random.default_rng(1000 + r)
        a = (rng.random(400) < 0.5).astype(float)  # independent: the hardest case for pairing
        b = (rng.random(400) < 0.6).astype(float)
        s = paired_bootstrap(a, b, resamples=2000, seed=r)
        detected += s.p_better < 0.05
    assert detected >= 85, detected  # expected power ~0.92 (delta / its sd ~ 2.9)


@pytest.mark.parametrize("correlated", [False, True])
def test_bootstrap_rarely_flags_a_null_effect(correlated: bool) -> None:
    flagged, reps = 0, 300
    for r in range(reps):
        if correlated:
            a, b = _pair(400, 0.5, 0.5, 5000 + r)
        else:
            rng = np.random.default_rng(5000 + r)
            a, b = (rng.random((2, 400)) < 0.5).astype(float)
        flagged += paired_bootstrap(a, b, resamples=2000, seed=r).p_better < 0.05
    assert flagged / reps <= 0.09, flagged / reps


def test_bootstrap_basics_and_bad_input() -> None:
    same = paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1])
    assert same.delta == 0 and same.p_better == 1.0 and same.p_worse == 1.0
    # identical results on 4 items: not "exactly 0" but a Wilson-based interval around it
    assert same.ci_low == -same.ci_high < 0 and same.effect_size == 0
    s = paired_bootstrap([0] * 50 + [1] * 50, [1] * 100, seed=3)
    assert s.delta == pytest.approx(0.5) and s.b_only == 50 and s.a_only == 0
    assert s.p_better < 0.001 and s.p_worse > 0.99 and s.ci_low > 0.3
    assert paired_bootstrap([0, 1] * 20, [1, 1] * 20, seed=7) == paired_bootstrap(
        [0, 1] * 20, [1, 1] * 20, seed=7
    )  # seeded: reproducible
    for a, b, kw, msg in [
        ([1, 0], [1], {}, "equal lengths"),
        ([], [], {}, "at least one"),
        ([1], [1], {"resamples": 5}, "resamples"),
        ([float("nan")], [1], {}, "finite"),
    ]:
        with pytest.raises(HillclimbError, match=msg):
            paired_bootstrap(a, b, **kw)


# ---- the gate -------------------------------------------------------------------------------------
def test_gate_promotes_a_better_candidate_and_refuses_a_worse_one(reg, tmp_path) -> None:
    n = 400
    inc = add(reg, tmp_path, "inc", 1, {"heldout": outcomes(0.5, n, 1), "heldout_phrasing": outcomes(0.5, n, 2)})  # fmt: skip
    better = add(reg, tmp_path, "better", 2, {"heldout": outcomes(0.7, n, 3), "heldout_phrasing": outcomes(0.5, n, 2)})  # fmt: skip
    worse = add(reg, tmp_path, "worse", 3, {"heldout": outcomes(0.35, n, 4), "heldout_phrasing": outcomes(0.5, n, 2)})  # fmt: skip
    reg.set_alias("thinking@prod", inc, "first model")
    cfg = GateConfig(target="heldout", gates=("heldout_phrasing",), resamples=2000)

    refused = promote(reg, worse, None, cfg, alias="thinking@prod")  # incumbent = the alias
    assert not refused.promoted and refused.incumbent == inc
    assert "does not improve" in refused.reasons[0]
    assert reg.alias("thinking@prod").checkpoint_id == inc  # unchanged

    dec = promote(reg, better, None, cfg, alias="thinking@prod")
    assert dec.promoted and dec.checks[0].ok and dec.checks[1].ok
    t = dec.checks[0].comparison.stats
    assert t.delta > 0.1 and t.p_better < 0.05 and t.ci_low > 0 and t.n == n
    assert reg.alias("thinking@prod").checkpoint_id == better
    assert reg.alias("thinking@prod").decision_id == dec.decision_id
    text = dec.render()
    assert text.startswith("PROMOTED") and "p(one-sided, better)=" in text and "CI" in text
    # p_worse is a one-sided p-value: labelled so in the text (a gate that passes with
    # "p(worse)=1" read as "certainly worse"); the JSON keeps its field names (a contract)
    gate = dec.checks[1]
    assert f"p(one-sided, worse)={gate.comparison.stats.p_worse:.3g}" in text
    assert "p(one-sided, worse)=" in gate.reason and "p(worse)" not in text
    assert {"p_better", "p_worse"} <= set(dec.to_dict()["checks"][1]["comparison"]["stats"])
    history = reg.decisions()
    assert [d["promoted"] for d in history[:3]] == [True, False, True]  # newest first; manual last


def test_within_noise_improvement_is_refused(reg, tmp_path) -> None:
    base = outcomes(0.5, 60, 9)
    tweak = list(base)
    tweak[tweak.index(False)] = True  # one item better: +1.7 points on 60 items
    a = add(reg, tmp_path, "a", 1, {"heldout": base})
    b = add(reg, tmp_path, "b", 2, {"heldout": tweak})
    dec = decide(reg, b, a, GateConfig(target="heldout", resamples=2000))
    assert not dec.promoted and "within noise" in dec.reasons[0]


def test_a_gate_regression_blocks_promotion(reg, tmp_path) -> None:
    n = 400
    inc = add(reg, tmp_path, "inc", 1, {"heldout": outcomes(0.5, n, 1), "heldout_phrasing": outcomes(0.6, n, 2)})  # fmt: skip
    cand = add(reg, tmp_path, "cand", 2, {"heldout": outcomes(0.7, n, 3), "heldout_phrasing": outcomes(0.35, n, 4)})  # fmt: skip
    before = reg.find_alias("thinking@prod")
    dec = promote(reg, cand, inc, GateConfig("heldout", ("heldout_phrasing",), resamples=2000),
                  alias="thinking@prod")  # fmt: skip
    assert not dec.promoted and before is None and reg.find_alias("thinking@prod") is None
    assert dec.checks[0].ok and not dec.checks[1].ok
    assert dec.reasons == [dec.reasons[0]] and "gate heldout_phrasing regresses" in dec.reasons[0]
    stored = reg.decisions(cand)[0]
    assert stored["promoted"] is False and stored["report"]["checks"][1]["ok"] is False


def test_suite_selectors_and_settings_warning(reg, tmp_path) -> None:
    a_d = fake_ckpt(tmp_path / "a", 1)
    b_d = fake_ckpt(tmp_path / "b", 2)
    a, b = reg.register_checkpoint(a_d).id, reg.register_checkpoint(b_d).id
    reg.add_eval_result(a, eval_result(a_d, {"heldout": [False] * 40}, max_tokens=64))
    reg.add_eval_result(b, eval_result(b_d, {"heldout": [True] * 40}))
    c = compare(reg, a, b, "heldout:code", resamples=500)  # code_function items only
    assert c.stats.n == 10 and c.stats.delta == 1.0
    assert compare(reg, a, b, "heldout:heldout_family", resamples=500).stats.n == 10  # sequence
    assert compare(reg, a, b, "heldout:logic", resamples=500).stats.n == 10
    assert compare(reg, a, b, "heldout:t2", resamples=500).stats.n == 20
    assert any("different generation settings" in w for w in c.warnings)
    with pytest.raises(HillclimbError, match="matches no item"):
        compare(reg, a, b, "heldout:nosuchfamily")


# ---- lineage --------------------------------------------------------------------------------------
def test_lineage_and_idempotent_registration(reg, tmp_path) -> None:
    pre = fake_ckpt(tmp_path / "pre", 1, stage="pretrain")
    sft = fake_ckpt(tmp_path / "sft", 2, parent=pre)
    rl = fake_ckpt(tmp_path / "rl", 3, parent=sft, stage="rl")
    # children first: the parent link is made when the parent arrives
    c_rl = reg.register_checkpoint(rl, recipe_hash="r" * 64, data_card_hash="d" * 64)
    assert c_rl.parent_id is None and c_rl.parent_path == str(sft.resolve())
    c_sft = reg.register_checkpoint(sft)
    c_pre = reg.register_checkpoint(pre)
    assert [c.id for c in reg.lineage(c_rl.id)] == [c_rl.id, c_sft.id, c_pre.id]
    assert [c.stage for c in reg.lineage(c_rl.id)] == ["rl", "sft", "pretrain"]
    assert c_rl.id == content_hash(rl)[:12] and c_rl.model == "thinking"
    assert reg.checkpoint(c_rl.id).recipe_hash == "r" * 64
    # the same weights moved elsewhere: one checkpoint, new path, lineage kept
    moved = tmp_path / "moved"
    rl.rename(moved)
    again = reg.register_checkpoint(moved)
    assert again.id == c_rl.id and again.path == str(moved.resolve())
    assert again.parent_id == c_sft.id and again.recipe_hash == "r" * 64
    assert len(reg.checkpoints()) == 3
    # explicit parent by reference; references by id prefix, alias and path
    other = reg.register_checkpoint(fake_ckpt(tmp_path / "o", 4), parent=c_pre.id[:6])
    assert other.parent_id == c_pre.id
    assert reg.resolve(c_pre.id[:5]).id == c_pre.id and reg.resolve(str(pre)).id == c_pre.id
    reg.set_alias("thinking@dev", other.id, "test")
    assert reg.resolve("thinking@dev").id == other.id


# ---- bad input changes nothing --------------------------------------------------------------------
def test_bad_input_is_a_clear_error_and_changes_nothing(reg, tmp_path) -> None:
    n = 100
    a = add(reg, tmp_path, "a", 1, {"heldout": outcomes(0.5, n, 1)})
    b = add(reg, tmp_path, "b", 2, {"heldout": outcomes(0.9, n, 2)})
    db = reg.path
    before = snapshot(db)
    cfg = GateConfig(target="heldout", gates=("nosuchsuite",), resamples=500)
    with pytest.raises(HillclimbError, match="no evaluation on suite 'nosuchsuite'.*heldout"):
        promote(reg, b, a, cfg, alias="thinking@prod")
    with pytest.raises(HillclimbError, match="same checkpoint"):
        promote(reg, b, b, GateConfig("heldout"), alias="thinking@prod")
    with pytest.raises(HillclimbError, match="names model 'code-flash'"):
        promote(reg, b, a, GateConfig("heldout"), alias="code-flash@prod")
    with pytest.raises(HillclimbError, match="bad alias"):
        promote(reg, b, a, GateConfig("heldout"), alias="prod")
    with pytest.raises(HillclimbError, match="unknown alias"):
        reg.resolve("thinking@nope")
    with pytest.raises(HillclimbError, match="unknown checkpoint"):
        reg.resolve("feedfacecafe")
    good = eval_result(tmp_path / "a", {"heldout": [True, False]})
    broken = json.loads(json.dumps(good))
    broken["tasks"]["splits"]["heldout"]["correct"] = 2  # totals disagree with the items
    no_items = json.loads(json.dumps(good))
    del no_items["tasks"]["items"]
    dup = json.loads(json.dumps(good))
    dup["tasks"]["items"][1]["id"] = dup["tasks"]["items"][0]["id"]
    for bad, msg in [
        (broken, "reports 2/2 correct but its items say 1/2"),
        (no_items, "no item-level results"),
        (dup, "appears twice"),
        ({"format": "hillclimb-eval-v2", "tasks": None}, "no task results"),
        ({"format": "hillclimb-suite-v1", "suite": "humaneval", "items": []}, "no item-level"),
    ]:
        with pytest.raises(HillclimbError, match=msg):
            reg.add_eval_result(a, bad)
    assert snapshot(db) == before


def test_alias_to_a_deleted_checkpoint(reg, tmp_path) -> None:
    import shutil

    a = add(reg, tmp_path, "a", 1, {"heldout": [True, False]})
    reg.set_alias("thinking@prod", a, "test")
    assert reg.serve_path("thinking@prod") == (tmp_path / "a").resolve()
    shutil.rmtree(tmp_path / "a")
    with pytest.raises(HillclimbError, match="points at checkpoint .* no longer exists"):
        reg.serve_path("thinking@prod")
    with pytest.raises(HillclimbError, match="unknown alias 'thinking@staging'"):
        reg.serve_path("thinking@staging")
    with pytest.raises(HillclimbError, match="refusing to alias"):
        reg.set_alias("thinking@dev", a, "gone")


# ---- the commands -----------------------------------------------------------------------------------
def test_cli_add_eval_compare_promote_show(tmp_path, capsys) -> None:
    db = tmp_path / "state" / "r.sqlite"
    r = ["--registry", str(db)]
    n = 400
    dirs = {}
    for name, seed, rate in (("inc", 1, 0.5), ("cand", 2, 0.7)):
        d = dirs[name] = fake_ckpt(tmp_path / name, seed)
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(eval_result(d, {"heldout": outcomes(rate, n, seed), "heldout_phrasing": outcomes(0.5, n, 7)})))  # fmt: skip
        assert main(["registry", "add-eval", str(d), str(f), *r]) == 0
    out = capsys.readouterr().out
    assert "heldout" in out and "heldout_phrasing" in out
    assert main(["registry", "compare", str(dirs["inc"]), str(dirs["cand"]), "--suite", "heldout",
                 "--json", *r]) == 0  # fmt: skip
    comp = json.loads(capsys.readouterr().out)
    assert comp["stats"]["n"] == n and comp["stats"]["delta"] > 0.1
    args = ["promote", str(dirs["cand"]), "--over", str(dirs["inc"]), "--target", "heldout",
            "--gates", "heldout_phrasing", "--alias", "thinking@prod", "--resamples", "2000"]  # fmt: skip
    assert main([*args, *r]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("PROMOTED") and "-> thinking@prod" in out and "p(one-sided, better)=" in out
    )
    # the reverse is refused: exit 1, alias unchanged
    assert main(["promote", str(dirs["inc"]), "--alias", "thinking@prod", "--target", "heldout",
                 *r]) == 1  # fmt: skip
    assert capsys.readouterr().out.startswith("REFUSED")
    assert main(["registry", "show", "thinking@prod", "--json", *r]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["aliases"] == ["thinking@prod"] and len(shown["evals"]) == 2
    assert shown["checkpoint"]["path"] == str(dirs["cand"].resolve())
    assert main(["registry", "list", "--json", *r]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["checkpoints"]) == 2 and listed["aliases"]["thinking@prod"]
    assert main(["registry", "list", *r]) == 0 and "registry" in capsys.readouterr().out


def test_cli_bad_input_exits_2_and_stores_nothing(tmp_path, capsys) -> None:
    db = tmp_path / "r.sqlite"
    r = ["--registry", str(db)]
    d = fake_ckpt(tmp_path / "ck", 1)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "hillclimb-eval-v2", "tasks": {"items": [')
    assert main(["registry", "add-eval", str(d), str(corrupt), *r]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not db.exists()  # the bad file was refused before the registry was opened
    stale = tmp_path / "stale.json"
    res = eval_result(d, {"heldout": [True]})
    del res["tasks"]["items"]
    stale.write_text(json.dumps(res))
    assert main(["registry", "add-eval", str(d), str(stale), *r]) == 2
    assert "no item-level results" in capsys.readouterr().err
    assert main(["registry", "list", "--json", *r]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints"] == []  # not even the checkpoint
    other = tmp_path / "other.json"
    other.write_text(json.dumps(eval_result(tmp_path / "elsewhere", {"heldout": [True]})))
    (tmp_path / "elsewhere").mkdir()
    assert main(["registry", "add-eval", str(d), str(other), *r]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["registry", "add-eval", str(d), str(other), "--force", *r]) == 0
    capsys.readouterr()
    assert main(["registry", "list", *["--registry", str(tmp_path / "none.sqlite")]]) == 2
    assert "no registry at" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()


def test_climb_eval_file_and_suite_results(reg, tmp_path) -> None:
    from hillclimb.registry.evalfile import pick_result

    sft, rl = fake_ckpt(tmp_path / "sft", 1), fake_ckpt(tmp_path / "rl", 2)
    climb_file = {"model": "thinking", "pretrain": {**eval_result(tmp_path / "p", {}), "tasks": None},
                  "sft": eval_result(sft, {"heldout": [True]}), "rl": eval_result(rl, {"heldout": [False]})}  # fmt: skip
    assert pick_result(climb_file, str(rl), source="x")["model"] == str(rl)
    assert pick_result(climb_file, "/nowhere", source="x", stage="sft")["model"] == str(sft)
    with pytest.raises(HillclimbError, match="none for"):
        pick_result(climb_file, "/nowhere", source="x")
    suite = {"format": "hillclimb-suite-v1", "suite": "humaneval", "model": "thinking",
             "settings": {"max_tokens": 512}, "metrics": {"pass@1": {"value": 0.5}},
             "items": [{"id": "HumanEval/0", "passed": True}, {"id": "HumanEval/1", "passed": False,
                                                                 "samples": 4, "samples_passed": 1}]}  # fmt: skip
    ck = reg.register_checkpoint(rl)
    assert pick_result(suite, str(rl), source="s") is suite
    (ev,) = reg.add_eval_result(ck.id, suite, source="s")
    assert ev.suite == "humaneval" and ev.n == 2 and ev.accuracy == 0.5
    _, items = reg.items(ck.id, "humaneval")
    assert items["HumanEval/1"].score == 0.25 and items["HumanEval/0"].passed


def test_serve_resolves_an_alias(monkeypatch, tmp_path, capsys) -> None:
    import shutil

    import hillclimb.serve.server as server

    seen: dict = {}
    monkeypatch.setattr(server, "load_state", lambda *a, **kw: seen.update(args=a) or object())
    monkeypatch.setattr(server, "serve_forever", lambda *a, **kw: None)
    state = tmp_path / "state"
    r = Registry(state / "registry.sqlite")
    d = fake_ckpt(tmp_path / "ck", 1)
    r.set_alias("thinking@prod", r.register_checkpoint(d).id, "test")
    r.close()
    base = ["serve", "--state-dir", str(state), "--no-compile", "--port", "0"]  # 0: never busy
    assert main([*base, "--thinking", "thinking@prod"]) == 0
    assert seen["args"][0] == d.resolve() and seen["args"][1] is None
    assert main([*base, "--thinking", "thinking@nope"]) == 2
    assert "unknown alias 'thinking@nope'" in capsys.readouterr().err
    assert main(["serve", "--registry", str(tmp_path / "none.sqlite"), "--thinking", "x@y"]) == 2
    assert "no registry at" in capsys.readouterr().err
    shutil.rmtree(d)
    assert main([*base, "--thinking", "thinking@prod"]) == 2
    assert "no longer exists" in capsys.readouterr().err


# ---- the climb's registry stage (fake climb: checkpoints + eval files, no training) -------------
class _FakeClimb:
    """What `climb.promotion.registry_stage` reads from a `Climb`."""

    def __init__(self, root: Path, registry: Path | bool, rl_rate: float, seed: int) -> None:
        from types import SimpleNamespace

        self.out, self.registry, self.said = root, registry, []
        self.recipe = SimpleNamespace(
            name="fake", raw={"x": seed}, model_names=["thinking"], rl={"thinking": {}}, rl_harness={},
            eval={"splits": ["heldout", "heldout_phrasing"]},
        )  # fmt: skip
        self.shards_dir = root / "03-shards"
        self.shards_dir.mkdir(parents=True)
        (self.shards_dir / "data_card.json").write_text("{}")
        parent = None
        ev = {"model": "thinking"}
        for i, (st, rate) in enumerate((("pretrain", None), ("sft", 0.5), ("rl", rl_rate))):
            d = fake_ckpt(self.final(f"{st}-thinking"), 10 * seed + i, parent=parent, stage=st)
            parent = d
            ev[st] = (
                eval_result(
                    d,
                    {
                        "heldout": outcomes(rate, 400, 1 + i),
                        "heldout_phrasing": outcomes(0.5, 400, 9),
                    },
                )  # fmt: skip
                if rate is not None
                else {**eval_result(d, {}), "tasks": None}
            )
        (root / "eval").mkdir()
        (root / "eval" / "thinking.json").write_text(json.dumps(ev))

    def final(self, key: str) -> Path:
        return self.out / key / "run" / "final"

    def stage(self, key: str):  # noqa: ANN201
        from types import SimpleNamespace

        return SimpleNamespace(hash=f"hash-of-{key}")

    def dir(self, key: str) -> Path:
        return self.out / key

    def say(self, msg: str) -> None:
        self.said.append(msg)


def test_climb_stage_registers_promotes_reuses_and_never_raises(tmp_path) -> None:
    from hillclimb.climb.promotion import registry_stage

    db = tmp_path / "r.sqlite"
    c1 = _FakeClimb(tmp_path / "c1", db, rl_rate=0.7, seed=1)
    (tmp_path / "g1").mkdir()
    res = registry_stage(c1, tmp_path / "g1")
    rec = res["models"]["thinking"]
    assert rec["decision"] == "promoted" and rec["incumbent"] == rec["checkpoints"]["sft"]
    assert [ch["suite"] for ch in rec["checks"]] == ["heldout", "heldout_phrasing"]
    assert "PROMOTED" in (tmp_path / "g1" / "gate.md").read_text()
    with Registry(db) as reg:
        assert reg.alias("thinking@prod").checkpoint_id == rec["checkpoints"]["rl"]
        rl = reg.checkpoint(rec["checkpoints"]["rl"])
        assert rl.recipe_hash == "hash-of-rl-thinking" and rl.data_card_hash and rl.run_id
        assert [c.stage for c in reg.lineage(rl.id)] == ["rl", "sft", "pretrain"]
        n_decisions = len(reg.decisions())
    # a re-run decides nothing new
    again = registry_stage(c1, tmp_path / "g1")["models"]["thinking"]
    assert again["decision"] == "skipped" and "already thinking@prod" in again["reasons"][0]
    # a second climb whose RL model is worse than the live one: refused, alias stays
    c2 = _FakeClimb(tmp_path / "c2", db, rl_rate=0.4, seed=2)
    (tmp_path / "g2").mkdir()
    rec2 = registry_stage(c2, tmp_path / "g2")["models"]["thinking"]
    assert rec2["decision"] == "refused" and rec2["incumbent"] == rec["checkpoints"]["rl"]
    with Registry(db) as reg:
        assert reg.alias("thinking@prod").checkpoint_id == rec["checkpoints"]["rl"]
        assert len(reg.decisions()) == n_decisions + 1
    rec2b = registry_stage(c2, tmp_path / "g2")["models"]["thinking"]
    assert rec2b["decision"] == "refused" and rec2b["reused"]  # the stored decision
    # a registry that cannot be opened is reported, not raised; --no-registry does nothing
    bad = tmp_path / "not-a-db"
    bad.write_text("this is not sqlite" * 100)
    c3 = _FakeClimb(tmp_path / "c3", bad, rl_rate=0.7, seed=3)
    (tmp_path / "g3").mkdir()
    out = registry_stage(c3, tmp_path / "g3")
    assert (
        "not a usable registry" in out["error"]
        and "error" in (tmp_path / "g3" / "gate.md").read_text()
    )
    c3.registry = False
    assert "skipped" in registry_stage(c3, tmp_path / "g3")


def test_add_eval_for_a_copy_of_registered_weights(tmp_path, capsys) -> None:
    """An RL run that made no update leaves final/ with the SFT weights: one record (a checkpoint
    is its weights), listed at the SFT path. The RL directory's own eval file must still attach."""
    import shutil

    r = ["--registry", str(tmp_path / "r.sqlite")]
    sft = fake_ckpt(tmp_path / "sft", 1)
    rl = tmp_path / "rl"
    shutil.copytree(sft, rl)
    for d in (sft, rl):
        f = tmp_path / f"{d.name}.json"
        f.write_text(json.dumps(eval_result(d, {"heldout": [True, False]})))
        assert main(["registry", "add-eval", str(d), str(f), *r]) == 0, capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps(eval_result(tmp_path / "elsewhere", {"heldout": [True]})))
    (tmp_path / "elsewhere").mkdir()
    assert main(["registry", "add-eval", str(rl), str(other), *r]) == 2  # still refused
    assert f"not {rl}" in capsys.readouterr().err  # naming the directory the user gave
