"""The generation engine: the one place tokens are generated (server, harness, RL, eval).

Design, in the order a request meets it:

- `submit` validates everything that can be wrong with a request (params, prompt length, context)
  and raises `HillclimbError` before anything is queued; then the request waits in a FIFO.
- A background loop thread (`start`) runs *steps*. Between steps requests join (their prompt is
  prefilled into a free KV-cache slot; several joiners share one right-padded forward with an
  attention mask) and leave (finish or cancel frees the slot): continuous batching. One decode
  step runs every running request in a single forward of shape [B, 1] over the model's
  `KVCache` with `slot_ids` and `last_only=True`.
- Each request samples with its own `torch.Generator`, so a seed fixes its output regardless of
  its batch neighbours. Stop strings, stop token ids/EOS, `max_tokens`, logprobs, the reasoning
  budget (`budget.py`) and incremental UTF-8-safe detokenization (`detok.py`) are handled per
  request on the host after each step.
- With a draft model (`draft=`), requests run speculative steps (`speculative.py`) while the
  engine is lightly loaded (≤ `spec_max_running` running requests); under heavier load they join
  the batched decode instead, which is where throughput comes from. The draft cache catches up
  lazily, so a request can switch between the two modes at any step.
- Speculation only pays when the draft is cheap next to the target and agrees with it often;
  neither is known in advance (it depends on the pair, the hardware and the text). So with
  `speculative=None` (the default) the engine measures: an EMA of a one-stream plain decode step
  (ms per token) and, per request, an EMA of ms per committed token of its speculative steps;
  when speculation is slower than plain decoding the engine decodes plainly for a back-off of
  16, 32, … 256 steps (doubling while it keeps losing) — or longer: at least the ms the
  drafting run lost over 2% of a plain step (`drafters.loss_bounded_wait`), so a losing draft
  costs at most 2% in the long run — then probes again. Greedy output is identical either
  way; a *seeded sampled* request never switches on timing (its random stream would then depend
  on load), and `speculative=True` forces speculation.
- Model-free drafting (`drafters.LookupDrafter`): prompt lookup over prompt + output, and over
  an OpenAI *predicted output* (`SamplingParams.prediction`) first. Each request has one draft
  source (`SamplingParams.drafter`, else "lookup" when a prediction is given, else the engine's
  `drafter`; an engine built with drafter="auto" chooses per request from its prompt,
  `drafter_choice.choose_drafter`: code to copy → lookup/suffix, else the draft model or none);
  the lookup decides when to draft from the request's own acceptance (a cost model in plain
  steps, back-off when it loses) instead of timings, and decodes plainly when nothing matches.
- Model-free drafts of several requests are verified together: one ragged forward over every
  row (drafts of different lengths filled up to the longest, plain rows included), per-row
  acceptance and cache rollback, when a measured cost model (`speculative.BatchVerifyCost`)
  says that beats a plain batched step — so drafting also helps under load. When it does not,
  the drafters of unforced rows are not asked for a back-off sized like the one-stream one: at
  least what the batched drafting run lost (dropped proposals, verifications slower than the
  tokens they committed, asking drafters that matched nothing) over 2% of a plain batched step.
- No request can crash the loop: an exception while handling one request ends that request with
  finish_reason "error"; a failed batched forward is retried per request so only the culprit
  fails; anything else fails the running requests and the loop continues.

Without `start()`, `generate`/`generate_batch` run the same steps inline on the calling thread,
which is what batch users (evaluation, RL rollouts) want. Everything runs under
`torch.inference_mode()`; dtype follows `load_model` (bf16 on CUDA, fp32 on CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hillclimb.errors import HillclimbError
from hillclimb.model.kv_cache import KVCache
from hillclimb.serve.budget import ThinkState, checkpoint_profile, resolve_budget
from hillclimb.serve.detok import IncrementalDetokenizer, StopMatcher
from hillclimb.serve.drafter_choice import AUTO, CHOICES, DrafterChoice, choose_drafter
from hillclimb.serve.drafters import (
    LOSS_BUDGET,
    WAIT_CAP,
    Drafter,
    LookupConfig,
    LookupDrafter,
    loss_bounded_wait,
)
from hillclimb.serve.fastpath import FastForward
from hillclimb.serve.healing import HealIndex, StripPrefix
from hillclimb.serve.prefix_cache import PrefixCache, PrefixEntry, common_prefix
from hillclimb.serve.sampling import (
    DRAFTERS,
    SamplingParams,
    choose_token,
    make_generator,
    policy_logprob,
    sample_rows,
    token_logprobs,
    warp_probs,
)
from hillclimb.serve.speculative import (
    BatchCostConfig,
    BatchVerifyCost,
    DraftRunner,
    SpecStats,
    accept_drafts,
)
from hillclimb.serve.suffix import OutputHistory, SuffixDrafter
from hillclimb.serve.tool_grammar import (
    ToolCallGrammar,
    ToolCallTracker,
    VocabTries,
    grammar_for,
)
from hillclimb.tokenizer.specials import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    IM_START,
    THINK_END,
    THINK_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
    TOOL_RESPONSE_END,
    TOOL_RESPONSE_START,
)

__all__ = ["Engine", "GenerationOutput", "RequestHandle", "SamplingParams", "TokenEvent"]


@dataclass
class TokenEvent:
    """One streamed step (may carry >1 token when speculative decoding commits several).

    `text` is the visible text delta: `<think>`/`</think>` tags are not part of it; instead
    `is_reasoning` says which side of the think block the delta belongs to (a step that crosses
    the boundary yields two events). Joining the reasoning deltas gives the raw reasoning, the
    others the content. Token ids ride on the first event of a step.

    `raw_text` is the same delta with the think tags put back where they were generated:
    joining it gives `GenerationOutput.text` (what `/v1/completions` returns). The tags cannot be
    recovered from `text` and `is_reasoning` alone: a tag with no visible text after it (the
    last token, or `</think>` forced by a budget at the length limit) or an empty think block
    changes no delta's side."""

    token_ids: list[int]
    text: str
    is_reasoning: bool
    logprobs: list[dict] | None
    finished: bool
    finish_reason: str | None
    raw_text: str | None = None


@dataclass
class GenerationOutput:
    request_id: str
    prompt_tokens: int
    token_ids: list[int]
    text: str  # full generated text with think tags, stop string and stop token removed
    reasoning_text: str  # inside <think>...</think>, tags and surrounding newlines removed
    content_text: str  # after </think> (or everything when there was no think block)
    completion_tokens: int
    reasoning_tokens: int
    finish_reason: str
    logprobs: list[dict] | None
    spec: dict | None
    timings: dict
    error: str | None = None  # message when finish_reason == "error" (extension)
    # with SamplingParams(policy_logprobs=True), one entry per token of `token_ids`: its log-prob
    # under the distribution it was sampled from (temperature, top-k, top-p applied; greedy: the
    # plain softmax), and whether the engine forced it (reasoning budget `</think>`) instead
    policy_logprobs: list[float] | None = None
    forced: list[bool] | None = None
    # with Engine(record_routing=True) and policy_logprobs: the expert ids each forwarded token
    # (prompt, then completion tokens fed back) was routed to, int16 [n_tokens, n_moe, top_k]
    routes: torch.Tensor | None = None
    # token healing (`healing.py`): how many prompt tokens were backed up (then `prompt_tokens`
    # counts the prompt without them and `completion_tokens` the tokens that re-cover them)
    healed_tokens: int = 0
    # prefix cache (`prefix_cache.py`): prompt tokens whose KV was reused instead of prefilled
    # (OpenAI's usage.prompt_tokens_details.cached_tokens)
    cached_tokens: int = 0
    # whether the request ever got a batch slot: one cancelled while queued processed no token
    # (the server charges it nothing, `Job.usage`)
    admitted: bool = True


_wakeups = threading.local()  # per engine thread: async consumers to wake after this step


@contextlib.contextmanager
def _batched_wakeups() -> Iterator[None]:
    """Collect the asyncio wake-ups of a whole engine step and send one per event loop at its
    end: with 32 streaming requests a step would otherwise cost 32 self-pipe writes and 32 loop
    wake-ups, instead of one."""
    pending: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
    _wakeups.pending = pending
    try:
        yield
    finally:
        _wakeups.pending = None
        for loop, evs in pending.items():
            with contextlib.suppress(RuntimeError):  # the consumer's loop is closed
                loop.call_soon_threadsafe(_set_all, evs)


def _set_all(evs: list[asyncio.Event]) -> None:
    for e in evs:
        e.set()


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    pending = getattr(_wakeups, "pending", None)
    for loop, aev in waiters:
        if pending is not None:
            pending.setdefault(loop, []).append(aev)
        else:
            with contextlib.suppress(RuntimeError):  # the consumer's loop is closed
                loop.call_soon_threadsafe(aev.set)


class RequestHandle:
    """A submitted request: stream its events (sync or async), cancel it, or wait for its result."""

    def __init__(self, request_id: str):
        self.request_id = request_id
        self._events: list[TokenEvent] = []
        self._cv = threading.Condition()
        self._done = False
        self._output: GenerationOutput | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._cancel = threading.Event()
        self._admitted = False  # set by the engine, under `_cv`, when it takes a batch slot

    # ---- producer side (engine) -------------------------------------------------------------
    def _push(self, ev: TokenEvent) -> None:
        with self._cv:
            self._events.append(ev)
            self._cv.notify_all()
            waiters = list(self._waiters)
        _wake(waiters)

    def _finish(self, out: GenerationOutput) -> None:
        with self._cv:
            self._output = out
            self._done = True
            self._cv.notify_all()
            waiters = list(self._waiters)
        _wake(waiters)

    # ---- consumer side ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[TokenEvent]:
        i = 0
        while True:
            with self._cv:
                while i >= len(self._events) and not self._done:
                    self._cv.wait()
                batch = self._events[i:]
                done = self._done
            yield from batch
            i += len(batch)
            if done and i >= len(self._events):
                return

    async def aiter(self) -> AsyncIterator[TokenEvent]:
        loop = asyncio.get_running_loop()
        aev = asyncio.Event()
        with self._cv:
            self._waiters.append((loop, aev))
        i = 0
        try:
            while True:
                with self._cv:
                    batch = self._events[i:]
                    done = self._done
                    if not batch and not done:
                        aev.clear()
                if batch:
                    for ev in batch:
                        yield ev
                    i += len(batch)
                    continue
                if done:
                    return
                await aev.wait()
        finally:
            with self._cv:
                if (loop, aev) in self._waiters:
                    self._waiters.remove((loop, aev))

    def cancel(self) -> None:
        """Ask the engine to stop this request; its slot is freed at the next step."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def never_admitted(self) -> bool:
        """After `cancel()`: True when the request never got a batch slot and never will (the
        engine checks the cancel under the same lock as it admits), so no token of its prompt
        was processed. Why: a server shutting down settles its queued requests without waiting
        for their outputs, and charged each its whole prompt (session 24)."""
        if not self.cancelled:
            raise RuntimeError("never_admitted() is only decided after cancel()")
        with self._cv:
            return not self._admitted

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> GenerationOutput:
        with self._cv:
            if not self._cv.wait_for(lambda: self._done, timeout=timeout):
                raise TimeoutError(f"request {self.request_id} not finished after {timeout} s")
            assert self._output is not None
            return self._output


@dataclass
class _Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    handle: RequestHandle
    gen: torch.Generator
    stop_ids: set[int]
    stopper: StopMatcher
    think: ThinkState
    detok: IncrementalDetokenizer | StripPrefix
    t_submit: float
    slot: int | None = None
    out_ids: list[int] = field(default_factory=list)
    visible: str = ""  # generated text without think tags
    raw: str = ""  # the same with the tags: what stop strings are searched in
    emitted: int = 0  # visible[:emitted] has been streamed
    modes: list[tuple[int, bool]] = field(default_factory=list)  # (visible offset, is_reasoning)
    tags: list[tuple[int, str]] = field(default_factory=list)  # (visible offset, tag text)
    tags_sent: int = 0  # r.tags[:tags_sent] have gone out in events' raw_text
    step_ids: list[int] = field(default_factory=list)
    step_logprobs: list[dict] = field(default_factory=list)
    logprobs: list[dict] | None = None
    policy_lp: list[float] | None = None  # log-prob of each token under the sampling distribution
    forced: list[bool] | None = None  # tokens the engine forced (reasoning budget), not sampled
    finish_reason: str | None = None
    error: str | None = None
    spec: SpecStats | None = None
    drafter: str = "none"  # "model" | "lookup" | "suffix" | "none" (resolved at submit)
    drafter_choice: str | None = None  # why, when the engine chose it ("auto")
    prediction: list[int] | None = None  # predicted-output token ids (lookup source)
    # predicted-output drafts verified: kept in the output / discarded (OpenAI's
    # accepted_prediction_tokens / rejected_prediction_tokens)
    pred_accepted: int = 0
    pred_rejected: int = 0
    spec_ms: float | None = None  # EMA of this request's speculative ms per committed token
    spec_steps: int = 0
    heal_left: bytes = b""  # token healing: removed prompt bytes the output must still reproduce
    banned: list[int] | None = None  # token ids never chosen (`Engine._banned_ids`)
    tools: ToolCallTracker | None = None  # schema-guided `<tool_call>` bodies (`tool_grammar`)
    healed_tokens: int = 0  # prompt tokens backed up by token healing
    reused: int = 0  # prompt tokens whose KV came from the prefix cache (not prefilled)
    share_logits: bool = False  # admitted with followers of the same prompt: keep its logits
    prefill_logits: torch.Tensor | None = None  # the last prompt token's logits (share_logits)
    t_admit: float = 0.0
    t_first: float = 0.0
    t_end: float = 0.0

    @property
    def pending(self) -> int:
        return self.out_ids[-1]

    @property
    def seq_len(self) -> int:
        return len(self.prompt_ids) + len(self.out_ids)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def mode_at(self, offset: int) -> bool:
        mode = self.modes[0][1]
        for off, m in self.modes:
            if off <= offset:
                mode = m
            else:
                break
        return mode


@dataclass
class _Draft:
    """One request's proposal this step, waiting for verification."""

    r: _Request
    d: Drafter
    drafts: list[int]
    q: torch.Tensor | None  # warped draft distributions (a draft model's sampled proposals)
    must: bool  # the batch may not cap or skip it (see `Engine._propose`)
    t0: float  # when proposing began (the model drafter's timing policy)


SPEC_BATCH = ("auto", "always", "off")


def _in_call(r: _Request) -> bool:
    """Whether request r's next token is drawn under the tool grammar: inside a schema-guided
    `<tool_call>` body, or a required call not opened yet (outside reasoning)."""
    t = r.tools
    return t is not None and (t.state is not None or (t.pending and not r.think.in_think))


def _must(r: _Request) -> bool:
    """Whether a request's drafts may never be capped or skipped by its batch: forced
    speculation, or a seeded sampled request (its random stream, spent verifying drafts, must
    not depend on what shares its batch)."""
    return r.params.speculative is True or (r.params.seed is not None and not r.params.greedy)


# Prompts up to this many tokens prefill alone through the compiled single-slot graph; longer
# ones (and groups) through FastForward's lean forward. Crossover on one core
# (`bench/serve_steps.py`): 40–80 tokens for code-flash-tiny, 32–48 for thinking-tiny, whose
# compiled graph contracts every token with its gathered expert weights.
_COMPILED_PREFILL_MAX = 40


def small_cpu_model(cfg: Any, device: torch.device | str) -> bool:
    """Whether decoding `cfg` on `device` wants one intra-op thread: a CPU model of width
    ≤ 512. Its decode steps are latency-bound small kernels, and the process's other work (the
    server's event loop; agent episodes' tool and test subprocesses) wants the other core:
    measured faster with 1 thread than 2 on 2 cores for the server at 1, 8 and 32 clients
    (`bench/serve_concurrency.py`) and for agent episodes at 1 and 8 (`bench/harness_episodes.py`;
    BENCHMARKS.md). The server and `running_for_episodes` apply it; batched RL rollouts without
    subprocesses keep the process's threads."""
    return torch.device(device).type == "cpu" and int(cfg.d_model) <= 512


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `n` inside the block (None: unchanged), restored
    after (process-wide: call it where nothing else in the process runs torch meanwhile)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def running_for_episodes(engine: Any, threads: int | None = None) -> Iterator[Any]:
    """`engine` started for agent episodes and stopped after, with `threads` intra-op threads
    meanwhile (None: one for a small CPU model, `small_cpu_model`, else unchanged) — the
    episodes' test subprocesses want the other core. Used by RL in the harness,
    `eval --suite harness` and `harness run`."""
    if threads is None and small_cpu_model(engine.cfg, engine.device):
        threads = 1
    engine.start()
    try:
        with intra_op_threads(threads):
            yield engine
    finally:
        engine.stop()


def _slot_range(slots: list[int]) -> tuple[int, int] | None:
    """(a, b) when slots are exactly a, a+1, …, b-1 (the fast path then reads the KV cache as
    slice views, and the compiled batched step applies), else None."""
    a = slots[0]
    return (a, a + len(slots)) if slots == list(range(a, a + len(slots))) else None


def check_request(
    prompt: str | list[int],
    params: SamplingParams,
    *,
    tokenizer: Any,
    vocab_size: int,
    max_context: int,
    name: str,
    has_draft: bool,
    default_drafter: str = "none",
) -> list[int]:
    """Validate a request before it is queued → its prompt token ids; `HillclimbError` with a
    user-facing message otherwise. A function of the model's shape only, so a server whose
    engines run in another process rejects bad input itself, at once."""
    if not isinstance(params, SamplingParams):
        raise HillclimbError("params must be a SamplingParams")
    params.validate()
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
    elif isinstance(prompt, list | tuple):
        ids = list(prompt)
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise HillclimbError("a token-id prompt must be a list of integers")
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise HillclimbError(f"prompt token ids out of range 0..{vocab_size - 1}: {bad[:5]}")
    else:
        raise HillclimbError(
            f"prompt must be a string or a list of token ids, got {type(prompt).__name__}"
        )
    if not ids:
        raise HillclimbError("prompt is empty")
    if len(ids) >= max_context:
        raise HillclimbError(
            f"prompt has {len(ids)} tokens; the context of {name} is {max_context}"
        )
    if len(ids) + params.max_tokens > max_context:
        raise HillclimbError(
            f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the context of "
            f"{name} ({max_context}); lower max_tokens to at most {max_context - len(ids)}"
        )
    # "auto" never resolves to a source the engine lacks (`choose_drafter`), so validation needs
    # no scan of the prompt: any model-free source stands in for its choice
    drafter = resolve_drafter(params, default_drafter, has_draft, auto="lookup")
    if params.speculative is True and drafter == "none":
        raise HillclimbError(f"speculative decoding requested but {name} has no draft model")
    if drafter == "model" and not has_draft:
        raise HillclimbError(f"drafter 'model' requested but {name} has no draft model")
    prediction_ids(params.prediction, tokenizer, vocab_size, max_context)
    return ids


def resolve_drafter(
    params: SamplingParams, default: str, has_draft: bool, auto: str | None = None
) -> str:
    """The draft source of one request: none when speculation is off for it, the one it names,
    lookup when it brings a prediction, else the engine's default — for an "auto" engine the
    per-request choice `auto` (`drafter_choice.choose_drafter`)."""
    if default == AUTO:
        default = auto or ("model" if has_draft else "none")
    if params.speculative is False:
        return "none"
    if params.drafter is not None:
        return params.drafter
    if params.prediction:
        return "suffix" if default == "suffix" else "lookup"  # both search a prediction first
    return default if default != "model" or has_draft else "none"


def prediction_ids(
    prediction: str | list[int] | None, tokenizer: Any, vocab_size: int, max_context: int
) -> list[int] | None:
    """A prediction as token ids (`HillclimbError` when out of range or longer than the
    context: no answer can repeat more than the context holds)."""
    if prediction is None:
        return None
    ids = tokenizer.encode(prediction) if isinstance(prediction, str) else list(prediction)
    if any(not 0 <= t < vocab_size for t in ids):
        raise HillclimbError(f"prediction token ids out of range 0..{vocab_size - 1}")
    if len(ids) > max_context:
        raise HillclimbError(
            f"prediction has {len(ids)} tokens, more than the model's context ({max_context})"
        )
    return ids or None


def _check_cache_fits(
    cfg: Any, slots: int, storage: int, device: torch.device, dtype: torch.dtype
) -> None:
    """Refuse a KV cache that cannot fit, up front and by name (`serve --max-batch 100000`
    was an allocation traceback, or the OOM killer)."""
    from hillclimb.model.accounting import available_memory, human_bytes

    per_slot = 2 * cfg.n_layers * cfg.n_kv_heads * storage * cfg.head_dim * dtype.itemsize
    have = available_memory(device)
    if slots * per_slot > 0.8 * have:
        fit = max(0, int(0.8 * have // per_slot))
        raise HillclimbError(
            f"a KV cache for {slots} batch slots of {storage} tokens needs "
            f"{human_bytes(slots * per_slot)}, but {human_bytes(have)} is free on {device}; "
            f"use at most {fit} slots (--max-batch) or a shorter context"
        )


class Engine:
    """Batched, continuously batched, optionally speculative generation over one model."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        device: str | torch.device | None = None,
        max_batch: int = 16,
        max_len: int | None = None,
        draft: Engine | torch.nn.Module | None = None,
        name: str | None = None,
        seed: int | None = None,
        gamma_init: int = 4,
        gamma_max: int = 12,
        spec_max_running: int = 4,
        cpu_threads: int | None = None,
        fast_path: bool = True,
        compile: bool = False,
        record_routing: bool = False,
        drafter: str | None = None,
        lookup: LookupConfig | None = None,
        token_healing: bool = False,
        prefix_cache: bool | None = None,
        prefix_min_tokens: int = 8,
        spec_batch: str = "auto",
        batch_cost: BatchCostConfig | None = None,
        thinking_profile: dict[str, Any] | None = None,
    ):
        if max_batch < 1:
            raise HillclimbError(f"max_batch must be >= 1, got {max_batch}")
        if isinstance(gamma_max, bool) or not isinstance(gamma_max, int) or gamma_max < 0:
            # the KV storage per slot is context + gamma_max + 2: a negative one left slots too
            # short for the context, and every long answer failed near its end with an overflow
            raise HillclimbError(f"gamma_max must be an integer >= 0, got {gamma_max!r}")
        if spec_batch not in SPEC_BATCH:
            raise HillclimbError(f"spec_batch must be one of {', '.join(SPEC_BATCH)}")
        if cpu_threads is not None:
            # Process-wide on purpose: small-batch decode is latency-bound, and on a busy CPU
            # intra-op threads spin against each other (measured 4 ms vs 50+ ms per token on the
            # micro model with 1 vs 2 threads on a loaded 2-core box).
            torch.set_num_threads(max(1, int(cpu_threads)))
        self.model = model
        model.eval()  # generation never runs in training mode (MoE statistics, dropout)
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.dtype = next(model.parameters()).dtype
        self.name = name or getattr(self.cfg, "family", None) or "model"
        # the checkpoint's measured thinking lengths: reasoning_effort low/medium follow them
        self.thinking_profile = thinking_profile
        ctx = self.cfg.max_seq_len if max_len is None else int(max_len)
        if ctx < 2:
            raise HillclimbError(f"max_len must be >= 2, got {ctx}")
        self.max_context = min(ctx, self.cfg.max_seq_len)
        if tokenizer.vocab_size > self.cfg.vocab_size:
            raise HillclimbError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the model vocabulary is {self.cfg.vocab_size}"
            )
        self.max_batch = max_batch
        self.gamma_max = gamma_max
        self._n_real = int(tokenizer.vocab_size)  # ids from here on are embedding padding
        # Storage per slot: the context plus room for one speculative overshoot.
        self._storage = self.max_context + gamma_max + 2
        _check_cache_fits(self.cfg, max_batch, self._storage, self.device, self.dtype)
        self.cache = KVCache(
            self.cfg, max_batch, self._storage, device=self.device, dtype=self.dtype
        )
        self.fast = FastForward(model, self._storage) if fast_path else None
        if record_routing:
            # RL routing replay: the eager steps log each token's experts per slot and cell
            if self.fast is None or compile:
                raise HillclimbError("record_routing needs the fast path and compile=False")
            self.fast.enable_route_log(max_batch)
        # the single-slot steps (`FastForward.decode_one` / `extend_one`) are written for CPU fp32
        self._fast_one = self.fast is not None and self.fast.lean
        # `compile`: the single-stream decode step compiled by inductor (CPU fp32; a failure
        # keeps the eager step and says why in `compile_error`)
        self.compiled = False
        self.compiled_batch = False
        self.compile_error: str | None = None
        if compile and self._fast_one:
            assert self.fast is not None
            # T ≥ 2 steps too: short prefills, and speculative verification (γ + 1 tokens)
            progress = self._compile_progress(3 if max_batch >= 2 else 2)
            self.compiled = self.fast.enable_compile(
                multi=True, cache=self.cache, progress=progress
            )
            # and the batched one-token step over contiguous slots (continuous batching)
            if self.compiled and max_batch >= 2:
                self.compiled_batch = self.fast.enable_compile_batch(self.cache, progress)
            self.compile_error = self.fast.compile_error
        elif compile:
            self.compile_error = "the compiled step is for CPU fp32 models with the fast path"
        self._holes = [False] * max_batch  # slot prefilled with right padding (cells to mask)
        self._lock = threading.RLock()  # serialises forwards over this model and the cache
        # called by the loop thread after each step (the engine process sends the step's
        # events to the server in one message)
        self.after_step: Callable[[], None] | None = None
        self._cv = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._running: list[_Request] = []
        self._free = list(range(max_batch))
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._rng = random.Random(
            seed if seed is not None else int.from_bytes(os.urandom(8), "little")
        )
        self._think_ids = (tokenizer.token_id(THINK_START), tokenizer.token_id(THINK_END))
        self._totals = {
            "requests": 0,
            "finished": 0,
            "errors": 0,
            "cancelled": 0,  # cancelled_queued included
            "cancelled_queued": 0,  # ended before a batch slot: not finished, no token run
            "prompt_tokens": 0,  # of requests that got a slot (a queued one processed none)
            "completion_tokens": 0,
            "reasoning_tokens": 0,
            "decode_steps": 0,
            "prefill_forwards": 0,
            "prefill_tokens": 0,  # prompt tokens fed to prefill forwards (reused ones are not)
            "spec_backoffs": 0,
            "batched_steps": 0,
            "batched_compiled_steps": 0,
            "verify_steps": 0,  # batched verification forwards (model-free drafts, ragged)
            "verify_rows": 0,  # rows in them (plain rows included)
            "verify_declined": 0,  # steps with drafts the cost model sent to plain decoding
        }
        self._plain_ms: float | None = None  # EMA of a one-stream plain decode step (ms)
        self._plain_count = 0  # plain decode steps so far (the back-off clock)
        self._spec_probe_at = 0  # auto speculation: decode plainly until _plain_count gets here
        self._spec_backoff = 16
        # ms the draft model's speculative steps lost against the plain yardstick since the
        # last back-off (never below zero); it sizes the next back-off (`_observe_spec`)
        self._spec_debt_ms = 0.0
        self.spec_loss_budget = LOSS_BUDGET
        self._spec_total = SpecStats()
        # the most running requests at which the draft *model* speculates (per request: its
        # drafting costs a draft forward per token); with spec_batch="off" the model-free
        # drafters obey it too (the behaviour before batched verification)
        self.spec_max_running = spec_max_running
        # model-free drafts of several rows: one ragged verification forward, when the measured
        # cost model says it beats a plain batched step ("auto"), on every draft ("always"), or
        # never ("off": per-request verification up to spec_max_running running requests)
        self.spec_batch = spec_batch
        self.batch_cost = BatchVerifyCost(batch_cost)
        # after a declined batch, the model-free drafters of unforced rows are not even asked
        # for this many steps (proposing 32 rows costs ≈20% of a plain step of a tiny model):
        # 4, 8, … 64 steps while verification keeps losing, reset when a verification pays —
        # or longer: at least the loss of the drafting run before it over `spec_loss_budget`
        # (`_observe_batch`)
        self._batch_skip = 0
        self._batch_backoff = 4
        # plain batched steps that the policy's batched drafting lost since the last back-off
        # (proposals dropped by a decline, verifications slower than the tokens they committed)
        self._batch_debt = 0.0
        # model-free drafting (prompt lookup / predictions): per-slot n-gram indexes, no cache
        self.lookup = LookupDrafter(max_batch, lookup, gamma_max)
        self._lookup_total = SpecStats()
        # suffix drafting: the lookup plus a history of this engine's recent outputs
        # (`suffix.py`); the history is fed only once a request has used it
        self.suffix = SuffixDrafter(max_batch, lookup, gamma_max, history=OutputHistory())
        self._suffix_total = SpecStats()
        self._suffix_used = False
        self.draft: DraftRunner | None = None
        self._draft_shared = False  # the draft is another engine's model (it syncs its own)
        if draft is not None:
            dfast = None
            if isinstance(draft, Engine):
                dmodel, dlock = draft.model, draft._lock
                self._draft_shared = True
                if draft.fast is not None and draft.fast.max_len >= self._storage:
                    dfast = draft.fast  # the draft engine's (possibly compiled) steps
                if draft.tokenizer.vocab_size != tokenizer.vocab_size:
                    raise HillclimbError(
                        "draft and target tokenizers differ; speculative decoding needs one vocabulary"
                    )
            else:
                dmodel, dlock = draft, None
            if dmodel.cfg.vocab_size != self.cfg.vocab_size:
                raise HillclimbError(
                    f"draft vocabulary ({dmodel.cfg.vocab_size}) differs from the target's ({self.cfg.vocab_size})"
                )
            self.draft = DraftRunner(
                dmodel,
                max_batch,
                self._storage,
                self.device,
                lock=dlock,
                gamma_init=gamma_init,
                gamma_max=gamma_max,
                fast_path=fast_path,
                fast=dfast,
                compile=compile,
                real_vocab=self._n_real,
            )
        if drafter is None:
            drafter = "model" if self.draft is not None else "none"
        if drafter not in (*DRAFTERS, AUTO):
            raise HillclimbError(
                f"drafter must be one of {', '.join((*DRAFTERS, AUTO))}, got {drafter!r}"
            )
        if drafter == "model" and self.draft is None:
            raise HillclimbError("drafter 'model' needs a draft model (draft=...)")
        # the draft source of requests that name none and bring no prediction
        self.default_drafter = drafter
        # "auto": requests per chosen source and per reason (`drafter_choice.choose_drafter`)
        self._auto_choices: dict[str, int] = dict.fromkeys(CHOICES, 0)
        self._auto_reasons: dict[str, int] = {}
        self._tool_response_id = _special_id(tokenizer, TOOL_RESPONSE_START, self.cfg.vocab_size)
        # token healing for requests that leave `token_healing` None (`healing.py`); off by
        # default so batch users (RL, harness, evaluation) see unchanged prompts; the server
        # turns it on for code-flash
        self.token_healing = bool(token_healing)
        self._heal_index: HealIndex | None = None
        self._grammars: OrderedDict[str, ToolCallGrammar] = OrderedDict()  # `tool_grammar`
        self._vocab_tries: VocabTries | None = None
        self._grammar_lock = threading.Lock()
        self._fim_middle, self._fim_banned = _fim_tokens(self.tokenizer, self.cfg.vocab_size)
        # prefix cache (`prefix_cache.py`): None = on unless HILLCLIMB_PREFIX_CACHE is 0/off
        # (how `hillclimb serve --no-prefix-cache` reaches the engine process)
        if prefix_cache is None:
            env = os.environ.get("HILLCLIMB_PREFIX_CACHE", "1").strip().lower()
            prefix_cache = env not in ("0", "false", "off", "no")
        self.prefix: PrefixCache | None = (
            PrefixCache(min_tokens=max(1, int(prefix_min_tokens))) if prefix_cache else None
        )

    @property
    def heal_index(self) -> HealIndex:
        """The tokenizer's healing tables, built on first use (8 ms for the 2k tiny vocabulary)."""
        if self._heal_index is None:
            self._heal_index = HealIndex(self.tokenizer, self.cfg.vocab_size)
        return self._heal_index

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        max_batch: int = 16,
        max_len: int | None = None,
        draft: str | Path | Engine | None = None,
        name: str | None = None,
        **kw: Any,
    ) -> Engine:
        from hillclimb.model.checkpoint import load_model
        from hillclimb.tokenizer.io import load_tokenizer

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kw.setdefault("thinking_profile", checkpoint_profile(path))
        model = load_model(path, device=dev)
        tok = load_tokenizer(path)
        d: Engine | torch.nn.Module | None
        if draft is None or isinstance(draft, Engine):
            d = draft
        else:
            d = load_model(draft, device=dev)
            dtok = load_tokenizer(draft)
            if dtok.vocab_size != tok.vocab_size:
                raise HillclimbError(f"draft {draft} has a different tokenizer than {path}")
        return cls(
            model, tok, device=dev, max_batch=max_batch, max_len=max_len, draft=d, name=name, **kw
        )

    # ---- weights ----------------------------------------------------------------------------
    def sync_weights(self) -> dict[str, Any]:
        """Make generation see the model's current weights after they changed in place (RL: an
        optimizer step on the same module). The fast path's derived tensors (fused QKV, expert
        copies, bias snapshots) are rewritten in place so compiled steps stay valid; the model
        goes back to eval mode. Call it with no request running. Returns what it did and how
        long it took (`seconds`, `in_place`: False when a structural change forced recompiles)."""
        t0 = time.perf_counter()
        with self._lock:
            if self._running:
                raise HillclimbError("sync_weights needs an idle engine (requests are running)")
            self.model.eval()
            in_place = True
            if self.fast is not None:
                in_place = self.fast.sync()
            if self.draft is not None and self.draft.fast is not None and not self._draft_shared:
                self.draft.model.eval()
                self.draft.fast.sync()
            self._drop_prefix()  # cached KV was computed with the old weights
        return {"seconds": time.perf_counter() - t0, "in_place": in_place}

    # ---- request intake ----------------------------------------------------------------------
    def _make_request(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None,
        handle: RequestHandle | None = None,
    ) -> _Request:
        ids = check_request(
            prompt,
            params,
            tokenizer=self.tokenizer,
            vocab_size=self.cfg.vocab_size,
            max_context=self.max_context,
            name=self.name,
            has_draft=self.draft is not None,
            default_drafter=self.default_drafter,
        )
        stop_ids = set(params.stop_token_ids or [])
        if not params.ignore_eos:
            stop_ids |= set(self.tokenizer.stop_ids)
        seed = params.seed if params.seed is not None else self._rng.getrandbits(63)
        budget = resolve_budget(
            params.reasoning_effort,
            params.thinking_token_budget,
            self.max_context,
            self.thinking_profile,
        )
        heal = params.token_healing if params.token_healing is not None else self.token_healing
        plan = self.heal_index.plan(ids) if heal else None
        detok: IncrementalDetokenizer | StripPrefix = IncrementalDetokenizer(self.tokenizer.decode)
        if plan is not None:
            ids = plan.ids
            detok = StripPrefix(detok, plan.text)
        think = ThinkState.for_prompt(self.tokenizer, ids, budget)
        rid = request_id or f"req-{uuid.uuid4().hex[:16]}"
        req = _Request(
            request_id=rid,
            prompt_ids=ids,
            params=params,
            handle=handle if handle is not None else RequestHandle(rid),
            gen=make_generator(seed, self.device),
            stop_ids=stop_ids,
            stopper=StopMatcher(params.stop),
            think=think,
            detok=detok,
            t_submit=time.perf_counter(),
        )
        if plan is not None:
            req.heal_left, req.healed_tokens = plan.removed, plan.n_removed
        req.banned = self._banned_ids(ids, params)
        if params.guided_tools:
            req.tools = ToolCallTracker(
                self.tool_grammar(params.guided_tools), require=params.require_tool_call
            )
        req.modes.append((0, think.in_think))
        if params.logprobs is not None:
            req.logprobs = []
        if params.policy_logprobs:
            req.policy_lp, req.forced = [], []
        choice = self._auto_choice(prompt, ids, params)
        req.drafter = resolve_drafter(
            params,
            self.default_drafter,
            self.draft is not None,
            auto=choice.drafter if choice is not None else None,
        )
        if choice is not None:
            req.drafter_choice = choice.reason
            self._auto_choices[req.drafter] = self._auto_choices.get(req.drafter, 0) + 1
            self._auto_reasons[choice.reason] = self._auto_reasons.get(choice.reason, 0) + 1
        if req.drafter != "none":
            req.spec = SpecStats()
        if req.drafter in ("lookup", "suffix"):
            self._suffix_used = self._suffix_used or req.drafter == "suffix"
            req.prediction = prediction_ids(
                params.prediction, self.tokenizer, self.cfg.vocab_size, self.max_context
            )
        return req

    def _auto_choice(
        self, prompt: str | list[int], ids: list[int], params: SamplingParams
    ) -> DrafterChoice | None:
        """This request's draft source under drafter="auto"; None when the engine does not
        choose (another default) or the request decides (it names a drafter, brings a
        prediction, or turns speculation off)."""
        if self.default_drafter != AUTO or params.drafter is not None or params.prediction:
            return None
        if params.speculative is False:
            return None
        text = prompt if isinstance(prompt, str) else self.tokenizer.decode(ids)
        marks = set(ids)
        return choose_drafter(
            text,
            fim=self._fim_middle is not None and self._fim_middle in marks,
            tool_observation=self._tool_response_id is not None and self._tool_response_id in marks,
            has_model=self.draft is not None,
            forced=params.speculative is True,
        )

    def detach_draft(self) -> None:
        """Serve without the draft model from now on — what `Engine(draft=None)` would have
        built (no draft runner; a "model" default becomes "none"), without building and
        compiling the engine again: `hillclimb serve` builds thinking with its draft, measures
        the pair (`host.choose_draft`) and drops a draft that cannot pay. Running requests that
        drafted with it decode plainly from their next step."""
        with self._lock:
            runner, self.draft = self.draft, None
            self._draft_shared = False
            if self.default_drafter == "model":
                self.default_drafter = "none"
            for r in self._running:
                if r.drafter == "model":
                    r.drafter = "none"
            if runner is not None:
                for s in range(self.max_batch):
                    runner.reset(s)

    def _compile_progress(self, total: int) -> Callable[[str, float], None]:
        """A line per compiled graph (which model, which graph, seconds): a cold start on a
        loaded machine compiles for minutes, and one line before it all looked hung."""
        count = [0]

        def report(what: str, seconds: float) -> None:
            count[0] += 1
            logging.getLogger("hillclimb.serve").info(
                "%s: compiled the %s in %.1f s (%d of %d)", self.name, what, seconds,
                count[0], total,
            )  # fmt: skip

        return report

    def submit(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        request_id: str | None = None,
        handle: RequestHandle | None = None,
    ) -> RequestHandle:
        """Queue a request for the background loop (thread-safe). Needs `start()`. `handle`:
        a `RequestHandle` (subclass) to receive the events instead of a new one (the engine
        process forwards them to the server this way)."""
        if self._thread is None or not self._thread.is_alive():
            raise HillclimbError("engine loop not running: call Engine.start() before submit()")
        req = self._make_request(prompt, params, request_id, handle)
        with self._cv:
            self._waiting.append(req)
            self._totals["requests"] += 1
            self._cv.notify_all()
        return req.handle

    def generate(self, prompt: str | list[int], params: SamplingParams) -> GenerationOutput:
        return self.generate_batch([prompt], params)[0]

    def generate_batch(
        self, prompts: list[str | list[int]], params: SamplingParams | list[SamplingParams]
    ) -> list[GenerationOutput]:
        plist = params if isinstance(params, list) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise HillclimbError(f"{len(prompts)} prompts but {len(plist)} SamplingParams")
        reqs = [self._make_request(p, sp, None) for p, sp in zip(prompts, plist, strict=True)]
        if self._thread is not None and self._thread.is_alive():
            with self._cv:
                self._waiting.extend(reqs)
                self._totals["requests"] += len(reqs)
                self._cv.notify_all()
            return [r.handle.result() for r in reqs]
        with self._lock:
            with self._cv:
                self._waiting.extend(reqs)
                self._totals["requests"] += len(reqs)
            with torch.inference_mode():
                while not all(r.finished for r in reqs):
                    try:
                        self._step()
                    except Exception as exc:  # same policy as the loop: fail, don't wedge
                        self._fail_all(exc)
        return [r.handle.result() for r in reqs]

    # ---- loop --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; queued and running requests end with finish_reason "cancelled"."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with self._lock:
            for r in list(self._running) + list(self._waiting):
                self._end(r, "cancelled")
            self._waiting.clear()
            self._retire()
        if self.after_step is not None:
            self.after_step()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._running:
                    self._cv.wait(timeout=0.5)
                if self._stopping:
                    return
            try:
                with self._lock, torch.inference_mode(), _batched_wakeups():
                    self._step()
            except Exception as exc:  # last line of defence: never let the loop die
                self._fail_all(exc)
            if self.after_step is not None:
                self.after_step()

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            for r in list(self._running):
                self._fail(r, exc)
            self._retire()
            self._drop_prefix()
            self.cache.reset()
            for s in range(self.max_batch):
                if self.draft is not None:
                    self.draft.reset(s)
                self.lookup.reset(s)
                self.suffix.reset(s)

    # ---- one step (callers hold the lock and run under torch.inference_mode) ------------------
    def _step(self) -> None:
        # 1. cancellations
        with self._cv:
            for r in list(self._waiting):
                if r.handle.cancelled:
                    self._waiting.remove(r)
                    self._end(r, "cancelled")
        for r in self._running:
            if r.handle.cancelled and not r.finished:
                self._end(r, "cancelled")
        self._retire()
        # 2. admission: prefill joiners into free slots (reusing cached prefixes)
        joiners = self._admit()
        if joiners:
            self._retire()
        # 3. decode: draft-model steps per request at light load; model-free proposals verified
        # together (`_verify_rows`); the rest in one plain batched step
        active = [r for r in self._running if not r.finished and r not in joiners]
        if not active:
            return
        plain: list[_Request] = []
        rows: list[_Draft] = []  # model-free proposals, verified together below
        free_ms = 0.0  # what asking the model-free drafters of unforced rows cost this step
        model_spec = len(self._running) <= self.spec_max_running
        free_spec = self.spec_batch != "off" or model_spec
        skip = self._batch_skip > 0 and len(active) > 1 and self.spec_batch == "auto"
        if skip:
            self._batch_skip -= 1
        for r in active:
            d = self._drafter(r)
            # a must row (forced, or seeded and sampled) drafts whatever the load: a seeded
            # sample that speculated alone and decoded plainly in a crowd drew other tokens
            must = _must(r)
            ok = (model_spec if d is self.draft else free_spec and not skip) or must
            g = self._spec_gamma(r, d) if d is not None and ok and self._spec_wanted(r) else 0
            if g >= 1:
                assert d is not None
                try:
                    if d is self.draft:  # per request: drafting needs the draft's forwards
                        if self._spec_step(r, d, g):
                            continue
                    else:
                        t_ask = time.perf_counter()
                        row = self._propose(r, d, g)
                        if not must:
                            free_ms += (time.perf_counter() - t_ask) * 1e3
                        if row is not None:
                            rows.append(row)
                            continue
                except Exception as exc:
                    self._fail(r, exc)
                    continue
            plain.append(r)
        if rows:
            plain = self._verify_rows(rows, plain, free_ms)
        elif free_ms > 0 and len(active) > 1 and self.spec_batch == "auto":
            self._observe_unmatched(free_ms, len(active))
        if plain:
            self._decode(plain)
        self._totals["decode_steps"] += 1
        self._retire()

    def _retire(self) -> None:
        keep = []
        for r in self._running:
            if r.finished:
                if r.slot is not None:
                    if self.draft is not None:
                        self.draft.reset(r.slot)
                    self.lookup.reset(r.slot)
                    self.suffix.reset(r.slot)
                    if self._suffix_used and r.finish_reason in ("stop", "length"):
                        # only drafts for the same cache scope may use it (`suffix.py`)
                        self.suffix.remember(r.out_ids, r.params.cache_scope)
                    if not self._keep_prefix(r):
                        self._free_slot(r.slot)
                    r.slot = None
            else:
                keep.append(r)
        self._running = keep

    def _free_slot(self, slot: int) -> None:
        self.cache.reset([slot])
        self._free.append(slot)
        self._free.sort()
        self._holes[slot] = False

    def _keep_prefix(self, r: _Request) -> bool:
        """Keep a finished request's KV as a prefix-cache entry. Between steps a slot holds
        prompt + output minus the pending token; a request that ended inside a speculative step
        may hold rejected drafts past that, which are cut. Failed requests are not kept (a
        failed forward may have left cells half written)."""
        if self.prefix is None or r.finish_reason == "error" or r.slot is None:
            return False
        n = min(int(self.cache.seen[r.slot]), r.seq_len - 1)
        if n < self.prefix.min_tokens:
            return False
        self.cache.truncate(r.slot, n)
        return self.prefix.put(r.slot, (r.prompt_ids + r.out_ids)[:n], r.params.cache_scope)

    def _drop_prefix(self) -> None:
        """Forget every cached prefix (the weights changed, or a step failed)."""
        if self.prefix is not None:
            for slot in self.prefix.clear():
                self._free_slot(slot)

    # ---- admission and prefix reuse ----------------------------------------------------------
    def _admit(self) -> list[_Request]:
        """Take waiting requests into slots and prefill them → the joiners.

        With the prefix cache each joiner first looks for the longest prefix of its prompt whose
        KV already exists: a cached entry (adopted or copied), a running request's slot (copied),
        or another joiner of this step (copied after that one's prefill; with an identical
        prompt its last logits are reused too, so a GRPO group of n costs one prefill). Planned
        copies pin their source entry so no later joiner evicts it first (`prefix_cache.py`).
        Only the remaining tokens are prefilled."""
        pc = self.prefix
        joiners: list[_Request] = []
        leaders: list[_Request] = []  # joiners prefilled in the first phase
        followers: list[tuple[_Request, _Request, int]] = []  # (joiner, leader, n)
        # (request, source slot, n, kind, pinned entry to release after the copy)
        copies: list[tuple[_Request, int, int, str, PrefixEntry | None]] = []
        dropped: list[_Request] = []  # cancelled since the step's sweep: never admitted
        with self._cv:
            while self._waiting:
                r = self._waiting[0]
                # under the handle's lock: a cancel either comes first (never admitted) or
                # finds the request admitted (`RequestHandle.never_admitted`, billing)
                with r.handle._cv:
                    if r.handle.cancelled:
                        self._waiting.popleft()
                        dropped.append(r)
                        continue
                    plan = self._plan_reuse(r, leaders) if pc is not None else None
                    slot = self._claim_slot(r, plan)
                    if slot is None:
                        break
                    r.handle._admitted = True
                self._waiting.popleft()
                r.slot = slot
                joiners.append(r)
                if plan is None:
                    leaders.append(r)
                    continue
                kind, src, n = plan
                if kind == "batch":
                    assert isinstance(src, _Request)
                    src.share_logits |= n == len(r.prompt_ids)
                    followers.append((r, src, n))
                    continue
                leaders.append(r)
                if isinstance(src, PrefixEntry):
                    adopted = src.slot == slot
                    copies.append(
                        (r, src.slot, n, "adopted" if adopted else kind, None if adopted else src)
                    )
                else:
                    assert src.slot is not None
                    copies.append((r, src.slot, n, kind, None))
        for r in dropped:
            self._end(r, "cancelled")
        if not joiners:
            return joiners
        for r in joiners:
            assert r.slot is not None
            r.t_admit = time.perf_counter()
            # running first: a joiner that fails below is retired like any other, its slot
            # freed (a raising drafter.start left the slot taken and the request unfinished)
            self._running.append(r)
            if pc is not None:
                pc.stats.lookups += 1
                pc.stats.prompt_tokens += len(r.prompt_ids)
            if r.drafter in ("lookup", "suffix"):
                d = self.lookup if r.drafter == "lookup" else self.suffix
                try:
                    d.start(
                        r.slot, len(r.prompt_ids), r.prediction, forced=r.params.speculative is True
                    )
                    if d is self.suffix:
                        self.suffix.set_scope(r.slot, r.params.cache_scope)
                except Exception as exc:
                    self._fail(r, exc)
        for r, src, n, kind, pinned in copies:
            if not r.finished:
                self._reuse(r, src, n, kind)
            if pinned is not None and pc is not None:
                pc.unpin(pinned.slot)
        self._prefill([r for r in leaders if not r.finished])
        rest: list[_Request] = []
        for r, lead, n in followers:
            if r.finished:
                continue
            if lead.slot is None or lead.finish_reason == "error":
                rest.append(r)  # the leader's KV is not there: prefill in full
                continue
            assert pc is not None
            if not self._reuse(r, lead.slot, n, "batch"):
                rest.append(r)
                continue
            pc.stats.shared_in_batch += 1
            if n == len(r.prompt_ids) and lead.prefill_logits is not None:
                pc.stats.shared_logits += 1
                self._after_prefill(r, lead.prefill_logits, time.perf_counter())
            else:
                rest.append(r)
        for lead in leaders:
            lead.prefill_logits = None
        if rest:
            self._prefill(rest)
        return joiners

    def _plan_reuse(
        self, r: _Request, leaders: list[_Request]
    ) -> tuple[str, PrefixEntry | _Request, int] | None:
        """The best KV source for r's prompt: ("cached", entry, n), ("running", request, n) or
        ("batch", joiner, n); None below the cache's minimum. At least the last prompt token is
        always prefilled (its logits give the first token) unless a joiner has the same prompt.
        Only sources of r's cache scope count (`SamplingParams.cache_scope`): reused KV shows in
        `cached_tokens` and the time to first token, so another account's must never match."""
        assert self.prefix is not None
        p = r.prompt_ids
        limit = len(p) - 1
        scope = r.params.cache_scope
        entry, n = self.prefix.best(p, limit, scope)
        best: tuple[str, PrefixEntry | _Request, int] | None = None
        if entry is not None:
            best = ("cached", entry, n)
        best_n = max(n, self.prefix.min_tokens - 1)
        for q in self._running:
            if q.finished or q.slot is None or q.params.cache_scope != scope:
                continue
            m = common_prefix(q.prompt_ids, p, limit)
            if m == len(q.prompt_ids) and len(q.out_ids) > 1:  # its fed-back output, too
                m += common_prefix(q.out_ids[:-1], p[m:], limit - m)
            m = min(m, int(self.cache.seen[q.slot]))
            if m > best_n:
                best, best_n = ("running", q, m), m
        for q in leaders:
            if q.params.cache_scope != scope:
                continue
            m = common_prefix(q.prompt_ids, p, len(p))
            if m == len(p) and len(q.prompt_ids) != len(p):
                m = limit  # its last logits are not this prompt's
            if m > best_n:
                best, best_n = ("batch", q, m), m
        return best

    def _claim_slot(
        self, r: _Request, plan: tuple[str, PrefixEntry | _Request, int] | None
    ) -> int | None:
        """A slot for r: the cached entry it reuses when adopting costs nothing else (the match
        covers the whole entry, or it is the eviction victim anyway), else the lowest empty slot,
        else the least-recently-used unpinned entry (evicted). None when there is none."""
        pc = self.prefix
        if plan is not None and plan[0] == "cached" and pc is not None:
            e = plan[1]
            assert isinstance(e, PrefixEntry)
            if e.refs == 0 and (
                plan[2] >= len(e.tokens) or (not self._free and pc.victim() == e.slot)
            ):
                pc.take(e.slot)
                return e.slot
            pc.pin(e.slot)  # no later joiner may evict it before the copy
            pc.touch(e.slot)
        if self._free:
            return self._free.pop(0)  # lowest free slot (kept sorted): compact slots
        v = pc.victim() if pc is not None else None
        if v is None:
            if plan is not None and plan[0] == "cached" and pc is not None:
                pc.unpin(plan[1].slot)  # type: ignore[union-attr]
            return None
        assert pc is not None
        pc.evict(v)
        self.cache.reset([v])
        self._holes[v] = False
        return v

    def _reuse(self, r: _Request, src: int, n: int, kind: str) -> bool:
        """Give r's slot the first n tokens of KV of slot src (densely; src may be r's own slot:
        an adopted entry is cut and compacted in place), and their recorded routes, so the
        routes RL replays are the ones that produced this KV. A failed copy leaves r an empty
        slot to prefill in full (False)."""
        assert r.slot is not None and self.prefix is not None
        try:
            cells = self.cache.copy_prefix(src, r.slot, n)
            fast = self.fast
            if fast is not None and fast.routes is not None:
                fast.routes[r.slot, :n] = fast.routes[src, cells.cpu()]
        except Exception:
            self.cache.reset([r.slot])
            self._holes[r.slot] = False
            return False
        self._holes[r.slot] = False
        r.reused = n
        st = self.prefix.stats
        st.hits += 1
        st.reused_tokens += n
        if kind == "cached":
            st.copied += 1
        elif kind == "running":
            st.from_running += 1
        return True

    # ---- prefill -----------------------------------------------------------------------------
    def _prefill(self, reqs: list[_Request]) -> None:
        """Prefill joiners: groups whose padded length still leaves room share one forward."""

        def rem(r: _Request) -> int:  # tokens to prefill (after any reused prefix)
            return len(r.prompt_ids) - r.reused

        reqs = sorted(reqs, key=rem)
        groups: list[list[_Request]] = []
        for r in reqs:
            if groups:
                g = groups[-1]
                T = rem(r)  # sorted: the longest so far
                if (
                    all(
                        x.reused + T + x.params.max_tokens + self.gamma_max + 2 <= self._storage
                        for x in g
                    )
                    and sum(rem(x) for x in g) + T <= 8192
                ):
                    g.append(r)
                    continue
            groups.append([r])
        for g in groups:
            t0 = time.perf_counter()
            try:
                logits = self._prefill_forward(g)
            except Exception:
                if len(g) == 1:
                    self._fail(g[0], _last_exc())
                    continue
                for r in g:  # retry one by one so only a culprit fails
                    self._rewind(r)
                    try:
                        lg = self._prefill_forward([r])
                    except Exception as exc:
                        self._fail(r, exc)
                        continue
                    self._after_prefill(r, lg[0], t0)
                continue
            for i, r in enumerate(g):
                self._after_prefill(r, logits[i], t0)

    def _rewind(self, r: _Request) -> None:
        """Undo a failed prefill of r: its slot keeps only the reused prefix (if any)."""
        if r.reused:
            self.cache.truncate(r.slot, r.reused)
        else:
            self.cache.reset([r.slot])

    def _prefill_forward(self, g: list[_Request]) -> torch.Tensor:
        """The last prompt token's logits of each joiner [B, V] (real tokens only). Counted
        once the forward has returned: a group whose forward raised is retried one by one
        (`_prefill`), and its tokens were fed to no forward that processed them — counted
        before, they were counted twice (`hillclimb_engine_prefill_tokens_total`)."""
        logits = self._real_vocab(self._prefill_logits(g))
        self._totals["prefill_forwards"] += 1
        self._totals["prefill_tokens"] += sum(len(r.prompt_ids) - r.reused for r in g)
        return logits

    def _prefill_logits(self, g: list[_Request]) -> torch.Tensor:
        # a reused prefix is already in the slot (dense, cursor = reused): feed the rest
        todo = [r.prompt_ids[r.reused :] for r in g]
        T = max(len(x) for x in todo)
        ids = torch.zeros(len(g), T, dtype=torch.long)
        mask = torch.zeros(len(g), T, dtype=torch.long)
        for i, x in enumerate(todo):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        slots = torch.tensor([r.slot for r in g], device=self.device)
        for r, x in zip(g, todo, strict=True):
            self._holes[r.slot] = len(x) < T
        if len(g) == 1:
            r = g[0]
            if (
                self.compiled
                and T <= _COMPILED_PREFILL_MAX
                and int(self.cache.cursor[r.slot]) == r.reused
            ):
                # a short prompt (or rest of one) alone: the compiled single-slot graph
                # (code-flash-tiny at 20 tokens: 1.31 ms vs 1.94 lean, 2.99 the model's forward)
                assert self.fast is not None
                return self.fast.extend_one(todo[0], self.cache, r.slot)
        if self.fast is not None:
            # the lean forward (no MoE statistics, fused QKV), code-flash-tiny on one core
            # (`bench/serve_steps.py`): 1.39x the model's forward for one 58-token prompt,
            # 1.27x at 256 tokens, 1.09x for 8 padded prompts, parity at 32
            rng = _slot_range([r.slot for r in g])
            am = mask if len(g) > 1 else None
            return self.fast(ids, self.cache, slots, slot_range=rng, attention_mask=am)[:, -1]
        if len(g) == 1:
            return self.model(ids, cache=self.cache, slot_ids=slots, last_only=True)[:, -1]
        h = self.model(
            ids, attention_mask=mask, cache=self.cache, slot_ids=slots, return_hidden=True
        )
        last = mask.sum(dim=1) - 1
        h_last = h[torch.arange(len(g), device=self.device), last]
        return self.model.lm_head(h_last)

    def _after_prefill(self, r: _Request, logits: torch.Tensor, t0: float) -> None:
        r.t_first = time.perf_counter()
        if r.share_logits:
            r.prefill_logits = logits  # joiners with the same prompt sample from these too
        try:
            logits = self._constrain(r, logits)
            tid = self._choose(r, logits)
            self._commit(r, [tid], logits[None])
            self._flush_events(r)
        except Exception as exc:
            self._fail(r, exc)

    # ---- plain decode ------------------------------------------------------------------------
    def _decode(self, reqs: list[_Request]) -> None:
        # Slot order: running requests usually fill a contiguous block of slots, which the fast
        # path then reads as a slice view instead of gathering the KV cache every layer.
        reqs = sorted(reqs, key=lambda r: r.slot)
        t0 = time.perf_counter()
        self._plain_count += 1
        try:
            logits = self._decode_forward(reqs)
        except Exception:
            if len(reqs) == 1:
                self._fail(reqs[0], _last_exc())
                return
            for r in reqs:  # roll back the partial step, retry one by one
                self.cache.truncate(r.slot, r.seq_len - 1)
            for r in reqs:
                try:
                    lg = self._decode_forward([r])
                except Exception as exc:
                    self._fail(r, exc)
                    continue
                self._after_decode([r], lg)
            return
        self._after_decode(reqs, logits)
        ms = (time.perf_counter() - t0) * 1e3
        self.batch_cost.observe_plain(len(reqs), ms)  # the batched verification's yardstick
        if len(reqs) == 1 and len(self._running) == 1:  # the one-stream yardstick for `auto`
            self._observe_plain(ms)

    def _observe_plain(self, ms: float) -> None:
        self._plain_ms = ms if self._plain_ms is None else 0.8 * self._plain_ms + 0.2 * ms

    def _decode_forward(self, reqs: list[_Request]) -> torch.Tensor:
        """Next-token logits of each row's pending token [B, V] (real tokens only)."""
        return self._real_vocab(self._decode_logits(reqs))

    def _decode_logits(self, reqs: list[_Request]) -> torch.Tensor:
        if self.fast is not None and len(reqs) == 1 and self._fast_one:
            s = reqs[0].slot
            if not self._holes[s]:
                return self.fast.decode_one(reqs[0].pending, self.cache, s)
        if self.fast is not None and len(reqs) == 1:
            s = reqs[0].slot
            ids = torch.tensor([[reqs[0].pending]], device=self.device)
            return self.fast(ids, self.cache, None, single_slot=s, dense=not self._holes[s])[:, -1]
        slot_list = [r.slot for r in reqs]
        rng = _slot_range(slot_list)
        compiled = self.fast is not None and rng is not None and self.fast.compiled_batch
        if compiled:
            # (right-padding holes are masked as in the eager step)
            assert self.fast is not None and rng is not None
            out = self.fast.decode_batch([r.pending for r in reqs], self.cache, rng[0])
        else:
            ids = torch.tensor([[r.pending] for r in reqs], device=self.device)
            slots = torch.tensor(slot_list, device=self.device)
            if self.fast is not None:
                out = self.fast(ids, self.cache, slots, slot_range=rng)[:, -1]
            else:
                out = self.model(ids, cache=self.cache, slot_ids=slots, last_only=True)[:, -1]
        # counted once the forward returned: a failed batched step is retried one by one
        self._totals["batched_steps"] += 1
        self._totals["batched_compiled_steps"] += int(compiled)
        return out

    def _after_decode(self, reqs: list[_Request], logits: torch.Tensor) -> None:
        constrained = [i for i, r in enumerate(reqs) if r.heal_left or r.banned or _in_call(r)]
        if constrained:
            logits = logits.clone()
            for i in constrained:
                logits[i] = self._constrain(reqs[i], logits[i])
        chosen = self._choose_rows(reqs, logits)
        for i, r in enumerate(reqs):
            try:
                tid = chosen[i]
                if isinstance(tid, BaseException):
                    raise tid
                self._commit(r, [tid], logits[i : i + 1])
                self._flush_events(r)
            except Exception as exc:
                self._fail(r, exc)

    def _choose_rows(self, reqs: list[_Request], logits: torch.Tensor) -> list[Any]:
        """Next token per row of a decode step: forced think tokens, one batched argmax for the
        greedy rows, and one batched warp + draw per group of rows with equal warping parameters
        (each row still draws from its own generator, see `sample_rows`). A row whose choice
        fails gets the exception in its place (only that request fails)."""
        chosen: list[Any] = [None] * len(reqs)
        greedy_rows: list[int] = []
        groups: dict[tuple[float, int, float], list[int]] = {}
        for i, r in enumerate(reqs):
            try:
                forced = r.think.next_forced()
            except Exception as exc:
                chosen[i] = exc
                continue
            if forced is not None:
                chosen[i] = forced
            elif r.params.greedy:
                greedy_rows.append(i)
            else:
                p = r.params
                groups.setdefault((float(p.temperature), p.top_k, float(p.top_p)), []).append(i)
        if greedy_rows:
            if len(greedy_rows) == len(reqs):
                am = torch.argmax(logits, dim=-1).tolist()
            else:
                sel = torch.tensor(greedy_rows, device=logits.device)
                am = torch.argmax(logits.index_select(0, sel), dim=-1).tolist()
            for i, t in zip(greedy_rows, am, strict=True):
                chosen[i] = t
        for rows in groups.values():
            try:
                lg = logits if len(rows) == len(reqs) else logits[rows]
                toks = self._sample_many([reqs[i] for i in rows], lg)
                for i, t in zip(rows, toks, strict=True):
                    chosen[i] = t
            except Exception:
                for i in rows:  # fall back to one row at a time so only a culprit fails
                    try:
                        chosen[i] = self._sample(reqs[i], logits[i])
                    except Exception as exc:
                        chosen[i] = exc
        return chosen

    def _banned_ids(self, ids: list[int], params: SamplingParams) -> list[int] | None:
        """The token ids a request may never choose: the request's own
        (`SamplingParams.banned_token_ids`, e.g. the tool-call start under `tool_choice:
        "none"`) and, for a FIM middle, the markup a middle never holds. Ids outside the
        model's vocabulary are dropped (they can never be chosen anyway). None: none banned."""
        out = [t for t in params.banned_token_ids or [] if 0 <= t < self.cfg.vocab_size]
        if self._fim_middle is not None and self._fim_middle in ids and self._fim_banned:
            out += self._fim_banned
        return sorted(set(out)) or None

    def _constrain(self, r: _Request, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., V] with the tokens request r may not choose at -inf: those inconsistent
        with the removed prompt text (token healing) and its banned ones (`_banned_ids`). The
        input is not modified. Logprobs and policy log-probs then describe this constrained
        distribution, the one the token is drawn from (and drafts are verified against)."""
        if r.heal_left:
            logits = self._heal_mask(r, logits)
        if r.banned:
            logits = logits.clone()
            logits[..., r.banned] = float("-inf")
        if _in_call(r):
            assert r.tools is not None
            allowed = r.tools.mask(logits.device)
            assert allowed is not None
            if bool(allowed.any()):  # never an empty distribution (cannot happen: bytes tokens)
                logits = logits.masked_fill(~allowed, float("-inf"))
        return logits

    def tool_grammar(self, tools: list[dict]) -> ToolCallGrammar:
        """The shared grammar for this tool set on this engine's vocabulary; a clear error when
        the tokenizer has no `<tool_call>` / `</tool_call>` tokens to delimit a call."""
        start = _special_id(self.tokenizer, TOOL_CALL_START, self.cfg.vocab_size)
        end = _special_id(self.tokenizer, TOOL_CALL_END, self.cfg.vocab_size)
        if start is None or end is None:
            raise HillclimbError(
                f"guided_tools needs {TOOL_CALL_START} and {TOOL_CALL_END} tokens; "
                f"model {self.name!r}'s tokenizer has none"
            )
        try:
            with self._grammar_lock:  # clients on several threads share the engine
                if self._vocab_tries is None:  # once per engine, shared by every tool set
                    self._vocab_tries = VocabTries(self.heal_index.bytes)
                return grammar_for(
                    self._grammars, tools, self.heal_index.bytes, start, end, self._vocab_tries
                )
        except ValueError as exc:
            raise HillclimbError(f"guided_tools: {exc}") from None

    def _heal_mask(self, r: _Request, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., V] with every token that is inconsistent with the removed prompt text at
        -inf (token healing)."""
        allowed = self.heal_index.mask(r.heal_left, logits.device)
        return logits.masked_fill(~allowed, float("-inf"))

    def _choose(self, r: _Request, logits: torch.Tensor) -> int:
        forced = r.think.next_forced()
        if forced is not None:
            return forced
        return self._sample(r, logits)

    def _sample(self, r: _Request, logits: torch.Tensor) -> int:
        return choose_token(logits, r.params, r.gen)

    def _sample_many(self, reqs: list[_Request], logits: torch.Tensor) -> list[int]:
        """Sampled rows that share warping parameters: one warp, one draw per own generator."""
        return sample_rows(warp_probs(logits, reqs[0].params), [r.gen for r in reqs])

    # ---- speculative decode ------------------------------------------------------------------
    def _drafter(self, r: _Request) -> Drafter | None:
        if r.drafter == "lookup":
            return self.lookup
        if r.drafter == "suffix":
            return self.suffix
        if r.drafter == "model":
            return self.draft
        return None

    def _spec_gamma(self, r: _Request, d: Drafter) -> int:
        assert r.slot is not None
        g = d.gamma(r.slot)
        if g < 1:
            return 0
        remaining = r.params.max_tokens - len(r.out_ids)
        g = min(g, remaining - 1)  # a step commits up to γ+1 tokens
        free = r.think.tokens_until_budget()
        if free is not None:
            g = min(g, free - 1)
        g = min(
            g,
            self._storage - int(self.cache.cursor[r.slot]) - 2,
            d.room(r.slot, r.seq_len) - 1,
        )
        return max(g, 0)

    def _spec_wanted(self, r: _Request) -> bool:
        """Whether request r takes a speculative step now (see the module docstring)."""
        if r.spec is None or r.heal_left or _in_call(r):
            return False  # healing and tool-call steps are constrained plain steps
        if r.drafter in ("lookup", "suffix"):
            return True  # its own policy: acceptance-based, no timings (`drafters.py`)
        p = r.params
        if p.speculative is True or (p.seed is not None and not p.greedy):
            return True
        if self._plain_ms is None:
            return False  # measure one plain step first: the yardstick
        return self._plain_count >= self._spec_probe_at

    def _observe_spec(self, r: _Request, ms: float, committed: int) -> None:
        """One speculative step of the draft model took `ms` and committed `committed` tokens.

        Per-request EMA of speculative ms per committed token against the plain yardstick.
        Losing → every request decodes plainly for the engine's back-off, then one request
        probes again; winning resets the back-off. The back-off is the longer of a doubling one
        (16, 32, … 256 plain steps while speculation keeps losing) and the one that amortises
        what the drafting run since the last back-off lost (its ms minus its tokens at the
        plain yardstick, catch-up forwards included) to `spec_loss_budget` of plain decoding
        (`drafters.loss_bounded_wait`): the fixed one alone let an attached tiny draft run at
        0.95× and 0.81× of plain decoding (session 24). Requests that must speculate (forced,
        seeded samples) add no loss: theirs is not the policy's to bound.
        Engine-wide, because the pair and the machine decide most of it: a new request does not
        have to rediscover that drafting does not pay."""
        plain = self._plain_ms
        if plain is not None and not _must(r):
            self._spec_debt_ms = max(0.0, self._spec_debt_ms + ms - committed * plain)
        if committed <= 0:
            return
        ms_per_token = ms / committed
        r.spec_steps += 1
        r.spec_ms = ms_per_token if r.spec_ms is None else 0.6 * r.spec_ms + 0.4 * ms_per_token
        if plain is None or r.spec_steps < 2:
            return
        if r.spec_ms > plain:
            loss = self._spec_debt_ms / plain if plain > 0 else float("inf")
            wait = loss_bounded_wait(loss, self._spec_backoff, self.spec_loss_budget)
            self._spec_probe_at = self._plain_count + wait
            self._spec_backoff = min(256, 2 * self._spec_backoff)
            self._spec_debt_ms = 0.0
            r.spec_ms, r.spec_steps = None, 0  # a later probe starts a fresh estimate
            self._totals["spec_backoffs"] += 1
        else:
            self._spec_backoff = 16

    def _spec_step(self, r: _Request, d: Drafter, gamma: int) -> bool:
        """One draft-and-verify step of one request; False when the drafter proposed nothing
        (the request then takes the plain batched step)."""
        row = self._propose(r, d, gamma)
        if row is None:
            return False
        self._verify_one(row)
        return True

    def _propose(self, r: _Request, d: Drafter, gamma: int) -> _Draft | None:
        assert r.slot is not None
        t0 = time.perf_counter()
        drafts, q = d.propose(r.slot, r.prompt_ids + r.out_ids, gamma, r.params, r.gen)
        if r.tools is not None and r.tools.g.start_id in drafts:
            # a draft step verifies every position against one mask; the tokens after a
            # `<tool_call>` need the grammar's, so drafting stops before it (the target may
            # still choose `<tool_call>` as the step's correction or bonus token)
            k = drafts.index(r.tools.g.start_id)
            drafts, q = drafts[:k], (q[:k] if q is not None else None)
        if not drafts:
            return None
        return _Draft(r, d, drafts, q, _must(r), t0)

    def _verify_one(self, x: _Draft) -> None:
        """Verify one request's drafts in a single-slot forward of [pending, d1..dγ]."""
        r = x.r
        assert r.slot is not None
        toks = [r.pending, *x.drafts]
        if self._fast_one and not self._holes[r.slot]:
            assert self.fast is not None
            logits = self.fast.extend_one(toks, self.cache, r.slot, last_only=False)
        else:
            ids = torch.tensor([toks], device=self.device)
            slots = torch.tensor([r.slot], device=self.device)
            if self.fast is not None:
                logits = self.fast(ids, self.cache, slots, last_only=False, single_slot=r.slot)[0]
            else:
                logits = self.model(ids, cache=self.cache, slot_ids=slots)[0]  # [γ+1, V]
        logits = self._real_vocab(logits)
        c = self._accept_commit(x, logits, r.seq_len)
        if x.d is self.draft:  # the timing policy is the model drafter's
            self._observe_spec(r, (time.perf_counter() - x.t0) * 1e3, c)

    def _accept_commit(self, x: _Draft, logits: torch.Tensor, L: int) -> int:
        """Apply the acceptance rule to one row's verification logits [γ+1, V] (L = the
        sequence length with the pending token), commit the kept drafts + the correction or
        bonus token, roll the cache (and the drafter) back past the rejected ones → tokens
        committed."""
        r, d, drafts = x.r, x.d, x.drafts
        assert r.spec is not None and r.slot is not None
        logits = self._constrain(r, logits)
        n, nxt = accept_drafts(logits, drafts, x.q, r.params, r.gen)
        r.spec.add(len(drafts), n)
        total = {id(self.draft): self._spec_total, id(self.suffix): self._suffix_total}
        total.get(id(d), self._lookup_total).add(len(drafts), n)
        from_prediction = getattr(d, "drafted_from_prediction", None)
        predicted = bool(from_prediction and from_prediction(r.slot))  # before `adapt`
        d.adapt(r.slot, len(drafts), n)
        c = self._commit(r, drafts[:n] + [nxt], logits[: n + 1])
        if predicted:  # kept = in the output (the request may end inside the accepted run)
            kept = min(n, c)
            r.pred_accepted += kept
            r.pred_rejected += len(drafts) - kept
        if not r.finished:
            self.cache.truncate(r.slot, L + c - 1)
            d.rollback(r.slot, L + c - 1)
        self._flush_events(r)
        return c

    # ---- batched verification (model-free drafts) ------------------------------------------------
    def _verify_rows(
        self, rows: list[_Draft], plain: list[_Request], free_ms: float = 0.0
    ) -> list[_Request]:
        """Verify this step's model-free drafts; → the requests left for the plain batched step.

        One drafting request alone (no plain rows) verifies through the single-slot step: its
        drafter's own policy, calibrated on that step, already decided. Several rows: one ragged
        forward over the drafting rows *and* the plain ones (γ = 0), when the measured cost model
        (`BatchVerifyCost`) says that it beats one plain batched step — else every row decodes
        plainly (the proposals are dropped; the drafters' state did not change). `free_ms`:
        what proposing cost this step (the loss of a declined step, `_batch_back_off`)."""
        if self.spec_batch == "off" or (len(rows) == 1 and not plain):
            for x in rows:
                try:
                    self._verify_one(x)
                except Exception as exc:
                    self._fail(x.r, exc)
            return plain
        n_rows = len(rows) + len(plain)
        cost = self.batch_cost
        if self.spec_batch == "always":
            cap = max(len(x.drafts) for x in rows)
        elif cost.plain(n_rows) is None and not any(x.must for x in rows):
            cap = 0  # measure a plain step of this batch first: the yardstick
        else:
            free = [(len(x.drafts), self._alpha(x)) for x in rows if not x.must]
            must = [(len(x.drafts), self._alpha(x)) for x in rows if x.must]
            cap = cost.plan(n_rows, free, must, probe=cost.declined >= cost.cfg.probe_every)
        if cap == 0:
            self._totals["verify_declined"] += 1
            base = cost.plain(n_rows)
            if base is not None:
                self._batch_back_off(free_ms / base if base > 0 else float("inf"))
            return plain + [x.r for x in rows]
        policy = self.spec_batch == "auto" and not any(x.must for x in rows)
        for x in rows:
            x.drafts = x.drafts[:cap]  # (a must row's drafts are never longer than cap)
        # every row writes cap + 1 cells: a row without that room takes the other path
        fits = {
            id(r)
            for r in [x.r for x in rows] + plain
            if int(self.cache.cursor[r.slot]) + cap + 1 <= self._storage
        }
        for x in rows:
            if id(x.r) not in fits:
                try:
                    self._verify_one(x)
                except Exception as exc:
                    self._fail(x.r, exc)
        batch = [x for x in rows if id(x.r) in fits]
        if not batch:
            return plain
        done = self._verify_batch(batch, [r for r in plain if id(r) in fits], cap)
        if done is not None and policy:
            self._observe_batch(free_ms, *done)
        return [r for r in plain if id(r) not in fits]

    def _observe_batch(
        self, propose_ms: float, verify_ms: float, rows: int, committed: int
    ) -> None:
        """One batched verification the policy chose (`spec_batch="auto"`, no forced or seeded
        row) cost `propose_ms` + `verify_ms` and committed `committed` tokens over `rows` rows.

        Its loss against the plain batched step it replaced, in plain batched steps of `rows`
        rows: cost / plain step − committed / rows (a plain step commits one token per row; the
        tokens are what a server's throughput counts). A losing step adds to the debt that sizes
        the next back-off; a paying one pays debt off and resets the doubling floor."""
        base = self.batch_cost.plain(rows)
        if base is None or rows <= 0:
            return
        spent = (propose_ms + verify_ms) / base if base > 0 else float("inf")
        loss = spent - committed / rows
        self._batch_debt = max(0.0, self._batch_debt + loss)
        if loss <= 0:
            self._batch_backoff = 4

    def _observe_unmatched(self, free_ms: float, rows: int) -> None:
        """The drafters of a `rows`-row step were asked (`free_ms`) and none proposed: a loss
        with no verification to decide on. It joins the debt, and once the debt reaches whole
        steps at `spec_loss_budget` they are skipped (the rest carried), so asking drafters that
        rarely match stays within the budget too."""
        base = self.batch_cost.plain(rows)
        if base is None:
            return
        self._batch_debt += free_ms / base if base > 0 else float("inf")
        budget = self.spec_loss_budget
        if budget <= 0 or not math.isfinite(budget):
            return
        wait = min(WAIT_CAP, math.floor(self._batch_debt / budget))
        if wait >= 1:
            self._batch_skip = max(self._batch_skip, wait)
            self._batch_debt = max(0.0, self._batch_debt - wait * budget)

    def _batch_back_off(self, loss: float) -> None:
        """A declined step: its proposals (`loss` plain batched steps) were dropped. The model-
        free drafters of unforced rows are not asked for the longer of the doubling back-off
        (4, 8, … 64 steps while verification keeps losing) and the one that amortises what the
        batched drafting run since the last back-off lost — this step included — to
        `spec_loss_budget` of plain decoding (`drafters.loss_bounded_wait`): the fixed one alone
        let a drafter that never paid cost more than 2% under concurrency (issue 15)."""
        debt = self._batch_debt + loss
        self._batch_skip = loss_bounded_wait(debt, self._batch_backoff, self.spec_loss_budget)
        self._batch_backoff = min(64, 2 * self._batch_backoff)
        self._batch_debt = 0.0

    def _alpha(self, x: _Draft) -> float:
        """The per-token acceptance the row's drafter estimates for it (0.5 if it has none)."""
        alpha = getattr(x.d, "alpha", None)
        return float(alpha(x.r.slot)) if alpha is not None else 0.5

    def _verify_batch(
        self, rows: list[_Draft], plain: list[_Request], cap: int
    ) -> tuple[float, int, int] | None:
        """One forward over every row: [pending, d1..dγ_i] right-filled with the pending token
        to cap + 1 (the fillers come after the real tokens, so causality keeps them out of every
        real token's attention; the FFN and LM head skip them; each slot is truncated past its
        last committed token afterwards, fillers and rejected drafts alike). Then the acceptance
        rule per drafting row, the ordinary sampling for plain rows. → (ms from the forward to
        the last commit, rows, tokens committed), None when the forward failed (rows retried
        alone)."""
        t0 = time.perf_counter()
        items: list[tuple[_Request, _Draft | None]] = [(x.r, x) for x in rows]
        items += [(r, None) for r in plain]
        items.sort(key=lambda it: it[0].slot)  # contiguous slots: the cache read as views
        B, T = len(items), cap + 1
        ids = torch.empty(B, T, dtype=torch.long)
        real = torch.zeros(B, T, dtype=torch.bool)
        lens: list[int] = []
        for i, (r, x) in enumerate(items):
            toks = [r.pending, *(x.drafts if x is not None else [])]
            ids[i] = r.pending
            ids[i, : len(toks)] = torch.tensor(toks)
            real[i, : len(toks)] = True
            lens.append(len(toks))
        seq = [r.seq_len for r, _ in items]
        slot_list = [r.slot for r, _ in items]
        try:
            logits = self._verify_forward(ids.to(self.device), real.to(self.device), slot_list)
        except Exception:
            for r, L in zip([r for r, _ in items], seq, strict=True):
                self.cache.truncate(r.slot, L - 1)  # roll the partial step back, retry alone
            for r, x in items:
                try:
                    if x is not None:
                        self._verify_one(x)
                    else:
                        self._decode([r])
                except Exception as exc:
                    self._fail(r, exc)
            return None
        self._totals["verify_steps"] += 1
        self._totals["verify_rows"] += B
        chunks = torch.split(logits, lens)
        prow = [i for i, (_, x) in enumerate(items) if x is None]
        if prow:
            preqs = [items[i][0] for i in prow]
            self._after_decode(preqs, torch.cat([chunks[i] for i in prow]))
            for r in preqs:
                if not r.finished:
                    self.cache.truncate(r.slot, r.seq_len - 1)  # the fillers
        committed = len(prow)  # one token per plain row
        for i, (r, x) in enumerate(items):
            if x is None:
                continue
            try:
                committed += self._accept_commit(x, chunks[i], seq[i])
            except Exception as exc:
                self._fail(r, exc)
        # the whole step against a whole plain step: proposing, the forward, acceptance, commits
        t_end = time.perf_counter()
        t_start = min([t0, *(x.t0 for x in rows)])
        xs = self.batch_cost.x([len(x.drafts) for x in rows], B, cap)
        self.batch_cost.observe_verify(xs, B, (t_end - t_start) * 1e3)
        return (t_end - t0) * 1e3, B, committed

    def _verify_forward(
        self, ids: torch.Tensor, real: torch.Tensor, slot_list: list[int]
    ) -> torch.Tensor:
        """Logits of the real tokens of a filled [B, T] verification batch, packed [n_real, V]."""
        slots = torch.tensor(slot_list, device=self.device)
        if self.fast is not None:
            rng = _slot_range(slot_list)
            out = self.fast(ids, self.cache, slots, last_only=False, slot_range=rng, real=real)
            return self._real_vocab(out)
        out = self.model(ids, cache=self.cache, slot_ids=slots)  # [B, T, V]
        return self._real_vocab(out.reshape(-1, out.shape[-1])[real.reshape(-1)])

    # ---- committing tokens -------------------------------------------------------------------
    def _commit(self, r: _Request, tokens: list[int], logits: torch.Tensor) -> int:
        """Append tokens one by one (stop/length/budget checks after each). Returns how many
        were committed: a step's later tokens are dropped once the request finishes or the
        reasoning budget runs out (so the next token can be forced)."""
        n = 0
        for j, tid in enumerate(tokens):
            if n > 0 and r.think.next_forced() is not None:
                break
            if r.policy_lp is not None and r.forced is not None:
                r.policy_lp.append(policy_logprob(logits[j], tid, r.params))
                r.forced.append(r.think.next_forced() is not None)
            r.out_ids.append(tid)
            r.step_ids.append(tid)
            n += 1
            if r.tools is not None:
                r.tools.observe(tid)
            rest, left = r.heal_left, None
            if rest:
                left = self.heal_index.advance(rest, tid)  # None: diverged (a forced token)
                r.heal_left = left or b""
            if r.logprobs is not None:
                recs = token_logprobs(
                    logits[j : j + 1], [tid], r.params.logprobs or 0, self._token_text
                )
                if left is not None:  # on divergence the text keeps the healed part too
                    self._unheal_record(recs[0], rest)
                r.step_logprobs.extend(recs)
            if tid in r.stop_ids:
                # the held-back text comes out, and is searched for stop strings like any
                # other text (with stop=["\ufffd"] an unfinished character was emitted as one)
                before = len(r.raw)
                self._add_text(r, r.detok.flush())
                hit = r.stopper.find(r.raw, before)
                if hit is not None:
                    self._cut(r, hit)
                self._end(r, "stop")
                break
            is_reasoning, is_tag = r.think.observe(tid)
            before = len(r.raw)
            if is_tag:
                self._add_text(r, r.detok.flush())
                tag = self.tokenizer.id_to_token(tid) or ""
                r.tags.append((len(r.visible), tag))
                r.raw += tag
                r.modes.append((len(r.visible), tid == self._think_ids[0]))
                r.detok = IncrementalDetokenizer(self.tokenizer.decode)
            else:
                self._add_text(r, r.detok.add(tid))
            if len(r.out_ids) >= r.params.max_tokens:
                self._add_text(r, r.detok.flush())
            hit = r.stopper.find(r.raw, before)
            if hit is not None:
                self._cut(r, hit)
                self._end(r, "stop")
                break
            if len(r.out_ids) >= r.params.max_tokens:
                self._end(r, "length")
                break
        return n

    def _real_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., V] with the padded rows of the embedding table (ids from the tokenizer's
        size up to the model's vocabulary, rounded up for fast matmuls) at -inf; the input is not
        modified. Those ids are no tokens: a model never trained on them can still rank them
        first (a random micro model put most of its mass there), and they decode to nothing.
        Applied to every forward's logits, so no path (greedy, sampled, speculative, batched,
        compiled) can choose one, and logprobs are the softmax over the real tokens — the
        distribution sampled from."""
        if self._n_real >= logits.shape[-1]:
            return logits
        out = logits.clone()
        out[..., self._n_real :] = float("-inf")
        return out

    @staticmethod
    def _add_text(r: _Request, text: str) -> None:
        r.visible += text
        r.raw += text

    @staticmethod
    def _raw_to_visible(r: _Request, i: int) -> tuple[int, int]:
        """(visible offset, tags before it) of offset i of the raw text. An offset inside a
        tag maps to the tag's place, the tag not counted: a cut or a hold-back there takes the
        whole tag."""
        shift = 0
        for k, (off, tag) in enumerate(r.tags):
            start = off + shift
            if i <= start:
                return i - shift, k
            if i < start + len(tag):
                return off, k
            shift += len(tag)
        return i - shift, len(r.tags)

    def _cut(self, r: _Request, hit: int) -> None:
        """End the generated text before a stop string that begins at offset `hit` of the raw
        text. Stop strings are searched in the text with the think tags, the text the answer
        returns (`GenerationOutput.text`): searched without them, stop=["</think>"] never
        fired. A tag the stop string cuts goes, with its change of mode."""
        vis, kept = self._raw_to_visible(r, hit)
        r.visible, r.raw = r.visible[:vis], r.raw[:hit]
        del r.tags[kept:]
        del r.modes[kept + 1 :]  # modes[0] is the prompt's; modes[k + 1] came with tags[k]

    def _token_text(self, tid: int) -> str:
        return self.tokenizer.decode([tid])

    def _unheal_record(self, rec: dict[str, Any], rest: bytes) -> None:
        """Token healing: a logprob record (and its alternatives) while `rest`, the removed
        prompt bytes, was still to be reproduced. Its token text loses the part that repeats the
        prompt — `StripPrefix` cuts the same part from the output — so the records' texts join
        into exactly the returned text (a token inside the removed text becomes "")."""
        for r in [rec, *rec.get("top_logprobs", [])]:
            b = (
                self.heal_index.bytes[r["token_id"]]
                if 0 <= r["token_id"] < self.cfg.vocab_size
                else None
            )
            if not b:
                continue
            if b.startswith(rest):
                r["token"] = b[len(rest) :].decode("utf-8", errors="replace")
            elif rest.startswith(b):
                r["token"] = ""

    def _flush_events(self, r: _Request) -> None:
        """Stream what is safe: text up to the stop-string hold-back, split at think boundaries."""
        if r.finished:
            end, tags_safe = len(r.visible), len(r.tags)
        else:  # a held-back possible stop string may hold a tag back too
            end, tags_safe = self._raw_to_visible(r, r.stopper.safe_end(r.raw))
        pieces: list[tuple[bool, int, str]] = []  # (is_reasoning, visible offset, text)
        a = r.emitted
        if end > a and (len(r.modes) == 1 or r.modes[-1][0] <= a):
            pieces.append((r.modes[-1][1], a, r.visible[a:end]))  # common case: no mode change
            r.emitted = end
        elif end > a:
            cuts = sorted({off for off, _ in r.modes if a < off < end} | {a, end})
            for s, e in zip(cuts, cuts[1:], strict=False):
                if e > s:
                    pieces.append((r.mode_at(s), s, r.visible[s:e]))
            r.emitted = end
        if not pieces and not r.step_ids and not r.finished:
            return
        if not pieces:
            mode = r.think.in_think if not r.finished else r.mode_at(len(r.visible))
            pieces = [(mode, a, "")]
        lp = r.step_logprobs if r.logprobs is not None else None
        for k, (mode, start, text) in enumerate(pieces):
            last = k == len(pieces) - 1
            # tags generated before this piece's text (a tag sits at a mode cut, so at a piece's
            # start); at the end, the tags after the last text (stop-cut ones are dropped, as in
            # `_output`)
            raw = self._tags_upto(r, start, tags_safe) + text
            if r.finished and last:
                raw += self._tags_upto(r, len(r.visible), tags_safe)
            ev = TokenEvent(
                token_ids=list(r.step_ids) if k == 0 else [],
                text=text,
                is_reasoning=mode,
                logprobs=(
                    list(lp) if lp is not None and k == 0 else ([] if lp is not None else None)
                ),
                finished=r.finished and last,
                finish_reason=r.finish_reason if last else None,
                raw_text=raw,
            )
            r.handle._push(ev)
        if r.logprobs is not None:
            r.logprobs.extend(r.step_logprobs)
        r.step_ids = []
        r.step_logprobs = []
        if r.finished:
            r.handle._finish(self._output(r))

    @staticmethod
    def _tags_upto(r: _Request, offset: int, limit: int) -> str:
        """The think tags at visible offsets <= `offset` among the first `limit` (the rest are
        held back) not yet sent (marked sent)."""
        out = ""
        while r.tags_sent < min(limit, len(r.tags)) and r.tags[r.tags_sent][0] <= offset:
            out += r.tags[r.tags_sent][1]
            r.tags_sent += 1
        return out

    # ---- endings -----------------------------------------------------------------------------
    def _end(self, r: _Request, reason: str) -> None:
        if r.finished:
            return
        r.finish_reason = reason
        r.t_end = time.perf_counter()
        self._count_end(r, reason)
        if reason in ("cancelled", "error") or r.slot is None:
            self._flush_events(r)

    def _count_end(self, r: _Request, reason: str) -> None:
        """The totals of an ended request. One that never got a batch slot (cancelled while
        queued, or queued at `stop()`) ran no token: it is counted as cancelled and as
        `cancelled_queued`, never as finished or as prompt tokens processed — as the server
        charges it nothing (`GenerationOutput.admitted`, `Job.usage`). Then, with the
        engine idle, `requests` = `finished` + `cancelled_queued`."""
        t = self._totals
        if reason == "error":
            t["errors"] += 1
        elif reason == "cancelled":
            t["cancelled"] += 1
        if not r.t_admit:
            t["cancelled_queued"] += 1
            return
        t["finished"] += 1
        t["prompt_tokens"] += len(r.prompt_ids)
        t["completion_tokens"] += len(r.out_ids)
        t["reasoning_tokens"] += r.think.reasoning_tokens

    def _fail(self, r: _Request, exc: BaseException) -> None:
        r.error = f"{type(exc).__name__}: {exc}"
        if os.environ.get("HILLCLIMB_ENGINE_TRACEBACK"):
            traceback.print_exception(exc)
        r.step_ids = r.step_ids or []
        self._end(r, "error")
        if not r.handle.done():
            self._flush_events(r)

    def _output(self, r: _Request) -> GenerationOutput:
        vis = r.visible
        reasoning, content = [], []
        bounds = [off for off, _ in r.modes] + [len(vis)]
        for (off, mode), nxt in zip(r.modes, bounds[1:], strict=False):
            seg = vis[off : min(nxt, len(vis))] if off < len(vis) else ""
            (reasoning if mode else content).append(seg)
        had_think = any(m for _, m in r.modes)
        text = vis
        for off, tag in reversed(r.tags):
            if off <= len(vis):
                text = text[:off] + tag + text[off:]
        reasoning_text = "".join(reasoning).strip("\n")
        content_text = "".join(content)
        if had_think:
            content_text = content_text.lstrip("\n")
        t_end = r.t_end or time.perf_counter()
        decode_s = max(t_end - r.t_first, 0.0) if r.t_first else 0.0
        n = len(r.out_ids)
        routes = None
        fast = self.fast
        if r.slot is not None and r.params.policy_logprobs and fast and fast.routes is not None:
            routes = fast.slot_routes(self.cache, r.slot)
        return GenerationOutput(
            request_id=r.request_id,
            prompt_tokens=len(r.prompt_ids),
            token_ids=list(r.out_ids),
            text=text,
            reasoning_text=reasoning_text,
            content_text=content_text,
            completion_tokens=n,
            reasoning_tokens=r.think.reasoning_tokens,
            finish_reason=r.finish_reason or "error",
            logprobs=r.logprobs,
            policy_logprobs=r.policy_lp,
            forced=r.forced,
            routes=routes,
            healed_tokens=r.healed_tokens,
            cached_tokens=r.reused,
            # eligible: always reported
            spec=(
                {
                    **r.spec.as_dict(),
                    "drafter": r.drafter,
                    **({"drafter_choice": r.drafter_choice} if r.drafter_choice else {}),
                    "prediction_accepted": r.pred_accepted,
                    "prediction_rejected": r.pred_rejected,
                }
                if r.spec is not None
                else None
            ),
            timings={
                "queue_s": max((r.t_admit or t_end) - r.t_submit, 0.0),
                "prefill_s": max(r.t_first - r.t_admit, 0.0) if r.t_first else 0.0,
                "decode_s": decode_s,
                "tokens_per_s": (n - 1) / decode_s if decode_s > 0 and n > 1 else 0.0,
            },
            error=r.error,
            admitted=bool(r.t_admit),
        )

    # ---- introspection & scoring ---------------------------------------------------------------
    @property
    def running_count(self) -> int:
        """Requests in slots now (a lock-free, momentary reading: for load heuristics)."""
        return len(self._running)

    def stats(self) -> dict[str, Any]:
        with self._cv:
            queued = len(self._waiting)
        out: dict[str, Any] = {
            "name": self.name,
            "queue_depth": queued,
            "running": sum(not r.finished for r in self._running),
            "max_batch": self.max_batch,
            "max_context": self.max_context,
            "loop_alive": bool(self._thread is not None and self._thread.is_alive()),
            "compiled_decode": self.compiled,
            "compiled_batch": bool(self.fast is not None and self.fast.compiled_batch),
            "totals": dict(self._totals),
            "speculative": self._spec_total.as_dict() if self.draft is not None else None,
            "lookup": self._lookup_total.as_dict(),
            "suffix": {
                **self._suffix_total.as_dict(),
                "history": self.suffix.history.stats(),  # the shared (in-process) scope's
                "scoped_histories": len(self.suffix.scoped),
            },
            "default_drafter": self.default_drafter,
            # "auto" engines: requests per chosen draft source / per reason
            "drafter_choice": {**self._auto_choices, "reasons": dict(self._auto_reasons)},
            "batch_spec": {"mode": self.spec_batch, **self.batch_cost.as_dict()},
            "prefix": self.prefix_stats(),
        }
        return out

    def prefix_stats(self) -> dict[str, Any]:
        """Prefix-cache counters (`PrefixCache.as_dict`): hit rate, tokens saved, entries,
        evictions; `{"enabled": False}` when the cache is off."""
        if self.prefix is None:
            return {"enabled": False}
        return {"enabled": True, "min_tokens": self.prefix.min_tokens, **self.prefix.as_dict()}

    @torch.inference_mode()
    def prompt_logprobs(self, prompt_ids: list[int], n_top: int) -> list[dict[str, Any]]:
        """Logprob records (the `token_logprobs` shape) of prompt tokens 1..n-1, each given the
        tokens before it: `/v1/completions` with `echo` + `logprobs` (the first token has none).
        One full forward under the model lock, outside the KV cache and the batch."""
        ids = list(prompt_ids)
        if len(ids) > self.max_context:
            raise ValueError(f"prompt of {len(ids)} tokens exceeds the context {self.max_context}")
        if len(ids) < 2:
            return []
        x = torch.tensor([ids], device=self.device)
        with self._lock:
            logits = self._real_vocab(self.model(x)[0, :-1])
        return token_logprobs(logits, ids[1:], n_top, self._token_text)

    @torch.inference_mode()
    def score_stats(self, prompt_ids: list[int]) -> dict[str, Any]:
        """Logprobs plus per-position predictive entropy (nats), [n-1] each (router features)."""
        ids = list(prompt_ids)[-self.max_context :]
        if len(ids) < 2:
            z = torch.zeros(0)
            return {"logprobs": z, "entropy": z}
        x = torch.tensor([ids], device=self.device)
        with self._lock:
            logits = self._real_vocab(self.model(x)[0, :-1].float())
        lp = torch.log_softmax(logits, dim=-1)
        tgt = x[0, 1:]
        chosen = lp.gather(-1, tgt[:, None])[:, 0]
        ent = -(lp.exp() * lp.clamp_min(torch.finfo(lp.dtype).min)).sum(-1)  # 0·log 0 = 0
        return {"logprobs": chosen.cpu(), "entropy": ent.cpu()}


def _special_id(tokenizer: Any, name: str, vocab_size: int) -> int | None:
    """The id of special token `name`, or None when the tokenizer has none in range."""
    tid = getattr(tokenizer, "token_id", None)
    if tid is None:
        return None
    try:
        t = tid(name)
    except (KeyError, HillclimbError):
        return None
    return t if isinstance(t, int) and 0 <= t < vocab_size else None


def _fim_tokens(tokenizer: Any, vocab_size: int) -> tuple[int | None, list[int]]:
    """(the `<|fim_middle|>` id, the ids a FIM middle never contains) for this tokenizer.

    Why: a prompt holding `<|fim_middle|>` asks for the code between a prefix and a suffix, and
    an IDE pastes the answer into the file. A model that also learned tool calls (SFT) can
    answer with `<tool_call>{"name": ...}` instead, which is never valid code; forbidding the
    tool-call and tool-response tokens while decoding a middle makes that impossible. The other
    markup a middle can never hold goes with them: the FIM markers themselves, the start of
    a chat turn and the think tags (the trained tiny code-flash answered a FIM prompt with
    "…xs:\n<think>", which an IDE pastes into the file; a middle ends with end-of-text, which
    stays allowed). (None, []) for a tokenizer without these special tokens."""
    tid = getattr(tokenizer, "token_id", None)
    if tid is None:
        return None, []

    def get(name: str) -> int | None:
        try:
            t = tid(name)
        except (KeyError, HillclimbError):
            return None
        return t if isinstance(t, int) and 0 <= t < vocab_size else None

    names = (TOOL_CALL_START, TOOL_CALL_END, TOOL_RESPONSE_START, TOOL_RESPONSE_END,
             FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, IM_START, THINK_START, THINK_END)  # fmt: skip
    banned = [get(t) for t in names]
    return get(FIM_MIDDLE), [t for t in banned if t is not None]


def _last_exc() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    return exc if exc is not None else RuntimeError("unknown error")
