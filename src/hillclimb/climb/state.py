"""The climb's run state: stages, the run (paths of every stage's outputs), markers, timings.

Why a module of its own: the runner drives the stages, and the stages' helpers — the registry
stage (`promotion.py`) and the report (`report.py`) — need the run's paths and the per-stage
timings. With those in `runner.py`, runner and its helpers imported each other (issue 16); now
runner, promotion and report all import this module, and runner alone imports the helpers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hillclimb.climb.climb_recipe import Recipe

MARKER = "_stage.json"
STARTED = "_started.json"
RUN_FILE = "climb.json"
LOG_FILE = "climb.jsonl"
MARKER_FORMAT = "hillclimb-climb-stage-v1"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Stage:
    key: str  # "data", "tokenizer", "shards", "pretrain-thinking", ..., "eval", "report"
    dirname: str
    section: dict[str, Any]  # the recipe section(s) this stage reads (fingerprinted)
    parents: list[str]
    fn: Callable[[Climb, Stage, Path], dict[str, Any]]
    hash: str = ""
    keep_partial: bool = False  # resumable: keep an unfinished stage's contents on re-run
    # for a stage whose outputs depend on this invocation's options, not only on the recipe:
    # False when a completed stage's result does not fit them (the stage runs again)
    current: Callable[[Climb, dict[str, Any]], bool] | None = None


@dataclass
class Climb:
    recipe: Recipe
    out: Path
    stages: list[Stage] = field(default_factory=list)
    progress: bool = False
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    registry: Path | bool | None = None  # registry file; None: the state dir's; False: off

    # ---- paths of stage outputs -----------------------------------------------------------------
    def stage(self, key: str) -> Stage:
        for s in self.stages:
            if s.key == key:
                return s
        raise KeyError(key)

    def dir(self, key: str) -> Path:
        return self.out / self.stage(key).dirname

    @property
    def corpus(self) -> Path:
        return self.dir("data") / "corpus"

    @property
    def tokenizer_dir(self) -> Path:
        return self.dir("tokenizer") / "tokenizer"

    @property
    def shards_dir(self) -> Path:
        return self.dir("shards")

    def final(self, key: str) -> Path:
        return self.dir(key) / "run" / "final"

    def log(self, **rec: Any) -> None:
        """Append one record to `climb.jsonl`, on a line of its own: a climb killed mid-append
        left a line without its newline, and the next record, appended to it, was lost too."""
        line = (json.dumps({"time": now_iso(), **rec}) + "\n").encode("utf-8")
        with open(self.out / LOG_FILE, "a+b") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def say(self, msg: str) -> None:
        print(f"[climb] {msg}", file=sys.stderr, flush=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """A marker's JSON object, or None when it is absent or unreadable (a damaged marker, even
    one that is valid JSON but not an object, counts as no marker: the stage runs again)."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def stage_timings(out: Path) -> list[dict[str, Any]]:
    """Per stage: the seconds of the run that completed it (from its marker) and its status."""
    rows = []
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        m = read_json(d / MARKER)
        if m is not None:
            rows.append(
                {
                    "stage": m["stage"],
                    "dir": d.name,
                    "seconds": m["seconds"],
                    "finished": m["finished"],
                }
            )
    return rows
