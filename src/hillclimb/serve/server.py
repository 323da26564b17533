"""The OpenAI-compatible HTTP server: FastAPI routes over the generation engine.

What it does, in request order: authenticate the Bearer key (401) → take a rate-limit token
(429) → parse and validate the body (400, api.py) → resolve the model, routing `auto` through the
Router (404 for an unknown id) → render the prompt (chat template, or the FIM prompt when a
completion carries `suffix`) and check it against the context (400 `context_length_exceeded`) →
reserve the request's maximum cost (402) → submit one engine request per choice → answer as JSON
or as SSE chunks in OpenAI's exact shapes → settle the actual cost and record metrics.

Why it is built this way:
- The engine runs its own loop thread with continuous batching; the server only `submit`s and
  consumes each request's async token stream, so any number of HTTP requests share the batch and
  the asyncio loop never runs a forward pass (router scoring goes to a worker thread).
- Every request has one `_Job` whose `finalize()` is idempotent and is reached on every exit path
  — normal end, validation error after reservation, client disconnect (a StreamingResponse
  subclass calls it in `finally`, since Starlette may cancel a stream without running the
  generator's own cleanup) — and it cancels the engine requests (freeing their batch slots) and
  settles the accounting exactly once.
- Reasoning, content and tool calls are separated by one streaming state machine
  (`_ChatChoice`), used for both streaming and non-streaming answers, so the two can never
  disagree.
- Nothing a client sends can take the server down: every route catches `APIError` (its own 4xx),
  `HillclimbError` (bad input the engine found: 400) and any other exception (500, logged), and
  the engine loop is isolated from requests by its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from hillclimb.errors import HillclimbError
from hillclimb.serve.api import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    invalid,
    message_dicts,
    parse_request,
)
from hillclimb.serve.auth import Authenticator, AuthError, KeySpec, retry_after_header
from hillclimb.serve.billing import InsufficientCredits, Price, UsageDB, default_price
from hillclimb.serve.budget import resolve_budget, with_budget_note
from hillclimb.serve.metrics import ServerMetrics, engine_collector
from hillclimb.tokenizer.specials import (
    THINK_END,
    THINK_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
    fim_prompt,
)

log = logging.getLogger("hillclimb.serve")

MODEL_IDS = ("thinking", "code-flash")
AUTO = "auto"
ROUTED_HEADER = "x-hillclimb-routed-to"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CHOICES = 64  # engine requests one HTTP request may start (prompts × n)


# ---- state ------------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    id: str
    engine: Any  # hillclimb.serve.engine.Engine
    price: Price
    checkpoint: str | None = None
    active_params: int | None = None
    total_params: int | None = None
    # trained with budget conditioning (`hillclimb rl --budget-conditioning`; its checkpoint's
    # hillclimb.json says so): a request's thinking budget also goes into the prompt, as the
    # note the model was trained with (`serve.budget.with_budget_note`)
    budget_note: bool = False


@dataclass
class ServerState:
    models: dict[str, ModelEntry]
    db: UsageDB
    auth: Authenticator
    router: Any | None = None  # hillclimb.serve.router.Router
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    default_max_tokens: int = 1024  # chat default when the client sends no max_tokens
    owns_engines: bool = True
    speculative: bool = False
    # seconds between two SSE writes of one stream; None = auto (see `flush_interval`)
    stream_interval: float | None = None
    started: float = field(default_factory=time.time)

    def flush_interval(self, entry: ModelEntry) -> float:
        """How long a stream lets tokens gather before its next SSE write. Auto: none while
        the model runs ≤ 4 requests (every token is written at once), 15 ms above: under load
        each write then carries a few tokens, which cuts the per-token HTTP/JSON work that
        shares the interpreter with the engine (the first token is never held back)."""
        if self.stream_interval is not None:
            return self.stream_interval
        return 0.0 if entry.engine.running_count <= 4 else 0.015

    @property
    def tokenizer(self) -> Any:
        return next(iter(self.models.values())).engine.tokenizer

    @property
    def open_mode(self) -> bool:
        return self.auth.open_mode

    def model_ids(self) -> list[str]:
        ids = [m for m in MODEL_IDS if m in self.models]
        return ids + [AUTO] if ids else ids

    def start_engines(self) -> None:
        for m in self.models.values():
            m.engine.start()

    def stop_engines(self) -> None:
        for m in self.models.values():
            try:
                m.engine.stop()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("stopping engine %s", m.id)


def checkpoint_accounting(path: str | Path) -> tuple[int, int]:
    """(active, total) parameters of a checkpoint, from its config (meta device, no weights)."""
    from hillclimb.model.accounting import account
    from hillclimb.model.checkpoint import load_config

    cfg, _ = load_config(path)
    acc = account(cfg)
    return acc.active_params, acc.total_params


def load_prices(path: str | Path) -> dict[str, Price]:
    """A prices file (JSON or TOML): `{model: {prompt: credits/1M tokens, completion: ...}}`."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise HillclimbError(f"prices file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HillclimbError(f"malformed prices file {p}: {exc}") from exc
    return parse_prices(data, str(p))


def parse_prices(data: Any, where: str = "prices") -> dict[str, Price]:
    out = {}
    if not isinstance(data, dict):
        raise HillclimbError(f"{where}: expected {{model: {{prompt, completion}}}}")
    for model, v in data.items():
        if model not in MODEL_IDS:
            raise HillclimbError(f"{where}: unknown model {model!r} (expected one of {MODEL_IDS})")
        if not isinstance(v, dict) or set(v) - {"prompt", "completion"}:
            raise HillclimbError(
                f"{where}: {model} needs {{prompt, completion}} (credits per million tokens)"
            )
        try:
            price = Price(float(v.get("prompt", 0.0)), float(v.get("completion", 0.0)))
        except (TypeError, ValueError) as exc:
            raise HillclimbError(f"{where}: {model}: prices must be numbers") from exc
        if price.prompt < 0 or price.completion < 0:
            raise HillclimbError(f"{where}: {model}: prices must be >= 0")
        out[model] = price
    return out


def build_state(
    engines: dict[str, Any],
    *,
    db: UsageDB | str | Path = ":memory:",
    keys: list[KeySpec] | None = None,
    prices: dict[str, Price] | None = None,
    checkpoints: dict[str, str | Path] | None = None,
    router: Any | None = None,
    default_max_tokens: int = 1024,
    owns_engines: bool = True,
    speculative: bool = False,
    stream_interval: float | None = None,
) -> ServerState:
    """Assemble a server from loaded engines (ids `thinking` / `code-flash`).

    Prices default to `default_price(active parameters)` read from each checkpoint's config; when
    no checkpoint path is known and no price is given the model is free (price 0)."""
    if not engines:
        raise HillclimbError("serve needs at least one model (--thinking and/or --flash)")
    for name in engines:
        if name not in MODEL_IDS:
            raise HillclimbError(f"unknown model id {name!r}; expected {MODEL_IDS}")
    toks = [e.tokenizer for e in engines.values()]
    if len(toks) == 2 and toks[0].hf.to_str() != toks[1].hf.to_str():
        raise HillclimbError("thinking and code-flash must share one tokenizer")
    usage_db = db if isinstance(db, UsageDB) else UsageDB(db)
    released = usage_db.release_stale()
    if released:
        log.warning("refunded %d reservations left by a previous run", released)
    models = {}
    for name, eng in engines.items():
        ckpt = (checkpoints or {}).get(name)
        active = total = None
        if ckpt is not None:
            active, total = checkpoint_accounting(ckpt)
        if prices and name in prices:
            price = prices[name]
        elif active is not None:
            price = default_price(active)
        else:
            price = Price(0.0, 0.0)
        models[name] = ModelEntry(
            name,
            eng,
            price,
            str(ckpt) if ckpt else None,
            active,
            total,
            budget_note=_budget_conditioned(ckpt),
        )
    state = ServerState(
        models=models,
        db=usage_db,
        auth=Authenticator(usage_db, keys),
        router=router,
        default_max_tokens=default_max_tokens,
        owns_engines=owns_engines,
        speculative=speculative,
        stream_interval=stream_interval,
    )
    state.metrics.add_collector(engine_collector({k: m.engine for k, m in models.items()}))
    return state


def load_state(
    thinking: str | Path | None,
    flash: str | Path | None,
    *,
    db: str | Path = "hillclimb_usage.sqlite",
    keys_file: str | Path | None = None,
    env_keys: str | None = None,
    prices_file: str | Path | None = None,
    router_file: str | Path | None = None,
    max_batch: int = 16,
    device: str | None = None,
    speculative: bool = True,
    default_max_tokens: int = 1024,
    compile: bool | None = None,
    stream_interval: float | None = None,
    threads: int | None = None,
    engine_process: bool = False,
    log_level: str = "warning",
) -> ServerState:
    """Load checkpoints into engines (thinking verifies code-flash's drafts when both are given
    and `speculative`), then `build_state`. `engine_process`: the engines run in a child
    process (`hillclimb.serve.host`), so HTTP work and decode steps use separate cores."""
    from hillclimb.serve.auth import load_env_keys, load_keys_file
    from hillclimb.serve.host import EngineOptions, load_engines, start_engine_process

    if thinking is None and flash is None:
        raise HillclimbError("give --thinking DIR and/or --flash DIR")
    specs = load_keys_file(keys_file) if keys_file else []
    specs += load_env_keys(env_keys)
    prices = load_prices(prices_file) if prices_file else None
    opts = EngineOptions(
        max_batch=max_batch,
        device=device,
        speculative=speculative,
        compile=compile,
        threads=threads,
    )
    if engine_process:
        import torch

        engines, spec_on = start_engine_process(thinking, flash, opts, log_level=log_level)
        torch.set_num_threads(1)  # this process only tokenizes and serves HTTP
    else:
        engines, spec_on = load_engines(thinking, flash, opts)
    router = None
    if "code-flash" in engines and "thinking" in engines:
        try:
            from hillclimb.serve.router import Router
        except ModuleNotFoundError:  # pragma: no cover - router module not built yet
            if router_file:
                raise HillclimbError(
                    "--router given but hillclimb.serve.router is unavailable"
                ) from None
            log.warning("hillclimb.serve.router is unavailable: 'auto' routes to code-flash")
        else:
            flash_engine = engines["code-flash"]
            router = Router.load(router_file, flash_engine) if router_file else Router(flash_engine)
    ckpts = {k: v for k, v in (("thinking", thinking), ("code-flash", flash)) if v is not None}
    try:
        return build_state(
            engines,
            db=db,
            keys=specs,
            prices=prices,
            checkpoints=ckpts,
            router=router,
            default_max_tokens=default_max_tokens,
            speculative=spec_on,
            stream_interval=stream_interval,
        )
    except BaseException:
        for eng in engines.values():  # an engine process must not outlive a failed start
            eng.stop()
        raise


# ---- helpers ------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _sse(obj: Any) -> bytes:
    return f"data: {_json(obj)}\n\n".encode()


def _error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _finish(engine_reason: str | None) -> str:
    return engine_reason if engine_reason in ("stop", "length") else "stop"


class _Whitespace:
    """Streams a section with leading and trailing whitespace removed (like `str.strip()` on the
    whole), holding back trailing whitespace until non-space text follows."""

    def __init__(self) -> None:
        self.started = False
        self.pending = ""

    def feed(self, text: str) -> str:
        if not text:
            return ""
        if not self.started:
            text = text.lstrip()
            if not text:
                return ""
            self.started = True
        body = text.rstrip()
        if not body:
            self.pending += text
            return ""
        out = self.pending + body
        self.pending = text[len(body) :]
        return out


def _hold_prefix(buf: str, token: str) -> int:
    """Length of the longest suffix of `buf` that is a proper prefix of `token`."""
    for k in range(min(len(buf), len(token) - 1), 0, -1):
        if token.startswith(buf[-k:]):
            return k
    return 0


class _ChatChoice:
    """Turns one choice's token events into reasoning / content / tool-call deltas."""

    def __init__(self, index: int, parse_tools: bool, call_prefix: str):
        self.index = index
        self.parse_tools = parse_tools
        self.call_prefix = call_prefix
        self.reasoning_ws = _Whitespace()
        self.content_ws = _Whitespace()
        self.reasoning = ""
        self.content = ""
        self.tool_calls: list[dict[str, Any]] = []
        self.buf = ""  # content not yet emitted (tool-call parsing)
        self.in_call = False
        self.logprobs: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.reasoning_tokens = 0

    def feed(self, text: str, is_reasoning: bool) -> list[dict[str, Any]]:
        """Deltas (dicts with `reasoning_content`, `content` or `tool_calls`) for new text."""
        text = text.replace(THINK_START, "").replace(THINK_END, "")
        if is_reasoning:
            out = self.reasoning_ws.feed(text)
            self.reasoning += out
            return [{"reasoning_content": out}] if out else []
        return self._content(text, final=False)

    def close(self) -> list[dict[str, Any]]:
        return self._content("", final=True)

    def _emit_content(self, text: str) -> list[dict[str, Any]]:
        out = self.content_ws.feed(text)
        self.content += out
        return [{"content": out}] if out else []

    def _content(self, text: str, final: bool) -> list[dict[str, Any]]:
        if not self.parse_tools:
            return self._emit_content(text)
        from hillclimb.tokenizer.toolcalls import parse_call_json

        deltas: list[dict[str, Any]] = []
        self.buf += text
        while True:
            if self.in_call:
                end = self.buf.find(TOOL_CALL_END)
                if end < 0:
                    break
                body, self.buf = self.buf[:end], self.buf[end + len(TOOL_CALL_END) :]
                self.in_call = False
                i = len(self.tool_calls)
                call = parse_call_json(body, f"{self.call_prefix}_{i}")
                if call.name and call.error is None:
                    tc = {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.raw_arguments},
                    }
                    self.tool_calls.append(tc)
                    deltas.append({"tool_calls": [{"index": i, **tc}]})
                else:  # malformed: keep it visible as text rather than lose it
                    deltas += self._emit_content(f"{TOOL_CALL_START}{body}{TOOL_CALL_END}")
            else:
                start = self.buf.find(TOOL_CALL_START)
                if start >= 0:
                    deltas += self._emit_content(self.buf[:start])
                    self.buf = self.buf[start + len(TOOL_CALL_START) :]
                    self.in_call = True
                    continue
                hold = 0 if final else _hold_prefix(self.buf, TOOL_CALL_START)
                deltas += self._emit_content(self.buf[: len(self.buf) - hold])
                self.buf = self.buf[len(self.buf) - hold :]
                break
        if final and self.in_call:  # unterminated call (length limit): give back the raw text
            deltas += self._emit_content(TOOL_CALL_START + self.buf)
            self.buf = ""
            self.in_call = False
        return deltas


class _RawText:
    """Completion text from token events, with the `<think>`/`</think>` tags put back (the
    engine streams visible text and marks the reasoning side with `is_reasoning`)."""

    def __init__(self, think_start_id: int):
        self.think_start_id = think_start_id
        self.mode: bool | None = None
        self.saw_start = False

    def feed(self, ev: Any) -> str:
        if self.think_start_id in ev.token_ids:
            self.saw_start = True
        if not ev.text:
            return ""
        prefix = ""
        if self.mode is None:
            prefix = THINK_START if ev.is_reasoning and self.saw_start else ""
        elif ev.is_reasoning != self.mode:
            prefix = THINK_START if ev.is_reasoning else THINK_END
        self.mode = ev.is_reasoning
        return prefix + ev.text


def _merge_deltas(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent text deltas of the same kind merged (fewer SSE chunks, same concatenation)."""
    out: list[dict[str, Any]] = []
    for d in deltas:
        if out and set(d) == set(out[-1]) and set(d) <= {"content", "reasoning_content"}:
            k = next(iter(d))
            out[-1] = {k: out[-1][k] + d[k]}
        else:
            out.append(dict(d))
    return out


# ---- a request in flight ----------------------------------------------------------------------------
class _Job:
    """The engine requests of one HTTP request (one per choice), their event stream, and the
    accounting that must be settled exactly once."""

    def __init__(
        self,
        state: ServerState,
        entry: ModelEntry,
        request_id: str,
        endpoint: str,
        requested_model: str,
        account: Any,
        t0: float,
    ):
        self.state = state
        self.entry = entry
        self.request_id = request_id
        self.endpoint = endpoint
        self.requested_model = requested_model
        self.account = account
        self.t0 = t0
        self.handles: list[Any] = []
        self.prompt_lens: list[int] = []
        self.distinct_prompt_tokens = 0
        self.n = 1  # choices per prompt (the first choice of each prompt counts its healing)
        self.tasks: list[asyncio.Task] = []
        self.reserved = False
        self.finalized = False
        self.first_token_at: float | None = None
        self.outputs: dict[int, Any] = {}  # choice index -> GenerationOutput
        self.counts: dict[int, list[int]] = {}  # choice -> [completion, reasoning] (fallback)
        self.finish: dict[int, str] = {}

    # accounting
    def reserve(self, prompt_tokens_total: int, max_new_total: int) -> None:
        max_cost = self.entry.price.cost_micro(prompt_tokens_total, max_new_total)
        try:
            self.state.db.reserve(
                self.request_id,
                self.account,
                self.endpoint,
                self.requested_model,
                self.entry.id,
                max_cost,
            )
        except InsufficientCredits as exc:
            self.state.metrics.credits_refused.inc()
            raise APIError(
                402, str(exc), "insufficient_quota", None, "insufficient_credits"
            ) from None
        self.reserved = True

    def submit(self, prompts: list[list[int]], params: list[Any]) -> None:
        eng = self.entry.engine
        for i, (ids, p) in enumerate(zip(prompts, params, strict=True)):
            self.handles.append(eng.submit(ids, p, request_id=f"{self.request_id}-{i}"))
            self.prompt_lens.append(len(ids))
            self.counts[i] = [0, 0]

    async def batches(self, stream: bool = False) -> AsyncIterator[list[tuple[int, Any]]]:
        """Lists of (choice index, TokenEvent), as they arrive: everything already delivered by
        the engine is drained at once, so under load one SSE write carries many tokens. With
        `stream`, a batch after the first waits out `state.flush_interval` since the last."""
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        last: float | None = None

        async def pump(i: int, h: Any) -> None:
            try:
                async for ev in h.aiter():
                    queue.put_nowait((i, ev))
            except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
                queue.put_nowait((i, exc))
                return
            queue.put_nowait((i, None))

        self.tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(self.handles)]
        left = len(self.handles)
        while left:
            items = [await queue.get()]
            if stream and last is not None:
                wait = last + self.state.flush_interval(self.entry) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            while not queue.empty():
                items.append(queue.get_nowait())
            batch = []
            for i, ev in items:
                if ev is None:
                    left -= 1
                elif isinstance(ev, BaseException):
                    raise ev
                else:
                    self._count(i, ev)
                    batch.append((i, ev))
            if batch:
                last = loop.time()
                yield batch

    async def events(self) -> AsyncIterator[tuple[int, Any]]:
        """(choice index, TokenEvent) from every engine request, as they arrive."""
        async for batch in self.batches():
            for item in batch:
                yield item

    def _count(self, i: int, ev: Any) -> None:
        if ev.token_ids and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
            self.state.metrics.ttft.observe(self.entry.id, value=self.first_token_at - self.t0)
        c = self.counts[i]
        c[0] += len(ev.token_ids)
        if ev.is_reasoning:
            c[1] += len(ev.token_ids)
        if ev.finished:
            self.finish[i] = ev.finish_reason or "stop"

    async def collect_outputs(self) -> None:
        """GenerationOutputs of the finished engine requests (exact usage, spec, timings)."""
        for i, h in enumerate(self.handles):
            if i in self.outputs or i not in self.finish:
                continue
            try:
                self.outputs[i] = await asyncio.to_thread(h.result, 30.0)
            except Exception:  # the stream already ended; fall back to our own counts
                log.exception("request %s: no result for choice %d", self.request_id, i)

    def usage(self) -> tuple[int, int, int]:
        completion = reasoning = 0
        for i in range(len(self.handles)):
            out = self.outputs.get(i)
            if out is not None:
                completion += out.completion_tokens
                reasoning += out.reasoning_tokens
            else:
                completion += self.counts[i][0]
                reasoning += self.counts[i][1]
        # token healing backs up prompt tokens: they are prefilled by no one and re-generated
        # (counted as completion tokens), so the prompt count drops by as many, once per prompt
        healed = sum(
            getattr(self.outputs.get(i), "healed_tokens", 0) or 0
            for i in range(0, len(self.handles), self.n)
        )
        return self.distinct_prompt_tokens - healed, completion, reasoning

    def spec_summary(self) -> dict[str, Any] | None:
        specs = [o.spec for o in self.outputs.values() if getattr(o, "spec", None)]
        if not specs:
            return None
        drafted = sum(s.get("drafted", 0) for s in specs)
        accepted = sum(s.get("accepted", 0) for s in specs)
        steps = sum(s.get("steps", 0) for s in specs)
        return {
            "drafted": drafted,
            "accepted": accepted,
            "steps": steps,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "mean_accept_len": (accepted + steps) / steps if steps else 0.0,
        }

    async def finalize(self, status: int) -> None:
        if self.finalized:
            return
        self.finalized = True
        for t in self.tasks:
            t.cancel()
        for h in self.handles:
            try:
                h.cancel()
            except Exception:
                log.exception("cancel %s", self.request_id)
        self.state.metrics.inflight.add(amount=-1)
        prompt, completion, reasoning = self.usage()
        m = self.state.metrics
        mid = self.entry.id
        m.requests.inc(self.endpoint, mid, str(status))
        m.prompt_tokens.inc(mid, amount=prompt)
        m.completion_tokens.inc(mid, amount=completion)
        m.reasoning_tokens.inc(mid, amount=reasoning)
        m.latency.observe(self.endpoint, mid, value=time.perf_counter() - self.t0)
        if self.reserved:
            finish = ",".join(sorted(set(self.finish.values()))) or "cancelled"
            cost = self.entry.price.cost_micro(prompt, completion)
            try:
                self.state.db.settle(
                    self.request_id,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    reasoning_tokens=reasoning,
                    cost_micro=cost,
                    finish_reason=finish,
                    http_status=status,
                )
            except Exception:
                log.exception("settling %s", self.request_id)


class _JobStreamingResponse(StreamingResponse):
    """A StreamingResponse that always finalizes its job (disconnects included)."""

    def __init__(self, content: AsyncIterator[bytes], job: _Job, headers: dict[str, str]):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            closed = not self.job.finish or len(self.job.finish) < len(self.job.handles)
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await self.job.finalize(499 if closed else 200)


# ---- the app --------------------------------------------------------------------------------------
def create_app(state: ServerState) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_engines()
        try:
            yield
        finally:
            if state.owns_engines:
                state.stop_engines()

    app = FastAPI(
        title="hillclimb",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.hillclimb = state

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("unhandled error on %s", request.url.path)
        return _error_response(
            APIError(500, "The server had an error while processing your request.", "server_error")
        )

    @app.exception_handler(404)
    async def _not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(
            APIError(
                404,
                f"Unknown route {request.method} {request.url.path}",
                "invalid_request_error",
                None,
                "not_found",
            )
        )

    @app.exception_handler(405)
    async def _bad_method(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(
            APIError(
                405,
                f"Method {request.method} not allowed on {request.url.path}",
                "invalid_request_error",
                None,
                "method_not_allowed",
            )
        )

    def authorize(request: Request, endpoint: str) -> Any:
        try:
            account = state.auth.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            state.metrics.requests.inc(endpoint, "-", "401")
            raise APIError(
                401, str(exc), "invalid_request_error", None, "invalid_api_key"
            ) from None
        wait = state.auth.retry_after(account)
        if wait > 0:
            state.metrics.rate_limited.inc()
            state.metrics.requests.inc(endpoint, "-", "429")
            raise APIError(
                429,
                f"Rate limit reached for key {account.name!r} "
                f"({account.rate_limit_rpm:g} requests per minute). Try again in "
                f"{wait:.1f}s.",
                "requests",
                None,
                "rate_limit_exceeded",
                headers={"Retry-After": retry_after_header(wait)},
            )
        return account

    async def read_body(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise APIError(
                413,
                f"Request body too large (limit {MAX_BODY_BYTES} bytes).",
                "invalid_request_error",
                None,
                "request_too_large",
            )
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise APIError(
                413,
                f"Request body too large (limit {MAX_BODY_BYTES} bytes).",
                "invalid_request_error",
                None,
                "request_too_large",
            )
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise invalid(
                "We could not parse the JSON body of your request. (HINT: This likely "
                "means you aren't using your HTTP library correctly. The OpenAI API "
                "expects a JSON payload.)"
            ) from None

    def engine_health() -> dict[str, Any]:
        models = {}
        for mid, m in state.models.items():
            try:
                models[mid] = {"ok": True, **_small_stats(m.engine.stats())}
            except Exception as exc:
                models[mid] = {"ok": False, "error": str(exc)}
        return models

    # Engine stats can be a call to the engine process: off the event loop, so a slow answer
    # never stalls the streams.
    @app.get("/health")
    async def health() -> JSONResponse:
        models = await asyncio.to_thread(engine_health)
        ok = all(v["ok"] for v in models.values())
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "models": models,
                "auth": "open" if state.open_mode else "keys",
                "speculative": state.speculative,
                "uptime_s": round(time.time() - state.started, 3),
            },
            status_code=200 if ok else 503,
        )

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = await asyncio.to_thread(state.metrics.render)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        try:
            authorize(request, "models")
        except APIError as err:
            return _error_response(err)
        return JSONResponse(
            {"object": "list", "data": [_model_card(state, m) for m in state.model_ids()]}
        )

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: Request) -> Response:
        try:
            authorize(request, "models")
            if model_id not in state.model_ids():
                raise _unknown_model(model_id, state)
        except APIError as err:
            return _error_response(err)
        return JSONResponse(_model_card(state, model_id))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _handle(state, request, "completions", authorize, read_body)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _handle(state, request, "chat", authorize, read_body)

    return app


def _small_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if isinstance(v, int | float | str | bool)}


def _model_card(state: ServerState, mid: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "id": mid,
        "object": "model",
        "created": int(state.started),
        "owned_by": "hillclimb",
    }
    if mid == AUTO:
        card["hillclimb"] = {"routes_to": [m for m in MODEL_IDS if m in state.models]}
        return card
    m = state.models[mid]
    card["max_model_len"] = m.engine.max_context
    card["hillclimb"] = {
        "checkpoint": m.checkpoint,
        "active_params": m.active_params,
        "total_params": m.total_params,
        "price_per_million_tokens": {"prompt": m.price.prompt, "completion": m.price.completion},
        "speculative_draft": "code-flash" if (state.speculative and mid == "thinking") else None,
    }
    return card


def _unknown_model(model: str, state: ServerState) -> APIError:
    return APIError(
        404,
        f"The model '{model}' does not exist or you do not have access to it. "
        f"Available: {', '.join(state.model_ids())}.",
        "invalid_request_error",
        "model",
        "model_not_found",
    )


async def _handle(
    state: ServerState, request: Request, endpoint: str, authorize: Any, read_body: Any
) -> Response:
    t0 = time.perf_counter()
    job: _Job | None = None
    model_label = "-"
    try:
        account = authorize(request, endpoint)
        body = await read_body(request)
        if endpoint == "chat":
            req = parse_request(ChatCompletionRequest, body)
        else:
            req = parse_request(CompletionRequest, body)
        if req.model not in state.model_ids():
            raise _unknown_model(req.model, state)
        tok = state.tokenizer
        if endpoint == "chat":
            prompts, messages = _chat_prompt(req, tok), message_dicts(req)
        else:
            prompts, messages = _completion_prompts(req, tok), None
        entry, decision = await _resolve(state, req.model, prompts[0], messages)
        if endpoint == "chat" and entry.budget_note:
            budget = resolve_budget(
                req.reasoning_effort, req.thinking_token_budget, entry.engine.max_context
            )
            if budget is not None:
                prompts = _chat_prompt(req, tok, budget)
        model_label = entry.id
        max_new = _max_tokens(state, entry, req, prompts, endpoint)
        params = _sampling_params(req, max_new, entry)
        rid = ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        job = _Job(state, entry, rid, endpoint, req.model, account, t0)
        state.metrics.inflight.add(amount=1)
        if len(prompts) * req.n > MAX_CHOICES:
            raise invalid(f"at most {MAX_CHOICES} choices per request (prompts × n).", "n")
        job_prompts = [p for p in prompts for _ in range(req.n)]
        job_params = [params[i % req.n] for i in range(len(job_prompts))]
        job.distinct_prompt_tokens = sum(len(p) for p in prompts)
        job.n = req.n
        job.reserve(job.distinct_prompt_tokens, max_new * len(job_prompts))
        try:
            job.submit(job_prompts, job_params)
        except HillclimbError as exc:
            raise invalid(str(exc)) from None
        headers = {"x-request-id": rid}
        extra: dict[str, Any] = {"requested_model": req.model}
        if decision is not None:
            headers[ROUTED_HEADER] = entry.id
            extra.update(
                routed_to=entry.id,
                score=decision.score,
                threshold=decision.threshold,
                reason=decision.reason,
                features=getattr(decision, "features", None) or {},
            )
        if req.stream:
            gen = (
                _stream_chat(job, req, extra, prompts)
                if endpoint == "chat"
                else _stream_completion(job, req, extra, prompts)
            )
            return _JobStreamingResponse(gen, job, headers)
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        try:
            if endpoint == "chat":
                payload = await _collect_chat(job, req, extra)
            else:
                payload = await _collect_completion(job, req, extra, prompts)
        finally:
            watcher.cancel()
        if job.finish and all(f == "error" for f in job.finish.values()):
            raise APIError(500, "The engine failed while generating.", "server_error")
        if "cancelled" in job.finish.values():  # the client went away (or shutdown)
            await job.finalize(499)
            return Response(status_code=499)
        await job.finalize(200)
        return JSONResponse(payload, headers=headers)
    except APIError as err:
        if job is not None:
            await job.finalize(err.status)
        elif err.status not in (401, 429):  # those two are counted in authorize()
            state.metrics.requests.inc(endpoint, model_label, str(err.status))
        return _error_response(err)
    except HillclimbError as exc:
        if job is not None:
            await job.finalize(400)
        else:
            state.metrics.requests.inc(endpoint, model_label, "400")
        return _error_response(invalid(str(exc)))
    except Exception:
        log.exception("request failed")
        if job is not None:
            await job.finalize(500)
        else:
            state.metrics.requests.inc(endpoint, model_label, "500")
        return _error_response(
            APIError(500, "The server had an error while processing your request.", "server_error")
        )


async def _watch_disconnect(request: Request, job: _Job) -> None:
    """Cancel the engine requests of a non-streaming request whose client went away."""
    try:
        while True:
            await asyncio.sleep(0.25)
            if await request.is_disconnected():
                for h in job.handles:
                    h.cancel()
                return
    except asyncio.CancelledError:
        return


def _budget_conditioned(ckpt: str | Path | None) -> bool:
    if ckpt is None:
        return False
    from hillclimb.model.checkpoint import read_info

    try:
        return bool(read_info(ckpt).get("budget_conditioning"))
    except (OSError, HillclimbError):
        return False


def _chat_prompt(
    req: ChatCompletionRequest, tok: Any, budget: int | None = None
) -> list[list[int]]:
    kwargs: dict[str, Any] = {}
    ctk = req.chat_template_kwargs or {}
    if "enable_thinking" in ctk:
        kwargs["enable_thinking"] = bool(ctk["enable_thinking"])
    cont = bool(req.continue_final_message)
    try:
        # encode_chat keeps message text untrusted: "<|im_end|>" typed by a user stays text.
        msgs = message_dicts(req)
        if budget is not None:  # a budget-conditioned model reads its budget in the prompt
            msgs = with_budget_note(msgs, budget)
        ids = tok.encode_chat(
            msgs,
            tools=req.tools or None,
            add_generation_prompt=not cont,
            continue_final_message=cont,
            **kwargs,
        )
    except HillclimbError as exc:
        raise invalid(
            f"{exc}; cannot continue the final assistant message.", "continue_final_message"
        ) from None
    except Exception as exc:  # a template error is the request's fault (odd message shapes)
        raise invalid(
            f"could not render the messages with the chat template: {exc}", "messages"
        ) from None
    return [ids]


def _completion_prompts(req: CompletionRequest, tok: Any) -> list[list[int]]:
    p = req.prompt
    vocab = tok.vocab_size
    if isinstance(p, str):
        texts: list[str] | None = [p]
        ids_list = None
    elif p and isinstance(p[0], int):
        texts, ids_list = None, [list(p)]  # type: ignore[arg-type]
    elif p and isinstance(p[0], str):
        texts, ids_list = list(p), None  # type: ignore[arg-type]
    else:
        texts, ids_list = None, [list(x) for x in p]  # type: ignore[union-attr]
    if req.suffix is not None:
        if texts is None:
            raise invalid("suffix (fill-in-the-middle) needs a text prompt.", "suffix")
        texts = [fim_prompt(t, req.suffix) for t in texts]
    if texts is not None:
        ids_list = [tok.encode(t) for t in texts]
    assert ids_list is not None
    for ids in ids_list:
        if not ids:
            raise invalid("prompt must not be empty.", "prompt")
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise invalid(
                f"token id {bad[0]} is outside the vocabulary (size {vocab}).",
                "prompt",
                "invalid_value",
            )
    return ids_list


async def _resolve(
    state: ServerState, model: str, prompt_ids: list[int], messages: list[dict[str, Any]] | None
) -> tuple[ModelEntry, Any]:
    if model != AUTO:
        return state.models[model], None
    if state.router is None or len(state.models) < 2:
        from types import SimpleNamespace

        if len(state.models) < 2:
            target = next(iter(state.models))
            reason = f"only {target} is loaded"
        else:
            target = "code-flash"
            reason = "no router configured: code-flash is the default assistant"
        decision = SimpleNamespace(model=target, score=None, threshold=None, reason=reason)
        state.metrics.routed.inc(target)
        return state.models[target], decision
    decision = await asyncio.to_thread(state.router.decide, prompt_ids, messages)
    state.metrics.routed.inc(decision.model)
    log.info(
        "auto -> %s (score %.4f, threshold %.4f): %s",
        decision.model,
        decision.score,
        decision.threshold,
        decision.reason,
    )
    return state.models[decision.model], decision


def _max_tokens(
    state: ServerState, entry: ModelEntry, req: Any, prompts: list[list[int]], endpoint: str
) -> int:
    ctx = entry.engine.max_context
    longest = max(len(p) for p in prompts)
    param = "messages" if endpoint == "chat" else "prompt"
    if longest >= ctx:
        raise APIError(
            400,
            f"This model's maximum context length is {ctx} tokens. However, your "
            f"{param} resulted in {longest} tokens, which leaves no room for a "
            "completion. Please reduce the length of the " + param + ".",
            "invalid_request_error",
            param,
            "context_length_exceeded",
        )
    if req.max_tokens is None:
        default = 16 if endpoint == "completions" else state.default_max_tokens
        return min(default, ctx - longest)
    if req.max_tokens > ctx:
        raise invalid(
            f"max_tokens is too large: {req.max_tokens}. This model supports at most "
            f"{ctx} tokens of context (prompt + completion).",
            "max_tokens",
            "invalid_value",
        )
    if longest + req.max_tokens > ctx:
        raise APIError(
            400,
            f"This model's maximum context length is {ctx} tokens. However, you "
            f"requested {longest + req.max_tokens} tokens ({longest} in the {param}, "
            f"{req.max_tokens} in the completion). Please reduce the length of the "
            f"{param} or completion.",
            "invalid_request_error",
            param,
            "context_length_exceeded",
        )
    return req.max_tokens


def _sampling_params(req: Any, max_new: int, entry: ModelEntry) -> list[Any]:
    """One SamplingParams per choice (seeds differ per choice: seed + i)."""
    from hillclimb.serve.engine import SamplingParams

    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if isinstance(req, ChatCompletionRequest):
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
    else:
        logprobs = req.logprobs
    top_k = req.top_k if req.top_k is not None and req.top_k > 0 else 0
    prediction = None
    if req.prediction is not None:  # the text, checked by `api.prediction_text`
        prediction = entry.engine.tokenizer.encode(req.prediction)
        ctx = entry.engine.max_context
        if len(prediction) > ctx:
            raise invalid(
                f"prediction.content is too long: {len(prediction)} tokens, more than "
                f"this model's context ({ctx}).",
                "prediction.content",
                "invalid_value",
            )
    out = []
    for i in range(req.n):
        seed = None if req.seed is None else (req.seed + i) % (2**63)
        p = SamplingParams(
            max_tokens=max_new,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=top_k,
            seed=seed,
            stop=stops,
            ignore_eos=req.ignore_eos,
            logprobs=logprobs,
            reasoning_effort=req.reasoning_effort,
            thinking_token_budget=req.thinking_token_budget,
            drafter=req.drafter,
            prediction=prediction,
            # completions only (None = the model's default); chat prompts end in the template
            token_healing=(False if isinstance(req, ChatCompletionRequest) else req.token_healing),
        )
        try:
            p.validate()
        except HillclimbError as exc:
            raise invalid(str(exc)) from None
        out.append(p)
    return out


def _hillclimb_field(job: _Job, extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(extra)
    out["model"] = job.entry.id
    spec = job.spec_summary()
    if spec:
        out["speculative"] = spec
    if job.outputs:
        first = job.outputs[min(job.outputs)]
        timings = getattr(first, "timings", None)
        if timings:
            out["timings"] = timings
    return out


# ---- chat -----------------------------------------------------------------------------------------
def _parse_tools(req: ChatCompletionRequest) -> bool:
    return bool(req.tools) and req.tool_choice != "none"


def _chat_logprobs(ev_logprobs: list[dict[str, Any]] | None, tok: Any) -> list[dict[str, Any]]:
    """Engine logprob records → OpenAI chat `logprobs.content` entries."""
    out = []
    for rec in ev_logprobs or []:
        text = rec.get("token") if rec.get("token") is not None else tok.decode([rec["token_id"]])
        tops = []
        for alt in rec.get("top_logprobs") or rec.get("top") or []:
            at = alt.get("token") if alt.get("token") is not None else tok.decode([alt["token_id"]])
            tops.append(
                {"token": at, "logprob": float(alt["logprob"]), "bytes": list(at.encode("utf-8"))}
            )
        out.append(
            {
                "token": text,
                "logprob": float(rec["logprob"]),
                "bytes": list(text.encode("utf-8")),
                "top_logprobs": tops,
            }
        )
    return out


async def _collect_chat(job: _Job, req: ChatCompletionRequest, extra: dict[str, Any]) -> dict:
    tok = job.entry.engine.tokenizer
    choices = [
        _ChatChoice(i, _parse_tools(req), f"call_{job.request_id[-8:]}_{i}")
        for i in range(len(job.handles))
    ]
    async for i, ev in job.events():
        c = choices[i]
        c.feed(ev.text, ev.is_reasoning)
        if req.logprobs:
            c.logprobs += _chat_logprobs(ev.logprobs, tok)
    for c in choices:
        c.close()
    await job.collect_outputs()
    out_choices = []
    for c in choices:
        finish = _finish(job.finish.get(c.index))
        msg: dict[str, Any] = {
            "role": "assistant",
            "content": c.content or None,
            "reasoning_content": c.reasoning or None,
        }
        if c.tool_calls:
            msg["tool_calls"] = c.tool_calls
            if finish == "stop":
                finish = "tool_calls"
        elif msg["content"] is None:
            msg["content"] = ""
        out_choices.append(
            {
                "index": c.index,
                "message": msg,
                "logprobs": {"content": c.logprobs} if req.logprobs else None,
                "finish_reason": finish,
            }
        )
    return _envelope(job, "chat.completion", out_choices, extra)


def _envelope(
    job: _Job, obj: str, choices: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """The OpenAI response object around `choices` (shared by chat and text completions)."""
    prompt, completion, reasoning = job.usage()
    return {
        "id": job.request_id,
        "object": obj,
        "created": int(time.time()),
        "model": job.entry.id,
        "choices": choices,
        "usage": _usage(prompt, completion, reasoning),
        "system_fingerprint": None,
        "hillclimb": _hillclimb_field(job, extra),
    }


async def _stream_end(
    job: _Job, base: dict[str, Any], include_usage: bool, extra: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The end of every stream: wait for the outputs, the optional usage chunk, `[DONE]`."""
    await job.collect_outputs()
    if include_usage:
        prompt, completion, reasoning = job.usage()
        yield _sse(
            {
                **base,
                "choices": [],
                "usage": _usage(prompt, completion, reasoning),
                "hillclimb": _hillclimb_field(job, extra),
            }
        )
    yield b"data: [DONE]\n\n"


def _stream_failure(job: _Job, exc: Exception) -> bytes:
    """A failed stream ends with an OpenAI error object and `[DONE]` (headers are already sent)."""
    log.exception("stream %s failed", job.request_id)
    err = APIError(500, f"generation failed: {type(exc).__name__}", "server_error")
    return _sse(err.body()) + b"data: [DONE]\n\n"


async def _stream_chat(
    job: _Job, req: ChatCompletionRequest, extra: dict[str, Any], prompts: list[list[int]]
) -> AsyncIterator[bytes]:
    tok = job.entry.engine.tokenizer
    created = int(time.time())
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    base = {
        "id": job.request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": job.entry.id,
        "system_fingerprint": None,
    }

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> bytes:
        obj = {
            **base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }
        if include_usage:
            obj["usage"] = None
        return _sse(obj)

    choices = [
        _ChatChoice(i, _parse_tools(req), f"call_{job.request_id[-8:]}_{i}")
        for i in range(len(job.handles))
    ]
    try:
        yield b"".join(chunk(c.index, {"role": "assistant", "content": ""}) for c in choices)
        async for batch in job.batches(stream=True):
            out: list[bytes] = []
            pending: dict[int, list[dict[str, Any]]] = {}  # text deltas merged across events

            def flush(i: int, pending: dict = pending, out: list = out) -> None:
                for d in _merge_deltas(pending.pop(i, [])):
                    out.append(chunk(i, d))

            for i, ev in batch:
                c = choices[i]
                deltas = c.feed(ev.text, ev.is_reasoning)
                if ev.finished:
                    deltas += c.close()
                if req.logprobs and ev.logprobs:
                    flush(i)
                    lp = {"content": _chat_logprobs(ev.logprobs, tok)}
                    deltas = _merge_deltas(deltas) or [{}]
                    for j, d in enumerate(deltas):
                        out.append(chunk(i, d, logprobs=lp if j == 0 else None))
                else:
                    pending.setdefault(i, []).extend(deltas)
                if ev.finished:
                    flush(i)
                    if ev.finish_reason == "error":
                        raise RuntimeError("engine error")
                    finish = _finish(ev.finish_reason)
                    if c.tool_calls and finish == "stop":
                        finish = "tool_calls"
                    out.append(chunk(i, {}, finish))
            for i in list(pending):
                flush(i)
            if out:
                yield b"".join(out)
        async for tail in _stream_end(job, base, include_usage, extra):
            yield tail
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        yield _stream_failure(job, exc)


# ---- completions ----------------------------------------------------------------------------------
def _completion_logprobs(records: list[dict[str, Any]], tok: Any, offset0: int) -> dict[str, Any]:
    tokens, lps, tops, offsets = [], [], [], []
    pos = offset0
    for rec in records:
        t = rec.get("token") if rec.get("token") is not None else tok.decode([rec["token_id"]])
        tokens.append(t)
        lps.append(float(rec["logprob"]))
        alts = rec.get("top_logprobs") or rec.get("top") or []
        d = {}
        for a in alts:
            at = a.get("token") if a.get("token") is not None else tok.decode([a["token_id"]])
            d[at] = float(a["logprob"])
        tops.append(d if alts else None)
        offsets.append(pos)
        pos += len(t)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def _echo_text(req: CompletionRequest, prompts: list[list[int]], k: int, tok: Any) -> str:
    if isinstance(req.prompt, str):
        return req.prompt
    if req.prompt and isinstance(req.prompt[0], str):
        return req.prompt[k]  # type: ignore[return-value]
    return tok.decode(prompts[k])


async def _collect_completion(
    job: _Job, req: CompletionRequest, extra: dict[str, Any], prompts: list[list[int]]
) -> dict:
    tok = job.entry.engine.tokenizer
    texts = {i: "" for i in range(len(job.handles))}
    raw = {i: _RawText(tok.token_id(THINK_START)) for i in texts}
    records: dict[int, list[dict[str, Any]]] = {i: [] for i in texts}
    async for i, ev in job.events():
        texts[i] += raw[i].feed(ev)
        if req.logprobs is not None and ev.logprobs:
            records[i] += ev.logprobs
    await job.collect_outputs()
    choices = []
    for i in range(len(job.handles)):
        text = texts[i]
        out = job.outputs.get(i)
        if out is not None:
            text = out.text  # the engine's final text (stop strings removed)
        if req.echo:
            text = _echo_text(req, prompts, i // req.n, tok) + text
        lp = _completion_logprobs(records[i], tok, 0) if req.logprobs is not None else None
        choices.append(
            {"index": i, "text": text, "logprobs": lp, "finish_reason": _finish(job.finish.get(i))}
        )
    return _envelope(job, "text_completion", choices, extra)


async def _stream_completion(
    job: _Job, req: CompletionRequest, extra: dict[str, Any], prompts: list[list[int]]
) -> AsyncIterator[bytes]:
    tok = job.entry.engine.tokenizer
    created = int(time.time())
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    base = {
        "id": job.request_id,
        "object": "text_completion",
        "created": created,
        "model": job.entry.id,
        "system_fingerprint": None,
    }
    offsets = {i: 0 for i in range(len(job.handles))}
    raw = {i: _RawText(tok.token_id(THINK_START)) for i in offsets}

    def chunk(index: int, text: str, finish: str | None = None, logprobs: Any = None) -> bytes:
        obj = {
            **base,
            "choices": [
                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
            ],
        }
        if include_usage:
            obj["usage"] = None
        return _sse(obj)

    try:
        if req.echo:
            echo = []
            for i in range(len(job.handles)):
                t = _echo_text(req, prompts, i // req.n, tok)
                offsets[i] = len(t)
                echo.append(chunk(i, t))
            yield b"".join(echo)
        async for batch in job.batches(stream=True):
            out: list[bytes] = []
            pending: dict[int, str] = {}  # text merged across events (no logprobs)

            def flush(i: int, pending: dict = pending, out: list = out) -> None:
                text = pending.pop(i, "")
                if text:
                    out.append(chunk(i, text))

            for i, ev in batch:
                text = raw[i].feed(ev)
                if req.logprobs is not None and ev.logprobs:
                    flush(i)
                    lp = _completion_logprobs(ev.logprobs, tok, offsets[i])
                    offsets[i] += len(text)
                    out.append(chunk(i, text, logprobs=lp))
                elif text:
                    offsets[i] += len(text)
                    pending[i] = pending.get(i, "") + text
                if ev.finished:
                    flush(i)
                    if ev.finish_reason == "error":
                        raise RuntimeError("engine error")
                    out.append(chunk(i, "", _finish(ev.finish_reason)))
            for i in list(pending):
                flush(i)
            if out:
                yield b"".join(out)
        async for tail in _stream_end(job, base, include_usage, extra):
            yield tail
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        yield _stream_failure(job, exc)


# ---- running it -----------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """Run the app with uvicorn in a background thread (tests, `hillclimb chat`, benchmarks).

    A socket is bound before the thread starts, so the port is known and cannot be taken."""

    def __init__(
        self, state: ServerState, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ):
        import uvicorn

        self.state = state
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            create_app(state), log_level=log_level, access_log=False, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="hillclimb-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise HillclimbError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                raise HillclimbError("the server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def banner(state: ServerState, url: str) -> str:
    lines = [f"hillclimb serve: {url}/v1  (models: {', '.join(state.model_ids())})"]
    for mid, m in state.models.items():
        lines.append(
            f"  {mid}: {m.checkpoint or '(in memory)'}; context {m.engine.max_context}; "
            f"price/1M tokens prompt {m.price.prompt:.6g}, completion "
            f"{m.price.completion:.6g} credits"
        )
    if state.speculative:
        lines.append("  speculative decoding: code-flash drafts, thinking verifies")
    lines.append(f"  usage database: {state.db.path}")
    if state.open_mode:
        bar = "!" * 78
        lines += [
            bar,
            "!!  OPEN MODE: no API keys are configured. ANYONE who can reach this port can",
            "!!  use the models, without authentication, credits or rate limits.",
            "!!  For anything but local use, pass --keys FILE, set HILLCLIMB_API_KEYS, or",
            "!!  create keys with `hillclimb keys create --db DB --name NAME --credits C`.",
            bar,
        ]
    else:
        lines.append(f"  auth: API keys required ({state.db.count_accounts()} accounts)")
    return "\n".join(lines)


def serve_forever(state: ServerState, host: str, port: int, log_level: str = "info") -> None:
    import uvicorn

    url = f"http://{host}:{port}"
    print(banner(state, url), flush=True)
    uvicorn.run(
        create_app(state),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
