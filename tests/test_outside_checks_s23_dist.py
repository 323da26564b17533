"""Outside checks (session 23) of the scale-out path: `torchrun -m hillclimb train|rl` with 2
processes on CPU (gloo), and the GPU-only choices (device, backend, FSDP2 precision) called
directly, since no GPU runs here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hillclimb
from _train_util import save_tokenizer_dir, write_shards
from hillclimb.errors import ConfigError
from hillclimb.train import distributed as D

# the hillclimb under test (PYTHONPATH may point at another copy of the source)
SRC = str(Path(hillclimb.__file__).resolve().parents[1])
HERE = str(Path(__file__).resolve().parent)


def _env(tmp: Path) -> dict[str, str]:
    # TMPDIR: torchrun's agent leaves a torchelastic_* directory in the temp dir
    return {**os.environ, "PYTHONPATH": f"{SRC}:{HERE}", "OMP_NUM_THREADS": "1",
            "TMPDIR": str(tmp)}  # fmt: skip


def _launch(nproc: int, args: list[str], tmp: Path, timeout: float = 240) -> tuple[int, str]:
    """Run `hillclimb ARGS` alone or under torchrun; a hang past `timeout` fails the test instead
    of waiting for the 30-minute process-group timeout. torchrun starts each rank in a session of
    its own, so it is stopped with SIGTERM (it stops its ranks), not killed."""
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    p = subprocess.Popen(
        [*launcher, "-m", "hillclimb", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(tmp), start_new_session=True,
    )  # fmt: skip
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"hillclimb {' '.join(args[:1])} with {nproc} processes hung (> {timeout} s)")
    return p.returncode, err


def _weights(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


# ---- resume across world size and distributed mode ----------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("s23dist")
    write_shards(r / "data")
    save_tokenizer_dir(r)
    return r


def _train_args(root: Path, out: str, steps: int, *extra: str) -> list[str]:
    return [
        "train", "--data", str(root / "data"), "--tokenizer", str(root / "tokenizer"),
        "--out", str(root / out), "--preset", "thinking-micro", "--seq-len", "32",
        "--batch-size", "4", "--micro-batch-size", "2", "--warmup-steps", "1", "--val-every", "0",
        "--val-tokens", "128", "--threads", "1", "--no-tensorboard", "--lr", "5e-3",
        "--ckpt-every", "2", "--steps", str(steps), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_one_process_run_resumes_under_fsdp_to_the_same_weights(root):
    """`distributed` may change on resume (docs/areas/train.md: hardware fields), and DDP → FSDP2
    is the usual way to scale a run out. The optimizer state of a 1-process or DDP run is keyed
    by parameter index (torch's format), FSDP2's restore wants names: the resume stopped with
    "cannot restore the trainer state … (damaged or from another run: KeyError: 'state.0.step')"."""
    rc, err = _launch(1, _train_args(root, "ref", 4), root)
    assert rc == 0, err[-2000:]
    rc, err = _launch(1, _train_args(root, "split", 2), root)
    assert rc == 0, err[-2000:]
    rc, err = _launch(
        2, [*_train_args(root, "split", 4), "--resume", "--distributed", "fsdp"], root
    )
    assert rc == 0, err[-3000:]
    ref, got = _weights(root / "ref" / "final"), _weights(root / "split" / "final")
    assert max(float((ref[k] - got[k]).abs().max()) for k in ref) < 1e-5
    losses = [json.loads(x)["loss"] for x in (root / "ref" / "metrics.jsonl").open()]
    again = [json.loads(x)["loss"] for x in (root / "split" / "metrics.jsonl").open()]
    assert again == pytest.approx(losses, rel=1e-5)


# ---- RL: rewards are measured once, by the rank that rolled the group out ----------------------
def rank_dependent(r) -> float:
    """Not a pure function of the rollout (as a wall-clock timeout in a test runner, or a judge
    model, may be): rank 0 pays nothing, other ranks pay by the sampled ids."""
    if os.environ.get("RANK", "0") == "0":
        return 0.0
    return float(sum(r.completion_ids) % 7)


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    from hillclimb.cli import main

    d = tmp_path_factory.mktemp("s23rl") / "init"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d), "--seed", "0"]) == 0
    return d


@pytest.mark.slow
def test_ranks_agree_on_rewards_that_are_not_a_pure_function_of_the_rollout(micro, tmp_path):
    """Every rank scored every gathered rollout itself. A reward that differs between calls made
    the ranks disagree on which groups dynamic sampling keeps: here rank 0 dropped every group
    and skipped the update while rank 1 entered it, and rank 1 waited in the gradient all-reduce
    until the 30-minute process-group timeout. Now the rank that rolls a group out scores it and
    the scores travel with the rollouts, so every rank holds the same batch (and the reward runs
    once per rollout, not once per rank)."""
    args = [
        "rl", "--model", str(micro), "--out", str(tmp_path / "o"), "--steps", "2",
        "--prompts-per-step", "4", "--group-size", "4", "--families", "arith", "--tiers", "1",
        "--max-tokens", "4", "--lr", "1e-2", "--warmup-steps", "0", "--eval-every", "0",
        "--pareto-budgets", "", "--overlong", "none", "--threads", "1", "--no-tensorboard",
        "--micro-batch-size", "2", "--reward", "test_outside_checks_s23_dist:rank_dependent",
    ]  # fmt: skip
    rc, err = _launch(2, args, tmp_path, timeout=150)
    assert rc == 0, err[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").open()]
    assert len(recs) == 2
    # prompts 1 and 3 of each round were rolled out (and scored) by rank 1: their groups pay
    assert any(r["groups"] > 0 and r["updates"] > 0 for r in recs)
    assert all(r["reward"] > 0 for r in recs)


# ---- what only runs on GPUs, checked by its choices ------------------------------------------
def test_a_cuda_process_group_can_all_reduce_the_cpu_tensors_the_trainer_sums():
    """`Trainer.update` and `evaluate` all-reduce their loss sums and expert loads as CPU
    tensors. On CUDA the group was NCCL only, which has no CPU backend ("No backend type
    associated with device type cpu"), so every multi-GPU run stopped at its first step."""
    from torch.distributed.distributed_c10d import Backend, BackendConfig

    for dev in (torch.device("cuda", 0), torch.device("cpu")):
        chosen = BackendConfig(Backend(D.backend_for(dev))).get_device_backend_map()
        assert "cpu" in chosen, (dev, chosen)
    cuda = BackendConfig(Backend(D.backend_for(torch.device("cuda", 0)))).get_device_backend_map()
    assert cuda["cuda"] == "nccl" and cuda["cpu"] == "gloo"
    assert D.backend_for(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize(
    ("device", "local_rank", "n_cuda", "want"),
    [
        ("auto", 0, 0, "cpu"),
        ("cpu", 3, 8, "cpu"),
        ("auto", 1, 2, "cuda:1"),
        ("cuda", 0, 1, "cuda:0"),
        ("auto", 2, 2, "LOCAL_RANK=2"),  # torchrun --nproc_per_node 4 on a 2-GPU machine
        ("cuda", 5, 4, "LOCAL_RANK=5"),
        ("cuda", -1, 4, "LOCAL_RANK=-1"),
        ("cuda", 0, 0, "CUDA is not available"),
    ],
)
def test_the_device_is_cpu_without_cuda_and_a_rank_beyond_the_gpus_is_one_error(
    device, local_rank, n_cuda, want
):
    """A LOCAL_RANK with no GPU of its own (more processes per node than GPUs) was
    `torch.cuda.set_device`'s "invalid device ordinal" traceback on that rank."""
    if want in ("cpu", "cuda:1", "cuda:0"):
        assert str(D.pick_device(device, local_rank, n_cuda)) == want
    else:
        with pytest.raises(ConfigError, match=want):
            D.pick_device(device, local_rank, n_cuda)


def test_fsdp_keeps_float32_parameters_when_the_run_asks_for_float32():
    """FSDP2 on CUDA always got a bf16-parameter policy, so `--dtype fp32` trained in bf16
    under FSDP (and only there: DDP and 1 process honoured it)."""
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert D.fsdp_mp_policy(cuda, "fp32") is None
    for dtype in ("auto", "bf16"):
        pol = D.fsdp_mp_policy(cuda, dtype)
        assert pol is not None and pol.param_dtype == torch.bfloat16
        assert pol.reduce_dtype == torch.float32
    assert D.fsdp_mp_policy(cpu, "auto") is None and D.fsdp_mp_policy(cpu, "fp32") is None
    # the autocast choice is the same one: bf16 on CUDA by default, never silently on CPU
    assert D.uses_bf16(cuda, "auto") and not D.uses_bf16(cpu, "auto")
    assert not D.uses_bf16(cuda, "fp32") and D.uses_bf16(cpu, "bf16")


@pytest.mark.slow
def test_distributed_none_under_torchrun_is_refused_not_trained_apart(root):
    """`--distributed none` with 2 processes made no wrapper: each rank stepped on its half of
    the batch with no gradient all-reduce (the loss scaled as if one would come), rank 0 saved
    its own weights and metrics.jsonl logged the global loss of a run that never happened."""
    rc, err = _launch(2, [*_train_args(root, "apart", 2), "--distributed", "none"], root)
    assert rc != 0
    assert "distributed=none with 2 processes" in err, err[-2000:]
    assert f'File "{SRC}' not in err  # one line per rank, no traceback of ours (torchrun's own
    # "ChildFailedError" report follows it)
    assert not (root / "apart" / "final").exists()


def test_rl_under_fsdp_is_refused_before_any_work(micro, tmp_path):
    """RL rolls out with an in-process engine over the trainer's own weights on every rank;
    FSDP2 leaves each rank a shard, so `rl --distributed fsdp` under torchrun set everything up
    and then stopped in the first rollout with a DTensor traceback ("Operator aten.cat.out does
    not have a sharding strategy registered") on every rank. A config error says so first."""
    from hillclimb.rl.config import RLConfig

    with pytest.raises(ConfigError, match="distributed=fsdp"):
        RLConfig(init=micro, out=tmp_path / "o", distributed="fsdp")
    RLConfig(init=micro, out=tmp_path / "o", distributed="ddp")  # still fine


def judge_down_on_rank_1(r) -> float:
    """A reward whose service fails on one node only."""
    if os.environ.get("RANK", "0") == "1":
        raise RuntimeError("judge unreachable")
    return float(r.passed)


@pytest.mark.slow
def test_an_error_on_one_rank_ends_the_run_instead_of_hanging(micro, tmp_path):
    """A rank that stopped with an error went into the clean shutdown's barrier while the other
    ranks were in the step's collectives: every process waited there until the 30-minute
    process-group timeout, and torchrun (which stops the others when one exits) never saw an
    exit. Now a failing rank leaves the group without the barrier and exits with its message."""
    args = [
        "rl", "--model", str(micro), "--out", str(tmp_path / "o"), "--steps", "2",
        "--prompts-per-step", "4", "--group-size", "4", "--families", "arith", "--tiers", "1",
        "--max-tokens", "4", "--eval-every", "0", "--pareto-budgets", "", "--threads", "1",
        "--no-tensorboard", "--reward", "test_outside_checks_s23_dist:judge_down_on_rank_1",
    ]  # fmt: skip
    rc, err = _launch(2, args, tmp_path, timeout=120)
    assert rc != 0
    assert "judge unreachable" in err, err[-3000:]
    assert not (tmp_path / "o" / "final").exists()


def test_a_resume_that_sees_fewer_gpus_restores_the_states_it_has(monkeypatch):
    """CUDA RNG states are saved one per visible GPU; restoring on a machine that sees fewer
    raised (an index past the device count) and the resume was refused as damaged. Checked
    without a GPU: the CUDA calls are replaced by recorders."""
    import torch

    from hillclimb.train import checkpointing as C

    got = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.zeros(4)] * 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: got.append(list(states)))
    st = C.rng_state()
    assert len(st["cuda"]) == 2
    C.set_rng_state(st)
    assert len(got) == 1 and len(got[0]) == 1
