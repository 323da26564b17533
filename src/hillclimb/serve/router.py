"""The "auto" router: send easy requests to code-flash, hard ones to thinking.

Why a transparent linear model: the decision has to be auditable (it is returned with every
`auto` response), cheap (one code-flash forward over the prompt, no generation) and trainable
later from evaluation outcomes without changing its shape. The difficulty score is

    score = bias + Σ_i w_i · f_i(prompt)          route to thinking iff score > threshold

over a handful of named features:

- `nll`: code-flash's mean token negative log-likelihood of the prompt, divided by ln(vocab)
  (0 = perfectly predictable, 1 = uniform). The small model's own uncertainty: prompts it finds
  surprising are more likely beyond it.
- `entropy`: code-flash's mean predictive entropy over the prompt, / ln(vocab).
- `log_len`: ln(1 + prompt tokens) / ln(1 + context): long contexts favour the big model.
- `code_blocks`: number of fenced code blocks (capped at 4, /4).
- `reasoning_kw`: reasoning cue words ("prove", "step by step", "why", "derive", ...) (capped, /4).
- `math`: density of math operators and digits in the text (×10, capped at 1).
- `constraints`: constraint cues ("must", "at most", "exactly", bullet lines, ...) (capped, /8).

Features are all scaled to about [0, 1] so the weights read as "how much this cue matters". The
default weights are hand-set priors; `fit(examples)` replaces them by L2-regularised logistic
regression on outcomes (label: code-flash's answer was good enough), and `save`/`load` keep them
as JSON. The logit of P(needs thinking) is the score, so threshold 0 means "more likely than not".
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hillclimb.errors import HillclimbError
from hillclimb.io import write_json_atomic
from hillclimb.tokenizer.specials import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

FEATURES = ["nll", "entropy", "log_len", "code_blocks", "reasoning_kw", "math", "constraints"]

DEFAULT_WEIGHTS: dict[str, float] = {
    "bias": -2.0,
    "nll": 1.0,
    "entropy": 0.5,
    "log_len": 1.0,
    "code_blocks": 0.3,
    "reasoning_kw": 2.5,
    "math": 1.5,
    "constraints": 1.0,
}

_REASONING = re.compile(
    r"\b(prove|proof|step[- ]by[- ]step|why|derive|explain|reason(?:ing)?|theorem|lemma|"
    r"optimi[sz]e|optimal|complexity|algorithm|show that|deduce|puzzle|how many|probability|"
    r"integral|equation|solve)\b",
    re.IGNORECASE,
)
_CONSTRAINT = re.compile(
    r"\b(must|should|exactly|at least|at most|without|only|ensure|every|each|no more than|"
    r"do not|don't|never|always|constraint)\b",
    re.IGNORECASE,
)
_MATH = re.compile(r"[0-9+\-*/^=<>≤≥∑∫√π%]")


# why a fill-in-the-middle request skips the score: code-flash is the model trained for it (its
# middles are code; thinking answers with a think block first), and the score's text features
# would read the hole's code — its operators and digits — as a hard math question
FIM_REASON = "fill-in-the-middle: code-flash completes code around a hole"


def fim_marker_ids(tok: Any) -> set[int]:
    """The ids of the FIM marker tokens this tokenizer has (none for a tokenizer without)."""
    out = set()
    for name in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE):
        try:
            out.add(int(tok.token_id(name)))
        except (KeyError, AttributeError, HillclimbError):
            continue
    return out


def is_fim_prompt(prompt_ids: list[int], tok: Any) -> bool:
    """Whether a prompt holds a FIM marker token (a client that rendered the FIM template
    itself, as Continue and Tabby do, or the server's `suffix` prompt)."""
    markers = fim_marker_ids(tok)
    return bool(markers) and any(t in markers for t in prompt_ids)


def text_features(text: str) -> dict[str, float]:
    """The prompt-text features (no model needed)."""
    n = max(len(text), 1)
    fences = text.count("```") // 2
    bullets = len(re.findall(r"^\s*(?:[-*•]|\d+[.)])\s+", text, flags=re.MULTILINE))
    return {
        "code_blocks": min(fences, 4) / 4,
        "reasoning_kw": min(len(_REASONING.findall(text)), 4) / 4,
        "math": min(len(_MATH.findall(text)) / n * 10, 1.0),
        "constraints": min(len(_CONSTRAINT.findall(text)) + bullets, 8) / 8,
    }


@dataclass
class RouteDecision:
    model: str  # "thinking" | "code-flash"
    score: float
    threshold: float
    features: dict = field(default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "score": self.score,
            "threshold": self.threshold,
            "features": self.features,
            "reason": self.reason,
        }


class Router:
    """Linear difficulty score over transparent features; trainable with `fit`."""

    def __init__(
        self,
        flash: Any,
        threshold: float = 0.0,
        weights: dict | None = None,
        max_score_tokens: int = 512,
    ):
        self.flash = flash
        self.threshold = _finite(threshold, "router threshold")
        w = dict(DEFAULT_WEIGHTS)
        if weights:
            if not isinstance(weights, dict):
                raise HillclimbError(
                    f"router weights must be an object of named numbers, got "
                    f"{type(weights).__name__}"
                )
            unknown = set(weights) - set(DEFAULT_WEIGHTS)
            if unknown:
                raise HillclimbError(f"unknown router weights: {sorted(unknown)}")
            w.update({k: _finite(v, f"router weight {k!r}") for k, v in weights.items()})
        self.weights = w
        self.max_score_tokens = max_score_tokens

    # ---- features & decisions -----------------------------------------------------------------
    def features(
        self, prompt_ids: list[int], messages: list[dict] | None = None
    ) -> dict[str, float]:
        tok = self.flash.tokenizer
        if messages:
            users = [m.get("content") for m in messages if m.get("role") == "user"]
            text = users[-1] if users and isinstance(users[-1], str) else _text(tok, prompt_ids)
        else:
            text = _text(tok, prompt_ids)
        ids = list(prompt_ids)[-self.max_score_tokens :]
        log_v = math.log(self.flash.cfg.vocab_size)
        if len(ids) >= 2:
            st = self.flash.score_stats(ids)
            nll = float(-st["logprobs"].mean()) / log_v
            ent = float(st["entropy"].mean()) / log_v
        else:
            nll, ent = 1.0, 1.0
        f = {
            "nll": round(nll, 6),
            "entropy": round(ent, 6),
            "log_len": round(math.log1p(len(prompt_ids)) / math.log1p(self.flash.max_context), 6),
        }
        f.update({k: round(v, 6) for k, v in text_features(text).items()})
        return f

    def score_features(self, f: dict[str, float]) -> float:
        return self.weights["bias"] + sum(self.weights[k] * f[k] for k in FEATURES)

    def decide(self, prompt_ids: list[int], messages: list[dict] | None = None) -> RouteDecision:
        f = self.features(prompt_ids, messages)
        s = self.score_features(f)
        contrib = sorted(((self.weights[k] * f[k], k) for k in FEATURES), reverse=True)
        top = ", ".join(f"{k}={f[k]:.2f}(+{c:.2f})" for c, k in contrib[:3] if c > 0)
        model = "thinking" if s > self.threshold else "code-flash"
        cmp = ">" if s > self.threshold else "<="
        reason = (
            f"difficulty {s:.3f} {cmp} threshold {self.threshold:.3f}; top cues: {top or 'none'}"
        )
        return RouteDecision(
            model=model, score=round(s, 6), threshold=self.threshold, features=f, reason=reason
        )

    # ---- training -----------------------------------------------------------------------------
    def fit(
        self, examples: list[Any], l2: float = 1e-2, steps: int = 2000, lr: float = 0.5
    ) -> dict:
        """Logistic regression of "needs thinking" (= not flash_ok) on the features.

        `examples`: items `(features_or_prompt_ids, flash_ok)` or dicts with `flash_ok` and either
        `features` or `prompt_ids` (features are then computed with code-flash). Full-batch
        gradient descent (deterministic). Returns {"loss", "accuracy", "n"} on the examples."""
        X, y = [], []
        for ex in examples:
            if isinstance(ex, dict):
                ok = ex.get("flash_ok")
                src = ex.get("features", ex.get("prompt_ids"))
            else:
                src, ok = ex
            if not isinstance(ok, bool | int) or src is None:
                raise HillclimbError(
                    "router examples need a features dict or prompt_ids and a flash_ok label"
                )
            f = src if isinstance(src, dict) else self.features(list(src))
            missing = [k for k in FEATURES if k not in f]
            if missing:
                raise HillclimbError(f"router example lacks features {missing}")
            X.append([_finite(f[k], f"router example feature {k!r}") for k in FEATURES])
            y.append(0.0 if ok else 1.0)
        if len(X) < 2 or len(set(y)) < 2:
            raise HillclimbError("router fit needs at least two examples with both labels")
        Xa = np.asarray(X, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64)
        w = np.array([self.weights[k] for k in FEATURES], dtype=np.float64)
        b = float(self.weights["bias"])
        n = len(ya)
        for _ in range(steps):
            z = Xa @ w + b
            p = 1.0 / (1.0 + np.exp(-z))
            g = p - ya
            w -= lr * (Xa.T @ g / n + l2 * w)
            b -= lr * float(g.mean())
        self.weights = {"bias": b, **{k: float(v) for k, v in zip(FEATURES, w, strict=True)}}
        self.threshold = 0.0
        z = Xa @ w + b
        p = np.clip(1.0 / (1.0 + np.exp(-z)), 1e-9, 1 - 1e-9)
        loss = float(-(ya * np.log(p) + (1 - ya) * np.log(1 - p)).mean())
        acc = float(((z > 0) == (ya > 0.5)).mean())
        return {"loss": loss, "accuracy": acc, "n": n}

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        write_json_atomic(
            path,
            {
                "format": "hillclimb-router-v1",
                "features": FEATURES,
                "threshold": self.threshold,
                "weights": self.weights,
                **({"flash": _flash_fingerprint(self.flash)} if self.flash is not None else {}),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], flash: Any) -> Router:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HillclimbError(f"cannot read router weights {p}: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != "hillclimb-router-v1":
            raise HillclimbError(f"{p} is not a hillclimb router file")
        # A file of other features (an older or newer hillclimb) would be read as a fitted bias
        # mixed with the hand-set priors; one fitted on another code-flash reads nll / entropy
        # of a model it never saw (session 22: both loaded silently).
        if "features" in d and d["features"] != FEATURES:
            raise HillclimbError(
                f"{p}: fitted on features {d['features']!r}, this version scores {FEATURES!r}; "
                "refit it with `hillclimb router fit`"
            )
        weights = d.get("weights")
        if "features" in d and isinstance(weights, dict):
            missing = sorted(set(DEFAULT_WEIGHTS) - set(weights))
            if missing:
                raise HillclimbError(f"{p}: weights {missing} are missing from a fitted file")
        # flash None: the file is only being checked before the models load (`serve` start-up)
        saved = d.get("flash")
        here = _flash_fingerprint(flash) if flash is not None else None
        if isinstance(saved, dict) and here is not None:
            differ = sorted(k for k in here if k in saved and saved[k] != here[k])
            if differ:
                raise HillclimbError(
                    f"{p}: fitted on another code-flash ({', '.join(differ)} differ); its nll and "
                    "entropy features belong to that model: refit with `hillclimb router fit`"
                )
        try:
            return cls(flash, threshold=d.get("threshold", 0.0), weights=d.get("weights"))
        except HillclimbError as exc:
            raise HillclimbError(f"{p}: {exc}") from None


def _flash_fingerprint(flash: Any) -> dict[str, Any]:
    """What the model-based features depend on that a file can check cheaply: the scoring
    model's vocabulary size and its tokenizer's SHA-256 (the weights themselves are not hashed
    here: a retrained code-flash on the same tokenizer still loads)."""
    import hashlib

    tok = flash.tokenizer
    return {
        "vocab_size": int(flash.cfg.vocab_size),
        "tokenizer_sha256": hashlib.sha256(tok.hf.to_str().encode("utf-8")).hexdigest(),
    }


def _text(tok: Any, prompt_ids: list[int]) -> str:
    """The prompt's text without special-token markup: `<|im_start|>`, `<|fim_middle|>` and
    the like are template, not the user's words, and their `<`, `|`, `>` counted as math (a
    FIM prompt scored math 0.86 and went to thinking)."""
    return tok.decode(prompt_ids, skip_special=True)


def _finite(value: Any, what: str) -> float:
    """A finite number, else a `HillclimbError` naming it: a NaN or infinite weight (a hand-edited
    file, a feature that overflowed) would make every score NaN and route silently one way, and a
    string would surface as a bare ValueError."""
    if not isinstance(value, numbers.Real):
        raise HillclimbError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise HillclimbError(f"{what} must be finite, got {v}")
    return v
