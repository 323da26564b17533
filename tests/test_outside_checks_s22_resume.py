"""Outside checks (session 22) of crash safety and resume: runs killed (SIGKILL, through the real
CLI) or resumed with other settings must continue as the uninterrupted run with the same seed,
never read a half-written file as complete, and not leave temp files behind crash after crash;
a climb re-run must notice what changed under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.errors import HillclimbError
from hillclimb.train import TrainConfig
from hillclimb.train.logging import read_jsonl

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s22resume")
    write_shards(r / "data", n_train=120, n_val=20)
    save_tokenizer_dir(r)
    return r


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s22rl") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        preset="thinking-micro", data=root / "data", tokenizer=root / "tokenizer", out=out,
        seq_len=32, batch_size=4, micro_batch_size=2, steps=4, lr=1e-2, warmup_steps=1,
        val_every=0, val_tokens=64, log_every=1, ckpt_every=2, threads=1, tensorboard=False,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _curve(run: Path) -> list[tuple]:
    return [(r["step"], r["loss"], r["aux"], r["grad_norm"]) for r in read_jsonl(run / "metrics.jsonl")]  # fmt: skip


# ---- resume with another micro-batch size ------------------------------------------------------
def test_resume_with_another_micro_batch_size_is_refused(root, tmp_path):
    """`micro_batch_size` was a free field on resume, but the MoE aux/z losses are per
    micro-batch (docs/areas/train.md), so a run resumed with another one silently continued a
    different trajectory: its curve and weights were not the uninterrupted run's. Now the resume
    is refused naming the change; the same micro-batch (also when given as the default) resumes
    bitwise."""
    from hillclimb.train import pretrain

    ref = pretrain.run(_cfg(root, tmp_path / "ref"))
    pretrain.run(_cfg(root, tmp_path / "run", steps=2))
    with pytest.raises(HillclimbError, match=r"micro_batch_size: 2 -> 1"):
        pretrain.run(_cfg(root, tmp_path / "run", resume=True, micro_batch_size=1))
    # the refused resume changed nothing: the same settings still continue bitwise
    res = pretrain.run(_cfg(root, tmp_path / "run", resume=True))
    assert res.steps == ref.steps == 4
    assert _curve(tmp_path / "run") == _curve(tmp_path / "ref")
    # None (= the whole per-process batch) is the micro-batch it resolves to
    pretrain.run(_cfg(root, tmp_path / "whole", steps=2, micro_batch_size=None))
    pretrain.run(_cfg(root, tmp_path / "whole", resume=True, micro_batch_size=4))
    with pytest.raises(HillclimbError, match=r"micro_batch_size: 4 -> 2"):
        pretrain.run(_cfg(root, tmp_path / "whole", resume=True, steps=6))


# ---- RL steps that made no update ----------------------------------------------------------------
def _zero(r) -> float:
    return 0.0


def test_rl_steps_without_an_update_log_no_loss_or_learning_rate(micro, tmp_path):
    """A step whose groups were all dropped (every reward equal: dynamic sampling keeps none)
    makes no optimizer step, yet metrics.jsonl logged it as `loss 0.0, lr 0.0, grad_norm 0.0,
    aux 0.0`: a learning rate of zero and a perfect loss, read by plots and by anyone comparing
    runs as real numbers. Now those are null and `updates` says how many optimizer steps the
    step made."""
    from hillclimb.rl.config import RLConfig
    from hillclimb.rl.train import run_rl

    cfg = RLConfig(
        init=micro, out=tmp_path / "rl", steps=2, prompts_per_step=2, group_size=2,
        families=["arith"], tiers=[1], max_tokens=4, lr=1e-2, warmup_steps=0, eval_every=0,
        overlong="none", tensorboard=False, threads=1, pool_size=16, seed=0, pareto_budgets=[],
        format_reward=0.0, refill_rounds=0,
    )  # fmt: skip
    res = run_rl(cfg, reward_fn=_zero)
    recs = read_jsonl(tmp_path / "rl" / "metrics.jsonl")
    assert [r["groups"] for r in recs] == [0, 0]
    for r in recs:
        assert r["updates"] == 0
        assert r["loss"] is None and r["lr"] is None and r["grad_norm"] is None
        assert r["aux"] is None
    assert res["steps"] == 2
    run = json.loads((tmp_path / "rl" / "run.json").read_text())
    assert run["final_loss"] is None


# ---- the climb: --restart-from and what a re-run notices -----------------------------------------
def _smoke_raw() -> dict:
    import tomllib

    from hillclimb.climb.climb_recipe import resolve_recipe_path

    return tomllib.loads(resolve_recipe_path("smoke").read_text())


def _recipe(raw: dict, path: Path):
    from hillclimb.climb.climb_recipe import parse_recipe

    path.touch()
    return parse_recipe(raw, path)


def _fake_finished_run(run: Path, recipe, results: dict | None = None) -> None:
    """A run directory as a finished `--no-registry` climb of `recipe` leaves it, as far as the
    runner reads it: `climb.json` and one directory per planned stage with a valid marker."""
    from hillclimb.climb.runner import plan
    from hillclimb.climb.state import MARKER, MARKER_FORMAT, RUN_FILE

    run.mkdir(parents=True)
    (run / RUN_FILE).write_text(json.dumps({"format": "hillclimb-climb-run-v1"}))
    for s in plan(recipe):
        d = run / s.dirname
        d.mkdir()
        result = (results or {}).get(s.key, {})
        if s.key == "registry":
            result = {"skipped": "registry disabled (--no-registry)"}
        marker = {"format": MARKER_FORMAT, "stage": s.key, "hash": s.hash, "section": s.section,
                  "parents": s.parents, "seconds": 1.0, "finished": "2026-01-01T00:00:00+00:00",
                  "result": result}  # fmt: skip
        (d / MARKER).write_text(json.dumps(marker))


def _started(run: Path) -> list[str]:
    events = [json.loads(x) for x in (run / "climb.jsonl").read_text().splitlines()]
    return [e["stage"] for e in events if e["event"] == "start"]


@pytest.mark.parametrize(
    "name, first",
    [("sft", "sft-code-flash"), ("rl", "rl-code-flash"), ("pretrain", "pretrain-code-flash"),
     ("sft-d", "sft-data"), ("rl-h", "rl-harness-code-flash"), ("sft-data", "sft-data")],
)  # fmt: skip
def test_restart_from_a_stage_family_names_the_models_stages(tmp_path, monkeypatch, name, first):
    """`--restart-from sft` (the help lists `sft[-MODEL]` beside `sft-data`) matched `sft-data`
    by prefix, the first stage whose key starts with `sft`: it rebuilt the SFT examples too.
    Now a family name picks that family's first model stage; other prefixes work as before."""
    from hillclimb.climb.runner import run_climb

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    monkeypatch.setenv("HILLCLIMB_CLIMB_FAULT", f"fail:{first}")  # stop where it starts
    with pytest.raises(HillclimbError, match=f"injected failure in stage {first}"):
        run_climb(recipe, run, restart_from=name, print_summary=False, registry=False)
    assert _started(run) == [first]
    if name in ("sft", "rl"):
        assert (run / "06-sft-data" / "_stage.json").is_file()  # kept


# ---- what a kill leaves behind is cleaned up, crash after crash ------------------------------------
def test_temp_files_a_killed_write_left_are_swept_on_resume(root, tmp_path):
    """A kill inside an atomic write (`io.atomic_path`: `config.json`, `run.json`, or the
    rewrite of a long `metrics.jsonl` that every resume makes) leaves its `.NAME.XXXX.tmp` file;
    the resume swept only temp *directories*, so each crash at such a moment left one more copy
    of the file for good. Now the resume removes them too (the run directory is held: no other
    process writes there)."""
    from hillclimb.train import pretrain

    run = tmp_path / "run"
    pretrain.run(_cfg(root, run, steps=2))
    left = [run / ".metrics.jsonl.k1ll3d00.tmp", run / ".config.json.abcd1234.tmp",
            run / "checkpoints" / ".step_000004.zz99zz99.tmp"]  # fmt: skip
    for p in left[:2]:
        p.write_text("x" * 10_000)
    left[2].mkdir()
    (run / "keep.tmp").write_text("the user's")  # not ours: not a hidden temp name
    pretrain.run(_cfg(root, run, resume=True))
    assert not [p for p in left if p.exists()]
    assert (run / "keep.tmp").is_file()
    hidden = [p.name for p in run.rglob(".*") if p.name.endswith(".tmp")]
    assert hidden == []


def test_a_stage_removal_cut_short_is_finished_by_the_next_climb(tmp_path):
    """`--restart-from` (or an earlier stage re-running) removes a stage by renaming it to
    `.NAME.removing` and deleting that; a kill during the delete left the half-deleted copy
    (a whole pre-training run, checkpoints and all) in RUN for good: the next climb only looked
    for it when removing the same stage again. Now every climb finishes such removals first, and
    temp files of killed atomic writes in RUN and its stage directories go too."""
    from hillclimb.climb.runner import run_climb

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    half = run / ".05-pretrain-thinking.removing"
    (half / "run" / "checkpoints" / "step_000002").mkdir(parents=True)
    (half / "run" / "checkpoints" / "step_000002" / "model.safetensors").write_bytes(b"\0" * 4096)
    tmp_marker = run / "12-eval" / "._stage.json.q1w2e3r4.tmp"
    tmp_summary = run / ".summary.json.a1b2c3d4.tmp"
    tmp_marker.write_text("{")
    tmp_summary.write_text("{")
    mine = run / "notes.tmp"
    mine.write_text("the user's")
    assert run_climb(recipe, run, print_summary=False, registry=False)["stages_run"] == []
    assert not half.exists() and not tmp_marker.exists() and not tmp_summary.exists()
    assert mine.is_file()


def _own_corpus_recipe(tmp_path: Path, corpus: Path) -> Path:
    """The smoke recipe with its `{hillclimb}` source replaced by the folder `corpus`."""
    from hillclimb.climb.climb_recipe import resolve_recipe_path

    text = resolve_recipe_path("smoke").read_text()
    text = text.replace('path = "{hillclimb}"', f'path = "{corpus}"', 1)
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


@pytest.mark.slow  # ≈12 s: four small data builds
def test_a_corpus_edited_after_the_data_stage_is_named_on_rerun(tmp_path, monkeypatch, capsys):
    """The data stage's hash covers the recipe, not the folder it reads: a corpus edited after
    the stage finished was reused with nothing said, and every later stage trained on the old
    text while the user believed the new one was in. Now the re-run says which source changed
    since the corpus was built, and says nothing when none did; a
    data build resumed after an edit (killed before its marker) starts again from the current
    files instead of keeping the chunks it had committed from the old ones."""
    from hillclimb.climb.runner import run_climb

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 4)
    recipe = _own_corpus_recipe(tmp_path, corpus)
    run = tmp_path / "run"
    monkeypatch.setenv("HILLCLIMB_CLIMB_FAULT", "fail:tokenizer")  # data only

    def again() -> str:
        capsys.readouterr()
        with pytest.raises(HillclimbError, match="injected failure in stage tokenizer"):
            run_climb(recipe, run, print_summary=False, registry=False)
        return capsys.readouterr().err

    again()
    assert (run / "01-data" / "_stage.json").is_file()
    assert "changed since" not in again()  # untouched: skipped quietly
    (corpus / "m1.py").write_text("def g():\n    return 'edited'\n")
    err = again()
    assert "source 'hillclimb'" in err and "changed since the data stage" in err
    assert "--restart-from data" in err
    # killed before its marker: the data stage resumes its build; an edit made in between
    # must not be mixed into (or hidden behind) what the first attempt built
    (run / "01-data" / "_stage.json").unlink()
    (corpus / "m2.py").write_text("def h():\n    return 'edited before the resume'\n")
    err = again()
    assert "changed since the data build started" in err
    import gzip

    docs = "".join(
        gzip.decompress(p.read_bytes()).decode() for p in (run / "01-data" / "corpus").rglob("*.gz")
    )
    assert "edited before the resume" in docs and "edited'" in docs
    assert "changed since" not in again()  # the rebuilt corpus is the current one


# ---- SIGKILL through the real CLI, then resume: the uninterrupted run's numbers -------------------
def _cli(*args: str, env_extra: dict | None = None, **kw) -> subprocess.Popen:
    from hillclimb.train.checkpointing import KILL_ENV

    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(KILL_ENV, None)
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", "hillclimb", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )  # fmt: skip


def _chat_file(path: Path, n: int = 24) -> Path:
    with path.open("w") as f:
        for i in range(n):
            a, b = i, (3 * i) % 10
            msgs = [{"role": "user", "content": f"{a}+{b}?"},
                    {"role": "assistant", "content": f"{a + b}"}]  # fmt: skip
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def _sft_args(base: Path, data: Path, out: Path) -> list[str]:
    return ["sft", "--from", str(base), "--data", str(data), "--out", str(out),
            "--seq-len", "48", "--batch-size", "4", "--micro-batch-size", "2", "--steps", "6",
            "--warmup-steps", "1", "--lr", "1e-2", "--ckpt-every", "2", "--keep-last", "1",
            "--val-every", "3", "--threads", "1", "--no-tensorboard", "--optimizer", "muon"]  # fmt: skip


def _same_final(a: Path, b: Path) -> bool:
    return (a / "final" / "model.safetensors").read_bytes() == (
        b / "final" / "model.safetensors"
    ).read_bytes()


@pytest.mark.slow  # ≈15 s: two SFT runs and a resume as subprocesses
def test_sft_killed_in_a_save_resumes_to_the_uninterrupted_run_bitwise(root, tmp_path):
    """`hillclimb sft` SIGKILLed while saving step 4 (weights written, not yet published), its
    log then given a torn last line and a stray temp file as a kill in a write leaves them:
    `--resume` continues from step 2 with no traceback, and the curve, validation and final
    weights are bitwise those of the run never interrupted."""
    from hillclimb.train import pretrain
    from hillclimb.train.checkpointing import KILL_ENV, list_checkpoints

    base = Path(pretrain.run(_cfg(root, tmp_path / "base", steps=2, ckpt_every=0)).final_dir)
    data = _chat_file(tmp_path / "chat.jsonl")
    ref = _cli(*_sft_args(base, data, tmp_path / "ref"))
    assert ref.wait(300) == 0, ref.stderr.read()
    run = tmp_path / "run"
    killed = _cli(*_sft_args(base, data, run), env_extra={KILL_ENV: "4"})
    assert killed.wait(300) == -signal.SIGKILL
    assert [s for s, _ in list_checkpoints(run)] == [2] and not (run / "final").exists()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "loss": 0.1')  # torn
    resumed = _cli(*_sft_args(base, data, run), "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()
    assert "Traceback" not in resumed.stderr.read()
    drop = ("tok_s", "elapsed_s")
    strip = lambda d: [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(d / "metrics.jsonl")]  # noqa: E731  # fmt: skip
    assert strip(run) == strip(tmp_path / "ref")
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 7))
    assert read_jsonl(run / "val.jsonl") == read_jsonl(tmp_path / "ref" / "val.jsonl")
    assert _same_final(run, tmp_path / "ref")
    assert not [p.name for p in run.rglob(".*") if p.name.endswith(".tmp")]


def _rl_args(init: Path, out: Path) -> list[str]:
    return ["rl", "--model", str(init), "--out", str(out), "--steps", "5",
            "--prompts-per-step", "4", "--group-size", "4", "--families", "arith", "--tiers", "1",
            "--max-tokens", "4", "--lr", "1e-2", "--warmup-steps", "0", "--eval-every", "2",
            "--eval-n-per-tier", "2", "--overlong", "none", "--no-tensorboard", "--threads", "1",
            "--seed", "0", "--pareto-budgets=", "--format-reward", "0.5", "--ckpt-every", "2",
            "--no-progress"]  # fmt: skip


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    import time

    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)


@pytest.mark.slow  # ≈15 s: three short RL runs as subprocesses
def test_rl_killed_after_a_step_was_logged_resumes_to_the_uninterrupted_run(micro, tmp_path):
    """`hillclimb rl` SIGKILLed once step 3 is in metrics.jsonl (past the step-2 checkpoint, so
    the log holds a step the checkpoint lacks): `--resume` drops that step, redoes it, and the
    metrics, val curve and final weights equal the run never interrupted."""
    ref = _cli(*_rl_args(micro, tmp_path / "ref"))
    assert ref.wait(300) == 0, ref.stderr.read()
    run = tmp_path / "run"
    proc = _cli(*_rl_args(micro, run))
    _kill_when(proc, lambda: len(read_jsonl(run / "metrics.jsonl")) >= 3)
    assert not (run / "final").exists()
    resumed = _cli(*_rl_args(micro, run), "--resume")
    assert resumed.wait(300) == 0, resumed.stderr.read()
    drop = ("tok_s", "elapsed_s", "time", "info")
    strip = lambda d, f: [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(d / f)]  # noqa: E731  # fmt: skip
    for f in ("metrics.jsonl", "curve.jsonl"):
        assert strip(run, f) == strip(tmp_path / "ref", f), f
    assert _same_final(run, tmp_path / "ref")


def test_a_torn_last_line_of_the_climb_log_does_not_swallow_the_next_record(tmp_path):
    """A climb killed while appending to `climb.jsonl` leaves a line without its newline; the
    next climb appended its first record to that line, so the record was lost with the torn one
    (one unparseable line). Now each record starts on a line of its own."""
    from hillclimb.climb.runner import run_climb

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    (run / "climb.jsonl").write_text('{"time": "2026-01-01T00:00:00+00:00", "event": "sta')
    run_climb(recipe, run, print_summary=False, registry=False)
    lines = (run / "climb.jsonl").read_text().splitlines()
    assert lines[0].endswith('"sta')
    recs = [json.loads(x) for x in lines[1:]]  # every later line is a whole record
    assert [r["stage"] for r in recs if r["event"] == "skip"][0] == "data"


@pytest.mark.slow  # ≈12 s: generates and verifies two harness tasks in the sandbox
def test_a_task_generation_cut_short_is_completed_on_rerun(tmp_path):
    """The harness RL stage generated its tasks only when none were there: a climb killed after
    the first of `n_tasks` was written (each task is published atomically, the manifest last)
    trained on the ones that happened to exist, with nothing said — another run than the
    uninterrupted one. Now generation runs until its manifest says the recipe's count was
    asked for (a re-run keeps the tasks already made and adds the missing ones)."""
    from hillclimb.climb.runner import plan, run_climb
    from hillclimb.harness.task import find_task_dirs
    from hillclimb.harness.taskgen.generate import generate_tasks

    raw = _smoke_raw()
    raw["rl_harness"]["code-flash"]["n_tasks"] = 2
    recipe = _recipe(raw, tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    st = next(s for s in plan(recipe) if s.key == "rl-harness-code-flash")
    for s in plan(recipe)[[x.key for x in plan(recipe)].index(st.key) :]:
        (run / s.dirname / "_stage.json").unlink()
    spec = recipe.rl_harness["code-flash"]["tasks"]
    tasks = run / st.dirname / "tasks"
    generate_tasks(tasks, 1, seed=int(spec["task_seed"]), kinds=list(spec["kinds"]), split="train")
    (tasks / "manifest.json").unlink()  # killed before the manifest: 1 task of 2 on disk
    assert len(find_task_dirs(tasks)) == 1
    with pytest.raises(HillclimbError):  # the fake run has no checkpoint to train from
        run_climb(recipe, run, print_summary=False, registry=False)
    assert len(find_task_dirs(tasks)) == 2
