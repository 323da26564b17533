"""Rotary position embeddings with optional YaRN long-context scaling.

Convention: the "rotate half" layout (first half of each head's dims paired with the second half),
as Llama/Qwen use, so weights map onto `transformers` without permutation. Angles are computed
from explicit per-token positions, which is what lets the KV cache serve a batch whose sequences
sit at different positions.

YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension"): interpolate low frequencies
by `factor`, keep high frequencies, blend linearly in between (beta_fast / beta_slow bound the
ramp, in rotations over the original context), and scale attention by 0.1·ln(factor) + 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hillclimb.model.config import ModelConfig


def _yarn_inv_freq(
    dim: int, theta: float, factor: float, orig_ctx: int, beta_fast: float, beta_slow: float
) -> tuple[torch.Tensor, float]:
    pos_freqs = theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    inv_extrap = 1.0 / pos_freqs
    inv_interp = 1.0 / (factor * pos_freqs)

    def correction_dim(n_rot: float) -> float:
        return (dim * math.log(orig_ctx / (n_rot * 2 * math.pi))) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = (torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)
    extrap_factor = 1 - ramp.clamp(0, 1)
    inv_freq = inv_interp * (1 - extrap_factor) + inv_extrap * extrap_factor
    mscale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv_freq, mscale


class Rotary(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.head_dim
        rs = cfg.rope_scaling
        if rs is not None and rs.factor > 1.0:
            inv_freq, mscale = _yarn_inv_freq(
                dim,
                cfg.rope_theta,
                rs.factor,
                rs.original_max_position_embeddings,
                rs.beta_fast,
                rs.beta_slow,
            )
        else:
            inv_freq = 1.0 / (
                cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
            )
            mscale = 1.0
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.mscale = mscale

    def forward(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [B, T] (int) -> cos, sin [B, T, head_dim] in `dtype`."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq.to(positions.device)
        emb = torch.cat([freqs, freqs], dim=-1)
        return (emb.cos() * self.mscale).to(dtype), (emb.sin() * self.mscale).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; cos/sin [B, T, D]."""
    cos, sin = cos[:, None], sin[:, None]
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin
