"""Training checkpoints: HF-layout model directory + trainer state, written as one atomic unit.

Layout of a run directory:

    RUN_DIR/checkpoints/step_000200/   config.json, model.safetensors, tokenizer files,
                                       hillclimb.json (via model.checkpoint.save_checkpoint)
                                       + trainer_state.pt (this module)
    RUN_DIR/final/                     the checkpoint consumers use (same layout)

Why a wrapper directory instead of a hook in `save_checkpoint`: we open our own temp directory
beside the destination (`hillclimb.io.atomic_dir`), let `save_checkpoint` write the model into a
sub-directory of it, hoist those files up, add `trainer_state.pt`, and only then rename the temp
directory onto `step_N`. One rename publishes weights and trainer state together, so a kill -9 at
any moment leaves the previous checkpoint intact and never a step directory with weights but no
optimizer state. Temp directories start with "." and are swept on resume.

`trainer_state.pt` (torch.save, loadable with `weights_only=True`) holds: format, step, tokens
seen, the optimizers' state dicts, the MoE selection biases, RNG states (torch CPU, CUDA, Python,
NumPy) and the data position (the step: batches are a pure function of seed and step).

For fault-injection tests, `HILLCLIMB_TEST_KILL_IN_SAVE=N` makes the process SIGKILL itself in the
middle of saving step N (after every file is written, before the publishing rename).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_dir
from hillclimb.io import sweep_temp as io_sweep_temp

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer

STATE_FILE = "trainer_state.pt"
STATE_FORMAT = "hillclimb-trainer-state-v1"
_STEP_RE = re.compile(r"^step_(\d{6,})$")
KILL_ENV = "HILLCLIMB_TEST_KILL_IN_SAVE"


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:06d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (published step dirs holding a trainer state), oldest first."""
    d = run_dir / "checkpoints"
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file() and (p / "config.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    cks = list_checkpoints(run_dir)
    return cks[-1] if cks else None


def sweep_temp(run_dir: Path) -> None:
    """Remove temp directories a killed save left behind, and the temp files of killed atomic
    writes (`config.json`, `run.json`, the JSONL logs rewritten on resume), which only the
    directories were swept of: each such crash left one more copy."""
    for parent in (run_dir / "checkpoints", run_dir):
        io_sweep_temp(parent)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if "cuda" in st and torch.cuda.is_available():
        # one state per GPU visible when saved; a resume that sees fewer GPUs restores those it
        # has (more states than devices raised, and the resume read as a damaged checkpoint)
        torch.cuda.set_rng_state_all(list(st["cuda"])[: torch.cuda.device_count()])


def save_training_checkpoint(
    dest: Path,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None,
) -> Path:
    """Publish `dest` (must not exist) atomically: model files + optional trainer_state.pt."""
    from hillclimb.model.checkpoint import save_checkpoint

    if dest.exists():
        raise HillclimbError(f"{dest} already exists; refusing to overwrite a checkpoint")
    with atomic_dir(dest) as tmp:
        inner = tmp / "model"
        save_checkpoint(model, inner, tokenizer=tokenizer, meta=meta)  # type: ignore[arg-type]
        for f in inner.iterdir():
            os.replace(f, tmp / f.name)
        inner.rmdir()
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE_FILE)
            with open(tmp / STATE_FILE, "rb") as fh:
                os.fsync(fh.fileno())
        kill_at = os.environ.get(KILL_ENV)
        if (
            kill_at is not None
            and trainer_state is not None
            and int(kill_at) == int(trainer_state["step"])
        ):
            os.kill(os.getpid(), signal.SIGKILL)
    return dest


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    f = ckpt / STATE_FILE
    try:
        st = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a variety of errors for a corrupt file
        raise HillclimbError(f"cannot read trainer state {f}: {exc}") from exc
    if not isinstance(st, dict):
        raise HillclimbError(f"{f}: not a trainer state (a {type(st).__name__}, not a dict)")
    if st.get("format") != STATE_FORMAT:
        raise HillclimbError(f"{f}: unknown trainer state format {st.get('format')!r}")
    # a damaged or hand-made state fails here with one line, not with a KeyError mid-restore
    kinds = {"step": int, "tokens": int, "optimizers": list, "expert_bias": dict, "rng": dict}
    for key, kind in kinds.items():
        if not isinstance(st.get(key), kind) or isinstance(st.get(key), bool):
            raise HillclimbError(f"{f}: damaged trainer state ({key!r} missing or not a {kind.__name__})")  # fmt: skip
    return st


def prune(run_dir: Path, keep_last: int) -> None:
    for _, p in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def publish_final(run_dir: Path, src: Path) -> Path:
    """RUN_DIR/final: a hard-linked (else copied) replica of checkpoint `src`, published atomically
    (an older final/ is renamed away first, then removed)."""
    final = run_dir / "final"
    if final.exists():
        old = run_dir / ".final.old.tmp"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    with atomic_dir(final) as tmp:
        for f in src.iterdir():
            if f.name == STATE_FILE:
                continue
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    return final
