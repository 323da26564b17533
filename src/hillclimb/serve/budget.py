"""Reasoning budget: `reasoning_effort` / `thinking_token_budget` → a cap on thinking tokens.

This is the inference half of adaptive solution length control: a request says how much thinking
it may spend; when the budget is used up inside an open `<think>` block, the engine forces
`</think>` followed by the blank line the chat template puts after a think block, and the model
continues with the answer (vLLM's `thinking_token_budget` behaviour). Forcing the closing tag
rather than stopping keeps the output well-formed and lets the answer condition on the truncated
reasoning.

Efforts map to nominal budgets scaled to the model's context, so a 512-token micro model gets
budgets it can actually honour:

| effort | nominal | cap (fraction of context) |
|--------|---------|---------------------------|
| low    | 256     | 1/8                       |
| medium | 1024    | 1/4                       |
| high   | 4096    | 1/2                       |

The table alone did not change behaviour on small models: a tiny thinking model thinks for a
few dozen tokens, far below even `low`'s cap, so low and high gave identical output. So a
checkpoint may carry its own **thinking profile** (`hillclimb.json` → `thinking_profile`: the
median and 90th percentile of its thinking length, measured by `hillclimb rl` on held-out
problems, greedy and unbudgeted, at the end of the run). With one, `low` and `medium` become
fractions of the model's own p90 (`EFFORT_FRACTIONS`: 1/4 and 1/2, never above the table's
cap), and `high` keeps the table's budget (think as long as you normally would). Tokens and
accuracy per level are measured by `bench/serve_effort.py` (BENCHMARKS.md).

Budget conditioning (the training half): a model trained on budget-noted SFT data (`[sft_data]
budget_fraction`: the longest solution form that fits the budget) or by `hillclimb rl
--budget-conditioning` (rewarded for staying within it) saw its budget in the prompt — a system
note, `budget_note(n)` — so its checkpoint says `budget_conditioning` in `hillclimb.json` and the
server puts the same note in front of the conversation when a request sets a budget
(`with_budget_note`).
The forced `</think>` stays as the hard cap either way.

An explicit `thinking_token_budget` wins over `reasoning_effort`. The budget counts tokens
generated inside the think block, excluding the `<think>`/`</think>` tags themselves; the
`reasoning_tokens` usage figure counts every generated token of the block, tags included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hillclimb.tokenizer.specials import (  # noqa: F401 (the note lives with the chat template)
    BUDGET_NOTE,
    THINK_END,
    THINK_START,
    budget_note,
    with_budget_note,
)

EFFORT_BUDGETS: dict[str, tuple[int, float]] = {
    "low": (256, 1 / 8),
    "medium": (1024, 1 / 4),
    "high": (4096, 1 / 2),
}


# effort -> fraction of the model's own p90 thinking length (when its checkpoint has a profile)
EFFORT_FRACTIONS: dict[str, float] = {"low": 0.25, "medium": 0.5}
PROFILE_KEY = "thinking_profile"


def thinking_profile(reasoning_tokens: list[int], source: str) -> dict[str, Any] | None:
    """Median and 90th percentile (nearest rank) of thinking lengths; None when nothing was
    measured or no sample thought at all."""
    xs = sorted(int(x) for x in reasoning_tokens if x > 0)
    if not xs:
        return None

    def rank(q: float) -> int:
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]

    return {"p50": rank(0.5), "p90": rank(0.9), "n": len(xs), "source": source}


def profile_from_info(info: dict[str, Any]) -> dict[str, Any] | None:
    """The thinking profile in a checkpoint's `hillclimb.json` (None if absent or malformed)."""
    prof = info.get(PROFILE_KEY)
    if not isinstance(prof, dict):
        return None
    p90 = prof.get("p90")
    if isinstance(p90, bool) or not isinstance(p90, int | float):
        return None
    try:  # `Infinity` (Python's json reads it) or a huge int failed every effort request later
        ok = math.isfinite(float(p90)) and p90 > 0
    except OverflowError:
        ok = False
    return prof if ok else None


def checkpoint_profile(path: Any) -> dict[str, Any] | None:
    """The thinking profile a checkpoint directory carries (None: none, or unreadable)."""
    from hillclimb.errors import HillclimbError
    from hillclimb.model.checkpoint import read_info

    try:
        return profile_from_info(read_info(path))
    except (OSError, ValueError, HillclimbError):
        return None


def effort_budget(effort: str, max_context: int, profile: dict[str, Any] | None = None) -> int:
    nominal, frac = EFFORT_BUDGETS[effort]
    cap = max(1, min(nominal, int(max_context * frac)))
    if profile is not None and effort in EFFORT_FRACTIONS:
        return max(1, min(cap, math.ceil(EFFORT_FRACTIONS[effort] * float(profile["p90"]))))
    return cap


def resolve_budget(
    effort: str | None,
    explicit: int | None,
    max_context: int,
    profile: dict[str, Any] | None = None,
) -> int | None:
    if explicit is not None:
        return explicit
    if effort is not None:
        return effort_budget(effort, max_context, profile)
    return None


@dataclass
class ThinkState:
    """Tracks whether generation is inside `<think>` and enforces the budget."""

    think_start: int
    think_end: int
    close_ids: list[int]  # "</think>" + "\n\n", forced when the budget runs out
    budget: int | None = None
    in_think: bool = False
    used: int = 0  # tokens generated inside the current think block (tags excluded)
    reasoning_tokens: int = 0  # all generated tokens of think blocks, tags included
    forced: list[int] = field(default_factory=list)  # queued forced tokens

    @classmethod
    def for_prompt(cls, tokenizer: object, prompt_ids: list[int], budget: int | None) -> ThinkState:
        ts = tokenizer.token_id(THINK_START)  # type: ignore[attr-defined]
        te = tokenizer.token_id(THINK_END)  # type: ignore[attr-defined]
        close = [te, *tokenizer.encode("\n\n")]  # type: ignore[attr-defined]
        st = cls(think_start=ts, think_end=te, close_ids=close, budget=budget)
        # A prompt that ends inside an open think block (e.g. "...assistant\n<think>\n") starts
        # generation in reasoning mode. Only the current turn counts: stop at its <|im_start|>.
        turn = tokenizer.token_id("<|im_start|>")  # type: ignore[attr-defined]
        for t in reversed(prompt_ids):
            if t in (te, turn):
                break
            if t == ts:
                st.in_think = True
                break
        return st

    def budget_exhausted(self) -> bool:
        return self.in_think and self.budget is not None and self.used >= self.budget

    def next_forced(self) -> int | None:
        """The token the engine must emit next instead of sampling, if any."""
        if self.forced:
            return self.forced[0]
        if self.budget_exhausted():
            self.forced = list(self.close_ids)
            return self.forced[0]
        return None

    def observe(self, token_id: int) -> tuple[bool, bool]:
        """Account one generated token. Returns (is_reasoning, is_tag)."""
        if self.forced and self.forced[0] == token_id:
            self.forced.pop(0)
        if token_id == self.think_start and not self.in_think:
            self.in_think = True
            self.used = 0
            self.reasoning_tokens += 1
            return True, True
        if token_id == self.think_end and self.in_think:
            self.in_think = False
            self.reasoning_tokens += 1
            return True, True
        if self.in_think:
            self.used += 1
            self.reasoning_tokens += 1
            return True, False
        return False, False

    def tokens_until_budget(self) -> int | None:
        """How many more free tokens may be generated before forcing (None: unlimited)."""
        if self.forced:
            return 0
        if not self.in_think or self.budget is None:
            return None
        return max(0, self.budget - self.used)
