"""RMSNorm, computed in fp32 whatever the activation dtype.

Why fp32 inside: under bf16 autocast the mean of squares loses precision; Qwen3/Llama normalise in
fp32 and cast back, and we must match them bit-for-bit in fp32 for HF parity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one fused kernel
        dtype = x.dtype
        x = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps)
        return self.weight * x.to(dtype)
