"""The problems suite — `hillclimb eval --model CKPT|URL --suite problems`: reasoning and code
from our own generators on the held-out split, for a checkpoint *or any OpenAI-compatible URL*.

Why a suite when `hillclimb eval --model CKPT` already scores the same families: that path
drives our engine directly (token ids in, token ids out) and cannot score a model behind a URL —
our server, vLLM, a hosted model. Here the same items (`problems.problem_suite`: new problems,
the same problems in new wording, held-out families), the same per-cell `max_tokens` rule, the
same checker (`problems.check_many_details`) and the same baselines go through a `Backend`
(`eval.backends`): one user turn per problem, the answer is the message content after any think
block. Table layout, baselines and item records are `eval.tasks.evaluate_tasks`'s; this module
only supplies the rollouts and wraps the result in the suite envelope (bootstrap intervals per
split and per kind, truncated share, items for the registry).

What it does not do: a checkpoint through this suite goes through the chat form of the backend
(`EngineBackend.chat`: the same chat template and sampling as `hillclimb eval`), so greedy
answers match the default eval's up to the per-sample seeds of sampled pass@k.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hillclimb.eval.backends import Backend, Request
from hillclimb.eval.suite_common import SuiteConfig, metric

DEFAULT_N_PER_TIER = 20


def backend_rollouts(backend: Backend, check_timeout_s: float = 10.0) -> Any:
    """A `rollout_and_check`-shaped callable that asks `backend` (chat form) instead of an
    engine; each answer is checked exactly as an engine rollout is."""
    from hillclimb.problems import check_many_details
    from hillclimb.rl.rollout import Rollout, sample_seed

    def run(
        problems: list[Any],
        *,
        n: int = 1,
        max_tokens: int | list[int] = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 32,  # noqa: ARG001 (the backend batches itself)
    ) -> list[Rollout]:
        caps = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(problems)
        asked = [(p, i) for p in problems for i in range(n)]  # problem-major, as an engine's
        reqs = [
            Request(
                item_id=p.id,
                prompt=p.prompt,
                sample=i,
                max_tokens=int(cap),
                temperature=temperature,
                top_p=top_p,
                seed=sample_seed(seed, p.id, i),
            )
            for p, cap in zip(problems, caps, strict=True)
            for i in range(n)
        ]
        comps = backend.chat(reqs)
        out = []
        for (p, i), c in zip(asked, comps, strict=True):
            think = f"<think>\n{c.reasoning_text}\n</think>\n\n" if c.reasoning_text else ""
            out.append(
                Rollout(
                    problem=p,
                    sample=i,
                    prompt_ids=[],
                    text=think + c.text,
                    reasoning_text=c.reasoning_text,
                    content_text=c.text,
                    finish_reason=c.finish_reason,
                    completion_tokens=c.completion_tokens,
                )
            )
        ran = [r for r in out if r.finish_reason != "prompt_too_long"]
        details = check_many_details(
            [r.problem for r in ran], [r.text for r in ran], timeout_s=check_timeout_s
        )
        for r, d in zip(ran, details, strict=True):
            r.passed, r.status, r.detail = bool(d["passed"]), d["status"], d.get("detail", "")
            if not r.passed and r.truncated:
                r.status = "truncated"
        return out

    return run


class CountedTokens:
    """A tokenizer stand-in for the per-cell `max_tokens` rule over a URL: `encode(text)` has the
    length the backend counted for `text` (`Backend.count_tokens`: the served model's own
    tokens), else the text's UTF-8 bytes (an upper bound on a byte-level BPE's tokens).

    Why: `eval.tasks` sizes each cell's budget from its reference solutions in the model's
    tokens; a URL had no tokenizer and got the byte bound — for our tiny tokenizer 2-3x the
    tokens (arith tier 1: 96 instead of 48, code tier 2: 544 instead of 168) — so the same
    checkpoint through `hillclimb serve` ran under other budgets than in-process, with the same
    recorded settings. `prefetch` counts the texts the rule will ask for in one concurrent
    pass; `rule` says which count the budgets came from (kept in the result)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.counts: dict[str, int] = {}
        self.rule = "utf-8 bytes of the reference solutions (no token counts from this server)"

    def prefetch(self, problems: list[Any]) -> None:
        from hillclimb.rl.rollout import reference_tokens

        class _Texts:  # records the texts the budget rule encodes, in its own format
            def __init__(self) -> None:
                self.seen: list[str] = []

            def encode(self, text: str) -> list[int]:
                self.seen.append(text)
                return []

        rec = _Texts()
        for p in problems:
            reference_tokens(rec, p)
        texts = list(dict.fromkeys(rec.seen))
        count = getattr(self.backend, "count_tokens", None)
        counts = count(texts) if count is not None and texts else None
        if counts is not None and len(counts) == len(texts):
            self.counts.update(zip(texts, counts, strict=True))
            self.rule = "reference solutions in the served model's tokens (usage.prompt_tokens)"

    def encode(self, text: str) -> list[int]:
        return [0] * self.counts.get(text, len(text.encode()))


def plan_line(items: list[Any], cfg: SuiteConfig, n_per_cell: int) -> str:
    """How many items the run asks, and why that many: `--n-items` counts per family × tier ×
    split, not in total (`--n-items 20` is 1,242 items by default), so the number is said
    before the first is asked. A cell's pool can be smaller than `--n-items` (hence "up to")."""
    fams = len({p.family for p in items})
    tiers = len({p.tier for p in items})
    splits = len({p.split for p in items})
    line = (
        f"problems suite: {len(items)} items: up to {n_per_cell} per family × tier × split "
        f"({fams} families, {tiers} tiers, {splits} splits)"
    )
    if cfg.limit is not None and cfg.limit < len(items):
        line += f"; --limit {cfg.limit} asks the first {cfg.limit}"
    return line


def pooled_baseline(
    items: list[dict[str, Any]], best: dict[tuple[str, str, int], float | None]
) -> float | None:
    """The no-training baseline of an accuracy over `items`: each item's cell's best baseline
    (`best`, keyed by split, family, tier), averaged over the items.

    Why per metric: only the per-split accuracies had one, so the per-kind rows (reasoning, code,
    held-out families) printed without the number that says whether they beat guessing."""
    vals = [best.get((i["split"], i["family"], i["tier"])) for i in items]
    return round(sum(v or 0.0 for v in vals) / len(vals), 4) if vals else None


def run_problems(
    backend: Backend, cfg: SuiteConfig, announce: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The suite's result; `announce` is told the plan line (`plan_line`) before any item runs."""
    from hillclimb import problems as P
    from hillclimb.eval.tasks import TaskEvalConfig, evaluate_tasks

    tcfg = TaskEvalConfig(
        n_per_tier=cfg.n_items or DEFAULT_N_PER_TIER,
        families=list(cfg.families) if cfg.families else None,
        tiers=list(cfg.tiers) if cfg.tiers else None,
        splits=list(cfg.splits),
        seed=cfg.seed,
        max_tokens=cfg.max_tokens,
        samples_per_item=cfg.samples_per_item,
        pass_k=list(cfg.pass_k),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
    )
    engine = getattr(backend, "engine", None)
    counted = CountedTokens(backend) if engine is None else None
    budget_rule = (
        counted.rule if counted is not None else "reference solutions in the model's tokens"
    )

    def on_items(ps: list[Any]) -> None:
        if announce is not None:
            announce(plan_line(ps, cfg, tcfg.n_per_tier))
        if counted is not None and cfg.max_tokens is None:  # the budgets need the counts
            counted.prefetch(ps)

    res = evaluate_tasks(
        None,
        tcfg,
        rollout=backend_rollouts(backend, cfg.timeout_s),
        tokenizer=engine.tokenizer if engine is not None else counted,
        on_items=on_items,
        limit=cfg.limit,  # only the kept items are asked (all were, and the rest thrown away)
    )
    if counted is not None:
        budget_rule = counted.rule
        if not counted.counts:  # byte bounds are no token counts: none, as before
            for c in res["cells"]:
                c["reference_tokens"] = None
    if cfg.max_tokens is not None:
        budget_rule = f"fixed --max-tokens {cfg.max_tokens}"
    # one record per (split, problem): a problem may keep its prompt in both evaluation splits
    items = [{**i, "id": f"{i['split']}/{i['id']}"} for i in res["items"]]
    metrics: dict[str, Any] = {}
    # the no-training baseline of every accuracy, over the very items it counts (`pooled_baseline`)
    best = {(c["split"], c["family"], c["tier"]): c["baseline"].get("best") for c in res["cells"]}
    baseline: dict[str, Any] = {
        "what": "the best of lookup / majority / chance per family × tier, over the same items"
    }
    salt = 0
    for split in tcfg.splits:
        sel = [i for i in items if i["split"] == split]
        if not sel:  # --limit cut the split away: no accuracy rather than 0.0 over no items
            continue
        metrics[f"accuracy/{split}"] = metric([float(i["passed"]) for i in sel], cfg, salt=salt)
        baseline[f"accuracy/{split}"] = pooled_baseline(sel, best)
        salt += 1
        for kind, label in (("reasoning", "reasoning"), ("code", "code"), (None, "heldout_family")):
            part = [
                i
                for i in sel
                if (
                    i["family"] in P.HELDOUT_FAMILIES
                    if kind is None
                    else P.FAMILIES[i["family"]] == kind and i["family"] not in P.HELDOUT_FAMILIES
                )
            ]
            if part:
                metrics[f"accuracy/{split}/{label}"] = metric(
                    [float(i["passed"]) for i in part], cfg, salt=salt
                )
                baseline[f"accuracy/{split}/{label}"] = pooled_baseline(part, best)
                salt += 1
    # each split without the items a training item would get right (`SEEN_FLAGS`: word problems
    # of training arithmetic, code items a training function passes), beside the plain accuracy;
    # only where the split's items were checked for that flag
    from hillclimb.problems.baselines import SEEN_FLAGS

    for split in tcfg.splits:
        sel = [i for i in items if i["split"] == split]
        for g in SEEN_FLAGS:
            if not any(g.meta_key in i for i in sel):
                continue
            part = [i for i in sel if not i.get(g.meta_key)]
            if part:
                key = f"accuracy/{split}/{g.split_key}"
                metrics[key] = metric([float(i["passed"]) for i in part], cfg, salt=salt)
                baseline[key] = pooled_baseline(part, best)
                salt += 1
    # the no-training baseline beside every accuracy: the best of lookup / majority / chance per
    # cell, pooled over the split's cells by the number of items the accuracy counts in each (with
    # --limit, the kept items: a baseline over other items than the accuracy's is no comparison)
    from collections import Counter

    kept = Counter((i["split"], i["family"], i["tier"]) for i in items)
    baselines = {}
    for split in res["splits"]:
        cells = [c for c in res["cells"] if c["split"] == split]
        w = [kept[(split, c["family"], c["tier"])] for c in cells]
        n = sum(w)
        best = sum((c["baseline"].get("best") or 0.0) * k for c, k in zip(cells, w, strict=True))
        baselines[split] = round(best / n, 4) if n else None
    return {
        "n_items": len(items),
        # how each cell's `max_tokens` (in `cells`) was sized: two results are like for like
        # only under the same rule
        "max_tokens_rule": budget_rule,
        "metrics": metrics,
        "baselines": baselines,
        "baseline": baseline,
        "cells": res["cells"],
        "truncated_share": res["truncated_share"],
        "finish_reasons": res["finish_reasons"],
        "n_generations": len(res["items"]),
        "mean_completion_tokens": res["mean_completion_tokens"],
        "samples": res["samples"],
        "items": items,
    }
