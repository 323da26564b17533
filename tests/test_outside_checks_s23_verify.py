"""Outside checks (session 23, red team of the reasoning rewards): completions an RL policy could
write to be paid without one right final answer. Each passed for the item's answer before:
hedges with no answer statement (the last-number fallback never judged them), list separators
and "or" words the hedge rule did not know (full-width and ideographic commas, TeX `\\lor`, "ou",
"if not", "‖", "<br>"), a second final answer beside the statement (`\\boxed{}`, "or the answer
is"), an unevaluated expression read as its first number, a division left undone ("42/7": the
question echoed back), a spaced minus read as no sign, "0,005" read as 5, and the format bonus
paid for "the answer is that ..." on a word-answer item."""

from __future__ import annotations

import re

import pytest

from hillclimb.problems import FAMILIES, check_many_details, generate
from hillclimb.problems.base import Problem
from hillclimb.problems.steps import parse_number
from hillclimb.rl.rollout import Rollout


def _reasoning(answer: str, choices: list[str] | None = None) -> Problem:
    meta = {"choices": choices} if choices else {}
    return Problem(id="t/1", family="logic" if choices else "arith", kind="reasoning", tier=1,
                   prompt="q", reasoning="", answer=answer, meta=meta)  # fmt: skip


def _status(p: Problem, completion: str) -> str:
    return check_many_details([p], [completion])[0]["status"]


def _wrong(p: Problem) -> str:
    """Another candidate answer: another choice, else the answer plus one."""
    choices = [str(c) for c in p.meta.get("choices") or [] if str(c) != p.answer]
    if choices:
        return choices[0]
    value = parse_number(p.answer)
    assert value is not None
    return str(value + 1)


_REASONING = [f for f, kind in FAMILIES.items() if kind == "reasoning"]


def _items() -> list[Problem]:
    """A few items of every reasoning family and tier, train and held-out splits."""
    out = []
    for family in _REASONING:
        for tier in (1, 2, 3, 4):
            splits = ("heldout",) if family in ("sequence", "competition") else ("train", "heldout")
            for split in splits:
                out += generate(family, tier, 3, 23, split)
    return out


# ---- hedges the checker paid, measured over every family and tier -------------------------------
_HEDGES = {
    "no statement, or": lambda a, w: f"I think {w} or {a}",
    "no statement, list": lambda a, w: f"{w}, {a}",
    "fullwidth comma": lambda a, w: f"The answer is {a}\uff0c{w}.",
    "ideographic comma": lambda a, w: f"The answer is {a}\u3001{w}.",
    "arabic comma": lambda a, w: f"The answer is {a}\u060c {w}.",
    "fullwidth bar": lambda a, w: f"The answer is {a}\uff5c{w}.",
    "french ou": lambda a, w: f"The answer is {a} ou {w}.",
    "german oder": lambda a, w: f"The answer is {a} oder {w}.",
    "chinese huo": lambda a, w: f"The answer is {a} \u6216 {w}.",
    "russian ili": lambda a, w: f"The answer is {a} \u0438\u043b\u0438 {w}.",
    "if not": lambda a, w: f"The answer is {a} if not {w}.",
    "unless it is": lambda a, w: f"The answer is {a} unless it is {w}.",
    "next line bare": lambda a, w: f"The answer is {a}\n{w}",
    "next line bold": lambda a, w: f"The answer is {a}.\n\n**{w}**",
    "but maybe": lambda a, w: f"The answer is {a} but maybe {w}.",
    "and also": lambda a, w: f"The answer is {a} and also {w}.",
    "range dots": lambda a, w: f"The answer is {a}..{w}.",
    "ellipsis": lambda a, w: f"The answer is {a}\u2026{w}.",
    "tex lor": lambda a, w: f"The answer is ${a} \\lor {w}$.",
    "tex vee": lambda a, w: f"The answer is ${a} \\vee {w}$.",
    "tex quad": lambda a, w: f"The answer is ${a} \\quad {w}$.",
    "tex spaced comma": lambda a, w: f"The answer is ${a},\\ {w}$.",
    "statement and a box": lambda a, w: f"The answer is {a}. \\boxed{{{w}}}",
    "box then statement": lambda a, w: f"\\boxed{{{w}}}\nThe answer is {a}.",
    "or the answer is": lambda a, w: f"The answer is {w}, or the answer is {a}.",
    "next line or the answer is": lambda a, w: f"The answer is {w}.\nOr the answer is {a}.",
}


@pytest.mark.parametrize("name", sorted(_HEDGES))
def test_no_hedge_passes_on_any_family_or_tier(name):
    """Each strategy offers the right answer AND another one. Before: every one of them passed
    on every item of every reasoning family (the numbers are in the report), now none does."""
    items = _items()
    make = _HEDGES[name]
    details = check_many_details(items, [make(p.answer, _wrong(p)) for p in items])
    paid = [
        (p.family, p.tier, d["detail"]) for p, d in zip(items, details, strict=True) if d["passed"]
    ]
    assert not paid, paid[:5]


@pytest.mark.parametrize(
    ("answer", "choices", "completion"),
    [("5", None, "The answer is 5\uff0c6."), ("yes", ["yes", "no"], "The answer is yes\u3001no."),
     ("True", ["True", "False"], "The answer is \\text{True} \\lor \\text{False}."),
     ("True", ["True", "False"], "The answer is True \u0438\u043b\u0438 False."),
     ("5", None, "So it is 5 or 6"), ("5", None, "Either 6, 5"),
     ("5", None, "\\boxed{6} The answer is 5."), ("6/5", None, "The answer is 6/5. \\boxed{6/51}"),
     ("8", None, "The answer is 8. \\boxed{16/2}"), ("5", None, "The answer is \\boxed{5} or \\boxed{6}."),
     ("5", None, "The answer is 6, or maybe the answer is 5."), ("5", None, "The answer is 5<br>6"),
     ("5", None, "The answer is 5&nbsp;or&nbsp;6"), ("5", None, "The answer is $5 \\\\ 6$"),
     ("5", None, "The answer is 5 \u2225 6"), ("5", None, "The answer is 5 \u2016 6"),
     ("5", None, "The answer is 5 \u00a6 6"), ("5", None, "The answer is 5 \u2022 6"),
     ("5", None, "The answer is $5 \\mid 6$"), ("True", ["True", "False"], "The answer is True \u2192 False")],
)  # fmt: skip
def test_more_hedges_are_ambiguous(answer, choices, completion):
    assert _status(_reasoning(answer, choices), completion) == "ambiguous"


@pytest.mark.parametrize(
    ("answer", "completion"),
    [("8", "3 + 5 = 8"), ("8", "So there are 8 apples left."), ("12", "3 \u00d7 4 = 12"),
     ("19", "The answer is 4. Wait, no. The answer is **19**."),
     ("19", "The answer is 4.\nNo wait, the answer is 19."), ("19", "The answer is 4.\nThe answer is 19."),
     ("5", "The answer is \\boxed{5}."), ("5", "\\boxed{5}\nThe answer is 5."),
     ("12", "The answer is 12 (3 \u00d7 4)."), ("12", "The answer is 12, since 3 \u00d7 4 = 12."),
     ("1234", "The answer is 1\uff0c234."), ("5", "The answer is 5 \u2014 or, in words, five."),
     ("1/2", "The answer is $\\frac{1}{2}$."), ("5/6", "The answer is 5\uff0f6."),
     ("15", "The answer is 3 * 5 = 15."), ("11/2", "The answer is 5.5."), ("5", "The answer is 5..."),
     ("12", "The answer is 12.\n3 \u00d7 4 = 12"), ("5", "The answer is 5.\n\n**5**"),
     ("5", "The answer is 5.\n- 5 apples in all")],
)  # fmt: skip
def test_one_answer_still_passes(answer, completion):
    """The hedge rules must not turn an honest single answer into "ambiguous"."""
    assert _status(_reasoning(answer), completion) == "pass", completion


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("2", "Work out 0 + 2.", "no_answer"), ("4", "What is 6 - 6 + 4?", "no_answer"),
     ("5", "It is 3 \u00d7 5", "no_answer"), ("8", "3 + 5 = 8", "pass"), ("8", "So 8.", "pass"),
     ("5", "8 - 3 = 5", "pass")],
)  # fmt: skip
def test_without_a_statement_an_operand_is_no_answer(answer, completion, status):
    """The question echoed back ("Work out 0 + 2.") passed for 2: with no statement the checker
    read the last number, here the expression's second operand."""
    assert _status(_reasoning(answer), completion) == status


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("6", "The answer is 42/7.", "no_answer"), ("6", "Solve: 42/7", "no_answer"),
     ("6", "The answer is \\frac{42}{7}.", "no_answer"), ("6", "The answer is 6/1.", "no_answer"),
     ("1/2", "The answer is 2/4.", "no_answer"), ("-1/2", "The answer is -2/4.", "no_answer"),
     ("7/12", "The answer is 7/12.", "pass"), ("-1/6", "The answer is -1/6.", "pass"),
     ("-1/6", "The answer is \\frac{-1}{6}.", "pass"), ("1/2", "The answer is 1 / 2.", "pass"),
     ("6", "The answer is 42/7 = 6.", "pass")],
)  # fmt: skip
def test_a_division_left_undone_is_no_answer(answer, completion, status):
    """ "The answer is 42/7." (the question "Solve: 42/7" echoed back) passed for 6: every
    division item was paid for copying its question. A fraction answer is in lowest terms."""
    assert _status(_reasoning(answer), completion) == status


def test_echoing_the_question_passes_no_division_item():
    """Before: 22 of these 31 division items (all splits) passed with their own question."""
    items = [p for t in (1, 2, 3, 4) for split in ("train", "heldout", "heldout_phrasing")
             for p in generate("arith", t, 60, 5, split)
             if re.search(r"\d+\s*/\s*\d+", p.prompt) and not re.search(r"[-+\u00d7]", p.prompt)]  # fmt: skip
    assert len(items) > 10
    paid = [
        p.prompt
        for p, d in zip(items, check_many_details(items, [p.prompt for p in items]), strict=True)
        if d["passed"]
    ]
    assert not paid, paid


# ---- what the final answer's value is -------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("3", "The answer is 3 + 5.", "no_answer"), ("3", "The answer is 3 \u00d7 5.", "no_answer"),
     ("3", "The answer is 3 * 5.", "no_answer"), ("3", "The answer is $3 \\times 5$.", "no_answer"),
     ("8", "The answer is 3 + 5 = 8.", "pass"), ("3", "The answer is 3 + 5 = 8.", "fail"),
     ("15", "The answer is 3 \u00d7 5 = 15.", "pass"), ("12", "The answer is 12 (3 \u00d7 4).", "pass")],
)  # fmt: skip
def test_an_expression_is_not_its_first_number(answer, completion, status):
    """ "The answer is 3 + 5." passed for 3 (its first number): the statement's value is the
    expression's, which the checker does not evaluate; after an "=" it is the result (and
    "3 + 5 = 8" failed for 8)."""
    assert _status(_reasoning(answer), completion) == status


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("-5", "The answer is - 5.", "pass"), ("5", "The answer is - 5.", "fail"),
     ("-5", "The answer is \u2212\u00a05.", "pass"), ("5", "The answer is: \u2212 5", "fail"),
     ("5", "Steps:\n- 5 apples", "pass"), ("-1", "The answer is 35 - 36.", "fail")],
)  # fmt: skip
def test_a_minus_sign_with_a_space_is_a_sign(answer, completion, status):
    """ "The answer is - 5." passed for 5 and failed for -5 (a spaced sign was dropped); a
    bullet at a line's start stays a bullet."""
    got = _status(_reasoning(answer), completion)
    assert got == status or (status == "fail" and got == "ambiguous"), got


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [("5", "The answer is 0,005.", "ambiguous"), ("5", "The answer is 00,005.", "ambiguous"),
     ("1234", "The answer is 1,234.", "pass"), ("1234567", "The answer is 1,234,567.", "pass"),
     ("10000", "The answer is 10,000.", "pass"), ("5", "I count 0,005", "ambiguous")],
)  # fmt: skip
def test_a_thousands_group_never_starts_with_zero(answer, completion, status):
    """ "0,005" (0.005 with a decimal comma) read as 5 and passed for 5: no number is written
    with a leading zero before a thousands comma."""
    assert _status(_reasoning(answer), completion) == status


# ---- the format bonus --------------------------------------------------------------------------
def _rollout(p: Problem, text: str) -> Rollout:
    return Rollout(problem=p, sample=0, prompt_ids=[1], text=text, content_text=text)


@pytest.mark.parametrize(
    ("text", "paid"),
    [("The answer is that we must check each case.", False), ("The answer is: maybe.", False),
     ("The answer is Pia.", True), ("The answer is **rex**.", True),
     ("The answer is Pia or Rex.", False)],
)  # fmt: skip
def test_format_bonus_on_a_word_answer_needs_one_of_its_choices(text, paid):
    """On a logic item whose answer is a name or yes/no, "The answer is that ..." extracted the
    word "that" and earned the format bonus: any sentence with "answer is" did. A real final
    answer is one of the item's choices."""
    from hillclimb.rl.rewards import has_format, load_reward

    p = _reasoning("Pia", ["Rex", "Pia", "Sia"])
    r = _rollout(p, text)
    assert has_format(r) is paid
    reward = load_reward(None, format_bonus=0.1)
    assert reward(r) == reward(r) == pytest.approx(0.1 if paid else 0.0)


def test_format_bonus_is_never_paid_without_a_final_answer_on_real_items():
    """Over every family and tier: statements with no answer in them earn nothing."""
    from hillclimb.rl.rewards import load_reward

    reward = load_reward(None, format_bonus=0.1)
    for p in _items():
        for text in ["The answer is that it depends.", "The answer is unknown.", "answer: ?",
                     f"<think>The answer is {p.answer}.</think>", f"The answer is {p.answer} or {_wrong(p)}."]:  # fmt: skip
            r = _rollout(p, text)
            from hillclimb.problems import check

            r.passed = check(p, text)
            assert reward(r) == 0.0, (p.family, p.answer, text)
