"""The climb's `registry` stage: register what the climb made, then run the promotion gate.

Why in the climb: the hill-climbing rule only works if every candidate is recorded with its
lineage and item-level results and then judged against the incumbent by the same rule a person
would apply with `hillclimb promote`. So after `eval`, for each model this stage

1. registers the run and every checkpoint the climb made (pre-trained, SFT, RL finals) with
   stage, parent, recipe hash (the stage's hash: its recipe sections chained with its parents')
   and data-card hash (`03-shards/data_card.json`);
2. imports each evaluation with its item-level results (one suite per eval split);
3. runs the gate: candidate = the final model (RL when the recipe has it), incumbent = what
   `<model>@prod` points at if anything, else the SFT checkpoint; target = the recipe's first eval
   split, gates = the other splits. On promotion the alias moves (`hillclimb serve --thinking
   thinking@prod` then serves it).

A refusal is a result, not a failure: the climb reports it (summary.json `registry`, the
report, `NN-registry/gate.md`) and carries on. A registry that cannot be opened or written is
reported the same way, so a read-only state directory never costs a finished climb. The same
(candidate, incumbent, alias) is never judged twice: a re-run reuses the stored decision.
Cost: hashing the checkpoints' weights and a 10 000-resample bootstrap, about a second — plus,
once, an evaluation of an incumbent from elsewhere that has none under this climb's settings
(`_evaluate_incumbent`: like for like, the recipe's `[eval]`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.errors import HillclimbError
from hillclimb.io import write_text_atomic

if TYPE_CHECKING:
    from hillclimb.climb.state import Climb

ALIAS_TAG = "prod"
GATE_SETTINGS = {"alias_tag": ALIAS_TAG, "alpha": 0.05, "resamples": 10_000, "seed": 0}


def registry_stage(c: Climb, d: Path) -> dict[str, Any]:
    """Register the climb's checkpoints and evaluations and gate each model's final checkpoint.
    Never raises for registry trouble or a refusal: both are in the returned result."""
    from hillclimb.registry.db import Registry, registry_path

    if c.registry is False:
        return {"skipped": "registry disabled (--no-registry)"}
    # absolute: a re-run from another directory compares it with its own `--registry`
    where = registry_path(c.registry if isinstance(c.registry, Path) else None).absolute()
    out: dict[str, Any] = {"registry": str(where), "models": {}}
    try:
        with Registry(where) as reg:
            for m in c.recipe.model_names:
                out["models"][m] = _model(c, reg, m)
    except (HillclimbError, sqlite3.Error, OSError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        c.say(f"registry: not updated ({out['error']}); the climb goes on")
    write_text_atomic(d / "gate.md", render(out) + "\n")
    for line in render(out).splitlines():
        c.say(line)
    return out


def _model(c: Climb, reg: Any, m: str) -> dict[str, Any]:
    from hillclimb.climb.climb_recipe import canonical_hash
    from hillclimb.registry.db import file_hash
    from hillclimb.registry.evalfile import load_eval_file
    from hillclimb.registry.gate import GateConfig, promote

    run_id = reg.register_run(
        "climb", c.out, name=c.recipe.name, recipe_hash=canonical_hash(c.recipe.raw)
    )
    card = c.shards_dir / "data_card.json"
    card_hash = file_hash(card) if card.is_file() else None
    stages = [f"pretrain-{m}", f"sft-{m}"] + ([f"rl-{m}"] if m in c.recipe.rl else [])
    if m in c.recipe.rl_harness:  # registered as stage "rl" too: the final RL-trained model
        stages.append(f"rl-harness-{m}")
    ids: dict[str, str] = {}
    parent: str | None = None
    for key in stages:
        ck = reg.register_checkpoint(
            c.final(key),
            stage=key.split("-", 1)[0],
            parent=parent,
            run_id=run_id,
            recipe_hash=c.stage(key).hash,
            data_card_hash=card_hash,
            meta={"climb": str(c.out), "climb_stage": key},
        )
        ids[key.split("-", 1)[0]] = parent = ck.id
    rec: dict[str, Any] = {"checkpoints": ids, "evals": {}}
    ev_file = c.dir("eval") / f"{m}.json"
    ev = load_eval_file(ev_file)
    for stage, ck_id in ids.items():
        res = ev.get(stage) if isinstance(ev, dict) else None
        if res and res.get("tasks"):
            try:
                evals = reg.add_eval_result(ck_id, res, source=str(ev_file))
            except HillclimbError as exc:  # e.g. an eval stage from before item-level results
                rec["evals"][stage] = {"error": str(exc)}
                continue
            rec["evals"][stage] = {e.suite: e.accuracy for e in evals}

    cand = ids.get("rl") or ids["sft"]
    alias = f"{m}@{ALIAS_TAG}"
    current = reg.find_alias(alias)
    inc = current.checkpoint_id if current else ids["sft"]
    rec.update(alias=alias, candidate=cand, incumbent=inc)
    if cand == inc:
        why = (
            f"already {alias}"
            if current
            else "RL left the weights identical to SFT's"
            if "rl" in ids
            else "no RL stage: the final model is the SFT model"
        )
        if current is None:  # nothing to judge: the alias is created, not gated
            rec.update(
                decision="skipped",
                reasons=[f"no incumbent to compare with: {alias} did not exist and {why}"],
            )
            _first_alias(reg, alias, inc, rec)
        else:
            rec.update(decision="skipped", reasons=[f"candidate {cand} is the incumbent ({why})"])
        return rec
    splits = list(c.recipe.eval.get("splits") or ["heldout"])
    prior = [
        x
        for x in reg.decisions(cand)
        if x["candidate"] == cand and x["incumbent"] == inc and x["alias"] == alias
    ][:1]
    if prior and not _same_evidence(reg, prior[0]["report"], cand, inc, splits):
        prior = []  # the eval stage re-ran since (new items or settings): judge again
    if prior:
        dec = prior[0]["report"]
        rec.update(decision="promoted" if dec["promoted"] else "refused", reused=prior[0]["id"])
    else:
        if current is not None:
            _evaluate_incumbent(c, reg, cand, inc, splits, rec)
        cfg = GateConfig(
            target=splits[0],
            gates=tuple(splits[1:]),
            alpha=GATE_SETTINGS["alpha"],
            resamples=GATE_SETTINGS["resamples"],
            seed=GATE_SETTINGS["seed"],
        )
        try:
            # the alias as read above, before the incumbent's evaluation (minutes): another
            # climb that promoted meanwhile is not written over
            d = promote(reg, cand, inc, cfg, alias=alias, alias_was=inc if current else None)
        except HillclimbError as exc:  # e.g. no shared items with an incumbent from elsewhere
            rec.update(decision="error", reasons=[str(exc)])
            return rec
        dec = d.to_dict()
        rec["decision"] = "promoted" if d.promoted else "refused"
    rec.update(gate_record(dec))
    if current is None and rec["decision"] == "refused":
        _first_alias(reg, alias, inc, rec)
    return rec


def gate_record(dec: dict[str, Any]) -> dict[str, Any]:
    """What the climb keeps of a gate decision (`Decision.to_dict()`, stored or new): reasons,
    per-check statistics and the gate's warnings.

    Why the warnings: they say when the comparison was not like for like (different generation
    settings, items only one checkpoint was evaluated on); the summary and report showed the
    p-values without them."""
    checks = [
        {
            "role": ch["role"],
            "suite": ch["comparison"]["suite"],
            "ok": ch["ok"],
            "reason": ch["reason"],
            **{
                k: ch["comparison"]["stats"][k]
                for k in ("n", "mean_a", "mean_b", "delta", "ci_low", "ci_high")
            },
            # the p-values the gate decided on (bootstrap and exact sign test; older stored
            # decisions have only the bootstrap's)
            "p_better": ch["comparison"].get("p_better", ch["comparison"]["stats"]["p_better"]),
            "p_worse": ch["comparison"].get("p_worse", ch["comparison"]["stats"]["p_worse"]),
            "effect_size": ch["comparison"]["stats"]["effect_size"],
        }
        for ch in dec["checks"]
    ]
    return {
        "reasons": dec["reasons"],
        "checks": checks,
        "warnings": dec.get("warnings") or [],
        # settings the comparison could not check (older results; stored decisions lack it)
        "notes": dec.get("notes") or [],
    }


def _first_alias(reg: Any, alias: str, ck: str, rec: dict[str, Any]) -> None:
    """Point a new `<model>@prod` at the checkpoint that stands (the SFT model the gate kept, or
    the final model when there was nothing to judge), recorded as a decision.

    Why: without it, a first climb whose gate refused RL (or that has no RL stage) left no
    alias, and README's `hillclimb serve --thinking thinking@prod` failed with "unknown alias".
    Only when the alias does not exist yet (`alias_was=None`: if another climb created it
    meanwhile, theirs stands); an existing alias moves only through the gate."""
    try:
        reg.record_decision(
            ck, None, alias, True,
            {"manual": True, "promoted": True,
             "reason": f"first {alias}: the checkpoint that stands after this climb's gate"},
            alias_was=None,
        )  # fmt: skip
    except HillclimbError as exc:  # created by someone else meanwhile: theirs stands
        rec["reasons"] = [*rec.get("reasons", []), f"{alias} not created: {exc}"]
        return
    rec["alias_created"] = ck
    rec["reasons"] = [*rec.get("reasons", []), f"{alias} created: it points at {ck}"]


def _same_evidence(
    reg: Any, report: dict[str, Any], cand: str, inc: str, splits: list[str]
) -> bool:
    """Whether a stored decision judged what the gate would judge now: the same target and
    gate splits, on the evaluations that are the newest of each checkpoint today (a decision
    stored before comparisons named their evaluations is not reused)."""
    checks = report.get("checks") or []
    want = list(dict.fromkeys(splits))
    if [ch.get("comparison", {}).get("suite") for ch in checks] != want:
        return False
    for ch in checks:
        comp = ch["comparison"]
        if "p_exact_better" not in comp:  # judged by the bootstrap alone (tiny-n promotions)
            return False
        try:
            ev_cand = reg.latest_eval(cand, comp["suite"])  # as `gate.compare` picks them
            now = (reg.latest_eval(inc, comp["suite"], like=ev_cand.settings).id, ev_cand.id)
        except HillclimbError:
            return False
        if (comp.get("eval_a"), comp.get("eval_b")) != now:
            return False
    return True


def _evaluate_incumbent(
    c: Climb, reg: Any, cand: str, inc: str, splits: list[str], rec: dict[str, Any]
) -> None:
    """Like for like: an incumbent the alias brought from elsewhere (an earlier climb, a
    `hillclimb promote` by hand) is judged on this climb's items and generation settings. When
    it has no evaluation of a gate split with the candidate's settings, it is evaluated here
    with the recipe's `[eval]` (no bits/byte) and the result imported; when its checkpoint is
    gone, the gate says so."""
    from hillclimb.climb.climb_recipe import task_config
    from hillclimb.eval.core import run_eval

    mine = {e.suite: e.settings for e in reg.evals(cand)}  # newest last: the gate's
    have = [(e.suite, e.settings) for e in reg.evals(inc)]  # any of them: the gate finds it
    if all((s, mine.get(s)) in have for s in splits):
        return
    path = Path(reg.checkpoint(inc).path)
    if not (path / "config.json").is_file():
        return  # `promote` names what is missing
    c.say(f"registry: evaluating incumbent {inc} ({path}) with this recipe's eval settings")
    res = run_eval(path, None, tasks=task_config(c.recipe.eval), accuracy=True)
    evals = reg.add_eval_result(inc, res, source=f"climb {c.out}: incumbent, like for like")
    rec["incumbent_evaluated"] = {e.suite: e.accuracy for e in evals}


def render(out: dict[str, Any]) -> str:
    """Markdown lines for the report and the terminal."""
    if out.get("skipped"):
        return f"registry: {out['skipped']}"
    lines = [f"registry: {out.get('registry')}"]
    if out.get("error"):
        lines.append(f"registry error (climb not failed): {out['error']}")
    for m, rec in out.get("models", {}).items():
        lines.append(f"- {m}: " + _headline(rec))
        if rec.get("incumbent_evaluated"):
            lines.append(
                "  - the incumbent had no evaluation with this climb's settings: evaluated now ("
                + ", ".join(f"{k} {v:.1%}" for k, v in rec["incumbent_evaluated"].items())
                + ")"
            )
        for ch in rec.get("checks", []):
            lines.append(
                f"  - {ch['role']} {ch['suite']}: {ch['mean_a']:.1%} -> {ch['mean_b']:.1%} "
                f"({ch['delta'] * 100:+.1f} pts, CI [{ch['ci_low'] * 100:+.1f}, "
                f"{ch['ci_high'] * 100:+.1f}], p(one-sided, better) "
                f"{ch['p_better']:.3g}, p(one-sided, worse) {ch['p_worse']:.3g}, dz {ch['effect_size']:+.2f}, n={ch['n']}): {ch['reason']}"
            )
            caveat = interval_caveat(ch)
            if caveat:
                lines.append(f"    - {caveat}")
        for w in rec.get("warnings", []):
            lines.append(f"  - warning: {w}")
        for n in rec.get("notes", []):
            lines.append(f"  - note: {n}")
        for r in rec.get("reasons", []):
            lines.append(f"  - reason: {r}")
    return "\n".join(lines)


def interval_caveat(ch: dict[str, Any]) -> str | None:
    """A note under a check whose reason says "beyond noise" where the report's own 95%
    two-sided reading (`report.sft_vs_rl_paired`: the interval excludes 0 and the one-sided
    p-value is below 0.025) does not, else None.

    Why: the gate decides on one-sided p-values at 5% (`GATE_SETTINGS["alpha"]`) — a 90%
    two-sided test — while the line prints the 95% two-sided interval. A change with
    p(one-sided, better) 0.04 read "improves beyond noise" in the gate and "not beyond noise
    (95%, two-sided)" in the SFT-vs-RL lines of the same report, with nothing to reconcile
    them."""
    reason = str(ch.get("reason", ""))
    lo, hi = ch.get("ci_low"), ch.get("ci_high")
    pb, pw = ch.get("p_better"), ch.get("p_worse")
    if not all(isinstance(x, int | float) for x in (lo, hi, pb, pw)):
        return None
    if reason.startswith("improves beyond noise"):
        holds, p = lo > 0 and pb < 0.025, pb
    elif reason.startswith("regresses beyond noise"):
        holds, p = hi < 0 and pw < 0.025, pw
    else:
        return None
    if holds:
        return None
    return (
        f"not beyond noise at 95% two-sided (interval [{lo * 100:+.1f}, {hi * 100:+.1f}], "
        f"one-sided p {p:.3g} against 0.025): the gate's test is one-sided at "
        f"{GATE_SETTINGS['alpha']:g}"
    )


def _headline(rec: dict[str, Any]) -> str:
    """The first line of a model's gate record.

    Why not always "DECISION candidate X over incumbent Y": with nothing to judge (no RL stage,
    or RL left the weights unchanged) X and Y are one checkpoint, and a first climb read
    "SKIPPED candidate X over incumbent X … created", as if X had been compared with itself."""
    cand, inc, alias = rec.get("candidate"), rec.get("incumbent"), rec.get("alias")
    if rec.get("decision") == "skipped" and cand == inc:
        if rec.get("alias_created"):
            return f"{alias} CREATED at {rec['alias_created']}: no incumbent, no gate"
        return f"SKIPPED candidate {cand} for {alias}: it is the incumbent, nothing to judge"
    return (
        f"{rec.get('decision', '?').upper()} candidate {cand} over incumbent {inc} for {alias}"
        + (f" (decision #{rec['reused']}, reused)" if rec.get("reused") else "")
    )
