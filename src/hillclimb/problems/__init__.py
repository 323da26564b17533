"""Verifiable problem generators: reasoning and coding tasks with worked solutions by our code.

This is how the project keeps the "no distillation" rule: every prompt, worked solution, answer
and test here is produced by the templates and algorithms in this package — nothing comes from
a model. The same problems feed pre-training documents (`to_document`), SFT chat examples
(`to_messages`), held-out evaluation per family and tier (`problem_suite`, `check_many`) and RL
with verifiable rewards (`check`).

Families: `arith`, `arith_chain`, `word_problem`, `logic` (reasoning; answer checked by
normalised exact match), `code_function`, `code_bugfix` (code; checked by running the tests in
the sandbox) and the held-out families `sequence` and `competition` (AIME-style counting and
number theory: the hard reasoning tier; never trained on). Tiers 1..4 grow steps and sizes; tier
1 is deliberately tiny. Splits (`base.SPLITS`) are decided by the underlying problem,
not its wording: `train`, `val` (tuning), `heldout` (new problems) and `heldout_phrasing` (the same
new problems in wordings no training item uses). See docs/areas/problems.md.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.problems import (
    arith,
    arith_chain,
    code_bugfix,
    code_function,
    competition,
    logic,
    sequence,
    word_problem,
)
from hillclimb.problems.base import SPLITS, TIERS, Problem, check_split, generate_from, key_bucket
from hillclimb.problems.render import to_document, to_messages
from hillclimb.problems.verify import (
    check,
    check_many,
    check_many_details,
    extract_answer,
    final_content,
)

_MODULES: dict[str, ModuleType] = {
    "arith": arith,
    "arith_chain": arith_chain,
    "word_problem": word_problem,
    "logic": logic,
    "code_function": code_function,
    "code_bugfix": code_bugfix,
    "sequence": sequence,
    "competition": competition,
}

FAMILIES: dict[str, str] = {name: mod.KIND for name, mod in _MODULES.items()}
# Families that are only ever evaluated: no train or val split exists for them.
HELDOUT_FAMILIES: tuple[str, ...] = ("sequence", "competition")
TRAIN_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f not in HELDOUT_FAMILIES)
# The evaluation splits, in report order.
EVAL_SPLITS: tuple[str, ...] = ("heldout", "heldout_phrasing")


def _module(family: str) -> ModuleType:
    try:
        return _MODULES[family]
    except KeyError:
        raise HillclimbError(
            f"unknown problem family {family!r}; families are {sorted(_MODULES)}"
        ) from None


def generate(family: str, tier: int, n: int, seed: int, split: str = "train") -> list[Problem]:
    """n problems of one family and tier; a pure function of its arguments.

    Train prompts are unique within the call until the tier's space is exhausted, after which
    repeats fill the list up to n; evaluation splits hold each underlying problem once and may
    return fewer than n items from a small tier (tier 1 arithmetic). A held-out family has
    no `train` or `val` split: asking for one is an error, so it cannot leak into training.
    """
    mod = _module(family)
    check_split(split)
    if family in HELDOUT_FAMILIES and split in ("train", "val"):
        raise HillclimbError(
            f"{family!r} is a held-out family (evaluation only): it has no {split!r} split"
        )
    return generate_from(family, mod.KIND, mod.sample, tier, n, seed, split)


def problem_suite(
    seed: int = 0,
    split: str = "heldout",
    n_per_tier: int = 20,
    families: list[str] | None = None,
    tiers: tuple[int, ...] | list[int] | None = None,
) -> list[Problem]:
    """An evaluation suite: n_per_tier problems for every family x tier (held-out by default).

    Without `families`, train/val suites cover the trainable families and held-out suites all.
    A family or tier named twice is refused: its items would be in the suite twice (an exported
    evaluation set, a routing fit), counted as more evidence than there is."""
    for name, values in (("families", families or []), ("tiers", tiers or [])):
        dup = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if dup:
            raise HillclimbError(f"{name} lists {dup} more than once")
    out: list[Problem] = []
    default = list(TRAIN_FAMILIES) if split in ("train", "val") else list(FAMILIES)
    for family in families or default:
        for tier in tiers or TIERS:
            out.extend(generate(family, tier, n_per_tier, seed, split))
    return out


def contamination_probes(
    seeds: tuple[int, ...] | list[int] = (0,),
    n_per_tier: int = 50,
    families: list[str] | None = None,
    splits: tuple[str, ...] = ("val", "heldout", "heldout_phrasing"),
) -> list[dict[str, Any]]:
    """Texts of evaluation items that must never appear in training data (for decontamination).

    One record per item of every non-train split, seed, family and tier: `{"id", "family",
    "split", "texts"}`, where `texts` are the prompt, the worked solution with its final answer,
    and for code the reference source and the tests. A data build drops documents that share long
    n-grams with any of them; the generators themselves never emit these items for training."""
    out: list[dict[str, Any]] = []
    for family in families or list(FAMILIES):
        for split in splits:
            if family in HELDOUT_FAMILIES and split == "val":
                continue
            for seed in seeds:
                for tier in TIERS:
                    for p in generate(family, tier, n_per_tier, seed, split):
                        texts = [p.prompt, f"{p.reasoning}\n{final_content(p)}"]
                        if p.kind == "code":
                            texts.append(p.answer)
                            if p.tests:
                                texts.append(p.tests)
                        out.append({"id": p.id, "family": family, "split": split, "texts": texts})
    return out


def describe(seed: int = 0, samples: int = 1) -> dict[str, Any]:
    """Families, kinds, tiers with a one-line summary and sample prompts (for docs and CLI)."""
    out: dict[str, Any] = {}
    for family, mod in _MODULES.items():
        tiers = {}
        for tier in TIERS:
            split = "heldout" if family in HELDOUT_FAMILIES else "train"
            ps = generate(family, tier, samples, seed, split)
            tiers[tier] = {
                "summary": mod.TIER_SUMMARY[tier],
                "samples": [
                    {"prompt": p.prompt, "reasoning": p.reasoning, "final": final_content(p)}
                    for p in ps
                ],
            }
        out[family] = {
            "kind": mod.KIND,
            "heldout_family": family in HELDOUT_FAMILIES,
            "tiers": tiers,
        }
    return out


__all__ = [
    "EVAL_SPLITS",
    "FAMILIES",
    "HELDOUT_FAMILIES",
    "TRAIN_FAMILIES",
    "SPLITS",
    "TIERS",
    "Problem",
    "check",
    "check_many",
    "check_many_details",
    "contamination_probes",
    "describe",
    "extract_answer",
    "final_content",
    "generate",
    "key_bucket",
    "problem_suite",
    "to_document",
    "to_messages",
]
