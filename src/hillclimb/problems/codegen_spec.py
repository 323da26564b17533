"""Shared pieces of the code generators: the `GenSpec` they return and small text/eval helpers.

Why it is built this way: every generator form (pipelines, scalar expressions, piecewise rules,
iterations) returns the same `GenSpec` — key, name, arguments, one-sentence spec, reference code,
plan, input sampler and edge cases — and `codegen` turns any of them into a tested `Instance`
the same way. Helpers that evaluate our own expressions (to pick constants that make filters
bite) compile each distinct expression once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class GenSpec:
    """A generated function before canonicalisation and test derivation."""

    key: str  # the structure: what the function does, never its constants
    name: str
    args: str
    doc: str  # one sentence, lower-case start ("takes a list of integers xs, ...")
    code: str  # reference source (any formatting; `codegen` canonicalises it)
    plan: str
    inputs: Callable[[random.Random], tuple]
    edges: tuple[tuple, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    # The reference with one part left out (a stage, a branch): the tests must tell each apart
    # from the reference, so no part of the spec can be ignored by a passing solution.
    ablations: tuple[str, ...] = ()


@lru_cache(maxsize=8192)
def compiled_lambda(expr: str, args: str = "v") -> Callable:
    """`lambda args: expr` for OUR generated expressions (never model output)."""
    return eval(f"lambda {args}: {expr}", {"__builtins__": __builtins__})  # noqa: S307


_IRREGULAR = {"goes": "go", "does": "do", "has": "have"}


def imperative(clause: str) -> str:
    """'keeps only the values ...' -> 'Keep only the values ...'."""
    verb, _, rest = clause.partition(" ")
    if verb in _IRREGULAR:
        base = _IRREGULAR[verb]
    elif verb.endswith("ies"):
        base = verb[:-3] + "y"
    elif verb.endswith(("sses", "shes", "ches", "xes")):
        base = verb[:-2]
    elif verb.endswith("s"):
        base = verb[:-1]
    else:
        base = verb
    return (base[:1].upper() + base[1:] + (" " + rest if rest else "")).rstrip()


# A pipeline over the characters of a string whose every part only compares elements for
# equality, collects, counts or tallies them is a list pipeline's function with its names changed:
# `count_blocks_chars(s)` and `count_blocks_values(xs)` have the same body. Keyed apart, one of
# such a pair could be held out while its twin is trained on (session 26 altimeter audit), so
# `canonical_key` gives the string form the list form's key. Stages: the character filters that
# are the integer equality filters with a character constant; aggregates: those defined for
# both element types with one body (`tests/test_outside_checks_s27_problems.py` checks this set
# against `codegen_ends.AGGS` and that every twin pair builds the same code after renaming).
CHAR_AS_INT_STAGES: dict[str, str] = {
    "filter_same": "filter_equal",
    "filter_other": "filter_unequal",
}
CHAR_AS_INT_AGGS: dict[str, str] = {
    **{
        a: a
        for a in (
            "first",
            "last",
            "list",
            "distinct",
            "count",
            "has",
            "empty",
            "tally",
            "longest_equal",
            "runs_count",
        )
    },
    "run_other": "run_unequal",
}


def canonical_key(key: str) -> str:
    """`key` with element-generic string pipelines renamed to their list twin
    (`gen:chars|filter_same|count` -> `gen:list|filter_equal|count`); any other key unchanged."""
    source, *parts = key.split("|")
    if source != "gen:chars" or not parts:
        return key
    *stages, agg = parts
    if agg not in CHAR_AS_INT_AGGS or any(s not in CHAR_AS_INT_STAGES for s in stages):
        return key
    return "|".join(["gen:list", *(CHAR_AS_INT_STAGES[s] for s in stages), CHAR_AS_INT_AGGS[agg]])
