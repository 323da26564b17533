"""Model-based AI-generated-text detector: the Binoculars observer/performer perplexity ratio.

Why Binoculars (Hans et al., 2024): it needs no detector training and no labelled AI text — only
two related causal LMs sharing a tokenizer. For a text s,

    B(s) = log PPL_performer(s) / X-PPL(observer, performer)(s)

where log PPL is the performer's mean next-token cross-entropy on s, and X-PPL is the mean
cross-entropy between the observer's and the performer's next-token distributions (how
surprising one model finds the other's predictions). Machine text is low-perplexity *relative to
what a model expects a model to write*, so B is low for it; human text scores higher. The
threshold depends on the model pair and must be calibrated (the paper's 0.90 is for Falcon-7B /
Falcon-7B-instruct); it is `ai_content.threshold` in the recipe.

In hillclimb the two models are our own checkpoints (e.g. the thinking and code-flash models of
the previous climb), which is the hill-climbing loop's "better data": each generation filters the
next one's corpus. The detector is off unless both `ai_content.observer` and `.performer` are
set.

Why the filter takes a scorer instead of loading checkpoints: the data package never loads models
(DESIGN.md, "data → model never"). `BinocularsFilter` is given a `TextScorer` (texts → scores)
built by whoever runs the build — `hillclimb data build` and the climb's data stage both use
`hillclimb.data.cli.checkpoint_scorer`, which loads the two checkpoints lazily, in the process
that first scores (each worker of a parallel build), as before. This module needs only torch,
for the score itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from hillclimb.data.config import AIContentConfig
from hillclimb.data.document import Document

if TYPE_CHECKING:
    import torch

# Binoculars scores of a batch of texts, one per text (lower = more machine-like).
TextScorer = Callable[[list[str]], list[float]]


def binoculars_scores(
    observer_logits: torch.Tensor,
    performer_logits: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Per-sequence Binoculars score from logits [B, T, V], ids [B, T], mask [B, T] (1 = real).

    Position t's logits predict token t+1; the last position and padding are ignored."""
    import torch
    import torch.nn.functional as F

    obs = observer_logits[:, :-1].float()
    perf = performer_logits[:, :-1].float()
    target = ids[:, 1:]
    m = (mask[:, 1:] * mask[:, :-1]).float()
    n = m.sum(dim=1).clamp_min(1.0)
    perf_logp = F.log_softmax(perf, dim=-1)
    nll = -perf_logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    log_ppl = (nll * m).sum(dim=1) / n
    obs_p = F.softmax(obs, dim=-1)
    x_ent = -(obs_p * perf_logp).sum(dim=-1)  # [B, T-1]
    x_ppl = (x_ent * m).sum(dim=1) / n
    return log_ppl / x_ppl.clamp_min(torch.finfo(torch.float32).tiny)


class BinocularsFilter:
    """Batch filter: drop documents whose Binoculars score is below the threshold."""

    name = "ai_detector"

    def __init__(self, cfg: AIContentConfig, scorer: TextScorer):
        self.cfg = cfg
        self.scorer = scorer
        self.stats: Counter[str] = Counter()

    @staticmethod
    def enabled(cfg: AIContentConfig) -> bool:
        return bool(cfg.enabled and cfg.observer and cfg.performer)

    def apply_batch(self, docs: list[Document]) -> list[str | None]:
        out: list[str | None] = []
        bs = max(1, self.cfg.batch_size)
        for s in range(0, len(docs), bs):
            batch = docs[s : s + bs]
            for d, score in zip(batch, self.scorer([d.text for d in batch]), strict=True):
                self.stats["scored"] += 1
                d.meta["binoculars_score"] = round(score, 4)
                out.append(None if score >= self.cfg.threshold else "below_threshold")
        return out
