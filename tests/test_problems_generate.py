"""Generators: determinism, split disjointness, uniqueness, speed, reference answers verify."""

from __future__ import annotations

import ast
from fractions import Fraction
from operator import add, mul, sub, truediv

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.problems import (
    FAMILIES,
    HELDOUT_FAMILIES,
    TIERS,
    TRAIN_FAMILIES,
    Problem,
    check,
    describe,
    extract_answer,
    generate,
    key_bucket,
    problem_suite,
    to_document,
    to_messages,
)
from hillclimb.problems.base import SPLITS
from hillclimb.problems.verify import final_content

REASONING = [f for f, k in FAMILIES.items() if k == "reasoning"]
CODE = [f for f, k in FAMILIES.items() if k == "code"]
NAMESPACE = {f: ("code" if k == "code" else f) for f, k in FAMILIES.items()}


def _splits(family):
    return [s for s in SPLITS if not (family in HELDOUT_FAMILIES and s in ("train", "val"))]


def test_families_and_kinds():
    assert set(FAMILIES) >= {
        "arith",
        "arith_chain",
        "word_problem",
        "logic",
        "code_function",
        "code_bugfix",
    }
    assert set(FAMILIES.values()) == {"reasoning", "code"}
    assert TIERS == (1, 2, 3, 4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_deterministic(family):
    split = _splits(family)[0]
    for tier in TIERS:
        a = generate(family, tier, 30, seed=7, split=split)
        b = generate(family, tier, 30, seed=7, split=split)
        assert a == b
        assert [p.meta for p in a] == [p.meta for p in b]
        c = generate(family, tier, 30, seed=8, split=split)
        assert [p.prompt for p in a] != [p.prompt for p in c]


@pytest.mark.parametrize("family", list(TRAIN_FAMILIES))
def test_splits_disjoint_by_problem_over_many_seeds(family):
    """No underlying problem (key) of val/heldout is ever generated for train, whatever the seed;
    the split of every item is the bucket of its key."""
    ns = NAMESPACE[family]
    for tier in TIERS:
        train = [p for seed in range(4) for p in generate(family, tier, 150, seed, "train")]
        val = generate(family, tier, 30, seed=1, split="val")
        held = generate(family, tier, 30, seed=1, split="heldout")
        phr = generate(family, tier, 30, seed=2, split="heldout_phrasing")
        assert {key_bucket(ns, p.key) for p in train} == {"train"}
        assert {key_bucket(ns, p.key) for p in val} == {"val"}
        assert {key_bucket(ns, p.key) for p in held + phr} == {"test"}
        train_keys = {p.key for p in train}
        assert not train_keys & {p.key for p in val + held + phr}
        assert not {p.key for p in val} & {p.key for p in held + phr}
        assert not {p.prompt for p in train} & {p.prompt for p in val + held + phr}
        assert {p.split for p in held} == {"heldout"} and {p.split for p in phr} == {
            "heldout_phrasing"
        }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_heldout_phrasing_pairs_heldout_item_by_item(family):
    """Same seed: the phrasing split asks the same problems as the held-out split, in wordings
    that no training item uses."""
    for tier in TIERS:
        held = generate(family, tier, 20, seed=5, split="heldout")
        phr = generate(family, tier, 20, seed=5, split="heldout_phrasing")
        assert [p.key for p in held] == [p.key for p in phr]
        for a, b in zip(held, phr, strict=True):
            if a.meta.get("template") == "ordering":  # the answer is a name: a surface word
                assert a.meta["choices"].index(a.answer) == b.meta["choices"].index(b.answer)
            else:
                assert a.answer == b.answer
        n = len(held)  # a small tier (arith tier 1) has fewer than 20 held-out problems
        assert sum(a.prompt != b.prompt for a, b in zip(held, phr, strict=True)) >= 0.9 * n


def _shape(prompt: str) -> str:
    """A prompt with its numbers and names masked: what a template looks like."""
    import re

    from hillclimb.problems import logic, word_problem

    names = [n[0] for n in word_problem.NAMES + word_problem.HELDOUT_NAMES]
    names += list(logic.PEOPLE + logic.HELDOUT_PEOPLE)
    masked = re.sub(r"-?\d+(/\d+)?", "0", prompt)
    return re.sub(r"\b(" + "|".join(names) + r")\b", "N", masked)


@pytest.fixture(scope="module")
def train_shapes():
    return {
        _shape(p.prompt)
        for family in TRAIN_FAMILIES
        for tier in TIERS
        for seed in range(2)
        for p in generate(family, tier, 200, seed)
    }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_heldout_phrasings_never_used_in_training(family, train_shapes):
    """No held-out wording is a training wording of any family (numbers and names masked)."""
    for tier in TIERS:
        phr = generate(family, tier, 40, seed=0, split="heldout_phrasing")
        same = [p.prompt for p in phr if _shape(p.prompt) in train_shapes]
        assert not same, same[:3]


def test_heldout_family_never_trains():
    for family in HELDOUT_FAMILIES:
        for split in ("train", "val"):
            with pytest.raises(HillclimbError, match="held-out family"):
                generate(family, 1, 1, 0, split)
        assert generate(family, 1, 3, 0, "heldout")
    assert set(TRAIN_FAMILIES) == set(FAMILIES) - set(HELDOUT_FAMILIES)
    assert HELDOUT_FAMILIES


def test_commutative_facts_split_together():
    assert key_bucket("arith", "3 + 5") == key_bucket("arith", "3 + 5")
    keys = {p.key for p in generate("arith", 1, 400, 0)}
    assert all(" + " not in k or int(k.split(" + ")[0]) <= int(k.split(" + ")[1]) for k in keys)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unique_within_call_and_fields(family):
    split = _splits(family)[0]
    for tier in TIERS:
        ps = generate(family, tier, 100, seed=3, split=split)
        if split == "train":
            assert len(ps) == 100 and len({p.prompt for p in ps}) == 100
        else:  # each problem once; a small tier's evaluation split may hold fewer than n
            assert 0 < len(ps) <= 100
            assert len({p.key for p in ps}) == len({p.prompt for p in ps}) == len(ps)
        assert len({p.id for p in ps}) == len({p.prompt for p in ps})
        for p in ps:
            assert p.family == family and p.tier == tier and p.kind == FAMILIES[family]
            assert p.id.startswith(f"{family}/t{tier}/")
            assert p.prompt and p.reasoning and p.answer and p.key
            if p.kind == "code":
                assert p.tests and p.entry_point
                tree = ast.parse(p.answer)
                assert isinstance(tree.body[0], ast.FunctionDef)
                assert tree.body[0].name == p.entry_point
                ast.parse(p.tests)


def test_small_space_fills_with_repeats():
    ps = generate("arith", 1, 3000, seed=0)
    assert len(ps) == 3000
    unique = {p.prompt for p in ps}
    facts = {p.key for p in ps}
    # 155 one-digit facts (100 keys: + is order-free), ~75% of keys in train, x 6 phrasings
    assert 55 <= len(facts) <= 90
    assert len(unique) == 6 * sum(
        2 if " + " in k and k.split(" + ")[0] != k.split(" + ")[1] else 1 for k in facts
    )
    first = [p.prompt for p in ps[: len(unique)]]
    assert len(set(first)) >= 0.98 * len(unique)  # repeats start once the space looks exhausted
    # an evaluation split holds each problem once: a small tier gives fewer than n, never repeats
    held = generate("arith", 1, 40, seed=0, split="heldout")
    assert 5 <= len(held) < 40 and len({p.key for p in held}) == len({p.id for p in held})
    assert len({p.id for p in held}) == len(held)
    phr = generate("arith", 1, 40, seed=0, split="heldout_phrasing")
    assert [p.key for p in phr] == [p.key for p in held]  # the same problems, other words
    assert generate("arith", 1, 40, seed=0, split="heldout") == held  # deterministic


@pytest.mark.parametrize("family", REASONING)
def test_reasoning_references_verify_and_wrong_fails(family):
    for tier in TIERS:
        for p in generate(family, tier, 60, seed=5, split="heldout") + generate(
            family, tier, 30, seed=5, split="heldout_phrasing"
        ):
            content = to_messages(p)[1]["content"]
            assert content == f"The answer is {p.answer}."
            assert check(p, content), (p.prompt, content)
            assert check(p, f"<think>{p.reasoning}</think>\n{content}")
            wrong = _wrong(p)
            assert not check(p, f"The answer is {wrong}."), (p.prompt, wrong)


def _wrong(p: Problem) -> str:
    table = {"yes": "no", "no": "yes", "true": "False", "false": "True"}
    if p.answer.casefold() in table:
        return table[p.answer.casefold()]
    try:
        return str(int(p.answer) + 1)
    except ValueError:
        pass
    if "/" in p.answer:
        n, d = p.answer.split("/")
        return f"{int(n) + 1}/{d}"
    return "Nobody"


def test_tier1_is_short():
    for family in [f for f in REASONING if f in TRAIN_FAMILIES]:
        for p in generate(family, 1, 200, seed=0):
            assert len(p.prompt) <= 130, p.prompt
            assert p.reasoning.count("\n") <= 1, p.reasoning
    p = generate("arith", 1, 1, seed=0)[0]
    assert p.reasoning == f"{p.meta['expression']} = {p.answer}."


def test_arith_answers_are_right():
    ops = {"+": add, "-": sub, "×": mul, "÷": truediv}
    for tier in TIERS:
        for p in generate("arith", tier, 100, seed=2):
            a, op, b = p.meta["expression"].split(" ")
            assert ops[op](Fraction(a), Fraction(b)) == Fraction(p.answer), p.meta
            if tier == 1:
                assert 0 <= int(p.answer) <= 18


def test_chain_answers_match_python():
    for tier in TIERS:
        for p in generate("arith_chain", tier, 100, seed=4):
            expr = p.meta["expression"].replace("×", "*").replace("÷", "//")
            assert eval(expr) == int(p.answer), p.meta  # our own generated expression
            assert p.reasoning.splitlines()[-1].endswith(f"= {p.answer}.")


def test_documents_and_messages():
    for family in FAMILIES:
        for p in generate(family, 2, 12, seed=0, split=_splits(family)[0]):
            doc = to_document(p)
            assert p.prompt.splitlines()[0] in doc or ("# Task: " + p.prompt.splitlines()[0]) in doc
            assert p.reasoning.splitlines()[0] in doc
            if p.kind == "reasoning":
                assert doc.rstrip().endswith(f"The answer is {p.answer}.")
            else:
                assert p.answer.strip() in doc
            msgs = to_messages(p)
            assert [m["role"] for m in msgs] == ["user", "assistant"]
            assert msgs[1]["reasoning_content"] == p.reasoning
            assert msgs[1]["content"] == final_content(p)
            assert to_document(p) == doc
    layouts = {to_document(p).split(":")[0] for p in generate("arith", 2, 40, seed=0)}
    assert len(layouts) >= 2


def test_code_extract_answer_from_reference():
    for family in CODE:
        for p in generate(family, 3, 10, seed=0) + generate(family, 3, 5, 0, "heldout_phrasing"):
            assert extract_answer(p, to_messages(p)[1]["content"]) == p.answer


def test_problem_suite_and_describe():
    suite = problem_suite(seed=0, split="heldout", n_per_tier=3)
    assert len(suite) == len(FAMILIES) * len(TIERS) * 3
    assert {(p.family, p.tier) for p in suite} == {(f, t) for f in FAMILIES for t in TIERS}
    train = problem_suite(seed=0, split="val", n_per_tier=2)
    assert {p.family for p in train} == set(TRAIN_FAMILIES)
    d = describe()
    assert set(d) == set(FAMILIES)
    assert d["sequence"]["heldout_family"] and not d["arith"]["heldout_family"]
    assert d["arith"]["tiers"][1]["samples"][0]["prompt"]


def test_roundtrip_dict():
    p = generate("code_bugfix", 2, 1, seed=0)[0]
    assert Problem.from_dict(p.to_dict()) == p
    old = {k: v for k, v in p.to_dict().items() if k not in ("key", "split")}
    assert Problem.from_dict(old).key == ""  # records written before the split fields load
    with pytest.raises(HillclimbError):
        Problem.from_dict({"id": "x"})


def test_bad_arguments():
    with pytest.raises(HillclimbError, match="unknown problem family"):
        generate("nope", 1, 1, 0)
    with pytest.raises(HillclimbError, match="unknown tier"):
        generate("arith", 5, 1, 0)
    with pytest.raises(HillclimbError, match="unknown split"):
        generate("arith", 1, 1, 0, split="test")
    with pytest.raises(HillclimbError, match="non-negative"):
        generate("arith", 1, True, 0)
    with pytest.raises(HillclimbError, match="non-negative"):
        generate("arith", 1, -1, 0)
    assert generate("arith", 1, 0, 0) == []


def test_ten_thousand_problems_in_one_call():
    """Speed is measured by `bench/problems_generate.py` (BENCHMARKS.md), not by a timed test."""
    ps = generate("arith_chain", 2, 10_000, seed=11)
    assert len(ps) == 10_000 and all(p.answer for p in ps)
