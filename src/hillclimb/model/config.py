"""One config dataclass for the whole MoE family, plus the named presets.

Why one flat dataclass: every consumer (training, serving, accounting, HF export) needs the same
handful of numbers, and a flat record maps 1:1 onto `transformers`' Qwen3-MoE config — the format
our checkpoints are written in. Validation happens at construction so an impossible model fails
with a message that says what is wrong, before any tensor is allocated.

Presets come in two families that share one vocabulary (so `code-flash` can draft for
`thinking`): `thinking-*` (the reasoner) and `code-flash-*` (the fast coder), each at
micro (tests), tiny (2 CPU cores, minutes), small (one GPU) and full (the seed systems' scale:
≈1T/35B and ≈137B/5B, only ever built on the meta device for accounting and planning).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from hillclimb.errors import ConfigError


@dataclass
class RopeScaling:
    """YaRN-style long-context extension (Peng et al. 2023): the model is trained at
    `original_max_position_embeddings` and extended by `factor` at inference."""

    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0


@dataclass
class ModelConfig:
    name: str = "custom"
    family: str = "custom"  # "thinking" | "code-flash" | "custom"
    vocab_size: int = 512
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 16
    # MoE feed-forward
    n_experts: int = 4
    top_k: int = 2
    d_expert: int = 64  # hidden size of each routed SwiGLU expert
    norm_topk_prob: bool = True
    n_shared_experts: int = 0  # shared experts (always active); not expressible in Qwen3-MoE
    d_shared: int = 0  # hidden size of each shared expert (0: = d_expert)
    n_dense_layers: int = 0  # first layers use a dense SwiGLU MLP instead of MoE
    d_dense: int = 0  # hidden size of the dense MLP (0: = 4 * d_model)
    # attention / positions
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    qk_norm: bool = True
    norm_eps: float = 1e-6
    tie_embeddings: bool = False
    # load balancing
    aux_loss_coef: float = 0.01  # OLMoE's load-balancing loss weight
    z_loss_coef: float = 0.001  # OLMoE's router z-loss weight
    bias_balancing: bool = False  # DeepSeek-V3 auxiliary-loss-free balancing
    bias_update_rate: float = 1e-3
    # implementation
    expert_impl: str = "auto"  # "auto" | "grouped" | "loop"
    init_std: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):
            known = {f.name for f in dataclasses.fields(RopeScaling)}
            unknown = sorted(set(self.rope_scaling) - known)
            if unknown:
                raise ConfigError(
                    f"invalid model config {self.name!r}: unknown rope_scaling keys {unknown} "
                    f"(known: {sorted(known)})"
                )
            self.rope_scaling = RopeScaling(**self.rope_scaling)
        self.validate()

    # ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid model config {self.name!r}: {msg}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_real(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        # Types first: a value of the wrong type (a JSON string, a float width, a bool count)
        # would otherwise pass a comparison or fail deep inside torch with a traceback.
        for f in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim"):
            need(is_int(getattr(self, f)) and getattr(self, f) > 0, f"{f} must be a positive int")
        for f in (
            "n_experts", "top_k", "d_expert", "n_shared_experts", "d_shared", "n_dense_layers",
            "d_dense", "max_seq_len",
        ):  # fmt: skip
            need(is_int(getattr(self, f)), f"{f} must be an int, got {getattr(self, f)!r}")
        for f in (
            "rope_theta", "norm_eps", "aux_loss_coef", "z_loss_coef", "bias_update_rate",
            "init_std",
        ):  # fmt: skip
            need(
                is_real(getattr(self, f)), f"{f} must be a finite number, got {getattr(self, f)!r}"
            )
        for f in ("norm_topk_prob", "qk_norm", "tie_embeddings", "bias_balancing"):
            need(
                isinstance(getattr(self, f), bool),
                f"{f} must be true or false, got {getattr(self, f)!r}",
            )
        for f in ("name", "family", "expert_impl"):
            need(isinstance(getattr(self, f), str), f"{f} must be a string")
        need(isinstance(self.extra, dict), "extra must be an object")
        need(
            self.rope_scaling is None or isinstance(self.rope_scaling, RopeScaling),
            f"rope_scaling must be an object or null, got {self.rope_scaling!r}",
        )
        need(self.n_experts >= 1, "n_experts must be >= 1")
        need(
            1 <= self.top_k <= self.n_experts,
            f"top_k ({self.top_k}) must be in 1..n_experts ({self.n_experts})",
        )
        need(self.d_expert > 0, "d_expert must be > 0")
        need(
            self.n_heads % self.n_kv_heads == 0,
            f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})",
        )
        need(
            self.head_dim % 2 == 0, f"head_dim ({self.head_dim}) must be even for rotary embeddings"
        )
        need(0 <= self.n_dense_layers <= self.n_layers, "n_dense_layers must be in 0..n_layers")
        need(self.n_shared_experts >= 0, "n_shared_experts must be >= 0")
        need(self.d_shared >= 0, "d_shared must be >= 0 (0: = d_expert)")
        need(self.d_dense >= 0, "d_dense must be >= 0 (0: = 4 * d_model)")
        need(self.init_std >= 0, "init_std must be >= 0")
        need(self.bias_update_rate >= 0, "bias_update_rate must be >= 0")
        need(self.max_seq_len > 0, "max_seq_len must be > 0")
        need(self.rope_theta > 0, "rope_theta must be > 0")
        need(self.norm_eps > 0, "norm_eps must be > 0")
        need(
            self.expert_impl in ("auto", "grouped", "loop"), "expert_impl must be auto|grouped|loop"
        )
        need(self.aux_loss_coef >= 0 and self.z_loss_coef >= 0, "loss coefficients must be >= 0")
        if self.rope_scaling is not None:
            rs = self.rope_scaling
            for f in ("factor", "beta_fast", "beta_slow"):
                need(is_real(getattr(rs, f)), f"rope_scaling.{f} must be a finite number")
            need(
                is_int(rs.original_max_position_embeddings)
                and rs.original_max_position_embeddings > 0,
                "rope_scaling.original_max_position_embeddings must be a positive int",
            )
            need(rs.factor >= 1.0, "rope_scaling.factor must be >= 1")
            if rs.factor > 1.0:  # YaRN's ramp takes logs of these
                need(
                    rs.beta_fast > 0 and rs.beta_slow > 0,
                    "rope_scaling.beta_fast and beta_slow must be > 0",
                )
                need(self.rope_theta != 1, "rope_theta must not be 1 with YaRN scaling")

    # ---------------------------------------------------------------------------------------
    @property
    def d_dense_eff(self) -> int:
        return self.d_dense or 4 * self.d_model

    @property
    def d_shared_eff(self) -> int:
        return self.d_shared or self.d_expert

    @property
    def is_moe_layer(self) -> list[bool]:
        return [i >= self.n_dense_layers for i in range(self.n_layers)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **kw: Any) -> ModelConfig:
        d = self.to_dict()
        d.update(kw)
        return ModelConfig.from_dict(d)


def _round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def padded_vocab(n: int, multiple: int = 64) -> int:
    """Embedding rows for a tokenizer of `n` tokens: rounded up for fast matmuls."""
    return _round_up(n, multiple)


# Shared vocabulary per scale (the two families of one scale must agree).
_VOCAB = {"micro": 512, "tiny": 4096, "small": 32768, "full": 65536}

PRESETS: dict[str, ModelConfig] = {}


def _add(cfg: ModelConfig) -> None:
    PRESETS[cfg.name] = cfg


# ---- micro: tests (well under 1M params) ----------------------------------------------------
_add(
    ModelConfig(
        name="thinking-micro",
        family="thinking",
        vocab_size=_VOCAB["micro"],
        d_model=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        head_dim=16,
        n_experts=4,
        top_k=2,
        d_expert=64,
        max_seq_len=512,
    )
)
_add(
    ModelConfig(
        name="code-flash-micro",
        family="code-flash",
        vocab_size=_VOCAB["micro"],
        d_model=48,
        n_layers=2,
        n_heads=4,
        n_kv_heads=1,
        head_dim=12,
        n_experts=4,
        top_k=1,
        d_expert=48,
        max_seq_len=512,
    )
)
# ---- tiny: trains on 2 CPU cores in minutes ---------------------------------------------------
_add(
    ModelConfig(
        name="thinking-tiny",
        family="thinking",
        vocab_size=_VOCAB["tiny"],
        d_model=192,
        n_layers=4,
        n_heads=6,
        n_kv_heads=2,
        head_dim=32,
        n_experts=8,
        top_k=2,
        d_expert=256,
        max_seq_len=1024,
        tie_embeddings=True,
    )
)
_add(
    ModelConfig(
        name="code-flash-tiny",
        family="code-flash",
        vocab_size=_VOCAB["tiny"],
        d_model=128,
        n_layers=3,
        n_heads=4,
        n_kv_heads=1,
        head_dim=32,
        n_experts=8,
        top_k=2,
        d_expert=192,
        max_seq_len=2048,
        tie_embeddings=True,
    )
)
# ---- small: one GPU ----------------------------------------------------------------------------
_add(
    ModelConfig(
        name="thinking-small",
        family="thinking",
        vocab_size=_VOCAB["small"],
        d_model=1024,
        n_layers=16,
        n_heads=16,
        n_kv_heads=4,
        head_dim=64,
        n_experts=32,
        top_k=4,
        d_expert=512,
        n_dense_layers=1,
        d_dense=2816,
        max_seq_len=8192,
        rope_theta=500000.0,
    )
)
_add(
    ModelConfig(
        name="code-flash-small",
        family="code-flash",
        vocab_size=_VOCAB["small"],
        d_model=640,
        n_layers=12,
        n_heads=10,
        n_kv_heads=2,
        head_dim=64,
        n_experts=32,
        top_k=4,
        d_expert=320,
        max_seq_len=16384,
        rope_theta=500000.0,
    )
)
# ---- full: the seed systems' scale (meta device only) -------------------------------------------
# thinking ≈ 1T total / ≈ 35B active, 128K context (YaRN x4 over 32K);
# code-flash ≈ 137B total / ≈ 5B active, 256K context (YaRN x8 over 32K).
_add(
    ModelConfig(
        name="thinking-full",
        family="thinking",
        vocab_size=_VOCAB["full"],
        d_model=7168,
        n_layers=61,
        n_heads=64,
        n_kv_heads=8,
        head_dim=128,
        n_experts=384,
        top_k=10,
        d_expert=2048,
        n_dense_layers=1,
        d_dense=18432,
        max_seq_len=131072,
        rope_theta=1_000_000.0,
        rope_scaling=RopeScaling(factor=4.0, original_max_position_embeddings=32768),
    )
)
_add(
    ModelConfig(
        name="code-flash-full",
        family="code-flash",
        vocab_size=_VOCAB["full"],
        d_model=2048,
        n_layers=48,
        n_heads=32,
        n_kv_heads=4,
        head_dim=128,
        n_experts=512,
        top_k=14,
        d_expert=896,
        max_seq_len=262144,
        rope_theta=1_000_000.0,
        rope_scaling=RopeScaling(factor=8.0, original_max_position_embeddings=32768),
    )
)


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace()  # a fresh copy


def preset_names() -> list[str]:
    return list(PRESETS)
