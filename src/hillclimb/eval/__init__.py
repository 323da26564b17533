"""Evaluation: bits per byte on held-out shards and held-out task accuracy per family and tier.

`run_eval(model, data, ...)` (in `core`) is the library entry point the climb and the
`hillclimb eval` command share; `render` turns its result into a terminal table. Imports are lazy
so `import hillclimb.eval` stays cheap (torch loads only when an evaluation runs).
"""

from __future__ import annotations

from typing import Any


def run_eval(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See `hillclimb.eval.core.run_eval`."""
    from hillclimb.eval.core import run_eval as _run

    return _run(*args, **kwargs)


__all__ = ["run_eval"]
