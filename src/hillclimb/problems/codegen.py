"""Generated code tasks: thousands of distinct functions per tier, held out by structure.

Why it is built this way:

- **Held-out functions must be new programs.** With only the 49 catalogue tasks, ~7 functions
  were held out and RL could memorise the rest. Here a function's split key is its *structure* —
  the sequence of operations (`gen:list|filter_above|map_scale|sum`), never its constants, names,
  code style or example — so a held-out key is a composition no training item has, in any
  wording, with any constants, as a function to write or as a bug to fix.
- **Forms per tier** (`TIER_FORMS`): tier 1 one-line expressions of one or two operations
  (`codegen_scalar`: `expr`, `test`, `expr2`, `expr2m`, `test2`, `list1`, `str1`, `strn`); tier 2
  one condition (`piecewise` on an integer, `strcase` on a string) or a two-stage pipeline; tier 3 three-stage pipelines, string and list algorithms, three-way
  `bands`; tier 4 four-stage pipelines (pairs i < j, sliding windows, matrix rows, dicts, runs)
  and `iterate` (a piecewise rule applied k times). Pipelines are `codegen_pipeline`.
- `draw` mixes generated functions with the catalogue (`GENERATED_SHARE` of draws generated).
- **Tests come from running our reference** in-process on edge cases and random inputs that
  include the function's constants and their neighbours. A function whose tests barely
  distinguish it from a constant (fewer than 3 distinct results, or one boolean value) gets new
  constants, then a new structure; so does one with an overlong test line.
- **Function names** are `<what it returns>_<what it reads>` from small pools per aggregate and
  source (`total_values`, `longest_words`, `count_by_remainder_digits`), or a generic verb for
  scalar forms (`compute`, `adjust`): descriptive, never the structure itself.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable
from functools import cache
from typing import Any

from hillclimb.problems import codegen_pipeline as pipeline
from hillclimb.problems.codegen_scalar import FORMS
from hillclimb.problems.codegen_spec import GenSpec
from hillclimb.problems.codetasks import (
    Instance,
    assert_line,
    canonical,
    compile_function,
    derive_cases,
    draw_instance,
)

GENERATED_SHARE = 0.7
# form -> relative weight, per tier; "pipe" is a pipeline of cost tier - 1
TIER_FORMS: dict[int, tuple[tuple[str, float], ...]] = {
    1: (
        ("expr", 2.0),
        ("test", 1.0),
        ("expr2", 1.5),
        ("expr2m", 1.5),
        ("test2", 1.0),
        ("list1", 1.0),
        ("str1", 2.5),
        ("strn", 1.0),
    ),
    2: (("pipe", 6.0), ("piecewise", 2.0), ("strcase", 2.0)),
    3: (("pipe", 7.0), ("bands", 2.0)),
    4: (("pipe", 7.0), ("iterate", 2.0)),
}
N_RANDOM_CASES = 9
MAX_TEST_LINE = 300
_TRIES_PER_STRUCTURE = 4


@cache
def form_structures(form: str) -> tuple[tuple, ...]:
    return tuple(FORMS[form].structures())


def _draw_structure(rng: random.Random, tier: int) -> tuple[str, tuple]:
    forms, weights = zip(*TIER_FORMS[tier], strict=True)
    form = rng.choices(forms, weights)[0]
    if form == "pipe":
        return form, pipeline.draw_structure(rng, tier - 1)
    structures = form_structures(form)
    return form, structures[rng.randrange(len(structures))]


def _build(rng: random.Random, form: str, structure: tuple) -> GenSpec | None:
    if form == "pipe":
        return pipeline.build(rng, structure)  # type: ignore[arg-type]
    return FORMS[form].build(rng, *structure)


def _informative(cases: tuple[tuple[tuple, Any], ...]) -> bool:
    results = [r for _, r in cases]
    if all(isinstance(r, bool) for r in results):
        return len(set(results)) == 2
    return len({repr(r) for r in results}) >= 3


def instance_of(spec: GenSpec) -> Instance | None:
    """The tested instance of a generated spec, or None if its tests would be weak or unwieldy."""
    source = canonical(spec.code)
    fn = compile_function(source, spec.name)
    cases = derive_cases(source, fn, spec.edges, spec.inputs, N_RANDOM_CASES, strict=False)
    if len(cases) < 4 or not _informative(cases):
        return None
    if any(len(assert_line(spec.name, a, e)) > MAX_TEST_LINE for a, e in cases):
        return None
    if any(_passes(code, spec.name, cases) for code in spec.ablations):
        return None
    return Instance(
        name=spec.name,
        args=spec.args,
        doc=spec.doc,
        plan=spec.plan,
        source=source,
        cases=cases,
        key=spec.key,
        inputs=spec.inputs,
        meta={"origin": "generated", "task": spec.key, "params": spec.params},
    )


def _passes(code: str, name: str, cases: tuple[tuple[tuple, Any], ...]) -> bool:
    """Whether `code` (our own variant of a reference) gives every expected result."""
    try:
        fn = compile_function(code, name)
    except Exception:  # noqa: BLE001 - a variant that does not even compile is told apart
        return False
    for args, expected in cases:
        try:
            got = fn(*ast.literal_eval(repr(args)))
        except Exception:  # noqa: BLE001 - raising is telling apart
            return False
        if got != expected or type(got) is not type(expected):
            return False
    return True


def early_key(form: str, structure: tuple) -> str:
    """The key a structure's instances will carry, known before any of them is built."""
    if form == "pipe":
        return pipeline.key_of(*structure)
    return _key_of(form, structure)


def generated(
    rng: random.Random, tier: int, accept: Callable[[str], bool] | None = None
) -> Instance | str:
    """A generated function of this tier (content drawn from `rng` only); when `accept` refuses
    the drawn structure's key, that key (a str) at once, before any instance is built."""
    while True:
        form, structure = _draw_structure(rng, tier)
        if accept is not None:
            key = early_key(form, structure)
            if not accept(key):
                return key
        for _ in range(_TRIES_PER_STRUCTURE):
            spec = _build(rng, form, structure)
            inst = instance_of(spec) if spec is not None else None
            if inst is not None:
                return inst


def draw(
    rng: random.Random, tier: int, accept: Callable[[str], bool] | None = None
) -> Instance | str:
    """A code function for tier `tier`: generated (`GENERATED_SHARE`) or from the catalogue.
    With `accept`, a refused key comes back as a str instead (cheap rejection)."""
    if rng.random() < GENERATED_SHARE:
        return generated(rng, tier, accept)
    inst = draw_instance(rng, tier)
    if accept is not None and not accept(inst.key):
        return inst.key
    return inst


def structure_count(tier: int) -> dict[str, int]:
    """Distinct generated structures (keys) per form of a tier; the pipeline count is exact."""
    out: dict[str, int] = {}
    for form, _ in TIER_FORMS[tier]:
        out[form] = pipeline.count(tier - 1) if form == "pipe" else len(form_structures(form))
    return out


def structure_keys(tier: int) -> list[str]:
    """Every generated key of a tier (tier 4 pipelines: ~10^5 keys, about a second)."""
    out: list[str] = []
    for form, _ in TIER_FORMS[tier]:
        if form == "pipe":
            out += pipeline.keys(tier - 1)
        else:
            out += [_key_of(form, s) for s in form_structures(form)]
    return out


def _key_of(form: str, structure: tuple) -> str:
    parts = [getattr(x, "token", x) for x in structure]
    return "gen:" + "|".join([form] + [str(p) for p in parts if p is not None])


def reference_ok(inst: Instance) -> bool:
    """Every case of `inst` holds for its reference (a self-check for tests and tools)."""
    fn: Callable = compile_function(inst.source, inst.name)
    for args, expected in inst.cases:
        got = fn(*ast.literal_eval(repr(args)))
        if got != expected or type(got) is not type(expected):
            return False
    return True
