"""Dataclass configs for `hillclimb train` (pre-training) and `hillclimb sft`.

Why dataclasses filled from a TOML table: the climb's recipe has `[train]` / `[sft]` tables whose
keys are exactly these field names (`TrainConfig.from_dict(recipe["train"])`), the CLI maps its
flags onto the same fields, and `to_dict()` is written into every run directory (`config.json`) so
a run can be reproduced from what it left behind. Validation happens at construction, before any
tensor is allocated, so an impossible configuration fails with a message instead of mid-run.

Batch vocabulary (the same at every scale): `batch_size` is the *global* number of sequences per
optimizer step; each rank runs micro-batches of `micro_batch_size` sequences, and gradient
accumulation covers the rest (`grad_accum = batch_size / (micro_batch_size * world_size)`). The
data a step sees depends only on (seed, step), never on the number of processes, so 1 process
with accumulation and N processes without it train on the same global batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.config_types import check_field_types
from hillclimb.errors import ConfigError, HillclimbError


def _path(v: Any) -> Path | None:
    return None if v in (None, "") else Path(v)


@dataclass
class TrainConfig:
    # ---- what to train ------------------------------------------------------------------
    out: Path | None = None  # run directory (checkpoints/, metrics.jsonl, val.jsonl, final/)
    data: Path | None = None  # shards dir from `hillclimb data build` (DIR or DIR/shards)
    preset: str | None = None  # model preset (or model_config, or init)
    model_config: dict[str, Any] | None = None  # full ModelConfig dict (overrides preset)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"bias_balancing": true}
    tokenizer: Path | None = None  # tokenizer dir (default: the init checkpoint's)
    init: Path | None = None  # start from this checkpoint's weights (SFT: the pre-trained model)
    seed: int = 0
    # ---- batch --------------------------------------------------------------------------
    seq_len: int = 256
    batch_size: int = 16  # global sequences per optimizer step
    micro_batch_size: int | None = None  # per rank per forward (default: batch_size / world)
    steps: int = 200
    # pre-training and SFT: this share of each step's rows are copy rows (random data ids, each
    # span followed by itself; loss on the repeats only), so the model learns to copy from its
    # context (induction) — which the tiny corpus alone never taught it (BENCHMARKS.md, session 10)
    copy_fraction: float = 0.0
    # pre-training only: the first this-many steps use copy rows alone (from a fresh init the
    # mechanism forms on copy rows after a plateau of a few hundred steps; mixed into the corpus
    # at 25-50% it did not form in 400 steps: BENCHMARKS.md, session 10)
    copy_warmup_steps: int = 0
    # pre-training with copy_warmup_steps: probe copying every this-many warm-up steps and end the
    # warm-up at the first check reaching copy_check.COPY_THRESHOLD; copy_warmup_steps is then
    # the maximum (0, or more than copy_warmup_steps: a fixed warm-up; not an error, so the
    # default suits a short warm-up too). Why: the plateau before copying forms lasts a
    # seed-dependent 300 to > 700 steps (docs/areas/train.md, "Copy rows")
    copy_warmup_check_every: int = 50
    # pre-training with copy_warmup_steps: the weight decay of the decay group (matrices) during
    # the copy warm-up, fixed or adaptive; the corpus phase after it uses `weight_decay` (None:
    # `weight_decay` throughout). Why: at 0.1 the copy loss drifts down slowly instead of
    # breaking; at 0 seeds 1-2 passed the probe at step 450, at 0.1 not by 1,500 (docs/LOG.md,
    # session 28)
    copy_warmup_weight_decay: float | None = None
    # pre-training only: this share of the document pieces in each window is rearranged for
    # fill-in-the-middle (prefix, suffix, then the middle; `train.fim`), and of those this share
    # in the SPM layout (suffix first) rather than PSM. 0.5 / 0.5 are StarCoder's and Bavarian et
    # al. 2022's (arXiv 2207.14255) settings; 0 (off) by default, the code recipes turn it on
    fim_rate: float = 0.0
    fim_spm_rate: float = 0.5
    # ---- optimizer & schedule -----------------------------------------------------------
    optimizer: str = "adamw"  # "adamw" | "muon" (Muon for hidden matrices, AdamW for the rest)
    lr: float = 3e-3  # AdamW peak learning rate
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    weight_decay: float = 0.1  # matrices only; never norms, embeddings, biases
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables
    schedule: str = "cosine"  # "cosine" | "wsd" | "constant"
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2  # WSD: fraction of steps spent in the final linear decay
    # ---- runtime ------------------------------------------------------------------------
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    dtype: str = "auto"  # "auto" (fp32 on CPU, bf16 autocast on CUDA) | "fp32" | "bf16"
    compile: bool = False
    distributed: str = "auto"  # "auto" (ddp when world > 1) | "ddp" | "fsdp" | "none"
    threads: int | None = None  # torch intra-op threads on CPU (default: cores / local ranks)
    # ---- evaluation, logging, checkpoints -----------------------------------------------
    val_every: int = 100  # 0: only at the end
    val_tokens: int = 65536  # validation tokens per evaluation (fixed windows: comparable)
    log_every: int = 10  # routing stats + TensorBoard + progress refresh interval
    ckpt_every: int = 0  # 0: only the final checkpoint
    keep_last: int = 2
    resume: bool = False
    tensorboard: bool = True
    progress: bool | None = None  # None: only when stderr is a TTY and not under pytest
    time_limit_s: float | None = None  # stop early (and still save) after this much wall time
    allow_tokenizer_mismatch: bool = False
    memory_check: bool = True

    def __post_init__(self) -> None:
        for name in ("out", "data", "tokenizer", "init"):
            setattr(self, name, _path(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid {type(self).__name__}: {msg}")

        # torch seeds from a 64-bit integer: a larger one was a ValueError traceback at init
        need(-(2**63) <= self.seed < 2**63, f"seed must fit in 64 bits, got {self.seed}")
        need(self.seq_len > 0, "seq_len must be > 0")
        need(self.batch_size > 0, "batch_size must be > 0")
        need(
            self.micro_batch_size is None or self.micro_batch_size > 0,
            "micro_batch_size must be > 0",
        )
        need(self.steps >= 0, "steps must be >= 0")
        need(
            0 <= self.copy_warmup_steps <= self.steps,
            f"copy_warmup_steps must be in [0, steps={self.steps}], got {self.copy_warmup_steps}",
        )
        need(
            self.copy_warmup_check_every >= 0,
            "copy_warmup_check_every must be >= 0 (0: a fixed warm-up of copy_warmup_steps), "
            f"got {self.copy_warmup_check_every}",
        )
        need(
            0.0 <= self.copy_fraction <= 1.0,
            f"copy_fraction must be in [0, 1], got {self.copy_fraction}",
        )
        need(0.0 <= self.fim_rate <= 1.0, f"fim_rate must be in [0, 1], got {self.fim_rate}")
        need(
            0.0 <= self.fim_spm_rate <= 1.0,
            f"fim_spm_rate must be in [0, 1], got {self.fim_spm_rate}",
        )
        need(
            self.optimizer in ("adamw", "muon"),
            f"optimizer must be adamw|muon, got {self.optimizer!r}",
        )
        need(
            self.schedule in ("cosine", "wsd", "constant"),
            f"schedule must be cosine|wsd|constant, got {self.schedule!r}",
        )
        # NaN passes no comparison and inf passes `> 0`: both reached the optimizer and came
        # back as a NaN loss blamed on the learning rate (or, for beta1 = 1.5 or eps = -1, as a
        # ValueError traceback from torch's AdamW at the first step)
        for name in ("lr", "muon_lr", "muon_momentum", "weight_decay", "beta1", "beta2", "eps",
                     "grad_clip", "min_lr_ratio", "decay_frac"):  # fmt: skip
            v = getattr(self, name)
            need(math.isfinite(v), f"{name} must be a finite number, got {v}")
        need(self.lr > 0 and self.muon_lr > 0, "learning rates must be > 0")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        cwd = self.copy_warmup_weight_decay
        need(
            cwd is None or (math.isfinite(cwd) and cwd >= 0),
            "copy_warmup_weight_decay must be a finite number >= 0 (or unset: weight_decay "
            f"throughout), got {cwd}",
        )
        for name in ("beta1", "beta2", "muon_momentum"):
            v = getattr(self, name)
            need(0 <= v < 1, f"{name} must be in [0, 1), got {v}")
        need(self.eps > 0, f"eps must be > 0, got {self.eps}")
        need(
            self.time_limit_s is None
            or (math.isfinite(self.time_limit_s) and self.time_limit_s > 0),
            f"time_limit_s must be a positive number of seconds, got {self.time_limit_s}",
        )
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        need(0 <= self.decay_frac <= 1, "decay_frac must be in [0, 1]")
        need(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        need(self.grad_clip >= 0, "grad_clip must be >= 0")
        need(self.device in ("auto", "cpu", "cuda"), "device must be auto|cpu|cuda")
        need(self.dtype in ("auto", "fp32", "bf16"), "dtype must be auto|fp32|bf16")
        need(
            self.distributed in ("auto", "ddp", "fsdp", "none"),
            "distributed must be auto|ddp|fsdp|none",
        )
        need(self.keep_last >= 1, "keep_last must be >= 1")
        need(self.log_every >= 1, "log_every must be >= 1")
        need(self.val_every >= 0 and self.ckpt_every >= 0, "val_every/ckpt_every must be >= 0")
        need(self.val_tokens >= 0, "val_tokens must be >= 0")
        need(self.threads is None or self.threads > 0, "threads must be > 0")

    # ---- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        # a wrong type (`steps = "ten"`) is named here, not as a TypeError from validate()
        check_field_types(cls, d, f"invalid {cls.__name__}")
        return cls(**d)

    def replace(self, **kw: Any) -> Any:
        d = dataclasses.asdict(self)
        d.update(kw)
        return type(self)(**d)


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning: chat examples with loss on assistant tokens only (+ FIM)."""

    # `init` (CLI `--from`) is the pre-trained checkpoint; `data` is unused (see sft_data).
    sft_data: list[Path] = field(default_factory=list)  # JSONL files of examples
    val_data: list[Path] = field(default_factory=list)  # held-out JSONL (default: split off)
    val_fraction: float = 0.05  # when no val_data: this share of examples is held out
    # Built-in data from hillclimb.problems: {"families": [...] | None, "tiers": [...], "n": N}
    problems: dict[str, Any] | None = None
    # FIM examples cut from corpus documents (code-flash): a corpus dir with documents/*.jsonl(.gz)
    fim_corpus: Path | None = None
    fim_examples: int = 0
    fim_languages: list[str] | None = None  # default: every language except text/markdown/reasoning
    # judge `sft_data` and FIM records against evaluation items before training
    # (`data.decontam_records`): a probes.npz, a data build output dir holding one, or "default"
    decontaminate: str | None = None
    max_example_tokens: int | None = None  # longer examples are dropped (default: seq_len + 1)
    # copy rows whose spans repeat from anywhere earlier in the row, not just adjacently
    # (`CopyRows(distant=True)`): copying over hundreds of tokens, as an agent copies from a tool
    # observation. Off by default: at 25% in 4096-token SFT rows they took held-out code_bugfix
    # from 12.5% to 0% (LOG.md, session 12)
    copy_distant: bool = False
    # length buckets: > 0 packs examples of at most this many tokens into rows of this length
    # (batch_size * seq_len // short_seq_len of them a step) and longer ones into seq_len rows, a
    # step drawing one bucket (`sft_data.BucketedSFTBatches`); 0: every example in seq_len rows
    short_seq_len: int = 0
    # SFT defaults differ from pre-training: a lower LR, short warmup, no decay on a tiny set.
    lr: float = 1e-3
    muon_lr: float = 0.01
    warmup_steps: int = 10
    steps: int = 100
    val_every: int = 50
    val_tokens: int = 32768

    def __post_init__(self) -> None:
        self.sft_data = [Path(p) for p in self.sft_data]
        self.val_data = [Path(p) for p in self.val_data]
        self.fim_corpus = _path(self.fim_corpus)
        super().__post_init__()
        if self.copy_warmup_steps:
            raise ConfigError("copy_warmup_steps is a pre-training option (SFT starts from one)")
        if self.copy_warmup_weight_decay is not None:
            raise ConfigError(
                "copy_warmup_weight_decay is a pre-training option (the decay during the copy "
                "warm-up; SFT has none): use weight_decay"
            )
        if self.fim_rate:
            raise ConfigError(
                "fim_rate is a pre-training option; SFT trains FIM from `fim` records "
                "(--data) or cuts of a corpus (--fim-corpus, --fim-examples)"
            )
        if self.short_seq_len and not 0 < self.short_seq_len < self.seq_len:
            raise ConfigError(
                f"short_seq_len must be 0 (off) or in (0, seq_len={self.seq_len}), "
                f"got {self.short_seq_len}"
            )
        if self.copy_distant and not self.copy_fraction:
            raise ConfigError("copy_distant needs copy_fraction > 0 (it shapes the copy rows)")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError("invalid SFTConfig: val_fraction must be in [0, 1)")
        if self.fim_examples < 0:
            raise ConfigError("invalid SFTConfig: fim_examples must be >= 0")
        if self.max_example_tokens is not None and not (
            0 < self.max_example_tokens <= self.seq_len + 1
        ):
            # a longer example does not fit a row: packing cut it to the row, so the model
            # trained on an answer without its end (and its closing <|im_end|>)
            raise ConfigError(
                f"invalid SFTConfig: max_example_tokens must be in [1, seq_len + 1 = "
                f"{self.seq_len + 1}], got {self.max_example_tokens}"
            )
        if self.fim_examples and self.fim_corpus is None:
            raise ConfigError("invalid SFTConfig: fim_examples needs fim_corpus (the corpus to "
                              "cut them from: --fim-corpus DIR)")  # fmt: skip
        if self.fim_corpus is not None and not self.fim_examples:
            # the corpus was silently left unused (and alone, the run said "no SFT data: pass
            # ... or --fim-corpus")
            raise ConfigError(
                f"invalid SFTConfig: fim_corpus {self.fim_corpus} needs fim_examples > 0 "
                "(how many FIM cuts to make: --fim-examples N)"
            )
        if self.problems is not None:
            # here, not only for the --problems flag: a --config table or a library caller
            # reached problem_examples with a typo (silently the default) or a short `n` list
            from hillclimb.train.sft_data import check_problem_spec

            try:
                check_problem_spec(self.problems, only_known_keys=True)
            except HillclimbError as exc:
                raise ConfigError(f"invalid SFTConfig: {exc}") from None
        if self.decontaminate is not None:
            from hillclimb.data.decontam_records import check_probes_spec

            check_probes_spec(self.decontaminate)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["sft_data"] = [str(p) for p in self.sft_data]
        d["val_data"] = [str(p) for p in self.val_data]
        return d
