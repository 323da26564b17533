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
set; the model package is imported lazily so the data stage runs without torch models.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hillclimb.data.config import AIContentConfig
from hillclimb.data.document import Document
from hillclimb.errors import HillclimbError


def binoculars_scores(observer_logits: Any, performer_logits: Any, ids: Any, mask: Any) -> Any:
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


class BinocularsScorer:
    """Loads an observer and a performer checkpoint (same tokenizer) and scores texts."""

    def __init__(
        self, observer: str, performer: str, device: str | None = None, max_tokens: int = 512
    ):
        from hillclimb import load_model, load_tokenizer

        self.tok = load_tokenizer(observer)
        perf_tok = load_tokenizer(performer)
        if perf_tok.hf.to_str() != self.tok.hf.to_str():
            raise HillclimbError(
                "Binoculars needs observer and performer checkpoints with the same tokenizer"
            )
        self.observer = load_model(observer, device=device)
        self.performer = load_model(performer, device=device)
        self.device = device
        self.max_tokens = max_tokens

    def score(self, texts: list[str]) -> list[float]:
        import torch

        seqs = [ids[: self.max_tokens] for ids in self.tok.encode_batch(texts)]
        seqs = [s if len(s) >= 2 else s + [self.tok.eos_id] * (2 - len(s)) for s in seqs]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tok.eos_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        if self.device:
            ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            scores = binoculars_scores(self.observer(ids), self.performer(ids), ids, mask)
        return [float(x) for x in scores.cpu()]


class BinocularsFilter:
    """Batch filter: drop documents whose Binoculars score is below the threshold."""

    name = "ai_detector"

    def __init__(self, cfg: AIContentConfig):
        self.cfg = cfg
        self.stats: Counter[str] = Counter()
        self._scorer: BinocularsScorer | None = None

    @staticmethod
    def enabled(cfg: AIContentConfig) -> bool:
        return bool(cfg.enabled and cfg.observer and cfg.performer)

    def _get(self) -> BinocularsScorer:
        if self._scorer is None:
            assert self.cfg.observer and self.cfg.performer
            self._scorer = BinocularsScorer(
                self.cfg.observer, self.cfg.performer, self.cfg.device, self.cfg.max_tokens
            )
        return self._scorer

    def apply_batch(self, docs: list[Document]) -> list[str | None]:
        out: list[str | None] = []
        scorer = self._get()
        bs = max(1, self.cfg.batch_size)
        for s in range(0, len(docs), bs):
            batch = docs[s : s + bs]
            for d, score in zip(batch, scorer.score([d.text for d in batch]), strict=True):
                self.stats["scored"] += 1
                d.meta["binoculars_score"] = round(score, 4)
                out.append(None if score >= self.cfg.threshold else "below_threshold")
        return out
