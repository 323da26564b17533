"""`hillclimb report RUN`: one static, self-contained HTML file for a climb run or an eval output.

Why a second report beside `report.md`: a Markdown report is a directory (text + PNGs) that
falls apart when mailed or attached; this is ONE file — plots embedded as base64 PNGs, styles
inline, no scripts and no network — that opens in any browser years later. It is built only from
what the stages left on disk, with the same readers, plots and tables as `report.md`
(`climb/report.py`, `rl/report.py`), so the two cannot disagree. Every section is always present;
a piece the input lacks (no RL stage, no routing log, no speculative-decoding measurement, an eval
file without training curves) becomes a visible "not in this run" note instead of a crash or a
silently missing heading. All text that came from a model or a data file is HTML-escaped.

Inputs: a climb run directory (stages found by their completion markers, else by `NN-stage`
directory names), an eval JSON (`hillclimb eval --json` / `--out`: `hillclimb-eval-v*`; a suite
result `hillclimb-suite-v1`; the climb eval stage's `<model>.json` or `eval.json`), or a directory
of such JSON files (`hillclimb eval --out DIR`).
"""

from __future__ import annotations

import base64
import html
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hillclimb.climb import report as R
from hillclimb.climb.state import MARKER, RUN_FILE, STARTED, read_json, stage_timings
from hillclimb.errors import HillclimbError
from hillclimb.io import write_text_atomic

SUITE_FORMAT = "hillclimb-suite-v1"
PHASES = ("pretrain", "sft", "rl", "eval")  # "eval": a lone `hillclimb eval` result
SECTIONS = (
    ("overview", "Overview"),
    ("loss", "Training curves (pre-training, SFT)"),
    ("rl", "RL curves"),
    ("tokens", "Tokens vs difficulty"),
    ("experts", "Expert load"),
    ("speculative", "Speculative decoding acceptance"),
    ("eval", "Evaluation tables"),
    ("samples", "Sample generations"),
)
NOT_IN_RUN = "not in this run"


@dataclass
class ReportInput:
    """What a report is built from, read off disk once."""

    root: Path
    kind: str  # "climb run" | "eval output"
    stages: dict[str, Path] = field(default_factory=dict)  # stage key -> stage directory
    evals: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # model->phase->rec
    suites: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file, result)
    speculative: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (where, record)
    rl_stages: dict[str, str] = field(default_factory=dict)  # model -> stage its "rl" came from


# ---- reading the input ----------------------------------------------------------------------------
def load_input(path: Path) -> ReportInput:
    """Recognise RUN and read it; anything unrecognisable is a HillclimbError saying why."""
    path = Path(path)
    if not path.exists():
        raise HillclimbError(
            f"report: {path} does not exist (expected a climb run directory, "
            "an eval JSON file or an eval output directory)"
        )
    if path.is_file():
        inp = ReportInput(path, "eval output")
        if not _add_json(inp, path, _load_json(path)):
            raise HillclimbError(f"report: {path} is not a hillclimb eval or suite result")
        return inp
    stages = _stage_dirs(path)
    if stages or (path / RUN_FILE).is_file():
        inp = ReportInput(path, "climb run", stages)
        extra = [path / "suites", path / "bench", path]
        for d in ([stages["eval"]] if "eval" in stages else []) + extra:
            for f in sorted(d.glob("*.json")) if d.is_dir() else []:
                _add_json(inp, f, _load_json(f, strict=False))
        return inp
    inp = ReportInput(path, "eval output")
    for f in sorted(path.glob("*.json")):
        _add_json(inp, f, _load_json(f, strict=False))
    if not (inp.evals or inp.suites or inp.speculative):
        raise HillclimbError(
            f"report: {path} is neither a climb run directory (no stage "
            "markers, no climb.json) nor a directory of eval results"
        )
    return inp


def _load_json(path: Path, strict: bool = True) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError) as e:
        # RecursionError: nesting deeper than the parser's limit (`[[[[…]]]]`) is damage too
        if strict:
            raise HillclimbError(f"report: cannot read {path} as JSON: {e}") from None
        return None


def _stage_dirs(out: Path) -> dict[str, Path]:
    """Stage key -> directory: completed stages by their markers (the latest finished wins when a
    key occurs twice), then started-but-unfinished `NN-key` directories for keys still missing."""
    found: dict[str, tuple[str, Path]] = {}
    subdirs = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    for d in subdirs:
        m = read_json(d / MARKER)
        if m and isinstance(m.get("stage"), str):  # a damaged marker (stage 3, [..]) is none
            prev = found.get(m["stage"])
            if prev is None or str(m.get("finished", "")) >= prev[0]:
                found[m["stage"]] = (str(m.get("finished", "")), d)
    for d in subdirs:
        hit = re.fullmatch(r"\d{2}-(.+)", d.name)
        if hit and (d / STARTED).is_file() and hit.group(1) not in found:
            found[hit.group(1)] = ("", d)
    return {k: v[1] for k, v in found.items()}


def _add_json(inp: ReportInput, f: Path, obj: Any) -> bool:
    """File one JSON document into `inp`; False when it is nothing a report shows."""
    if not isinstance(obj, dict):
        return False
    fmt = str(obj.get("format", ""))
    label = f.name
    if fmt == SUITE_FORMAT:
        inp.suites.append((label, obj))
        return True
    if fmt.startswith("hillclimb-eval-"):
        name = str(obj.get("name") or Path(str(obj.get("model", f.stem))).name)
        _file_eval(inp, name, {"eval": obj}, f)
        return True
    if _is_model_record(obj):  # the climb eval stage's <model>.json
        phases = {p: obj[p] for p in PHASES if obj.get(p)}
        _file_eval(inp, str(obj.get("model") or f.stem), phases, f)
        _note_rl_stage(inp, str(obj.get("model") or f.stem), obj)
        return True
    if obj and all(_is_model_record(v) for v in obj.values()):  # the climb's eval.json
        for m, rec in obj.items():
            inp.evals.setdefault(m, {p: rec[p] for p in PHASES if rec.get(p)})
            _note_rl_stage(inp, m, rec)
        return True
    spec = list(_acceptance_records(obj, label))
    inp.speculative += spec
    return bool(spec)


def _note_rl_stage(inp: ReportInput, m: str, rec: dict[str, Any]) -> None:
    """Keep which stage a climb record's "rl" result measured (`rl_stage`), so the HTML names
    it where report.md does (`report.rl_stage_note`)."""
    if isinstance(rec.get("rl_stage"), str):
        inp.rl_stages.setdefault(m, rec["rl_stage"])


def _file_eval(inp: ReportInput, name: str, phases: dict[str, Any], f: Path) -> None:
    """Show `phases` under model `name`, or under `name (file)` when another file already put
    different results there.

    Why: results are keyed by the model's family name, and two checkpoints of one family
    evaluated into one directory (`sft.json`, `rl.json`, both `"name": "thinking"`) shared a
    key — the file read last replaced the other, and the report showed one evaluation as if it
    were the only one. The climb's `eval.json` and `<model>.json` carry the same results and
    still show once."""
    have = inp.evals.setdefault(name, {})
    if all(have.get(p, r) == r for p, r in phases.items()):  # new phases, or the same ones
        have.update(phases)
    else:
        inp.evals[f"{name} ({f.name})"] = phases


def _is_model_record(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("sft"), dict) and "pretrain" in obj


def _acceptance_records(obj: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict carrying a speculative `acceptance_rate` (bench/serve_speculative.py,
    bench/serve_lookup.py, the server's metrics), with the key path it was found at."""
    if isinstance(obj, dict):
        if "acceptance_rate" in obj:
            yield where, obj
            return
        for k, v in obj.items():
            yield from _acceptance_records(v, f"{where} › {k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _acceptance_records(v, f"{where} › {i}")


# ---- HTML pieces ----------------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _note(what: str) -> str:
    return f'<p class="note">{_e(what)}: {NOT_IN_RUN}.</p>'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    t = _e(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _markdown(lines: list[str]) -> str:
    """The small Markdown the shared report helpers emit: paragraphs and pipe tables."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *rows = table
            out.append(_table(head, rows))
            table.clear()

    for ln in lines:
        s = ln.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                table.append(cells)
            continue
        flush()
        heading = re.fullmatch(r"(#{1,4}) (.+)", s)
        if heading:  # report.md's headings, one level below the section's <h2>
            level = min(6, len(heading.group(1)) + 1)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif s:
            out.append(f"<p>{_inline(s)}</p>")
    flush()
    return "\n".join(out)


def _figure(plot: Callable[[Path], Any], alt: str, attrs: str = "") -> str | None:
    """Run a plot function into a temporary PNG and embed it; None when it had nothing to plot."""
    with tempfile.TemporaryDirectory() as td:
        dest = Path(td) / "figure.png"
        if not plot(dest) or not dest.is_file():
            return None
        data = base64.b64encode(dest.read_bytes()).decode("ascii")
    return f'<figure{attrs}><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'


def _pre(text: str, limit: int = 2000) -> str:
    t = text if len(text) <= limit else text[:limit] + " …"
    return f"<pre>{_e(R.printable(t) or '(empty)')}</pre>"


def _final(phases: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    for p in ("rl", "sft", "eval"):
        if phases.get(p):
            return p, phases[p]
    return None


def _ci(values: list[float]) -> str:
    from hillclimb.eval.metrics import bootstrap_ci

    lo, hi = bootstrap_ci(values)
    return f"[{lo:.1%}, {hi:.1%}]"


# ---- sections -----------------------------------------------------------------------------------
def _overview(inp: ReportInput) -> str:
    parts = [f"<p>{_e(inp.kind)} <code>{_e(inp.root)}</code>.</p>"]
    rows = []
    for m, phases in inp.evals.items():
        for p, rec in phases.items():
            bpb = rec.get("bpb") or {}
            t = rec.get("tasks") or {}
            rows.append(
                [
                    m,
                    _phase_label(inp, m, p),
                    rec.get("preset", "-"),
                    R._fmt(bpb.get("val_bpb")),
                    R._fmt(bpb.get("unigram_bpb")),
                    R.headline_accuracy(t),  # with correct/n and its interval, as report.md
                    R._fmt(t.get("baseline"), ".1%"),
                ]
            )
    if rows:
        hdr = [
            "model",
            "stage",
            "preset",
            "corpus val bpb",
            "unigram bpb",
            "accuracy (first split) [95% CI]",
            "no-training baseline",
        ]
        parts.append(_table(hdr, rows))
        parts.append(_markdown(R.headline_reading_lines(inp.evals, list(inp.evals))))
    else:
        parts.append(_note("Task evaluations"))
    if inp.kind != "climb run":
        return "\n".join(parts)
    timings = stage_timings(inp.root)
    if timings:
        parts.append(
            _table(["stage", "seconds"], [[t["stage"], f"{t['seconds']:.1f}"] for t in timings])
        )
        fig = _figure(lambda d: R.plot_stage_times(timings, d), "stage times")
        parts.append(fig or "")
    else:
        parts.append(_note("Completed stages"))
    parts.append(_gate(inp))
    card = read_json(inp.stages["shards"] / "data_card.json") if "shards" in inp.stages else None
    if card:
        tot = card.get("totals", {})
        parts.append(
            f"<p>Data: {tot.get('documents', 0):,} documents, {tot.get('bytes', 0):,} bytes, "
            f"{tot.get('tokens') or 0:,} tokens.</p>"
        )
    parts.append(_data_and_flywheel(inp, card))
    return "\n".join(parts)


def _data_and_flywheel(inp: ReportInput, card: dict[str, Any] | None) -> str:
    """The data card's filter table and decontamination summary, and the flywheel's table, as
    report.md prints them (`report.top_reasons`, `data.card.decontamination_summary`,
    `report.flywheel_lines`).

    Why: report.md said what each filter dropped, what decontamination removed and how many SFT
    examples came from telemetry (with the consent refusals); the HTML report gave the card's
    three totals only, so the one-file report hid what the training data lost and gained."""
    from hillclimb.data.card import decontamination_summary

    lines: list[str] = []
    if card:
        drops = [
            [f["name"], f.get("dropped", 0), R.top_reasons(f)] for f in card.get("filters", [])
        ]
        if drops:
            lines += ["**filters**", R._md_table(["filter", "dropped", "top reasons"], drops)]
        lines += decontamination_summary(card)
    d = inp.stages.get("sft-data")
    marker = read_json(d / MARKER) if d is not None else None
    sft_data = marker.get("result") if isinstance(marker, dict) else None
    harness = {
        k.removeprefix("rl-harness-"): _stage_result(inp, k) or {}
        for k in inp.stages
        if k.startswith("rl-harness-")
    }
    lines += R.flywheel_lines(sft_data if isinstance(sft_data, dict) else {}, harness)
    return _markdown("\n".join(lines).splitlines())  # tables come as one multi-line string


def _phase_label(inp: ReportInput, m: str, phase: str) -> str:
    """The overview's stage label: `rl (rl-harness-m)` where the RL result is harness RL's."""
    if phase != "rl":
        return phase
    return phase + R.rl_stage_note(m, {"rl_stage": inp.rl_stages.get(m)})


def _gate(inp: ReportInput) -> str:
    """The registry stage's promotion-gate decision, as report.md's "Registry and promotion
    gate" section renders it (`climb.promotion.render`).

    Why: report.md said whether RL's checkpoint was promoted or refused, with each check's
    change, interval and p-values; the HTML report, "the same plots and tables", said nothing
    about the gate, so a reader of the one-file report could not tell which model stands."""
    from hillclimb.climb.promotion import render

    d = inp.stages.get("registry")
    marker = read_json(d / MARKER) if d is not None else None
    result = marker.get("result") if isinstance(marker, dict) else None
    if not isinstance(result, dict) or not result:
        return _note("Registry and promotion gate")
    try:
        text = render(result)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # an odd record: a note,
        return _note(f"A readable gate record ({type(e).__name__}: {e})")  # not the overview
    return "<h3>Registry and promotion gate</h3>\n" + _markdown(text.splitlines())


def _runs(inp: ReportInput, kinds: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(stage key, training run directory) of the given kinds; `sft-data` has no run/."""
    return [
        (k, d / "run")
        for k, d in inp.stages.items()
        if k.split("-", 1)[0] in kinds and (d / "run").is_dir()
    ]


def _loss(inp: ReportInput) -> str:
    parts = []
    for key, run in _runs(inp, ("pretrain", "sft")):
        kind, model = key.split("-", 1)
        base = (inp.evals.get(model, {}).get("pretrain") or {}).get("bpb") or {}
        unigram = base.get("unigram_bpb") if kind == "pretrain" else None
        fig = _figure(lambda d, run=run, key=key, u=unigram: R.plot_loss(run, key, d, u), key)
        parts.append(f"<h3>{_e(key)}</h3>" + (fig or _note(f"{key}: metrics.jsonl")))
        if kind == "pretrain":  # did a copy warm-up form copying? (as report.md says it)
            extra = (_stage_result(inp, key) or {}).get("extra")
            rec, warm = (
                (extra.get("copy_check"), extra.get("copy_warmup"))
                if isinstance(extra, dict)
                else (None, None)
            )
            if line := R.copy_check_line(key, rec, warm):
                parts.append(f"<p>{_inline(line)}</p>")
    if not parts:
        return _note("Pre-training and SFT curves")
    parts.append(
        "<p>SFT validation bits per byte is measured on held-out SFT examples' assistant tokens "
        "only, so it is not comparable with pre-training bits per byte.</p>"
    )
    return "\n".join(parts)


def _stage_result(inp: ReportInput, key: str) -> dict[str, Any] | None:
    """A finished stage's `result` from its marker, None when absent or not an object."""
    d = inp.stages.get(key)
    marker = read_json(d / MARKER) if d is not None else None
    result = marker.get("result") if isinstance(marker, dict) else None
    return result if isinstance(result, dict) else None


def _rl_model(key: str) -> str:
    """The model of an `rl-<model>` or `rl-harness-<model>` stage key."""
    return key.removeprefix("rl-harness-") if key.startswith("rl-harness-") else key[3:]


def _rl(inp: ReportInput) -> str:
    """The RL section as report.md's: a title and lead derived from the held-out measurement
    (`report.rl_section_title`, the gate's decision), then per RL stage its panels, the note
    that the curve is the val split, and the held-out endpoints beside it."""
    from hillclimb.rl.report import plot_rl, summary_lines

    evs = {
        m: {**ph, "rl_stage": inp.rl_stages.get(m)}
        for m, ph in inp.evals.items()
        if ph.get("rl") and ph.get("sft")
    }
    parts = []
    if evs:
        parts.append(f"<h3>{_e(R.rl_section_title(list(evs), evs))}</h3>")
        parts.append(_markdown(R.rl_lead_lines(list(evs), evs, _stage_result(inp, "registry"))))
    for key, run in _runs(inp, ("rl",)):
        model = _rl_model(key)
        fig = _figure(lambda d, run=run, m=model: plot_rl(run, d, m), key)
        parts.append(f"<h3>{_e(key)}</h3>" + (fig or _note(f"{key}: RL steps")))
        if fig:
            parts.append(
                "<p>Panels: val pass rate per family × tier over RL steps (val split, not held "
                "out), training reward and pass rate, tokens per correct answer per tier, "
                "rollout-vs-train log-prob gap with router agreement (dashed), seconds per step "
                "split, val accuracy against tokens at forced thinking budgets (Pareto).</p>"
            )
            ends = (
                R.endpoints_for_stage(key, model, evs[model])
                if model in evs
                else ["held-out endpoints: none"]
            )
            parts.append(_markdown([R.VAL_CURVE_NOTE, "", *ends]))
            parts.append(_markdown(summary_lines(run)))
    return "\n".join(parts) if parts else _note("RL stages")


def _tokens(inp: ReportInput) -> str:
    parts = []
    for m, phases in inp.evals.items():
        fin = _final(phases)
        t = (fin[1].get("tasks") or {}) if fin else {}
        if not t.get("cells"):
            continue
        fig = _figure(lambda d, t=t, m=m: R.plot_tokens_by_tier(t, m, d), f"tokens {m}")
        split = next(iter(t["splits"]))
        rows = [
            [
                c["family"],
                c["tier"],
                f"{c['mean_completion_tokens']:.1f}",
                R._fmt(c.get("tokens_per_correct"), ".1f"),
                f"{c['correct']}/{c['n']}",  # what "per correct" is over: 1 answer or 20
                f"{c['truncated_share']:.0%}",
            ]
            for c in t["cells"]
            if c["split"] == split
        ]
        parts += [
            f"<h3>{_e(m)} ({_e(fin[0] if fin else '')}, split {_e(split)})</h3>",
            fig or "",
            "<details><summary>numbers</summary>"
            + _table(
                ["family", "tier", "mean tokens", "tokens / correct", "correct", "truncated"], rows
            )
            + "</details>",
        ]
    return "\n".join(parts) if parts else _note("Per-tier token counts (task evaluation)")


def _experts(inp: ReportInput) -> str:
    loads = R.expert_loads(_runs(inp, ("pretrain", "sft", "rl")))
    if not loads:
        return _note("Routing logs (routing.jsonl)")
    scale = R.load_scale(loads)  # the scale plot_expert_load draws with
    attrs = (
        f' class="heatmaps" data-vmin="{scale.vmin:g}" data-vmax="{scale.vmax:.4f}" '
        f'data-even="{scale.even:g}"'
    )
    fig = _figure(lambda d: R.plot_expert_load(loads, d), "expert load heatmaps", attrs)
    return "\n".join(
        [
            f"<p>Load per MoE layer and expert relative to even load, summed over each run's "
            f"logged steps. <b>One colour scale for all {len(loads)} heatmaps</b>: "
            f"{scale.vmin:g} to {scale.vmax:.2f} × even load; white and the black line on the "
            f"colour bar mark even load ({scale.even:g}).</p>",
            fig or "",
            _table(*R.expert_load_rows(loads)),
        ]
    )


def _speculative(inp: ReportInput) -> str:
    if not inp.speculative:
        return (
            f'<p class="note">Speculative acceptance: not measured in this run '
            f"({NOT_IN_RUN}: no bench or serve JSON with an acceptance_rate).</p>"
        )
    keys = ("acceptance_rate", "mean_accept_len", "drafted", "accepted", "speedup")
    rows = [[w] + ["-" if r.get(k) is None else r[k] for k in keys] for w, r in inp.speculative]
    return _table(["where"] + list(keys), rows)


def _eval_model(
    m: str, phases: dict[str, dict[str, Any]], rl_stage: str | None = None
) -> list[str]:
    parts = [f"<h3>{_e(m)}</h3>"]
    rows = []
    for p, rec in phases.items():
        t = rec.get("tasks") or {}
        for s, v in (t.get("splits") or {}).items():
            vals = [float(i["passed"]) for i in t.get("items") or [] if i["split"] == s]
            acc = f"{v['accuracy']:.1%} ({v['correct']}/{v['n']})"
            rows.append([p, s, acc, _ci(vals) if vals else "-", R._fmt(v.get("baseline"), ".1%")])
    if rows:
        hdr = ["stage", "split", "accuracy (greedy)", "95% interval"]
        parts.append(_table(hdr + ["no-training baseline (same items)"], rows))
    fin = _final(phases)
    t = (fin[1].get("tasks") or {}) if fin else {}
    if not t.get("cells"):
        return parts + [_note(f"{m}: per-cell task accuracy")]
    header, cells = R.accuracy_rows(t, R.cell_intervals(t))
    parts += [
        f"<p>Final model ({_e(fin[0])}), per family × tier: accuracy (correct/n) "
        "[95% Wilson interval over items] beside the best no-training baseline (lookup "
        "table, majority answer or chance); † = held-out family.</p>",
        _table(header, cells),
        _figure(lambda d: R.plot_accuracy(t, m, d), f"accuracy {m}") or "",
    ]
    if phases.get("rl") and phases.get("sft"):
        parts += [
            f"<h4>{_e(R.sft_vs_rl_title(m, {**phases, 'rl_stage': rl_stage}))}</h4>",
            *(f"<p>{_e(line)}</p>" for line in R.sft_vs_rl_paired(phases)),
            _table(*R.sft_vs_rl_rows(phases)),
        ]
    tiers = R.tokens_by_tier_rows(phases)
    if tiers:
        parts += [
            f"<h4>{_e(m)}: tokens by tier</h4>",
            f"<p>{_e(R.TOKENS_BY_TIER_NOTE)}</p>",
            _table(*tiers),
        ]
    return parts


def _suite(label: str, s: dict[str, Any]) -> list[str]:
    """A suite result's metrics, each beside its no-training baseline on the same items.

    Why: the section said "No no-training baseline is defined for this suite" under every
    suite — HumanEval, completion, IFEval and FIM results carry one (`baseline`), and
    `report.md` prints it; a 2% pass rate reads differently beside a 2% trivial baseline."""
    from hillclimb.eval.suite_common import suite_baseline

    base = suite_baseline(s)
    what = (s.get("baseline") or {}).get("what") if isinstance(s.get("baseline"), dict) else None
    said = (
        f"No-training baseline (same items): {_e(what)}." if what
        else "No-training baseline: beside each metric." if base
        else "This result holds no no-training baseline."
    )  # fmt: skip
    parts = [
        f"<h3>suite {_e(s.get('suite'))} — {_e(s.get('model'))} ({_e(label)})</h3>",
        f"<p>{s.get('n_items', '?')} items; truncated {s.get('truncated_share', 0):.0%}; mean "
        f"completion tokens {s.get('mean_completion_tokens', 0):.1f}. {said}</p>",
    ]
    from hillclimb.eval.suites import metric_baseline

    rows = [
        [k, f"{v['value']:.1%}", f"[{v['ci95'][0]:.1%}, {v['ci95'][1]:.1%}]", v.get("n", "-"),
         R._fmt(metric_baseline(s, k), ".1%")]
        for k, v in (s.get("metrics") or {}).items()
    ]  # fmt: skip
    hdr = ["metric", "value", "95% interval", "n", "no-training baseline"]
    parts.append(_table(hdr, rows))
    for key in ("by_category", "by_instruction"):
        sub = s.get(key) or {}
        if sub:
            rows = [
                [
                    k,
                    f"{v['value']:.1%}",
                    f"[{v['ci95'][0]:.1%}, {v['ci95'][1]:.1%}]" if v.get("ci95") else "-",
                    v.get("n", "-"),
                ]
                for k, v in sub.items()
            ]
            parts.append(_table([key[3:], "value", "95% interval", "n"], rows))
    return parts


def _eval(inp: ReportInput) -> str:
    parts: list[str] = []
    for m, phases in inp.evals.items():
        parts += _eval_model(m, phases, inp.rl_stages.get(m))
    for label, s in inp.suites:
        parts += _suite(label, s)
    return "\n".join(parts) if parts else _note("Evaluation results")


def _samples(inp: ReportInput) -> str:
    parts: list[str] = []
    for m, phases in inp.evals.items():
        fin = _final(phases)
        samples = ((fin[1].get("tasks") or {}).get("samples") or []) if fin else []
        families = (
            (fin[1].get("tasks") or {}).get("settings", {}).get("families", []) if fin else []
        )
        missing = [f for f in families if f not in {s["family"] for s in samples}]
        if missing:
            parts.append(_note(f"{m}: samples of {', '.join(missing)}"))
        for s in samples:
            mark = "correct" if s.get("correct") else "wrong"
            expected = R.printable(str(s.get("expected", ""))[:300])
            parts.append(
                f'<div class="sample"><h4>{_e(m)} — {_e(s["family"])} tier {_e(s["tier"])}, '
                f"{_e(s.get('split', 'heldout'))} ({mark}, finish: {_e(s.get('finish_reason'))})"
                f"</h4><p>Prompt</p>{_pre(s.get('prompt', ''))}<p>Reasoning</p>"
                f"{_pre(s.get('reasoning', ''))}<p>Answer</p>{_pre(s.get('content', ''))}"
                f"<p>Expected: <code>{_e(expected)}</code></p></div>"
            )
    for label, s in inp.suites:
        for it in (s.get("items") or [])[:2]:
            text = it.get("completion", it.get("response", ""))
            parts.append(
                f'<div class="sample"><h4>suite {_e(s.get("suite"))} — {_e(it.get("id"))} '
                f"({'passed' if it.get('passed') else 'failed'}, {_e(label)})</h4>"
                + (f"<p>Prompt</p>{_pre(it['prompt'])}" if it.get("prompt") else "")
                + f"<p>Answer</p>{_pre(str(text))}</div>"
            )
    return "\n".join(parts) if parts else _note("Sample generations")


BUILDERS: dict[str, Callable[[ReportInput], str]] = {
    "overview": _overview,
    "loss": _loss,
    "rl": _rl,
    "tokens": _tokens,
    "experts": _experts,
    "speculative": _speculative,
    "eval": _eval,
    "samples": _samples,
}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:12px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#f3f3f3}
img{max-width:100%}pre{background:#f7f7f7;padding:.5em;white-space:pre-wrap;max-height:22em;
overflow:auto}.note{color:#8a5a00;background:#fff6e0;padding:.3em .6em}
.sample{border-left:3px solid #ddd;padding-left:.8em;margin:1em 0}nav a{margin-right:1em}
"""


def _build(key: str, inp: ReportInput) -> str:
    """One section; a record of an older or partial format that lacks a field the section reads,
    or holds a value of another shape where an object was expected (`"bpb": 3` read with
    `.get`: AttributeError), becomes a note naming the field, so one odd file never costs the
    whole report."""
    try:
        return BUILDERS[key](inp)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        return _note(f"A readable {key} record ({type(e).__name__}: {e}; older or partial format?)")


def build_html(inp: ReportInput) -> str:
    """The whole document; each section is built independently and always present."""
    nav = " ".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in SECTIONS)
    body = [
        f'<section id="{k}"><h2>{_e(t)}</h2>\n{_build(k, inp)}\n</section>' for k, t in SECTIONS
    ]
    title = f"hillclimb report — {inp.root.name}"
    made = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>Generated {made} from <code>{_e(inp.root)}</code>.</p>"
        f"<nav>{nav}</nav>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def default_out(run: Path) -> Path:
    """RUN/report/report.html for a climb run (the file its report stage writes, so `hillclimb
    report RUN` rebuilds that one rather than a second copy beside it); RUN/report.html for
    another directory (an eval `--out`); `<name>.report.html` beside an eval JSON file."""
    if run.is_dir():
        if (run / "climb.json").is_file() and (run / "report").is_dir():
            return run / "report" / "report.html"
        return run / "report.html"
    return run.with_name(run.stem + ".report.html")


def write_html_report(run: Path, out: Path | None = None) -> Path:
    """Read RUN, write the report to `out` (default `default_out(RUN)`); returns where.

    Why the destination is checked before the input is read: `--out DIR` or a path under a
    file would otherwise fail after every plot was drawn, with an OSError traceback."""
    run = Path(run)
    dest = Path(out) if out else default_out(run)
    if dest.is_dir():
        raise HillclimbError(f"report: {dest} is a directory; name the HTML file to write (--out)")
    inp = load_input(run)
    try:
        write_text_atomic(dest, build_html(inp))
    except OSError as e:
        raise HillclimbError(f"report: cannot write {dest}: {e}") from None
    return dest
