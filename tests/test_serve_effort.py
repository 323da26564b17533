"""reasoning_effort → thinking budget: the nominal table, and the checkpoint's own thinking profile
(low/medium as fractions of its p90, never above the table's cap); the profile's percentiles."""

from __future__ import annotations

import pytest

from hillclimb.serve.budget import (
    effort_budget,
    profile_from_info,
    resolve_budget,
    thinking_profile,
)


def test_thinking_profile_nearest_rank_percentiles():
    prof = thinking_profile([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], "test")
    assert prof == {"p50": 50, "p90": 90, "n": 10, "source": "test"}  # the 0 never thought
    assert thinking_profile([0, 0], "x") is None and thinking_profile([], "x") is None
    assert thinking_profile([7], "x")["p90"] == 7


def test_effort_budgets_with_and_without_a_profile():
    # the nominal table, capped by a fraction of the context
    assert [effort_budget(e, 1024) for e in ("low", "medium", "high")] == [128, 256, 512]
    assert [effort_budget(e, 65536) for e in ("low", "medium", "high")] == [256, 1024, 4096]
    prof = {"p50": 20, "p90": 41}
    # low / medium become 1/4 and 1/2 of the model's own p90 (rounded up); high keeps the table
    assert [effort_budget(e, 1024, prof) for e in ("low", "medium", "high")] == [11, 21, 512]
    # never above the table's cap, never below one token
    assert effort_budget("low", 1024, {"p90": 10_000}) == 128
    assert effort_budget("low", 1024, {"p90": 1}) == 1
    assert resolve_budget("low", 7, 1024, prof) == 7  # an explicit budget wins
    assert resolve_budget(None, None, 1024, prof) is None


@pytest.mark.parametrize(
    "info", [{}, {"thinking_profile": None}, {"thinking_profile": {"p90": 0}},
             {"thinking_profile": {"p90": "40"}}, {"thinking_profile": [1, 2]}],
)  # fmt: skip
def test_malformed_or_missing_profiles_fall_back_to_the_table(info):
    assert profile_from_info(info) is None


def test_engines_from_checkpoints_carry_their_profile(tmp_path):
    """`Engine.from_checkpoint` reads the checkpoint's profile (RL writes it), so a served
    `reasoning_effort` maps onto the model's own thinking lengths; none or a malformed file:
    the table."""
    import json

    from hillclimb.cli import main
    from hillclimb.serve.budget import checkpoint_profile
    from hillclimb.serve.engine import Engine

    ck = tmp_path / "ck"
    assert main(["init", "--preset", "thinking-micro", "--out", str(ck), "--seed", "0"]) == 0
    assert checkpoint_profile(ck) is None and Engine.from_checkpoint(ck).thinking_profile is None
    info = json.loads((ck / "hillclimb.json").read_text())
    prof = {"p50": 12, "p90": 30, "n": 5, "source": "test"}
    (ck / "hillclimb.json").write_text(json.dumps({**info, "thinking_profile": prof}))
    assert Engine.from_checkpoint(ck).thinking_profile == prof
    (ck / "hillclimb.json").write_text("{not json")
    assert checkpoint_profile(ck) is None and checkpoint_profile(tmp_path / "none") is None


def test_a_budget_reading_model_is_told_its_effort_and_cut_only_at_the_table():
    """Chat: for a model trained to read its budget, `reasoning_effort` becomes the note (its
    budget from the profile) and the engine's hard cap is the table's backstop; an explicit
    `thinking_token_budget` is a hard cap for every model; other models keep effort as asked."""
    from types import SimpleNamespace

    from hillclimb.serve.api import ChatCompletionRequest
    from hillclimb.serve.serving_chat import ChatEndpoint

    ep = ChatEndpoint()
    eng = SimpleNamespace(max_context=1024, thinking_profile={"p50": 10, "p90": 40})
    reads = SimpleNamespace(budget_note=True, engine=eng)
    plain = SimpleNamespace(budget_note=False, engine=eng)

    def req(**kw):
        return ChatCompletionRequest(
            model="thinking", messages=[{"role": "user", "content": "hi"}], **kw
        )

    assert ep.thinking_limits(req(reasoning_effort="low"), reads) == (None, 128)
    assert ep.thinking_limits(req(reasoning_effort="high"), reads) == (None, 512)
    assert ep.thinking_limits(req(reasoning_effort="low", thinking_token_budget=9), reads) == (
        "low",
        9,
    )
    assert ep.thinking_limits(req(reasoning_effort="low"), plain) == ("low", None)
    assert ep.thinking_limits(req(), reads) == (None, None)
