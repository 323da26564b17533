"""Run logging: JSON lines (the record the climb report plots), TensorBoard, a rich progress bar.

Files in the run directory (rank 0 only):

- `metrics.jsonl`: one object per optimizer step — `{"step", "loss", "aux", "lr", "grad_norm",
  "tokens", "tok_s", "balance", "elapsed_s"}`; `loss` is the global mean cross-entropy (nats/token)
  of the step's batch, `aux` the weighted MoE auxiliary + z loss, `balance` the mean over MoE
  layers of max/mean expert load for the step (1.0 = perfectly balanced), `tokens` cumulative.
- `val.jsonl`: `{"step", "val_loss", "val_bpb", "val_tokens", "val_bytes"}` per evaluation
  (`val_bpb` null when the targets have no bytes: special tokens only).
- `routing.jsonl`: every `log_every` steps, per MoE layer `{"layer", "tokens_per_expert",
  "entropy", "balance", "aux_loss", "z_loss"}` (routing is dropless: nothing dropped/overflowed).
- `tb/`: TensorBoard scalars of the same numbers.

On resume every JSONL file is cut back to the checkpoint's step (atomic rewrite), so the curve of
an interrupted-and-resumed run is the curve of an uninterrupted one. The progress bar shows only
on a TTY (never under pytest); without it a plain line goes to stderr every `log_every` steps.
Both name the model (a climb trains two, one after the other) and say the time spent and left:
`[pretrain thinking-tiny] step 100/600 ... | 1m05s elapsed, ETA 5m25s` — the ETA is the mean
pace of the steps run in this process (a resumed run does not count the steps it skipped).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hillclimb.io import write_text_atomic

FILES = ("metrics.jsonl", "val.jsonl", "routing.jsonl", "curve.jsonl")


def truncate_after(run_dir: Path, step: int) -> None:
    for name in FILES:
        f = run_dir / name
        if not f.is_file():
            continue
        keep = []
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line).get("step", 0)) <= step:
                    keep.append(line)
            except (json.JSONDecodeError, AttributeError, ValueError):
                continue  # a torn last line from a kill
        write_text_atomic(f, "".join(k + "\n" for k in keep))


def clear_logs(run_dir: Path) -> None:
    """Empty the JSONL logs of a run starting from step 0: records left by an earlier attempt
    that died before its first checkpoint would otherwise precede the new run's steps 1, 2, ...
    in one file, and the report would plot both curves as one. (TensorBoard hides the old
    events itself: the writer purges from step 1, `RunLogger`.)"""
    for name in FILES:
        f = run_dir / name
        if f.is_file():
            write_text_atomic(f, "")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def want_progress(setting: bool | None) -> bool:
    if setting is not None:
        return setting
    return sys.stderr.isatty() and "PYTEST_CURRENT_TEST" not in os.environ


class RunLogger:
    """Rank-0 logger; on other ranks every method is a no-op."""

    def __init__(
        self,
        run_dir: Path,
        enabled: bool,
        total_steps: int,
        start_step: int,
        tensorboard: bool,
        progress: bool | None,
        stage: str,
        quiet: bool = False,
        model: str | None = None,
    ):
        self.enabled = enabled
        self.run_dir = run_dir
        self.total = total_steps
        self.stage = stage
        self.label = f"{stage} {model}" if model else stage  # printed as [label]
        self._start_step = start_step
        self._files: dict[str, Any] = {}
        self._tb = None
        self._progress = None
        self._task = None
        self._plain = False
        self._t0 = time.perf_counter()
        if not enabled:
            return
        for name in FILES:
            self._files[name] = open(run_dir / name, "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)
            except ImportError:  # tensorboard is a declared dependency; degrade if absent
                self._tb = None
        if want_progress(progress):
            from rich.markup import escape
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn(f"[bold]{escape(self.label)}[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                stage, total=total_steps, completed=start_step, info=""
            )
        else:
            self._plain = progress is None and not quiet and "PYTEST_CURRENT_TEST" not in os.environ

    def _write(self, name: str, rec: dict[str, Any]) -> None:
        f = self._files[name]
        f.write(json.dumps(rec) + "\n")
        f.flush()

    def step(self, rec: dict[str, Any], show: bool) -> None:
        if not self.enabled:
            return
        self._write("metrics.jsonl", rec)
        s = rec["step"]
        if self._tb is not None and show:
            for k in ("loss", "aux", "lr", "grad_norm", "tok_s", "balance"):
                if rec.get(k) is not None:
                    self._tb.add_scalar(f"train/{k}", rec[k], s)
        info = rec.get("info") or (
            f"loss {rec['loss']:.4f} | {rec['tok_s']:.0f} tok/s | bal {rec.get('balance') or 0:.2f}"
        )
        if self._progress is not None:
            self._progress.update(self._task, completed=s, info=info)
        elif self._plain and show:
            print(
                f"[{self.label}] step {s}/{self.total} {info} | "
                + ("no update | " if rec["lr"] is None else f"lr {rec['lr']:.2e} | ")
                + self.timing(s),
                file=sys.stderr,
                flush=True,
            )

    def timing(self, step: int, now: float | None = None) -> str:
        """`1m05s elapsed, ETA 5m25s` at `step`: ETA from the mean pace of this process's steps."""
        elapsed = (time.perf_counter() if now is None else now) - self._t0
        done = step - self._start_step
        if done <= 0 or step >= self.total:
            return f"{_duration(elapsed)} elapsed" + (", done" if step >= self.total else "")
        return (
            f"{_duration(elapsed)} elapsed, ETA {_duration(elapsed / done * (self.total - step))}"
        )

    def record(self, name: str, rec: dict[str, Any], line: str | None = None) -> None:
        """Append `rec` to one of `FILES` (e.g. RL's `curve.jsonl`), optionally printing a line."""
        if not self.enabled:
            return
        self._write(name, rec)
        if line and (self._plain or self._progress is not None):
            print(f"[{self.label}] {line}", file=sys.stderr, flush=True)

    def routing(self, step: int, layers: list[dict[str, Any]]) -> None:
        if not self.enabled or not layers:
            return
        self._write("routing.jsonl", {"step": step, "layers": layers})
        if self._tb is not None:
            for lay in layers:
                self._tb.add_scalar(f"routing/balance_l{lay['layer']}", lay["balance"], step)
                self._tb.add_scalar(f"routing/entropy_l{lay['layer']}", lay["entropy"], step)

    def val(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._write("val.jsonl", rec)
        if self._tb is not None:
            self._tb.add_scalar("val/loss", rec["val_loss"], rec["step"])
            if rec["val_bpb"] is not None:  # None: the targets had no bytes (special tokens)
                self._tb.add_scalar("val/bpb", rec["val_bpb"], rec["step"])
        if self._plain:
            bpb = "n/a" if rec["val_bpb"] is None else f"{rec['val_bpb']:.4f}"
            print(
                f"[{self.label}] step {rec['step']} val loss {rec['val_loss']:.4f} bpb {bpb}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()
        for f in self._files.values():
            f.close()
        self._files = {}
