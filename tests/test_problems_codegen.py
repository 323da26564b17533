"""Generated code tasks: held-out functions are new programs, specs/references/tests agree.

Everything here runs our own references in-process (no sandbox): the sandboxed checks of the
same problems are in test_problems_code.py.
"""

from __future__ import annotations

import ast
import copy
import json
import random
import re

import pytest

from hillclimb.problems import TIERS, code_bugfix, codegen, generate, key_bucket
from hillclimb.problems.codegen import _build, _draw_structure, _passes, instance_of
from hillclimb.problems.codetasks import (
    CODE_NAMESPACE,
    TASKS,
    compile_function,
    derive_cases,
)

FAMILIES = ("code_function", "code_bugfix")
ASSERT_RE = re.compile(r"^assert (\w+)\((.*)\) (==|is) (.+)$")


@pytest.fixture(scope="module")
def keys_by_tier() -> dict[int, set[str]]:
    return {t: set(codegen.structure_keys(t)) for t in TIERS}


def _strict_eq(a: object, b: object) -> bool:
    """Equality that also compares types, all the way down (1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_strict_eq(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            any(_strict_eq(k, k2) and _strict_eq(v, b[k2]) for k2 in b if k2 == k)
            for k, v in a.items()
        )
    return a == b


def _parse_test(line: str, name: str) -> tuple[tuple, object]:
    """(args, expected) of one `assert NAME(ARGS) == EXPECTED` line; literals only."""
    m = ASSERT_RE.match(line)
    assert m, line
    assert m.group(1) == name, line
    tree = ast.parse(line).body[0]
    assert isinstance(tree, ast.Assert) and isinstance(tree.test, ast.Compare)
    call = tree.test.left
    assert isinstance(call, ast.Call) and not call.keywords
    args = tuple(ast.literal_eval(a) for a in call.args)
    expected = ast.literal_eval(tree.test.comparators[0])
    if m.group(3) == "is":
        assert expected is None or isinstance(expected, bool), line
    else:
        assert expected is not None and not isinstance(expected, bool), line
    assert not isinstance(expected, float | set), line
    return args, expected


def test_at_least_500_heldout_functions(keys_by_tier):
    """Distinct held-out functions reachable through `generate(..., "heldout")`, and the size of
    the structure space behind them."""
    drawn: set[str] = set()
    for tier, n in ((1, 40), (2, 160), (3, 160), (4, 160)):
        ps = generate("code_function", tier, n, seed=0, split="heldout")
        keys = {p.key for p in ps}
        assert len(keys) == n  # evaluation splits: one item per function
        assert {key_bucket(CODE_NAMESPACE, k) for k in keys} == {"test"}
        drawn |= keys
    assert len(drawn) >= 500, len(drawn)
    test_keys = {
        t: {k for k in keys if key_bucket(CODE_NAMESPACE, k) == "test"}
        for t, keys in keys_by_tier.items()
    }
    assert sum(len(k) for k in test_keys.values()) >= 5000
    assert len(test_keys[1]) >= 40
    for tier in (2, 3, 4):
        assert len(keys_by_tier[tier]) >= 1500, (tier, len(keys_by_tier[tier]))
    assert len(set().union(*keys_by_tier.values())) == sum(map(len, keys_by_tier.values()))


def test_drawn_keys_are_structures_and_catalogue_families_exist(keys_by_tier):
    everything = set().union(*keys_by_tier.values())
    for tier in TIERS:
        rng = random.Random(tier)
        for _ in range(150):
            inst = codegen.generated(rng, tier)
            assert inst.key in keys_by_tier[tier], inst.key
    # catalogue tasks that are one member of a generated family carry that family's key
    for task in TASKS:
        if task.key:
            assert task.key in everything, task.key


def test_heldout_functions_never_trained_on():
    """Across seeds and both code families, no function (key) of an evaluation split is ever
    generated for training: a held-out function is not seen as a task nor as a bug to fix."""
    train = {
        p.key
        for family in FAMILIES
        for seed in range(3)
        for tier in TIERS
        for p in generate(family, tier, 60, seed, "train")
    }
    assert {key_bucket(CODE_NAMESPACE, k) for k in train} == {"train"}
    held = {
        p.key
        for family in FAMILIES
        for split in ("heldout", "val")
        for tier in TIERS
        for p in generate(family, tier, 20, 9, split)
    }
    assert not train & held
    assert sum(k.startswith("gen:") for k in held) >= 0.8 * len(held)


@pytest.mark.parametrize("family", FAMILIES)
def test_spec_reference_and_tests_agree(family):
    for tier in TIERS:
        for split in ("train", "heldout", "heldout_phrasing"):
            for p in generate(family, tier, 25, seed=3, split=split):
                assert p.entry_point and p.tests
                fn = compile_function(p.answer, p.entry_point)  # our reference, in-process
                lines = p.tests.strip().splitlines()
                assert len(lines) >= 4
                for line in lines:
                    args, expected = _parse_test(line, p.entry_point)
                    assert _strict_eq(fn(*copy.deepcopy(args)), expected), (p.key, line)
                assert f"`{p.entry_point}(" in p.prompt or f"{p.entry_point}(" in p.prompt
                json.dumps(p.meta)


def test_references_never_raise_on_their_inputs():
    for tier in TIERS:
        rng = random.Random(100 + tier)
        for _ in range(120):
            inst = codegen.generated(rng, tier)
            fn = compile_function(inst.source, inst.name)
            derive_cases(inst.source, fn, (), inst.inputs, n_random=25, strict=True)


def test_every_part_of_a_generated_function_is_tested():
    """Leaving out any stage or branch of the reference fails at least one test."""
    checked = 0
    for tier in TIERS:
        rng = random.Random(7 + tier)
        while checked < 60 * tier:
            form, structure = _draw_structure(rng, tier)
            spec = _build(rng, form, structure)
            inst = instance_of(spec) if spec is not None else None
            if inst is None:
                continue
            checked += 1
            assert _passes(inst.source, inst.name, inst.cases)
            for code in spec.ablations:
                assert not _passes(code, inst.name, inst.cases), (inst.key, code)


def test_bugfix_mutants_fail_and_reference_fixes():
    for tier in TIERS:
        for p in generate("code_bugfix", tier, 30, seed=4, split="train"):
            cases = [_parse_test(line, p.entry_point) for line in p.tests.strip().splitlines()]
            fixed = compile_function(p.answer, p.entry_point)
            assert all(_strict_eq(fixed(*copy.deepcopy(a)), e) for a, e in cases)
            buggy = compile_function(p.meta["buggy"], p.entry_point)
            failing = 0
            for args, expected in cases:
                try:
                    got = code_bugfix._run_limited(buggy, copy.deepcopy(args))
                except Exception:  # noqa: BLE001 - the bug raising is the bug showing
                    failing += 1
                    continue
                failing += not _strict_eq(got, expected)
            assert failing >= 1, p.meta["buggy"]
            assert p.meta["buggy"] in p.prompt


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic(family):
    for tier in TIERS:
        for split in ("train", "heldout"):
            a = generate(family, tier, 25, seed=11, split=split)
            b = generate(family, tier, 25, seed=11, split=split)
            assert [(p.prompt, p.answer, p.tests, p.key) for p in a] == [
                (p.prompt, p.answer, p.tests, p.key) for p in b
            ]
            assert [p.meta for p in a] == [p.meta for p in b]
        c = generate(family, tier, 25, seed=12)
        assert [p.prompt for p in c] != [p.prompt for p in a]


def test_heldout_phrasings_differ_from_training_phrasings():
    from hillclimb.problems import code_function

    for family, mod in (("code_function", code_function), ("code_bugfix", code_bugfix)):
        heads = {t.split("{", 1)[0] for t in mod.TEMPLATES}
        for tier in TIERS:
            held = generate(family, tier, 20, seed=5, split="heldout")
            phr = generate(family, tier, 20, seed=5, split="heldout_phrasing")
            assert [p.key for p in held] == [p.key for p in phr]
            assert [p.answer for p in held] == [p.answer for p in phr]
            for a, b in zip(held, phr, strict=True):
                assert a.prompt != b.prompt
                assert any(a.prompt.startswith(h) for h in heads)
                assert not any(b.prompt.startswith(h) for h in heads), b.prompt
                if b.prompt.startswith("Complete this Python function:"):
                    stub = b.prompt.split("```python\n", 1)[1].rsplit("```", 1)[0]
                    tree = ast.parse(stub)  # the docstring form is a valid function stub
                    assert isinstance(tree.body[0], ast.FunctionDef)
                    doc = ast.get_docstring(tree.body[0])
                    assert doc and ">>> " in doc and " is None" not in doc.split(">>>")[0]


def test_generation_gives_every_requested_problem():
    """200 per tier, every one distinct. Speed is measured by `bench/problems_generate.py`
    (BENCHMARKS.md), not here: a 2-second assert failed under a loaded machine."""
    for tier in TIERS:
        ps = generate("code_function", tier, 200, seed=21, split="train")
        assert len(ps) == 200 and len({p.id for p in ps}) == 200


def test_no_two_scalar_families_compute_the_same_functions():
    """Twin probe: instances of different keys of the one-integer forms never agree on a wide
    range of inputs (keys are families that no constant turns into each other)."""
    probes = list(range(-15, 31))
    for form, limit in (("expr", 2), ("piecewise", 0), ("bands", 0)):
        rng = random.Random(0)
        seen: dict[tuple, set[str]] = {}
        for structure in codegen.form_structures(form)[::2]:
            got = 0
            for _ in range(10):
                spec = _build(rng, form, structure)
                inst = instance_of(spec) if spec is not None else None
                if inst is None:
                    continue
                fn = compile_function(inst.source, inst.name)
                seen.setdefault(tuple(fn(x) for x in probes), set()).add(inst.key)
                got += 1
                if got == 3:
                    break
        twins = [sorted(keys) for keys in seen.values() if len(keys) > 1]
        assert len(twins) <= limit, (form, twins)


def test_early_key_is_the_key_instances_carry():
    """The split check runs on the key before any instance is built (cheap rejection): it must be
    the key the built instances carry."""
    import random

    from hillclimb.problems import codegen

    for tier in (1, 2, 3, 4):
        rng = random.Random(tier)
        for _ in range(150):
            form, structure = codegen._draw_structure(rng, tier)
            key = codegen.early_key(form, structure)
            for _ in range(4):
                spec = codegen._build(rng, form, structure)
                if spec is not None:
                    assert spec.key == key
                    break
