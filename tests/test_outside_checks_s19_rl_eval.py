"""Outside checks (session 19) of the RL and evaluation extension points: user reward functions
that return the wrong thing, edit what they score, print or exit; huge rewards; resuming a
finished run that was moved; repeated families / tiers / splits; numbers written the odd ways an
answer checker meets; exported problem records edited by hand; FIM cuts of user code."""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pytest
import torch

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.problems.base import Problem


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s19") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def _rollout():
    from hillclimb.rl.rollout import Rollout

    p = Problem(id="arith/t1/x", family="arith", kind="reasoning", tier=1, prompt="2 + 3?",
                reasoning="", answer="5")  # fmt: skip
    return Rollout(problem=p, sample=0, prompt_ids=[1, 2], completion_ids=[3, 4],
                   logprobs=[-0.1, -0.2], forced=[False, False], text="The answer is 5.",
                   finish_reason="stop", completion_tokens=2, passed=True, status="pass")  # fmt: skip


# ---- user reward functions ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ret", "shown"),
    [("0.5", "'0.5' (str)"), (None, "None (NoneType)"), (b"1", "b'1' (bytes)"),
     (torch.tensor([1.0, 2.0]), "(Tensor)"), (10**400, "(int)")],
    ids=["str", "none", "bytes", "tensor2", "hugeint"],
)  # fmt: skip
def test_a_reward_that_returns_no_number_is_refused_naming_what_it_returned(ret, shown):
    """`float(fn(r))` read the string "0.5" as 0.5 (a reward returning text trained silently)
    and reported None / a 2-element tensor / a huge int as the function having *raised*."""
    from hillclimb.rl.rewards import score

    def text_reward(r):
        return ret

    with pytest.raises(HillclimbError, match="text_reward returned .* on problem arith/t1/x") as e:
        score(text_reward, _rollout())
    assert shown in str(e.value) and "must be a real number" in str(e.value)


def test_numeric_rewards_of_every_kind_are_read():
    from hillclimb.rl.rewards import score

    r = _rollout()
    assert score(lambda r: True, r) == 1.0
    assert score(lambda r: np.float32(0.25), r) == 0.25
    assert score(lambda r: torch.tensor(0.5, requires_grad=True), r) == 0.5
    assert score(lambda r: 3, r) == 3.0


def test_sys_exit_in_a_reward_stops_the_run_with_an_error_not_exit_0():
    """A reward calling `sys.exit(0)` ended `hillclimb rl` with status 0, no output, no final
    checkpoint: a failed run that looked like a success."""
    from hillclimb.rl.rewards import score

    def quits(r):
        sys.exit(0)

    with pytest.raises(HillclimbError, match="quits raised on problem .*SystemExit"):
        score(quits, _rollout())


def test_a_reward_cannot_change_the_rollout_the_run_trains_on(capsys):
    """The reward got the rollout the batch is built from: appending to `completion_ids` ended
    the run in a numpy broadcast traceback (build_batch), `r.passed = True` made the logged pass
    rate, the solve rate and the curriculum 100%. It also printed onto stdout, where `--json`
    puts the result."""
    from hillclimb.rl.rewards import score

    def meddles(r):
        r.completion_ids.append(7)
        r.passed = False
        r.problem.meta["x"] = 1
        print("reward says hi")
        return 1.0

    r = _rollout()
    assert score(meddles, r) == 1.0
    assert r.completion_ids == [3, 4] and r.passed and r.problem.meta == {}
    out = capsys.readouterr()
    assert out.out == "" and "reward says hi" in out.err


def test_rl_json_stays_parseable_with_a_printing_editing_reward(
    micro, tmp_path, monkeypatch, capsys
):
    from hillclimb.cli import main

    (tmp_path / "hc_s19_reward.py").write_text(
        "def fn(r):\n"
        "    print('HELLO FROM REWARD')\n"
        "    good = r.completion_ids[0] % 2 == 0\n"
        "    r.completion_ids.append(5)\n"
        "    r.passed = True\n"
        "    return float(good)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["rl", "--model", str(micro), "--steps", "1", "--prompts-per-step", "2",
            "--group-size", "4", "--families", "arith", "--tiers", "1", "--max-tokens", "3",
            "--eval-every", "0", "--pareto-budgets=", "--threads", "1", "--no-tensorboard",
            "--overlong", "none", "--reward", "hc_s19_reward:fn", "--out", str(tmp_path / "run"),
            "--json"]  # fmt: skip
    try:
        assert main(args) == 0
    finally:
        sys.modules.pop("hc_s19_reward", None)
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert res["steps"] == 1 and "HELLO FROM REWARD" in out.err
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["pass_rate"] < 1.0  # the checker's verdict, not the reward's edit


def test_huge_finite_rewards_keep_their_advantages():
    """Rewards of 1e300 are finite, so `score` let them through; the squares in the group std
    overflowed to inf and every advantage became 0 — a step that learned nothing, silently.
    Without the std normalisation they do not fit the float32 batch: a clear error, not a NaN
    loss blamed on the learning rate."""
    from hillclimb.rl.grpo import group_advantages, step_stats, tally_group

    assert group_advantages([1e300, 0.0, 0.0, 1e300]) == pytest.approx([1.0, -1.0, -1.0, 1.0])
    assert group_advantages([1.0, 0.0]) == pytest.approx([1 / (0.5 + 1e-6) * 0.5, -0.5 / 0.500001])
    kw = dict(dynamic_sampling=True, std_norm=False)
    with pytest.raises(HillclimbError, match="do not fit the training batch"):
        tally_group(step_stats(), "arith/1", [True, False], [False] * 2, [3, 3], [1e200, 0.0],
                    [1e200, 0.0], **kw)  # fmt: skip
    assert tally_group(step_stats(), "arith/1", [True, False], [False] * 2, [3, 3], [1.0, 0.0],
                       [1.0, 0.0], **kw) == [0.5, -0.5]  # fmt: skip


# ---- resume ------------------------------------------------------------------------------------
def test_resume_of_a_moved_finished_run_reports_and_writes_where_it_is(micro, tmp_path, capsys):
    """`--resume` on a finished run returned its rl.json as written: a run moved since pointed
    `run_dir` at its old place and `hillclimb rl` rewrote report.md there (creating the old
    directory, or writing into another run). A damaged rl.json was a JSONDecodeError traceback."""
    from hillclimb.cli import main

    args = ["rl", "--model", str(micro), "--steps", "1", "--prompts-per-step", "2",
            "--group-size", "4", "--families", "arith", "--tiers", "1", "--max-tokens", "3",
            "--eval-every", "0", "--pareto-budgets=", "--threads", "1", "--no-tensorboard",
            "--overlong", "none", "--format-reward", "0.5"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "old")]) == 0
    shutil.move(tmp_path / "old", tmp_path / "new")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "new"), "--resume", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["run_dir"] == str(tmp_path / "new")
    assert res["final_dir"] == str(tmp_path / "new" / "final")
    assert not (tmp_path / "old").exists()
    assert (tmp_path / "new" / "report.md").is_file()
    (tmp_path / "new" / "rl.json").write_text("{cut short")
    assert main([*args, "--out", str(tmp_path / "new"), "--resume", "--json"]) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert res["steps"] == 1 and res["run_dir"] == str(tmp_path / "new")
    assert res["first"]["pass_rate"] == res["last"]["pass_rate"]  # from metrics.jsonl
    assert "rl.json is unreadable" in out.err


# ---- repeated families / tiers / splits -------------------------------------------------------
def test_repeated_families_tiers_or_splits_are_refused(micro, tmp_path, capsys):
    """`--tiers 1,1 --splits heldout,heldout` evaluated every item 4 times (16 items reported
    for 4 problems: n and the interval as if there were more evidence); RL made two curriculum
    cells of one and counted its val problems twice."""
    from hillclimb.cli import main
    from hillclimb.eval.tasks import TaskEvalConfig
    from hillclimb.rl.config import RLConfig

    for kw, what in (({"families": ["arith", "arith"]}, "families"), ({"tiers": [1, 2, 1]}, "tiers"),
                     ({"splits": ["heldout", "heldout"]}, "splits")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"{what} lists .* more than once"):
            TaskEvalConfig(**kw).validate()
    for kw, what in (({"families": ["arith", "arith"]}, "families"), ({"tiers": [1, 1]}, "tiers")):
        with pytest.raises(ConfigError, match=f"{what} lists .* more than once"):
            RLConfig(init=micro, out=tmp_path / "rl", **kw)
    for extra in (["--suite", "problems", "--tiers", "2,2"], ["--splits", "heldout,heldout"]):
        assert main(["eval", "--model", str(micro), *extra]) == 2
        assert "more than once" in capsys.readouterr().err
    TaskEvalConfig(families=["arith", "logic"], tiers=[1, 2], splits=["heldout"]).validate()


# ---- the answer checker: numbers written oddly -------------------------------------------------
def _p(answer: str, choices=None) -> Problem:
    meta = {"choices": choices} if choices else {}
    return Problem(id="x", family="arith", kind="reasoning", tier=1, prompt="q", reasoning="",
                   answer=answer, meta=meta)  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "completion", "status"),
    [
        # a comma groups thousands only in threes; otherwise it separates two numbers
        ("35", "The answer is 3,5.", "ambiguous"),  # was 35 (a decimal comma: 3.5)
        ("1213", "The answer is 12,13.", "ambiguous"),  # was 1213 (a list of two)
        ("123", "The answer is 1,23.", "ambiguous"),
        ("1234", "The answer is 1,234.", "pass"),
        ("12345678", "The answer is 12,345,678.", "pass"),
        ("-1234", "The answer is −1,234.", "pass"),
        ("1234", "The answer is 1,234, since 1,000 + 234 = 1,234.", "pass"),
        # scientific notation and a leading-dot decimal are their exact values
        ("1", "The answer is 1e5.", "fail"),  # was read as 1: passed
        ("100000", "The answer is 1e5.", "pass"),
        ("1/4", "The answer is 2.5e-1.", "pass"),
        ("5", "The answer is .5", "fail"),  # was read as 5: passed
        ("1/2", "The answer is .5", "pass"),
        ("1", "The answer is 1e999999999.", "no_answer"),  # no 10**10**9 built
        # an alternative in brackets is a hedge too; an explanation in brackets is not
        ("35", "The answer is 35 (or 36).", "ambiguous"),
        ("35", "The answer is 35 [maybe 36].", "ambiguous"),
        ("yes", "The answer is yes (or no).", "ambiguous"),
        ("12", "The answer is 12 (3 × 4).", "pass"),
        ("12", "The answer is 12 (or 12).", "pass"),
        # unchanged decisions (documented)
        ("0", "The answer is -0.", "pass"),
        ("42", "The answer is ４２.", "pass"),
        ("35", "<think>The answer is 35</think>The answer is 36", "fail"),
        ("35", "The answer is 35 or 36.", "ambiguous"),
    ],
)
def test_numbers_in_answers_are_read_by_their_value(answer, completion, status):
    from hillclimb.problems import check_many_details

    choices = ["yes", "no"] if answer == "yes" else None
    assert check_many_details([_p(answer, choices)], [completion])[0]["status"] == status


def test_parse_number_bounds_the_exponent():
    from fractions import Fraction

    from hillclimb.problems.steps import MAX_EXPONENT, parse_number

    assert parse_number("1e5") == 100000 and parse_number("-2.5E-1") == Fraction(-1, 4)
    assert parse_number(f"1e{MAX_EXPONENT}") == 10**MAX_EXPONENT
    assert parse_number(f"1e{MAX_EXPONENT + 1}") is None and parse_number("1e") is None
    assert parse_number(".5") == Fraction(1, 2) and parse_number("7 / 12") == Fraction(7, 12)


# ---- problem records ---------------------------------------------------------------------------
def test_exported_records_round_trip_and_hand_edits_are_refused_by_field(tmp_path):
    """`problems export` → `Problem.from_dict` gives the same problems, which check; a record
    with `"answer": null` (or a string tier, null meta) loaded and then ended in an
    AttributeError traceback inside the checker."""
    from hillclimb.cli import main
    from hillclimb.problems import check_many_details, final_content

    out = tmp_path / "p.jsonl"
    assert main(["problems", "export", "--out", str(out), "--families", "arith", "logic",
                 "--tiers", "1", "--n-per-tier", "2"]) == 0  # fmt: skip
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    ps = [Problem.from_dict(r) for r in recs]
    assert [p.to_dict() for p in ps] == recs
    assert all(d["passed"] for d in check_many_details(ps, [final_content(p) for p in ps]))
    for field, bad in (("answer", None), ("tier", "1"), ("tier", True), ("meta", None),
                       ("kind", "essay"), ("prompt", 3)):  # fmt: skip
        with pytest.raises(HillclimbError, match=f"{field} must be"):
            Problem.from_dict({**recs[0], field: bad})
    with pytest.raises(HillclimbError, match="expected an object"):
        Problem.from_dict([1, 2])  # type: ignore[arg-type]


# ---- FIM on user code --------------------------------------------------------------------------
def test_fim_cuts_of_code_with_form_feeds_are_whole_statements(tmp_path):
    """`str.splitlines` breaks at a form feed (legal in source, e.g. in a docstring) where `ast`
    does not: the cut of the statement at ast line N took splitlines' line N, a docstring
    fragment or the wrong statement, and reported the wrong line number."""
    from hillclimb.eval.fim_suite import make_items

    (tmp_path / "a.py").write_text(
        "def f(x):\n    '''one\x0cpage'''\n    total_value = x + 1\n    return total_value\n"
    )
    items = make_items(5, 0, tmp_path)
    assert items
    text = (tmp_path / "a.py").read_text()
    for it in items:
        assert it["prefix"] + it["middle"] + it["suffix"] == text
        assert it["middle"] == text.split("\n")[it["line"] - 1]
        assert it["middle"].strip() in ("total_value = x + 1", "return total_value")


def test_nan_reward_message_is_unchanged():
    from hillclimb.rl.rewards import score

    with pytest.raises(HillclimbError, match="returned nan"):
        score(lambda r: math.nan, _rollout())


@pytest.mark.parametrize(
    ("source", "raised"),
    [("def f(r:\n    return 1\n", "SyntaxError"), ("raise RuntimeError('x')\n", "RuntimeError"),
     ("import sys\nsys.exit(3)\n", "SystemExit")],
)  # fmt: skip
def test_a_reward_module_that_fails_to_import_is_a_config_error(
    tmp_path, monkeypatch, source, raised
):
    """`--reward mod:fn` with a syntax error (or a raise, or sys.exit) in mod ended `hillclimb
    rl` in a traceback (or a silent exit) instead of an error naming the reward."""
    from hillclimb.rl.rewards import load_reward

    name = f"hc_s19_broken_{raised.lower()}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ConfigError, match=f"importing '{name}' raised {raised}"):
            load_reward(f"{name}:f")
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "field", ["format_reward", "alp_beta", "budget_beta", "kl_beta", "temperature"]
)
def test_rl_weights_must_be_finite(micro, tmp_path, field):
    """`--format-reward nan` trained on (a NaN only where a completion had the format),
    `--alp-beta inf` stopped with "rewards too large; scale the reward", `--kl-beta inf` with
    "RL loss became nan; lower --lr": each passed `x >= 0` and failed mid-run, misattributed."""
    from hillclimb.rl.config import RLConfig

    with pytest.raises(ConfigError, match=f"{field} must be a finite number"):
        RLConfig(
            init=micro,
            out=tmp_path / "rl",
            **{field: math.inf if field != "format_reward" else math.nan},
        )


def test_a_run_directory_passed_as_a_model_names_its_final_checkpoint(tmp_path):
    """`--model RUN` (the run, not RUN/final) said "has no tokenizer.json": the run holds its own
    config.json. The message now names the run's final model."""
    from hillclimb.eval.core import _check_checkpoint
    from hillclimb.rl.train import _check_model

    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for f in ("config.json", "tokenizer.json"):
        (run / "final" / f).write_text("{}")
    for check in (_check_checkpoint, _check_model):
        with pytest.raises(HillclimbError, match="final model is .*run/final"):
            check(run)
    (run / "final" / "tokenizer.json").unlink()  # not a run with a model: no hint
    with pytest.raises(HillclimbError) as e:
        _check_checkpoint(run)
    assert "final model" not in str(e.value)


# ---- our read-only rewards are not deep-copied (session 20) -------------------------------------
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
