"""Parameter, FLOP and KV-cache accounting, read off the actual modules.

Why from the modules and not a formula: a second hand-typed formula drifts from the code. Here
the model is built on the meta device (no memory, any size — the 1T preset included) and every
number comes from the parameter tensors that exist: total parameters (tied weights once), active
parameters per token (routed experts count top_k / n_experts of their weights), forward matmul
FLOPs per token (2 × weights each token multiplies through, plus attention's QKᵀ and AV at a
stated context), and KV-cache bytes per token from the K/V projections' widths — next to the same
figure for plain multi-head attention, so the GQA/MQA saving is visible.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from hillclimb.errors import HillclimbError
from hillclimb.model.attention import Attention
from hillclimb.model.config import ModelConfig
from hillclimb.model.moe import Experts, MoE
from hillclimb.model.transformer import Transformer, build_model


@dataclass
class Accounting:
    preset: str
    total_params: int
    active_params: int
    embedding_params: int  # input embedding table (a lookup: no FLOPs)
    expert_params: int  # all routed-expert weights
    active_fraction: float
    matmul_flops_per_token: int  # forward, weights only
    attn_flops_per_token_at_max_ctx: int  # forward QKᵀ + AV, causal average over max context
    flops_per_token_4k: int  # forward total at a 4096-token causal context
    train_flops_per_token_4k: int  # ≈ 3× forward
    kv_bytes_per_token: int  # bf16 K+V, all layers
    kv_bytes_per_token_mha: int  # the same with n_kv_heads = n_heads
    kv_saving: float  # 1 - kv / kv_mha
    max_context: int
    kv_bytes_at_max_context: int
    kv_bytes_at_max_context_mha: int
    kv_dtype_bytes: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


def _numel(p: torch.Tensor) -> int:
    return int(p.numel())


def attention_flops_per_token(model: Transformer, ctx: int) -> int:
    """Forward FLOPs of QKᵀ and AV per token at a causal context of `ctx` tokens (mean keys
    attended = (ctx + 1) / 2)."""
    total = 0
    for m in model.modules():
        if isinstance(m, Attention):
            total += 2 * 2 * m.n_heads * m.head_dim * (ctx + 1) // 2
    return total


def account(cfg: ModelConfig, kv_dtype_bytes: int = 2) -> Accounting:
    model = build_model(cfg, device="meta")
    return account_model(model, kv_dtype_bytes)


def account_model(model: Transformer, kv_dtype_bytes: int = 2) -> Accounting:
    # a KV element of 0 bytes divided by zero (kv_saving); a negative one reported negative bytes
    if (
        isinstance(kv_dtype_bytes, bool)
        or not isinstance(kv_dtype_bytes, int)
        or kv_dtype_bytes < 1
    ):
        raise HillclimbError(f"kv_dtype_bytes must be a positive int, got {kv_dtype_bytes!r}")
    cfg = model.cfg
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields tied tensors once
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += _numel(p)
    emb = _numel(model.embed_tokens.weight)
    expert = 0
    inactive = 0
    flops = 0
    for m in model.modules():
        if isinstance(m, Experts):
            n = _numel(m.gate_up_proj) + _numel(m.down_proj)
            expert += n
            k, e = cfg.top_k, m.n_experts
            active_n = n * k // e
            inactive += n - active_n
            flops += 2 * active_n
        elif isinstance(m, nn.Linear):
            flops += 2 * _numel(m.weight)
        elif isinstance(m, MoE):
            pass  # router is an nn.Parameter inside Router: counted below
    for m in model.modules():
        if isinstance(m, MoE):
            flops += 2 * _numel(m.gate.weight)
    active = total - inactive
    kv = 0
    kv_mha = 0
    for m in model.modules():
        if isinstance(m, Attention):
            kv += (m.k_proj.weight.shape[0] + m.v_proj.weight.shape[0]) * kv_dtype_bytes
            kv_mha += 2 * m.n_heads * m.head_dim * kv_dtype_bytes
    attn_max = attention_flops_per_token(model, cfg.max_seq_len)
    fwd_4k = flops + attention_flops_per_token(model, 4096)
    return Accounting(
        preset=cfg.name,
        total_params=total,
        active_params=active,
        embedding_params=emb,
        expert_params=expert,
        active_fraction=active / total,
        matmul_flops_per_token=flops,
        attn_flops_per_token_at_max_ctx=attn_max,
        flops_per_token_4k=fwd_4k,
        train_flops_per_token_4k=3 * fwd_4k,
        kv_bytes_per_token=kv,
        kv_bytes_per_token_mha=kv_mha,
        kv_saving=1 - kv / kv_mha,
        max_context=cfg.max_seq_len,
        kv_bytes_at_max_context=kv * cfg.max_seq_len,
        kv_bytes_at_max_context_mha=kv_mha * cfg.max_seq_len,
        kv_dtype_bytes=kv_dtype_bytes,
    )


def train_memory_bytes(
    cfg: ModelConfig, batch_size: int, seq_len: int, param_bytes: int = 4, act_bytes: int = 4
) -> int:
    """Rough peak memory of an AdamW training step: weights + grads + 2 moments (fp32) plus
    activations (≈ 34·D + 5·H·T bytes-per-element per token per layer, Korthikanti et al.,
    with the MoE hidden counted at top_k experts). Used to refuse configs that cannot fit."""
    acc = account(cfg)
    states = acc.total_params * (param_bytes * 2 + 8)
    per_layer_tok = 34 * cfg.d_model + 5 * cfg.n_heads * seq_len + 3 * cfg.top_k * cfg.d_expert
    acts = batch_size * seq_len * cfg.n_layers * per_layer_tok * act_bytes // 2
    logits = batch_size * seq_len * cfg.vocab_size * 4 * 2
    return int(states + acts + logits)


def human(n: float, unit: str = "") -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suf}{unit}"
    return f"{n:.0f}{unit}"


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors on `device` (CPU: MemAvailable), for up-front checks."""
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


def human_bytes(n: float) -> str:
    for div, suf in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suf}"
    return f"{n:.0f} B"
