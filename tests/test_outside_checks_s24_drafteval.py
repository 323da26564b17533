"""Model-free drafting (prompt lookup / suffix) in evaluation and harness rollouts (issue 15 §1).

Every engine `hillclimb eval` and `hillclimb harness run` built decoded plainly: the lookup
drafter that `serve` turns on for code-flash never helped an evaluation or a rollout. Now
`--drafter none|lookup|suffix` (default none) reaches those engines and is recorded in the
settings. Drafts are verified against the model's own greedy choice, so greedy answers and
trajectories must be identical with and without it — checked here on a random-weights micro
model (its repetitive output gives the lookup plenty to draft, and the engine's counters prove
drafting ran)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError

TINY = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random code-flash-micro checkpoint with a 4k context (a harness prompt fits)."""
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    out = tmp_path_factory.mktemp("drafteval") / "ck"
    cfg = dataclasses.replace(get_preset("code-flash-micro"), max_seq_len=4096)
    save_checkpoint(build_model(cfg, seed=0), out, bytelevel_tokenizer())
    return out


def _capture_engines(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every engine `Engine.from_checkpoint` builds from now on (to read its drafting counters),
    each with `.outputs`: the token ids of every answer its `generate_batch` gave."""
    from hillclimb.serve.engine import Engine

    built: list[Any] = []
    orig = Engine.from_checkpoint.__func__  # type: ignore[attr-defined]

    def spy(cls: type, *a: Any, **kw: Any) -> Any:
        e = orig(cls, *a, **kw)
        e.outputs = []
        gen = e.generate_batch

        def recording(*ga: Any, **gk: Any) -> Any:
            res = gen(*ga, **gk)
            e.outputs.extend((list(o.token_ids), o.finish_reason) for o in res)
            return res

        e.generate_batch = recording
        built.append(e)
        return e

    monkeypatch.setattr(Engine, "from_checkpoint", classmethod(spy))
    return built


def _drafted(engine: Any) -> dict[str, int]:
    """Tokens drafted so far by each model-free drafter (each counts its own only)."""
    st = engine.stats()
    return {d: int(st[d]["drafted"]) for d in ("lookup", "suffix")}


def _greedy_view(tasks: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What greedy evaluation produced, item by item (answer text, finish reason, verdict)."""
    return [
        (s["id"], s["reasoning"], s["content"], s["finish_reason"], s["correct"])
        for s in tasks["samples"]
    ] + [(i["id"], i["passed"], i["status"]) for i in tasks["items"]]


def test_eval_problems_greedy_identical_with_each_drafter(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request at a time (batch_size 1): with several rows the engine's batched-verify cost
    model declines every draft of this micro model (`Engine.spec_batch="auto"`), and nothing
    would be drafted to check."""
    from hillclimb.eval.core import run_eval
    from hillclimb.eval.tasks import TaskEvalConfig

    built = _capture_engines(monkeypatch)
    views, drafted, outputs = {}, {}, {}
    for d in ("none", "lookup", "suffix"):
        cfg = TaskEvalConfig(n_per_tier=2, families=["arith"], tiers=[1], splits=["heldout"],
                             batch_size=1, baseline_train_n=10, examples=100, max_tokens=48)  # fmt: skip
        res = run_eval(ckpt, tasks=cfg, device="cpu", drafter=d)
        assert res["tasks"]["settings"]["drafter"] == d
        views[d] = _greedy_view(res["tasks"])
        drafted[d] = _drafted(built[-1])
        outputs[d] = built[-1].outputs
    assert len(outputs["none"]) == 2 and all(ids for ids, _ in outputs["none"])
    assert outputs["lookup"] == outputs["none"]  # every greedy answer, token for token
    assert outputs["suffix"] == outputs["none"]
    assert views["lookup"] == views["none"]
    assert views["suffix"] == views["none"]
    assert drafted["none"] == {"lookup": 0, "suffix": 0}
    assert drafted["lookup"]["lookup"] > 0 and drafted["suffix"]["suffix"] > 0  # it ran


def test_eval_suite_records_drafter_and_keeps_answers(
    ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hillclimb eval --suite problems --drafter lookup`: the same items and verdicts as
    without it, `settings.drafter` recorded, and the weights identity still there (the suite
    gets a backend handed in, for which `run_suite` records none itself)."""
    built = _capture_engines(monkeypatch)
    out = {}
    for d in ("none", "lookup"):
        argv = ["eval", "--model", str(ckpt), "--suite", "problems", "--n-items", "2",
                "--families", "arith", "--tiers", "1", "--splits", "heldout",
                "--max-tokens", "40", "--device", "cpu", "--batch-size", "1", "--json",
                "--drafter", d]  # fmt: skip
        assert main(argv) == 0
        out[d] = json.loads(capsys.readouterr().out)
    a, b = out["none"], out["lookup"]
    assert a["settings"]["drafter"] == "none" and b["settings"]["drafter"] == "lookup"
    assert b["weights_sha256"] == a["weights_sha256"]
    assert b["tokenizer_sha256"] == a["tokenizer_sha256"]
    assert [(i["id"], i["passed"]) for i in b["items"]] == [
        (i["id"], i["passed"]) for i in a["items"]
    ]
    assert a["metrics"] == b["metrics"]
    assert [e.default_drafter for e in built] == ["none", "lookup"]
    assert built[1].outputs == built[0].outputs and built[0].outputs  # token for token
    assert _drafted(built[1])["lookup"] > 0


def test_harness_episode_identical_with_each_drafter(ckpt: Path) -> None:
    """One greedy episode per drafter on one shared engine (a client's drafter is asked per
    request): the same token stream, loss mask and (within float noise) policy log-probs."""
    from hillclimb.harness.agent import EpisodeLimits, run_episode
    from hillclimb.harness.clients import LocalClient
    from hillclimb.harness.task import load_task
    from hillclimb.serve.engine import Engine

    task = load_task(TINY)
    lim = EpisodeLimits(max_steps=3, max_tokens_per_turn=48, temperature=0.0, seed=0)
    engine = Engine.from_checkpoint(ckpt, max_batch=2)
    eps, drafted = {}, {}
    for d in ("none", "lookup", "suffix"):
        before = _drafted(engine)
        eps[d] = run_episode(task, LocalClient(engine=engine, drafter=d), lim)
        drafted[d] = {k: v - before[k] for k, v in _drafted(engine).items()}
    base = eps["none"]
    assert base.turns >= 2 and base.token_ids
    for d in ("lookup", "suffix"):
        ep = eps[d]
        assert ep.token_ids == base.token_ids
        assert ep.loss_mask == base.loss_mask
        assert ep.exit_status == base.exit_status
        assert ep.token_logprobs == pytest.approx(base.token_logprobs, abs=1e-4)
    assert drafted["none"] == {"lookup": 0, "suffix": 0}
    assert drafted["lookup"]["lookup"] > 0 and drafted["suffix"]["suffix"] > 0


def test_harness_run_records_drafter_in_summary(ckpt: Path, tmp_path: Path, capsys) -> None:
    tasks = tmp_path / "tasks"
    shutil.copytree(TINY, tasks / "only")
    out = tmp_path / "out"
    argv = ["harness", "run", "--tasks", str(tasks), "--model", str(ckpt), "--out", str(out),
            "--max-steps", "1", "--max-tokens-per-turn", "16", "--no-check-tasks",
            "--no-telemetry", "--drafter", "suffix", "--json"]  # fmt: skip
    main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"] == {"drafter": "suffix", "guided_tools": True}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["settings"] == {"drafter": "suffix", "guided_tools": True}
    assert on_disk["tasks"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["harness", "run", "--tasks", "{t}", "--model", "reference", "--out", "{o}",
         "--drafter", "lookup"],
        ["harness", "run", "--tasks", "{t}", "--model", "http://127.0.0.1:9/v1", "--out", "{o}",
         "--drafter", "suffix"],
        ["eval", "--model", "http://127.0.0.1:9/v1", "--suite", "problems", "--drafter", "lookup"],
    ],
)  # fmt: skip
def test_drafter_without_an_engine_of_ours_is_refused(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL or the reference agent drafts nothing here: the flag was ignored silently (an
    unknown flag on old code), and a run would have recorded a drafter that never ran."""
    args = [a.format(t=TINY, o=tmp_path / "o") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--drafter" in err and "applies to a checkpoint" in err, err
    assert not (tmp_path / "o").exists()


def test_unknown_drafter_is_a_clear_error(ckpt: Path) -> None:
    """`model` is an engine drafter but needs a draft model no evaluation engine loads."""
    from hillclimb.eval.backends import EngineBackend, check_drafter, open_backend
    from hillclimb.harness.clients import LocalClient

    for bad in ("model", "Lookup", ""):
        with pytest.raises(HillclimbError, match="drafter must be one of none, lookup, suffix"):
            check_drafter(bad)
    with pytest.raises(HillclimbError, match="drafter must be one of"):
        open_backend(str(ckpt), drafter="model")
    with pytest.raises(HillclimbError, match="drafter must be one of"):
        EngineBackend(str(ckpt), drafter="ngram")
    with pytest.raises(HillclimbError, match="drafter must be one of"):
        LocalClient(ckpt, drafter="model")
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["eval", "--model", str(ckpt), "--drafter", "model"])


BENCH = Path(__file__).resolve().parent.parent / "bench" / "harness_episodes.py"


def _bench(monkeypatch: pytest.MonkeyPatch, *argv: str) -> SystemExit:
    """`python bench/harness_episodes.py argv...` in this process; its SystemExit."""
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", [str(BENCH), *argv])
    monkeypatch.setattr(sys, "path", [str(BENCH.parent), *sys.path])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(BENCH), run_name="__main__")
    return exc.value


def test_bench_compares_drafters_on_the_same_episodes(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    tasks = tmp_path / "tasks"
    shutil.copytree(TINY, tasks / "only")
    code = _bench(monkeypatch, "--model", str(ckpt), "--tasks", str(tasks), "--concurrency",
                  "1", "--max-steps", "2", "--drafter", "none,lookup,suffix", "--fresh-engine")  # fmt: skip
    assert code.code in (None, 0)
    out = json.loads(capsys.readouterr().out)
    assert out["drafters"] == ["none", "lookup", "suffix"] and out["fresh_engine"] is True
    rows = {r["drafter"]: r for r in out["levels"]}
    assert list(rows) == ["none", "lookup", "suffix"]
    assert all(r["same_trajectories_as_first"] for r in rows.values())  # greedy: identical
    assert rows["none"]["throughput_vs_no_drafter"] == 1.0
    assert rows["lookup"]["throughput_vs_no_drafter"] > 0
    assert rows["none"]["drafting"]["lookup.drafted"] == 0
    assert rows["lookup"]["drafting"]["lookup.drafted"] > 0
    assert rows["suffix"]["drafting"]["suffix.drafted"] > 0
    assert rows["lookup"]["completion_tokens"] == rows["none"]["completion_tokens"]


def test_bench_refuses_an_unknown_drafter(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _bench(monkeypatch, "--model", str(ckpt), "--n-tasks", "1", "--drafter", "none,ngram")
    assert isinstance(code.code, str) and code.code.startswith("error: drafter must be one of")
