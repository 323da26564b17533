"""The masks a schema-guided episode was sampled under, rebuilt for the policy-gradient loss.

Why: with `serve.tool_grammar` on (the harness default for local models), each token inside a
`<tool_call>` body is drawn from the model's distribution renormalised over the tokens the
grammar allows, and the engine records *that* log-prob. The policy being trained is "model +
grammar", so the loss must score tokens the same way: log π_θ(a) = logit_a − logsumexp over the
allowed set, not over the vocabulary. Scoring against the full softmax instead makes the
importance ratio start at Z = π(allowed) < 1 on every constrained token, and PPO's clip then
silences exactly the negative-advantage updates on malformed-looking calls.

How: the grammar state of every token is a deterministic function of the tokens before it in
its turn (`ToolCallGrammar.constrained_positions`), so nothing but the episode's token ids, its
per-turn completion spans and whether each turn was guided need to be stored. States repeat a
lot (the same free-string state covers most of an argument), so `GuideTable` keeps one row per
distinct state and the batch carries an index per token (`gidx`, −1 = unconstrained); the loss
gathers the rows it needs (`rl.grpo.PolicyLoss.guide_table`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hillclimb.serve.tool_grammar import ToolCallGrammar


class GuideTable:
    """Distinct grammar states of one update's batch → row of a [K, V] bool mask table."""

    def __init__(self, grammar: ToolCallGrammar):
        self.g = grammar
        self._index: dict[tuple, int] = {}
        self._states: list[tuple] = []

    def index(self, state: tuple) -> int:
        i = self._index.get(state)
        if i is None:
            i = self._index[state] = len(self._states)
            self._states.append(state)
        return i

    def __len__(self) -> int:
        return len(self._states)

    def tensor(self) -> torch.Tensor | None:
        """Bool [K, V] (None when no token of the batch was constrained)."""
        if not self._states:
            return None
        return torch.stack([self.g.mask(s) for s in self._states])


def episode_guide(ep: Any, table: GuideTable) -> list[tuple[int, int]]:
    """(position in `ep.token_ids`, table row) for every token the episode sampled under the
    grammar. An episode without spans (recorded before spans existed, or by a client that
    does not guide) has none."""
    spans = getattr(ep, "completion_spans", None) or []
    guided = getattr(ep, "guided_spans", None) or []
    ids = ep.token_ids or []
    out: list[tuple[int, int]] = []
    for (a, b), on in zip(spans, guided, strict=False):
        if not on:
            continue
        for off, state in table.g.constrained_positions(list(ids[a:b])):
            out.append((a + off, table.index(state)))
    return out


def fill_gidx(gidx: np.ndarray, row: int, guide: list[tuple[int, int]]) -> None:
    """Write one row's guided positions into the batch's `gidx` array (−1 elsewhere)."""
    for pos, k in guide:
        if pos < gidx.shape[1]:
            gidx[row, pos] = k
