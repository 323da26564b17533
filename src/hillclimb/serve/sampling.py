"""Sampling parameters and the per-row sampling math (temperature, top-k, top-p, logprobs).

Why per row with a per-request `torch.Generator`: a request's random stream must depend only on
its own seed, never on which other requests happen to share the decode batch, so the same seed
gives the same output under any load (tested). The warping (`warp_probs`) is one function used
for plain sampling and for both distributions of speculative decoding (target p and draft q), so
the two can never disagree about what "temperature 0.7, top-p 0.9" means.

Logprobs are reported from the raw model distribution (log-softmax of the unwarped logits), as
OpenAI and vLLM do, so they are comparable across sampling settings.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hillclimb.errors import HillclimbError

REASONING_EFFORTS = ("low", "medium", "high")
MAX_LOGPROBS = 20
# the longest `cache_scope`: an account tag plus a client's `cache_salt` (`api.MAX_CACHE_SALT`)
MAX_CACHE_SCOPE = 512
# draft sources for speculative decoding (`drafters.py`, `suffix.py`): a draft model, prompt
# lookup, prompt lookup + the engine's recent outputs, none
DRAFTERS = ("model", "lookup", "suffix", "none")


def _finite_number(x: Any) -> bool:
    """An int or float (not a bool) that is neither infinite nor NaN."""
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0  # 0 => greedy
    top_p: float = 1.0  # 0 => only the most likely token (OpenAI accepts 0)
    top_k: int = 0  # 0 => off
    seed: int | None = None  # per-request reproducible sampling
    stop: list[str] = field(default_factory=list)  # stop strings (not included in output)
    stop_token_ids: list[int] | None = None  # None => tokenizer.stop_ids
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; 0: chosen token's logprob; n: plus top-n
    reasoning_effort: str | None = None  # "low" | "medium" | "high" -> a thinking budget
    thinking_token_budget: int | None = None  # force "</think>" when reached inside <think>
    # Extension (compatible): None = use speculative decoding when the engine has a draft model;
    # False = never for this request; True = require it (error if the engine has no draft).
    speculative: bool | None = None
    # Extension for RL rollouts: record each token's log-prob under the sampling distribution
    # (GenerationOutput.policy_logprobs) and which tokens were forced (GenerationOutput.forced).
    policy_logprobs: bool = False
    # Extension: which draft source speculates for this request (`DRAFTERS`; None = the
    # engine's default, and "lookup" — "suffix" on a suffix engine — whenever a prediction is given).
    drafter: str | None = None
    # OpenAI predicted output: text (or token ids) the answer is expected to largely repeat;
    # the lookup drafter searches it first. Never changes *what* is generated, only how fast.
    prediction: str | list[int] | None = None
    # Extension (`healing.py`): back up the prompt's last token and constrain the first generated
    # token(s) to extend the removed text; the output never repeats it. None = the engine's
    # default (`Engine(token_healing=...)`: on for the served code-flash, off elsewhere).
    token_healing: bool | None = None
    # token ids this request may never choose (masked to -inf before warping, on every engine
    # path: prefill, batched decode, speculative verification). Set by the server, e.g. the
    # tool-call start with `tool_choice: "none"`; None = nothing banned.
    banned_token_ids: list[int] | None = None
    # Who may share this request's cached KV (`prefix_cache.py`): the engine matches a prompt
    # only against prefix-cache entries, running requests and same-step joiners of the *same*
    # scope, because a reused prefix shows in `cached_tokens` and in the time to first token —
    # an oracle for another user's prompt text. None = the shared in-process scope (RL groups,
    # harness episodes, eval); the HTTP server sets the authenticated account (+ `cache_salt`).
    cache_scope: str | None = None
    # Extension (`tool_grammar.py`): OpenAI function tool schemas; once the model opens a
    # `<tool_call>`, only tokens that keep its body a valid call of one of these tools may be
    # drawn, and `</tool_call>` only when the call is complete (structured tool calls: the
    # server's `strict` tools, the harness's local models). None = unconstrained.
    guided_tools: list[dict] | None = None
    # Extension: the answer must call a tool (OpenAI `tool_choice: "required"` or a named
    # function): outside reasoning, the first token is `<tool_call>` (needs `guided_tools`)
    require_tool_call: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        elif self.stop is None:
            self.stop = []

    def validate(self) -> None:
        """Raise HillclimbError with a clear message on invalid values."""

        def bad(msg: str) -> None:
            raise HillclimbError(f"invalid sampling parameters: {msg}")

        if (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            bad(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        t = self.temperature
        if not _finite_number(t) or t < 0 or t > 100:
            bad(f"temperature must be a number in [0, 100], got {t!r}")
        p = self.top_p
        if not _finite_number(p) or not 0 <= p <= 1:
            bad(f"top_p must be in [0, 1], got {p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            bad(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            bad(f"seed must be an integer or None, got {self.seed!r}")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            bad("stop must be a list of non-empty strings")
        if len(self.stop) > 16:
            bad(f"at most 16 stop strings, got {len(self.stop)}")
        if self.stop_token_ids is not None and (
            not isinstance(self.stop_token_ids, list)
            or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0
                for i in self.stop_token_ids
            )
        ):
            bad("stop_token_ids must be a list of non-negative integers")
        if self.logprobs is not None and (
            isinstance(self.logprobs, bool)
            or not isinstance(self.logprobs, int)
            or not 0 <= self.logprobs <= MAX_LOGPROBS
        ):
            bad(f"logprobs must be None or an integer in 0..{MAX_LOGPROBS}, got {self.logprobs!r}")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            bad(
                f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, got {self.reasoning_effort!r}"
            )
        b = self.thinking_token_budget
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 0):
            bad(f"thinking_token_budget must be an integer >= 0, got {b!r}")
        if self.speculative not in (None, True, False):
            bad("speculative must be true, false or null")
        if self.token_healing is not None and not isinstance(self.token_healing, bool):
            bad("token_healing must be true, false or null")
        if self.drafter is not None and self.drafter not in DRAFTERS:
            bad(f"drafter must be one of {', '.join(DRAFTERS)} or null, got {self.drafter!r}")
        pred = self.prediction
        if (
            pred is not None
            and not isinstance(pred, str)
            and not (
                isinstance(pred, list)
                and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in pred)
            )
        ):
            bad("prediction must be a string or a list of non-negative token ids")
        ban = self.banned_token_ids
        if ban is not None and (
            not isinstance(ban, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ban)
        ):
            bad("banned_token_ids must be a list of non-negative integers")
        gt = self.guided_tools
        if gt is not None:
            if not isinstance(gt, list) or not gt or not all(isinstance(t, dict) for t in gt):
                bad("guided_tools must be a non-empty list of function tool schemas or null")
            from hillclimb.serve.tool_grammar import compile_tools

            try:
                compile_tools(gt)
            except (ValueError, TypeError, RecursionError) as exc:
                bad(f"guided_tools: {str(exc)[:200]}")
        if self.require_tool_call not in (True, False):
            bad("require_tool_call must be true or false")
        if self.require_tool_call and not self.guided_tools:
            bad("require_tool_call needs guided_tools (the tools a call may name)")
        scope = self.cache_scope
        if scope is not None and (not isinstance(scope, str) or len(scope) > MAX_CACHE_SCOPE):
            bad(f"cache_scope must be a string of at most {MAX_CACHE_SCOPE} characters or null")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice `index` of a request with several choices (OpenAI's `n`) and `seed`.

    Why not `seed + index`: then choice 1 of a request with seed s was the sample of a request
    with seed s + 1 (the same stream, the same tokens), so n samples drawn as n requests with
    consecutive seeds repeated each other, and a best-of-n over them was not n draws. Choice 0
    keeps the seed (n = 1 answers are unchanged); the others are a keyed hash of (seed, index),
    deterministic on every platform and in [0, 2**63)."""
    if index == 0:
        return int(seed) % (1 << 63)
    h = hashlib.blake2b(f"{int(seed)}:{int(index)}".encode(), digest_size=8, person=b"choice")
    return int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def warp_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Probabilities after temperature, top-k and top-p (nucleus) for logits [..., V] (fp32).

    Top-k keeps the k largest logits; top-p then keeps the smallest prefix of the sorted
    distribution whose mass reaches p (the token that crosses p is kept). Ties at the k-th logit
    are all kept, so the result does not depend on sort stability. top_p = 0 (OpenAI accepts
    it) and tiny values keep only the most likely token: never an empty nucleus.
    """
    x = logits.float() / max(params.temperature, 1e-6)
    V = x.shape[-1]
    if 0 < params.top_k < V:
        kth = torch.topk(x, params.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if params.top_p < 1.0:
        sp, idx = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sp, dim=-1) - sp  # mass strictly before each sorted token
        drop_sorted = before >= params.top_p
        # the most likely token always stays: a top_p below float32's smallest number is 0 in
        # this comparison and dropped every token (NaN probabilities, a garbage draw)
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def policy_logprob(logits: torch.Tensor, token_id: int, params: SamplingParams) -> float:
    """log p(token) under the distribution the token was drawn from: the warped one when
    sampling, the plain softmax when greedy (a forced token may get -inf: it was not drawn)."""
    row = logits.reshape(-1).float()
    if params.greedy:
        return float(torch.log_softmax(row, dim=-1)[token_id])
    if params.top_k == 0 and params.top_p >= 1.0:
        return float(torch.log_softmax(row / max(params.temperature, 1e-6), dim=-1)[token_id])
    return float(torch.log(warp_probs(row, params)[token_id]))


def sample_rows(probs: torch.Tensor, generators: list[torch.Generator]) -> list[int]:
    """One draw per row of probs [B, V], row i with `generators[i]` (inverse-CDF sampling).

    Each row consumes exactly one uniform from its own generator, so a request's stream never
    depends on its batch neighbours, while the O(V) work (cumulative sum, search) runs batched.
    `torch.multinomial` draws V exponentials per row (~0.1 ms for V = 4096 on CPU), which made
    sampling the largest cost of a 32-row decode step. The search is on the right side of the
    scaled uniform, so a zero-probability token (flat CDF step) can never be chosen."""
    if probs.dim() == 1:
        probs = probs[None]
    u = torch.cat([torch.rand(1, generator=g, device=probs.device) for g in generators])
    cdf = torch.cumsum(probs.double(), dim=-1)
    x = (u.double() * cdf[:, -1])[:, None]
    idx = torch.searchsorted(cdf, x, right=True)[:, 0]
    return idx.clamp_(max=probs.shape[-1] - 1).tolist()


def sample_from(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One draw from a 1-D probability vector with the request's own generator."""
    return sample_rows(probs.reshape(1, -1), [generator])[0]


def choose_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Next token for one row of logits [V]: argmax when greedy, else a warped draw."""
    if params.greedy:
        return int(torch.argmax(logits))
    return sample_from(warp_probs(logits, params), generator)


def token_logprobs(
    logits: torch.Tensor, token_ids: list[int], n_top: int, id_to_text: Any
) -> list[dict[str, Any]]:
    """Logprob entries for consecutive positions: logits [N, V] (raw), chosen token_ids [N].

    Each entry: {"token_id", "token", "logprob", "top_logprobs": [{"token_id", "token",
    "logprob"}, ...]} with n_top alternatives (most likely first)."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    chosen = lp.gather(-1, torch.tensor(token_ids, device=lp.device)[:, None])[:, 0].tolist()
    tops: list[list[dict[str, Any]]] = [[] for _ in token_ids]
    if n_top > 0:
        vals, idx = torch.topk(lp, min(n_top, lp.shape[-1]), dim=-1)
        for r, (vs, ids) in enumerate(zip(vals.tolist(), idx.tolist(), strict=True)):
            tops[r] = [
                {"token_id": i, "token": id_to_text(i), "logprob": v}
                for v, i in zip(vs, ids, strict=True)
            ]
    return [
        {"token_id": t, "token": id_to_text(t), "logprob": c, "top_logprobs": top}
        for t, c, top in zip(token_ids, chosen, tops, strict=True)
    ]
