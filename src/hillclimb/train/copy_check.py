"""Can a model copy from its context? The copy probe (random ids, then the same ids again) and
the check a pre-training run with a copy warm-up makes of itself at its end.

Why a check: `copy_warmup_steps` is meant to form an induction circuit, but on copy rows the
loss sits at the uniform level for a seed-dependent number of steps, and on some seeds and
corpora it never leaves it within the warm-up (docs/areas/train.md, "Copy rows"; LOG.md session
26: `recipes/tiny-code.toml` at seed 0 read 0.000). Nothing said so: the climb went on to SFT
and harness stages that need copying and cannot work without it. So a pre-training run with a
warm-up measures copying on its final weights and records the result in `run.json`
(`extra.copy_check`), and the climb warns and reports it.

The measurement is `bench/copy_probe.py`'s (which calls `probe_copying`): each row is `length`
random ordinary ids (specials never) followed by the same ids; top-1 accuracy on the repeat
(from its second token, the first cannot be known). A model without induction scores about
chance (1 / vocabulary: 0.000-0.002 measured on every non-copying tiny checkpoint); the ones
whose warm-up formed copying read 0.75-0.81 at the end of pre-training.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from hillclimb.errors import HillclimbError
from hillclimb.io import write_json_atomic


class FinishedRun(Protocol):
    """What `attach_copy_check` reads and writes of a finished run (`train.loop.RunResult` is
    one; a Protocol, not an import: the loop imports this module for the warm-up)."""

    final_dir: str | None
    run_dir: str
    stage: str
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]: ...


LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # ids [rows, T] -> logits [rows, T, vocab]

# Top-1 on the repeat below which copying "did not form". Why 0.5: it sits between what was
# measured on either side at the end of pre-training — every model without the circuit read
# 0.000-0.002 (chance), every warm-up that formed it 0.75-0.81 — so neither side is near it
# (the probe's sampling error at 312 positions is about ±0.03). A model under 0.5 here would
# not copy usefully later either: code SFT wears copying down (0.81 -> 0.42 even with copy rows).
COPY_THRESHOLD = 0.5
CHECK_ROWS = 8  # 8 rows x 39 scored positions = 312: a fraction of a second for a tiny model
CHECK_LENGTH = 40  # inside the warm-up's span range (8-48 ids), as in bench/copy_probe.py
REMEDY = (
    "rerun pre-training with another [pretrain] seed or more copy_warmup_steps (in a climb: "
    "edit the recipe, then `hillclimb climb --restart-from pretrain-MODEL`); on copy rows the "
    "loss stays near the uniform level for a seed-dependent number of steps "
    "(docs/areas/train.md, 'Copy rows')"
)


@dataclass(frozen=True)
class CopyScore:
    """The copy probe's reading at one (offset, gap)."""

    loss_first_copy: float
    loss_second_copy: float
    top1_second_copy: float
    positions: int


def copy_rows(
    ordinary: torch.Tensor, rows: int, length: int, seed: int, offset: int = 0, gap: int = 0
) -> torch.Tensor:
    """`offset` random ids, a span of `length`, `gap` random ids, the span again (per row).

    Drawn in this order from one generator seeded by `seed`, so a (seed, rows, length, offset,
    gap) reads the same rows as `bench/copy_probe.py` always did."""
    if rows < 1 or length < 2 or offset < 0 or gap < 0:
        raise HillclimbError(
            f"copy probe: rows >= 1, length >= 2, offset and gap >= 0 (got rows={rows}, "
            f"length={length}, offset={offset}, gap={gap})"
        )
    if ordinary.numel() < 2:
        raise HillclimbError("copy probe: needs at least 2 ordinary token ids")
    g = torch.Generator().manual_seed(seed)
    seq = ordinary[torch.randint(len(ordinary), (rows, length), generator=g)]
    pre = ordinary[torch.randint(len(ordinary), (rows, offset), generator=g)]
    mid = ordinary[torch.randint(len(ordinary), (rows, gap), generator=g)]
    return torch.cat([pre, seq, mid, seq], 1)


def score_copying(
    logits_fn: LogitsFn, x: torch.Tensor, length: int, offset: int = 0, gap: int = 0
) -> CopyScore:
    """Mean loss on the first copy, and loss and top-1 on the repeat, of rows from `copy_rows`."""
    import torch.nn.functional as F

    rows = x.shape[0]
    with torch.no_grad():
        logits = logits_fn(x).float()
    nll = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
    ).view(rows, -1)
    s2 = offset + length + gap  # where the repeat starts (its first token cannot be known)
    first, second = nll[:, offset : offset + length - 1], nll[:, s2:]
    hit = logits[:, s2:-1].argmax(-1) == x[:, s2 + 1 :]
    return CopyScore(
        loss_first_copy=first.mean().item(),
        loss_second_copy=second.mean().item(),
        top1_second_copy=hit.float().mean().item(),
        positions=int(hit.numel()),
    )


def ordinary_ids(vocab_size: int, special: set[int]) -> torch.Tensor:
    """Every id below `vocab_size` that is not a special token (the probe's span ids)."""
    return torch.tensor([i for i in range(vocab_size) if i not in special], dtype=torch.long)


def probe_copying(
    model_dir: str | Path,
    rows: int = CHECK_ROWS,
    length: int = CHECK_LENGTH,
    seed: int = 0,
    at: list[tuple[int, int]] | None = None,
) -> tuple[str, list[tuple[int, int, CopyScore]]]:
    """Load checkpoint `model_dir` (CPU) and score it at each (offset, gap) in `at` (default
    adjacent). Returns the preset name and one (offset, gap, score) per position."""
    from hillclimb.model.checkpoint import load_model
    from hillclimb.tokenizer.io import load_tokenizer

    model = load_model(model_dir)
    tok = load_tokenizer(Path(model_dir) / "tokenizer.json")
    ordinary = ordinary_ids(
        min(int(model.cfg.vocab_size), int(tok.vocab_size)), set(tok.special_ids.values())
    )
    out = []
    for offset, gap in at or [(0, 0)]:
        x = copy_rows(ordinary, rows, length, seed, offset, gap)
        out.append((offset, gap, score_copying(model, x, length, offset, gap)))
    return getattr(model.cfg, "name", ""), out


def copy_verdict(score: CopyScore, threshold: float = COPY_THRESHOLD) -> dict[str, Any]:
    """The record a run keeps (`run.json` `extra.copy_check`): the score, the threshold, whether
    it passed, and on failure the remedy."""
    ok = score.top1_second_copy >= threshold
    rec: dict[str, Any] = {**asdict(score), "threshold": threshold, "copies": ok}
    if not ok:
        rec["remedy"] = REMEDY
    return rec


def check_copying(model_dir: str | Path, threshold: float = COPY_THRESHOLD) -> dict[str, Any]:
    """The end-of-pre-training copy check of checkpoint `model_dir` (see the module doc)."""
    _, [(_, _, score)] = probe_copying(model_dir, CHECK_ROWS, CHECK_LENGTH, seed=0)
    return {**copy_verdict(score, threshold), "rows": CHECK_ROWS, "length": CHECK_LENGTH}


def attach_copy_check(result: FinishedRun) -> None:
    """Check `result`'s final checkpoint, record it in `result.extra["copy_check"]` and its
    `run.json`, and warn on stderr when copying did not form. Rank 0 only (the caller's concern:
    other ranks may not see `final/` yet).

    Why not stop the run: the model is trained and valid as a language model, only without
    induction; the user still gets it, with the failure stated in `run.json`, on the terminal
    and (in a climb) in the report, and the remedy named."""
    if not result.final_dir or not Path(result.final_dir).is_dir():
        return
    rec = check_copying(result.final_dir)
    result.extra["copy_check"] = rec
    write_json_atomic(Path(result.run_dir) / "run.json", result.to_dict())
    warning = copy_warning(result.stage, rec)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)


def copy_warning(stage: str, rec: dict[str, Any] | None) -> str | None:
    """One line saying that `stage`'s copy warm-up did not form copying, or None (it did, or
    the run had no warm-up / no check)."""
    if not isinstance(rec, dict) or rec.get("copies", True):
        return None
    top1, thr = rec.get("top1_second_copy"), rec.get("threshold", COPY_THRESHOLD)
    shown = f"{top1:.3f}" if isinstance(top1, (int, float)) else "?"
    return (
        f"{stage}: the copy warm-up did not form in-context copying (copy probe top-1 {shown} "
        f"< {thr}); stages that copy from the prompt (code fixes, harness tool calls) cannot "
        f"work from this model — {rec.get('remedy', REMEDY)}"
    )


@dataclass
class CopyWarmup:
    """Where a pre-training run's copy warm-up ends: at the first probe check that passes, or at
    `max_steps` (`copy_warmup_steps`).

    Why adaptive: on copy rows the loss sits at the uniform level for a seed-dependent number of
    steps — 300 to more than 700 measured (docs/areas/train.md, "Copy rows") — so any fixed
    warm-up is too short for some seeds and wastes steps on others. Every `check_every` steps
    the warm-up probes the weights (`CHECK_ROWS` x `CHECK_LENGTH`, seed 0: the same rows as the
    end-of-run check) and ends as soon as top-1 reaches `threshold`. `check_every = 0` is the
    fixed warm-up of `max_steps`.

    The end step is run state, not a setting: the batches (copy rows only before it) and the
    learning rate (held at its peak before it, the schedule over the steps after it) depend on
    it, so it travels in the checkpoint (`state()` / `load()`) and a resumed run continues
    exactly where an uninterrupted one would."""

    max_steps: int
    check_every: int = 0
    threshold: float = COPY_THRESHOLD
    end: int | None = None  # the step count at which the warm-up ended (None: not yet)
    checks: list[dict[str, Any]] = field(default_factory=list)  # {"step", "top1", "passed"}
    # what the checks score (`probe_rows`); the training loop passes them to its probe
    rows: torch.Tensor | None = field(default=None, repr=False, compare=False)
    # the decay group's weight decay while the warm-up lasts (`copy_warmup_weight_decay`, or the
    # run's `weight_decay` when unset); the loop sets it before each warm-up step and the run's
    # own after the end. None: the loop leaves the decay alone (a caller without a setting)
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.check_every < 0:
            raise HillclimbError(
                f"copy warm-up: max_steps and check_every must be >= 0 (got {self.max_steps}, "
                f"{self.check_every})"
            )

    def length(self) -> int:
        """Steps of copy rows only: the end once known, else the maximum (steps before it are
        copy-only and held at peak either way, so the pending value never changes a step)."""
        return self.max_steps if self.end is None else self.end

    def in_warmup(self, step: int) -> bool:
        """Whether 0-based optimizer step `step` draws copy rows only."""
        return step < self.length()

    def after_step(self, done: int, read_top1: Callable[[], float]) -> bool:
        """Called after `done` optimizer steps; probes (via `read_top1`) when a check is due.
        Returns True when the warm-up ends here."""
        if self.end is not None:
            return False
        if self.check_every and done % self.check_every == 0 and done <= self.max_steps:
            top1 = float(read_top1())
            passed = top1 >= self.threshold
            self.checks.append({"step": done, "top1": top1, "passed": passed})
            if passed:
                self.end = done
                return True
        if done >= self.max_steps:
            self.end = self.max_steps
            return True
        return False

    def state(self) -> dict[str, Any]:
        """What `run.json` `extra.copy_warmup` and the checkpoint keep."""
        return {
            "end": self.end,
            "max_steps": self.max_steps,
            "check_every": self.check_every,
            "threshold": self.threshold,
            "passed": any(c["passed"] for c in self.checks),
            "checks": [dict(c) for c in self.checks],
            "weight_decay": self.weight_decay,
        }

    def load(self, state: dict[str, Any] | None) -> None:
        """Restore `state()` from a checkpoint (absent: a run saved before any record)."""
        if not state:
            return
        end = state.get("end")
        self.end = None if end is None else int(end)
        self.checks = [dict(c) for c in state.get("checks") or []]


def probe_rows(vocab_size: int, special: set[int]) -> torch.Tensor:
    """The warm-up's probe rows: `check_copying`'s (`CHECK_ROWS` x `CHECK_LENGTH`, seed 0), from
    a generator of their own, so checking draws nothing from the training RNG streams."""
    return copy_rows(ordinary_ids(vocab_size, special), CHECK_ROWS, CHECK_LENGTH, seed=0)
