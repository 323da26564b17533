"""The decoder: embeddings → N × (attention + MoE/dense FFN, pre-norm residual) → norm → logits.

`forward(input_ids)` returns fp32-compatible logits [B, T, V] (the `hillclimb.load_model`
contract). Optional arguments add what serving and training need without a second model class:
`attention_mask` (1 = real token, 0 = padding; left or right), a `KVCache` with `slot_ids` for
incremental decoding of independent sequences, and `last_only` to compute logits for the final
position only (decode steps). Auxiliary MoE losses of the last training forward are collected by
`aux_loss()`, routing statistics by `routing_stats()`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hillclimb.errors import HillclimbError
from hillclimb.model.attention import Attention
from hillclimb.model.config import ModelConfig
from hillclimb.model.kv_cache import KVCache
from hillclimb.model.moe import MoE, SwiGLU
from hillclimb.model.norm import RMSNorm
from hillclimb.model.rope import Rotary


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.is_moe = cfg.is_moe_layer[layer_idx]
        self.mlp: nn.Module = MoE(cfg) if self.is_moe else SwiGLU(cfg.d_model, cfg.d_dense_eff)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        token_mask: torch.Tensor | None,
        **cache_kw: Any,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, **cache_kw)
        h = self.post_attention_layernorm(x)
        x = x + (self.mlp(h, token_mask) if self.is_moe else self.mlp(h))
        return x


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.rotary = Rotary(cfg)

    # ---- init ---------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Seeded normal init; output projections scaled by 1/sqrt(2·layers) (GPT-2 style)."""
        if self.embed_tokens.weight.device.type == "meta":
            return
        seed = 0 if seed is None else seed
        # torch takes seeds in [-2**63, 2**64); outside it a ValueError traceback ("Overflow when
        # unpacking long long") came from `hillclimb init --seed` and every trainer
        ok = isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
        if not ok or not -(2**63) <= int(seed) < 2**64:
            raise HillclimbError(f"seed must be an int in [-2**63, 2**64), got {seed!r}")
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.n_layers)

        def normal_(t: torch.Tensor, s: float) -> None:
            t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float32).mul_(s).to(t))

        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight", "down_proj")):
                normal_(p, out_std)
            else:
                normal_(p, std)
        for m in self.modules():
            if isinstance(m, MoE):
                m.gate.expert_bias.zero_()

    # ---- forward ------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        slot_ids: torch.Tensor | None = None,
        last_only: bool = False,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        B, T = input_ids.shape
        x = self.embed_tokens(input_ids)
        mask = None
        cache_kw: dict[str, Any] = {}
        token_mask = attention_mask
        if cache is not None:
            if slot_ids is None:
                slot_ids = torch.arange(B, device=input_ids.device)
            am = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            write_idx, positions, mask, kv_len = cache.prepare(slot_ids, am)
            cache_kw = {
                "cache": cache,
                "slot_ids": slot_ids,
                "write_idx": write_idx,
                "kv_len": kv_len,
            }
        elif attention_mask is not None:
            am = attention_mask.to(torch.long)
            positions = (torch.cumsum(am, dim=1) - 1).clamp(min=0)
            idx = torch.arange(T, device=input_ids.device)
            causal = idx[None, :, None] >= idx[None, None, :]
            mask = causal & am.bool()[:, None, :]
            mask = mask | torch.eye(T, dtype=torch.bool, device=input_ids.device)[None]
        else:
            positions = torch.arange(T, device=input_ids.device)[None].expand(B, T)
        cos, sin = self.rotary(positions, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, token_mask, **cache_kw)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        if return_hidden:
            return x
        return self.lm_head(x)

    # ---- losses & stats -----------------------------------------------------------------
    def moe_layers(self) -> list[MoE]:
        return [layer.mlp for layer in self.layers if isinstance(layer.mlp, MoE)]

    def aux_loss(self) -> torch.Tensor:
        """Weighted load-balancing + z-loss of the last training forward (0 if none)."""
        terms = [m.last_aux for m in self.moe_layers() if m.last_aux is not None]
        if not terms:
            return self.embed_tokens.weight.new_zeros(())
        return torch.stack(terms).sum()

    def routing_stats(self) -> list[dict[str, Any]]:
        """Per MoE layer: tokens per expert, router entropy, balance (max/mean load), losses."""
        out = []
        for i, layer in enumerate(self.layers):
            if not isinstance(layer.mlp, MoE) or layer.mlp.last_stats is None:
                continue
            s = layer.mlp.last_stats
            c = s.tokens_per_expert.float()
            out.append(
                {
                    "layer": i,
                    "tokens_per_expert": s.tokens_per_expert.tolist(),
                    "entropy": float(s.entropy),
                    "balance": float(c.max() / c.mean().clamp_min(1e-9)),
                    "aux_loss": float(s.aux_loss),
                    "z_loss": float(s.z_loss),
                }
            )
        return out

    def loss(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> torch.Tensor:
        logits = self(input_ids)
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=ignore_index,
            reduction=reduction,
        )


def build_model(
    cfg: ModelConfig,
    seed: int | None = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Transformer:
    """Construct + seeded init on CPU, then move. `device="meta"` builds shapes only."""
    if str(device) == "meta":
        with torch.device("meta"):
            return Transformer(cfg)
    model = Transformer(cfg)
    model.init_weights(seed)
    return model.to(device=device or "cpu", dtype=dtype)
