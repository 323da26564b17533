"""Outside checks (session 20) of the RL trainer: resumes that must be bitwise the uninterrupted
run (dr-grpo's normaliser) or be refused (a problem run resumed as a harness run), the report's
Pareto table after `pareto_budgets` changed on resume, and the CLI line of a run of 0 steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hillclimb.errors import ConfigError, HillclimbError


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s20rl") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def _cfg(micro, out, **kw):
    from hillclimb.rl.config import RLConfig

    base = dict(
        init=micro, out=out, steps=3, prompts_per_step=4, group_size=4, families=["arith"],
        tiers=[1], max_tokens=4, lr=1e-2, warmup_steps=0, eval_every=0, overlong="none",
        tensorboard=False, threads=1, pool_size=64, seed=0, pareto_budgets=[],
        format_reward=0.5,
    )  # fmt: skip
    base.update(kw)
    return RLConfig(**base)


def _weights(d: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(d / "final" / "model.safetensors"))


def _metrics(d: Path) -> list[dict]:
    drop = ("elapsed_s", "tok_s", "time", "info")
    return [
        {k: v for k, v in json.loads(x).items() if k not in drop}
        for x in (d / "metrics.jsonl").read_text().splitlines()
    ]


# ---- resume = the uninterrupted run -------------------------------------------------------------
def test_dr_grpo_resume_and_val_curve_do_not_change_the_loss_scale(micro, tmp_path):
    """dr-grpo divides by sequences × max_len, where max_len was the largest budget of the cells
    the run had touched so far: the step-0 val curve touches every tier, a resumed run does not
    (and `eval_every`, free on resume, decides whether a run has a curve at all), so an
    interrupted-and-resumed run trained with another loss scale than the uninterrupted one."""
    from hillclimb.rl.train import run_rl

    kw = dict(loss_agg="dr-grpo", max_tokens=None, tiers=[1, 2], steps=2)
    run_rl(_cfg(micro, tmp_path / "whole", eval_every=5, **kw))
    cut = run_rl(_cfg(micro, tmp_path / "cut", eval_every=5, time_limit_s=1e-9, **kw))
    assert cut["stopped_early"] and cut["steps"] == 1
    run_rl(_cfg(micro, tmp_path / "cut", eval_every=5, resume=True, **kw))
    run_rl(_cfg(micro, tmp_path / "nocurve", eval_every=0, **kw))
    a, b, c = (_weights(tmp_path / d) for d in ("whole", "cut", "nocurve"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert _metrics(tmp_path / "whole") == _metrics(tmp_path / "cut")


def test_two_runs_with_one_seed_are_identical(micro, tmp_path):
    """Determinism with every shaping option on: metrics and weights are bitwise equal."""
    from hillclimb.rl.train import run_rl

    kw = dict(budget_conditioning=True, length_penalty="alp", kl_beta=0.05, epochs=2,
              minibatches=2, overlong="soft", max_tokens=None, eval_every=2)  # fmt: skip
    run_rl(_cfg(micro, tmp_path / "a", **kw))
    run_rl(_cfg(micro, tmp_path / "b", **kw))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert (tmp_path / "a" / "curve.jsonl").read_text() == (
        tmp_path / "b" / "curve.jsonl"
    ).read_text()


def even_first_token(r) -> float:
    return 1.0 if r.completion_ids and r.completion_ids[0] % 2 == 0 else 0.0


def test_minibatches_of_only_padding_make_no_optimizer_step(micro, tmp_path):
    """With fewer kept rows than `minibatches` (one group of 2 split 4 ways), two minibatches
    held only padding: each still made an AdamW step (every weight moved by its momentum, no
    data behind it) and averaged a loss of 0 into the step's record. Now they are skipped, so
    4 minibatches of which 2 are empty train exactly as 2 full ones."""
    from hillclimb.rl.train import run_rl

    kw = dict(steps=3, prompts_per_step=1, group_size=2, format_reward=0.0)
    for m in (2, 4):
        run_rl(_cfg(micro, tmp_path / str(m), minibatches=m, **kw), reward_fn=even_first_token)
    assert any(r["groups"] for r in _metrics(tmp_path / "2"))  # it did train
    a, b = _weights(tmp_path / "2"), _weights(tmp_path / "4")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "2") == _metrics(tmp_path / "4")


# ---- resume with another recipe is refused ------------------------------------------------------
def test_problem_run_resumed_with_harness_tasks_is_refused(micro, tmp_path):
    """`--harness` is a path (free on resume, as a moved directory), so a problem-RL run resumed
    with `--harness TASKS` went on training on agent episodes: two runs spliced into one
    checkpoint and one curve. The run's fingerprint (problem families, or each task's
    definition) now tells them apart."""
    from hillclimb.cli import main as cli
    from hillclimb.rl.train import run_rl

    run = tmp_path / "run"
    run_rl(_cfg(micro, run, format_reward=0.0, time_limit_s=1e-9))
    tasks = tmp_path / "tasks"
    assert cli(["harness", "generate", "--out", str(tasks), "--n", "1", "--seed", "5",
                "--kinds", "bugfix"]) == 0  # fmt: skip
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(HillclimbError, match="'problems' -> 'harness'"):
        run_rl(_cfg(micro, run, format_reward=0.0, resume=True, harness=str(tasks)))
    assert (run / "metrics.jsonl").read_text() == before
    # the same recipe still resumes
    assert run_rl(_cfg(micro, run, format_reward=0.0, resume=True))["steps"] == 3


def test_rl_inputs_follow_what_is_trained_on_not_where_it_lies(tmp_path):
    from hillclimb.harness.task import Task
    from hillclimb.rl.train import rl_fingerprint, rl_inputs

    t = Task(id="bugfix-1", kind="bugfix", instruction="fix it", root=tmp_path / "a")
    moved = Task(id="bugfix-1", kind="bugfix", instruction="fix it", root=tmp_path / "b")
    other = Task(id="bugfix-1", kind="bugfix", instruction="fix that", root=tmp_path / "a")

    def fp(*a):
        return rl_fingerprint(rl_inputs(*a))

    assert fp(["harness"], [t]) == fp(["harness"], [moved])
    assert fp(["harness"], [t]) != fp(["harness"], [other])
    assert fp(["arith"], None) != fp(["harness"], [t])
    assert fp(["arith"], None) != fp(["logic"], None)


def test_kl_run_resumed_with_another_reference_model_is_refused(micro, tmp_path):
    """With `kl_beta > 0` the init is the KL reference, loaded from `--model` at every start;
    `--model` is free on resume (a moved directory), so a resume with another checkpoint of the
    same architecture pulled the rest of the run towards another policy. A moved copy of the
    same weights still resumes."""
    from hillclimb.cli import main
    from hillclimb.rl.train import run_rl

    other = tmp_path / "other"
    assert main(["init", "--preset", "thinking-micro", "--out", str(other), "--seed", "1"]) == 0
    run = tmp_path / "run"
    run_rl(_cfg(micro, run, kl_beta=0.1, time_limit_s=1e-9))
    with pytest.raises(HillclimbError, match="KL reference policy"):
        run_rl(_cfg(other, run, kl_beta=0.1, resume=True))
    moved = tmp_path / "moved"
    shutil.copytree(micro, moved)
    assert run_rl(_cfg(moved, run, kl_beta=0.1, resume=True))["steps"] == 3


# ---- the report ---------------------------------------------------------------------------------
def _pareto_run(micro, out: Path, first: list[int], then: list[int]) -> None:
    from hillclimb.rl.train import run_rl

    run_rl(_cfg(micro, out, steps=2, time_limit_s=1e-9, pareto_budgets=first))
    run_rl(_cfg(micro, out, steps=2, resume=True, pareto_budgets=then))


def test_pareto_table_is_by_budget_when_budgets_changed_on_resume(micro, tmp_path):
    """`pareto_budgets` may change on resume; the table read the end's i-th point under the
    start's i-th budget: fewer budgets at the end was an IndexError after a finished run, more
    put another budget's accuracy and tokens in a row."""
    from hillclimb.rl.report import summary_lines, write_rl_report

    _pareto_run(micro, tmp_path / "fewer", [1, 2, 3], [3])
    write_rl_report(tmp_path / "fewer")
    recs = [json.loads(x) for x in (tmp_path / "fewer" / "curve.jsonl").read_text().splitlines()]
    end = [r for r in recs if "pareto" in r][-1]["pareto"][0]
    rows = [
        x for x in summary_lines(tmp_path / "fewer") if x.startswith("| 1 ") or x.startswith("| 3 ")
    ]
    assert rows[0].endswith("| - |")  # budget 1 was not measured at the end
    assert rows[1].endswith(f"| {end['accuracy']:.0%}, {end['mean_tokens']:.1f} |")

    _pareto_run(micro, tmp_path / "more", [3], [1, 3])
    recs = [json.loads(x) for x in (tmp_path / "more" / "curve.jsonl").read_text().splitlines()]
    ends = [r for r in recs if "pareto" in r]
    start, last = ends[0]["pareto"][0], {p["budget"]: p for p in ends[-1]["pareto"]}
    lines = summary_lines(tmp_path / "more")
    assert "| 1 | - | " in "\n".join(lines)
    row3 = next(x for x in lines if x.startswith("| 3 "))
    assert row3 == (
        f"| 3 | {start['accuracy']:.0%}, {start['mean_tokens']:.1f} | "
        f"{last[3]['accuracy']:.0%}, {last[3]['mean_tokens']:.1f} |"
    )


def _curve_steps(run: Path, kind: str) -> list[int]:
    recs = [json.loads(x) for x in (run / "curve.jsonl").read_text().splitlines()]
    return [r["step"] for r in recs if kind in r]


def test_the_same_weights_are_measured_once_and_a_0_step_run_reports_them(micro, tmp_path):
    """A run of 0 steps evaluated the init twice (two identical curve and Pareto records at step
    0) and its report said only "(no RL steps recorded)", hiding the init's val numbers; a run
    the time limit stopped right after a curve point measured that step twice."""
    from hillclimb.rl.report import summary_lines
    from hillclimb.rl.train import run_rl

    zero = tmp_path / "zero"
    run_rl(_cfg(micro, zero, steps=0, eval_every=1, pareto_budgets=[2]))
    assert _curve_steps(zero, "cells") == [0] and _curve_steps(zero, "pareto") == [0]
    lines = summary_lines(zero)
    assert "(no RL steps recorded)" in lines
    assert any(x.startswith("| arith/1 | ") for x in lines)  # the val table
    assert any(x.startswith("| 2 | ") for x in lines)  # the Pareto table
    cut = tmp_path / "cut"
    run_rl(_cfg(micro, cut, steps=3, eval_every=1, time_limit_s=1e-9))
    assert _curve_steps(cut, "cells") == [0, 1]


# ---- the CLI ------------------------------------------------------------------------------------
def test_a_run_of_zero_steps_reports_no_training_numbers(micro, tmp_path, capsys):
    """`--steps 0` printed "train pass rate 0% → 0%, tokens 0 → 0": numbers never measured."""
    from hillclimb.cli import main

    args = ["rl", "--model", str(micro), "--families", "arith", "--tiers", "1",
            "--max-tokens", "3", "--prompts-per-step", "2", "--group-size", "2",
            "--eval-every", "0", "--pareto-budgets=", "--threads", "1", "--no-tensorboard"]  # fmt: skip
    assert main([*args, "--steps", "0", "--out", str(tmp_path / "zero")]) == 0
    err = capsys.readouterr().err
    assert "no training steps recorded" in err and "0% → 0%" not in err
    assert main([*args, "--steps", "1", "--out", str(tmp_path / "one")]) == 0
    err = capsys.readouterr().err
    assert "rl: 1 steps; train pass rate" in err and "stopped" not in err
    shutil.rmtree(tmp_path / "one")


def test_a_run_cut_by_the_time_limit_says_so(micro, tmp_path, capsys):
    """`--steps 5 --time-limit` that stopped after 1 step printed "rl: 1 steps; ...; final
    checkpoint: ..." as if 1 step had been asked for."""
    from hillclimb.cli import main

    args = ["rl", "--model", str(micro), "--families", "arith", "--tiers", "1",
            "--max-tokens", "3", "--prompts-per-step", "2", "--group-size", "2",
            "--eval-every", "0", "--pareto-budgets=", "--threads", "1", "--no-tensorboard",
            "--steps", "5", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main([*args, "--time-limit", "1e-9"]) == 0
    assert (
        "rl: 1 steps of 5 (stopped by --time-limit; --resume continues)" in capsys.readouterr().err
    )
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "rl: 5 steps; " in err and "stopped" not in err


# ---- length control -----------------------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [1, 8, 16])
def test_soft_overlong_inside_its_buffer_is_refused(micro, tmp_path, max_tokens):
    """`--overlong soft --max-tokens 8` (buffer 16): the ramp began before the first token, so a
    correct 2-token answer lost 0.625 and a correct 6-token one 0.875 — every completion was
    punished by its length as if overlong. Refused, naming both numbers."""
    with pytest.raises(ConfigError, match="overlong 'soft' needs max_tokens"):
        _cfg(micro, tmp_path / "r", overlong="soft", max_tokens=max_tokens)
    _cfg(micro, tmp_path / "r", overlong="soft", max_tokens=17)  # above the buffer: fine
    _cfg(micro, tmp_path / "r", overlong="mask", max_tokens=1)  # other modes: any budget


def test_a_temperature_the_engine_refuses_is_refused_before_the_run_starts(micro, tmp_path):
    """`--temperature 1e6` passed the config and failed at the first rollout, after the trainer
    had set up the run directory; now the config refuses it."""
    with pytest.raises(ConfigError, match="temperature must be <= 100"):
        _cfg(micro, tmp_path / "r", temperature=1e6)
    assert not (tmp_path / "r").exists()
    _cfg(micro, tmp_path / "r", temperature=100.0)


@pytest.mark.parametrize(
    ("field", "value"), [("budget_conditioning", True), ("length_penalty", "alp")]
)
def test_problem_only_length_control_is_refused_with_harness(micro, tmp_path, field, value):
    """`--harness TASKS --budget-conditioning` trained episodes without any budget note or
    penalty, yet marked the checkpoint budget-conditioned (the server then rendered the note for
    a model never trained on it); `--length-penalty alp` was ignored. Both are refused, as
    `--format-reward` already was."""
    with pytest.raises(ConfigError, match=f"{field} applies to single-turn problems"):
        _cfg(micro, tmp_path / "r", harness=str(tmp_path), format_reward=0.0, **{field: value})
    _cfg(micro, tmp_path / "r", **{field: value})  # problem RL: fine
