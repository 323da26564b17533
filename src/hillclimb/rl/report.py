"""`RUN/report.md` + PNGs for an RL run, read back from `metrics.jsonl` and `curve.jsonl` only.

Plots: the climbing curve (greedy val pass rate per family × tier over RL steps), the training
reward and pass rate, completion tokens per correct answer per tier, the rollout-vs-train
log-prob gap with the router agreement (share of tokens whose training top-k equals the
rollout's), the step time split (rollout / reward / update / weight sync), and accuracy against
tokens at forced thinking budgets at the start and the end (the Pareto plot). The climb's
report embeds the same plots for its `rl-<model>` stages.

Every val accuracy is set beside its no-training baseline: per cell from the curve records
(`rl/train.py` `_val_baselines`), pooled over the same val problems for the Pareto points; a run
whose curve records carry none says so in the legend and the tables rather than computing one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from hillclimb.io import write_text_atomic


def _plt() -> Any:
    from hillclimb.plots import pyplot

    return pyplot()


def _save(fig: Any, path: Path) -> None:
    from hillclimb.plots import save_png

    save_png(fig, path)


def plot_rl(run: Path, dest: Path, title: str) -> bool:
    """One figure with six panels; False when the run has no steps yet."""
    from hillclimb.train.logging import read_jsonl

    steps = read_jsonl(run / "metrics.jsonl")
    records = read_jsonl(run / "curve.jsonl")
    curve = [c for c in records if "cells" in c]
    pareto = [c for c in records if "pareto" in c]
    if not steps:
        return False
    plt = _plt()
    fig, ax = plt.subplots(1, 6, figsize=(29, 3.8))
    xs = [s["step"] for s in steps]
    # 1. the climbing curve
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for c in curve:
        for cell, v in c["cells"].items():
            series[cell].append((c["step"], v["accuracy"]))
    for cell, pts in sorted(series.items()):
        ax[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=cell)
    ax[0].set_ylim(0, 1)
    ax[0].set_title(f"{title}: val pass rate (greedy)")
    ax[0].set_xlabel("RL step")
    if series:
        _curve_baselines(ax[0], curve)
        ax[0].legend(fontsize=6, ncol=2)
    # 2. reward and training pass rate
    ax[1].plot(xs, [s["reward"] for s in steps], label="reward")
    ax[1].plot(xs, [s["pass_rate"] for s in steps], label="pass rate (samples)")
    ax[1].set_title("training reward")
    ax[1].set_xlabel("RL step")
    ax[1].legend(fontsize=7)
    # 3. tokens per correct answer per tier
    tiers: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for c in curve:
        by_tier: dict[str, list[float]] = defaultdict(list)
        for cell, v in c["cells"].items():
            if v.get("tokens_per_correct"):
                by_tier[cell.rsplit("/", 1)[1]].append(v["tokens_per_correct"])
        for t, vals in by_tier.items():
            tiers[t].append((c["step"], sum(vals) / len(vals)))
    for t, pts in sorted(tiers.items()):
        ax[2].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"tier {t}")
    ax[2].set_title("tokens per correct answer (val)")
    ax[2].set_xlabel("RL step")
    if tiers:
        ax[2].legend(fontsize=7)
    # 4. log-prob gap between rollout and training forward
    ax[3].plot(xs, [s["logp_gap"] for s in steps])
    ax[3].set_yscale("symlog", linthresh=1e-6)
    ax[3].set_title("|log π_rollout − log π_train| (mean); router agreement")
    ax[3].set_xlabel("RL step")
    # `is not None`: an agreement of 0.0 (every token routed elsewhere) is the collapse this
    # panel is for, and a truthiness test left it out of the line
    agree = [
        (s["step"], s["router_agreement"]) for s in steps if s.get("router_agreement") is not None
    ]
    if agree:
        tw = ax[3].twinx()
        tw.plot([a[0] for a in agree], [a[1] for a in agree], color="tab:orange", ls="--")
        tw.set_ylim(0, 1.02)
        tw.set_ylabel("router agreement", fontsize=7)
    # 5. step time split
    parts = ("rollout_s", "reward_s", "update_s", "sync_s")
    bottom = [0.0] * len(steps)
    for k in parts:
        v = [s["time"][k] for s in steps]
        ax[4].bar(xs, v, bottom=bottom, label=k[:-2])
        bottom = [a + b for a, b in zip(bottom, v, strict=True)]
    ax[4].set_title("seconds per step")
    ax[4].set_xlabel("RL step")
    ax[4].legend(fontsize=7)
    # 6. accuracy vs tokens at forced thinking budgets (+ the unbudgeted curve point)
    for rec in (pareto[0], pareto[-1]) if len(pareto) > 1 else pareto:
        pts = [(p["mean_tokens"], p["accuracy"]) for p in rec["pareto"]]
        free = [c for c in curve if c["step"] == rec["step"] and "mean_tokens" in c]
        if free:
            pts.append((free[0]["mean_tokens"], free[0]["accuracy"]))
        ax[5].plot(
            [p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"step {rec['step']}"
        )
        for p, b in zip(pts, [q["budget"] for q in rec["pareto"]] + ["∞"], strict=False):
            ax[5].annotate(str(b), p, fontsize=6)
    ax[5].set_ylim(0, 1)
    ax[5].set_title("val accuracy vs tokens at thinking budgets")
    ax[5].set_xlabel("mean completion tokens")
    if pareto:
        _pareto_baseline(ax[5], pareto[-1], curve)
        ax[5].legend(fontsize=7)
    for a in ax:
        a.grid(alpha=0.3)
    _save(fig, dest)
    return True


NO_BASELINE = "no-training baseline: not recorded by this run (curve.jsonl has none)"


def _curve_baselines(ax: Any, curve: list[dict[str, Any]]) -> None:
    """Each cell's no-training baseline as a dashed line in its curve's colour. Why: the panel
    showed pass rates with nothing to beat, and a cell whose baseline is 50% (a yes/no cell at
    chance) read as learned at 50%. Runs from before the curve kept baselines get a legend line
    saying so instead of a line made up here."""
    colours = {ln.get_label(): ln.get_color() for ln in ax.get_lines()}
    # per cell, its latest recorded baseline: a cell a curriculum measured only early still gets
    # its line (a cell's val problems, and so its baseline, are the same at every point)
    base = {
        k: v["baseline"]
        for c in curve
        for k, v in c["cells"].items()
        if v.get("baseline") is not None  # 0.0 is a baseline (no lookup hit, no choices)
    }
    for cell, b in sorted(base.items()):
        if cell in colours:
            ax.axhline(b, color=colours[cell], ls="--", lw=0.8, alpha=0.7)
    drawn = any(cell in colours for cell in base)
    label = "dashed: no-training baseline per cell" if drawn else NO_BASELINE
    ax.plot([], [], color="grey", ls="--", lw=0.8, label=label)


def pooled_baseline(point: dict[str, Any] | None) -> tuple[float | None, int]:
    """(the n-weighted mean of the per-cell no-training baselines, n) of a val-curve point: the
    baseline of all its val problems together, which a Pareto point (measured on those same
    problems) is set against; (None, n) when a cell has no baseline recorded or the point is
    missing (n = 0): then nothing is computed in its place."""
    cells = [v for v in ((point or {}).get("cells") or {}).values() if v.get("n")]
    n = sum(int(v["n"]) for v in cells)
    if not cells or any(v.get("baseline") is None for v in cells):
        return None, n
    return sum(v["baseline"] * int(v["n"]) for v in cells) / n, n


def _at_step(curve: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    return next((c for c in curve if c["step"] == step), None)


def _pareto_baseline(ax: Any, last: dict[str, Any], curve: list[dict[str, Any]]) -> None:
    """The pooled no-training baseline of the val problems as a horizontal line in the Pareto
    panel (a budgeted accuracy below it is worse than answering with no model), or a legend line
    saying this run did not record it."""
    point = _at_step(curve, last["step"])
    base, n = pooled_baseline(point)
    if base is None:
        why = NO_BASELINE if point else f"no-training baseline: no val point at step {last['step']}"
        ax.plot([], [], color="grey", ls=":", label=why)
        return
    ax.axhline(base, color="grey", ls=":", label=f"no-training baseline {base:.0%} (n = {n})")


def _step_lines(steps: list[dict[str, Any]]) -> list[str]:
    """The training numbers and timings of the recorded steps (non-empty)."""
    tot = {
        k: sum(s["time"][k] for s in steps) for k in ("rollout_s", "reward_s", "update_s", "sync_s")
    }
    total = sum(tot.values()) or 1.0
    toks = sum(s["completion_tokens"] for s in steps)
    lines = [
        f"{len(steps)} RL steps; training pass rate {steps[0]['pass_rate']:.0%} (step 1) → "
        f"{steps[-1]['pass_rate']:.0%} (step {steps[-1]['step']}); mean completion tokens "
        f"{steps[0]['mean_tokens']:.0f} → {steps[-1]['mean_tokens']:.0f}; rollout-vs-train "
        f"log-prob gap {sum(s['logp_gap'] for s in steps) / len(steps):.1e} (mean).",
        "",
        f"Time: rollout {tot['rollout_s']:.0f}s ({tot['rollout_s'] / total:.0%}), reward "
        f"{tot['reward_s']:.0f}s ({tot['reward_s'] / total:.0%}), update {tot['update_s']:.0f}s "
        f"({tot['update_s'] / total:.0%}), weight sync {tot['sync_s']:.2f}s "
        f"({tot['sync_s'] / total:.1%}); rollout throughput "
        f"{toks / max(tot['rollout_s'], 1e-9):.0f} tokens/s.",
        "",
    ]
    hs = [s["harness"] for s in steps if s.get("harness")]
    if hs:
        eps = sum(h["episodes"] for h in hs)
        m, t, g = (sum(h[k] for h in hs) for k in ("model_s", "tool_s", "grade_s"))
        lines += [
            f"Agent episodes: {eps} in {tot['rollout_s']:.0f}s of rollout "
            f"({60 * eps / max(tot['rollout_s'], 1e-9):.1f} episodes/min); summed over "
            f"episodes: model turns {m:.0f}s, tools and test runs {t:.0f}s, grading {g:.0f}s.",
            "",
        ]
    return lines


def summary_lines(run: Path) -> list[str]:
    """Markdown lines: first/last training numbers, the curve's first and last points, timings."""
    from hillclimb.train.logging import read_jsonl

    steps = read_jsonl(run / "metrics.jsonl")
    curve = [c for c in read_jsonl(run / "curve.jsonl") if "cells" in c]
    # a run of 0 steps still has its val curve and Pareto points (the init's numbers)
    lines = _step_lines(steps) if steps else ["(no RL steps recorded)", ""]
    agree = [s["router_agreement"] for s in steps if s.get("router_agreement") is not None]
    if agree:
        lines += [
            f"Router agreement (training top-k = rollout's, first update of a step): mean "
            f"{sum(agree) / len(agree):.4f}, min {min(agree):.4f}.",
            "",
        ]
    pareto = [c for c in read_jsonl(run / "curve.jsonl") if "pareto" in c]
    if pareto:
        lines += _pareto_lines(pareto, curve)
    if curve:
        lines += _val_lines(curve[0], curve[-1])
    hv = [c for c in read_jsonl(run / "curve.jsonl") if c.get("split") == "harness_val"]
    if hv:
        lines += _harness_val_lines(hv)
    return lines


def _harness_val_lines(points: list[dict[str, Any]]) -> list[str]:
    """The held-out harness curve (`rl --harness-val`): resolve rate with its interval and the
    mean partial-credit reward at every point, so a harness RL run's report says whether the
    policy got better at *unseen* tasks, not only at the ones it trained on."""
    from hillclimb.rl.harness import VAL_KEY

    rows = [
        "Held-out harness tasks (`--harness-val`: one greedy episode per task, tasks disjoint "
        "from training):",
        "",
        "| step | resolved [95% CI] | mean reward | completion tokens |",
        "|---|---|---|---|",
    ]
    for p in points:
        v = p[VAL_KEY]
        n, k = int(v["tasks"]), int(v["resolved"])
        rows.append(
            f"| {p['step']} | {k}/{n} = {_rate(k, n) if n else 'n/a'} | "
            f"{float(v['mean_reward']):.3f} | {v.get('completion_tokens', '')} |"
        )
    return rows + [""]


def _rate(correct: int, n: int) -> str:
    """`40% [25%, 57%]`: a pass rate with its 95% interval (Wilson: pass/fail items)."""
    from hillclimb.stats import wilson_ci

    lo, hi = wilson_ci(correct, n)
    return f"{correct / n:.0%} [{lo:.0%}, {hi:.0%}]"


def _val_lines(first: dict[str, Any], last: dict[str, Any]) -> list[str]:
    """The val pass rate per cell at the first and the last curve point, each with n and its
    interval, beside the no-training baseline. Why: the table printed "25% | 62%" with no n, and
    a cell is `eval_n_per_tier` problems (8 by default): 2/8 and 5/8 have intervals [7%, 59%]
    and [31%, 86%], so a move that reads as a climb can be noise."""
    rows = [
        f"| cell | n | val pass rate [95% CI], step {first['step']} | step {last['step']} "
        "| no-training baseline |",
        "|---|---|---|---|---|",
    ]

    def cell_rate(c: dict[str, Any] | None, n: int) -> str:
        if not c or not c.get("n"):
            return "-"
        # `correct` from the record; older records have only the accuracy
        k = int(c.get("correct", round(c["accuracy"] * c["n"])))
        return _rate(k, c["n"]) + ("" if c["n"] == n else f" of {c['n']}")

    for cell in sorted(last["cells"]):
        c = last["cells"][cell]
        n = int(c.get("n") or 0)
        base = c.get("baseline")  # absent in runs from before it existed
        rows.append(
            f"| {cell} | {n or '-'} | {cell_rate(first['cells'].get(cell), n)} | "
            f"{cell_rate(c, n)} | {'-' if base is None else f'{base:.0%}'} |"
        )
    if all(c.get("baseline") is None for c in last["cells"].values()):
        rows += ["", f"({NO_BASELINE}: the column is empty, not zero.)"]
    return rows + [""]


def _pareto_lines(pareto: list[dict[str, Any]], curve: list[dict[str, Any]]) -> list[str]:
    """Accuracy and tokens per thinking budget at the first and the last Pareto point. A point
    is measured on the same val problems as the curve point of its step, so n is that point's
    (the Pareto records carry no n): each accuracy gets "of n" and its interval."""
    n_at = {c["step"]: sum(int(v.get("n") or 0) for v in c["cells"].values()) for c in curve}
    ends = [pareto[0], pareto[-1]] if len(pareto) > 1 else pareto
    lines = [
        "| thinking budget | "
        + " | ".join(f"step {r['step']}: accuracy [95% CI], tokens" for r in ends)
        + " |",
        "|---|" + "---|" * len(ends),
    ]
    # rows by budget, not by position: `pareto_budgets` may change on resume, and reading the
    # end's i-th point under the start's i-th budget mislabelled it (or ran off the list)
    by_budget = [{p["budget"]: p for p in r["pareto"]} for r in ends]

    def acc(p: dict[str, Any], n: int) -> str:
        if not n:
            return f"{p['accuracy']:.0%}"
        return f"{_rate(round(p['accuracy'] * n), n)} of {n}"

    for b in sorted({b for d in by_budget for b in d}):
        cells = [
            f"{acc(d[b], n_at.get(r['step'], 0))}, {d[b]['mean_tokens']:.1f}" if b in d else "-"
            for d, r in zip(by_budget, ends, strict=True)
        ]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines.append(_pareto_baseline_row(ends, curve))
    return lines + [""] + _pareto_notes(ends, n_at)


def _pareto_baseline_row(ends: list[dict[str, Any]], curve: list[dict[str, Any]]) -> str:
    """The Pareto table's no-training baseline row: at each end step, the pooled baseline of
    the val problems its points were measured on (`pooled_baseline`), or why there is none."""
    cells = []
    for r in ends:
        point = _at_step(curve, r["step"])
        base, n = pooled_baseline(point)
        if base is not None:
            cells.append(f"{base:.0%} of {n} (no model), -")
        else:
            cells.append("not recorded by this run, -" if point else "no val point at this step, -")
    return "| no-training baseline | " + " | ".join(cells) + " |"


def _pareto_notes(ends: list[dict[str, Any]], n_at: dict[int, int]) -> list[str]:
    """What the Pareto table does not show: an end step with no val-curve point has no n, so
    its accuracies are printed bare, without k/n or an interval (never with a guessed n)."""
    bare = [str(r["step"]) for r in ends if not n_at.get(r["step"])]
    if not bare:
        return []
    return [
        f"(Step {', '.join(dict.fromkeys(bare))}: no val-curve point at that step, so n is not "
        "recorded and its accuracies have no k/n or interval.)",
        "",
    ]


def write_rl_report(run: Path) -> Path:
    md = [f"# RL run `{run}`", ""]
    if plot_rl(run, run / "rl.png", run.name):
        md += ["![rl](rl.png)", ""]
    md += summary_lines(run)
    write_text_atomic(run / "report.md", "\n".join(md) + "\n")
    return run / "report.md"
