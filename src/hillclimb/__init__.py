"""hillclimb: build, train, evaluate and serve a pair of sparse Mixture-of-Experts models.

The stable Python API is deliberately small (DESIGN.md, "Contracts"):

- `load_model(path, device=None)` -> `torch.nn.Module`; `model(input_ids)` returns logits [B, T, V].
- `load_tokenizer(path)` -> object with `encode(str) -> list[int]` and `decode(list[int]) -> str`.

Both are imported lazily so `import hillclimb` (and the CLI's `--help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    import torch


def load_model(path: Any, device: Any = None) -> torch.nn.Module:
    """Load a checkpoint directory (HF layout) into our MoE transformer, in eval mode."""
    from hillclimb.model.checkpoint import load_model as _load

    return _load(path, device=device)


def load_tokenizer(path: Any) -> Any:
    """Load `tokenizer.json` from a checkpoint or tokenizer directory."""
    from hillclimb.tokenizer.io import load_tokenizer as _load

    return _load(path)


__all__ = ["__version__", "load_model", "load_tokenizer"]
