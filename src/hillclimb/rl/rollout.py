"""Rollouts: problems → chat prompts → the generation engine → the verifier, one record per sample.

Why one function for evaluation and RL: a reward and a reported accuracy must mean the same
thing. Both go through `rollout_and_check`: the prompt is the user turn rendered by the model's
chat template (`add_generation_prompt`), tokens come only from `Engine.generate_batch`, and
correctness only from `problems.check_many_details` (exact match for reasoning, the sandbox for
code). Each `Rollout` keeps the prompt and completion token ids *as sampled* (never re-tokenised
text), and with `logprobs=True` each token's log-probability under the distribution it was
sampled from and whether the engine forced it (the reasoning budget's `</think>`), so a policy
gradient can train on exactly what was generated.

- **Truncation is not silent.** A completion stopped by `max_tokens` (`finish_reason ==
  "length"`) that does not pass is `status == "truncated"`, not `"fail"`; `truncated` is set
  whatever the outcome. A prompt that leaves no room in the context is `"prompt_too_long"`.
- **Determinism.** Sample `i` of problem `p` is drawn with a seed derived from (seed, p.id, i),
  so the same call gives the same samples however the batch is cut or ordered. Greedy
  (temperature 0) ignores seeds.
- `max_tokens` may be one number or one per problem; `cell_max_tokens` sizes it per family × tier
  from the reference solutions (evaluation and RL both use it), so a long correct answer is never
  cut off.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.problems import Problem, check_many_details
from hillclimb.problems.verify import final_content


@dataclass
class Rollout:
    problem: Problem
    sample: int  # index among the samples of this problem
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    text: str = ""
    reasoning_text: str = ""
    content_text: str = ""
    finish_reason: str = "prompt_too_long"
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    logprobs: list[float] | None = None  # per completion token, under the sampling distribution
    forced: list[bool] | None = None  # per completion token: forced by the engine (no gradient)
    # expert ids each forwarded token was routed to, [tokens, n_moe, k] (an engine recording
    # routes): routing replay makes the training forward use them
    routes: Any = None
    think_budget: int | None = None  # the thinking budget the prompt carried (budget conditioning)
    # tokens generated inside think blocks, tags excluded (set by `rollouts`, which replays the
    # engine's think tracking over the sampled ids; None: estimate from reasoning_tokens)
    think_tokens: int | None = None
    # generated tokens outside think blocks (tags excluded), and how many of them the answer may
    # take (the reference final answer's tokens + slack): budget conditioning counts the excess
    # as thinking, so reasoning moved out of the block does not dodge the budget
    content_tokens: int | None = None
    answer_allowance: int = 0
    passed: bool = False
    status: str = "prompt_too_long"  # pass|fail|error|timeout|no_answer|truncated|prompt_too_long
    detail: str = ""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


ANSWER_SLACK = 4  # tokens beyond the reference answer's own (separators, end of turn)


def _think_tokens(
    tok: Any, prompt_ids: list[int], completion_ids: list[int]
) -> tuple[int, int] | None:
    """(generated tokens inside think blocks, generated tokens outside them), tags excluded,
    counted by the engine's own think tracking (`serve.budget.ThinkState`: the prompt may open
    the block; a completion may close it and then be truncated), so the count agrees with what
    a serve-time budget spends. None for a tokenizer without special-token lookup
    (`thinking_tokens` then estimates)."""
    from hillclimb.serve.budget import ThinkState

    if not hasattr(tok, "token_id"):
        return None
    st = ThinkState.for_prompt(tok, prompt_ids, None)
    inside = outside = 0
    for t in completion_ids:
        reasoning, tag = st.observe(t)
        inside += reasoning and not tag
        outside += not reasoning
    return inside, outside


def sample_seed(seed: int, problem_id: str, i: int) -> int:
    h = hashlib.sha256(f"hillclimb.rollout/{seed}/{problem_id}/{i}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def chat_prompt(tokenizer: Any, p: Problem, think_budget: int | None = None) -> list[int]:
    """The problem as one user turn; with `think_budget`, behind the budget note a
    budget-conditioned model is trained and served with (`tokenizer.specials.with_budget_note`)."""
    from hillclimb.tokenizer.specials import with_budget_note

    msgs = [{"role": "user", "content": p.prompt}]
    if think_budget is not None:
        msgs = with_budget_note(msgs, think_budget)
    return tokenizer.encode_chat(msgs, add_generation_prompt=True)


def reference_tokens(tokenizer: Any, p: Any) -> int:
    """Tokens of the reference assistant turn: `<think>` reasoning `</think>` + final answer.
    Without a tokenizer (a model behind a URL): its UTF-8 bytes, which bound the token count of
    any byte-level BPE from above."""
    text = f"<think>\n{p.reasoning}\n</think>\n\n{final_content(p)}"
    return (len(tokenizer.encode(text)) if tokenizer is not None else len(text.encode())) + 2


def cell_max_tokens(tokenizer: Any, items: list[Any], margin: float) -> int:
    longest = max(reference_tokens(tokenizer, p) for p in items)
    return int(math.ceil((longest * margin + 16) / 8) * 8)


def repeat_index(problems: list[Problem]) -> list[int]:
    """For each problem, how many times its id came earlier in the list (0 for a first)."""
    seen: dict[str, int] = {}
    out = []
    for p in problems:
        out.append(seen.get(p.id, 0))
        seen[p.id] = out[-1] + 1
    return out


def _forwarded_routes(routes: Any, r: Rollout) -> Any:
    """The recorded experts of the tokens the engine forwarded: every prompt and completion
    token but the last (sampled, never fed back). Why cut: with a drafter, a final verification
    step leaves the routes of rejected draft positions past the sequence, and `build_batch` would
    replay them at the last token's position, where plain decoding records none."""
    if routes is None:
        return None
    return routes[: max(0, len(r.prompt_ids) + len(r.completion_ids) - 1)]


def rollout_and_check(
    engine: Any,
    problems: list[Problem],
    *,
    n: int = 1,
    max_tokens: int | list[int] = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 32,
    logprobs: bool = False,
    check_timeout_s: float = 10.0,
    think_budgets: list[int | None] | None = None,
    budget_note: bool = True,
    force_budgets: list[int | None] | None = None,
    repeats: list[int] | None = None,
) -> list[Rollout]:
    """`n` samples of every problem, generated by `engine` and verified; problem-major order.

    `think_budgets` (one per problem, None = no budget): the prompt carries the budget note
    (`budget_note`; budget-conditioned models). `force_budgets` (one per problem, None = no cut):
    the engine closes the think block when that many thinking tokens are spent — the server's
    hard cap, the same budget as the note or, for a budget-reading model asked for a
    `reasoning_effort`, the effort table's backstop (`serving_chat.thinking_limits`)."""
    from hillclimb.serve.engine import SamplingParams

    if n < 1:
        raise HillclimbError(f"n (samples per problem) must be >= 1, got {n}")
    if batch_size < 1:
        raise HillclimbError(f"batch_size must be >= 1, got {batch_size}")
    caps = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(problems)
    if len(caps) != len(problems):
        raise HillclimbError(f"{len(problems)} problems but {len(caps)} max_tokens values")
    tbs = think_budgets if think_budgets is not None else [None] * len(problems)
    if len(tbs) != len(problems):
        raise HillclimbError(f"{len(problems)} problems but {len(tbs)} think_budgets")
    if any(b is not None and b < 1 for b in tbs):
        raise HillclimbError(f"thinking budgets must be >= 1 token, got {tbs}")
    caps_think = force_budgets if force_budgets is not None else [None] * len(problems)
    if len(caps_think) != len(problems):
        raise HillclimbError(f"{len(problems)} problems but {len(caps_think)} force_budgets")
    tok = engine.tokenizer
    out: list[Rollout] = []
    jobs: list[tuple[int, Any]] = []
    # a problem listed twice (the curriculum draws with replacement: logic tier 1 has 260
    # prompts) gets fresh samples the second time: seeded by the problem alone, its second
    # group repeated the first token for token, doubling that group's gradient with no new
    # information. The first occurrence keeps its seeds, so a call without repeats is unchanged.
    # `repeats` (one per problem) gives the occurrence index when the caller holds only a share
    # of the draw (DDP ranks), so every rank numbers repeats as one process would.
    reps = repeat_index(problems) if repeats is None else repeats
    if len(reps) != len(problems):
        raise HillclimbError(f"{len(problems)} problems but {len(reps)} repeats")
    for p, cap, tb, hard, k in zip(problems, caps, tbs, caps_think, reps, strict=True):
        ids = chat_prompt(tok, p, tb if budget_note else None)
        room = engine.max_context - len(ids)
        for i in range(n):
            r = Rollout(problem=p, sample=i, prompt_ids=ids, think_budget=tb)
            if room >= 2:
                sp = SamplingParams(
                    max_tokens=max(1, min(int(cap), room)),
                    temperature=temperature,
                    top_p=top_p,
                    top_k=top_k,
                    seed=sample_seed(seed, p.id, i + k * n),
                    policy_logprobs=logprobs,
                    thinking_token_budget=hard,
                )
                jobs.append((len(out), sp))
            out.append(r)
    for s in range(0, len(jobs), batch_size):
        chunk = jobs[s : s + batch_size]
        res = engine.generate_batch([out[j].prompt_ids for j, _ in chunk], [sp for _, sp in chunk])
        for (j, _), o in zip(chunk, res, strict=True):
            r = out[j]
            r.completion_ids = list(o.token_ids)
            r.text, r.reasoning_text, r.content_text = o.text, o.reasoning_text, o.content_text
            r.finish_reason = o.finish_reason
            r.completion_tokens, r.reasoning_tokens = o.completion_tokens, o.reasoning_tokens
            r.logprobs, r.forced = o.policy_logprobs, o.forced
            r.routes = _forwarded_routes(getattr(o, "routes", None), r)
            split = _think_tokens(tok, r.prompt_ids, r.completion_ids)
            if split is not None:
                r.think_tokens, r.content_tokens = split
                r.answer_allowance = len(tok.encode(final_content(r.problem))) + ANSWER_SLACK
    ran = [r for r in out if r.finish_reason != "prompt_too_long"]
    details = check_many_details(
        [r.problem for r in ran], [r.text for r in ran], timeout_s=check_timeout_s
    )
    for r, d in zip(ran, details, strict=True):
        r.passed = bool(d["passed"])
        r.status = d["status"]
        r.detail = d.get("detail", "")
        if not r.passed and r.truncated:
            r.status = "truncated"
    return out
