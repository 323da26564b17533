"""Outside checks (session 21): the registry's promotion gate and what the reports say.

No model is trained here: checkpoints are directories with a fake weights file (the registry
only hashes bytes), evaluation results are synthetic, as in tests/test_registry.py.
"""

from __future__ import annotations

import json
import shutil
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


def task_result(model: Path, passed: list[bool], split: str = "heldout") -> dict:
    """A `run_eval` result (one split) with item-level results; item i is the same problem for
    every model."""
    items = [
        {"id": f"arith/t1/{i:05d}", "split": split, "family": "arith", "tier": 1, "passed": p}
        for i, p in enumerate(passed)
    ]
    return {
        "format": "hillclimb-eval-v2",
        "model": str(model),
        "tasks": {
            "settings": {"max_tokens": 64},
            "splits": {split: {"n": len(passed), "correct": sum(passed)}},
            "items": items,
        },
    }


def _add(reg: Registry, d: Path, passed: list[bool], split: str = "heldout") -> str:
    ck = reg.register_checkpoint(d)
    reg.add_eval_result(ck.id, task_result(d, passed, split))
    return ck.id


# ---- tiny n: one item is not "beyond noise" ------------------------------------------------------
@pytest.mark.parametrize(("n", "promoted"), [(1, False), (3, False), (4, False), (5, True)])
def test_a_few_items_all_one_way_are_judged_by_an_exact_test(tmp_path, n, promoted):
    """Every item the candidate passes and the incumbent fails: the bootstrap has no spread to
    resample and said p = 1/10001 even for n = 1. The exact sign test says 2^-n: one item
    (p = .5) up to four (p = .0625) is not beyond noise at alpha .05, five (p = .031) is."""
    with Registry(tmp_path / "r.sqlite") as reg:
        a = _add(reg, fake_ckpt(tmp_path / "a", 1), [False] * n)
        b = _add(reg, fake_ckpt(tmp_path / "b", 2), [True] * n)
        dec = promote(reg, b, a, GateConfig(target="heldout"), alias="thinking@prod")
        assert dec.promoted is promoted
        comp = dec.checks[0].comparison
        assert comp.p_exact_better == pytest.approx(0.5**n)
        # what the gate decided on is what it stores and prints
        stored = reg.decisions(b)[0]["report"]["checks"][0]["comparison"]
        assert stored["p_better"] == pytest.approx(max(0.5**n, comp.stats.p_better))
        assert f"p(one-sided, better)={comp.p_better:.3g}" in dec.render()
        assert (reg.find_alias("thinking@prod") is not None) is promoted


def test_a_gate_regression_on_one_item_is_not_beyond_noise(tmp_path):
    with Registry(tmp_path / "r.sqlite") as reg:
        a, b = fake_ckpt(tmp_path / "a", 1), fake_ckpt(tmp_path / "b", 2)
        ia, ib = _add(reg, a, [False] * 40 + [True] * 10), _add(reg, b, [True] * 50)
        reg.add_eval_result(ia, task_result(a, [True], "heldout_phrasing"))
        reg.add_eval_result(ib, task_result(b, [False], "heldout_phrasing"))
        cfg = GateConfig(target="heldout", gates=("heldout_phrasing",))
        dec = promote(reg, ib, ia, cfg)
        assert dec.promoted and dec.checks[1].comparison.p_worse == pytest.approx(0.5)


def test_sign_test_p_values():
    from hillclimb.registry.gate import sign_test_p

    assert sign_test_p(0, 0) == 1.0 and sign_test_p(0, 7) == 1.0
    assert sign_test_p(1, 0) == 0.5 and sign_test_p(1, 1) == 0.75
    assert sign_test_p(10, 0) == pytest.approx(1 / 1024)
    # large n: no overflow, close to the normal approximation
    assert 0.0 < sign_test_p(2100, 1900) < 0.001


def test_a_large_paired_effect_still_promotes(tmp_path):
    with Registry(tmp_path / "r.sqlite") as reg:
        a = _add(reg, fake_ckpt(tmp_path / "a", 1), [True] * 200 + [False] * 200)
        b = _add(reg, fake_ckpt(tmp_path / "b", 2), [True] * 250 + [False] * 150)
        c = compare(reg, a, b, "heldout")
        assert c.p_better < 0.001 and c.to_dict()["p_exact_better"] < 0.001


# ---- a checkpoint is its weights: changed files are not promoted or served -------------------------
def test_weights_changed_after_registration_are_not_promoted_aliased_or_served(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    with Registry(db) as reg:
        inc = _add(reg, a := fake_ckpt(tmp_path / "a", 1), [False] * 30)
        cand = _add(reg, b := fake_ckpt(tmp_path / "b", 2), [True] * 30)
        reg.set_alias("thinking@prod", inc, "start")
        (b / "model.safetensors").write_bytes(b"trained again into the same directory")
        cfg = GateConfig(target="heldout")
        with pytest.raises(HillclimbError, match="weights in .* changed since it was registered"):
            promote(reg, cand, None, cfg, alias="thinking@prod")
        with pytest.raises(HillclimbError, match="changed since it was registered"):
            reg.set_alias("thinking@dev", cand, "by hand")
        # the directory now names other weights, not the registered checkpoint
        with pytest.raises(HillclimbError, match="changed since they were registered as"):
            reg.resolve(str(b))
        assert reg.alias("thinking@prod").checkpoint_id == inc
        (a / "model.safetensors").write_bytes(b"overwritten incumbent")
        with pytest.raises(HillclimbError, match="points at checkpoint .* changed"):
            reg.serve_path("thinking@prod")
    capsys.readouterr()
    assert main(["registry", "alias", "thinking@dev", cand, "--registry", str(db)]) == 2
    err = capsys.readouterr().err
    assert "changed since it was registered" in err and "Traceback" not in err


def test_a_moved_checkpoint_follows_its_weights_when_the_old_directory_was_reused(tmp_path):
    """Weights copied to `kept/`, then `run/` trained into again: registering `kept/` must move
    the record there — `run/` still has weights, but not these."""
    with Registry(tmp_path / "r.sqlite") as reg:
        run = fake_ckpt(tmp_path / "run", 1)
        first = reg.register_checkpoint(run)
        shutil.copytree(run, tmp_path / "kept")
        (run / "model.safetensors").write_bytes(b"another training run")
        again = reg.register_checkpoint(tmp_path / "kept")
        assert again.id == first.id and again.path == str((tmp_path / "kept").resolve())
        assert again.unservable_reason() is None
        # and a plain copy does not move a record whose directory still holds its weights
        shutil.copytree(tmp_path / "kept", tmp_path / "copy")
        assert reg.register_checkpoint(tmp_path / "copy").path == again.path


# ---- the report shows every evaluation it was given -----------------------------------------------
def test_two_evaluations_of_one_family_are_both_in_the_report(tmp_path):
    from hillclimb.climb.html_report import load_input, write_html_report

    d = tmp_path / "evals"
    d.mkdir()
    for name, rate in (("rl", 0.9), ("sft", 0.2)):
        r = task_result(Path(f"/runs/{name}/final"), [True] * int(rate * 10) + [False] * 10)
        r.update(name="thinking", preset="thinking-micro")
        r["tasks"]["accuracy"] = rate * 10 / (rate * 10 + 10)
        (d / f"{name}.json").write_text(json.dumps(r))
    inp = load_input(d)
    models = {m: phases["eval"]["model"] for m, phases in inp.evals.items()}
    assert sorted(models.values()) == ["/runs/rl/final", "/runs/sft/final"]
    html = write_html_report(d).read_text()
    assert "<td>thinking</td>" in html and "<td>thinking (sft.json)</td>" in html
    # the same results twice (a climb's eval.json and <model>.json) still show once
    rec = {"model": "m", "pretrain": None, "sft": task_result(Path("/x"), [True])}
    e = tmp_path / "climbish"
    e.mkdir()
    (e / "eval.json").write_text(json.dumps({"m": rec}))
    (e / "m.json").write_text(json.dumps(rec))
    assert list(load_input(e).evals) == ["m"]


# ---- items only one side was evaluated on, and the climb's record of the gate ---------------------
def test_items_left_out_of_the_pairing_are_named_in_the_decision_and_the_climb_report(
    tmp_path, capsys
):
    db = tmp_path / "r.sqlite"
    with Registry(db) as reg:
        a = _add(reg, fake_ckpt(tmp_path / "a", 1), [False] * 500)
        b = _add(reg, fake_ckpt(tmp_path / "b", 2), [True] * 10)  # 10 of the 500 items
        dec = promote(reg, b, a, GateConfig(target="heldout"))
    warn = "compared on the 10 items both were evaluated on; 490 of"
    assert any(warn in w for w in dec.warnings) and warn in dec.render()
    from hillclimb.climb.promotion import gate_record, render

    rec = {"decision": "promoted", "candidate": b, "incumbent": a, "alias": "thinking@prod"}
    rec.update(gate_record(dec.to_dict()))
    assert warn in render({"registry": str(db), "models": {"thinking": rec}})
    # a full overlap has nothing to say
    with Registry(db) as reg:
        assert compare(reg, a, a, "heldout").warnings == []
    capsys.readouterr()
    assert main(["promote", b, "--over", a, "--target", "heldout", "--registry", str(db)]) == 0
    assert warn in capsys.readouterr().out


def test_all_equal_paired_differences_get_an_interval_not_a_point():
    """Every resample of identical differences is identical: one item read "+100 points, CI
    [+100, +100]". Now a Wilson bound on the share of items that differ by that much."""
    from hillclimb.eval.bootstrap import paired_bootstrap

    one = paired_bootstrap([0.0], [1.0], resamples=200)
    assert one.delta == 1.0 and one.ci_low < 0 and one.ci_high == 1.0
    many = paired_bootstrap([1.0] * 621, [1.0] * 621, resamples=200)
    assert -0.01 < many.ci_low < 0 < many.ci_high < 0.01
    mixed = paired_bootstrap([0, 1, 0, 1], [1, 1, 0, 0], resamples=200)  # unchanged path
    assert mixed.ci_low <= mixed.delta <= mixed.ci_high
    tokens = paired_bootstrap([10.0, 12.0], [13.0, 15.0], resamples=200)  # not unit scores
    assert tokens.ci_low == tokens.ci_high == 3.0
