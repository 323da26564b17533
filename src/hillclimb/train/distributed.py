"""Process groups and model wrapping: one code path for 1 process, DDP and FSDP2.

Why read torchrun's environment instead of taking flags: `torchrun --nproc_per_node N -m
hillclimb train ...` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR, so the same command line
runs alone or distributed. The backend follows the device — NCCL on CUDA (with gloo beside it
for the CPU tensors the trainer all-reduces), gloo on CPU — and `distributed="auto"` means DDP
when there is more than one process.

- DDP replicates the model and all-reduces gradients (`no_sync` skips it on accumulation
  micro-steps). Buffers are not broadcast each forward: the only mutable buffer, the MoE
  selection bias, is updated identically on every rank from all-reduced expert loads.
- FSDP2 (`torch.distributed.fsdp.fully_shard`) shards parameters, gradients and optimizer state:
  each transformer block is its own unit (gathered just in time), the root holds the embeddings
  and head. Full state dicts for checkpoints are gathered to rank 0 with
  `torch.distributed.checkpoint.state_dict` helpers. Muon needs whole matrices and is refused
  under FSDP (it would need a gather per matrix; not built).
- Expert parallelism is not implemented: experts are replicated (DDP) or sharded like any other
  weight (FSDP2).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from hillclimb.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    mode: str = "none"  # "none" | "ddp" | "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_gather_object(self, obj: object) -> list[object]:
        """Every rank's `obj`, in rank order (RL: each rank's share of the rollouts)."""
        if not self.enabled:
            return [obj]
        out: list[object] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: object) -> object:
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _env_int(name: str, default: int) -> int:
    """A torchrun environment variable as an integer; a stray non-integer value (an exported
    `WORLD_SIZE=two`) is one ConfigError, not a ValueError traceback."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not an integer (torchrun sets it; unset it "
            "to run as one process)"
        ) from None


def env_rank() -> int:
    """This process's global rank under torchrun (0 without it), readable before `init`."""
    return _env_int("RANK", 0)


def init(device: str = "auto", mode: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; pick device and backend."""
    world = _env_int("WORLD_SIZE", 1)
    rank = env_rank()
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} / WORLD_SIZE={world} is not a process of a group")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if world > 1 and not os.environ.get(v)]
    if missing:
        # torch's env:// rendezvous raised a ValueError traceback for this
        raise ConfigError(
            f"WORLD_SIZE={world} is set but {' and '.join(missing)} not: start the processes "
            "with torchrun, or unset WORLD_SIZE to run as one process"
        )
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    dev = pick_device(device, local_rank, n_cuda)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    if mode == "auto":
        mode = "ddp" if world > 1 else "none"
    if world == 1:
        mode = "none"
    elif mode == "none":
        # no wrapper means no gradient all-reduce: every rank would step on its share of the
        # batch alone (the loss scaled for an all-reduce that never comes), rank 0 save its own
        # weights and the log the global loss of a run that never happened
        raise ConfigError(
            f"distributed=none with {world} processes: the ranks would train apart on their "
            "shares of the batch; use --distributed ddp or fsdp (auto: ddp), or run one process"
        )
    info = DistInfo(rank, world, local_rank, local_world, dev, None, mode)
    if world > 1:
        backend = backend_for(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        info.backend = backend
    return info


def pick_device(device: str, local_rank: int, n_cuda: int) -> torch.device:
    """The device of the process with `local_rank` on a node with `n_cuda` CUDA devices.

    Why the bounds check: `torchrun --nproc_per_node` larger than the node's GPU count (or a
    stray LOCAL_RANK) gave a rank no GPU of its own, and `torch.cuda.set_device` stopped it with
    an "invalid device ordinal" traceback."""
    if device == "cuda" and n_cuda == 0:
        raise ConfigError("device=cuda requested but CUDA is not available")
    if device == "cpu" or n_cuda == 0:
        return torch.device("cpu")
    if not 0 <= local_rank < n_cuda:
        raise ConfigError(
            f"LOCAL_RANK={local_rank} but this node has {n_cuda} CUDA device(s): start at most "
            f"{n_cuda} process(es) per node (torchrun --nproc_per_node), or pass --device cpu"
        )
    return torch.device("cuda", local_rank)


def backend_for(dev: torch.device) -> str:
    """The process group's backend(s): gloo on CPU; on CUDA, NCCL for CUDA tensors *and* gloo
    for CPU ones. Why both: the trainer all-reduces its loss sums and expert loads as CPU tensors
    (`Trainer.update`, `evaluate`), which an NCCL-only group refuses ("No backend type associated
    with device type cpu"): every multi-GPU run stopped at its first step."""
    return "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"


def uses_bf16(dev: torch.device, dtype: str) -> bool:
    """Whether a run computes in bf16: asked for (`dtype="bf16"`), or by default on CUDA; never
    silently on CPU."""
    return dtype == "bf16" or (dtype == "auto" and dev.type == "cuda")


def fsdp_mp_policy(dev: torch.device, dtype: str):  # noqa: ANN201 - torch type, imported lazily
    """FSDP2's mixed-precision policy: bf16 parameters with fp32 gradient reduction when the run
    computes in bf16 on CUDA, else None (parameters stay fp32). Why it takes `dtype`: the
    policy was applied on every CUDA run, so `--dtype fp32` trained in bf16 under FSDP2 (and
    only there: DDP and one process honoured it)."""
    if dev.type != "cuda" or not uses_bf16(dev, dtype):
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shutdown(info: DistInfo, clean: bool = True) -> None:
    """Tear the process group down while the interpreter is fully alive. The DDP wrapper's
    hooks make reference cycles, so the wrapper (and the Gloo work it holds) would otherwise be
    freed by the garbage collector during interpreter finalisation: one CI run saw rank 1 abort
    there ("terminate called without an active exception") after a finished run (docs/LOG.md,
    session 9). Collect first, then destroy.

    `clean=False` (this rank stopped with an error) leaves without the final barrier: the other
    ranks are still in the step's collectives, so the barrier waited for them, and they for it,
    until the process-group timeout (30 minutes), while torchrun, which stops every rank once one
    exits, saw no exit."""
    if info.enabled and dist.is_initialized():
        gc.collect()
        if clean:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()


@contextlib.contextmanager
def joined(device: str = "auto", mode: str = "auto") -> Iterator[DistInfo]:
    """`init`, then `shutdown` on the way out: clean after a finished run, without the barrier
    when this rank raised (see `shutdown`)."""
    info = init(device, mode)
    try:
        yield info
    except BaseException:
        shutdown(info, clean=False)
        raise
    shutdown(info)


def wrap(model: nn.Module, info: DistInfo, dtype: str = "auto") -> nn.Module:
    """Return the module to call for training (DDP wrapper, FSDP2-sharded model, or model);
    `dtype` is the run's (`TrainConfig.dtype`: FSDP2's parameter precision follows it)."""
    if info.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DDP(model, device_ids=ids, broadcast_buffers=False)
    if info.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        policy = fsdp_mp_policy(info.device, dtype)
        kw = {} if policy is None else {"mp_policy": policy}
        for block in model.layers:  # type: ignore[attr-defined]
            fully_shard(block, **kw)
        fully_shard(model, **kw)
        return model
    return model


@contextlib.contextmanager
def grad_sync(wrapped: nn.Module, info: DistInfo, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter on accumulation micro-steps."""
    if info.mode == "ddp" and not sync:
        with wrapped.no_sync():  # type: ignore[operator]
            yield
        return
    if info.mode == "fsdp":
        wrapped.set_requires_gradient_sync(sync)  # type: ignore[attr-defined]
    yield


def local_cpu_threads(info: DistInfo) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, info.local_world))
