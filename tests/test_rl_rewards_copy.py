"""`rewards.score` deep-copies the rollout for a user's reward (which may edit it) and not for
the project's own read-only rewards (copying every rollout of every step for them was pure
overhead)."""

from __future__ import annotations

import pytest

from hillclimb.problems.base import Problem


def _rollout():
    from hillclimb.rl.rollout import Rollout

    p = Problem(id="arith/t1/x", family="arith", kind="reasoning", tier=1, prompt="2 + 3?",
                reasoning="", answer="5")  # fmt: skip
    return Rollout(problem=p, sample=0, prompt_ids=[1, 2], completion_ids=[3, 4],
                   logprobs=[-0.1, -0.2], forced=[False, False], text="The answer is 5.",
                   finish_reason="stop", completion_tokens=2, passed=True, status="pass")  # fmt: skip


@pytest.mark.parametrize("bonus", [0.0, 0.1])
@pytest.mark.parametrize("spec", [None, "hillclimb.rl.rewards:placebo"])
def test_our_rewards_get_the_rollout_itself_and_custom_ones_a_copy(spec, bonus):
    from hillclimb.rl import rewards

    seen = []
    r = _rollout()
    fn = rewards.load_reward(spec, format_bonus=bonus)
    rewards.score(lambda x: seen.append(x) or fn(x), r)  # a custom reward: a copy
    assert seen[0] is not r and seen[0].completion_ids == r.completion_ids
    assert getattr(fn, "_hillclimb_reads_only", False)
    v = rewards.score(fn, r)
    assert v == fn(r)  # the same value as the uncopied call


def test_a_wrapped_custom_reward_still_gets_a_copy(tmp_path, monkeypatch):
    from hillclimb.rl import rewards

    (tmp_path / "hc_s20_meddle.py").write_text(
        "def fn(r):\n    r.completion_ids.append(9)\n    return 1.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = rewards.load_reward("hc_s20_meddle:fn", format_bonus=0.1)
    assert not getattr(fn, "_hillclimb_reads_only", False)
    r = _rollout()
    assert rewards.score(fn, r) == pytest.approx(1.1)
    assert r.completion_ids == [3, 4]


def test_the_default_reward_is_not_copied(monkeypatch):
    from hillclimb.rl import rewards

    def no_copy(x, memo=None):
        raise AssertionError("deep-copied a read-only reward's rollout")

    monkeypatch.setattr(rewards.copy, "deepcopy", no_copy)
    assert rewards.score(rewards.load_reward(None), _rollout()) == 1.0
