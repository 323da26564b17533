"""Outside checks, session 24 (engine statistics and the RL val curve): counters must count work
that happened — a request cancelled while queued ran no token, a forward that raised processed
nothing — and a multi-rank RL run must write each curve point once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from _server_util import wait_for
from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine
from hillclimb.serve.fastpath import FastForward
from hillclimb.serve.metrics import engine_collector
from hillclimb.serve.sampling import SamplingParams

SRC = str(Path(__file__).resolve().parents[1] / "src")
LONG = SamplingParams(max_tokens=400, ignore_eos=True, temperature=0.0, speculative=False)
RUNS = [100, 101, 102, 103, 104, 105]  # prompt ids: exact lengths, distinct first tokens
QUEUED = [110, 111, 112, 113, 114, 115, 116, 117, 118]
AT_STOP = [120, 121, 122, 123, 124, 125, 126]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("s24stats") / "code-flash"
    save_checkpoint(build_model(get_preset("code-flash-micro"), seed=0), d)
    return d


def _metric(lines: list[str], name: str) -> float:
    """The value of the one sample `name{model="m"}` in collector output."""
    hits = [float(x.split()[-1]) for x in lines if x.startswith(name + "{")]
    assert len(hits) == 1, (name, hits)
    return hits[0]


def test_request_cancelled_while_queued_is_not_counted_as_processed(ckpt: Path) -> None:
    """One slot, one running request, one queued request cancelled before it got the slot, and
    one still queued when the engine stops. The engine's totals counted both queued ones as
    `finished` and their prompts as `prompt_tokens` (3 finished, 22 prompt tokens), though no
    token of them ran — the server already charged them nothing. Now they are `cancelled` and
    `cancelled_queued` only: 1 finished, 6 prompt tokens, and /metrics says the same."""
    eng = Engine.from_checkpoint(ckpt, device="cpu", max_batch=1, name="m", seed=0)
    eng.after_step = lambda: time.sleep(0.005)  # the slot stays taken while we queue
    eng.start()
    try:
        running = eng.submit(RUNS, LONG)
        assert wait_for(lambda: eng.stats()["running"] == 1, 30)
        queued = eng.submit(QUEUED, LONG)
        assert eng.stats()["queue_depth"] == 1
        queued.cancel()
        out = queued.result(timeout=30)
        assert out.finish_reason == "cancelled" and not out.admitted
        at_stop = eng.submit(AT_STOP, LONG)  # still queued when the engine stops
    finally:
        eng.stop()  # ends the running request (admitted) and the queued one (not)
    assert running.result(timeout=30).admitted and not at_stop.result(timeout=30).admitted
    t = eng.stats()["totals"]
    assert t["requests"] == 3 and t["cancelled"] == 3
    assert t["finished"] == 1, t
    assert t.get("cancelled_queued") == 2, t
    assert t["prompt_tokens"] == len(RUNS), t
    assert t["requests"] == t["finished"] + t["cancelled_queued"]  # nothing queued or running
    lines = engine_collector({"m": eng})()
    assert _metric(lines, "hillclimb_engine_requests_finished_total") == 1
    assert _metric(lines, "hillclimb_engine_requests_cancelled_queued_total") == 2
    assert _metric(lines, "hillclimb_engine_prompt_tokens_total") == len(RUNS)


def _fail_once(monkeypatch: pytest.MonkeyPatch, rows: int, decode: bool) -> list[tuple]:
    """Make the first lean forward over `rows` rows (a decode step: one token per row; else a
    prefill) raise once, as a device error would. → the (rows, tokens) of every forward."""
    real = FastForward.__call__
    seen: list[tuple] = []

    def flaky(self: FastForward, ids: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        shape = (int(ids.shape[0]), int(ids.shape[1]))
        seen.append(shape)
        if shape[0] == rows and (shape[1] == 1) == decode and seen.count(shape) == 1:
            raise RuntimeError("simulated forward failure")
        return real(self, ids, *args, **kwargs)

    monkeypatch.setattr(FastForward, "__call__", flaky)
    return seen


def test_failed_group_prefill_is_not_counted_twice(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two joiners prefilled together; the group's forward raises, so `_prefill` retries them
    one by one (both succeed). `prefill_tokens` was counted before the forward, so the group's
    tokens were counted for the failed forward and again for the retries: 26 for 13 prompt
    tokens (`hillclimb_engine_prefill_tokens_total`), 3 prefill forwards for 2. Now only
    forwards that returned count."""
    eng = Engine.from_checkpoint(ckpt, device="cpu", max_batch=2, name="m", seed=0)
    seen = _fail_once(monkeypatch, rows=2, decode=False)
    sp = SamplingParams(max_tokens=2, ignore_eos=True, temperature=0.0, speculative=False)
    outs = eng.generate_batch([RUNS, AT_STOP], sp)
    assert [r for r, _ in seen[:3]] == [2, 1, 1]  # the failed group, then the two retries
    assert [o.finish_reason for o in outs] == ["length", "length"]
    t = eng.stats()["totals"]
    assert t["prefill_tokens"] == len(RUNS) + len(AT_STOP), t
    assert t["prefill_forwards"] == 2, t


def test_failed_batched_decode_step_is_not_counted(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batched decode step whose forward raises is rolled back and retried row by row (each
    a single-slot step). It was counted in `batched_steps` all the same: 2 for 1 batched step
    that returned (`hillclimb_engine_batched_steps_total`)."""
    eng = Engine.from_checkpoint(ckpt, device="cpu", max_batch=2, name="m", seed=0)
    seen = _fail_once(monkeypatch, rows=2, decode=True)
    sp = SamplingParams(max_tokens=3, ignore_eos=True, temperature=0.0, speculative=False)
    outs = eng.generate_batch([RUNS, AT_STOP], sp)
    assert [o.completion_tokens for o in outs] == [3, 3]
    assert seen.count((2, 1)) == 2, seen  # the failed step (retried row by row), the last
    t = eng.stats()["totals"]
    assert t["batched_steps"] == 1, t
    assert t["batched_compiled_steps"] <= t["batched_steps"]


@pytest.mark.slow
def test_two_rank_rl_writes_each_curve_point_once(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m hillclimb rl` with a val curve every step: one
    metrics.jsonl row per step and one curve.jsonl point (and one Pareto point) per measured
    step — every rank measures the curve, only rank 0 writes it. (Checked in session 24 on a
    report that the curve had a row per rank: it did not; this keeps it so.)"""
    from hillclimb.cli import main

    init = tmp_path / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(init), "--seed", "0"]) == 0
    args = [
        "-m", "hillclimb", "rl", "--model", str(init), "--steps", "2", "--prompts-per-step", "4",
        "--group-size", "2", "--families", "arith", "--tiers", "1", "--max-tokens", "4",
        "--lr", "1e-2", "--warmup-steps", "0", "--eval-every", "1", "--eval-n-per-tier", "4",
        "--overlong", "none", "--threads", "1", "--no-tensorboard", "--micro-batch-size", "4",
        "--no-dynamic-sampling", "--out", str(tmp_path / "two"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *args], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]

    def recs(name: str) -> list[dict]:
        text = (tmp_path / "two" / name).read_text()
        return [json.loads(x) for x in text.splitlines() if x.strip()]

    assert [r["step"] for r in recs("metrics.jsonl")] == [1, 2]
    curve = recs("curve.jsonl")
    assert [r["step"] for r in curve if "cells" in r] == [0, 1, 2]
    pareto = [r["step"] for r in curve if "pareto" in r]
    assert pareto == sorted(set(pareto)) and pareto, pareto
