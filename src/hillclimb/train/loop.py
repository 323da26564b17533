"""The training loop shared by pre-training and SFT.

Both stages are the same loop over a different batch source: `TrainTask` carries the model config,
tokenizer, a `batches(step) -> (ids, mask | None)` function giving the *global* batch of a step
(`[batch_size, seq_len + 1]` int64; `mask` marks target tokens, None = all), fixed validation rows
and provenance for the checkpoint's `hillclimb.json`. `run_training(cfg, task)` does the rest:

1. checks before any work: output directory writable, memory estimate vs available RAM/GPU memory,
   existing checkpoints without `--resume`;
2. builds (or loads, or resumes) the model, wraps it for DDP/FSDP2, optional `torch.compile`;
3. per step: the rank's slice of the global batch in micro-batches (gradient accumulation), loss =
   Σ NLL / (global target tokens) + MoE aux/z losses averaged over all micro-batches, so the
   gradient is the same for any (world size × accumulation) split of one global batch; fp32 on CPU,
   bf16 autocast on CUDA; gradient clipping; the schedule's LR; optimizer step; then the
   auxiliary-loss-free bias update from the step's expert loads summed over micro-batches and ranks;
4. logs, validates (bits per byte), checkpoints atomically, keeps the last N, publishes `final/`.

Resuming restores weights, optimizer state, MoE selection biases and RNG states from the latest
complete checkpoint and continues at its step; since batches depend only on (seed, step), the loss
curve continues bitwise-identically on CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.io import write_json_atomic
from hillclimb.model.config import ModelConfig
from hillclimb.train import checkpointing as ck
from hillclimb.train import distributed as D
from hillclimb.train.config import TrainConfig
from hillclimb.train.logging import RunLogger, truncate_after
from hillclimb.train.optim import build_optimizers
from hillclimb.train.schedule import apply_lr, lr_multiplier

BatchFn = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class TrainTask:
    stage: str  # "pretrain" | "sft"
    model_cfg: ModelConfig
    tokenizer: Any
    batches: BatchFn
    val_ids: np.ndarray  # [n, seq_len + 1]
    val_mask: np.ndarray | None
    init_checkpoint: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # extra fields for run.json / RunResult


@dataclass
class RunResult:
    run_dir: str
    final_dir: str | None
    stage: str
    steps: int
    tokens: int
    final_loss: float | None
    val_loss: float | None
    val_bpb: float | None
    elapsed_s: float
    tokens_per_s: float
    stopped_early: bool = False
    resumed_from: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- pre-flight checks ------------------------------------------------------------------------
def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise HillclimbError(
            f"output directory {out} is not writable: {exc.strerror or exc}"
        ) from exc


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_memory(
    model_cfg: ModelConfig, micro_batch: int, seq_len: int, info: D.DistInfo
) -> dict[str, int]:
    from hillclimb.model.accounting import human_bytes, train_memory_bytes

    need = train_memory_bytes(model_cfg, micro_batch, seq_len)
    have = available_memory(info.device)
    if info.device.type == "cpu":
        have //= max(1, info.local_world)
    if need > 0.9 * have:
        raise HillclimbError(
            f"{model_cfg.name} with micro-batch {micro_batch} x {seq_len} tokens needs about "
            f"{human_bytes(need)} per process for training but only {human_bytes(have)} is available on "
            f"{info.device.type}; lower --micro-batch-size/--seq-len or pick a smaller preset"
        )
    return {"estimate_bytes": need, "available_bytes": have}


def micro_batch_of(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """(micro_batch_size, grad_accum) for this world size."""
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by {world} processes")
    per_rank = cfg.batch_size // world
    micro = min(cfg.micro_batch_size or per_rank, per_rank)
    if per_rank % micro:
        raise ConfigError(
            f"per-process batch {per_rank} is not divisible by micro_batch_size {micro}"
        )
    return micro, per_rank // micro


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    use_bf16 = dtype == "bf16" or (dtype == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---- evaluation -------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    ids: np.ndarray,
    mask: np.ndarray | None,
    token_bytes: torch.Tensor,
    info: D.DistInfo,
    micro: int,
    dtype: str,
) -> dict[str, float]:
    """Σ NLL, target tokens and target bytes over this rank's share of the val rows (all-reduced)."""
    was = model.training
    model.eval()
    n = ids.shape[0]
    rows = range(info.rank, n, info.world)
    tot = torch.zeros(3, dtype=torch.float64)
    idx = list(rows)
    # FSDP needs every rank to run the same number of forwards: pad with empty-weight repeats.
    per_rank = math.ceil(n / info.world) if n else 0
    for start in range(0, per_rank, micro):
        sel = idx[start : start + micro]
        real = len(sel)
        if real == 0:
            sel = [0]
        x = torch.from_numpy(ids[sel]).to(info.device)
        inp, tgt = x[:, :-1], x[:, 1:]
        w = (
            torch.ones_like(tgt, dtype=torch.float64)
            if mask is None
            else torch.from_numpy(mask[sel][:, 1:]).to(info.device).double()
        )
        if real == 0:
            w.zero_()
        with _autocast(info.device, dtype):
            logits = model(inp)
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), tgt.flatten(), reduction="none"
        ).double()
        wf = w.flatten()
        tot[0] += float((nll * wf).sum())
        tot[1] += float(wf.sum())
        tot[2] += float((token_bytes[tgt.flatten()].double() * wf).sum())
    info.all_reduce_sum(tot)
    model.train(was)
    nll_sum, count, nbytes = tot.tolist()
    return {
        "val_loss": nll_sum / max(count, 1.0),
        "val_bpb": nll_sum / (math.log(2) * nbytes) if nbytes > 0 else float("nan"),
        "val_tokens": int(count),
        "val_bytes": int(nbytes),
    }


# ---- state gather / restore ------------------------------------------------------------------
def _full_states(model: torch.nn.Module, optimizers: list, info: D.DistInfo) -> tuple[dict, list]:
    if info.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd = get_model_state_dict(model, options=opts)
        osds = [get_optimizer_state_dict(model, o, options=opts) for o in optimizers]
        return msd, osds
    return model.state_dict(), [o.state_dict() for o in optimizers]


def _restore_optim(
    model: torch.nn.Module, optimizers: list, states: list, info: D.DistInfo
) -> None:
    if len(states) != len(optimizers):
        raise HillclimbError("checkpoint optimizer layout differs from this run's (adamw vs muon?)")
    if info.mode == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        for o, s in zip(optimizers, states, strict=True):
            set_optimizer_state_dict(model, o, optim_state_dict=s, options=opts)
        return
    for o, s in zip(optimizers, states, strict=True):
        o.load_state_dict(s)


def _expert_biases(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{i}": m.gate.expert_bias.detach().cpu().clone() for i, m in enumerate(model.moe_layers())
    }


# ---- the loop ---------------------------------------------------------------------------------
def run_training(cfg: TrainConfig, task: TrainTask) -> RunResult:
    if cfg.out is None:
        raise ConfigError("an output run directory (out) is required")
    out = Path(cfg.out)
    info = D.init(cfg.device, cfg.distributed)
    try:
        return _run(cfg, task, out, info)
    finally:
        D.shutdown(info)


def _run(cfg: TrainConfig, task: TrainTask, out: Path, info: D.DistInfo) -> RunResult:
    t_start = time.perf_counter()
    check_writable(out)
    if info.device.type == "cpu":
        torch.set_num_threads(cfg.threads or D.local_cpu_threads(info))
    if cfg.optimizer == "muon" and info.mode == "fsdp":
        raise ConfigError("optimizer=muon is not supported with distributed=fsdp (use ddp)")
    micro, accum = micro_batch_of(cfg, info.world)
    mcfg = task.model_cfg
    if cfg.seq_len > mcfg.max_seq_len:
        raise ConfigError(
            f"seq_len {cfg.seq_len} exceeds the model's max_seq_len {mcfg.max_seq_len}"
        )
    mem = check_memory(mcfg, micro, cfg.seq_len, info) if cfg.memory_check else {}

    # ---- resume? -----------------------------------------------------------------------------
    resume_from: tuple[int, Path] | None = None
    if info.is_main:
        ck.sweep_temp(out)
    info.barrier()
    latest = ck.latest_checkpoint(out)
    if latest is not None and not cfg.resume:
        raise HillclimbError(
            f"{out} already holds checkpoints (latest {latest[1].name}); "
            "pass --resume to continue it or choose a new --out"
        )
    if cfg.resume and latest is not None:
        resume_from = latest
    done = out / "run.json"
    if (
        resume_from is not None
        and resume_from[0] >= cfg.steps
        and done.is_file()
        and (out / "final").is_dir()
    ):
        import json

        prev = json.loads(done.read_text())
        return RunResult(**{k: prev[k] for k in RunResult.__dataclass_fields__ if k in prev})

    # ---- model -------------------------------------------------------------------------------
    from hillclimb.model.checkpoint import load_model
    from hillclimb.model.transformer import build_model

    model = build_model(mcfg, seed=cfg.seed)
    src = resume_from[1] if resume_from else task.init_checkpoint
    if src is not None:
        loaded = load_model(src, device="cpu", dtype=torch.float32)
        if loaded.cfg.to_dict() != mcfg.to_dict():
            diff = {k for k, v in loaded.cfg.to_dict().items() if mcfg.to_dict().get(k) != v}
            raise HillclimbError(
                f"checkpoint {src} has a different model config ({sorted(diff)[:6]})"
            )
        model.load_state_dict(loaded.state_dict())
        del loaded
    model.to(info.device)
    model.train()
    raw = model
    wrapped = D.wrap(model, info)
    fwd = torch.compile(wrapped) if cfg.compile else wrapped
    optimizers = build_optimizers(
        raw,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        muon_lr=cfg.muon_lr,
        muon_momentum=cfg.muon_momentum,
    )
    start_step, tokens_seen = 0, 0
    if resume_from is not None:
        st = ck.load_trainer_state(resume_from[1])
        _restore_optim(raw, optimizers, st["optimizers"], info)
        for i, m in enumerate(raw.moe_layers()):
            m.gate.expert_bias.copy_(st["expert_bias"][str(i)].to(info.device))
        ck.set_rng_state(st["rng"])
        start_step, tokens_seen = int(st["step"]), int(st["tokens"])
        if info.is_main:
            truncate_after(out, start_step)
    else:
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed & 0xFFFFFFFF)
        import random

        random.seed(cfg.seed)
    info.barrier()

    token_bytes = torch.tensor(
        task.tokenizer.token_bytes + [0] * (mcfg.vocab_size - task.tokenizer.vocab_size),
        dtype=torch.float64,
        device=info.device,
    )
    if info.is_main:
        write_json_atomic(
            out / "config.json",
            {
                "stage": task.stage,
                "train": cfg.to_dict(),
                "model": mcfg.to_dict(),
                "world_size": info.world,
                "mode": info.mode,
                "micro_batch_size": micro,
                "grad_accum": accum,
                "memory": mem,
                **task.summary,
            },
        )
    log = RunLogger(
        out, info.is_main, cfg.steps, start_step, cfg.tensorboard, cfg.progress, task.stage
    )
    moe_layers = raw.moe_layers()
    last_loss: float | None = None
    last_val: dict[str, float] | None = None
    last_saved = start_step if resume_from else -1
    stopped_early = False
    step = start_step
    t_loop = time.perf_counter()
    tokens_at_loop = tokens_seen

    def save(step_now: int) -> Path | None:
        nonlocal last_saved
        msd, osds = _full_states(wrapped, optimizers, info)
        path = None
        if info.is_main:
            state = {
                "format": ck.STATE_FORMAT,
                "step": step_now,
                "tokens": tokens_seen,
                "optimizers": osds,
                "expert_bias": _expert_biases(raw),
                "rng": ck.rng_state(),
                "data_position": {"step": step_now, "seed": cfg.seed},
            }
            if info.mode == "fsdp":
                cpu_model = build_model(mcfg, seed=cfg.seed)
                cpu_model.load_state_dict({k: v for k, v in msd.items()}, strict=False)
                for i, m in enumerate(cpu_model.moe_layers()):
                    m.gate.expert_bias.copy_(state["expert_bias"][str(i)])
                to_save = cpu_model
            else:
                to_save = raw
            meta = {
                "lineage": {
                    "stage": task.stage,
                    "step": step_now,
                    "seed": cfg.seed,
                    "parent": str(task.init_checkpoint) if task.init_checkpoint else None,
                },
                **task.meta,
            }
            path = ck.save_training_checkpoint(
                ck.step_dir(out, step_now), to_save, task.tokenizer, meta, state
            )
            ck.prune(out, cfg.keep_last)
        info.barrier()
        last_saved = step_now
        return path

    def validate(step_now: int) -> None:
        nonlocal last_val
        if task.val_ids.shape[0] == 0:
            return
        r = evaluate(wrapped, task.val_ids, task.val_mask, token_bytes, info, micro, cfg.dtype)
        last_val = {"step": step_now, **r}
        log.val(last_val)

    try:
        while step < cfg.steps:
            mult = lr_multiplier(
                step, cfg.steps, cfg.schedule, cfg.warmup_steps, cfg.min_lr_ratio, cfg.decay_frac
            )
            apply_lr(optimizers, mult)
            ids, mask = task.batches(step)
            if mask is None:
                global_targets = float(ids.shape[0] * (ids.shape[1] - 1))
            else:
                global_targets = float(mask[:, 1:].sum())
            denom = max(global_targets, 1.0)
            per = ids.shape[0] // info.world
            my_ids = ids[info.rank * per : (info.rank + 1) * per]
            my_mask = None if mask is None else mask[info.rank * per : (info.rank + 1) * per]
            stats = torch.zeros(2, dtype=torch.float64)  # Σ nll, Σ aux
            counts = [torch.zeros(m.cfg.n_experts, dtype=torch.float64) for m in moe_layers]
            n_micro_global = accum * info.world
            for mi in range(accum):
                sl = slice(mi * micro, (mi + 1) * micro)
                x = torch.from_numpy(np.ascontiguousarray(my_ids[sl])).to(info.device)
                inp, tgt = x[:, :-1], x[:, 1:]
                if my_mask is not None:
                    mk = torch.from_numpy(np.ascontiguousarray(my_mask[sl][:, 1:])).to(info.device)
                    tgt = tgt.masked_fill(mk == 0, -100)
                with D.grad_sync(wrapped, info, sync=mi == accum - 1):
                    with _autocast(info.device, cfg.dtype):
                        logits = fwd(inp)
                    nll = F.cross_entropy(
                        logits.float().flatten(0, 1),
                        tgt.flatten(),
                        ignore_index=-100,
                        reduction="sum",
                    )
                    aux = raw.aux_loss()
                    loss = (nll / denom + aux / n_micro_global) * info.world
                    loss.backward()
                stats[0] += float(nll.detach())
                stats[1] += float(aux.detach())
                for c, m in zip(counts, moe_layers, strict=True):
                    if m.last_stats is not None:
                        c += m.last_stats.tokens_per_expert.detach().double().cpu()
            info.all_reduce_sum(stats)
            if counts:
                flat = info.all_reduce_sum(torch.cat(counts))
                counts = list(flat.split([m.cfg.n_experts for m in moe_layers]))
            grad_norm = _clip(raw, cfg.grad_clip)
            for o in optimizers:
                o.step()
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            for c, m in zip(counts, moe_layers, strict=True):
                m.update_bias(c)
            step += 1
            tokens_seen += int(ids.shape[0] * (ids.shape[1] - 1))
            last_loss = float(stats[0] / denom)
            now = time.perf_counter()
            show = step % cfg.log_every == 0 or step == cfg.steps
            balance = [float(c.max() / c.mean().clamp_min(1e-9)) for c in counts]
            log.step(
                {
                    "step": step,
                    "loss": last_loss,
                    "aux": float(stats[1] / n_micro_global),
                    "lr": optimizers[0].param_groups[0]["lr"],
                    "grad_norm": grad_norm,
                    "tokens": tokens_seen,
                    "tok_s": (tokens_seen - tokens_at_loop) / max(now - t_loop, 1e-9),
                    "balance": sum(balance) / len(balance) if balance else None,
                    "elapsed_s": now - t_start,
                },
                show,
            )
            if show and moe_layers:
                log.routing(step, raw.routing_stats())
            if not math.isfinite(last_loss):
                raise HillclimbError(
                    f"loss became {last_loss} at step {step}; lower the learning rate"
                )
            if cfg.val_every and step % cfg.val_every == 0 and step < cfg.steps:
                validate(step)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.steps:
                save(step)
            if cfg.time_limit_s is not None:
                over = info.broadcast_object(time.perf_counter() - t_start > cfg.time_limit_s)
                if over and step < cfg.steps:
                    stopped_early = True
                    break
        if last_val is None or last_val["step"] != step:
            validate(step)
        final_dir = None
        if last_saved != step:
            save(step)
        if info.is_main:
            final_dir = ck.publish_final(out, ck.step_dir(out, step))
    finally:
        log.close()
    elapsed = time.perf_counter() - t_start
    loop_s = max(time.perf_counter() - t_loop, 1e-9)
    result = RunResult(
        run_dir=str(out),
        final_dir=str(final_dir) if final_dir else str(out / "final"),
        stage=task.stage,
        steps=step,
        tokens=tokens_seen,
        final_loss=last_loss,
        val_loss=last_val["val_loss"] if last_val else None,
        val_bpb=last_val["val_bpb"] if last_val else None,
        elapsed_s=elapsed,
        tokens_per_s=(tokens_seen - tokens_at_loop) / loop_s,
        stopped_early=stopped_early,
        resumed_from=resume_from[0] if resume_from else None,
        extra=dict(task.summary),
    )
    if info.is_main:
        write_json_atomic(out / "run.json", result.to_dict())
    return result


def _clip(model: torch.nn.Module, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        n = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        n = torch.nn.utils.get_total_norm([p.grad for p in params])
    if hasattr(n, "full_tensor"):
        n = n.full_tensor()
    return float(n)
