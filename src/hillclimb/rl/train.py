"""`run_rl(cfg)`: reinforcement learning with verifiable rewards on our problem generators.

The loop, per RL step (all state on disk is the trainer's: checkpoints carry the weights,
optimizer, MoE biases, RNG and the curriculum, so `--resume` after a kill continues exactly):

1. **sync** — the generation engine wraps the trainer's own model (`trainer.raw`, shared
   weights); `Engine.sync_weights()` refreshes its derived tensors after the last update.
2. **rollouts** — `prompts_per_step` train-split prompts from the curriculum, `group_size`
   samples each at the policy temperature, through `rl.rollout.rollout_and_check` (the function
   the evaluation uses): token ids as sampled, each token's log-prob under the sampling
   distribution, forced tokens flagged. With several ranks, prompt i is rolled out by rank
   i mod world and the groups are gathered, so every rank sees the same global batch (per-sample
   seeds derive from (seed, step, prompt, i): the same step gets the same samples whatever the
   rank count).
3. **rewards** — verifier-based (`rl.rewards`), shaped per group (ALP length penalty, overlong
   handling); group advantages (`rl.grpo.group_advantages`); dynamic sampling drops groups whose
   rewards are all equal and refills from the curriculum (`refill_rounds`).
4. **update** — `epochs` × `minibatches` optimizer steps of `rl.grpo.PolicyLoss` through
   `train.loop.Trainer.update` (the same micro-batching, DDP and clipping as pre-training).
5. **log** — `metrics.jsonl` per step: reward, pass rate, completion tokens (all and per correct
   answer), dropped groups, the rollout-vs-train log-prob gap, clip fraction, and the step time
   split (rollout / reward / update / sync), the active ALP β (`alp_beta`: 0 before
   `length_start_step`) and mean `length_penalty`, `updates` (optimizer steps made; 0: every group
   was dropped, and loss / aux / lr / grad_norm are null); `curve.jsonl` every `eval_every` steps: greedy pass
   rate on the **val** split per family × tier (the climbing curve; the held-out test split is left
   for the final evaluation, so nothing is tuned on it).

Routing replay (`routing_replay`, on by default): the engine records each token's experts
during the rollout and the training forward routes the token through them (gate values still
from the training router, so it keeps its gradient); `router_agreement` (how many tokens' own
top-k equals the record, at the first and the last update of a step) and the log-prob gap are
logged with and without it.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.io import exclusive_dir, write_json_atomic
from hillclimb.problems.base import derive_seed
from hillclimb.rl.config import (
    PROBLEM_CURRICULUM,
    RLConfig,
    changed_from_default,
    problem_evals_set,
)
from hillclimb.rl.curriculum import Curriculum
from hillclimb.rl.grpo import PolicyLoss, empty_batch, gather_groups, step_stats, tally_group
from hillclimb.rl.rewards import load_reward, score, shape_group
from hillclimb.rl.rollout import Rollout, cell_max_tokens, repeat_index, rollout_and_check
from hillclimb.serve.budget import BUDGET_NOTE, PROFILE_KEY, thinking_profile

RL_FORMAT = "hillclimb-rl-v1"


def default_families(model_family: str | None) -> list[str]:
    """thinking → the trainable reasoning families; code-flash → the code families."""
    from hillclimb import problems as P

    kind = "code" if (model_family or "").startswith("code") else "reasoning"
    return [f for f in P.TRAIN_FAMILIES if P.FAMILIES[f] == kind]


def build_batch(
    groups: list[dict[str, Any]], pad_rows_to: int, max_len: int
) -> dict[str, np.ndarray]:
    """Rows = prompt + completion ids (right-padded; `valid` marks real tokens, so padding never
    enters attention, the MoE balancing statistics or the aux loss); `mask` marks completion
    tokens that train (not forced, member kept); `old_lp` the rollout log-probs; `adv` per row."""
    rows: list[tuple[Rollout, float]] = []
    for g in groups:
        for r, a, k in zip(g["rollouts"], g["adv"], g["keep"], strict=True):
            if k and r.completion_ids:
                rows.append((r, a))
    T1 = max([len(r.prompt_ids) + len(r.completion_ids) for r, _ in rows] + [2])
    batch = empty_batch(len(rows), T1, pad_rows_to, max_len)
    ids, mask, valid, old, adv = (batch[k] for k in ("ids", "mask", "valid", "old_lp", "adv"))
    n = ids.shape[0]
    shapes = {tuple(r.routes.shape[1:]) for r, _ in rows if r.routes is not None}
    routes = None
    if len(shapes) == 1:  # the rollout engine recorded routes: [rows, T, n_moe, k], −1 = none
        routes = np.full((n, T1, *shapes.pop()), -1, dtype=np.int16)
    for i, (r, a) in enumerate(rows):
        if routes is not None and r.routes is not None:
            m = min(len(r.routes), T1)
            routes[i, :m] = np.asarray(r.routes[:m])
        p, c = len(r.prompt_ids), len(r.completion_ids)
        ids[i, :p] = r.prompt_ids
        ids[i, p : p + c] = r.completion_ids
        valid[i, : p + c] = 1
        lp = np.asarray(r.logprobs or [0.0] * c, dtype=np.float64)
        forced = np.asarray(r.forced or [False] * c, dtype=bool)
        ok = ~forced & np.isfinite(lp)
        mask[i, p : p + c] = ok.astype(np.float32)
        old[i, p : p + c] = np.where(ok, lp, 0.0).astype(np.float32)
        adv[i] = a
    if routes is not None:
        batch["routes"] = routes
    return batch


def _slice(batch: dict[str, np.ndarray], sel: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[sel] for k, v in batch.items()}


def run_rl(cfg: RLConfig, reward_fn: Any = None) -> dict[str, Any]:
    """Run (or resume) RL; `reward_fn` (a callable `Rollout -> float`) overrides `cfg.reward`."""
    from hillclimb.train import distributed as D

    if cfg.out is None:
        raise ConfigError("an output run directory (--out) is required")
    with (
        exclusive_dir(cfg.out) if D.env_rank() == 0 else nullcontext(),
        D.joined(cfg.device, cfg.distributed) as info,
    ):
        return _run(cfg, Path(cfg.out), info, reward_fn)


def rl_inputs(
    families: list[str], tasks: list[Any] | None, reference: Path | None = None
) -> dict[str, Any]:
    """What the run trains on, recorded in its `config.json` for `--resume` to compare: the
    mode, the problem families, a hash of the harness tasks' definitions (not their path, which
    may move) and, with a KL term, a hash of the `reference` policy's weights.

    Why: `--harness` and `--model` are paths and resumes may change paths, so a problem-RL run
    resumed with `--harness DIR` (or a harness run resumed with other tasks behind DIR), or a KL
    run resumed with another `--model` (its reference), went on training on something else and
    spliced two runs into one curve and one checkpoint."""
    import hashlib

    rec: dict[str, Any] = {"mode": "problems" if tasks is None else "harness",
                           "families": list(families), "tasks": None, "kl_reference": None}  # fmt: skip
    if tasks is not None:
        keys = ("id", "kind", "instruction", "test_command", "fail_to_pass", "pass_to_pass",
                "answers", "checks")  # fmt: skip
        defs = [{k: repr(getattr(t, k, None)) for k in keys} for t in tasks]
        rec["tasks"] = hashlib.sha256(json.dumps(defs, sort_keys=True).encode()).hexdigest()
    if reference is not None:
        rec["kl_reference"] = _weights_sha256(reference)
    return rec


def rl_fingerprint(inputs: dict[str, Any]) -> str:
    """One hash of `rl_inputs` (the trainer's own data check, `train.loop.check_resume_config`)."""
    import hashlib

    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


_INPUT_NAMES = {"mode": "what it trains on", "families": "families",
                "tasks": "the harness tasks (a hash of their definitions)",
                "kl_reference": "the KL reference policy (a hash of --model's weights)"}  # fmt: skip


def _brief(v: Any) -> str:
    """A value for the resume message: hashes cut to 12 hex digits."""
    return f"{v[:12]}…" if isinstance(v, str) and len(v) == 64 else repr(v)


def check_resume_inputs(out: Path, resume: bool, inputs: dict[str, Any]) -> None:
    """Refuse to resume the run in `out` on other inputs than it was started with, naming what
    changed (a run from before this record is resumed as before)."""
    from hillclimb.train.checkpointing import latest_checkpoint

    if not resume or latest_checkpoint(out) is None:
        return
    try:
        prev = json.loads((out / "config.json").read_text(encoding="utf-8")).get("rl_inputs")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return
    if not isinstance(prev, dict):
        return
    changed = [
        f"{_INPUT_NAMES.get(k, k)}: {_brief(prev.get(k))} -> {_brief(v)}"
        for k, v in inputs.items()
        # a KL term switched on or off is `kl_beta`'s change, which the settings check names
        if prev.get(k) != v and not (k == "kl_reference" and None in (v, prev.get(k)))
    ]
    if changed:
        raise HillclimbError(
            f"{out} was trained on other inputs ({'; '.join(changed)}); resume it with the "
            "--model / --harness / --families it was started with, or choose a new --out"
        )


def _weights_sha256(model_dir: Path) -> str:
    """SHA-256 of a checkpoint's weight files (names and bytes, streamed): its content, not its
    path."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _check_model(path: Path | None) -> Path:
    if path is None:
        raise ConfigError("RL starts from a checkpoint: pass --model CHECKPOINT")
    p = Path(path)
    if not (p / "config.json").is_file():
        raise HillclimbError(f"{p} is not a checkpoint directory (no config.json)")
    if not (p / "tokenizer.json").is_file():
        from hillclimb.model.checkpoint import run_dir_hint

        raise HillclimbError(
            f"checkpoint {p} has no tokenizer.json: RL needs the model's tokenizer to build "
            f"prompts and read answers{run_dir_hint(p)}"
        )
    return p


def _budget_meta(cfg: RLConfig, model_dir: Path) -> dict[str, Any]:
    """`budget_conditioning` for the RL checkpoint's `hillclimb.json`: this run's (it trains on
    the note), or the init's when SFT already made the note a trained input (`hillclimb sft` on
    budget-noted data) and this run does not touch it."""
    if cfg.budget_conditioning:
        return {"budget_conditioning": {"note": BUDGET_NOTE, "fracs": list(cfg.budget_fracs)}}
    from hillclimb.model.checkpoint import read_info

    try:
        prior = read_info(model_dir).get("budget_conditioning")
    except (OSError, HillclimbError):
        prior = None
    return {"budget_conditioning": {**prior, "inherited": True}} if isinstance(prior, dict) else {}


def _run(cfg: RLConfig, out: Path, info: Any, custom_reward: Any = None) -> dict[str, Any]:
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import load_tokenizer
    from hillclimb.train.loop import Trainer, TrainTask
    from hillclimb.train.pretrain import resolve_model_config
    from hillclimb.train.schedule import lr_multiplier

    model_dir = _check_model(cfg.init)
    tok = load_tokenizer(model_dir)
    mcfg = resolve_model_config(cfg, tok)
    cfg.seq_len = min(cfg.seq_len, mcfg.max_seq_len)
    reward_fn = custom_reward or load_reward(cfg.reward, cfg.format_reward)  # fails before work
    h_tasks = None
    h_val: Any = None  # rl.harness.HarnessVal with --harness-val
    if cfg.harness:  # agentic RL: episodes on harness tasks (rl/harness.py)
        from hillclimb.rl.harness import load_tasks, load_val_tasks

        h_tasks = load_tasks(cfg.harness)
        # refused before any work when not held out from every training task (those the
        # untouched check leaves out too: they were still written for training)
        val_tasks = load_val_tasks(cfg.harness_val, h_tasks) if cfg.harness_val else None
        reward_fn = custom_reward or (load_reward(cfg.reward) if cfg.reward else None)
        families = ["harness"]
    else:
        families = list(cfg.families) or default_families(getattr(mcfg, "family", None))
    if not families:
        raise ConfigError("no trainable families for this model; pass --families")
    inputs = rl_inputs(families, h_tasks, model_dir if cfg.kl_beta > 0 else None)
    check_resume_inputs(out, cfg.resume, inputs)
    task = TrainTask(
        stage="rl",
        model_cfg=mcfg,
        tokenizer=tok,
        batches=lambda step: (np.zeros((0, 2), dtype=np.int64), None),
        val_ids=np.zeros((0, 2), dtype=np.int64),
        val_mask=None,
        init_checkpoint=model_dir,
        meta={
            "rl": {"families": families, "tiers": list(cfg.tiers), "loss": cfg.loss_agg},
            # the server renders the same budget note for this model (serve.budget)
            **_budget_meta(cfg, model_dir),
        },
        summary={
            "families": families,
            "data_fingerprint": rl_fingerprint(inputs),
            "rl_inputs": inputs,
        },
    )
    tr = Trainer(cfg, task, out, info)
    if tr.done is not None:
        return _finished_summary(out, tr.done.to_dict())
    cur: Any
    if h_tasks is not None:
        from hillclimb.harness.agent import EpisodeLimits
        from hillclimb.rl.harness import (
            TaskCurriculum,
            collect_episodes,
            drop_resolved_untouched,
            episode_batch,
        )

        invalid_tasks: list[str] = []
        if cfg.check_tasks:  # tasks resolved untouched would reward doing nothing
            h_tasks, invalid_tasks = drop_resolved_untouched(h_tasks, info)
            if invalid_tasks and info.is_main:
                print(
                    f"rl: left out {len(invalid_tasks)} of {len(h_tasks) + len(invalid_tasks)} "
                    f"task(s) that already grade resolved untouched: {', '.join(invalid_tasks)}",
                    flush=True,
                )
        cur = TaskCurriculum(h_tasks, cfg.seed)
        ignored = changed_from_default(cfg, PROBLEM_CURRICULUM)
        if ignored and info.is_main:  # `RLConfig.from_dict` refuses them; built in code: a note
            print(
                f"rl: note: {', '.join(ignored)} (problem curriculum) have no effect with "
                "--harness; tasks are drawn by their group resolve rate",
                file=sys.stderr,
                flush=True,
            )
        evals = problem_evals_set({k: getattr(cfg, k) for k in ("eval_every", "pareto_budgets")})
        if evals and info.is_main:  # as above: `from_dict` refuses them, code gets a note
            print(
                f"rl: note: {', '.join(evals)} (val-split problem evaluations) have no effect "
                "with --harness; no problem curve or Pareto points are recorded"
                + (
                    ""
                    if cfg.harness_val
                    else " (--harness-val DIR records a held-out harness curve)"
                ),
                file=sys.stderr,
                flush=True,
            )
        limits = EpisodeLimits(
            max_steps=cfg.harness_max_steps,
            max_tokens_per_turn=cfg.max_tokens,
            temperature=cfg.temperature,
        )
        if val_tasks:  # the held-out curve (`--harness-val`)
            from hillclimb.rl.harness import HarnessVal

            h_val = HarnessVal(val_tasks, cfg.harness_val_every, limits, cfg, info)
    else:
        cur = Curriculum(
            families,
            list(cfg.tiers),
            start_tier=cfg.start_tier,
            promote_at=cfg.promote_at,
            pool_size=cfg.pool_size,
            seed=cfg.seed,
        )
    cur.load(tr.extra_state.get("curriculum") or {})
    opt_step = int(tr.extra_state.get("opt_step", 0))
    engine = Engine(
        tr.raw,
        tok,
        max_batch=cfg.engine_batch,
        seed=cfg.seed,
        compile=False,
        record_routing=bool(tr.moe_layers),  # agreement is logged with and without replay
        drafter=cfg.drafter,  # model-free drafts: the same tokens and log-probs, faster
    )
    ref_model = None
    if cfg.kl_beta > 0:
        from hillclimb.model.checkpoint import load_model

        ref_model = load_model(model_dir, device=str(info.device)).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    loss = PolicyLoss(
        temperature=cfg.temperature,
        clip_low=cfg.clip_low,
        clip_high=cfg.clip_high,
        agg=cfg.loss_agg,
        kl_beta=cfg.kl_beta,
        real_vocab=tok.vocab_size,
    )
    budgets: dict[tuple[str, int], int] = {}

    def cell_budget(family: str, tier: int) -> int:
        k = (family, tier)
        if k not in budgets:
            b = cfg.max_tokens or cell_max_tokens(tok, cur.pool(family, tier)[:200], 1.5)
            budgets[k] = min(b, engine.max_context - 1)
        return budgets[k]

    def budget(p: Any) -> int:
        return cell_budget(p.family, p.tier)

    def max_len() -> int:
        """dr-grpo's constant normaliser: the largest budget of any cell the run may train on.
        Why not the cells seen so far: which cells a run has touched depends on the val curve
        (`eval_every`, free on resume) and on whether it was resumed, so the loss scale of the
        same step differed between an interrupted and an uninterrupted run."""
        return max(cell_budget(f, t) for f in cur.families for t in cfg.tiers)

    if h_tasks is None and cfg.overlong == "soft":  # refused before any work, not at step 1
        small = [
            f"{f}/t{t} ({cell_budget(f, t)})"
            for f in cur.families
            for t in cfg.tiers
            if cell_budget(f, t) <= cfg.overlong_buffer
        ]
        if small:
            raise ConfigError(
                f"overlong 'soft' needs every cell's token budget above overlong_buffer "
                f"({cfg.overlong_buffer}): {', '.join(small)}; lower --overlong-buffer or set "
                "--max-tokens"
            )

    total_opt = cfg.steps * cfg.epochs * cfg.minibatches
    summary_steps: list[dict[str, Any]] = []
    stopped_early = False
    curve_at: tuple[int, list[Rollout]] | None = None  # the last val curve: (step, rollouts)
    pareto_at: int | None = None
    # val points a resumed run already recorded at its checkpoint's step (stopped after its final
    # evaluation and checkpoint, before `final/` was published): measured again, they would be
    # the same numbers twice in curve.jsonl and in the plots
    logged_curve, logged_pareto = _logged_points(out) if tr.resume_from else (set(), set())
    if h_val is not None:
        from hillclimb.rl.harness import logged_val_steps

        logged_val = logged_val_steps(out) if tr.resume_from else set()
    try:
        problems = h_tasks is None  # the val curve and Pareto points are problem evaluations
        if tr.step == 0 and cfg.eval_every and problems:
            curve_at = (0, _curve(tr, engine, cur, cfg, budget, step=0, log=0 not in logged_curve))
        if tr.step == 0 and h_val is not None:
            h_val.measure(tr, engine, 0, logged_val)
        if tr.step == 0 and cfg.pareto_budgets and problems:
            if 0 not in logged_pareto:
                _pareto(tr, engine, cur, cfg, budget, step=0)
            pareto_at = 0
        while tr.step < cfg.steps:
            step = tr.step
            t0 = time.perf_counter()
            sync = engine.sync_weights()
            t_sync = time.perf_counter() - t0
            if problems:
                groups, stats = _collect(cfg, engine, cur, reward_fn, budget, step, info)
            else:
                groups, stats = collect_episodes(cfg, engine, cur, reward_fn, step, info, limits)
            t_roll, t_rew = stats.pop("rollout_s"), stats.pop("reward_s")
            t1 = time.perf_counter()
            upd: list[dict[str, Any]] = []
            if groups:
                if problems:
                    batch = build_batch(groups, info.world * cfg.minibatches, max_len())
                else:
                    guide = None
                    if cfg.harness_guided_tools:  # the masks the rollouts were drawn under
                        from hillclimb.harness.tools import TOOL_SCHEMAS
                        from hillclimb.rl.guided import GuideTable

                        guide = GuideTable(engine.tool_grammar(TOOL_SCHEMAS))
                    batch = episode_batch(
                        groups, info.world * cfg.minibatches, engine.max_context, guide
                    )
                    loss.guide_table = guide.tensor() if guide is not None else None
                if ref_model is not None:
                    batch["ref_lp"] = _ref_logprobs(ref_model, batch, loss, info)
                tr.raw.train()
                n = batch["ids"].shape[0]
                per_mb = n // cfg.minibatches
                for _ in range(cfg.epochs):
                    for m in range(cfg.minibatches):
                        mb = _slice(batch, np.arange(m * per_mb, (m + 1) * per_mb))
                        if not mb["mask"].any():
                            # only padding (fewer kept rows than minibatches: dynamic sampling
                            # or overlong masking dropped them): no loss token, so no step —
                            # AdamW would still move every weight by its momentum, and the
                            # step's logged loss would average in a 0
                            continue
                        mult = lr_multiplier(
                            opt_step,
                            total_opt,
                            cfg.schedule,
                            cfg.warmup_steps,
                            cfg.min_lr_ratio,
                            cfg.decay_frac,
                        )
                        upd.append(
                            tr.update(
                                mb,
                                loss,
                                mult,
                                update_bias=cfg.update_bias,
                                aux_scale=cfg.aux_scale,
                                replay_routes=cfg.routing_replay,
                            )
                        )
                        opt_step += 1
            t_upd = time.perf_counter() - t1
            tr.step += 1
            tr.tokens_seen += stats["completion_tokens"]
            rec = _step_record(tr, step + 1, stats, upd, sync, t_roll, t_rew, t_upd, t_sync)
            # which length penalty this step's rewards carried (`length_start_step` makes it
            # vary over the run), and its mean per sample
            rec["alp_beta"] = active_alp_beta(cfg, step)
            rec["length_penalty"] = stats.get("length_pen", 0.0) / max(stats["samples"], 1)
            if rec["loss"] is not None:  # a step without an update has no loss
                tr.last_loss = rec["loss"]
            summary_steps.append(rec)
            tr.log.step(rec, True)
            if tr.moe_layers and upd:
                tr.log.routing(tr.step, tr.raw.routing_stats())
            if rec["loss"] is not None and not math.isfinite(rec["loss"]):
                raise HillclimbError(f"RL loss became {rec['loss']} at step {tr.step}; lower --lr")
            moved = cur.promote()
            if moved:
                tr.log.record("curve.jsonl", {"step": tr.step, "unlocked": moved})
            tr.extra_state = {"curriculum": cur.state(), "opt_step": opt_step}
            if (
                problems
                and cfg.eval_every
                and tr.step % cfg.eval_every == 0
                and tr.step < cfg.steps
            ):
                curve_at = (tr.step, _curve(tr, engine, cur, cfg, budget, step=tr.step))
            if h_val is not None and h_val.due(tr.step, cfg.steps):
                h_val.measure(tr, engine, tr.step)
            if cfg.ckpt_every and tr.step % cfg.ckpt_every == 0 and tr.step < cfg.steps:
                tr.save(tr.step)
            if tr.over_time() and tr.step < cfg.steps:
                stopped_early = True
                break
        if cfg.eval_every and problems:
            # the same weights were just measured (a run of 0 steps, or one the time limit
            # stopped right after a curve point): reuse it rather than record it twice
            final_rolls = (
                curve_at[1]
                if curve_at is not None and curve_at[0] == tr.step
                else _curve(
                    tr, engine, cur, cfg, budget, step=tr.step, log=tr.step not in logged_curve
                )
            )
            # how long this policy thinks, unbudgeted, on held-out problems: the server maps
            # reasoning_effort low/medium onto fractions of it (serve.budget)
            prof = thinking_profile(
                [r.reasoning_tokens for r in final_rolls],
                f"hillclimb rl step {tr.step}: val split, greedy, unbudgeted",
            )
            if prof is not None:
                task.meta[PROFILE_KEY] = prof
        if (
            cfg.pareto_budgets
            and problems
            and pareto_at != tr.step
            and tr.step not in logged_pareto
        ):
            _pareto(tr, engine, cur, cfg, budget, step=tr.step)
        if h_val is not None:  # the end point (unless just measured, or logged before a resume)
            h_val.measure(tr, engine, tr.step, logged_val)
        tr.extra_state = {"curriculum": cur.state(), "opt_step": opt_step}
    except BaseException:
        tr.log.close()
        raise
    tr.raw.eval()
    res = tr.finish(stopped_early)
    from hillclimb.train.logging import read_jsonl

    steps = read_jsonl(out / "metrics.jsonl")
    curve = [c for c in read_jsonl(out / "curve.jsonl") if "cells" in c]
    summary = {
        "format": RL_FORMAT,
        "run_dir": str(out),
        "final_dir": res.final_dir,
        "init": str(model_dir),
        "steps": res.steps,
        "families": families,
        "config": cfg.to_dict(),
        "curriculum": cur.state(),
        **_ends(steps),
        "curve": curve,
        "pareto": [c for c in read_jsonl(out / "curve.jsonl") if "pareto" in c],
        "elapsed_s": res.elapsed_s,
        "rollout_tokens_per_s": (
            sum(s["completion_tokens"] for s in steps)
            / max(sum(s["time"]["rollout_s"] for s in steps), 1e-9)
            if steps
            else 0.0
        ),
        "sync_share": (
            sum(s["time"]["sync_s"] for s in steps)
            / max(sum(s["time"]["total_s"] for s in steps), 1e-9)
            if steps
            else 0.0
        ),
        "stopped_early": stopped_early,
    }
    if h_tasks is not None:
        from hillclimb.rl.harness import VAL_KEY

        summary["invalid_tasks"] = invalid_tasks
        summary["curriculum_pools"] = cur.pools()
        summary[VAL_KEY] = [
            {"step": c["step"], **c[VAL_KEY]}
            for c in read_jsonl(out / "curve.jsonl")
            if isinstance(c, dict) and VAL_KEY in c
        ]
    if info.is_main:
        write_json_atomic(out / "rl.json", summary)
    return summary


def _finished_summary(out: Path, done: dict[str, Any]) -> dict[str, Any]:
    """The summary of a run that had already finished (`--resume` on it): its `rl.json`, with
    the paths of where the run is NOW — a run moved or copied since pointed `run_dir` at its old
    place, and `hillclimb rl` then wrote report.md there (into another run, or a directory it
    created). An unreadable `rl.json` (hand-edited, cut short) falls back to the trainer's
    record of the finished run instead of a JSON traceback."""
    import sys

    prev = out / "rl.json"
    res: Any = None
    if prev.is_file():
        try:
            res = json.loads(prev.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"warning: {prev} is unreadable ({exc}); using the checkpoint's record",
                  file=sys.stderr)  # fmt: skip
    if not isinstance(res, dict):
        from hillclimb.train.logging import read_jsonl

        steps = read_jsonl(out / "metrics.jsonl")
        res = {**done, **_ends(steps)}
    return {**res, "run_dir": str(out), "final_dir": str(out / "final")}


def _collect(
    cfg: RLConfig,
    engine: Any,
    cur: Curriculum,
    reward_fn: Any,
    budget: Any,
    step: int,
    info: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rollouts → rewards → groups with advantages, refilling groups that dynamic sampling drops."""
    groups: list[dict[str, Any]] = []
    st = step_stats()
    for rnd in range(cfg.refill_rounds + 1):
        need = cfg.prompts_per_step - len(groups)
        if need <= 0 or (rnd > 0 and not cfg.dynamic_sampling):
            break
        probs = cur.draw(step, need if rnd else cfg.prompts_per_step, rnd)
        t0 = time.perf_counter()
        mine = [p for i, p in enumerate(probs) if i % info.world == info.rank]
        reps = [k for i, k in enumerate(repeat_index(probs)) if i % info.world == info.rank]
        think = None
        if cfg.budget_conditioning:  # one budget per prompt, shared by its group
            fracs = [_pick(cfg.budget_fracs, cfg.seed, step, rnd, p.id) for p in mine]
            think = [
                max(1, round(budget(p) * f)) if f > 0 else None
                for p, f in zip(mine, fracs, strict=True)
            ]
        rolls = rollout_and_check(
            engine,
            mine,
            n=cfg.group_size,
            max_tokens=[budget(p) for p in mine],
            temperature=cfg.temperature,
            seed=derive_seed("rl-rollout", cfg.seed, step, rnd) >> 1,
            batch_size=cfg.engine_batch,
            logprobs=True,
            think_budgets=think,
            repeats=reps,
        )
        t1 = time.perf_counter()
        # scored here, by the rank that rolled them out: see `gather_groups`
        raws = [score(reward_fn, r) for r in rolls]
        st["reward_s"] += time.perf_counter() - t1
        t2 = time.perf_counter()
        rolls, raws = gather_groups(info, rolls, raws, len(probs), cfg.group_size)
        st["rollout_s"] += t1 - t0 + time.perf_counter() - t2
        t1 = time.perf_counter()
        for gi in range(len(probs)):
            g = rolls[gi * cfg.group_size : (gi + 1) * cfg.group_size]
            raw = raws[gi * cfg.group_size : (gi + 1) * cfg.group_size]
            group = problem_group(cfg, st, g, raw, budget(g[0].problem), step)
            cur.observe(g[0].problem, group.pop("solve_rate"))
            if group["adv"] is not None:
                groups.append(group)
        st["reward_s"] += time.perf_counter() - t1
    st["groups"] = len(groups)
    return groups, st


def active_alp_beta(cfg: RLConfig, step: int) -> float:
    """ALP's β at (0-based) RL `step`: 0 before `length_start_step` — the length penalty
    switches on once accuracy is established — and without `length_penalty` "alp"."""
    on = cfg.length_penalty == "alp" and step >= cfg.length_start_step
    return cfg.alp_beta if on else 0.0


def problem_group(
    cfg: RLConfig, st: dict[str, Any], g: list[Rollout], raw: list[float], budget: int, step: int
) -> dict[str, Any]:
    """One problem's group: shaped rewards (`shape_group`), counted into the step's stats and
    turned into advantages (`tally_group`, with ALP's penalty outside the std normalisation).
    Returns `rollouts`, `adv` (None: dynamic sampling dropped it), `keep` and `solve_rate`."""
    alp = active_alp_beta(cfg, step)
    shaped, keep, info_g = shape_group(
        g,
        raw,
        budget=budget,
        overlong=cfg.overlong,
        overlong_buffer=cfg.overlong_buffer,
        alp_beta=alp,
        budget_beta=cfg.budget_beta if cfg.budget_conditioning else 0.0,
    )
    adv = tally_group(
        st,
        f"{g[0].problem.family}/{g[0].problem.tier}",
        [r.passed for r in g],
        [r.truncated for r in g],
        [r.completion_tokens for r in g],
        raw,
        shaped,
        dynamic_sampling=cfg.dynamic_sampling,
        std_norm=cfg.std_norm,
        length_pen=info_g["alp"],
    )
    return {"rollouts": g, "adv": adv, "keep": keep, "solve_rate": info_g["solve_rate"]}


@torch.no_grad()
def _ref_logprobs(
    model: Any, batch: dict[str, np.ndarray], loss: PolicyLoss, info: Any
) -> np.ndarray:
    """log π_ref of every target token (the same computation as the policy's, frozen weights)."""
    out = np.zeros_like(batch["old_lp"])
    ids = torch.from_numpy(batch["ids"]).to(info.device)
    valid = torch.from_numpy(batch["valid"]).to(info.device)
    gidx = batch.get("gidx")
    g = None if gidx is None else torch.from_numpy(gidx).to(info.device)
    for s in range(0, ids.shape[0], 8):
        x = ids[s : s + 8]
        logits = model(x[:, :-1], attention_mask=valid[s : s + 8, :-1])
        gs = None if g is None else g[s : s + 8]
        out[s : s + 8, 1:] = loss.token_logp(logits, x, gs).cpu().numpy()
    return out


def _step_record(
    tr: Any,
    step: int,
    st: dict[str, Any],
    upd: list[dict[str, Any]],
    sync: dict[str, Any],
    t_roll: float,
    t_rew: float,
    t_upd: float,
    t_sync: float,
) -> dict[str, Any]:
    n = max(st["samples"], 1)
    first = upd[0]["sums"] if upd else {}
    toks = sum(u["sums"].get("loss_tokens", 0.0) for u in upd)
    clipped = sum(u["sums"].get("clipped_tokens", 0.0) for u in upd)
    total = t_roll + t_rew + t_upd + t_sync
    # A step whose groups were all dropped (equal rewards under dynamic sampling, or only
    # padding) makes no optimizer step: its loss, aux, lr and grad norm are null, not 0.0 (a
    # learning rate of zero and a perfect loss that plots and run comparisons read as real).
    rec = {
        "step": step,
        "updates": len(upd),
        "loss": float(np.mean([u["sums"].get("pg_loss", 0.0) / u["denominator"] for u in upd]))
        if upd
        else None,
        "aux": float(np.mean([u["aux"] for u in upd])) if upd else None,
        "lr": upd[-1]["lr"] if upd else None,
        "grad_norm": float(np.mean([u["grad_norm"] for u in upd])) if upd else None,
        "tokens": tr.tokens_seen,
        "tok_s": st["completion_tokens"] / max(t_roll, 1e-9),
        "balance": upd[-1]["balance"] if upd else None,
        "elapsed_s": time.perf_counter() - tr.t_start,
        "reward": st["reward_sum"] / n,
        "pass_rate": st["passed"] / n,
        "truncated_share": st["truncated"] / n,
        "completion_tokens": st["completion_tokens"],
        "mean_tokens": st["completion_tokens"] / n,
        "tokens_per_correct": st["correct_tokens"] / st["passed"] if st["passed"] else None,
        "groups": st["groups"],
        "dropped_groups": st["dropped"],
        "by_cell": {k: v[0] / v[1] for k, v in st["by_cell"].items()},
        "clip_frac": clipped / toks if toks else 0.0,
        "logp_gap": first.get("abs_logp_gap", 0.0) / max(first.get("loss_tokens", 0.0), 1.0),
        # share of tokens whose training top-k equals the rollout's, at the first update (same
        # weights as the rollout) and the last (after this step's earlier updates)
        "router_agreement": _agreement(upd[0]) if upd else None,
        "router_agreement_last": _agreement(upd[-1]) if upd else None,
        "kl": sum(u["sums"].get("kl_sum", 0.0) for u in upd) / toks if toks else 0.0,
        "sync_in_place": sync.get("in_place", True),
        # agentic steps: episodes, episodes per minute of rollout, and the episodes' own time
        # split (summed over concurrent episodes, so it can exceed the rollout's wall time)
        **(
            {
                "harness": {
                    **st["harness"],
                    "episodes_per_min": 60 * st["harness"]["episodes"] / max(t_roll, 1e-9),
                }
            }
            if "harness" in st
            else {}
        ),
        "time": {
            "rollout_s": t_roll,
            "reward_s": t_rew,
            "update_s": t_upd,
            "sync_s": t_sync,
            "total_s": total,
        },
    }
    rec["info"] = (
        f"reward {rec['reward']:.2f} | pass {rec['pass_rate']:.0%} | {rec['mean_tokens']:.0f} tok "
        f"| groups {rec['groups']}"
        + (
            f" kept, {rec['dropped_groups']} dropped (every sample the same reward)"
            if rec["dropped_groups"]
            else ""
        )
        + f" | gap {rec['logp_gap']:.1e}"
    )
    return rec


def _agreement(u: dict[str, Any]) -> float | None:
    n = u["sums"].get("route_tokens", 0.0)
    return u["sums"].get("route_agree", 0.0) / n if n else None


def _pick(choices: list[float], *parts: object) -> float:
    return choices[derive_seed("rl-budget", *parts) % len(choices)]


VAL_BASELINE_TRAIN_N = 500  # as `hillclimb eval`'s default `--baseline-train-n`


@functools.lru_cache(maxsize=4)
def _val_baselines(
    families: tuple[str, ...], tiers: tuple[int, ...], n: int, seed: int
) -> dict[str, float | None]:
    """The no-training baseline (best of lookup / majority / chance over `VAL_BASELINE_TRAIN_N`
    training items, `problems.baselines`) of each val cell the curve measures, computed once."""
    from hillclimb import problems as P
    from hillclimb.problems.baselines import cell_baselines, summarise

    out: dict[str, float | None] = {}
    for f in families:
        for t in tiers:
            items = P.generate(f, t, n, seed, "val")
            train = (
                []
                if f in P.HELDOUT_FAMILIES
                else P.generate(f, t, VAL_BASELINE_TRAIN_N, seed, "train")
            )
            out[f"{f}/{t}"] = summarise(cell_baselines(items, train)).best
    return out


def _val_problems(cur: Curriculum, cfg: RLConfig) -> list[Any]:
    from hillclimb import problems as P

    return [
        p
        for f in cur.families
        for t in cfg.tiers
        for p in P.generate(f, t, cfg.eval_n_per_tier, cfg.seed, "val")
    ]


def _pareto(tr: Any, engine: Any, cur: Curriculum, cfg: RLConfig, budget: Any, step: int) -> None:
    """Greedy val accuracy and tokens at each forced thinking budget (the engine closes the
    think block when the budget is spent, as the server does; a budget-conditioned policy also
    gets the budget note): one point per budget for the accuracy-vs-tokens (Pareto) plot."""
    probs = _val_problems(cur, cfg)
    engine.sync_weights()
    points = []
    for b in sorted(cfg.pareto_budgets):
        rolls = rollout_and_check(
            engine,
            probs,
            n=1,
            max_tokens=[budget(p) for p in probs],
            temperature=0.0,
            think_budgets=[b] * len(probs),
            budget_note=cfg.budget_conditioning,
            force_budgets=[b] * len(probs),
        )
        n = max(1, len(rolls))
        points.append(
            {
                "budget": b,
                "accuracy": sum(r.passed for r in rolls) / n,
                "mean_tokens": sum(r.completion_tokens for r in rolls) / n,
                "mean_reasoning_tokens": sum(r.reasoning_tokens for r in rolls) / n,
            }
        )
    tr.log.record(
        "curve.jsonl",
        {"step": step, "split": "val", "pareto": points},
        line=f"step {step} val accuracy at thinking budgets "
        + ", ".join(
            f"{p['budget']}: {p['accuracy']:.0%} ({p['mean_tokens']:.0f} tok)" for p in points
        ),
    )


def _logged_points(out: Path) -> tuple[set[int], set[int]]:
    """Steps with a val-curve point and steps with Pareto points in `out`'s curve.jsonl."""
    from hillclimb.train.logging import read_jsonl

    recs = [r for r in read_jsonl(out / "curve.jsonl") if isinstance(r, dict)]
    return (
        {r.get("step") for r in recs if "cells" in r},
        {r.get("step") for r in recs if "pareto" in r},
    )


def _curve(
    tr: Any,
    engine: Any,
    cur: Curriculum,
    cfg: RLConfig,
    budget: Any,
    step: int,
    log: bool = True,
) -> list[Rollout]:
    """Greedy pass rate on the val split per family x tier: the climbing curve (returns the
    rollouts it measured; `log=False`: a point already recorded, measured again only for its
    rollouts)."""
    probs = _val_problems(cur, cfg)
    engine.sync_weights()
    rolls = rollout_and_check(
        engine, probs, n=1, max_tokens=[budget(p) for p in probs], temperature=0.0
    )
    cells: dict[str, dict[str, Any]] = {}
    for r in rolls:
        c = cells.setdefault(
            f"{r.problem.family}/{r.problem.tier}",
            {"n": 0, "correct": 0, "tokens": 0, "correct_tokens": 0, "truncated": 0},
        )
        c["n"] += 1
        c["correct"] += int(r.passed)
        c["tokens"] += r.completion_tokens
        c["correct_tokens"] += r.completion_tokens if r.passed else 0
        c["truncated"] += int(r.truncated)
    base = _val_baselines(tuple(cur.families), tuple(cfg.tiers), cfg.eval_n_per_tier, cfg.seed)
    for k, c in cells.items():
        c["accuracy"] = c["correct"] / c["n"]
        c["tokens_per_correct"] = c["correct_tokens"] / c["correct"] if c["correct"] else None
        c["baseline"] = base.get(k)
    acc = sum(r.passed for r in rolls) / max(1, len(rolls))
    if not log:
        return rolls
    tr.log.record(
        "curve.jsonl",
        {
            "step": step,
            "split": "val",
            "accuracy": acc,
            "mean_tokens": sum(r.completion_tokens for r in rolls) / max(1, len(rolls)),
            "cells": cells,
        },
        line=f"step {step} val pass rate {acc:.1%} ({len(rolls)} problems, greedy)",
    )
    return rolls


def _ends(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`first` / `last`: the means of the first and the last up to 3 steps, never the same step
    twice. Why: with 3 windows of 3 over a run of 2-5 steps they overlapped (over 2 steps they
    were the same two steps), so a pass rate that went from 12% to 0% read "6% → 6%"."""
    k = max(1, min(3, len(steps) // 2))
    return {"first": _headline(steps[:k]), "last": _headline(steps[-k:])}


def _headline(steps: list[dict[str, Any]]) -> dict[str, Any]:
    if not steps:
        return {}
    keys = ("reward", "pass_rate", "mean_tokens", "logp_gap")
    return {k: float(np.mean([s[k] for s in steps])) for k in keys}
