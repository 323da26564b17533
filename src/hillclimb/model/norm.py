"""RMSNorm, computed in fp32 whatever the activation dtype.

Why fp32 inside: under bf16 autocast the mean of squares loses precision; Qwen3/Llama normalise in
fp32 and cast back, and we must match them bit-for-bit in fp32 for HF parity.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)
