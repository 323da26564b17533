"""Router training for `auto`: fit on per-prompt outcomes of both models, report quality vs cost.

Why this exists: `serve.router.Router` ships hand-set prior weights. Whether they send the right
requests to `thinking` is an empirical question, so — as RouteLLM does (Ong et al. 2024) — we
answer generated problems with *both* models, label each prompt by whether the strong model was
needed, fit the router's logistic regression on those labels, and measure the result on problems
the fit never saw:

- **Pools.** The fit uses the generators' `train` split; the report uses the `val` split (the
  tuning split, never reported as a model result elsewhere), same families and tiers. Both models
  answer greedily through `rl.rollout.rollout_and_check` — the function evaluation and RL use —
  with `max_tokens` sized per family × tier from the reference solutions.
- **Features as served.** Each prompt is the one user turn the server would receive; features
  come from `Router.features(prompt_ids, messages)` on the code-flash engine, exactly the call
  `serve.serving.resolve_model` makes at request time (chat-rendered ids + the messages).
- **Label** (`label`): `thinking_not_better` (default) — code-flash is "good enough" unless
  thinking passed where code-flash failed. Routing only gains accuracy on those prompts; a prompt
  both models fail costs more on thinking for nothing. `flash_passed` — code-flash passed (the
  stricter label `Router.fit` documents); it also sends prompts both fail to thinking.
- **Degenerate labels.** If every training prompt has the same label (e.g. thinking never beats
  code-flash), logistic regression has no finite optimum; the router becomes the constant it
  implies (weights 0, bias = smoothed log-odds of the label), and the report says so.
- **Quality vs cost.** On the held-out pool, prompts are ranked by the router's score; sending
  the top share `s` to thinking gives a routed accuracy for every `s` in [0, 1] (ties in score are
  split evenly, i.e. the expectation over tie-breaks, since a threshold cannot split a tie).
  `PGR(s) = (routed(s) − weak) / (strong − weak)` and **APGR** is its mean (area) over `s`. A
  random router's expected curve is the straight line, APGR 0.5 exactly; a sampled one is
  reported too. The oracle (thinking only where it alone passes) is the ceiling; its APGR is
  *not* 1 but `1 − g/2` when code-flash never beats thinking (g = share of prompts only thinking
  solves), since even it needs share g to recover the whole gap. When strong and weak solve the
  same number of prompts the gap is 0 and APGR is undefined: it is reported as null with a note.
- **Intervals.** Seeded percentile bootstrap over held-out prompts (scores fixed, prompts
  resampled); resamples with a zero gap are skipped and counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hillclimb.errors import ConfigError, HillclimbError

REPORT_FORMAT = "hillclimb-router-report-v1"
LABELS = ("thinking_not_better", "flash_passed")
SHARES = [round(i / 10, 1) for i in range(11)]


@dataclass
class RouterFitConfig:
    thinking: str
    code_flash: str
    out: str
    families: list[str] | None = None  # None: every trainable family
    tiers: list[int] | None = None  # None: every tier
    n_per_tier: int = 10
    seed: int = 0
    label: str = "thinking_not_better"
    max_tokens: int | None = None  # None: per family x tier from the reference solutions
    max_tokens_margin: float = 1.5
    batch_size: int = 32
    l2: float = 1e-2
    threshold_share: float | None = None  # None: threshold 0 (P(needs thinking) > 0.5)
    bootstrap: int = 1000
    device: str | None = None

    def validate(self) -> None:
        from hillclimb import problems as P

        for f in self.families or []:
            if f not in P.FAMILIES:
                raise ConfigError(f"unknown problem family {f!r}; known: {sorted(P.FAMILIES)}")
            if f in P.HELDOUT_FAMILIES:
                raise ConfigError(
                    f"{f!r} is a held-out family (no train/val split); the router is fitted on "
                    f"train and reported on val: use any of {list(P.TRAIN_FAMILIES)}"
                )
        for t in self.tiers or []:
            if t not in P.TIERS:
                raise ConfigError(f"tier {t} not in {list(P.TIERS)}")
        # a repeated family or tier put its prompts in the fit and the report twice
        for name, values in (("families", self.families or []), ("tiers", self.tiers or [])):
            dup = sorted({v for v in values if list(values).count(v) > 1}, key=str)
            if dup:
                raise ConfigError(f"{name} lists {dup} more than once")
        if self.n_per_tier < 2:
            raise ConfigError(f"n_per_tier must be >= 2 (got {self.n_per_tier})")
        if self.label not in LABELS:
            raise ConfigError(f"unknown label {self.label!r}; labels are {list(LABELS)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError("max_tokens must be >= 1 (or omitted for per-cell sizing)")
        if self.threshold_share is not None and not 0.0 <= self.threshold_share <= 1.0:
            raise ConfigError(f"threshold_share must be in [0, 1], got {self.threshold_share}")
        if self.seed < 0:
            # numpy's generators refuse a negative seed: the report's bootstrap raised a bare
            # ValueError after both models had answered every problem (and the router was saved)
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.batch_size < 1 or self.bootstrap < 0 or self.l2 < 0:
            raise ConfigError("batch_size >= 1, bootstrap >= 0, l2 >= 0")


@dataclass
class Outcome:
    """One prompt answered by both models, with the router features the server would compute."""

    id: str
    family: str
    tier: int
    split: str
    features: dict[str, float]
    flash_passed: bool
    thinking_passed: bool
    flash_tokens: int = 0
    thinking_tokens: int = 0

    def flash_ok(self, label: str) -> bool:
        if label == "flash_passed":
            return self.flash_passed
        return self.flash_passed or not self.thinking_passed


# ---- quality vs cost (pure numpy: tested on synthetic outcomes) ---------------------------------


def routed_curve(scores: Any, strong: Any, weak: Any) -> np.ndarray:
    """Routed accuracy after sending the k highest-scored prompts to the strong model, k = 0..n.

    Ties in score are split evenly (a threshold cannot separate them), so the curve is the
    expectation over tie-breaking orders. Returns n + 1 values; [0] = weak, [n] = strong."""
    s = np.asarray(scores, dtype=np.float64)
    st = np.asarray(strong, dtype=np.float64)
    wk = np.asarray(weak, dtype=np.float64)
    n = len(s)
    if n == 0 or len(st) != n or len(wk) != n:
        raise HillclimbError(
            f"routed_curve needs equal non-empty lists ({n}, {len(st)}, {len(wk)})"
        )
    order = np.argsort(-s, kind="stable")
    ss, gain = s[order], (st - wk)[order]
    _, start, counts = np.unique(-ss, return_index=True, return_counts=True)
    eff = np.repeat(np.add.reduceat(gain, start) / counts, counts)
    return (wk.sum() + np.concatenate([[0.0], np.cumsum(eff)])) / n


def apgr(scores: Any, strong: Any, weak: Any) -> float | None:
    """Average performance gap recovered over the share of calls to the strong model, in [0, 1].

    None when strong and weak solve the same number of prompts (the gap is 0: undefined)."""
    st = np.asarray(strong, dtype=np.float64)
    wk = np.asarray(weak, dtype=np.float64)
    if abs(st.sum() - wk.sum()) < 0.5:
        return None
    curve = routed_curve(scores, st, wk)
    n = len(st)
    pgr = (curve - wk.mean()) / (st.mean() - wk.mean())
    return float(np.trapezoid(pgr, dx=1.0 / n))


def oracle_scores(strong: Any, weak: Any) -> np.ndarray:
    """The perfect router's ranking: strong-only wins first, strong-only losses last."""
    return np.asarray(strong, dtype=np.float64) - np.asarray(weak, dtype=np.float64)


def curve_at(curve: np.ndarray, shares: list[float]) -> list[float]:
    n = len(curve) - 1
    return [float(np.interp(s * n, np.arange(n + 1), curve)) for s in shares]


def threshold_for_share(scores: Any, share: float) -> float:
    """A threshold that sends about `share` of these prompts to thinking (score > threshold)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = int(round(share * len(s)))
    if k <= 0:
        return float(s[0])
    if k >= len(s):
        return float(s[-1] - 1e-6)
    return float((s[k - 1] + s[k]) / 2) if s[k - 1] > s[k] else float(s[k])


def bootstrap_apgr(
    scores: Any, strong: Any, weak: Any, *, resamples: int, seed: int
) -> dict[str, Any]:
    """Percentile 95% interval of APGR over prompts resampled with replacement."""
    s, st, wk = (np.asarray(a, dtype=np.float64) for a in (scores, strong, weak))
    rng = np.random.default_rng(seed)
    vals, undefined = [], 0
    for _ in range(resamples):
        idx = rng.integers(0, len(s), size=len(s))
        v = apgr(s[idx], st[idx], wk[idx])
        if v is None:
            undefined += 1
        else:
            vals.append(v)
    ci = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else None
    return {"ci95": ci, "resamples": resamples, "undefined_resamples": undefined}


def paired_apgr_difference(
    a: Any, b: Any, strong: Any, weak: Any, *, resamples: int, seed: int
) -> dict[str, Any]:
    """APGR(a) − APGR(b) on the same prompts, with a paired bootstrap interval."""
    sa, sb, st, wk = (np.asarray(x, dtype=np.float64) for x in (a, b, strong, weak))
    va, vb = apgr(sa, st, wk), apgr(sb, st, wk)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(st), size=len(st))
        da, db = apgr(sa[idx], st[idx], wk[idx]), apgr(sb[idx], st[idx], wk[idx])
        if da is not None and db is not None:
            diffs.append(da - db)
    return {
        "value": None if va is None or vb is None else round(va - vb, 6),
        "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]
        if diffs
        else None,
        "resamples": resamples,
    }


def random_router_apgr(strong: Any, weak: Any, *, draws: int, seed: int) -> dict[str, Any]:
    """APGR of routers that score prompts at random (expected value 0.5 exactly)."""
    rng = np.random.default_rng(seed)
    n = len(strong)
    vals = [apgr(rng.random(n), strong, weak) for _ in range(draws)]
    got = [v for v in vals if v is not None]
    if not got:
        return {"value": None, "ci95": None, "draws": draws}
    return {
        "value": float(np.mean(got)),
        "ci95": [float(np.percentile(got, 2.5)), float(np.percentile(got, 97.5))],
        "draws": draws,
    }


def quality_vs_cost(
    routers: dict[str, Any], strong: Any, weak: Any, *, resamples: int, seed: int
) -> dict[str, Any]:
    """The report's held-out section: accuracies, the curve per router and APGR with intervals."""
    st = np.asarray(strong, dtype=np.float64)
    wk = np.asarray(weak, dtype=np.float64)
    n = len(st)
    gap = float(st.mean() - wk.mean())
    defined = abs(st.sum() - wk.sum()) >= 0.5
    all_scores = {**routers, "oracle": oracle_scores(st, wk)}
    curves = {k: curve_at(routed_curve(v, st, wk), SHARES) for k, v in all_scores.items()}
    curve = [
        {"share_to_thinking": s, **{k: round(c[i], 6) for k, c in curves.items()}}
        | {"random": round(float(wk.mean() + s * (st.mean() - wk.mean())), 6)}
        for i, s in enumerate(SHARES)
    ]
    out_apgr: dict[str, Any] = {}
    for k, v in all_scores.items():
        val = apgr(v, st, wk)
        rec: dict[str, Any] = {"value": None if val is None else round(val, 6)}
        if k != "oracle" and defined and resamples:
            rec.update(bootstrap_apgr(v, st, wk, resamples=resamples, seed=seed))
        out_apgr[k] = rec
    if {"fitted", "priors"} <= set(routers) and defined and resamples:
        out_apgr["fitted_minus_priors"] = paired_apgr_difference(
            routers["fitted"], routers["priors"], st, wk, resamples=resamples, seed=seed
        )
    out_apgr["random_expected"] = {"value": 0.5 if defined else None}
    out_apgr["random_sampled"] = random_router_apgr(st, wk, draws=200, seed=seed)
    note = (
        None
        if defined
        else "thinking and code-flash solve the same number of held-out prompts: the gap is 0, "
        "so PGR and APGR are undefined (null); the curve still shows routed accuracy"
    )
    if defined and gap < 0:
        note = "code-flash beats thinking on this pool: the gap is negative, PGR reads inverted"
    return {
        "n": n,
        "strong_accuracy": round(float(st.mean()), 6),
        "strong_accuracy_ci95": rate_ci(st.tolist()),
        "weak_accuracy": round(float(wk.mean()), 6),
        "weak_accuracy_ci95": rate_ci(wk.tolist()),
        "gap": round(gap, 6),
        "only_thinking_passed": int(((st > 0) & (wk == 0)).sum()),
        "only_flash_passed": int(((wk > 0) & (st == 0)).sum()),
        "apgr": out_apgr,
        "apgr_note": note,
        "curve": curve,
    }


# ---- collecting outcomes and fitting ----------------------------------------------------------


def collect_outcomes(
    thinking: Any, flash: Any, router: Any, problems: list[Any], cfg: RouterFitConfig
) -> list[Outcome]:
    """Both models answer every problem greedily; features are the server's request-time ones."""
    from hillclimb.rl.rollout import cell_max_tokens, rollout_and_check

    tok = flash.tokenizer
    caps: dict[tuple[str, int], int] = {}
    for p in problems:
        key = (p.family, p.tier)
        if key not in caps:
            cell = [q for q in problems if (q.family, q.tier) == key]
            caps[key] = cfg.max_tokens or cell_max_tokens(tok, cell, cfg.max_tokens_margin)
    mt = [caps[(p.family, p.tier)] for p in problems]
    kw = {"n": 1, "max_tokens": mt, "temperature": 0.0, "seed": cfg.seed}
    fr = rollout_and_check(flash, problems, batch_size=cfg.batch_size, **kw)
    tr = rollout_and_check(thinking, problems, batch_size=cfg.batch_size, **kw)
    out = []
    for p, f, t in zip(problems, fr, tr, strict=True):
        feats = router.features(f.prompt_ids, [{"role": "user", "content": p.prompt}])
        out.append(
            Outcome(
                id=p.id,
                family=p.family,
                tier=p.tier,
                split=p.split,
                features=feats,
                flash_passed=f.passed,
                thinking_passed=t.passed,
                flash_tokens=f.completion_tokens,
                thinking_tokens=t.completion_tokens,
            )
        )
    return out


def fit_router(router: Any, train: list[Outcome], label: str, l2: float) -> dict[str, Any]:
    """Fit `router` in place on `train`; a constant router when every label is the same."""
    from hillclimb.serve.router import FEATURES

    ok = [o.flash_ok(label) for o in train]
    needs = len(ok) - sum(ok)
    if 0 < needs < len(ok):
        stats = router.fit([(o.features, k) for o, k in zip(train, ok, strict=True)], l2=l2)
        return {**stats, "degenerate": False, "note": None}
    bias = math.log((needs + 0.5) / (len(ok) - needs + 0.5))
    router.weights = {"bias": bias, **dict.fromkeys(FEATURES, 0.0)}
    router.threshold = 0.0
    side = "thinking" if needs else "code-flash"
    return {
        "loss": None,
        "accuracy": 1.0,
        "n": len(ok),
        "degenerate": True,
        "note": f"every training prompt has the same label ({label}): no finite logistic fit; "
        f"the router is the constant it implies (always {side})",
    }


def rate_ci(passed: Any) -> list[float]:
    """The 95% interval of a pass rate over these prompts (`metrics.bootstrap_ci`: Wilson for
    pass/fail outcomes). Why: the report gave code-flash's, thinking's and the routed accuracy
    with n but no interval, and at the pool sizes a routing run uses (tens of prompts per
    family) 40% of 40 is [26%, 55%] — a 5-point routing gain is inside it."""
    from hillclimb.eval.metrics import bootstrap_ci

    lo, hi = bootstrap_ci([float(x) for x in passed])
    return [round(lo, 6), round(hi, 6)]


def _pool_summary(outs: list[Outcome], label: str) -> dict[str, Any]:
    n = len(outs)
    needs = sum(not o.flash_ok(label) for o in outs)
    return {
        "n": n,
        "flash_accuracy": round(sum(o.flash_passed for o in outs) / n, 6),
        "flash_accuracy_ci95": rate_ci(o.flash_passed for o in outs),
        "thinking_accuracy": round(sum(o.thinking_passed for o in outs) / n, 6),
        "thinking_accuracy_ci95": rate_ci(o.thinking_passed for o in outs),
        "labels": {"needs_thinking": needs, "flash_ok": n - needs},
        "mean_tokens": {
            "code-flash": round(sum(o.flash_tokens for o in outs) / n, 2),
            "thinking": round(sum(o.thinking_tokens for o in outs) / n, 2),
        },
    }


def run_router_fit(cfg: RouterFitConfig) -> dict[str, Any]:
    """Fit the `auto` router on the train pool, save it, report quality vs cost on the val pool.

    Writes `cfg.out` (a router file `serve --router` loads; checked by loading it back) and
    `<out stem>.report.json`; returns the report."""
    from hillclimb import problems as P
    from hillclimb.eval.core import _check_checkpoint
    from hillclimb.io import write_json_atomic
    from hillclimb.serve.engine import Engine
    from hillclimb.serve.router import Router

    cfg.validate()
    for path in (cfg.thinking, cfg.code_flash):
        _check_checkpoint(Path(path))
    out = Path(cfg.out)
    if out.suffix != ".json":
        raise ConfigError(f"--out must name a .json file, got {out}")
    if not out.parent.is_dir():
        raise ConfigError(f"directory of --out does not exist: {out.parent}")
    t0 = time.perf_counter()
    flash = Engine.from_checkpoint(
        cfg.code_flash, device=cfg.device, max_batch=cfg.batch_size, name="code-flash"
    )
    thinking = Engine.from_checkpoint(
        cfg.thinking, device=cfg.device, max_batch=cfg.batch_size, name="thinking"
    )
    if flash.tokenizer.hf.to_str() != thinking.tokenizer.hf.to_str():
        raise HillclimbError("thinking and code-flash must share one tokenizer (as `serve` needs)")
    fams = list(cfg.families or P.TRAIN_FAMILIES)
    tiers = list(cfg.tiers or P.TIERS)
    router = Router(flash)
    pools = {
        s: collect_outcomes(
            thinking, flash, router, P.problem_suite(cfg.seed, s, cfg.n_per_tier, fams, tiers), cfg
        )
        for s in ("train", "val")
    }
    priors = Router(flash)
    fit = fit_router(router, pools["train"], cfg.label, cfg.l2)
    if cfg.threshold_share is not None:
        train_scores = [router.score_features(o.features) for o in pools["train"]]
        router.threshold = threshold_for_share(train_scores, cfg.threshold_share)
    router.save(out)
    loaded = Router.load(out, flash)
    if loaded.weights != router.weights or loaded.threshold != router.threshold:
        raise HillclimbError(f"router file {out} does not load back to the fitted router")

    val = pools["val"]
    strong = [o.thinking_passed for o in val]
    weak = [o.flash_passed for o in val]
    scores = {
        "fitted": [router.score_features(o.features) for o in val],
        "priors": [priors.score_features(o.features) for o in val],
    }
    held = quality_vs_cost(scores, strong, weak, resamples=cfg.bootstrap, seed=cfg.seed)
    sent = [s > router.threshold for s in scores["fitted"]]
    routed = [t if go else f for t, f, go in zip(strong, weak, sent, strict=True)]
    held["at_saved_threshold"] = {
        "threshold": router.threshold,
        "share_to_thinking": round(sum(sent) / len(val), 6),
        "accuracy": round(sum(routed) / len(val), 6),
        "accuracy_ci95": rate_ci(routed),
        "n": len(val),
    }
    for row, share in zip(held["curve"], SHARES, strict=True):
        row["fitted_threshold"] = round(threshold_for_share(scores["fitted"], share), 6)
    report = {
        "format": REPORT_FORMAT,
        "router_file": str(out),
        "thinking": str(cfg.thinking),
        "code_flash": str(cfg.code_flash),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("thinking", "code_flash")},
        "families": fams,
        "tiers": tiers,
        "label": cfg.label,
        "weights": router.weights,
        "threshold": router.threshold,
        "priors": priors.weights,
        "train": {**_pool_summary(pools["train"], cfg.label), "split": "train", "fit": fit},
        "heldout": {**_pool_summary(val, cfg.label), "split": "val", **held},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json_atomic(report_path(out), report)
    return report


def report_path(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.stem + ".report.json")


__all__ = [
    "LABELS",
    "Outcome",
    "REPORT_FORMAT",
    "RouterFitConfig",
    "apgr",
    "collect_outcomes",
    "fit_router",
    "oracle_scores",
    "quality_vs_cost",
    "routed_curve",
    "run_router_fit",
    "threshold_for_share",
]
