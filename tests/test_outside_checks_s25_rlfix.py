"""Session 25 audit of `hillclimb rl` (rlfix): each test fails on the code before the fix.

1. ALP's solve-rate scaling survives GRPO's group-std normalisation (it cancelled: an all-correct
   group's advantages were unit-size whatever its solve rate).
2. `--loss-agg dr-grpo` alone is Dr. GRPO in full (no std division); an explicit choice holds.
4. Harness episodes cut by a limit follow `overlong` like truncated completions ("mask": no
   gradient, still in the group's statistics; counted as truncated).
5. Problem-curriculum settings with `--harness` are refused instead of silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hillclimb.errors import ConfigError
from hillclimb.rl.config import RLConfig
from hillclimb.rl.grpo import group_advantages

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


# ---- 1. ALP vs the group-std normalisation ------------------------------------------------------
def _collect_adv(
    monkeypatch, cfg: RLConfig, plan: list[list[bool]], lengths: list[int], budget: int
) -> list[np.ndarray]:
    """The advantages `rl.train._collect` (the step's real collector: curriculum draw, rewards,
    shaping, advantages) gives groups whose samples pass as `plan` says, with `lengths` tokens;
    the engine's sampling is replaced by those fixed completions (what is tested is the
    arithmetic after it)."""
    from types import SimpleNamespace

    import hillclimb.rl.train as T
    from hillclimb.rl.curriculum import Curriculum
    from hillclimb.rl.rewards import correctness
    from hillclimb.rl.rollout import Rollout

    def sampled(engine: Any, problems: list[Any], *, n: int, **kw: Any) -> list[Rollout]:
        assert n == len(lengths) and len(problems) == len(plan)
        return [
            Rollout(problem=p, sample=i, prompt_ids=[1, 2], completion_ids=[7] * k,
                    completion_tokens=k, passed=ok, finish_reason="stop", logprobs=[-0.5] * k)
            for p, oks in zip(problems, plan, strict=True)
            for i, (k, ok) in enumerate(zip(lengths, oks, strict=True))
        ]  # fmt: skip

    monkeypatch.setattr(T, "rollout_and_check", sampled)
    cur = Curriculum(["arith"], [1], start_tier=1, promote_at=0.8, pool_size=16, seed=0)
    info = SimpleNamespace(world=1, rank=0, is_main=True)
    groups, _ = T._collect(cfg, None, cur, correctness, lambda p: budget, 0, info)
    assert len(groups) == len(plan)
    return [np.asarray(g["adv"]) for g in groups]


def _alp_cfg(tmp_path: Path, G: int, **kw: Any) -> RLConfig:
    return RLConfig(
        out=tmp_path, length_penalty="alp", alp_beta=0.5, group_size=G, prompts_per_step=2,
        pool_size=16, refill_rounds=0, **kw,
    )  # fmt: skip


def test_alp_advantage_keeps_its_solve_rate_scaling_under_std_norm(monkeypatch, tmp_path):
    """All correct (p̂ = 1) vs all wrong (p̂ = 0 → 1/G) at the same lengths: ALP makes the easy
    group pay G times as much per token. Std-normalised together, both groups got the same
    unit-size advantages (the scaling cancelled); now each is −(pen − mean pen), at ALP's own
    scale, while the correctness part keeps GRPO's normalisation."""
    beta, budget, lengths = 0.5, 40, [10, 20, 30, 40]
    G = len(lengths)
    cfg = _alp_cfg(tmp_path, G)
    assert cfg.std_norm is True
    n = np.asarray(lengths, dtype=np.float64)
    easy, hard = _collect_adv(monkeypatch, cfg, [[True] * G, [False] * G], lengths, budget)
    assert np.abs(easy).max() == pytest.approx(G * np.abs(hard).max())
    assert easy == pytest.approx(-beta * (n - n.mean()) / budget * 1.0, abs=1e-9)
    assert hard == pytest.approx(-beta * (n - n.mean()) / budget / G, abs=1e-9)
    # a mixed group: correctness std-normalised (unit scale), the penalty centred beside it
    passed = [True, False, True, False]
    mixed, _ = _collect_adv(monkeypatch, cfg, [passed, [True] * G], lengths, budget)
    pen = beta * n / budget * 0.5
    want = np.asarray(group_advantages([float(x) for x in passed])) - (pen - pen.mean())
    assert mixed == pytest.approx(want, abs=1e-9)


def test_alp_without_std_norm_is_unchanged(monkeypatch, tmp_path):
    """Dr. GRPO (no std division): the advantage is the shaped reward minus its mean, as
    before — the split only matters where a std divides (a guard: passes before and after)."""
    beta, budget, lengths, passed = 0.5, 40, [10, 20, 30, 40], [True, False, True, True]
    cfg = _alp_cfg(tmp_path, len(lengths), std_norm=False)
    got, _ = _collect_adv(monkeypatch, cfg, [passed, passed], lengths, budget)
    solved = sum(passed) / len(passed)
    shaped = np.asarray(
        [float(p) - beta * n / budget * solved for n, p in zip(lengths, passed, strict=True)]
    )
    assert got == pytest.approx(shaped - shaped.mean(), abs=1e-12)


# ---- 2. dr-grpo's default ------------------------------------------------------------------------
def test_dr_grpo_loss_agg_alone_turns_std_norm_off(tmp_path):
    """`--loss-agg dr-grpo` needed `--no-std-norm` too, or it ran GRPO's std division with Dr.
    GRPO's normaliser. The default follows the aggregation; an explicit value is honoured, and
    the CLI has both `--std-norm` and `--no-std-norm`."""
    from hillclimb.cli import build_parser

    assert RLConfig(out=tmp_path, loss_agg="dr-grpo").std_norm is False
    assert RLConfig(out=tmp_path).std_norm is True
    assert RLConfig(out=tmp_path, loss_agg="seq-mean").std_norm is True
    assert RLConfig(out=tmp_path, loss_agg="dr-grpo", std_norm=True).std_norm is True
    assert RLConfig(out=tmp_path, loss_agg="token-mean", std_norm=False).std_norm is False
    d = RLConfig.from_dict({"out": str(tmp_path), "loss_agg": "dr-grpo"}).to_dict()
    assert d["std_norm"] is False and RLConfig.from_dict(d).std_norm is False
    parser = build_parser()
    base = ["rl", "--model", "m", "--out", "o", "--loss-agg", "dr-grpo"]
    assert parser.parse_args(base).std_norm is None  # resolved by RLConfig: off
    assert parser.parse_args([*base, "--std-norm"]).std_norm is True
    assert parser.parse_args([*base, "--no-std-norm"]).std_norm is False


# ---- 4. harness episodes cut by a limit ----------------------------------------------------------
def _collect(monkeypatch, tmp_path, overlong: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One harness RL step on the tiny fixture task: member 0 fixes and submits (resolved),
    member 1 lists the directory until max_steps cuts it (the policy replaced by scripts)."""
    from types import SimpleNamespace

    import hillclimb.harness.clients as clients
    from hillclimb.harness.agent import EpisodeLimits
    from hillclimb.harness.task import load_task
    from hillclimb.rl.harness import TaskCurriculum, collect_episodes

    task = load_task(TINY)
    ls = {"name": "list_dir", "arguments": {"path": "."}}
    queue = [
        clients.ScriptedClient(clients.reference_actions(task), name="fix"),
        clients.ScriptedClient([ls] * 5, name="cut"),
    ]
    monkeypatch.setattr(clients, "LocalClient", lambda engine, **kw: queue.pop(0))
    engine = SimpleNamespace(
        cfg=SimpleNamespace(d_model=64), device="cpu", start=lambda: None, stop=lambda: None
    )
    cfg = RLConfig(
        out=tmp_path / overlong, harness=str(TINY), group_size=2, prompts_per_step=1,
        refill_rounds=0, harness_concurrency=1, overlong=overlong,
    )  # fmt: skip
    info = SimpleNamespace(world=1, rank=0, is_main=True)
    return collect_episodes(
        cfg, engine, TaskCurriculum([task], 0), None, 0, info, EpisodeLimits(max_steps=2)
    )


@pytest.mark.parametrize(("overlong", "keep"), [("mask", [True, False]), ("none", [True, True])])
def test_harness_episode_cut_by_max_steps_follows_overlong(monkeypatch, tmp_path, overlong, keep):
    groups, st = _collect(monkeypatch, tmp_path, overlong)
    assert len(groups) == 1
    eps = groups[0]["episodes"]
    assert [e.exit_status for e in eps] == ["submitted", "max_steps"]
    assert eps[0].resolved and not eps[1].resolved
    assert groups[0]["keep"] == keep
    assert st["truncated"] == 1  # was: only context_exhausted counted
    # the cut member still sets the group's baseline: its advantage is the usual one
    assert groups[0]["adv"] == pytest.approx(group_advantages([1.0, 0.0]))


def test_episode_batch_leaves_out_members_not_kept():
    from hillclimb.harness.agent import Episode
    from hillclimb.rl.harness import episode_batch

    def ep(i: int) -> Episode:
        return Episode(
            episode_id=f"e{i}", task_id="t", task_kind="bugfix", task_dir=".", model="m",
            token_ids=[1, 2, 3, 4 + i], loss_mask=[0, 0, 1, 1], token_logprobs=[0, 0, -0.1, -0.2],
        )  # fmt: skip

    groups = [{"episodes": [ep(0), ep(1)], "adv": [0.7, -0.7], "keep": [True, False]}]
    b = episode_batch(groups, 1, 16)
    assert b["ids"].shape[0] == 1 and b["adv"].tolist() == pytest.approx([0.7])
    assert b["ids"][0].tolist()[:4] == [1, 2, 3, 4]
    both = episode_batch([{"episodes": [ep(0), ep(1)], "adv": [0.7, -0.7]}], 1, 16)
    assert both["ids"].shape[0] == 2  # no `keep`: every member trains, as before


# ---- 5. curriculum settings in harness mode ------------------------------------------------------
@pytest.mark.parametrize(
    "setting",
    [{"tiers": [1, 2]}, {"families": ["arith"]}, {"start_tier": 2},
     {"promote_at": 0.5}, {"pool_size": 100}, {"tiers": [1, 2, 3, 4]}],
)  # fmt: skip
def test_problem_curriculum_settings_are_refused_with_harness(tmp_path, setting):
    """What a user writes (flags, `--config`, recipe tables: `RLConfig.from_dict`) is refused
    beside `harness`, even at the default value: it has no effect there."""
    name = next(iter(setting))
    with pytest.raises(ConfigError, match=f"{name}.*problem curriculum"):
        RLConfig.from_dict({"out": str(tmp_path), "harness": str(TINY), **setting})
    RLConfig.from_dict({"out": str(tmp_path), **setting})  # problem RL: fine
    RLConfig.from_dict({"out": str(tmp_path), "harness": str(TINY)})  # none given: fine


def test_cli_harness_with_tiers_is_refused_before_any_work(tmp_path, capsys):
    from hillclimb.cli import main

    rc = main(["rl", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
               "--harness", str(TINY), "--tiers", "1,2"])  # fmt: skip
    assert rc != 0
    err = capsys.readouterr().err
    assert "tiers set the problem curriculum" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ---- 6. model-free drafters in RL rollouts -------------------------------------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s25rl") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def _rollouts_with(micro: Path, drafter: str, temperature: float) -> tuple[list[Any], int]:
    """Rollouts of the RL engine (as `rl.train` builds it: routes recorded, `drafter`) and how
    many tokens were drafted. The lookup's prior is set so drafting pays from the first match
    (by default it probes only now and then, so a short test would draft almost nothing)."""
    import hillclimb.serve.engine as E
    from hillclimb.model.checkpoint import load_model
    from hillclimb.problems import generate
    from hillclimb.rl.rollout import rollout_and_check
    from hillclimb.serve.drafters import LookupConfig
    from hillclimb.tokenizer.io import load_tokenizer

    eng = E.Engine(
        load_model(micro), load_tokenizer(micro), max_batch=8, seed=0, compile=False,
        record_routing=True, drafter=drafter, lookup=LookupConfig(prior=0.95, min_gain=1.0),
    )  # fmt: skip
    drafted: list[int] = []
    plain = eng.generate_batch

    def counted(*a: Any, **kw: Any) -> list[Any]:
        outs = plain(*a, **kw)
        drafted.extend((o.spec or {}).get("drafted", 0) for o in outs)
        return outs

    eng.generate_batch = counted  # type: ignore[method-assign]
    probs = generate("arith", 1, 3, 0) + generate("logic", 2, 2, 0)
    rolls = rollout_and_check(
        eng, probs, n=2, max_tokens=40, temperature=temperature, logprobs=True, seed=3
    )
    return rolls, sum(drafted)


@pytest.mark.parametrize("drafter", ["lookup", "suffix"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_rollouts_with_a_drafter_give_the_same_tokens_and_logprobs(micro, drafter, temperature):
    """Same seed, with and without drafts: identical token ids (greedy by argmax; sampled
    because one-hot drafts are verified by drawing each position as plain sampling does), the
    same sampling log-probs (the verification forward vs the decode step: float rounding) and
    the same recorded experts (routing replay)."""
    base, none_drafted = _rollouts_with(micro, "none", temperature)
    got, drafted = _rollouts_with(micro, drafter, temperature)
    assert none_drafted == 0 and drafted > 0  # the drafter ran
    for a, b in zip(base, got, strict=True):
        assert a.completion_ids == b.completion_ids
        assert a.forced == b.forced
        np.testing.assert_allclose(b.logprobs, a.logprobs, rtol=0, atol=1e-5)
        if a.routes is not None:
            assert b.routes is not None
            np.testing.assert_array_equal(np.asarray(b.routes), np.asarray(a.routes))


def test_rl_drafter_option_is_validated_and_on_the_cli(tmp_path):
    from hillclimb.cli import build_parser

    assert RLConfig(out=tmp_path).drafter == "none"
    assert RLConfig(out=tmp_path, drafter="suffix").drafter == "suffix"
    with pytest.raises(ConfigError, match="drafter must be one of none, lookup, suffix"):
        RLConfig(out=tmp_path, drafter="model")
    args = build_parser().parse_args(["rl", "--model", "m", "--out", "o", "--drafter", "lookup"])
    assert args.drafter == "lookup"


def test_rl_run_with_a_drafter_trains_as_without(micro, tmp_path):
    """Two micro RL steps with and without the lookup drafter: the same rewards, tokens and
    updates (the weights equal up to the log-prob rounding of the verification forward)."""
    from safetensors.torch import load_file

    from hillclimb.rl.train import run_rl

    kw = dict(
        init=micro, steps=2, prompts_per_step=4, group_size=4, families=["arith"], tiers=[1],
        max_tokens=8, lr=1e-2, warmup_steps=0, eval_every=0, overlong="none",
        tensorboard=False, threads=1, pool_size=64, seed=0, pareto_budgets=[],
    )  # fmt: skip
    runs = {}
    for dr in ("none", "lookup"):
        res = run_rl(RLConfig(out=tmp_path / dr, drafter=dr, **kw))
        assert res["config"]["drafter"] == dr
        steps = [json.loads(x) for x in (tmp_path / dr / "metrics.jsonl").read_text().splitlines()]
        w = load_file(str(tmp_path / dr / "final" / "model.safetensors"))
        runs[dr] = (steps, w)
    (s0, w0), (s1, w1) = runs["none"], runs["lookup"]
    for a, b in zip(s0, s1, strict=True):
        for k in ("reward", "pass_rate", "completion_tokens", "groups", "updates"):
            assert a[k] == b[k], k
    for name, t in w0.items():
        np.testing.assert_allclose(w1[name].float().numpy(), t.float().numpy(), atol=1e-5)
