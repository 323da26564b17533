"""Generators: determinism, split disjointness, uniqueness, speed, reference answers verify."""

from __future__ import annotations

import ast
import time
from fractions import Fraction
from operator import add, mul, sub, truediv

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.problems import (
    FAMILIES,
    TIERS,
    Problem,
    check,
    describe,
    extract_answer,
    generate,
    is_heldout,
    problem_suite,
    to_document,
    to_messages,
)
from hillclimb.problems.verify import final_content

REASONING = [f for f, k in FAMILIES.items() if k == "reasoning"]
CODE = [f for f, k in FAMILIES.items() if k == "code"]


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
    for tier in TIERS:
        a = generate(family, tier, 30, seed=7)
        b = generate(family, tier, 30, seed=7)
        assert a == b
        assert [p.meta for p in a] == [p.meta for p in b]
        c = generate(family, tier, 30, seed=8)
        assert [p.prompt for p in a] != [p.prompt for p in c]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_split_disjoint_and_by_construction(family):
    for tier in TIERS:
        train = generate(family, tier, 300, seed=1, split="train")
        held = generate(family, tier, 40, seed=1, split="heldout")
        assert all(not is_heldout(p.prompt) for p in train)
        assert all(is_heldout(p.prompt) for p in held)
        assert not {p.prompt for p in train} & {p.prompt for p in held}
        # other seeds never cross the line either
        other = generate(family, tier, 100, seed=99, split="train")
        assert not {p.prompt for p in other} & {p.prompt for p in held}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_unique_within_call_and_fields(family):
    for tier in TIERS:
        ps = generate(family, tier, 100, seed=3)
        assert len(ps) == 100
        assert len({p.prompt for p in ps}) == 100
        assert len({p.id for p in ps}) == 100
        for p in ps:
            assert p.family == family and p.tier == tier and p.kind == FAMILIES[family]
            assert p.id.startswith(f"{family}/t{tier}/")
            assert p.prompt and p.reasoning and p.answer
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
    # 155 one-digit facts x 6 phrasings, ~90% of them in train: all found before any repeat
    assert 780 <= len(unique) <= 930
    first = [p.prompt for p in ps[: len(unique)]]
    assert len(set(first)) == len(unique)


@pytest.mark.parametrize("family", REASONING)
def test_reasoning_references_verify_and_wrong_fails(family):
    for tier in TIERS:
        for p in generate(family, tier, 60, seed=5, split="heldout"):
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
    for family in REASONING:
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
        for p in generate(family, 2, 12, seed=0):
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
        for p in generate(family, 3, 10, seed=0):
            assert extract_answer(p, to_messages(p)[1]["content"]) == p.answer


def test_problem_suite_and_describe():
    suite = problem_suite(seed=0, split="heldout", n_per_tier=3)
    assert len(suite) == len(FAMILIES) * len(TIERS) * 3
    assert {(p.family, p.tier) for p in suite} == {(f, t) for f in FAMILIES for t in TIERS}
    d = describe()
    assert set(d) == set(FAMILIES)
    assert d["arith"]["tiers"][1]["samples"][0]["prompt"]


def test_roundtrip_dict():
    p = generate("code_bugfix", 2, 1, seed=0)[0]
    assert Problem.from_dict(p.to_dict()) == p
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
        generate("arith", 1, -1, 0)
    assert generate("arith", 1, 0, 0) == []


def test_speed_10k_per_second_ish():
    t0 = time.perf_counter()
    ps = generate("arith_chain", 2, 10_000, seed=11)
    dt = time.perf_counter() - t0
    assert len(ps) == 10_000
    assert dt < 3.0, dt  # ~0.5 s on a 2-core laptop; generous for CI noise
