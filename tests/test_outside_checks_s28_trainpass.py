"""Session 28 (trainpass helper): held-out code items that a training function passes.

Code is held out as whole functions by structure key, but a training function of another key
can pass a held-out item's own tests (`bench/heldout_code_audit.py`). Such an item is not
unseen: a model that memorised the training function passes it. Evaluation now flags each code
item (`meta["passed_by_train_fn"]`: the key of the first training reference that passes, else
None) and prints the accuracy without the flagged items beside the plain one, through the same
machinery as the word-problem flag (`problems.baselines.SEEN_FLAGS`).

The real case pinned here (found with the audit's method at small N): held-out code_function
tier 2, seed 0, `catalogue:reverse_string` (`s[::-1]`) is passed by the training function of
`gen:strcase|contains|suffix|reverse` (`if 'B' in s: return s + 'ed'; return s[::-1]`): no
test input holds a 'B'. Catalogue tasks have no sibling structures to tell apart.

Session 29 (neighbours helper): generation now adds a case holding every character of the
generators' alphabet to such tests ('B' included), so that training function fails the item
(`tests/test_outside_checks_s29_neighbours.py`). To keep testing the flag itself, `_train()`
moves its trigger to 'Q' (no generated string and no test holds one): the same function a
training set of that key could hold with another constant, and it still passes every test.
"""

from __future__ import annotations

import dataclasses
import signal

import pytest

from hillclimb import problems as P
from hillclimb.problems.base import make_problem
from hillclimb.problems.verify import check_many, final_content

HELD_KEY = "catalogue:reverse_string"
TRAIN_KEY = "gen:strcase|contains|suffix|reverse"


def _held() -> list[P.Problem]:
    return P.generate("code_function", 2, 20, 0, "heldout")


def _untriggered(items: list[P.Problem]) -> list[P.Problem]:
    """The items, the TRAIN_KEY ones with their trigger 'B' moved to 'Q' (see above)."""
    return [
        dataclasses.replace(t, answer=t.answer.replace("'B'", "'Q'")) if t.key == TRAIN_KEY else t
        for t in items
    ]


def _train() -> list[P.Problem]:
    return _untriggered(P.generate("code_function", 2, 200, 0, "train"))


def _renamed(src: P.Problem, to: P.Problem) -> str:
    """A training reference under the held-out item's function name: what a model that
    memorised it would write for the held-out prompt."""
    return final_content(src).replace(f"def {src.entry_point}(", f"def {to.entry_point}(")


def test_a_held_out_function_a_training_function_passes_is_flagged_with_its_key():
    from hillclimb.problems.baselines import flag_passed_by_train_fn

    held, train = _held(), _train()
    arith = make_problem("arith", "reasoning", 1, "3 + 5 = ?", {"reasoning": "", "answer": "8"})
    assert flag_passed_by_train_fn([*held, arith], train) == 1
    flagged = [p for p in held if p.meta["passed_by_train_fn"]]
    assert [(p.key, p.meta["passed_by_train_fn"]) for p in flagged] == [(HELD_KEY, TRAIN_KEY)]
    assert all(p.meta["passed_by_train_fn"] is None for p in held if p.key != HELD_KEY)
    assert "passed_by_train_fn" not in arith.meta  # other families keep their own keys
    # the sandbox grader agrees: the training function, renamed, passes the flagged item and
    # fails an item that is not flagged
    fn = next(t for t in train if t.key == TRAIN_KEY)
    other = next(p for p in held if p.key != HELD_KEY)
    assert check_many([flagged[0], other], [_renamed(fn, flagged[0]), _renamed(fn, other)]) == [
        True,
        False,
    ]


def test_nothing_to_compare_with_and_the_same_key_flag_nothing():
    """No training items: every code item is checked and set to None. A training function of
    the item's own key is not another function in disguise (an evaluation split shares no key
    with training, but the rule must not depend on that)."""
    from hillclimb.problems.baselines import flag_passed_by_train_fn

    held = _held()
    assert flag_passed_by_train_fn(held, []) == 0
    assert all(p.meta["passed_by_train_fn"] is None for p in held)
    item = next(p for p in held if p.key == HELD_KEY)
    assert flag_passed_by_train_fn([item], [item]) == 0 and item.meta["passed_by_train_fn"] is None


def test_a_training_function_that_loops_on_foreign_input_is_cut_and_outer_timers_survive():
    """Our references terminate on their own inputs, not on another function's; a call runs
    under an alarm, and the caller's timer (pytest-timeout's, a deadline) is put back."""
    from hillclimb.problems.baselines import flag_passed_by_train_fn

    held = [p for p in _held() if p.key == HELD_KEY]
    fn = next(t for t in _train() if t.key == TRAIN_KEY)
    looping = dataclasses.replace(
        fn,
        key="gen:test|loops",
        meta={},
        answer="def restyle(s):\n    while s == '':\n        pass\n    return s[::-1]\n",
    )
    previous = signal.getitimer(signal.ITIMER_REAL)
    signal.setitimer(signal.ITIMER_REAL, 300.0)
    try:
        # the looping function comes first and would pass every case but '' (which loops)
        assert flag_passed_by_train_fn(held, [looping, fn], timeout_s=0.05) == 1
        assert held[0].meta["passed_by_train_fn"] == TRAIN_KEY
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 250.0 < left <= 300.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, *previous)


def test_off_the_main_thread_nothing_is_flagged_and_a_warning_says_so():
    """The timeout is a SIGALRM alarm, which only the main thread can set: elsewhere the code
    items keep no flag (absent: never checked, so no breakout is printed) rather than run
    foreign inputs unguarded."""
    import threading

    from hillclimb.problems.baselines import flag_passed_by_train_fn

    held = [p for p in _held() if p.key == HELD_KEY]
    train = [t for t in _train() if t.key == TRAIN_KEY]
    out: list[int] = []
    with pytest.warns(RuntimeWarning, match="only the main thread"):
        th = threading.Thread(target=lambda: out.append(flag_passed_by_train_fn(held, train)))
        th.start()
        th.join()
    assert out == [0] and "passed_by_train_fn" not in held[0].meta


def test_every_evaluated_code_item_has_tests_the_flag_can_read():
    """The flag judges the tests the grader runs (`==`, or `is` for True/False/None); a test
    line of another form is refused by name rather than guessed at."""
    from hillclimb.problems.baselines import code_cases

    for fam in ("code_function", "code_bugfix"):
        for t in P.TIERS:
            for p in P.problem_suite(0, "heldout", 5, [fam], [t]):
                assert len(code_cases(p)) == len(p.tests.splitlines()) >= 3
    bad = dataclasses.replace(_held()[0], tests="assert sorted([1]) == [1]")
    with pytest.raises(ValueError, match="is not `assert"):
        code_cases(bad)


class _Backend:
    """Answers the held-out items listed with a training reference renamed to the item's
    function (what memorising it gives), every other item wrongly: a real answer source for
    `eval.problems_suite.backend_rollouts`, its answers graded by the sandbox as any."""

    name, kind = "memorised", "http"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def chat(self, reqs):
        from hillclimb.eval.backends import Completion

        return [Completion(self.answers.get(r.prompt, "pass"), "stop", 8) for r in reqs]

    complete = chat

    def count_tokens(self, texts):
        return None

    def close(self) -> None:
        pass


def test_evaluation_prints_accuracy_without_items_a_training_function_passes(monkeypatch):
    """A model that only memorised the training function scores 1/20 on held-out new functions;
    without the flagged item it scores 0/19, and the eval JSON, the item records, `hillclimb
    eval`'s overall line and the climb report all say so, beside the plain figure."""
    import hillclimb.eval.tasks as tasks
    from hillclimb.climb.report import seen_arith_lines, seen_lines
    from hillclimb.eval.cli import overall_line
    from hillclimb.eval.problems_suite import backend_rollouts

    real = tasks._train_items
    monkeypatch.setattr(tasks, "_train_items", lambda *a: tuple(_untriggered(list(real(*a)))))
    cfg = tasks.TaskEvalConfig(
        n_per_tier=20,
        families=["code_function"],
        tiers=[2],
        splits=["heldout"],
        baseline_train_n=0,
        examples=0,
    )
    item = next(p for p in _held() if p.key == HELD_KEY)
    fn = next(t for t in _train() if t.key == TRAIN_KEY)
    backend = _Backend({item.prompt: _renamed(fn, item)})
    res = tasks.evaluate_tasks(None, cfg, rollout=backend_rollouts(backend), tokenizer=None)
    split = res["splits"]["heldout"]
    assert (split["n"], split["correct"]) == (20, 1)
    # flagged at seed 0 against 500 training references per code family of tier 2: this item
    # only (a tier-4 training function passes one more, `gen:chars|map_swapcase|last`, when
    # tier 4 is evaluated too)
    assert split["without_passed_by_train_fn"] == {
        "n": 19,
        "correct": 0,
        "accuracy": 0.0,
        "flagged": 1,
    }
    flags = {i["id"]: i["passed_by_train_fn"] for i in res["items"]}
    assert flags[item.id] == TRAIN_KEY
    assert sum(v is not None for v in flags.values()) == 1 and len(flags) == 20
    assert split["without_seen_arith"] is None  # no word problems: the word flag stays silent
    assert res["seconds"]["seen_flags"] >= 0
    line = overall_line(res, "heldout")
    assert "overall 5.0% (1/20)" in line
    assert "without 1 code items a training function passes 0.0% (0/19)" in line
    report = " ".join(seen_lines(res))
    assert "training function of another key" in report
    assert "heldout 0.0% (0/19; 1 left out)" in report
    assert seen_arith_lines is seen_lines  # the session-27 name still works
    # a result written before the flag (no field) prints no breakout
    old = {"splits": {"heldout": {k: v for k, v in split.items() if not k.startswith("without")}}}
    assert seen_lines(old) == []
