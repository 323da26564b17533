"""Shared helpers for tests/test_server_*.py: micro checkpoints and a live server on loopback."""

from __future__ import annotations

import time
from pathlib import Path

from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model


def make_checkpoints(root: Path) -> dict[str, Path]:
    """Random-weight thinking-micro and code-flash-micro checkpoints (shared byte-level tokenizer)."""
    out = {}
    for mid, preset in (("thinking", "thinking-micro"), ("code-flash", "code-flash-micro")):
        d = root / mid
        save_checkpoint(build_model(get_preset(preset), seed=0), d)
        out[mid] = d
    return out


def load_engines(ckpts: dict[str, Path], max_batch: int = 8, speculative: bool = True) -> dict:
    from hillclimb.serve.engine import Engine

    engines = {}
    if "code-flash" in ckpts:
        engines["code-flash"] = Engine.from_checkpoint(
            ckpts["code-flash"], device="cpu", max_batch=max_batch, name="code-flash", seed=0
        )
    if "thinking" in ckpts:
        draft = engines.get("code-flash") if speculative else None
        engines["thinking"] = Engine.from_checkpoint(
            ckpts["thinking"],
            device="cpu",
            max_batch=max_batch,
            name="thinking",
            draft=draft,
            seed=0,
        )
    return engines


def wait_for(cond, timeout: float = 10.0, interval: float = 0.02) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())
