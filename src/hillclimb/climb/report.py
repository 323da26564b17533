"""The climb report: `RUN_DIR/report/report.md` plus PNG plots (matplotlib, Agg backend).

Everything in it is read back from what the stages left on disk — the training runs'
`metrics.jsonl`/`val.jsonl`/`routing.jsonl`, the eval stage's JSON, the data card, the stage
markers — never from in-memory state, so `--restart-from report` regenerates it from a finished
run and the report shows exactly what the artifacts say. Plots:

- `loss_<stage>.png`: per training run, train loss (nats/token) and validation bits per byte by
  step (with the unigram baseline for pre-training runs);
- `expert_load.png`: per training run, a layers x experts heatmap of the share of routed tokens
  (summed over every logged step; 1/E everywhere = perfect balance);
- `accuracy_<model>.png`: held-out accuracy per family, one bar per tier;
- `stage_times.png`: seconds per stage.

Markdown (not HTML) because it renders on GitHub, in editors and in a terminal pager alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.io import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from hillclimb.climb.runner import Climb


def _jsonl(path: Path) -> list[dict[str, Any]]:
    from hillclimb.train.logging import read_jsonl

    return read_jsonl(path)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from hillclimb.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


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


def plot_expert_load(runs: list[tuple[str, Path]], dest: Path) -> list[str]:
    data = [(name, expert_load(run)) for name, run in runs]
    data = [(n, m) for n, m in data if m]
    if not data:
        return []
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(data), figsize=(4.2 * len(data), 3.4), squeeze=False, constrained_layout=True
    )
    for k, (ax, (name, mat)) in enumerate(zip(axes[0], data, strict=True)):
        im = ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0.0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("expert")
        if k == 0:
            ax.set_ylabel("MoE layer")
        ax.set_yticks(range(len(mat)))
        fig.colorbar(
            im, ax=ax, fraction=0.046, pad=0.02, label="token share" if k == len(data) - 1 else None
        )
    _save(fig, dest)
    return [n for n, _ in data]


def plot_accuracy(tasks: dict[str, Any], title: str, dest: Path) -> bool:
    cells = tasks.get("by_family_tier") or {}
    if not cells:
        return False
    plt = _plt()
    fams = list(cells)
    tiers = [str(t) for t in tasks["settings"]["tiers"]]
    width = 0.8 / max(1, len(tiers))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(fams)), 3.6))
    for j, t in enumerate(tiers):
        xs = [i + (j - (len(tiers) - 1) / 2) * width for i in range(len(fams))]
        ys = [cells[f][t]["accuracy"] if t in cells[f] else 0.0 for f in fams]
        ax.bar(xs, ys, width=width, label=f"tier {t}")
    ax.set_xticks(range(len(fams)))
    ax.set_xticklabels(fams, rotation=20, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, dest)
    return True


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


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _quote(text: str, limit: int = 600) -> str:
    t = text if len(text) <= limit else text[:limit] + " …"
    return "\n".join("    " + ln for ln in (t or "(empty)").splitlines())


def write_report(c: Climb, d: Path) -> dict[str, Any]:
    from hillclimb.climb.runner import stage_timings

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
        t = e["sft"].get("tasks") or {}
        rows.append(
            [
                m,
                r.models[m]["preset"],
                _fmt(pb.get("val_bpb")),
                _fmt(sb.get("val_bpb")),
                _fmt(pb.get("unigram_bpb")),
                _fmt(t.get("accuracy"), ".1%"),
            ]
        )
    md += [
        _md_table(
            [
                "model",
                "preset",
                "val bpb (pre-trained)",
                "val bpb (after SFT)",
                "unigram bpb",
                "held-out accuracy (all)",
            ],
            rows,
        ),
        "",
    ]
    md += [
        "Bits per byte are on the corpus's val split (fixed windows); the unigram baseline is a "
        "smoothed unigram model of the train split. A model has learned beyond token frequencies "
        "exactly when its bpb is below the baseline.",
        "",
    ]

    # ---- accuracy ---------------------------------------------------------------------------
    md += ["## Held-out accuracy per family and tier (after SFT)", ""]
    for m in r.model_names:
        t = evals[m]["sft"].get("tasks")
        if not t:
            continue
        tiers = [str(x) for x in t["settings"]["tiers"]]
        md += [
            f"### {m}",
            "",
            f"{t['settings']['n_per_tier']} held-out problems per cell, greedy, at most "
            f"{t['settings']['max_tokens']} new tokens; overall {t['accuracy']:.1%} "
            f"({t['correct']}/{t['n']}); finish reasons {t['finish_reasons']}.",
            "",
        ]
        md += [
            _md_table(
                ["family"] + [f"tier {x}" for x in tiers],
                [
                    [f]
                    + [
                        f"{cells[x]['accuracy']:.0%} ({cells[x]['correct']}/{cells[x]['n']})"
                        if x in cells
                        else "-"
                        for x in tiers
                    ]
                    for f, cells in t["by_family_tier"].items()
                ],
            ),
            "",
        ]
        if plot_accuracy(t, f"{m}: held-out accuracy", d / f"accuracy_{m}.png"):
            figures.append(f"accuracy_{m}.png")
            md += [f"![accuracy {m}](accuracy_{m}.png)", ""]
        base = evals[m]["pretrain"].get("tasks")
        if base:
            md += [f"Before SFT (pre-trained model): overall {base['accuracy']:.1%}.", ""]

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
    md += [
        "SFT validation bpb is measured on held-out SFT examples' assistant tokens only, so it is "
        "not comparable with pre-training bpb.",
        "",
    ]

    # ---- routing ------------------------------------------------------------------------------
    shown = plot_expert_load(runs, d / "expert_load.png")
    if shown:
        figures.append("expert_load.png")
        md += [
            "## Expert load",
            "",
            "Share of routed tokens per MoE layer and expert, summed over the logged steps of each "
            "run (uniform = 1/experts).",
            "",
            "![expert load](expert_load.png)",
            "",
        ]
        rows = []
        for name, run in runs:
            mat = expert_load(run)
            if mat:
                worst = max(max(row) * len(row) for row in mat)
                rows.append([name, len(mat), len(mat[0]), f"{worst:.2f}"])
        md += [_md_table(["run", "MoE layers", "experts", "max load / uniform"], rows), ""]

    # ---- samples ------------------------------------------------------------------------------
    md += ["## Sample generations (held-out, greedy)", ""]
    for m in r.model_names:
        t = evals[m]["sft"].get("tasks") or {}
        for s in t.get("samples", []):
            mark = "correct" if s["correct"] else "wrong"
            md += [
                f"**{m}** — {s['family']} tier {s['tier']} ({mark}, finish: {s['finish_reason']})",
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
                f"Expected: `{s['expected'][:200]}`",
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
        drops = [
            [
                f["name"],
                f.get("dropped", 0),
                ", ".join(f"{k} {v}" for k, v in list(f.get("reasons", {}).items())[:4]),
            ]
            for f in card.get("filters", [])
        ]
        if drops:
            md += ["**filters**", "", _md_table(["filter", "dropped", "top reasons"], drops), ""]

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
