"""Verifiable problem generators: reasoning and coding tasks with worked solutions by our code.

This is how the project keeps the "no distillation" rule: every prompt, worked solution, answer
and test here is produced by the templates and algorithms in this package — nothing comes from
a model. The same problems feed pre-training documents (`to_document`), SFT chat examples
(`to_messages`), held-out evaluation per family and tier (`problem_suite`, `check_many`) and RL
with verifiable rewards (`check`).

Families: `arith`, `arith_chain`, `word_problem`, `logic` (reasoning; answer checked by
normalised exact match) and `code_function`, `code_bugfix` (code; checked by running the tests in
the sandbox). Tiers 1..4 grow steps and sizes; tier 1 is deliberately tiny. Train and held-out are
disjoint by construction (a 10% hash bucket of the prompt). See docs/areas/problems.md.
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
    logic,
    word_problem,
)
from hillclimb.problems.base import SPLITS, TIERS, Problem, generate_from, is_heldout
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
}

FAMILIES: dict[str, str] = {name: mod.KIND for name, mod in _MODULES.items()}


def _module(family: str) -> ModuleType:
    try:
        return _MODULES[family]
    except KeyError:
        raise HillclimbError(
            f"unknown problem family {family!r}; families are {sorted(_MODULES)}"
        ) from None


def generate(family: str, tier: int, n: int, seed: int, split: str = "train") -> list[Problem]:
    """n problems of one family and tier; a pure function of its arguments.

    Prompts are unique within the call until the tier's space is exhausted (tier-1 `arith` has
    155 facts x 6 phrasings), after which repeats fill the list up to n.
    """
    mod = _module(family)
    return generate_from(family, mod.KIND, mod.sample, tier, n, seed, split)


def problem_suite(
    seed: int = 0,
    split: str = "heldout",
    n_per_tier: int = 20,
    families: list[str] | None = None,
    tiers: tuple[int, ...] | list[int] | None = None,
) -> list[Problem]:
    """An evaluation suite: n_per_tier problems for every family x tier (held-out by default)."""
    out: list[Problem] = []
    for family in families or list(FAMILIES):
        for tier in tiers or TIERS:
            out.extend(generate(family, tier, n_per_tier, seed, split))
    return out


def describe(seed: int = 0, samples: int = 1) -> dict[str, Any]:
    """Families, kinds, tiers with a one-line summary and sample prompts (for docs and CLI)."""
    out: dict[str, Any] = {}
    for family, mod in _MODULES.items():
        tiers = {}
        for tier in TIERS:
            ps = generate(family, tier, samples, seed)
            tiers[tier] = {
                "summary": mod.TIER_SUMMARY[tier],
                "samples": [
                    {"prompt": p.prompt, "reasoning": p.reasoning, "final": final_content(p)}
                    for p in ps
                ],
            }
        out[family] = {"kind": mod.KIND, "tiers": tiers}
    return out


__all__ = [
    "FAMILIES",
    "SPLITS",
    "TIERS",
    "Problem",
    "check",
    "check_many",
    "check_many_details",
    "describe",
    "extract_answer",
    "final_content",
    "generate",
    "is_heldout",
    "problem_suite",
    "to_document",
    "to_messages",
]
