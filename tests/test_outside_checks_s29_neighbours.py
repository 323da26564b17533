"""Session 29 (neighbours helper): held-out code items whose tests a near neighbour passed.

`baselines.flag_passed_by_train_fn` marks a held-out code item a training function of another
key passes (25 of 320 items at 1,500 training items per family x tier, seed 0). Measured
(`bench/heldout_code_audit.py --eval-flag`): in most pairs the two functions differ on the
item's own inputs, but the tests did not exercise the difference, so a wrong function got full
reward. Two of those were string rules on one character no test held; generation now adds to
every function of one string (generated, or a catalogue task whose spec holds for any string)
a case holding every character generated strings draw from (`codegen.alphabet_case`; never a
reason to refuse a function, so which functions are drawn does not move).
"""

from __future__ import annotations

from hillclimb import problems as P
from hillclimb.problems.baselines import code_cases
from hillclimb.problems.codetasks import compile_function


def _passes_all(source: str, name: str, p: P.Problem) -> bool:
    fn = compile_function(source, name)
    for case in code_cases(p):
        try:
            got = fn(*case.args)
        except Exception:  # noqa: BLE001 - raising fails the test
            return False
        if not case.passed_by(got):
            return False
    return True


def _item(family: str, tier: int, key: str) -> P.Problem:
    return next(p for p in P.generate(family, tier, 20, 0, "heldout") if p.key == key)


def test_held_out_reverse_string_fails_the_training_function_that_passed_it():
    """Session 28's real case: "reverse unless s holds a 'B'" (a training function of
    `gen:strcase|contains|suffix|reverse`) passed every test of held-out `reverse_string`."""
    item = _item("code_function", 2, "catalogue:reverse_string")
    assert _passes_all(item.answer, item.entry_point, item)
    trained = (
        "def reverse_string(s):\n    if 'B' in s:\n        return s + 'ed'\n    return s[::-1]\n"
    )
    assert not _passes_all(trained, "reverse_string", item)
    # any rule on one character of the generators' alphabet fails too, not only 'B'
    from hillclimb.problems.codegen_ends import ALPHABET

    held = set("".join(c.args[0] for c in code_cases(item)))
    assert set(ALPHABET) <= held


def test_held_out_bugfix_upcase_fails_a_training_function_with_a_filter_inserted():
    """Real case at 1,500 training items: held-out code_bugfix `gen:chars|map_upcase|list` was
    passed by the training `gen:chars|filter_other|map_upcase|list` dropping 'i' (no test held
    an 'i'; the filtered pipeline is two parts away, so not a sibling)."""
    item = _item("code_bugfix", 2, "gen:chars|map_upcase|list")
    assert _passes_all(item.answer, item.entry_point, item)
    trained = (
        f"def {item.entry_point}(s):\n    out = []\n    for ch in s:\n        if ch != 'i':\n"
        "            out.append(ch.upper())\n    return out\n"
    )
    assert not _passes_all(trained, item.entry_point, item)


def test_one_string_items_hold_every_character_a_generated_rule_tests_for():
    """Every held-out generated one-string item of tiers 1-2 (both families) has tests holding
    every character of `ALPHABET` (catalogue tasks only where `OPEN_DOMAIN`); a catalogue task
    whose strings must be lowercase (`caesar`) gets no such case."""
    from hillclimb.problems import codegen_ends

    drawn = set(codegen_ends._ALPHABET)  # what generated strings draw from

    checked = 0
    for fam in ("code_function", "code_bugfix"):
        for tier in (1, 2):
            for p in P.generate(fam, tier, 20, 0, "heldout"):
                cases = code_cases(p)
                if not all(len(c.args) == 1 and isinstance(c.args[0], str) for c in cases):
                    continue
                if p.meta["origin"] != "generated":
                    continue  # catalogue tasks: see below and the reverse_string test
                assert drawn <= set("".join(c.args[0] for c in cases)), p.key
                checked += 1
    assert checked >= 10
    from hillclimb.problems.codegen import with_alphabet_case
    from hillclimb.problems.codetasks import OPEN_DOMAIN, TASKS, instance, task_index

    assert set(codegen_ends.ALPHABET) == drawn
    assert "reverse_string" in OPEN_DOMAIN and "caesar" not in OPEN_DOMAIN

    caesar = instance(task_index(next(t for t in TASKS if t.name == "caesar")), (("k", 3),))
    assert with_alphabet_case(caesar) is caesar
