"""Router training (eval.routing): the quality-vs-cost curve and APGR on synthetic outcomes, a
non-degenerate fit on synthetic features, and the whole `hillclimb router fit` on two micro
checkpoints (a router file `serve.router` loads, a report with its fields, clear errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _server_util import make_checkpoints
from hillclimb.errors import HillclimbError
from hillclimb.eval import routing as R
from hillclimb.serve.router import FEATURES, Router


def _outcomes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weak = rng.random(n) < 0.3
    strong = weak | (rng.random(n) < 0.4)  # thinking solves a superset, plus more
    return strong.astype(float), weak.astype(float)


def test_oracle_recovers_the_gap_at_its_share_and_apgr_is_its_closed_form() -> None:
    strong, weak = _outcomes(400)
    g = float((strong - weak).mean())  # share only thinking solves
    curve = R.routed_curve(R.oracle_scores(strong, weak), strong, weak)
    assert curve[0] == pytest.approx(weak.mean()) and curve[-1] == pytest.approx(strong.mean())
    k = int(round(g * 400))
    assert curve[k] == pytest.approx(strong.mean())  # whole gap recovered at share g
    assert R.apgr(R.oracle_scores(strong, weak), strong, weak) == pytest.approx(1 - g / 2)
    # a perfect oracle with a vanishing share of thinking-only prompts has APGR -> 1
    s2, w2 = np.zeros(1000), np.zeros(1000)
    s2[0] = 1.0
    assert R.apgr(R.oracle_scores(s2, w2), s2, w2) == pytest.approx(1.0, abs=1e-3)
    # and no other ranking beats the oracle
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert R.apgr(rng.random(400), strong, weak) <= R.apgr(
            R.oracle_scores(strong, weak), strong, weak
        )


def test_always_weak_is_zero_at_share_zero_and_anti_oracle_is_worst() -> None:
    strong, weak = _outcomes(300, seed=2)
    pgr0 = (R.routed_curve(np.zeros(300), strong, weak)[0] - weak.mean()) / (
        strong.mean() - weak.mean()
    )
    assert pgr0 == 0.0
    # constant scores: one tie group, so the curve is the random (straight) line: APGR 0.5
    assert R.apgr(np.zeros(300), strong, weak) == pytest.approx(0.5)
    anti = R.apgr(-R.oracle_scores(strong, weak), strong, weak)
    assert anti < 0.5 and anti == pytest.approx(float((strong - weak).mean()) / 2)


def test_random_router_apgr_is_about_half() -> None:
    strong, weak = _outcomes(3000, seed=3)
    rng = np.random.default_rng(4)
    assert R.apgr(rng.random(3000), strong, weak) == pytest.approx(0.5, abs=0.05)
    rnd = R.random_router_apgr(strong, weak, draws=50, seed=0)
    assert rnd["value"] == pytest.approx(0.5, abs=0.02)


def test_apgr_undefined_when_gap_is_zero() -> None:
    strong = np.array([1.0, 0.0, 1.0, 0.0])
    weak = np.array([0.0, 1.0, 1.0, 0.0])  # same count solved
    assert R.apgr([0.1, 0.2, 0.3, 0.4], strong, weak) is None
    rep = R.quality_vs_cost({"fitted": [0.1, 0.2, 0.3, 0.4]}, strong, weak, resamples=10, seed=0)
    assert rep["apgr"]["fitted"]["value"] is None and "undefined" in rep["apgr_note"]
    with pytest.raises(HillclimbError):
        R.routed_curve([], [], [])


def test_curve_share_is_monotone_and_ends_at_weak_and_strong() -> None:
    strong, weak = _outcomes(97, seed=5)
    scores = (strong - weak) + np.random.default_rng(6).random(97)  # informative, noisy
    rep = R.quality_vs_cost(
        {"fitted": scores, "priors": -scores}, strong, weak, resamples=50, seed=0
    )
    shares = [r["share_to_thinking"] for r in rep["curve"]]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0
    for key in ("fitted", "priors", "random", "oracle"):
        assert rep["curve"][0][key] == pytest.approx(weak.mean(), abs=1e-6)
        assert rep["curve"][-1][key] == pytest.approx(strong.mean(), abs=1e-6)
    lo, hi = rep["apgr"]["fitted"]["ci95"]
    assert lo <= rep["apgr"]["fitted"]["value"] <= hi
    assert rep["apgr"]["random_expected"]["value"] == 0.5
    d = rep["apgr"]["fitted_minus_priors"]
    assert d["value"] == pytest.approx(
        rep["apgr"]["fitted"]["value"] - rep["apgr"]["priors"]["value"], abs=1e-5
    )
    assert d["value"] > 0 and d["ci95"][0] > 0  # priors = -scores: the reversed ranking
    # thresholds: share s of the prompts score above the threshold for share s
    for s in (0.0, 0.3, 0.5, 1.0):
        t = R.threshold_for_share(scores, s)
        assert (scores > t).mean() == pytest.approx(s, abs=1 / 97)


def test_fit_on_synthetic_features_learns_the_signal_and_beats_priors() -> None:
    rng = np.random.default_rng(7)
    outs = []
    for i in range(400):
        f = {k: float(rng.random()) for k in FEATURES}
        needs = f["math"] > 0.6  # thinking needed exactly on high-"math" prompts
        outs.append(
            R.Outcome(
                id=str(i),
                family="arith",
                tier=1,
                split="train",
                features=f,
                flash_passed=not needs,
                thinking_passed=True,
            )
        )
    router = Router(None)
    fit = R.fit_router(router, outs[:300], "thinking_not_better", 1e-3)
    assert not fit["degenerate"] and fit["accuracy"] > 0.85
    assert router.weights["math"] > max(abs(router.weights[k]) for k in FEATURES if k != "math")
    held = outs[300:]
    strong = [o.thinking_passed for o in held]
    weak = [o.flash_passed for o in held]
    fitted = R.apgr([router.score_features(o.features) for o in held], strong, weak)
    priors = R.apgr([Router(None).score_features(o.features) for o in held], strong, weak)
    oracle = R.apgr(R.oracle_scores(strong, weak), strong, weak)
    assert fitted > 0.95 * oracle and fitted > priors + 0.1
    # degenerate labels: a constant router, said so
    const = Router(None)
    same = [o for o in outs if o.flash_passed][:10]
    d = R.fit_router(const, same, "flash_passed", 1e-2)
    assert d["degenerate"] and "always code-flash" in d["note"]
    assert all(const.weights[k] == 0.0 for k in FEATURES) and const.weights["bias"] < 0


def test_labels() -> None:
    both_fail = R.Outcome("a", "arith", 1, "val", {}, False, False)
    only_t = R.Outcome("b", "arith", 1, "val", {}, False, True)
    assert both_fail.flash_ok("thinking_not_better") and not both_fail.flash_ok("flash_passed")
    assert not only_t.flash_ok("thinking_not_better") and not only_t.flash_ok("flash_passed")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_checkpoints(tmp_path_factory.mktemp("router_fit"))


def test_router_fit_end_to_end_writes_a_loadable_router_and_report(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    from hillclimb.cli import main
    from hillclimb.serve.engine import Engine

    out = tmp_path / "router.json"
    rc = main(
        [
            "router",
            "fit",
            "--thinking",
            str(ckpts["thinking"]),
            "--code-flash",
            str(ckpts["code-flash"]),
            "--out",
            str(out),
            "--families",
            "arith,code_function",
            "--tiers",
            "1",
            "--n-per-tier",
            "2",
            "--max-tokens",
            "16",
            "--bootstrap",
            "20",
        ]
    )
    assert rc == 0
    flash = Engine.from_checkpoint(ckpts["code-flash"], device="cpu", max_batch=2)
    router = Router.load(out, flash)
    rep = json.loads((tmp_path / "router.report.json").read_text())
    assert rep["format"] == R.REPORT_FORMAT and rep["router_file"] == str(out)
    assert router.weights == rep["weights"] and router.threshold == rep["threshold"]
    assert rep["train"]["n"] == 4 and rep["train"]["split"] == "train"
    h = rep["heldout"]
    assert h["n"] == 4 and h["split"] == "val" and len(h["curve"]) == len(R.SHARES)
    for key in (
        "strong_accuracy",
        "weak_accuracy",
        "gap",
        "apgr",
        "apgr_note",
        "at_saved_threshold",
    ):
        assert key in h
    for key in ("fitted", "priors", "random_expected", "random_sampled", "oracle"):
        assert key in h["apgr"]
    if h["gap"] == 0:  # random micro models solve nothing: APGR must say undefined
        assert h["apgr"]["fitted"]["value"] is None and h["apgr_note"]
    # features are the server's own: recompute one with the loaded router
    from hillclimb import problems as P
    from hillclimb.rl.rollout import chat_prompt

    p = P.problem_suite(0, "val", 2, ["arith"], [1])[0]
    f = router.features(chat_prompt(flash.tokenizer, p), [{"role": "user", "content": p.prompt}])
    assert set(f) == set(FEATURES)


def test_router_fit_bad_input_is_a_clear_error(ckpts: dict[str, Path], tmp_path: Path) -> None:
    base = dict(
        thinking=str(ckpts["thinking"]),
        code_flash=str(ckpts["code-flash"]),
        out=str(tmp_path / "r.json"),
        families=["arith"],
        tiers=[1],
        n_per_tier=2,
    )
    cases = [
        ({"thinking": str(tmp_path / "nope")}, "checkpoint not found"),
        ({"n_per_tier": 1}, "n_per_tier must be >= 2"),
        ({"families": ["chess"]}, "unknown problem family"),
        ({"families": ["sequence"]}, "held-out family"),
        ({"label": "vibes"}, "unknown label"),
        ({"out": str(tmp_path / "missing" / "r.json")}, "does not exist"),
        ({"out": str(tmp_path / "r.txt")}, ".json"),
    ]
    for change, msg in cases:
        with pytest.raises(HillclimbError, match=msg):
            R.run_router_fit(R.RouterFitConfig(**{**base, **change}))
    assert not (tmp_path / "r.json").exists()
