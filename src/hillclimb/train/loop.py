"""The trainer shared by pre-training, SFT and RL, and the pre-training/SFT loop over it.

`Trainer` owns setup, resume, the distributed wrap, one optimizer step for any loss
(`update(batch, loss_fn, lr_mult)`), validation, checkpoints and the final publish; the losses are
plain objects (`CrossEntropyLoss` here, the policy-gradient losses in `hillclimb.rl`). Pre-training
and SFT are the same loop over a different batch source: `TrainTask` carries the model config,
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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.io import exclusive_dir, write_json_atomic
from hillclimb.model.config import ModelConfig
from hillclimb.model.moe import routing_replay
from hillclimb.train import checkpointing as ck
from hillclimb.train import distributed as D
from hillclimb.train.config import TrainConfig
from hillclimb.train.logging import RunLogger, clear_logs, truncate_after
from hillclimb.train.optim import build_optimizers, decay_param_ids, set_weight_decay
from hillclimb.train.schedule import apply_lr, lr_multiplier_with_hold

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer
    from hillclimb.train.copy_check import CopyWarmup

BatchFn = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class TrainTask:
    stage: str  # "pretrain" | "sft"
    model_cfg: ModelConfig
    tokenizer: Tokenizer
    batches: BatchFn
    val_ids: np.ndarray  # [n, seq_len + 1]
    val_mask: np.ndarray | None
    init_checkpoint: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # extra fields for run.json / RunResult
    # global rows of the steps whose batches are not `batch_size` rows, by what makes them (SFT
    # length buckets): checked against the process count before any step, not at the first one
    other_rows: dict[str, int] = field(default_factory=dict)
    # pre-training's copy warm-up (shared with its batch function, which reads its end): the loop
    # advances it after every step, keeps it in the checkpoint and `run.json` `extra.copy_warmup`
    copy_warmup: CopyWarmup | None = None


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


def check_memory(
    model_cfg: ModelConfig, micro_batch: int, seq_len: int, info: D.DistInfo
) -> dict[str, int]:
    from hillclimb.model.accounting import available_memory, human_bytes, train_memory_bytes

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
    if D.uses_bf16(device, dtype):
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
    # nothing measured is None, not a number: rows without a target (an SFT val set whose only
    # targets fall on a row's first token) reported a val loss of 0.0, and targets of special
    # tokens only (empty replies: `<|im_end|>` has no bytes) a bpb of NaN, which run.json then
    # held as a bare `NaN` (not JSON)
    return {
        "val_loss": nll_sum / count if count > 0 else None,
        "val_bpb": nll_sum / (math.log(2) * nbytes) if nbytes > 0 else None,
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
            set_optimizer_state_dict(model, o, optim_state_dict=_by_name(model, o, s), options=opts)
        return
    for o, s in zip(optimizers, states, strict=True):
        o.load_state_dict(s)


def _by_name(model: torch.nn.Module, optimizer: Any, state: dict) -> dict:
    """An optimizer state dict keyed by parameter name, as FSDP2's full state dicts are.

    Why: a 1-process or DDP run saves torch's own format, keyed by the parameter's index in the
    optimizer's groups, and `distributed` may change on resume (DDP → FSDP2 to scale a run out):
    FSDP2's restore looked up names and stopped with "damaged or from another run: KeyError".
    The optimizer here was built over the same model in the same order, so index i of a saved
    group is parameter i of the same group now. A state already keyed by name passes through."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(i, int) for g in groups for i in g.get("params", [])
    ):
        return state
    names = {id(p): n for n, p in model.named_parameters()}
    if len(groups) != len(optimizer.param_groups):
        raise HillclimbError("checkpoint optimizer layout differs from this run's (param groups)")
    name_of: dict[int, str] = {}
    for saved, now in zip(groups, optimizer.param_groups, strict=True):
        if len(saved["params"]) != len(now["params"]):
            raise HillclimbError("checkpoint optimizer layout differs from this run's (params)")
        name_of.update(
            (i, names[id(p)]) for i, p in zip(saved["params"], now["params"], strict=True)
        )
    return {
        "state": {name_of[i]: v for i, v in state.get("state", {}).items()},
        "param_groups": [{**g, "params": [name_of[i] for i in g["params"]]} for g in groups],
    }


def _expert_biases(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{i}": m.gate.expert_bias.detach().cpu().clone() for i, m in enumerate(model.moe_layers())
    }


# ---- losses -------------------------------------------------------------------------------------
# "ids" [B, T + 1] int64; optional "mask" [B, T + 1] (targets that count); optional "valid"
# [B, T + 1] (real tokens of right-padded rows: padding is kept out of attention and out of the
# MoE balancing statistics and aux loss); more per-row arrays for the loss
Batch = dict[str, Any]


class CrossEntropyLoss:
    """Next-token cross-entropy over target tokens (pre-training: all; SFT: `mask`ed ones).

    A loss for `Trainer.update` has two parts: `denominator(batch)` over the *global* batch (so
    the gradient is the same however the batch is split over ranks and micro-batches) and
    `__call__(logits, micro, model)` → (sum over the micro-batch's targets, stats to log)."""

    name = "nll"

    def denominator(self, batch: Batch) -> float:
        ids, mask = batch["ids"], batch.get("mask")
        if mask is None:
            return float(ids.shape[0] * (ids.shape[1] - 1))
        return float(mask[:, 1:].sum())

    def __call__(
        self, logits: torch.Tensor, micro: dict[str, torch.Tensor], model: torch.nn.Module
    ) -> tuple[torch.Tensor, dict[str, float]]:
        tgt = micro["ids"][:, 1:]
        if micro.get("mask") is not None:
            tgt = tgt.masked_fill(micro["mask"][:, 1:] == 0, -100)
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="sum"
        )
        return nll, {"nll": float(nll.detach())}


# ---- resume ------------------------------------------------------------------------------------
# Settings a resume may change: where things are (paths: a moved run dir; the init checkpoint is
# ignored on resume and the model config is checked against the checkpoint itself), how long to
# run (`steps` extends a run), and what is logged/evaluated/saved and on what hardware. Every other
# field (seed, batch, lr, schedule, RL's group size, families, reward, ...) shapes the trajectory:
# resuming with another value would silently splice two different runs into one curve.
# (`micro_batch_size` is here as a field only: its effective value is checked, check_resume_config.)
RESUME_FREE_FIELDS = frozenset({
    "out", "data", "tokenizer", "init", "sft_data", "val_data", "fim_corpus", "harness",
    "preset", "model_config", "model_overrides", "resume", "steps", "time_limit_s", "progress",
    "tensorboard", "threads", "log_every", "val_every", "val_tokens", "ckpt_every", "keep_last",
    "memory_check", "compile", "device", "dtype", "distributed", "micro_batch_size",
    "allow_tokenizer_mismatch", "eval_every", "eval_n_per_tier", "engine_batch",
    "harness_concurrency", "pareto_budgets", "drafter",
})  # fmt: skip


def check_resume_config(
    out: Path, cfg: TrainConfig, data_fingerprint: str | None = None, micro: int | None = None
) -> None:
    """Refuse to resume the run in `out` with settings other than those it was trained with
    (its `config.json`, written at every (re)start). A run without a readable record (older
    formats) is resumed as before.

    `data_fingerprint` (a stage's `TrainTask.summary["data_fingerprint"]`: what its batches are
    drawn from) is compared too: the data paths may change on resume (a moved directory), but
    other data behind them would splice two runs into one curve just as another seed would.

    `micro` (the micro-batch this process will use, `micro_batch_of`) is compared with the one
    the run recorded: `micro_batch_size` itself is free (None resolves to the per-process batch,
    which the world size moves), but the MoE aux/z losses are per micro-batch, so another
    effective micro-batch continued a different trajectory while claiming to be the same run."""
    import json

    try:
        rec = json.loads((out / "config.json").read_text())
        prev = rec.get("train")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(prev, dict):
        return
    was = rec.get("data_fingerprint")
    if data_fingerprint and isinstance(was, str) and was != data_fingerprint:
        raise HillclimbError(
            f"{out} was trained on other data (fingerprint {was[:12]}…, now "
            f"{data_fingerprint[:12]}…); resume it with the data it was started with, or choose "
            "a new --out"
        )
    new = json.loads(json.dumps(cfg.to_dict(), default=str))
    changed = [
        f"{k}: {prev[k]!r} -> {new[k]!r}"
        for k in sorted(new)
        if k not in RESUME_FREE_FIELDS and k in prev and prev[k] != new[k]
    ]
    # a setting added after the run started is absent from its record: the run trained with
    # that setting's default, so a resume that sets another value changes the run just the same
    # (session 29's `copy_warmup_weight_decay` on a session-28 run was resumed silently)
    implied = _implied_settings(type(cfg), prev)
    changed += [
        f"{k}: (not recorded; the run predates it: default {implied[k]!r}) -> {new[k]!r}"
        for k in sorted(new)
        if k not in RESUME_FREE_FIELDS and k not in prev and k in implied
        and implied[k] != new[k]
    ]  # fmt: skip
    was_micro = rec.get("micro_batch_size")
    if micro is not None and isinstance(was_micro, int) and was_micro != micro:
        changed.append(
            f"micro_batch_size: {was_micro} -> {micro} (per process; the MoE balancing losses "
            "are per micro-batch)"
        )
    if changed:
        more = f"; … {len(changed) - 6} more" if len(changed) > 6 else ""
        raise HillclimbError(
            f"{out} was trained with other settings ({'; '.join(changed[:6])}{more}); resume it "
            "with the settings it was started with, or choose a new --out"
        )


def _implied_settings(cls: type, prev: dict[str, Any]) -> dict[str, Any]:
    """The settings a recorded run trained with, as `config.json` records them: its record with
    every field it lacks at its default, resolved the way the config resolves it (an RL run's
    `std_norm` follows its `loss_agg`). {} when the record no longer builds a config (a field
    since removed or retyped): the fields it does hold are still compared as written."""
    import dataclasses
    import json

    known = {f.name for f in dataclasses.fields(cls)}
    try:
        cfg = cls.from_dict({k: v for k, v in prev.items() if k in known})
        return json.loads(json.dumps(cfg.to_dict(), default=str))
    except Exception:  # noqa: BLE001 - an old record that no longer validates: compare as written
        return {}


def finished_result(out: Path, step: int) -> RunResult | None:
    """The recorded result of the run in `out` when it finished at checkpoint `step`: its
    `run.json`, if that describes `step` and `final/` exists; otherwise None (publish again).

    Why the step must match: `run.json` and `final/` are written after the last checkpoint, so a
    run extended with `--steps` and stopped between its last save and that publish still held the
    shorter run's record and `final/`; `--resume` returned those and never published the newer
    weights. An unreadable `run.json` (hand-edited, cut short) is likewise re-published, not a
    JSON traceback. The paths are where `out` is now (a moved run's record named its old place)."""
    import json

    try:
        prev = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(prev, dict) or prev.get("steps") != step or not (out / "final").is_dir():
        return None
    # where the run is now: one moved or copied since named its old place (another run's)
    prev.update(run_dir=str(out), final_dir=str(out / "final"))
    try:
        return RunResult(**{k: prev[k] for k in RunResult.__dataclass_fields__ if k in prev})
    except TypeError:  # a record missing required fields
        return None


def last_val_at(out: Path, step: int) -> dict[str, Any] | None:
    """The validation record of `step` in `val.jsonl` (read after `truncate_after`), if any.

    Why: a resume at the run's last step (stopped after its final validation and checkpoint,
    before `final/` was published) would validate the same weights again and append a second
    record for that step; `finish` reuses this one instead."""
    from hillclimb.train.logging import read_jsonl

    recs = [r for r in read_jsonl(out / "val.jsonl") if isinstance(r, dict)]
    last = recs[-1] if recs else None
    return last if last is not None and last.get("step") == step else None


# ---- the trainer --------------------------------------------------------------------------------
class Trainer:
    """Everything a training stage needs around its optimizer steps, for any loss.

    Built once per run: pre-flight checks, the model (fresh, from `task.init_checkpoint`, or
    resumed from the latest complete checkpoint with optimizer state, MoE selection biases and
    RNG states), the DDP/FSDP2 wrap, optimizers, the run logger. Then the caller loops:
    `update(batch, loss_fn, lr_mult)` is one optimizer step over a global batch (micro-batches,
    gradient accumulation, clipping, bias update), `validate(step)`, `save(step, extra)`, and
    `finish()` publishes `final/` and `run.json`. Pre-training and SFT are `run_training`
    (cross-entropy over a batch function); RL calls the same pieces with its own loss and batches
    made by rollouts of `trainer.raw` (the unwrapped model, whose weights the engine shares)."""

    def __init__(self, cfg: TrainConfig, task: TrainTask, out: Path, info: D.DistInfo):
        self.t_start = time.perf_counter()
        self.cfg, self.task, self.out, self.info = cfg, task, out, info
        check_writable(out)
        if info.device.type == "cpu":
            torch.set_num_threads(cfg.threads or D.local_cpu_threads(info))
        if cfg.optimizer == "muon" and info.mode == "fsdp":
            raise ConfigError("optimizer=muon is not supported with distributed=fsdp (use ddp)")
        self.micro, self.accum = micro_batch_of(cfg, info.world)
        for what, rows in task.other_rows.items():
            if rows % info.world:  # was "a batch of N rows cannot be split" at such a step
                raise ConfigError(
                    f"{what} is {rows} rows, which {info.world} processes cannot share evenly"
                )
        mcfg = task.model_cfg
        if cfg.seq_len > mcfg.max_seq_len:
            raise ConfigError(
                f"seq_len {cfg.seq_len} exceeds the model's max_seq_len {mcfg.max_seq_len}"
            )
        mem = check_memory(mcfg, self.micro, cfg.seq_len, info) if cfg.memory_check else {}

        # ---- resume? -------------------------------------------------------------------------
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
            check_resume_config(out, cfg, task.summary.get("data_fingerprint"), self.micro)
        self.resume_from = resume_from
        self.done: RunResult | None = None
        if resume_from is not None and resume_from[0] >= cfg.steps:
            self.done = finished_result(out, resume_from[0])
            if self.done is not None:
                return

        # ---- model ---------------------------------------------------------------------------
        from hillclimb.model.checkpoint import load_model
        from hillclimb.model.transformer import build_model

        model = build_model(mcfg, seed=cfg.seed)
        src = resume_from[1] if resume_from else task.init_checkpoint
        if src is not None:
            loaded = load_model(src, device="cpu", dtype=torch.float32)
            diff = {k for k, v in loaded.cfg.to_dict().items() if mcfg.to_dict().get(k) != v}
            # a longer (or shorter) context is the one change the weights do not see: RoPE
            # angles are computed per position, so fine-tuning may extend it (`--set
            # max_seq_len=N`: tool episodes longer than pre-training's context)
            if diff and not (diff == {"max_seq_len"} and not resume_from):
                raise HillclimbError(
                    f"checkpoint {src} has a different model config ({sorted(diff)[:6]})"
                )
            model.load_state_dict(loaded.state_dict())
            del loaded
        model.to(info.device)
        model.train()
        self.raw = model
        self.wrapped = D.wrap(model, info, cfg.dtype)
        self.fwd = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        self.optimizers = build_optimizers(
            model,
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            muon_lr=cfg.muon_lr,
            muon_momentum=cfg.muon_momentum,
        )
        # the decay group's parameters, for a weight decay that changes with the phase
        # (`set_decay`: pre-training's copy warm-up)
        self.decay_ids = decay_param_ids(model, cfg.optimizer)
        self.step, self.tokens_seen = 0, 0
        self.extra_state: dict[str, Any] = {}  # the caller's resumable state (RL: curriculum...)
        if resume_from is not None:
            st = ck.load_trainer_state(resume_from[1])
            try:
                _restore_optim(model, self.optimizers, st["optimizers"], info)
                for i, m in enumerate(model.moe_layers()):
                    m.gate.expert_bias.copy_(st["expert_bias"][str(i)].to(info.device))
                ck.set_rng_state(st["rng"])
            except (
                KeyError,
                IndexError,
                ValueError,
                TypeError,
                AttributeError,
                RuntimeError,
            ) as exc:
                if isinstance(exc, HillclimbError):
                    raise
                raise HillclimbError(
                    f"cannot restore the trainer state of {resume_from[1]} (damaged or from "
                    f"another run: {type(exc).__name__}: {exc})"
                ) from exc
            self.step, self.tokens_seen = int(st["step"]), int(st["tokens"])
            self.extra_state = dict(st.get("extra") or {})
            if info.is_main:
                truncate_after(out, self.step)
        else:
            if info.is_main:
                # a fresh start in a directory an abandoned attempt logged into (it died before
                # its first checkpoint: a NaN, a kill) must not append to that attempt's curve
                clear_logs(out)
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed & 0xFFFFFFFF)
            import random

            random.seed(cfg.seed)
        info.barrier()

        self.token_bytes = torch.tensor(
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
                    "micro_batch_size": self.micro,
                    "grad_accum": self.accum,
                    "memory": mem,
                    **task.summary,
                },
            )
        self.log = RunLogger(
            out, info.is_main, cfg.steps, self.step, cfg.tensorboard, cfg.progress, task.stage,
            model=mcfg.name,
        )  # fmt: skip
        self.moe_layers = model.moe_layers()
        self.last_loss: float | None = None
        # every rank reads it (after the barrier above): they must agree on validating again
        self.last_val: dict[str, Any] | None = last_val_at(out, self.step) if resume_from else None
        self.last_saved = self.step if resume_from else -1
        self.t_loop = time.perf_counter()
        self.tokens_at_loop = self.tokens_seen

    def set_decay(self, weight_decay: float) -> None:
        """The weight decay of the decay group (matrices) for the next step."""
        set_weight_decay(self.optimizers, self.decay_ids, weight_decay)

    # ---- one optimizer step ----------------------------------------------------------------
    def update(
        self,
        batch: Batch,
        loss_fn: Any,
        lr_mult: float,
        *,
        update_bias: bool = True,
        aux_scale: float = 1.0,
        replay_routes: bool = True,
    ) -> dict[str, Any]:
        """One optimizer step on a global batch: this rank's rows in micro-batches, loss =
        Σ loss_fn / loss_fn.denominator(global batch) + MoE aux losses averaged over all
        micro-batches (so any world size × accumulation split gives the same gradient), fp32 on
        CPU / bf16 autocast on CUDA, clipping, the optimizer step, then the auxiliary-loss-free
        bias update from the step's expert loads (skipped with `update_bias=False`).
        `aux_scale` weights the MoE aux/z losses (RL: its policy gradient is far smaller than a
        cross-entropy gradient, so the full balancing term would steer the routers alone).
        A batch with `routes` (RL: the rollout's expert ids per token, [rows, T, n_moe, k]) is
        routed through them (`replay_routes`, routing replay) or only compared with them; the
        router agreement comes back as `route_agree` / `route_tokens` sums."""
        info, micro = self.info, self.micro
        apply_lr(self.optimizers, lr_mult)
        ids = batch["ids"]
        denom = max(loss_fn.denominator(batch), 1.0)
        if ids.shape[0] % info.world or ids.shape[0] == 0:
            raise HillclimbError(
                f"a batch of {ids.shape[0]} rows cannot be split over {info.world} processes"
            )
        per = ids.shape[0] // info.world
        # pre-training/SFT: per == micro x grad_accum; RL batches vary in size
        accum = -(-per // micro)
        mine = {
            k: (None if v is None else v[info.rank * per : (info.rank + 1) * per])
            for k, v in batch.items()
            if isinstance(v, np.ndarray) or v is None
        }
        stats: dict[str, float] = {}
        aux_sum = 0.0
        counts = [torch.zeros(m.cfg.n_experts, dtype=torch.float64) for m in self.moe_layers]
        n_micro_global = accum * info.world
        for mi in range(accum):
            sl = slice(mi * micro, (mi + 1) * micro)
            mb = {
                k: None
                if v is None
                else torch.from_numpy(np.ascontiguousarray(v[sl])).to(info.device)
                for k, v in mine.items()
            }
            routes = mb.get("routes")
            with D.grad_sync(self.wrapped, info, sync=mi == accum - 1):
                with (
                    _autocast(info.device, self.cfg.dtype),
                    routing_replay(
                        self.moe_layers,
                        None if routes is None else routes[:, :-1],
                        apply=replay_routes,
                    ),
                ):
                    if mb.get("valid") is not None:  # padded rows (RL): pads route nowhere
                        logits = self.fwd(mb["ids"][:, :-1], attention_mask=mb["valid"][:, :-1])
                    else:
                        logits = self.fwd(mb["ids"][:, :-1])
                part, st = loss_fn(logits, mb, self.raw)
                if routes is not None:
                    agree = [m.last_agreement or (0.0, 0.0) for m in self.moe_layers]
                    st = {
                        **st,
                        "route_agree": sum(a for a, _ in agree),
                        "route_tokens": sum(n for _, n in agree),
                    }
                aux = self.raw.aux_loss()
                loss = (part / denom + aux_scale * aux / n_micro_global) * info.world
                loss.backward()
            for k, v in st.items():
                stats[k] = stats.get(k, 0.0) + float(v)
            aux_sum += float(aux.detach())
            for c, m in zip(counts, self.moe_layers, strict=True):
                if m.last_stats is not None:
                    c += m.last_stats.tokens_per_expert.detach().double().cpu()
        keys = sorted(stats)
        tot = torch.tensor([stats[k] for k in keys] + [aux_sum], dtype=torch.float64)
        info.all_reduce_sum(tot)
        stats = dict(zip(keys, tot[:-1].tolist(), strict=True))
        if counts:
            flat = info.all_reduce_sum(torch.cat(counts))
            counts = list(flat.split([m.cfg.n_experts for m in self.moe_layers]))
        grad_norm = _clip(self.raw, self.cfg.grad_clip)
        if not math.isfinite(grad_norm):
            # Stop before the step: applied, it turns every weight into NaN, and the next
            # checkpoint would store those weights (pruning the last good one) for `--resume`
            # to continue from. The norm is global, so every rank stops here together.
            for o in self.optimizers:
                o.zero_grad(set_to_none=True)
            raise HillclimbError(
                f"the gradient became {grad_norm} at step {self.step + 1} (loss "
                f"{_loss_of(stats, denom)}); the update was not applied and the checkpoints "
                "are as they were: lower the learning rate"
            )
        for o in self.optimizers:
            o.step()
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        if update_bias:
            for c, m in zip(counts, self.moe_layers, strict=True):
                m.update_bias(c)
        balance = [float(c.max() / c.mean().clamp_min(1e-9)) for c in counts]
        return {
            "sums": stats,
            "denominator": denom,
            "aux": float(tot[-1]) / n_micro_global,
            "grad_norm": grad_norm,
            "lr": self.optimizers[0].param_groups[0]["lr"],
            "balance": sum(balance) / len(balance) if balance else None,
        }

    # ---- validation, checkpoints, the end ------------------------------------------------------
    def validate(self, step_now: int) -> None:
        task = self.task
        if task.val_ids.shape[0] == 0:
            return
        r = evaluate(
            self.wrapped,
            task.val_ids,
            task.val_mask,
            self.token_bytes,
            self.info,
            self.micro,
            self.cfg.dtype,
        )
        if not r["val_tokens"]:  # no target token in the val rows: nothing to record
            return
        self.last_val = {"step": step_now, **r}
        self.log.val(self.last_val)

    def save(self, step_now: int) -> Path | None:
        info, cfg, task = self.info, self.cfg, self.task
        msd, osds = _full_states(self.wrapped, self.optimizers, info)
        path = None
        if info.is_main:
            from hillclimb.model.transformer import build_model

            state = {
                "format": ck.STATE_FORMAT,
                "step": step_now,
                "tokens": self.tokens_seen,
                "optimizers": osds,
                "expert_bias": _expert_biases(self.raw),
                "rng": ck.rng_state(),
                "data_position": {"step": step_now, "seed": cfg.seed},
                "extra": self.extra_state,
            }
            if info.mode == "fsdp":
                cpu_model = build_model(task.model_cfg, seed=cfg.seed)
                cpu_model.load_state_dict({k: v for k, v in msd.items()}, strict=False)
                for i, m in enumerate(cpu_model.moe_layers()):
                    m.gate.expert_bias.copy_(state["expert_bias"][str(i)])
                to_save = cpu_model
            else:
                to_save = self.raw
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
                ck.step_dir(self.out, step_now), to_save, task.tokenizer, meta, state
            )
            ck.prune(self.out, cfg.keep_last)
        info.barrier()
        self.last_saved = step_now
        return path

    def finish(self, stopped_early: bool = False) -> RunResult:
        """Validate and save the last step if not done yet, publish `final/`, write `run.json`."""
        step, info = self.step, self.info
        try:
            if self.last_val is None or self.last_val["step"] != step:
                self.validate(step)
            final_dir = None
            if self.last_saved != step:
                self.save(step)
            if info.is_main:
                final_dir = ck.publish_final(self.out, ck.step_dir(self.out, step))
        finally:
            self.log.close()
        elapsed = time.perf_counter() - self.t_start
        loop_s = max(time.perf_counter() - self.t_loop, 1e-9)
        lv = self.last_val
        result = RunResult(
            run_dir=str(self.out),
            final_dir=str(final_dir) if final_dir else str(self.out / "final"),
            stage=self.task.stage,
            steps=step,
            tokens=self.tokens_seen,
            final_loss=self.last_loss,
            val_loss=lv["val_loss"] if lv else None,
            val_bpb=lv["val_bpb"] if lv else None,
            elapsed_s=elapsed,
            tokens_per_s=(self.tokens_seen - self.tokens_at_loop) / loop_s,
            stopped_early=stopped_early,
            resumed_from=self.resume_from[0] if self.resume_from else None,
            extra=dict(self.task.summary),
        )
        if self.task.copy_warmup is not None:
            result.extra["copy_warmup"] = self.task.copy_warmup.state()
        if info.is_main:
            write_json_atomic(self.out / "run.json", result.to_dict())
        return result

    def copy_top1(self, rows: torch.Tensor) -> float:
        """Copy probe top-1 of the current weights on `rows` (`copy_check.probe_rows`), agreed
        by every rank (rank 0's reading; FSDP needs every rank in the forward).

        Why the RNG fork: a check must leave the run's random streams as they were, so a run
        that checks draws the same numbers as one that does not (the model in eval mode draws
        none today; the fork keeps it so if a layer ever does)."""
        from hillclimb.train.copy_check import CHECK_LENGTH, score_copying

        model, info = self.wrapped, self.info
        was = model.training
        model.eval()
        devices = [info.device] if info.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), _autocast(info.device, self.cfg.dtype):
                score = score_copying(model, rows.to(info.device), CHECK_LENGTH)
        finally:
            model.train(was)
        return float(info.broadcast_object(score.top1_second_copy))

    def over_time(self) -> bool:
        """Whether the run's time limit has passed (agreed by every rank)."""
        if self.cfg.time_limit_s is None:
            return False
        return bool(
            self.info.broadcast_object(time.perf_counter() - self.t_start > self.cfg.time_limit_s)
        )


# ---- the pre-training / SFT loop ------------------------------------------------------------------
def require_out(cfg: TrainConfig) -> Path:
    """The run directory, or a ConfigError. Stages call it before building their task: without
    `--out` the data was read, encoded (and decontaminated) and the model config resolved first,
    only to be refused after all that work."""
    if cfg.out is None:
        raise ConfigError("an output run directory (--out) is required")
    return Path(cfg.out)


def run_training(cfg: TrainConfig, task: TrainTask) -> RunResult:
    out = require_out(cfg)
    with (
        exclusive_dir(out) if D.env_rank() == 0 else contextlib.nullcontext(),
        D.joined(cfg.device, cfg.distributed) as info,
    ):
        return _run(cfg, task, out, info)


def _run(cfg: TrainConfig, task: TrainTask, out: Path, info: D.DistInfo) -> RunResult:
    tr = Trainer(cfg, task, out, info)
    if tr.done is not None:
        return tr.done
    ce = CrossEntropyLoss()
    stopped_early = False
    cw = task.copy_warmup
    if cw is not None:
        cw.load(tr.extra_state.get("copy_warmup"))
    try:
        while tr.step < cfg.steps:
            mult = lr_multiplier_with_hold(
                tr.step,
                cfg.steps,
                cw.length() if cw is not None else cfg.copy_warmup_steps,
                cfg.schedule,
                cfg.warmup_steps,
                cfg.min_lr_ratio,
                cfg.decay_frac,
            )
            if cw is not None and cw.weight_decay is not None:
                # the warm-up's decay until its end (checkpoint state), the run's own after it
                tr.set_decay(cw.weight_decay if cw.in_warmup(tr.step) else cfg.weight_decay)
            ids, mask = task.batches(tr.step)
            st = tr.update({"ids": ids, "mask": mask}, ce, mult)
            tr.step += 1
            step = tr.step
            tr.tokens_seen += int(ids.shape[0] * (ids.shape[1] - 1))
            tr.last_loss = st["sums"]["nll"] / st["denominator"]
            now = time.perf_counter()
            show = step % cfg.log_every == 0 or step == cfg.steps
            tr.log.step(
                {
                    "step": step,
                    "loss": tr.last_loss,
                    "aux": st["aux"],
                    "lr": st["lr"],
                    "grad_norm": st["grad_norm"],
                    "tokens": tr.tokens_seen,
                    "tok_s": (tr.tokens_seen - tr.tokens_at_loop) / max(now - tr.t_loop, 1e-9),
                    "balance": st["balance"],
                    "elapsed_s": now - tr.t_start,
                },
                show,
            )
            if show and tr.moe_layers:
                tr.log.routing(step, tr.raw.routing_stats())
            if not math.isfinite(tr.last_loss):
                raise HillclimbError(
                    f"loss became {tr.last_loss} at step {step}; lower the learning rate"
                )
            if cw is not None:
                _advance_copy_warmup(tr, cw, step)
            if cfg.val_every and step % cfg.val_every == 0 and step < cfg.steps:
                tr.validate(step)
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step < cfg.steps:
                tr.save(step)
            if tr.over_time() and step < cfg.steps:
                stopped_early = True
                break
    except BaseException:
        tr.log.close()
        raise
    return tr.finish(stopped_early)


def _advance_copy_warmup(tr: Trainer, cw: CopyWarmup, step: int) -> None:
    """After step `step`: check copying if due, end the warm-up on a pass (or at its maximum),
    and keep its state where the next checkpoint takes it from."""

    def read() -> float:
        if cw.rows is None:
            raise HillclimbError("the copy warm-up checks copying but has no probe rows")
        return tr.copy_top1(cw.rows)

    before = len(cw.checks)
    ended = cw.after_step(step, read)
    checked = len(cw.checks) > before
    if tr.info.is_main and (ended or checked):
        read_s = f" copy probe top-1 {cw.checks[-1]['top1']:.3f}" if checked else ""
        end_s = f"; copy warm-up ends at step {cw.end}" if ended else ""
        print(f"[{tr.task.stage}] step {step}{read_s}{end_s}", file=sys.stderr, flush=True)
    tr.extra_state["copy_warmup"] = cw.state()


def _loss_of(stats: dict[str, float], denom: float) -> str:
    """The step's mean loss for a message, when the loss reports one (`nll`; RL losses differ)."""
    return f"{stats['nll'] / denom:.4g}" if "nll" in stats else "not reported"


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
