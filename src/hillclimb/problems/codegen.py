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
  constants, then a new structure; so does one with an overlong test line. A function of one
  string also gets a case holding every character generated strings draw from
  (`alphabet_case`, session 29): a training rule on one character passed tests that held none.
- **Function names** are `<what it returns>_<what it reads>` from small pools per aggregate and
  source (`total_values`, `longest_words`, `count_by_remainder_digits`), or a generic verb for
  scalar forms (`compute`, `adjust`): descriptive, never the structure itself.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import random
from collections.abc import Callable
from functools import cache
from typing import Any

from hillclimb.problems import codegen_pipeline as pipeline
from hillclimb.problems.base import derive_seed
from hillclimb.problems.codegen_ends import ALPHABET
from hillclimb.problems.codegen_scalar import FORMS
from hillclimb.problems.codegen_spec import GenSpec
from hillclimb.problems.codetasks import (
    OPEN_DOMAIN,
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
# Telling a function apart from its alternatives (see `tell_apart`): how many sibling structures
# are built per function, how many inputs are drawn to separate one, how many cases may be added.
N_SIBLINGS = 16
SEARCH_DRAWS = 48
MAX_EXTRA_CASES = 8


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


def instance_of(
    spec: GenSpec, siblings: Callable[[], list[GenSpec]] | None = None
) -> Instance | None:
    """The tested instance of a generated spec, or None if its tests would be weak or unwieldy,
    or if the reference cannot be told apart from an ablation or a sibling (`tell_apart`).
    A function of one string also gets `alphabet_case` (never a reason to refuse it)."""
    source = canonical(spec.code)
    fn = compile_function(source, spec.name)
    cases = derive_cases(source, fn, spec.edges, spec.inputs, N_RANDOM_CASES, strict=False)
    if len(cases) < 4 or not _informative(cases):
        return None
    alternatives = [(code, spec.name) for code in spec.ablations]
    samplers = [spec.inputs]
    if siblings is not None:
        for sib in siblings():
            alternatives.append((sib.code, sib.name))
            samplers.append(sib.inputs)
    told = tell_apart(source, fn, cases, alternatives, samplers)
    if told is None:
        return None
    extra = alphabet_case(source, fn, told, spec.name)  # generated specs hold for any string
    cases = told if extra is None else (*told, extra)
    if any(len(assert_line(spec.name, a, e)) > MAX_TEST_LINE for a, e in cases):
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


def tell_apart(
    source: str,
    fn: Callable,
    cases: tuple[tuple[tuple, Any], ...],
    alternatives: list[tuple[str, str]],
    samplers: list[Callable[[random.Random], tuple]],
) -> tuple[tuple[tuple, Any], ...] | None:
    """`cases` plus inputs that tell the reference apart from every alternative (`(code, name)`:
    the reference with parts left out, and sibling structures), or None when some alternative
    gives the same results on every input tried (then it is the same function on this domain:
    a twin key, or a part that does nothing).

    For each alternative that passes all cases so far, inputs are drawn in turn from the
    reference's sampler and the alternatives' (a sibling's sampler knows the inputs where its
    own constants matter), and the first input on which the two differ becomes a case. This is
    the generic rule behind "tests are discriminating": no nearby other function, and no
    solution that ignores part of the spec, passes them."""
    rng = random.Random(derive_seed("code-tell-apart", source))
    out = list(cases)
    seen = {repr(a) for a, _ in out}
    for code, name in alternatives:
        if not _passes(code, name, tuple(out)):
            continue
        alt = compile_function(code, name)
        for k in range(SEARCH_DRAWS):
            try:
                args = samplers[k % len(samplers)](rng)
            except Exception:  # noqa: BLE001 - a sampler that cannot draw here
                continue
            if repr(args) in seen:
                continue
            try:
                expected = fn(*ast.literal_eval(repr(args)))
            except Exception:  # noqa: BLE001 - outside the reference's domain
                continue
            if not _same(alt, args, expected):
                out.append((args, expected))
                seen.add(repr(args))
                break
        else:
            return None
        if len(out) > len(cases) + MAX_EXTRA_CASES:
            return None
    return tuple(out)


def _same(fn: Callable, args: tuple, expected: Any) -> bool:
    try:
        got = fn(*ast.literal_eval(repr(args)))
    except Exception:  # noqa: BLE001 - raising is telling apart
        return False
    return got == expected and type(got) is type(expected)


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
            state = rng.getstate()
            spec = _build(rng, form, structure)
            if spec is None:
                continue
            inst = instance_of(spec, functools.partial(sibling_specs, form, structure, spec, state))
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
    return with_alphabet_case(inst)


def _tok(x: Any) -> tuple:
    return (getattr(x, "src", ""), getattr(x, "token", x))


@cache
def _form_holes(form: str) -> dict[tuple, tuple[tuple, ...]]:
    """A form's structures grouped by all parts but one (index, the other parts' tokens)."""
    holes: dict[tuple, list[tuple]] = {}
    for s in form_structures(form):
        toks = tuple(_tok(x) for x in s)
        for i in range(len(s)):
            holes.setdefault((i, toks[:i] + toks[i + 1 :]), []).append(s)
    return {k: tuple(v) for k, v in holes.items()}


def siblings(form: str, structure: tuple) -> list[tuple]:
    """The structures of the same form one part away (another source, stage, branch, step or
    aggregate): the nearest other keys, which a function's tests must reject."""
    if form == "pipe":
        return pipeline.siblings(structure)  # type: ignore[arg-type]
    toks = tuple(_tok(x) for x in structure)
    holes = _form_holes(form)
    out: list[tuple] = []
    for i in range(len(structure)):
        for s in holes.get((i, toks[:i] + toks[i + 1 :]), ()):
            if _tok(s[i]) != toks[i]:
                out.append(s)
    return out


def sibling_specs(form: str, structure: tuple, spec: GenSpec, state: object) -> list[GenSpec]:
    """Up to `N_SIBLINGS` sibling structures (a deterministic choice), each built from the same
    random state as `spec`, so shared parts tend to get the same constants."""
    sibs = siblings(form, structure)
    pick = random.Random(derive_seed("code-siblings", spec.code))
    if len(sibs) > N_SIBLINGS:
        sibs = pick.sample(sibs, N_SIBLINGS)
    out: list[GenSpec] = []
    for sib in sibs:
        r = random.Random()
        r.setstate(state)  # type: ignore[arg-type]
        try:
            built = _build(r, form, sib)
        except Exception:  # noqa: BLE001 - a sibling this state cannot build is skipped
            continue
        if built is not None and built.args == spec.args:
            out.append(built)
    return out


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


# ------------------------------------------------------------ characters a generated rule tests
# Why (session 29): a training function of another key passed a held-out item's tests in 25 of
# 320 items at 1,500 training items per family x tier (`baselines.flag_passed_by_train_fn`,
# tiny eval settings); where it was a string rule on one character ("if 'B' in s", "drop 'i'")
# the item's tests held no such character. Generated strings draw from `ALPHABET`, so one test
# string holding every character of it no case holds yet fails every "contains" rule at once.


def alphabet_case(
    source: str, fn: Callable, cases: tuple[tuple[tuple, Any], ...], name: str
) -> tuple[tuple, Any] | None:
    """For a function of one string, an input holding every character of the generators'
    alphabet (`codegen_ends.ALPHABET`) that no case holds yet, in an order seeded by the source
    (so paired splits keep equal tests), with the reference's result; None when no character is
    missing, the function takes other arguments, or the line would be over `MAX_TEST_LINE`.

    Why one string: a rule that tests for a character ("reverse unless s holds a 'B'") equals
    many functions on every input without it (session 28: it passed held-out `reverse_string`);
    one case fails every such rule on any character generated strings can hold. It does not
    reach rules on where a character stands (`s.startswith('t')`): those would need a case per
    character."""
    if not cases or any(len(a) != 1 or not isinstance(a[0], str) for a, _ in cases):
        return None
    held = set("".join(a[0] for a, _ in cases))
    missing = [c for c in ALPHABET if c not in held]
    if not missing:
        return None
    random.Random(derive_seed("code-alphabet", source)).shuffle(missing)
    args = ("".join(missing),)
    try:
        expected = fn(*args)
    except Exception:  # noqa: BLE001 - outside the reference's domain
        return None
    if len(assert_line(name, args, expected)) > MAX_TEST_LINE:
        return None
    return (args, expected)


@functools.lru_cache(maxsize=4096)
def with_alphabet_case(inst: Instance) -> Instance:
    """A catalogue instance with `alphabet_case` added where its spec holds for every string
    (`codetasks.OPEN_DOMAIN`; not for tasks whose strings must be lowercase or well formed)."""
    if inst.meta.get("task") not in OPEN_DOMAIN:
        return inst
    extra = alphabet_case(
        inst.source, compile_function(inst.source, inst.name), inst.cases, inst.name
    )
    return inst if extra is None else dataclasses.replace(inst, cases=(*inst.cases, extra))
