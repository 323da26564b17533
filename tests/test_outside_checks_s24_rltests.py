"""Outside checks of the RL stage, end to end (session 24, rltests).

Two issue claims that were only tested with hand-made stand-ins:

- Issue 13, "a forging patch gets reward 0 in the RL stage": test_rl.py fed `episode_reward` a
  SimpleNamespace whose grade said `patch_rejected`. Here one real group runs through the RL
  collector (`rl.harness.collect_episodes` → `run_group_episodes` → `run_episode` → the real
  grader → `episode_rewards` → `grpo.tally_group`) on a generated task, with scripted agents in
  place of the policy: forgers (a conftest that rewrites reports, a package `__init__` that
  patches `_pytest.reports`, the same forgery riding on a correct fix, one disguised from the
  static gate) and one honest agent writing the reference solution.
- Issue 12, "tokens the engine forced (reasoning-budget `</think>`) get no gradient": a real
  rollout on a micro thinking model through `rollout_and_check(..., force_budgets=...)`, then
  `rl.train.build_batch` and `PolicyLoss` backward; the gradient on the logits that predicted a
  forced token must be exactly 0.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from hillclimb.harness.agent import EpisodeLimits
from hillclimb.harness.clients import ScriptedClient
from hillclimb.harness.patching import apply_patch, copy_tree
from hillclimb.harness.task import Task, find_task_dirs, load_task
from hillclimb.harness.taskgen import generate as gen

SUBMIT = {"name": "submit", "arguments": {}}

FORCE_PASS_CONFTEST = """
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""

FORCE_REPORTS_INIT = """
try:
    import _pytest.reports as _reports

    _make = _reports.TestReport.from_item_and_call

    def _passed(item, call, _make=_make):
        rep = _make(item, call)
        rep.outcome, rep.longrepr = "passed", None
        return rep

    _reports.TestReport.from_item_and_call = staticmethod(_passed)
except Exception:
    pass
"""

DISGUISED_FORCE_REPORTS = """
import importlib as _il

_m = _il.import_module("_py" + "test.rep" + "orts")
_cls = getattr(_m, "Test" + "Rep" + "ort")
_name = "from_item" + "_and_call"
_make = getattr(_cls, _name)


def _ok(item, call, _make=_make):
    rep = _make(item, call)
    rep.outcome, rep.longrepr = "passed", None
    return rep


setattr(_cls, _name, staticmethod(_ok))
"""


def write(path: str, content: str) -> dict[str, Any]:
    return {
        "name": "create_file",
        "arguments": {"path": path, "content": content, "overwrite": True},
    }


# ---- issue 13: forged reports earn nothing in a real RL group -----------------------------------
@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Task:
    out = tmp_path_factory.mktemp("s24-rl-forge")
    s = gen.generate_tasks(out, 1, seed=7, kinds=["bugfix"], multi_project_prob=0.0)
    assert s["generated"] == 1 and not s["failures"], s
    return load_task(find_task_dirs(out)[0])


def solution_files(task: Task) -> dict[str, str]:
    """The files the reference solution changes, as they read after it: what an honest agent
    writes with `create_file` (a real fix made through the agent's tools, not a grader shortcut)."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        copy_tree(task.repo, ws)
        assert apply_patch(ws, task.solution_patch.read_text()).ok
        out = {}
        for new in sorted(ws.rglob("*")):
            if not new.is_file():
                continue
            rel = new.relative_to(ws).as_posix()
            old = task.repo / rel
            if not old.is_file() or old.read_bytes() != new.read_bytes():
                out[rel] = new.read_text()
    assert out, "the reference solution changes nothing"
    return out


def package_init(task: Task) -> str:
    inits = sorted(p.relative_to(task.repo).as_posix() for p in task.repo.glob("*/__init__.py"))
    assert inits, task.repo
    return inits[0]


def group_scripts(task: Task) -> list[tuple[str, list[Any]]]:
    """(member name, scripted actions) of one group: four forgers and one honest fix."""
    init = package_init(task)
    fix = solution_files(task)
    honest = [write(rel, text) for rel, text in fix.items()]
    init_text = fix.get(init, (task.repo / init).read_text())
    fix_but_init = [write(rel, text) for rel, text in fix.items() if rel != init]
    return [
        ("conftest", [write("conftest.py", FORCE_PASS_CONFTEST), SUBMIT]),
        ("honest", [*honest, SUBMIT]),
        ("init-patches-reports", [write(init, init_text + FORCE_REPORTS_INIT), SUBMIT]),
        # the real fix plus a forgery: the patch is refused whole, no partial credit
        ("fix-plus-forgery", [*fix_but_init, write(init, init_text + FORCE_REPORTS_INIT), SUBMIT]),
        # names built at run time (past the static gate): the reporter fails the raised phases
        (
            "disguised",
            [write(init, (task.repo / init).read_text() + DISGUISED_FORCE_REPORTS), SUBMIT],
        ),
    ]


def test_forgers_in_a_real_rl_group_get_reward_0_and_negative_advantage(task, monkeypatch):
    """One RL step's collector on a generated task, the policy replaced by scripted agents
    (`LocalClient(engine=...)` hands out the scripts in job order; concurrency 1): the forgers'
    rewards are 0 and their group-relative advantages negative, the honest fix earns 1 and the
    only positive advantage."""
    import hillclimb.harness.clients as clients
    from hillclimb.rl import grpo
    from hillclimb.rl.harness import TaskCurriculum, collect_episodes, episode_reward

    scripts = group_scripts(task)
    queue = [ScriptedClient(actions, name=name) for name, actions in scripts]
    handed: list[str] = []

    def fake_local_client(engine: Any, **kw: Any) -> ScriptedClient:
        client = queue.pop(0)
        handed.append(client.name)
        return client

    monkeypatch.setattr(clients, "LocalClient", fake_local_client)
    engine = SimpleNamespace(
        cfg=SimpleNamespace(d_model=64), device="cpu", start=lambda: None, stop=lambda: None
    )
    G = len(scripts)
    cfg = SimpleNamespace(
        group_size=G, prompts_per_step=1, refill_rounds=0, dynamic_sampling=True, seed=0,
        harness_concurrency=1, std_norm=True,
    )  # fmt: skip
    info = SimpleNamespace(world=1, rank=0, is_main=True)
    groups, st = collect_episodes(
        cfg, engine, TaskCurriculum([task], 0), None, 0, info, EpisodeLimits(max_steps=10)
    )
    assert handed == [name for name, _ in scripts] and not queue
    assert len(groups) == 1 and st["samples"] == G, st
    eps, adv = groups[0]["episodes"], groups[0]["adv"]
    by_name = dict(zip(handed, zip(eps, adv, strict=True), strict=True))
    rewards = {name: episode_reward(ep) for name, (ep, _) in by_name.items()}

    honest, honest_adv = by_name["honest"]
    assert honest.resolved and rewards["honest"] == 1.0, honest.grade["message"]
    assert honest_adv > 0
    for name in ("conftest", "init-patches-reports", "fix-plus-forgery", "disguised"):
        ep, a = by_name[name]
        assert ep.exit_status == "submitted", (name, ep.exit_status)
        assert not ep.resolved and ep.reward == 0.0, (name, ep.grade["status"], ep.grade["message"])  # fmt: skip
        assert rewards[name] == 0.0, (name, ep.grade)
        assert a < 0, (name, a)
    for name in ("conftest", "init-patches-reports", "fix-plus-forgery"):
        assert by_name[name][0].grade["status"] == "patch_rejected", by_name[name][0].grade
    # the step's reward sum and advantages are the loss module's own, from these rewards
    assert st["reward_sum"] == pytest.approx(1.0)
    expected = grpo.group_advantages([rewards[n] for n in handed], std_norm=True)
    assert adv == pytest.approx(expected)


# ---- issue 12: forced `</think>` tokens get no gradient -----------------------------------------
@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s24-rl-micro") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


@pytest.fixture(scope="module")
def engine(micro):
    from hillclimb.model.checkpoint import load_model
    from hillclimb.serve.engine import Engine
    from hillclimb.tokenizer.io import load_tokenizer

    return Engine(load_model(micro), load_tokenizer(micro), max_batch=4, seed=0, compile=False)


BUDGET = 3


def forced_rollouts(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Rollouts through `rollout_and_check` whose prompts open `<think>` (as a prompt rendered
    with the think block opened would; the untrained micro model never writes `<think>` itself),
    with a thinking budget of BUDGET tokens: the engine must force `</think>` + blank line."""
    from hillclimb.problems import generate
    from hillclimb.rl import rollout as R

    tok = engine.tokenizer
    plain = R.chat_prompt
    monkeypatch.setattr(
        R, "chat_prompt", lambda t, p, tb=None: plain(t, p, tb) + [tok.token_id("<think>")]
    )
    probs = generate("arith", 1, 2, 0)
    return R.rollout_and_check(
        engine, probs, n=2, max_tokens=12, temperature=1.0, logprobs=True,
        force_budgets=[BUDGET] * len(probs),
    )  # fmt: skip


def test_forced_think_close_is_masked_and_gets_exactly_zero_gradient(engine, monkeypatch):
    """The engine flags the forced `</think>` (and the blank line after it); `build_batch` gives
    them mask 0 and old_lp 0; the policy loss's gradient on the logits that predicted them is
    exactly 0 while sampled tokens of the same rows get a gradient."""
    from hillclimb.rl.grpo import PolicyLoss
    from hillclimb.rl.train import build_batch

    tok = engine.tokenizer
    te = tok.token_id("</think>")
    close = [te, *tok.encode("\n\n")]
    rolls = forced_rollouts(engine, monkeypatch)
    assert len(rolls) == 4
    n_forced = 0
    for r in rolls:
        assert r.forced is not None and len(r.forced) == len(r.completion_ids) == len(r.logprobs)
        if te in r.completion_ids[:BUDGET]:
            continue  # the model closed the block itself (a random micro model rarely does)
        # BUDGET free thinking tokens, then the engine's close sequence, all flagged forced
        assert r.completion_ids[BUDGET : BUDGET + len(close)] == close, r.completion_ids
        assert r.forced[:BUDGET] == [False] * BUDGET
        assert r.forced[BUDGET : BUDGET + len(close)] == [True] * len(close)
        n_forced += sum(r.forced)
    assert n_forced >= 2 * len(close)  # forcing really happened, in more than one rollout

    adv = [1.0, -1.0, 0.5, -0.5]  # nonzero advantages: every kept token would get a gradient
    groups = [{"rollouts": rolls, "adv": adv, "keep": [True] * len(rolls)}]
    batch = build_batch(groups, 1, 12)
    assert batch["ids"].shape[0] == len(rolls)
    for i, r in enumerate(rolls):
        p, c = len(r.prompt_ids), len(r.completion_ids)
        want = np.array([0.0 if f else 1.0 for f in r.forced], dtype=np.float32)
        assert np.array_equal(batch["mask"][i, p : p + c], want)
        assert not batch["mask"][i, :p].any()  # the prompt (with its <think>) never trains
        assert np.all(batch["old_lp"][i, p : p + c][want == 0] == 0.0)

    model = engine.model
    mb = {k: torch.as_tensor(v) for k, v in batch.items()}
    logits = model(mb["ids"][:, :-1]).detach().float().requires_grad_(True)
    loss = PolicyLoss(temperature=1.0, real_vocab=tok.vocab_size)
    total, stats = loss(logits, mb, model)
    total.backward()
    grad = logits.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert stats["loss_tokens"] == float(batch["mask"].sum())
    for i, r in enumerate(rolls):
        p = len(r.prompt_ids)
        for j, f in enumerate(r.forced):
            g = grad[i, p + j - 1]  # the logits at t-1 predict token t
            if f:
                assert torch.count_nonzero(g) == 0, (i, j)
            else:
                assert float(g.abs().max()) > 0.0, (i, j)


def test_rl_prompts_do_not_open_think_so_forcing_needs_the_model_to(engine):
    """The audit note: on the micro model `force_budgets` never forced. RL's prompt is the
    chat template's generation prompt (`<|im_start|>assistant\\n`, as the server renders it), so
    the think block opens only when the model writes `<think>`; a budget then applies
    (`ThinkState.observe`). Pinned so a change to either side is seen."""
    from hillclimb.problems import generate
    from hillclimb.rl.rollout import chat_prompt, rollout_and_check
    from hillclimb.serve.budget import ThinkState

    tok = engine.tokenizer
    p = generate("arith", 1, 1, 0)[0]
    ids = chat_prompt(tok, p)
    assert tok.decode(ids).endswith("assistant\n"), tok.decode(ids)[-40:]
    assert not ThinkState.for_prompt(tok, ids, BUDGET).in_think
    rs = rollout_and_check(engine, [p], n=2, max_tokens=8, temperature=1.0, logprobs=True,
                           force_budgets=[BUDGET])  # fmt: skip
    for r in rs:
        if tok.token_id("<think>") not in r.completion_ids:
            assert r.forced == [False] * len(r.completion_ids)
    # a model that writes `<think>` itself gets the budget: the engine's own tracking
    st = ThinkState.for_prompt(tok, ids, BUDGET)
    st.observe(tok.token_id("<think>"))
    words = tok.encode("one two three four five")
    assert len(words) >= BUDGET
    for t in words[:BUDGET]:
        assert st.next_forced() is None
        st.observe(t)
    assert st.next_forced() == tok.token_id("</think>")
