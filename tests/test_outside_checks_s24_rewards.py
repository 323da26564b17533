"""Session 24 red team of the reasoning reward: answers that state more than one candidate (or
none the checker evaluates) and were still paid, and the legitimate phrasings that must stay paid.

Every hedge below passed `check` for its first candidate before session 24 (measured over 378
held-out items of every reasoning family and tier; see docs/LOG.md)."""

from __future__ import annotations

import pytest

from hillclimb.problems import FAMILIES, TIERS, generate
from hillclimb.problems.base import Problem
from hillclimb.problems.verify import answer_is_hedged, check, check_many_details, final_content


def _numeric(answer: str) -> Problem:
    return Problem(
        id="n", family="arith", kind="reasoning", tier=1, prompt="", reasoning="", answer=answer
    )


def _choice(answer: str, choices: list[str]) -> Problem:
    return Problem(
        id="w",
        family="logic",
        kind="reasoning",
        tier=1,
        prompt="",
        reasoning="",
        answer=answer,
        meta={"choices": choices},
    )


TRUTH = _choice("True", ["True", "False"])
YES = _choice("yes", ["yes", "no"])
FIVE = _numeric("5")

# (problem, completion): each names two different answers, the right one first
HEDGES = [
    # both truth values joined by an operator
    (TRUTH, "The answer is True + False."),
    (TRUTH, "The answer is True × False."),
    (TRUTH, "The answer is True * False."),
    (TRUTH, "The answer is True · False."),
    (TRUTH, "The answer is True plus False."),
    (TRUTH, "The answer is True = False."),
    # spaced em/en dashes and other joining symbols before a bare second value
    (FIVE, "The answer is 5 — 6."),
    (FIVE, "The answer is 5— 6."),
    (FIVE, "The answer is 5 —6."),
    (TRUTH, "The answer is True — False."),
    (TRUTH, "The answer is True —False."),
    (FIVE, "The answer is 5 = 6."),
    (FIVE, "The answer is 5 ≈ 6."),
    (FIVE, "The answer is 5 = 6 = 5."),
    (FIVE, "The answer is x = 5 — 6."),
    (FIVE, "The answer is 5: 6."),
    (FIVE, "The answer is 5. 6."),
    (FIVE, "The answer is 5! 6!"),
    (FIVE, "The answer is 5? 6?"),
    # the second answer in letters or digits the checker did not read
    (FIVE, "The answer is 5 or ⁶."),
    (TRUTH, "The answer is True or F\u0430lse."),  # Cyrillic a
    (YES, "The answer is yes or n\u043e."),  # Cyrillic o
    (FIVE, "The answer is 5 ｏｒ 6."),
    (FIVE, "The answer is 5 ᵒʳ 6."),
    (TRUTH, "The answer is True或者False."),
    # another answer offered in words
    (FIVE, "The answer is 5. It could also be 6."),
    (FIVE, "The answer is 5.\n\nIt might also be 6."),
    (FIVE, "The answer is 5, but the answer could also be 6."),
    (FIVE, "The answer is 5 or so, maybe 6."),
    (FIVE, "The answer is 5, though 6 is also possible."),
    (FIVE, "The answer is 5. Also possible: 6."),
    (FIVE, "The answer is 5 (6 if rounding)."),
    (FIVE, "The answer is 5.\nAlternatively: 6."),
    (FIVE, "Final answer: 5 (alternative: 6)"),
    (FIVE, "Answer: 5\nAnswer (alt): 6"),
    (FIVE, "The answer is 5 or\n6"),
    (FIVE, "The answer is 5.\n\n> 6"),
    (FIVE, "The answer is 5 through 6."),
    (FIVE, "The answer is 5 plus or minus 1."),
    (FIVE, "The answer is 5 u 6."),
    (FIVE, "The answer is 5 либо 6."),
    (FIVE, "The answer is 5 oppure 6."),
    # lists of candidates under a statement, and an answer added to the one before it
    (FIVE, "The answer is:\n- 5\n- 6"),
    (_numeric("1"), "The answer is:\n1. 1\n2. 2"),
    (FIVE, "The answer is 6. The answer is also 5."),
    (FIVE, "The answer is 6.\nThe answer is also 5."),
]


@pytest.mark.parametrize(("p", "completion"), HEDGES)
def test_an_answer_naming_two_candidates_is_not_paid(p: Problem, completion: str) -> None:
    assert not check(p, completion)
    assert answer_is_hedged(p, completion)
    (detail,) = check_many_details([p], [completion])
    assert detail["status"] == "ambiguous", detail


# (problem, completion): one answer, explained or restated; all must stay paid
ONE_ANSWER = [
    (_numeric("12"), "The answer is 12 (3 × 4)."),
    (_numeric("12"), "The answer is 12 = 3 × 4."),
    (_numeric("35"), "The answer is 35 — 5 × 7."),
    (_numeric("8"), "The answer is 3 + 5 = 8."),
    (_numeric("8"), "3 + 5 = 8"),
    (_numeric("6"), "The answer is 42/7 = 6."),
    (_numeric("48/77"), "The answer is 48/77 ≈ 0.62."),
    (_numeric("1/3"), "The answer is 1/3 = 0.333..."),
    (_numeric("116"), "Adding 10: [116, 112].\nSubsets with sum ≡ 0: 116."),
    (_numeric("9"), "Reduce modulo 16 at each step: 9^1 ≡ 9, 9^2 ≡ 1, 9^3 ≡ 9."),
    (_numeric("5"), "5 > 4.\n5"),
    (_numeric("7"), "The answer is 7 > 2."),
    (FIVE, "The answer is 5, not 6."),
    (FIVE, "The answer is 5 — that is the result."),
    (FIVE, "The answer is 5. 5 is the result."),
    (FIVE, "The answer is 5! Done."),
    (FIVE, "The answer is:\n5"),
    (FIVE, "The answer is:\n- 5"),
    (FIVE, "The answer is 5.\n1. Check: it fits."),
    (FIVE, "The answer is 6. Hmm, maybe I slipped.\nThe answer is 5."),
    (FIVE, "The answer is **5**."),
    (FIVE, "\\boxed{5}"),
    (FIVE, "The answer is 5.0."),
    (_numeric("4"), "The answer is 2² = 4."),
    (YES, "The answer is no.\nWait, no. The answer is yes."),
    (YES, "No — the answer is yes."),
    (TRUTH, "The answer is True, since False is refuted."),
    (_choice("Ann", ["Ann", "Bob"]), "The answer is Ann (Ann > Bob)."),
]


@pytest.mark.parametrize(("p", "completion"), ONE_ANSWER)
def test_one_answer_is_still_paid(p: Problem, completion: str) -> None:
    assert check(p, completion), check_many_details([p], [completion])


def test_an_expression_in_words_is_its_value_after_the_equals() -> None:
    """ "6 times 7 = 42" read as 6 (failed for 42) and "6 times 7" passed for 6."""
    assert check(_numeric("42"), "The answer is 6 times 7 = 42.")
    assert not check(_numeric("6"), "The answer is 6 times 7.")
    assert check(_numeric("20"), "The answer is 4 multiplied by 5 = 20.")


def _reasoning_items() -> list[Problem]:
    out: list[Problem] = []
    for family, kind in FAMILIES.items():
        if kind == "reasoning":
            for tier in TIERS:
                out += generate(family, tier, 5, 11, "heldout")
    return out


def test_references_and_worked_solutions_still_pass_everywhere() -> None:
    items = _reasoning_items()
    assert len({p.family for p in items}) >= 6 and len(items) >= 100
    for p in items:
        assert check(p, final_content(p)), p.answer
        assert check(p, f"<think>\n{p.reasoning}\n</think>\n{final_content(p)}"), p.answer
        assert check(p, p.reasoning + "\n" + final_content(p)), p.answer


def test_an_operator_between_the_answer_and_another_choice_is_never_paid() -> None:
    """The red-team figure in one test: over items of every reasoning family, "A — B", "A = B"
    and "A + B" with B another choice (or A + 1) pay nothing (they paid 378, 378 and 54 of 378
    before session 24)."""
    items = _reasoning_items()
    paid = 0
    for p in items:
        choices = [str(c) for c in p.meta.get("choices") or []]
        others = [c for c in choices if c.casefold() != p.answer.casefold()]
        other = others[0] if others else str(int(p.answer.split("/")[0]) + 1)
        for sep in (" — ", " = ", " + ", ": "):
            paid += check(p, f"The answer is {p.answer}{sep}{other}.")
    assert paid == 0
