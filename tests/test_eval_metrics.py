"""pass@k against the closed form, baselines on crafted data, rollout statuses."""

from __future__ import annotations

import math
import random

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.eval.metrics import mean_pass_at_k, pass_at_k
from hillclimb.problems import Problem
from hillclimb.problems.baselines import cell_baselines, summarise


@pytest.mark.parametrize("n", [1, 2, 5, 10, 40])
def test_pass_at_k_equals_closed_form(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_is_the_probability_some_of_k_draws_pass():
    """Monte Carlo: draw k of the n samples without replacement."""
    rng = random.Random(0)
    n, c, k = 10, 3, 4
    hits = sum(any(rng.sample([1] * c + [0] * (n - c), k)) for _ in range(20000))
    assert hits / 20000 == pytest.approx(pass_at_k(n, c, k), abs=0.015)


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert mean_pass_at_k([(4, 0), (4, 4)], 1) == pytest.approx(0.5)
    assert mean_pass_at_k([], 1) == 0.0
    with pytest.raises(HillclimbError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)
    with pytest.raises(HillclimbError):
        pass_at_k(2, 3, 1)


def _p(prompt, answer, choices=None, i=0):
    return Problem(
        id=f"x/t1/{i}",
        family="x",
        kind="reasoning",
        tier=1,
        prompt=prompt,
        reasoning="",
        answer=answer,
        meta={"choices": choices} if choices else {},
    )


def test_lookup_majority_and_chance_on_crafted_items():
    train = [
        _p("What is 2 + 3?", "5", i=1),
        _p("What is 4 + 4?", "8", i=2),
        _p("What is 9 + 9?", "8", i=3),  # a wrong record: lookup copies answers, it does not add
    ]
    items = [
        _p("What is 2 + 3?", "5", i=10),  # exact twin in training: lookup is right
        _p("What is 9 + 9?", "18", i=11),  # twin with another answer: lookup is wrong
        _p("Compute 4 + 4.", "8", i=12),  # nearest by tokens is "4 + 4": right
        _p("Is 7 greater than 2? Answer yes or no.", "yes", ["yes", "no"], i=13),
    ]
    out = cell_baselines(items, train)
    assert [o["lookup"] for o in out] == [True, False, True, False]
    assert [o["majority"] for o in out] == [False, False, True, False]  # majority answer "8"
    assert [o["chance"] for o in out] == [None, None, None, 0.5]
    s = summarise(out)
    assert s.lookup == 0.5 and s.majority == 0.25 and s.chance == pytest.approx(0.5 / 4)
    assert s.best == 0.5


def test_baselines_without_training_items():
    out = cell_baselines([_p("a or b?", "a", ["a", "b"])], [])
    assert out == [{"lookup": False, "majority": None, "chance": 0.5}]
    assert summarise(out).best == 0.5


class _Tok:
    def encode_chat(self, messages, add_generation_prompt=True):
        return list(range(len(messages[0]["content"])))


class _Engine:
    """Scripted completions: the subject here is how rollouts classify outcomes, not the model."""

    max_context = 40
    tokenizer = _Tok()

    def __init__(self, script):
        self.script = script
        self.calls = []

    def generate_batch(self, prompts, params):
        from types import SimpleNamespace

        outs = []
        for ids, sp in zip(prompts, params, strict=True):
            self.calls.append(sp)
            text, reason = self.script[len(ids)]
            outs.append(
                SimpleNamespace(
                    token_ids=[1] * len(text), text=text, reasoning_text="", content_text=text,
                    finish_reason=reason, completion_tokens=len(text), reasoning_tokens=0,
                    logprobs=None, policy_logprobs=None, forced=None,
                )
            )  # fmt: skip
        return outs


def test_rollout_statuses_truncated_is_not_silently_wrong():
    from hillclimb.rl.rollout import rollout_and_check

    items = [
        _p("What is 1 + 1?", "2", i=1),  # 14 chars: answered, stopped normally
        _p("What is 1 + 2?!", "3", i=2),  # 15: cut off by the budget before answering
        _p("What is 1 + 3?!!", "4", i=3),  # 16: answered, then cut off (still correct)
        _p("What is 1 + 4?!!!", "5", i=4),  # 17: wrong answer, stopped normally
        _p("x" * 39, "0", i=5),  # leaves no room in the 40-token context
    ]
    eng = _Engine(
        {
            14: ("The answer is 2.", "stop"),
            15: ("Let me think about", "length"),
            16: ("The answer is 4. And also", "length"),
            17: ("The answer is 6.", "stop"),
        }
    )
    rs = rollout_and_check(eng, items, max_tokens=[8, 8, 8, 8, 8], temperature=0.0)
    assert [r.status for r in rs] == ["pass", "truncated", "pass", "fail", "prompt_too_long"]
    assert [r.truncated for r in rs] == [False, True, True, False, False]
    assert [r.passed for r in rs] == [True, False, True, False, False]
    assert all(sp.max_tokens <= 40 - 14 for sp in eng.calls)


def test_rollout_seeds_depend_on_problem_and_sample_not_batching():
    from hillclimb.rl.rollout import rollout_and_check, sample_seed

    items = [_p("What is 1 + 1?", "2", i=1), _p("What is 1 + 2?", "3", i=2)]
    script = {14: ("The answer is 2.", "stop")}
    a, b = _Engine(script), _Engine(script)
    rollout_and_check(a, items, n=3, temperature=1.0, seed=7, batch_size=1)
    rollout_and_check(b, items, n=3, temperature=1.0, seed=7, batch_size=5)
    assert [sp.seed for sp in a.calls] == [sp.seed for sp in b.calls]
    assert len({sp.seed for sp in a.calls}) == 6
    assert a.calls[0].seed == sample_seed(7, "x/t1/1", 0)


def test_a_problem_drawn_twice_gets_fresh_samples_the_second_time():
    """The curriculum draws with replacement; a problem twice in one step was sampled with the
    same seeds both times (identical groups: a doubled gradient, no new information). The first
    occurrence keeps its seeds."""
    from hillclimb.rl.rollout import rollout_and_check, sample_seed

    x, y = _p("What is 1 + 1?", "2", i=1), _p("What is 1 + 2?", "3", i=2)
    script = {14: ("The answer is 2.", "stop")}
    a, b = _Engine(script), _Engine(script)
    rollout_and_check(a, [x, y, x], n=2, temperature=1.0, seed=7)
    rollout_and_check(b, [x, y], n=2, temperature=1.0, seed=7)
    seeds = [sp.seed for sp in a.calls]
    assert seeds[:4] == [sp.seed for sp in b.calls]  # no repeat before: unchanged
    assert len(set(seeds)) == 6 and seeds[4:] == [sample_seed(7, "x/t1/1", i) for i in (2, 3)]


def test_repeats_given_by_a_ddp_rank_number_them_as_one_process_would():
    from hillclimb.rl.rollout import repeat_index, rollout_and_check

    x, y = _p("What is 1 + 1?", "2", i=1), _p("What is 1 + 2?", "3", i=2)
    draw = [x, y, x, x]
    assert repeat_index(draw) == [0, 0, 1, 2]
    script = {14: ("The answer is 2.", "stop")}
    whole, rank1 = _Engine(script), _Engine(script)
    rollout_and_check(whole, draw, n=2, temperature=1.0, seed=7)
    # rank 1 of 2 holds positions 1 and 3 (y and the third x)
    rollout_and_check(rank1, [y, x], n=2, temperature=1.0, seed=7, repeats=[0, 2])
    assert [sp.seed for sp in rank1.calls] == [sp.seed for sp in whole.calls][2:4] + [
        sp.seed for sp in whole.calls
    ][6:8]


def test_pass_fail_intervals_are_wilson_and_cover_the_true_rate():
    """Unweighted 0/1 items get the Wilson interval at every count: the percentile bootstrap
    covered a true rate of 0.2 in ~85% of 16-item samples and gave [0%, 15%] for 1 of 20
    (session 23). Coverage is checked here by simulation against the nominal 95%."""
    import random

    from hillclimb.eval.metrics import bootstrap_ci, wilson_ci

    assert bootstrap_ci([1.0] + [0.0] * 19) == wilson_ci(1, 20)
    assert bootstrap_ci([1.0] + [0.0] * 19)[0] > 0
    rng, hits, trials = random.Random(0), 0, 2000
    for _ in range(trials):
        vals = [1.0 if rng.random() < 0.2 else 0.0 for _ in range(16)]
        lo, hi = bootstrap_ci(vals, resamples=200)
        hits += lo <= 0.2 <= hi
    assert hits / trials >= 0.92
    # weighted ratios (instruction-level accuracy) keep the cluster bootstrap
    assert bootstrap_ci([1.0, 0.0, 2.0], [2.0, 1.0, 2.0]) != wilson_ci(3, 3)
