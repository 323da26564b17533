"""Matplotlib on a headless machine: the Agg backend, and PNGs written atomically.

One place for the two lines every report needs, so the climb report, RL reports and eval plots
cannot drift apart (and a crashed plot never leaves half a PNG beside a report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> None:
    from hillclimb.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
