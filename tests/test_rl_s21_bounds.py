"""RL input bounds found in review: dynamic sampling's "all rewards equal" test is relative to
the rewards' size, and the group size has an upper bound checked before any work."""

from __future__ import annotations

import pytest

from hillclimb.errors import ConfigError
from hillclimb.rl.config import RLConfig
from hillclimb.rl.grpo import step_stats, tally_group


def _tally(rewards: list[float]) -> list[float] | None:
    n = len(rewards)
    return tally_group(
        step_stats(), "c", [False] * n, [False] * n, [1] * n, rewards, rewards,
        dynamic_sampling=True, std_norm=True,
    )  # fmt: skip


def test_a_small_scale_reward_still_trains():
    """A reward scaled to 1e-10 was dropped as 'all equal' by an absolute 1e-9 threshold."""
    adv = _tally([0.0, 1e-10, 0.0, 1e-10])
    assert adv is not None and adv[1] > 0 > adv[0]


def test_rounding_differences_are_still_equal():
    assert _tally([0.1 * 3, 0.3, 0.3]) is None  # differ by rounding only
    assert _tally([0.0, 0.0]) is None
    assert _tally([5.0, 5.0 + 1e-6]) is not None  # a real (small) difference


@pytest.mark.parametrize(("g", "p"), [(80_000, 1), (1024, 100)])
def test_an_absurd_group_size_is_refused_before_work(g, p):
    with pytest.raises(ConfigError, match="group_size"):
        RLConfig(
            init="x", out="y", group_size=g, prompts_per_step=p, pool_size=max(p, 64)
        ).validate_rl()


def test_published_group_sizes_are_accepted():
    RLConfig(init="x", out="y", group_size=64, prompts_per_step=32).validate_rl()


def test_thinking_tokens_count_the_sampled_block_without_tags():
    """Budget conditioning's overshoot counts think tokens; estimated from reasoning_tokens
    (tags included) it was one too many for a block closed and then truncated, and one too
    few when the prompt opened the block."""
    from hillclimb.problems import generate
    from hillclimb.rl.rewards import thinking_tokens
    from hillclimb.rl.rollout import Rollout, _think_tokens
    from hillclimb.serve.budget import ThinkState
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    ts, te = tok.token_id("<think>"), tok.token_id("</think>")
    a, b = tok.encode("ab")
    prompt = tok.encode("hi")
    p = generate("arith", 1, 1, 0)[0]

    def case(prompt_ids, comp, reason):
        st = ThinkState.for_prompt(tok, prompt_ids, None)
        for t in comp:
            st.observe(t)
        r = Rollout(problem=p, sample=0, prompt_ids=prompt_ids, completion_ids=comp,
                    reasoning_tokens=st.reasoning_tokens, finish_reason=reason)  # fmt: skip
        r.think_tokens, r.content_tokens = _think_tokens(tok, prompt_ids, comp)
        return thinking_tokens(r)

    assert case(prompt, [ts, a, b, te, a], "length") == 2  # closed, then cut: was 3
    assert case([*prompt, ts], [a, b, te, a], "stop") == 2  # the prompt opened it: was 1
    assert case(prompt, [ts, a, b, a], "length") == 3  # never closed
    assert case(prompt, [a, b], "stop") == 0


def test_reasoning_outside_the_think_block_is_charged_to_the_budget():
    """Counting only the think block let a budget-noted policy skip `<think>` and reason in the
    content for free (red team, session 21): tokens outside the block beyond the answer's
    allowance now count as thinking; an answer within its allowance costs nothing."""
    from hillclimb.problems import generate
    from hillclimb.rl.rewards import budget_tokens, shape_group
    from hillclimb.rl.rollout import Rollout

    p = generate("arith", 1, 1, 0)[0]

    def roll(think, content, allowance=10):
        return Rollout(problem=p, sample=0, prompt_ids=[1], completion_tokens=think + content,
                       think_tokens=think, content_tokens=content, answer_allowance=allowance,
                       think_budget=8, passed=True, finish_reason="stop")  # fmt: skip

    honest, dodge, short = roll(8, 10), roll(0, 40), roll(4, 6)
    assert [budget_tokens(r) for r in (honest, dodge, short)] == [8, 30, 4]
    shaped, _, _ = shape_group([honest, dodge, short], [1.0] * 3, budget=64, overlong="none",
                               overlong_buffer=8, alp_beta=0.0, budget_beta=1.0)  # fmt: skip
    assert shaped == pytest.approx([1.0, 0.0, 1.0])  # the dodge pays the full overshoot
