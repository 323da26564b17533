"""Shared pytest setup: deterministic, single-threaded-friendly torch, and small helpers."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Per-user state (the serve usage database, the registry the climb registers into) goes to a
# throw-away directory: tests never touch ~/.local/state/hillclimb. Tests that need a given state
# directory set XDG_STATE_HOME themselves (monkeypatch).
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="hillclimb-test-state-")
