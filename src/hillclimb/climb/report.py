"""The climb report: `RUN_DIR/report/report.md` plus PNG plots (matplotlib, Agg backend).

Everything in it is read back from what the stages left on disk — the training runs'
`metrics.jsonl`/`val.jsonl`/`routing.jsonl`, the eval stage's JSON, the data card, the stage
markers — never from in-memory state, so `--restart-from report` regenerates it from a finished
run and the report shows exactly what the artifacts say. Plots:

- `loss_<stage>.png`: per training run, train loss (nats/token) and validation bits per byte by
  step (with the unigram baseline for pre-training runs);
- `expert_load.png`: per training run, a layers x experts heatmap of load relative to even
  (summed over every logged step; 1 everywhere = perfect balance), one colour scale for all;
- `accuracy_<model>.png`: accuracy per family on each evaluation split (new problems, new
  phrasing), one bar per tier, the no-training baseline as a tick on each bar;
- `tokens_<model>.png`: completion tokens (mean and per correct answer) per family over tiers;
- `stage_times.png`: seconds per stage.

Markdown because it renders on GitHub, in editors and in a terminal pager alike; the same
plots and tables also go into one self-contained `report.html` (`climb/html_report.py`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.io import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from hillclimb.climb.state import Climb


def _jsonl(path: Path) -> list[dict[str, Any]]:
    from hillclimb.train.logging import read_jsonl

    return read_jsonl(path)


def _plt() -> Any:
    from hillclimb.plots import pyplot

    return pyplot()


def _save(fig: Any, path: Path) -> None:
    from hillclimb.plots import save_png

    save_png(fig, path)


def plot_loss(run: Path, title: str, dest: Path, baseline: float | None) -> bool:
    metrics, val = _jsonl(run / "metrics.jsonl"), _jsonl(run / "val.jsonl")
    if not metrics:
        return False
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([m["step"] for m in metrics], [m["loss"] for m in metrics], lw=1)
    a.set_xlabel("step")
    a.set_ylabel("train loss (nats/token)")
    a.set_title(f"{title}: train loss")
    a.grid(alpha=0.3)
    if val:
        b.plot([v["step"] for v in val], [v["val_bpb"] for v in val], marker="o", label="val bpb")
    if baseline is not None:
        b.axhline(baseline, color="gray", ls="--", label=f"unigram {baseline:.2f}")
    b.set_xlabel("step")
    b.set_ylabel("bits per byte")
    b.set_title(f"{title}: validation")
    b.grid(alpha=0.3)
    b.legend()
    _save(fig, dest)
    return True


def expert_load(run: Path) -> list[list[float]] | None:
    """Share of routed tokens per (layer, expert), summed over every routing record of a run."""
    recs = _jsonl(run / "routing.jsonl")
    sums: dict[int, list[float]] = {}
    for r in recs:
        for lay in r.get("layers", []):
            cur = sums.setdefault(int(lay["layer"]), [0.0] * len(lay["tokens_per_expert"]))
            for i, v in enumerate(lay["tokens_per_expert"]):
                cur[i] += float(v)
    if not sums:
        return None
    rows = []
    for k in sorted(sums):
        tot = sum(sums[k]) or 1.0
        rows.append([v / tot for v in sums[k]])
    return rows


@dataclass(frozen=True)
class LoadScale:
    """The one colour scale of every expert-load heatmap: load relative to even (1 = every expert
    gets 1/E of the tokens), so runs with different expert counts share one scale."""

    vmin: float
    vmax: float
    even: float = 1.0


def relative_load(mat: list[list[float]]) -> list[list[float]]:
    """Token shares -> load relative to even (share x experts)."""
    return [[v * len(row) for v in row] for row in mat]


def expert_loads(runs: list[tuple[str, Path]]) -> list[tuple[str, list[list[float]]]]:
    """(name, relative load matrix) for every run that logged routing."""
    data = [(name, expert_load(run)) for name, run in runs]
    return [(n, relative_load(m)) for n, m in data if m]


def load_scale(data: list[tuple[str, list[list[float]]]]) -> LoadScale:
    top = max((max(row) for _, m in data for row in m), default=1.0)
    return LoadScale(0.0, max(2.0, float(top)))


def expert_load_rows(
    data: list[tuple[str, list[list[float]]]],
) -> tuple[list[str], list[list[Any]]]:
    """Per run: MoE layers, experts, and the most loaded expert's load relative to even."""
    rows = [[n, len(m), len(m[0]), f"{max(max(r) for r in m):.2f}"] for n, m in data]
    return ["run", "MoE layers", "experts", "max load / uniform"], rows


def plot_expert_load(data: list[tuple[str, list[list[float]]]], dest: Path) -> LoadScale | None:
    """Heatmaps (layers x experts) of relative load, one per run, all on ONE diverging colour
    scale centred on even load (white), with one colour bar marked at even load."""
    if not data:
        return None
    from matplotlib.colors import TwoSlopeNorm

    scale = load_scale(data)
    norm = TwoSlopeNorm(vmin=scale.vmin, vcenter=scale.even, vmax=scale.vmax)
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(data), figsize=(3.8 * len(data) + 1.2, 3.4), squeeze=False, constrained_layout=True
    )
    im = None
    for k, (ax, (name, mat)) in enumerate(zip(axes[0], data, strict=True)):
        im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", norm=norm)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("expert")
        if k == 0:
            ax.set_ylabel("MoE layer")
        ax.set_yticks(range(len(mat)))
    bar = fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.02)
    bar.set_label(f"load / even load (one scale, {scale.vmin:g}-{scale.vmax:.2f})")
    bar.ax.axhline(scale.even, color="k", lw=2)
    ticks = sorted({scale.vmin, scale.even / 2, scale.even, scale.vmax})
    bar.set_ticks(ticks, labels=["even" if t == scale.even else f"{t:.2f}" for t in ticks])
    _save(fig, dest)
    return scale


def plot_tokens_by_tier(tasks: dict[str, Any], title: str, dest: Path) -> bool:
    """Tokens against difficulty: mean completion tokens (solid) and tokens per correct answer
    (dashed) per family over tiers, on the first evaluation split."""
    cells = [c for c in tasks.get("cells") or [] if c["split"] == next(iter(tasks["splits"]), "")]
    if not cells:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for fam in dict.fromkeys(c["family"] for c in cells):
        cs = sorted((c for c in cells if c["family"] == fam), key=lambda c: c["tier"])
        line = ax.plot(
            [c["tier"] for c in cs],
            [c["mean_completion_tokens"] for c in cs],
            marker="o",
            label=fam,
        )[0]
        tpc = [(c["tier"], c["tokens_per_correct"]) for c in cs if c.get("tokens_per_correct")]
        ax.plot([t for t, _ in tpc], [v for _, v in tpc], ls="--", color=line.get_color(), lw=1)
    ax.set_xticks(sorted({c["tier"] for c in cells}))
    ax.set_xlabel("tier (difficulty)")
    ax.set_ylabel("completion tokens")
    ax.set_title(f"{title}: tokens by tier (solid mean, dashed per correct)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, dest)
    return True


def plot_accuracy(tasks: dict[str, Any], title: str, dest: Path) -> bool:
    """One panel per evaluation split: accuracy per family, a bar per tier with its 95% Wilson
    interval as whiskers, the no-training baseline of each cell as a black tick on its bar.

    Why the whiskers: the bars of 1-item cells (0% or 100%) looked as exact as the tables'
    20-item cells; the tables print the interval, the figure did not."""
    splits = tasks.get("splits") or {}
    if not splits:
        return False
    plt = _plt()
    tiers = [str(t) for t in tasks["settings"]["tiers"]]
    width = 0.8 / max(1, len(tiers))
    fams = list(next(iter(splits.values()))["by_family_tier"])
    fig, axes = plt.subplots(
        1, len(splits), figsize=(max(6, 1.3 * len(fams)) * len(splits), 3.8), squeeze=False
    )
    for ax, (split, sv) in zip(axes[0], splits.items(), strict=True):
        cells = sv["by_family_tier"]
        for j, t in enumerate(tiers):
            xs = [i + (j - (len(tiers) - 1) / 2) * width for i in range(len(fams))]
            ys = [cells.get(f, {}).get(t, {}).get("accuracy", 0.0) for f in fams]
            bs = [cells.get(f, {}).get(t, {}).get("baseline", {}).get("best") for f in fams]
            lows, highs = wilson_whiskers(cells, fams, t)
            ax.bar(
                xs, ys, width=width, label=f"tier {t}", yerr=[lows, highs], capsize=0,
                error_kw={"lw": 0.8, "ecolor": "0.55"},
            )  # fmt: skip
            bx = [x for x, b in zip(xs, bs, strict=True) if b is not None]
            ax.scatter(bx, [b for b in bs if b is not None], marker="_", color="k", s=80, zorder=3)
        ax.set_xticks(range(len(fams)))
        ax.set_xticklabels(fams, rotation=20, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy (greedy)")
        ax.set_title(f"{title} — {split}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(
        fontsize=8,
        title="black tick = no-training baseline\ngrey line = 95% Wilson interval",
        title_fontsize=7,
    )
    _save(fig, dest)
    return True


def wilson_whiskers(
    cells: dict[str, Any], fams: list[str], tier: str
) -> tuple[list[float], list[float]]:
    """Per family, the lengths below and above one tier's bar of its 95% Wilson interval
    (`cells`: a split's `by_family_tier`); 0 where a cell has no counts."""
    from hillclimb.stats import wilson_ci

    lows, highs = [], []
    for f in fams:
        c = cells.get(f, {}).get(tier, {})
        k, n = c.get("correct"), c.get("n")
        if not isinstance(k, int) or not isinstance(n, int) or n <= 0:
            lows.append(0.0)
            highs.append(0.0)
            continue
        lo, hi = wilson_ci(k, n)
        acc = c.get("accuracy", k / n)
        lows.append(max(0.0, acc - lo))
        highs.append(max(0.0, hi - acc))
    return lows, highs


def accuracy_table(t: dict[str, Any]) -> str:
    """One row per family x tier: every split's accuracy with its 95% interval (when the result
    holds item-level results) beside its no-training baseline.

    Why the interval: the HTML report printed it and report.md did not — "40% (8/20)" read as
    a measurement as exact as the 17.1% over 621 items."""
    return _md_table(*accuracy_rows(t, cell_intervals(t)))


Interval = tuple[float, float]


def accuracy_rows(
    t: dict[str, Any], intervals: dict[tuple[str, str, int], Interval] | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the accuracy table; with `intervals` ((split, family, tier) -> 95%
    interval) each accuracy carries its interval."""
    splits = list(t.get("splits") or {})
    label = {"heldout": "new problems", "heldout_phrasing": "new phrasing", "val": "val"}
    header = ["family", "tier"]
    for s in splits:
        header += [f"{label.get(s, s)} acc", "baseline"]
    has_pk = any(c.get("pass_at_k") for c in t["cells"])
    if has_pk:
        header.append("sampled pass@k (new problems)")
    header += ["truncated", "tokens / correct", "max tokens"]
    by = {(c["split"], c["family"], c["tier"]): c for c in t["cells"]}
    rows = []
    for fam in t["splits"][splits[0]]["by_family_tier"]:
        for tier in t["settings"]["tiers"]:
            cs = [by.get((s, fam, tier)) for s in splits]
            if not any(cs):
                continue
            c0 = next(c for c in cs if c)
            name = fam + (" †" if c0["heldout_family"] else "")
            row: list[Any] = [name, tier]
            for s, c in zip(splits, cs, strict=True):
                ci = (intervals or {}).get((s, fam, tier))
                acc = f"{c['accuracy']:.0%} ({c['correct']}/{c['n']})" if c else "-"
                if c and ci:
                    acc += f" [{ci[0]:.0%}, {ci[1]:.0%}]"
                row += [acc, _pct(c["baseline"]["best"])] if c else ["-", "-"]
            if has_pk:
                pk = next((c["pass_at_k"] for c in cs if c and c.get("pass_at_k")), None)
                row.append(" / ".join(f"@{k} {v:.0%}" for k, v in pk.items()) if pk else "-")
            trunc = sum(c["truncated"] for c in cs if c)
            n = sum(c["n"] for c in cs if c)
            tpc = _pooled_tokens_per_correct([c for c in cs if c])
            row += [f"{trunc / n:.0%}", "-" if tpc is None else f"{tpc:.0f}", c0["max_tokens"]]
            rows.append(row)
    return header, rows


def _pooled_tokens_per_correct(cells: list[dict[str, Any]]) -> float | None:
    """Completion tokens per correct answer over several splits' cells of one family x tier:
    each cell's tokens spent on correct answers (its per-correct figure x its correct count),
    summed, over the correct answers summed.

    Why: the row printed the plain mean of the splits' figures, so one correct answer of 500
    tokens on one split beside 19 of 100 on the other read 300 tokens per correct answer, where
    the 20 answers took 120 each."""
    pairs = [(c["tokens_per_correct"], c["correct"]) for c in cells if c.get("tokens_per_correct")]
    right = sum(k for _, k in pairs)
    return sum(v * k for v, k in pairs) / right if right else None


def cell_intervals(
    t: dict[str, Any], resamples: int = 1000
) -> dict[tuple[str, str, int], Interval]:
    """95% interval of every (split, family, tier) cell's greedy accuracy (`bootstrap_ci`: Wilson
    for these pass/fail items), from the item-level results (`tasks.items`). Like the suites'
    intervals it is the sampling error of these items, not of the skill."""
    from hillclimb.eval.metrics import bootstrap_ci

    by: dict[tuple[str, str, int], list[float]] = {}
    for it in t.get("items") or []:
        by.setdefault((it["split"], it["family"], it["tier"]), []).append(float(it["passed"]))
    return {k: bootstrap_ci(v, resamples=resamples) for k, v in by.items()}


# Task-eval settings that decide which items are asked (families, tiers, cell size, seed), what
# an answer may cost (token budget) or how it is decoded, and which baseline is printed: two
# evaluations that differ in one are not like for like.
LIKE_SETTINGS = (
    "families", "tiers", "splits", "n_per_tier", "seed", "max_tokens", "max_tokens_margin",
    "temperature_greedy", "baseline_train_n",
)  # fmt: skip


def unlike(
    a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("SFT", "RL")
) -> list[str]:
    """Why task evaluations `a` and `b` (`tasks` of two results) are not like for like: settings
    in `LIKE_SETTINGS` that differ, items only one was asked (by split and id) or, without
    item-level results, cells of different size; [] when they are like for like."""
    sa, sb = a.get("settings") or {}, b.get("settings") or {}
    out = [f"{k} {sa.get(k)!r} vs {sb.get(k)!r}" for k in LIKE_SETTINGS if sa.get(k) != sb.get(k)]
    ia = {(str(i.get("split")), str(i.get("id"))) for i in a.get("items") or []}
    ib = {(str(i.get("split")), str(i.get("id"))) for i in b.get("items") or []}
    if ia and ib and ia != ib:
        out.append(
            f"{len(ia - ib)} of {names[0]}'s {len(ia)} items and {len(ib - ia)} of "
            f"{names[1]}'s {len(ib)} are not the other's"
        )
    elif not (ia and ib):
        na = {(c["split"], c["family"], c["tier"]): c["n"] for c in a.get("cells") or []}
        n_diff = sum(
            na.get((c["split"], c["family"], c["tier"]), c["n"]) != c["n"]
            for c in b.get("cells") or []
        )
        if n_diff:
            out.append(f"{n_diff} cells of different size")
    return out


def sft_vs_rl_title(m: str, ev: dict[str, Any]) -> str:
    """The SFT-vs-RL table's heading: "same items, same settings" only when that was checked.

    Why: the heading said so unconditionally; SFT and RL results evaluated with another seed,
    cell size or token budget were set side by side cell by cell, and a change the evaluation
    made read as the change RL made."""
    why = unlike(ev["sft"]["tasks"], ev["rl"]["tasks"])
    rl = f"RL{rl_stage_note(m, ev)}"
    if not why:
        return f"{m}: SFT vs {rl} (same items, same settings)"
    return (
        f"{m}: SFT vs {rl} — NOT like for like ({'; '.join(why)}): a change below is not RL's alone"
    )


def rl_stage_note(m: str, ev: dict[str, Any]) -> str:
    """The suffix ` (<stage>)` when the RL model the eval stage measured is not `rl-<model>`'s
    (harness RL: `rl-harness-<model>`, which starts from problem RL's model), else "".

    Why: the headline's "after RL" and the SFT-vs-RL table stood right before `rl-<model>`'s
    climbing curve, while they measured the harness-RL checkpoint; nothing said which."""
    stage = ev.get("rl_stage")
    return f" ({stage})" if isinstance(stage, str) and stage != f"rl-{m}" else ""


def sft_vs_rl(ev: dict[str, Any]) -> str:
    """Per family x tier x split: SFT accuracy, RL accuracy, the change, tokens per correct."""
    return _md_table(*sft_vs_rl_rows(ev))


def sft_vs_rl_paired(ev: dict[str, Any], seed: int = 0) -> list[str]:
    """Per split, RL − SFT on the items both were asked (paired bootstrap, `eval.bootstrap`):
    the change with its 95% interval, the one-sided p-values and how many items each side alone
    solved; [] without item-level results.

    Why: the per-cell table's changes ("+15", "-10" on 20 items) and the headline's two
    accuracies were printed with nothing to say which of them were beyond noise; a change of
    one or two items per cell read as what RL did."""
    return [
        f"{p.split}: SFT {p.mean_a:.1%} → RL {p.mean_b:.1%} on the same {p.n} items: "
        f"{p.delta * 100:+.1f} points, paired 95% CI [{p.ci_low * 100:+.1f}, "
        f"{p.ci_high * 100:+.1f}], p(one-sided, better) {p.better:.3g}, p(one-sided, worse) "
        f"{p.worse:.3g}; only RL right on {p.b_only}, only SFT on {p.a_only} — "
        + ("beyond noise (95%, two-sided)" if p.beyond else "not beyond noise (95%, two-sided)")
        for p in paired_by_split(ev, seed)
    ]


@dataclass(frozen=True)
class Paired:
    """RL − SFT on one split's shared items: the paired bootstrap's numbers, with the p-values
    read as the promotion gate reads them (the larger of the bootstrap's and the sign test's)."""

    split: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    better: float
    worse: float
    a_only: int
    b_only: int

    @property
    def beyond(self) -> bool:
        """Beyond noise at 95% two-sided: the interval excludes 0 and a one-sided p < 0.025."""
        return (self.ci_low > 0 or self.ci_high < 0) and min(self.better, self.worse) < 0.025


def paired_by_split(ev: dict[str, Any], seed: int = 0) -> list[Paired]:
    """`Paired` per split of the RL result, on the items SFT was asked too; [] without
    item-level results. One computation for the SFT-vs-RL lines and the RL section's verdict,
    so the two cannot disagree."""
    from hillclimb.eval.bootstrap import paired_bootstrap
    from hillclimb.registry.gate import sign_test_p

    def passed(phase: str) -> dict[tuple[str, str], float]:
        items = ((ev.get(phase) or {}).get("tasks") or {}).get("items") or []
        return {(i["split"], str(i["id"])): float(i["passed"]) for i in items}

    a, b = passed("sft"), passed("rl")
    out = []
    for split in dict.fromkeys(k[0] for k in b):
        keys = [k for k in b if k[0] == split and k in a]
        if not keys:
            continue
        pb = paired_bootstrap([a[k] for k in keys], [b[k] for k in keys], seed=seed)
        out.append(
            Paired(
                split, pb.n, pb.mean_a, pb.mean_b, pb.delta, pb.ci_low, pb.ci_high,
                max(pb.p_better, sign_test_p(pb.b_only, pb.a_only)),
                max(pb.p_worse, sign_test_p(pb.a_only, pb.b_only)), pb.a_only, pb.b_only,
            )
        )  # fmt: skip
    return out


# ---- the RL section's verdict and held-out endpoints -----------------------------------------
SPLIT_LABEL = {"heldout": "new problems", "heldout_phrasing": "new phrasing", "val": "val"}


def _first_split(t: dict[str, Any]) -> str | None:
    """A task evaluation's first split (the one its headline accuracy is)."""
    return next(iter((t.get("settings") or {}).get("splits") or t.get("splits") or []), None)


def rl_verdict(ev: dict[str, Any]) -> str:
    """What RL did to one model (`ev`: its eval record), in words derived from the held-out
    measurement: the paired RL − SFT change on the first held-out split with its 95% interval —
    "a measurable gain", "a measurable loss" or "no measurable gain" — or why there is none.

    Why: the section was titled "RL: the climb" whatever was measured, above a flat or noisy
    val curve and a promotion gate that refused the RL model."""
    sft, rl = (ev.get("sft") or {}).get("tasks"), (ev.get("rl") or {}).get("tasks")
    if not sft or not rl:
        return "no held-out measurement of the RL model"
    if unlike(sft, rl):
        return "no verdict (SFT and RL were not evaluated like for like)"
    first = _first_split(rl)
    p = next((x for x in paired_by_split(ev) if x.split == first), None)
    if p is None:
        return "no verdict (no item-level held-out results to pair)"
    nums = (
        f"paired {p.delta * 100:+.1f} points, CI [{p.ci_low * 100:+.1f}, {p.ci_high * 100:+.1f}] "
        f"on {p.n} {SPLIT_LABEL.get(p.split, p.split)}"
    )
    if not p.beyond:
        return f"no measurable gain ({nums})"
    return f"{'a measurable gain' if p.delta > 0 else 'a measurable loss'} ({nums})"


def rl_section_title(models: list[str], evals: dict[str, Any]) -> str:
    """`RL: <verdict>` for one model, `RL: m1 <verdict>; m2 <verdict>` for several."""
    if len(models) == 1:
        m = models[0]
        return f"RL{rl_stage_note(m, evals[m])}: {rl_verdict(evals[m])}"
    return "RL: " + "; ".join(
        f"{m}{rl_stage_note(m, evals[m])}: {rl_verdict(evals[m])}" for m in models
    )


def _split_rate(v: dict[str, Any]) -> str:
    """`30.0% (12/40) [18.1%, 45.4%]`: a split's accuracy with k/n and its Wilson interval."""
    from hillclimb.stats import wilson_ci

    k, n = v.get("correct"), v.get("n")
    if not isinstance(k, int) or not isinstance(n, int) or n <= 0:
        return _fmt(v.get("accuracy"), ".1%")
    lo, hi = wilson_ci(k, n)
    return f"{k / n:.1%} ({k}/{n}) [{lo:.1%}, {hi:.1%}]"


def _split_baseline(t: dict[str, Any], split: str, v: dict[str, Any]) -> float | None:
    """A split's no-training baseline: its own, else pooled by items over its cells' bests
    (as `eval.tasks` pools it), None when a cell has none."""
    if isinstance(v.get("baseline"), int | float):
        return float(v["baseline"])
    cells = [c for c in t.get("cells") or [] if c.get("split") == split]
    bests = [(c.get("baseline") or {}).get("best") for c in cells]
    n = sum(c["n"] for c in cells)
    if not n or any(b is None for b in bests):
        return None
    return sum(b * c["n"] for b, c in zip(bests, cells, strict=True)) / n


def heldout_endpoint_lines(m: str, ev: dict[str, Any]) -> list[str]:
    """Markdown bullets, one per evaluation split: SFT and RL on held-out items with k/n and
    95% intervals, the no-training baseline of the same items and the paired change — the
    endpoints to read beside the val curve. [] without both evaluations.

    Why: the RL curve is measured on `val` (held-out data must not steer training), and shown
    alone it read as the held-out result."""
    sft, rl = (ev.get("sft") or {}).get("tasks") or {}, (ev.get("rl") or {}).get("tasks") or {}
    paired = {p.split: p for p in paired_by_split(ev)}
    out = []
    for s, v in (rl.get("splits") or {}).items():
        o = (sft.get("splits") or {}).get(s)
        if not o:
            continue
        p = paired.get(s)
        change = (
            f"paired change {p.delta * 100:+.1f} points, 95% CI [{p.ci_low * 100:+.1f}, "
            f"{p.ci_high * 100:+.1f}] — {'beyond' if p.beyond else 'not beyond'} noise"
            if p
            else "no item-level results to pair"
        )
        out.append(
            f"- held-out {SPLIT_LABEL.get(s, s)} ({s}): SFT {_split_rate(o)} → "
            f"RL{rl_stage_note(m, ev)} {_split_rate(v)}; no-training baseline "
            f"{_fmt(_split_baseline(rl, s, v), '.1%')}; {change}"
        )
    return out


def endpoints_for_stage(key: str, m: str, ev: dict[str, Any]) -> list[str]:
    """The held-out endpoint bullets under RL stage `key`'s curve when the eval stage measured
    that stage's checkpoint, else one line naming the stage it measured.

    Why: with harness RL the eval stage measures `rl-harness-<model>`'s checkpoint; set under
    `rl-<model>`'s val curve, its held-out numbers read as that stage's."""
    measured = ev.get("rl_stage") or f"rl-{m}"
    if not ev.get("rl"):
        return ["- held-out endpoints: the RL model was not evaluated", ""]
    if measured != key:
        return [
            f"- held-out endpoints: the eval stage measured `{measured}`'s checkpoint, not "
            f"this stage's; see `{measured}`",
            "",
        ]
    return [*(heldout_endpoint_lines(m, ev) or ["- held-out endpoints: none"]), ""]


def gate_line(m: str, gate: dict[str, Any] | None) -> str:
    """One sentence: what the promotion gate decided for model `m`'s RL checkpoint."""
    rec = ((gate or {}).get("models") or {}).get(m)
    if not isinstance(rec, dict):
        return "The promotion gate did not judge this model in this climb."
    from hillclimb.climb.promotion import render

    head = render({"models": {m: rec}}).splitlines()[1].removeprefix(f"- {m}: ")
    return f"Promotion gate: {head}."


VAL_CURVE_NOTE = (
    "The curve (first panel) and the table under it are the greedy pass rate on the **val** "
    "split — items drawn like the training ones, measured during RL to watch it; the held-out "
    "splits never steer training and are not in the curve. A rise or fall there is not the "
    "held-out result: read the held-out endpoints (the eval stage, the same items for SFT and "
    "RL) beside it."
)


def rl_lead_lines(
    models: list[str], evals: dict[str, Any], gate: dict[str, Any] | None
) -> list[str]:
    """The RL section's lead: per model, its verdict in words and the gate's decision."""
    out = []
    for m in models:
        out.append(
            f"**{m}**: RL{rl_stage_note(m, evals[m])} against SFT on held-out problems: "
            f"{rl_verdict(evals[m])}. {gate_line(m, gate)}"
        )
        out.append("")
    return out


def sft_vs_rl_rows(ev: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the SFT-vs-RL table: per cell both accuracies with correct/n (a "+50"
    change read the same on 2 items as on 200 when the table printed bare percentages), the
    change and the no-training baseline; which changes are beyond noise is said per split by
    `sft_vs_rl_paired` above it."""
    a, b = ev["sft"]["tasks"], ev["rl"]["tasks"]
    by_a = {(c["split"], c["family"], c["tier"]): c for c in a["cells"]}
    rows = []
    for c in b["cells"]:
        o = by_a.get((c["split"], c["family"], c["tier"]))
        if o is None:
            continue
        tpc = [x["tokens_per_correct"] for x in (o, c)]
        rows.append(
            [
                c["family"] + (" †" if c["heldout_family"] else ""),
                c["tier"],
                c["split"],
                f"{o['accuracy']:.0%} ({o['correct']}/{o['n']})",
                f"{c['accuracy']:.0%} ({c['correct']}/{c['n']})",
                f"{(c['accuracy'] - o['accuracy']) * 100:+.0f}",
                _pct(c["baseline"]["best"]),
                " → ".join("-" if x is None else f"{x:.0f}" for x in tpc),
            ]
        )
    header = ["family", "tier", "split", "SFT", "RL", "change (points)", "baseline"]
    return header + ["tokens / correct"], rows


def tokens_by_tier_rows(phases: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """Header and rows of the tokens-by-tier table: per tier, pooled over the trained reasoning
    families on the held-out problems (`eval.tasks.tokens_by_tier`), the reference solutions'
    tokens, then for each of SFT and RL: accuracy, completion tokens and think-block tokens per
    correct answer, each as a multiple of tier 1's. Where issue 12's "tokens rise with tier" is
    read, beside how much the problems themselves make them rise. None without reasoning
    cells."""
    from hillclimb.eval.tasks import tokens_by_tier

    tabs = {
        p: tokens_by_tier(phases[p]["tasks"])
        for p in ("sft", "rl")
        if (phases.get(p) or {}).get("tasks")
    }
    tabs = {p: t for p, t in tabs.items() if t}
    if not tabs:
        return None

    def tok(v: dict[str, Any], m: str) -> str:
        x, r = v[m], v["ratio"][m]
        return "-" if x is None else f"{x:.0f} ({r:.1f}×)" if r is not None else f"{x:.0f}"

    header = ["tier", "n", "reference tokens"]
    for p in tabs:
        header += [
            f"{p.upper()} accuracy",
            f"{p.upper()} tokens / correct",
            f"{p.upper()} thinking / correct",
        ]
    rows = []
    for tier in sorted({t for tab in tabs.values() for t in tab}):
        first = next(tab[tier] for tab in tabs.values() if tier in tab)
        base = _pct(_tier_pool(phases[next(p for p in tabs if tier in tabs[p])]["tasks"], tier)[0])
        row: list[Any] = [tier, first["n"], tok(first, "reference_tokens")]
        for p, tab in tabs.items():
            v = tab.get(tier)
            ci = _tier_pool(phases[p]["tasks"], tier)[1]
            row += (
                [
                    _pct(v["accuracy"]) + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else ""),
                    tok(v, "tokens_per_correct"),
                    tok(v, "reasoning_tokens_per_correct"),
                ]
                if v
                else ["-", "-", "-"]
            )
        rows.append([*row, base])
    return [*header, "no-training baseline (same items)"], rows


def _tier_pool(t: dict[str, Any], tier: int) -> tuple[float | None, Interval | None]:
    """The no-training baseline and the 95% interval of the accuracy of one tier's pool in the
    tokens-by-tier table (the cells `eval.tasks.tokens_by_tier` pools: first split, trained
    reasoning families): the baseline pooled by items, the interval over the pool's items.

    Why: the table's per-tier accuracies ("70%" at tier 1, "12%" at tier 4) stood with no
    baseline — 26% and 18% for those very items — and no interval."""
    from hillclimb.eval.metrics import bootstrap_ci

    split = next(iter(t.get("splits") or {}), None)
    cells = [
        c for c in t.get("cells") or []
        if c["split"] == split and c["tier"] == tier and c.get("kind") == "reasoning"
        and not c.get("heldout_family")
    ]  # fmt: skip
    n = sum(c["n"] for c in cells)
    bests = [(c.get("baseline") or {}).get("best") for c in cells]
    base = (
        sum(b * c["n"] for b, c in zip(bests, cells, strict=True)) / n
        if n and all(b is not None for b in bests)
        else None
    )
    keys = {(c["family"], c["tier"]) for c in cells}
    vals = [
        float(i["passed"])
        for i in t.get("items") or []
        if i.get("split") == split and (i.get("family"), i.get("tier")) in keys
    ]
    return base, (bootstrap_ci(vals) if vals else None)


TOKENS_BY_TIER_NOTE = (
    "Trained reasoning families pooled, held-out problems; thinking = the think block, tags "
    "included; (×) = over tier 1. Reference tokens: the same problems' own minimal worked "
    "solutions in this tokenizer, per problem — how much tokens must rise with tier for a model "
    "that neither pads nor skips steps. Per correct answer pools the answers each family gets "
    "right, so the family mix differs between tiers."
)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


_TIER_METRIC = re.compile(r".+/tier(\d+)")


def metric_truncated_share(res: dict[str, Any], metric: str) -> float | None:
    """The share of answers stopped by the token budget among the answers `metric` is over: the
    whole suite's, or for a per-tier metric (`pass@1/tier3`) that tier's items' (None when the
    result holds no item rows to count them in).

    Why: every per-tier row printed the whole suite's truncated share — one cut-off answer in
    tier 4 read as 1% of each tier's answers truncated. A sampled metric (`sampled_pass@10`)
    has the sampled answers' share (`sampled`), not the greedy answers'."""
    if metric.startswith("sampled_"):
        return (res.get("sampled") or {}).get("truncated_share")
    keep = _metric_subset(res, metric)
    if keep is None:
        return res.get("truncated_share")
    rows = [i for i in res.get("items") or [] if keep(i)]
    if not rows:
        return None
    return sum(_item_truncated(i) for i in rows) / len(rows)


def _item_truncated(i: dict[str, Any]) -> bool:
    """Whether one suite item's answer was stopped by a limit, in any suite's item format: a
    completion cut at the token budget (`finish_reason` "length", problems' status
    "truncated") or a harness episode that ran out of turns, tokens, time or context."""
    from hillclimb.eval.harness_suite import TRUNCATED  # the harness suite's own list

    return (
        i.get("finish_reason") == "length"
        or i.get("status") == "truncated"
        or i.get("exit_status") in TRUNCATED
    )


def _metric_subset(res: dict[str, Any], metric: str) -> Any:
    """Which items a per-subset suite metric is over (a predicate), None for a whole-suite one:
    `…/tier<N>` (completion), `resolve_rate/<group>` and `resolve_rate/projects:<split>`
    (harness), `accuracy/<split>[/reasoning|code|heldout_family]` (problems).

    Why: only the tier rows counted their own items; a harness group whose every episode ran
    out of turns printed the pooled share (50% when the other group had none), and a problems
    split the share over both splits."""
    hit = _TIER_METRIC.fullmatch(metric)
    if hit:
        return lambda i: str(i.get("tier")) == hit.group(1)
    head, _, rest = metric.partition("/")
    if not rest:
        return None
    if head == "resolve_rate":
        if rest.startswith("projects:"):
            split = rest.removeprefix("projects:")
            return lambda i: i.get("project_split") == split
        return lambda i: i.get("group") == rest
    if head == "accuracy":
        split, _, label = rest.partition("/")
        return lambda i: i.get("split") == split and (not label or _problem_kind(i) == label)
    return None


def _problem_kind(i: dict[str, Any]) -> str | None:
    """A problems-suite item's accuracy label (as `eval.problems_suite` splits them)."""
    from hillclimb import problems as P

    fam = i.get("family")
    if fam in P.HELDOUT_FAMILIES:
        return "heldout_family"
    return P.FAMILIES.get(fam) if isinstance(fam, str) else None


def suite_table_rows(
    evals: dict[str, Any], models: list[str], eval_dir: Path | None = None
) -> list[list[Any]]:
    """The standard-suites table: per model, suite and metric its value, 95% interval, n, the
    no-training baseline on the same items and the truncated share of those items. The eval
    stage keeps a summary of each suite in `<model>.json` (no item rows, no sampled stats):
    with `eval_dir` the truncation is counted in the full result file the summary names. When
    the final model is an RL checkpoint, the SFT model's run of the same suites follows each
    model's rows (`suites_sft`, labelled "<model> (SFT)"), so RL sits beside its start."""
    from hillclimb.eval.suites import metric_baseline

    return [
        [label, name, metric, _pct(v["value"]), f"{_pct(v['ci95'][0])} – {_pct(v['ci95'][1])}",
         v["n"], _pct(metric_baseline(res, metric)),
         _pct(metric_truncated_share(_full_suite(res, eval_dir), metric))]
        for m in models
        for key, label in (("suites", m), ("suites_sft", f"{m} (SFT)"))
        for name, res in (evals[m].get(key) or {}).items()
        for metric, v in res["metrics"].items()
    ]  # fmt: skip


def _full_suite(res: dict[str, Any], eval_dir: Path | None) -> dict[str, Any]:
    """The full suite result behind the eval stage's summary `res` (its `file` in `eval_dir`),
    or `res` itself when it holds its items or the file is unreadable."""
    f = res.get("file")
    if res.get("items") or eval_dir is None or not isinstance(f, str):
        return res
    try:
        full = json.loads((eval_dir / Path(f).name).read_text())
    except (OSError, ValueError):
        return res
    return full if isinstance(full, dict) else res


def plot_stage_times(rows: list[dict[str, Any]], dest: Path) -> bool:
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1))
    ax.barh([r["stage"] for r in rows][::-1], [r["seconds"] for r in rows][::-1])
    ax.set_xlabel("seconds")
    ax.set_title("time per stage")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, dest)
    return True


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def flywheel_lines(
    sft_data: dict[str, Any], rl_harness: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """Markdown: the flywheel's provenance — per model, how many SFT examples came from
    telemetry exports (accepted harness episodes and API answers) and how many harness-RL tasks
    (unresolved or rejected ones) the `rl-harness-<model>` stage (`rl_harness`: model -> stage
    result) took from them, with who attested consent where an export says so; "no flywheel
    data", with the counts, when no model used an export.

    Why always a section: it was left out when no model used an export, so a reader could not
    tell "no flywheel data" from "not reported", and harness-RL tasks from exports and consent
    attestations were never shown."""
    rl_harness = rl_harness or {}
    models = sorted({m for m, v in sft_data.items() if isinstance(v, dict)} | set(rl_harness))
    fws = {m: (sft_data.get(m) or {}).get("flywheel") for m in models}
    head = ["## The flywheel", ""]
    if not any(fws.values()) and not any((v or {}).get("flywheel") for v in rl_harness.values()):
        return head + [_no_flywheel(sft_data, rl_harness), ""]
    rows = []
    reasons: set[str] = set()  # every refusal reason the "refused (...)" column counts
    for model in models:
        fw = fws[model] or {}
        refused = fw.get("refused") or {}  # by reason (older stage records: consent only)
        reasons |= {k for k in refused if k != "no_consent"}
        src = ", ".join(f"{k} {v}" for k, v in sorted((fw.get("by_source") or {}).items()))
        other = ", ".join(f"{k} {v}" for k, v in sorted(refused.items()) if k != "no_consent")
        rows.append(
            [model, fw.get("sft_examples", 0), (sft_data.get(model) or {}).get("examples", "-"),
             src or "none", fw.get("refused_no_consent", 0), other or "none",
             fw.get("decontamination", "-"), fw.get("rl_prompts_available", 0),
             len(fw.get("exports") or []), _attested(fw),
             _rl_tasks_cell(rl_harness.get(model))]
        )  # fmt: skip
    return [
        *head,
        "Training data that came from telemetry exports, per model: SFT examples (resolved "
        "harness episodes; API answers users accepted, from accounts that opted in) of all SFT "
        "examples, and harness-RL tasks (the exports' unresolved or user-rejected tasks) of all "
        'the rl-harness stage trained on. "RL prompts in the exports" counts what the exports '
        "offered; only an `[rl_harness] flywheel` export is trained on (last column).",
        "",
        _md_table(
            [
                "model",
                "from the flywheel",
                "all SFT examples",
                "by source",
                "refused (no consent)",
                _refused_heading(reasons),
                "decontamination",
                "RL prompts in the exports",
                "exports",
                "consent attested by (API records)",
                "harness-RL tasks from the flywheel",
            ],
            rows,
        ),  # fmt: skip
        "",
        *_unverifiable_lines(fws),
    ]


def _no_flywheel(sft_data: dict[str, Any], rl_harness: dict[str, dict[str, Any]]) -> str:
    """The flywheel section's one sentence when no model trained on an export, with the counts
    it is 0 of."""
    sft = ", ".join(
        f"{m} 0 of {v.get('examples', '?')} SFT examples"
        for m, v in sorted(sft_data.items())
        if isinstance(v, dict)
    )
    rl = ", ".join(f"{m} 0 of {v.get('tasks', '?')} tasks" for m, v in sorted(rl_harness.items()))
    parts = [p for p in (sft, f"harness RL: {rl}" if rl else "") if p]
    return (
        "No flywheel data: no training example or RL task of this climb came from a telemetry "
        "export (no `flywheel` in `[sft_data]` or `[rl_harness]`)"
        + (f"; {'; '.join(parts)}" if parts else "")
        + "."
    )


def _attested(fw: dict[str, Any]) -> str:
    """Who export.json says vouches for its API records' consent (`consent_attested`), "-"
    when none does (consent then checked against the server's database)."""
    rows = fw.get("consent_attested") or []
    return "; ".join(f"{a.get('by')} ({a.get('api_records', '?')})" for a in rows) or "-"


def _rl_tasks_cell(res: dict[str, Any] | None) -> str:
    """`k of n (refused: ...)`: an rl-harness stage's tasks from flywheel exports."""
    if not isinstance(res, dict):
        return "no rl-harness stage"
    k, n = int(res.get("flywheel_tasks") or 0), res.get("tasks", "?")
    refused = ((res.get("flywheel") or {}).get("refused")) or {}
    why = ", ".join(f"{r} {v}" for r, v in sorted(refused.items()))
    return f"{k} of {n}" + (f" (refused: {why})" if why else "")


def _unverifiable_lines(fws: dict[str, Any]) -> list[str]:
    """One line per export whose API records' consent could not be checked (and were refused)."""
    out = [
        f"- {m}: consent unverifiable for export `{u.get('export')}` ({u.get('why')}): its API "
        "records were refused"
        for m, fw in fws.items()
        for u in (fw or {}).get("consent_unverifiable") or []
    ]
    return [*out, ""] if out else []


def _refused_heading(reasons: set[str]) -> str:
    """The heading of the flywheel table's other-refusals column, naming the reasons its cells
    count. Why: it was fixed to "evaluation-only task, unknown task, contains an evaluation
    item" while the column also counted revoked or unverifiable consent and client-written
    turns (session 23)."""
    shown = ", ".join(r.replace("_", " ") for r in sorted(reasons)) or "none"
    return f"refused (other reasons: {shown})"


def top_reasons(f: dict[str, Any], k: int = 4) -> str:
    """A data-card filter's `k` most frequent drop reasons, most first, and how many others.

    Why: the "top reasons" column took the first four in the card's order — `dedup` lists
    "exact" before "near" — so a filter with more reasons could leave its largest out while the
    column said "top"."""

    def count(v: Any) -> float:
        return float(v) if isinstance(v, int | float) else 0.0

    reasons = sorted((f.get("reasons") or {}).items(), key=lambda kv: (-count(kv[1]), str(kv[0])))
    text = ", ".join(f"{r} {v}" for r, v in reasons[:k])
    rest = len(reasons) - k
    return text + (f" (+{rest} more reason{'s' if rest != 1 else ''})" if rest > 0 else "")


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """`text` with control characters (other than tab and newline) written as `\\xNN`.

    Why: a micro model's sample generation held a NUL byte, printed raw, so report.md was a
    binary file to grep, diff and git, and report.html held a character HTML forbids."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _quote(text: str, limit: int = 600) -> str:
    """A generation as an indented block, readable (`printable`)."""
    t = printable(text if len(text) <= limit else text[:limit] + " …")
    return "\n".join("    " + ln for ln in (t or "(empty)").splitlines())


def seen_lines(t: dict[str, Any]) -> list[str]:
    """For each `problems.baselines.SEEN_FLAGS` flag, each split's accuracy without the items it
    marks (`eval.tasks`: `without_seen_arith`, word problems whose worked arithmetic a training
    story works too; `without_passed_by_train_fn`, code items a training function of another key
    passes), one sentence per flag beside the plain accuracy above; none for a result without
    the flags (older files, no such items).

    Why: items are held out by key, not by what a memorised training item gets right: most
    tier-1 held-out stories repeat a training story's sums (session 26 audit) and some held-out
    functions are passed by a training function (session 16 audit), so "new problems" overstates
    it."""
    from hillclimb.problems.baselines import SEEN_FLAGS

    lines = []
    for g in SEEN_FLAGS:
        parts = []
        for s, v in (t.get("splits") or {}).items():
            w = v.get(g.split_key) if isinstance(v, dict) else None
            if not w or not w.get("flagged") or not isinstance(w.get("accuracy"), int | float):
                continue
            parts.append(
                f"{s} {w['accuracy']:.1%} ({w['correct']}/{w['n']}; {w['flagged']} left out)"
            )
        if parts:
            lines.append(f"{g.sentence}: " + ", ".join(parts) + ".")
    return [*lines, ""] if lines else []


seen_arith_lines = seen_lines  # its name before the code flag (session 27 tests import it)


def headline_accuracy(t: dict[str, Any]) -> str:
    """A task evaluation's first-split accuracy as the headline prints it: with correct/n and
    the 95% interval over its items when the result holds them.

    Why: the headline set "17.4%" (SFT) beside "17.1%" (RL) and a 9.5% baseline with no n and
    no interval, where the two accuracies' intervals overlap almost entirely."""
    acc = t.get("accuracy")
    if not isinstance(acc, int | float):
        return "-"
    text = f"{acc:.1%}"
    first = ((t.get("settings") or {}).get("splits") or [None])[0]
    # the top-level accuracy is the first split's; older results keep its n only there
    counts = t if isinstance(t.get("n"), int) else (t.get("splits") or {}).get(first) or {}
    if isinstance(counts.get("n"), int) and isinstance(counts.get("correct"), int):
        text += f" ({counts['correct']}/{counts['n']})"
    vals = [float(i["passed"]) for i in t.get("items") or [] if i.get("split") == first]
    if vals:
        from hillclimb.eval.metrics import bootstrap_ci

        lo, hi = bootstrap_ci(vals)
        text += f" [{lo:.1%}, {hi:.1%}]"
    return text


def final_models_label(evals: dict[str, Any]) -> str:
    """What the accuracy section's final models are: "after RL", "after SFT", or both named.

    Why: the heading said "final models: after RL" as soon as one model had an RL stage, over
    the tables of models whose final checkpoint is their SFT model (code-flash in `tiny`)."""
    rl = [m for m, e in evals.items() if e.get("rl")]
    if not rl:
        return "after SFT"
    if len(rl) == len(evals):
        return "final models: after RL"
    return "final models: after RL for " + ", ".join(rl) + "; after SFT for the others"


def _after(m: str, e: dict[str, Any]) -> str:
    """Which checkpoint one model's accuracy tables measure: "after RL [(stage)]" or "after SFT"."""
    if not e.get("rl"):
        return "after SFT"
    note = rl_stage_note(m, e)
    return f"after RL, {note.strip(' ()')}" if note else "after RL"


def pretrained_lines(t: dict[str, Any] | None) -> list[str]:
    """The pre-trained model's task accuracy as report.md prints it under the final model's
    tables: its first split, with correct/n, the 95% interval and the no-training baseline of
    the same items.

    Why: the line read "overall 3.1%" — no n, no interval, no baseline, and "overall" for what
    is the first split alone — so a pre-trained score below the lookup table's read as a
    measured skill."""
    if not t or not isinstance(t.get("accuracy"), int | float):
        return []
    first = ((t.get("settings") or {}).get("splits") or ["heldout"])[0]
    return [
        f"Before SFT (pre-trained model), {first}: {headline_accuracy(t)}; no-training baseline "
        f"on the same items {_fmt(t.get('baseline'), '.1%')}.",
        "",
    ]


def copy_check_line(key: str, rec: Any, warmup: Any = None) -> str | None:
    """The copy check of pre-training stage `key` (`run.json` `extra.copy_check`, written when the
    run had a copy warm-up; train/copy_check.py), as one report line, with where an adaptive
    warm-up ended (`extra.copy_warmup`, `warmup`); None without a check. Failure is bold: the SFT
    and harness stages after it need a model that copies."""
    if not isinstance(rec, dict) or not isinstance(rec.get("top1_second_copy"), (int, float)):
        return None
    from hillclimb.train.copy_check import copy_warning

    after = copy_warmup_phrase(warmup)
    w = copy_warning(key, rec)
    if w:
        return f"**Warning — {w}.**" + (f" {after}" if after else "")
    return (
        f"{key}: the copy warm-up formed in-context copying (copy probe top-1 "
        f"{rec['top1_second_copy']:.3f} >= {rec.get('threshold')})."
        + (f" {after}" if after else "")
    )


def copy_warmup_phrase(w: Any) -> str:
    """Where an adaptive copy warm-up ended (`run.json` `extra.copy_warmup`), as a sentence; ""
    for a fixed warm-up or none. Why: whether it passed a check early or ran to its maximum is
    what says if more warm-up steps could help (a rising probe) or not. The weight decay it ran
    at (`weight_decay`, recorded since session 29) follows when present."""
    if not isinstance(w, dict) or not w.get("check_every") or not isinstance(w.get("end"), int):
        return ""
    checks = [c for c in w.get("checks") or [] if isinstance(c.get("top1"), (int, float))]
    wd = w.get("weight_decay")
    # the decay it ran at (session 29's `copy_warmup_weight_decay`): where copying forms depends
    # on it, so a reader comparing two climbs' warm-ups needs it beside the step
    decay = f" Weight decay during it: {wd:g}." if isinstance(wd, int | float) else ""
    if w.get("passed"):
        return (
            f"The adaptive warm-up passed its check at step {w['end']} "
            f"(checked every {w['check_every']}).{decay}"
        )
    best = max(checks, key=lambda c: c["top1"], default=None)
    tail = f"; best probe {best['top1']:.3f} at step {best['step']}" if best else ""
    return (
        f"The adaptive warm-up ran to its maximum, {w['end']} steps, without passing a "
        f"check{tail}.{decay}"
    )


def headline_reading_lines(evals: dict[str, Any], models: list[str]) -> list[str]:
    """Markdown bullets that read the headline plainly, per model: whether each corpus bpb is
    below the unigram baseline, and whether the final accuracy on the first split is above,
    below or within noise of its no-training baseline (its 95% Wilson interval against it).

    Why: the headline printed pre-trained bpb 3.960 beside a unigram 3.751 and 0/16 beside a
    5.2% baseline, leaving the reader to notice that neither model had learned beyond token
    frequencies nor beaten a lookup table."""
    out = []
    for m in models:
        e = evals[m]
        uni = ((e.get("pretrain") or {}).get("bpb") or {}).get("unigram_bpb")
        parts = []
        for label, phase in (("pre-trained", "pretrain"), ("after SFT", "sft")):
            v = ((e.get(phase) or {}).get("bpb") or {}).get("val_bpb")
            if isinstance(v, int | float) and isinstance(uni, int | float):
                rel = "below" if v < uni else "NOT below"
                parts.append(f"{label} bpb {v:.3f} is {rel} the unigram {uni:.3f}")
        acc = _accuracy_reading((e.get("rl") or e.get("sft") or {}).get("tasks") or {})
        if acc:
            parts.append(acc)
        if parts:
            out.append(f"- {m}: " + "; ".join(parts) + ".")
    return ["Read plainly:", "", *out, ""] if out else []


def _accuracy_reading(t: dict[str, Any]) -> str | None:
    """`final accuracy 0/16 [0.0%, 19.4%] is within noise of the no-training baseline 5.2%`."""
    from hillclimb.stats import wilson_ci

    first = _first_split(t)
    v = (t.get("splits") or {}).get(first) or {}
    k, n, base = v.get("correct"), v.get("n"), _split_baseline(t, first or "", v)
    if not isinstance(k, int) or not isinstance(n, int) or n <= 0 or base is None:
        return None
    lo, hi = wilson_ci(k, n)
    rel = "above" if lo > base else "BELOW" if hi < base else "within noise of"
    label = SPLIT_LABEL.get(first or "", first)
    return (
        f"final accuracy on {label} {k}/{n} [{lo:.1%}, {hi:.1%}] is {rel} the no-training "
        f"baseline {base:.1%}"
    )


def _problems_per_cell(n: Any) -> str:
    """`1 problem` / `20 problems` (the accuracy section printed "1 problems per cell")."""
    return f"{n} problem{'' if n == 1 else 's'}"


def _counts(d: Any) -> str:
    """`length 30, stop 2` for a reason -> count mapping (printed as a Python dict before)."""
    if not isinstance(d, dict) or not d:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))


def _cell_step(evals: dict[str, Any]) -> str:
    """The report's "one item moves a cell by 100/n points" clause, with n the cell sizes these
    evaluations used (their own `n_per_tier`). Why read back: the sentence said "cells of 20
    items move by 5 points per item" whatever `[eval] n_per_tier` was (one item: 100 points)."""
    sizes = set()
    for e in evals.values():
        settings = ((e.get("rl") or e.get("sft") or {}).get("tasks") or {}).get("settings") or {}
        n = settings.get("n_per_tier")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            sizes.add(n)
    parts = [f"{n} item{'s' if n != 1 else ''} per cell: {100 / n:.3g}" for n in sorted(sizes)]
    return f"; one item moves a cell by 100/n points ({', '.join(parts)})" if parts else ""


def write_report(c: Climb, d: Path) -> dict[str, Any]:
    from hillclimb.climb.state import stage_timings

    r = c.recipe
    d.mkdir(parents=True, exist_ok=True)
    md: list[str] = [
        f"# Climb report: `{r.name}`",
        "",
        f"Run directory `{c.out}`; recipe `{r.path}`.",
        "",
    ]
    evals = {m: json.loads((c.dir("eval") / f"{m}.json").read_text()) for m in r.model_names}
    figures: list[str] = []

    # ---- headline ---------------------------------------------------------------------------
    md += ["## Headline", ""]
    rows = []
    for m in r.model_names:
        e = evals[m]
        pb, sb = e["pretrain"].get("bpb") or {}, e["sft"].get("bpb") or {}
        t = (e.get("rl") or e["sft"]).get("tasks") or {}
        ts = e["sft"].get("tasks") or {}
        rows.append(
            [
                m,
                r.models[m]["preset"],
                _fmt(pb.get("val_bpb")),
                _fmt(sb.get("val_bpb")),
                _fmt(pb.get("unigram_bpb")),
                headline_accuracy(ts),
                headline_accuracy(t) + rl_stage_note(m, e) if e.get("rl") else "-",
                _fmt(t.get("baseline", ts.get("baseline")), ".1%"),
            ]
        )
    md += [
        _md_table(
            [
                "model",
                "preset",
                "corpus val bpb (pre-trained)",
                "corpus val bpb (after SFT)",
                "corpus unigram bpb",
                "accuracy, new problems (SFT) [95% CI]",
                "after RL [95% CI]",
                "no-training baseline",
            ],
            rows,
        ),
        "",
    ]
    for m in r.model_names:  # the headline sets SFT beside RL: say when that is not like for like
        e = evals[m]
        if (e.get("rl") or {}).get("tasks") and (e["sft"].get("tasks")):
            why = unlike(e["sft"]["tasks"], e["rl"]["tasks"])
            if why:
                md += [
                    f"**{m}: SFT and RL were not evaluated like for like** ({'; '.join(why)}): "
                    "the two accuracies above are not a measure of what RL changed.",
                    "",
                ]
    for m in r.model_names:  # a copy warm-up that did not form copying: said at the top
        key = f"pretrain-{m}"
        extra = c.results.get(key, {}).get("extra") or {}
        line = copy_check_line(key, extra.get("copy_check"), extra.get("copy_warmup"))
        if line and line.startswith("**"):
            md += [line, ""]
    md += [
        "Bits per byte are on the pre-training corpus's val split (fixed windows), after SFT "
        "too; the unigram baseline is a "
        "smoothed unigram model of the train split. A model has learned beyond token frequencies "
        "exactly when its bpb is below the baseline. The accuracies' no-training baseline is on "
        "the same items: each cell's best of a lookup table over training items, the most "
        "common training answer and chance, pooled by items (per cell below).",
        "",
    ]
    md += headline_reading_lines(evals, r.model_names)

    # ---- accuracy ---------------------------------------------------------------------------
    md += [f"## Accuracy on problems never trained on ({final_models_label(evals)})", ""]
    md += [
        "**new problems** are held out by the underlying problem (operands and facts; for code, "
        "the whole function — never seen with any example or as a bug to fix); **new phrasing** "
        "asks the same problems in wordings, names and formats that no training item uses; "
        "† marks a held-out family (never trained on at all). **baseline** is the best "
        "no-training score: a lookup table over training items (the answer of the most similar "
        "training problem), the most common training answer, or chance for multiple choice. "
        "Accuracy is greedy, with correct/n and [the 95% Wilson interval over the cell's "
        "items]; **truncated** is the share of answers stopped by the token budget "
        "(counted as wrong, never hidden); **max tokens** per cell is 1.5x the longest reference "
        "solution + 16 unless the recipe fixes it.",
        "",
        "What these numbers do not show: the models' behaviour on problems outside our "
        "generators (HumanEval and other suites are separate), or on longer contexts"
        + _cell_step(evals)
        + ".",
        "",
    ]
    for m in r.model_names:
        final = evals[m].get("rl") or evals[m]["sft"]
        t = final.get("tasks")
        if not t or "cells" not in t:
            continue
        tot = ", ".join(
            f"{s} {v['accuracy']:.1%} ({v['correct']}/{v['n']})" for s, v in t["splits"].items()
        )
        md += [
            f"### {m} ({_after(m, evals[m])})",
            "",
            f"{_problems_per_cell(t['settings']['n_per_tier'])} per cell and split; overall "
            f"{tot}; finish reasons {_counts(t.get('finish_reasons'))}.",
            "",
            *seen_lines(t),
            accuracy_table(t),
            "",
        ]
        if plot_accuracy(t, m, d / f"accuracy_{m}.png"):
            figures.append(f"accuracy_{m}.png")
            md += [f"![accuracy {m}](accuracy_{m}.png)", ""]
        if plot_tokens_by_tier(t, m, d / f"tokens_{m}.png"):
            figures.append(f"tokens_{m}.png")
            md += [f"![tokens by tier {m}](tokens_{m}.png)", ""]
        md += pretrained_lines(evals[m]["pretrain"].get("tasks"))
        if evals[m].get("rl"):
            md += [f"#### {sft_vs_rl_title(m, evals[m])}", ""]
            md += [f"- {line}" for line in sft_vs_rl_paired(evals[m])]
            md += ["", sft_vs_rl(evals[m]), ""]
        tiers = tokens_by_tier_rows(evals[m])
        if tiers:
            md += [f"#### {m}: tokens by tier", "", TOKENS_BY_TIER_NOTE, "", _md_table(*tiers), ""]

    suite_rows = suite_table_rows(evals, r.model_names, c.dir("eval"))
    if suite_rows:
        md += [
            "## Standard suites (final models)",
            "",
            "`[eval] suites` of the recipe, each on the model's final checkpoint with the suite's "
            "own defaults (`hillclimb eval --suite S`); full results in the eval stage's "
            "`suite-<model>-<suite>.json`. HumanEval is 164 public problems in the completion "
            "form; `completion` is our held-out generated functions in the same form. Near 0 is "
            "the honest level of a tiny model here; what these do not show is anything about "
            "larger models. The no-training baseline is what a model with no skill gets on the "
            "same items: code suites, a function that only returns a constant or its first "
            "argument (best of seven); IFEval, the prompt echoed back; FIM, the previous line. "
            "Where the final model is RL-trained, the rows marked (SFT) are the same suites on the "
            "same items for the SFT model it started from. Harness `new-mutations` tasks are new "
            "bugs in *known code*: their projects are in the pre-training corpus (the package's "
            "own source), so the line a fix restores was seen in training (s26 audit: 3 of 4); "
            "`unseen-projects` are projects never trained on, the stricter test. The harness "
            "agent's tool calls are decoded under the tools' JSON schema (`[eval] "
            "harness_guided_tools`).",
            "",
            _md_table(
                [
                    "model",
                    "suite",
                    "metric",
                    "value",
                    "95% CI",
                    "n",
                    "no-training baseline",
                    "truncated",
                ],
                suite_rows,
            ),  # fmt: skip
            "",
        ]

    # ---- RL -----------------------------------------------------------------------------------
    rl_models = [m for m in r.model_names if m in r.rl]
    harness_models = [m for m in r.model_names if m in r.rl_harness]
    if rl_models or harness_models:
        from hillclimb.rl.report import plot_rl, summary_lines

        judged = [m for m in r.model_names if evals[m].get("rl")] or rl_models + harness_models
        md += [f"## {rl_section_title(judged, evals)}", ""]
        md += rl_lead_lines(judged, evals, c.results.get("registry"))
        md += [
            "Left to right: greedy pass rate on the **val** split per family × tier over RL steps "
            "(not held out; the held-out endpoints are listed under each figure), the training "
            "reward and pass rate of the sampled groups, tokens per correct answer per tier, "
            "the rollout-vs-train log-prob gap with the router agreement (dashed), the step time "
            "split, and val accuracy against tokens at forced thinking budgets at the first and "
            "last step (the Pareto points; the table below lists them).",
            "",
        ]
        for m in rl_models:
            run = c.dir(f"rl-{m}") / "run"
            md += [f"### rl-{m}", ""]
            if plot_rl(run, d / f"rl_{m}.png", m):
                figures.append(f"rl_{m}.png")
                md += [f"![rl {m}](rl_{m}.png)", ""]
            md += [VAL_CURVE_NOTE, ""]
            md += endpoints_for_stage(f"rl-{m}", m, evals[m])
            md += summary_lines(run)
    for m in harness_models:
        md += [f"### rl-harness-{m} (agentic RL in the harness)", ""]
        md += endpoints_for_stage(f"rl-harness-{m}", m, evals[m])
        md += summary_lines(c.dir(f"rl-harness-{m}") / "run")

    # ---- curves -------------------------------------------------------------------------------
    md += ["## Training curves", ""]
    runs: list[tuple[str, Path]] = []
    for m in r.model_names:
        for kind in ("pretrain", "sft"):
            key = f"{kind}-{m}"
            run = c.dir(key) / "run"
            runs.append((key, run))
            base = evals[m]["pretrain"].get("bpb", {}) or {}
            res = c.results.get(key, {})
            title = f"{key} ({res.get('steps', '?')} steps, {res.get('tokens', 0):,} tokens)"
            if plot_loss(
                run,
                key,
                d / f"loss_{key}.png",
                base.get("unigram_bpb") if kind == "pretrain" else None,
            ):
                figures.append(f"loss_{key}.png")
                md += [f"### {title}", "", f"![loss {key}](loss_{key}.png)", ""]
                extra = res.get("extra") or {}
                if line := copy_check_line(key, extra.get("copy_check"), extra.get("copy_warmup")):
                    md += [line, ""]
    md += [
        "SFT validation bpb is measured on held-out SFT examples' assistant tokens only, so it is "
        "not comparable with pre-training bpb.",
        "",
    ]

    # ---- routing ------------------------------------------------------------------------------
    loads = expert_loads(runs)
    if plot_expert_load(loads, d / "expert_load.png"):
        figures.append("expert_load.png")
        md += [
            "## Expert load",
            "",
            "Load per MoE layer and expert relative to even load (1 = every expert gets 1/experts "
            "of the routed tokens), summed over the logged steps of each run; one colour scale "
            "for every heatmap, white = even.",
            "",
            "![expert load](expert_load.png)",
            "",
        ]
        md += [_md_table(*expert_load_rows(loads)), ""]

    # ---- samples ------------------------------------------------------------------------------
    md += ["## Sample generations (never-trained problems, greedy)", ""]
    for m in r.model_names:
        t = (evals[m].get("rl") or evals[m]["sft"]).get("tasks") or {}
        for s in t.get("samples", []):
            mark = "correct" if s["correct"] else "wrong"
            md += [
                f"**{m}** — {s['family']} tier {s['tier']}, {s.get('split', 'heldout')} "
                f"({mark}, finish: {s['finish_reason']})",
                "",
                "Prompt:",
                "",
                _quote(s["prompt"]),
                "",
                "Reasoning:",
                "",
                _quote(s["reasoning"]),
                "",
                "Answer:",
                "",
                _quote(s["content"]),
                "",
                f"Expected: `{printable(s['expected'][:200])}`",
                "",
            ]

    # ---- data card ------------------------------------------------------------------------------
    card_file = c.shards_dir / "data_card.json"
    if card_file.is_file():
        card = json.loads(card_file.read_text())
        tot = card.get("totals", {})
        md += [
            "## Data card (summary)",
            "",
            f"{tot.get('documents', 0):,} documents, {tot.get('bytes', 0):,} bytes, "
            f"{tot.get('tokens') or 0:,} tokens. Full card: `{c.shards_dir / 'DATA_CARD.md'}`.",
            "",
        ]
        for key in ("by_source", "by_language", "by_license", "by_split"):
            items = sorted((card.get(key) or {}).items(), key=lambda kv: -kv[1].get("bytes", 0))[
                :10
            ]
            if items:
                md += [
                    f"**{key.replace('by_', 'by ')}**",
                    "",
                    _md_table(
                        [key[3:], "documents", "bytes", "tokens"],
                        [
                            [k, v.get("documents", 0), v.get("bytes", 0), v.get("tokens") or "-"]
                            for k, v in items
                        ],
                    ),
                    "",
                ]
        drops = [[f["name"], f.get("dropped", 0), top_reasons(f)] for f in card.get("filters", [])]
        if drops:
            md += ["**filters**", "", _md_table(["filter", "dropped", "top reasons"], drops), ""]
        from hillclimb.data.card import decontamination_summary

        md += decontamination_summary(card)

    # ---- the flywheel ------------------------------------------------------------------------
    md += flywheel_lines(
        c.results.get("sft-data") or {},
        {m: c.results.get(f"rl-harness-{m}") or {} for m in r.model_names if m in r.rl_harness},
    )

    # ---- promotion gate ----------------------------------------------------------------------
    gate = c.results.get("registry")
    if gate:
        from hillclimb.climb.promotion import render

        md += ["## Registry and promotion gate", "", render(gate), ""]

    # ---- timings ---------------------------------------------------------------------------------
    rows_t = stage_timings(c.out)
    md += [
        "## Stage timings",
        "",
        "Seconds of the invocation that completed each stage (a resumed stage counts only its last "
        "part). Full log: `climb.jsonl`.",
        "",
    ]
    md += [
        _md_table(["stage", "seconds"], [[t["stage"], f"{t['seconds']:.1f}"] for t in rows_t]),
        "",
    ]
    if plot_stage_times(rows_t, d / "stage_times.png"):
        figures.append("stage_times.png")
        md += ["![stage times](stage_times.png)", ""]
    write_text_atomic(d / "report.md", "\n".join(md) + "\n")
    return {"report": str(d / "report.md"), "figures": figures}
