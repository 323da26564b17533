"""Answer extraction and reasoning checks (no sandbox needed)."""

from __future__ import annotations

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.problems import Problem, check, check_many, check_many_details, extract_answer


def _p(answer: str, kind: str = "reasoning") -> Problem:
    return Problem(
        id="x/t1/0", family="arith", kind=kind, tier=1, prompt="?", reasoning="", answer=answer
    )


@pytest.mark.parametrize(
    ("answer", "completion"),
    [
        ("8", "The answer is 8."),
        ("8", "the answer is   8"),
        ("8", "3 + 5 = 8.\nThe answer is +8 ."),
        ("1234", "The answer is 1,234."),
        ("-3", "The answer is −3."),
        ("-3", "Answer: -3"),
        ("12", "The answer is $12."),
        ("7/12", "The answer is 7/12."),
        ("7/12", "The answer is 7 / 12"),
        ("1/2", "The answer is 0.5."),
        ("19", "The answer is 19 dollars."),
        ("19", "<think>The answer is 4.</think>The answer is 19."),
        ("19", "The answer is 4. Wait, no. The answer is **19**."),
        ("8", "so it is \\boxed{8}"),
        ("8", "3 + 5 = 8."),  # numeric fallback: last number of the final content
        ("yes", "The answer is Yes."),
        ("True", "The answer is true."),
        ("Eli", "The answer is Eli."),
    ],
)
def test_extract_and_check_accepts(answer, completion):
    assert check(_p(answer), completion), (answer, completion)


@pytest.mark.parametrize(
    ("answer", "completion"),
    [
        ("8", "The answer is 9."),
        ("8", "The answer is 18."),
        ("8", ""),
        ("8", "I don't know."),
        ("7/12", "The answer is 7/13."),
        ("yes", "The answer is no."),
        ("Eli", "The answer is Bob."),
        ("Eli", "Eli is the tallest."),  # word answers need the answer phrase
    ],
)
def test_check_rejects(answer, completion):
    assert not check(_p(answer), completion)


def test_extract_answer_values():
    assert extract_answer(_p("8"), "The answer is 08.") == "8"
    assert extract_answer(_p("yes"), "the answer is: YES!") == "yes"
    assert extract_answer(_p("8"), "nothing here") is None


def test_extract_code_blocks():
    p = _p("def f():\n    return 1\n", kind="code")
    assert extract_answer(p, "```python\ndef f():\n    return 2\n```") == "def f():\n    return 2\n"
    two = "```python\nx = 1\n```\ntext\n```py\ndef f():\n    return 3\n```"
    assert extract_answer(p, two) == "def f():\n    return 3\n"
    assert extract_answer(p, "def f():\n    return 4") == "def f():\n    return 4\n"
    assert extract_answer(p, "<think>```python\nbad\n```</think>```python\ngood\n```") == "good\n"
    assert extract_answer(p, "```python\ndef f():\n    return 5\n") == "def f():\n    return 5\n"


def test_check_many_reasoning_only_and_length_mismatch():
    ps = [_p("8"), _p("9")]
    assert check_many(ps, ["The answer is 8.", "The answer is 8."]) == [True, False]
    details = check_many_details(ps, ["The answer is 8.", "no idea"])
    assert [d["status"] for d in details] == ["pass", "no_answer"]
    with pytest.raises(HillclimbError, match="pair up"):
        check_many(ps, ["x"])


def test_cli_register_show_export(tmp_path, capsys):
    import argparse
    import json

    from hillclimb.problems import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["problems", "show", "--family", "arith", "-n", "2", "--json"])
    assert args.func(args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 2 and shown[0]["family"] == "arith"
    out = tmp_path / "suite.jsonl"
    args = parser.parse_args(
        [
            "problems",
            "export",
            "--out",
            str(out),
            "--format",
            "messages",
            "--n-per-tier",
            "2",
            "--families",
            "logic",
        ]
    )
    assert args.func(args) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["messages"][1]["role"] == "assistant"
    args = parser.parse_args(["problems", "export", "--out", str(out), "--families", "nope"])
    with pytest.raises(HillclimbError):
        args.func(args)


def test_export_lists_take_commas_or_spaces(tmp_path):
    """`--families arith,logic --tiers 1,2` (as eval and rl take lists) = `arith logic` `1 2`."""
    from hillclimb.cli import main

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    base = ["problems", "export", "--n-per-tier", "2"]
    assert main([*base, "--families", "arith,logic", "--tiers", "1,2", "--out", str(a)]) == 0
    assert main([*base, "--families", "arith", "logic", "--tiers", "1", "2", "--out", str(b)]) == 0
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 8
    assert main([*base, "--tiers", "one", "--out", str(tmp_path / "c.jsonl")]) == 2


def test_a_hedged_final_answer_is_never_correct():
    """ "The answer is 35 or 36 or 7." passed for 35 (the checker took the first number): a
    policy that lists candidates would be paid for it. Several different answers joined by a
    list separator, or several different boxed answers, are `ambiguous`; explanations after
    the answer, repeats of one value and self-corrections (the last statement wins) are not."""
    from hillclimb.problems import check_many_details, generate
    from hillclimb.problems.verify import answer_is_hedged

    num = generate("arith", 2, 1, 0, "train")[0]
    a = num.answer
    for text, ok in (
        (f"The answer is {a}.", True),
        (f"The answer is **{a}**, since it is the sum.", True),
        (f"The answer is {a}, since 3 × 4 = 12.", True),
        (f"The answer is {a} or {a}.", True),
        (f"The answer is 999.\nNo wait, the answer is {a}.", True),
        (f"The answer is {a} or 7 or 8.", False),
        (f"The answer is {a}, 999.", False),
        (f"Answer: {a}; maybe 1", False),
        (f"\\boxed{{999}} and \\boxed{{{a}}}", False),
    ):
        assert check(num, text) is ok, text
        assert answer_is_hedged(num, text) is (not ok), text
    yn = next(p for p in generate("logic", 1, 40, 0, "train") if p.answer in ("yes", "no"))
    other = "no" if yn.answer == "yes" else "yes"
    assert check(yn, f"The answer is {yn.answer}.")
    assert not check(yn, f"The answer is {yn.answer} or {other}.")
    assert not check(yn, f"The answer is {yn.answer}/{other}.")
    (d,) = check_many_details([num], [f"The answer is {a} or 7."])
    assert d["status"] == "ambiguous" and not d["passed"]


def test_plus_minus_between_equal_numbers_is_a_hedge() -> None:
    """ "1 ± 1" is a range (0 to 2) though its two numbers are equal; it passed for 1 (session 23)."""
    from hillclimb.problems import generate
    from hillclimb.problems.verify import answer_is_hedged

    p = next(x for x in generate("arith", 1, 30, seed=0, split="heldout") if x.answer != "0")
    a = p.answer
    for t in (
        f"The answer is {a} ± {a}.",
        f"The answer is {a} +/- {a}.",
        f"$\\boxed{{{a} \\pm {a}}}$",
    ):
        assert answer_is_hedged(p, t), t
    assert not answer_is_hedged(p, f"The answer is {a}.")
    assert not answer_is_hedged(p, f"The answer is {a}, since {a} = {a}.")
