"""Which model-free draft sources an engine built for evaluation or the harness may use.

Why a module of its own, without torch: `hillclimb eval` and `hillclimb harness run` check
`--drafter` before any model loads (a typo said so only after the load), and the harness sits
below eval, so the check lives here, beside the drafters, for both. "model" is not offered: an
evaluation or harness engine loads no draft model. Drafts are verified against the model's own
greedy choice, so a drafter changes how fast answers come, not which.
"""

from __future__ import annotations

from hillclimb.errors import HillclimbError

MODEL_FREE_DRAFTERS = ("none", "lookup", "suffix")


def check_drafter(drafter: str) -> str:
    """`drafter` when it is one of `MODEL_FREE_DRAFTERS`, else a one-line `HillclimbError`."""
    if drafter not in MODEL_FREE_DRAFTERS:
        raise HillclimbError(
            f"drafter must be one of {', '.join(MODEL_FREE_DRAFTERS)}, got {drafter!r}"
        )
    return drafter
