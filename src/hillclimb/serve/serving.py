"""The request flow chat and text completions share (vLLM's `serving_engine`).

In request order: authenticate the Bearer key (401) → take a rate-limit token (429) → read and
parse the body (413, 400: `api.py`) → resolve the model, routing `auto` through the Router (404
for an unknown id) → render the prompt (the endpoint's part: chat template, or the FIM prompt
when a completion carries `suffix`) and check it against the context (400
`context_length_exceeded`) → reserve the request's maximum cost (402) → submit one engine request
per choice → answer as JSON or SSE (the endpoint's part again) → settle the actual cost and
record metrics (`Job.finalize`).

Why an `Endpoint` object: the two endpoints differ only in how a request becomes prompts and
sampling options and how events become an answer; everything else — and every error path — is
written once in `handle`. Nothing a client sends can take the server down: `handle` catches
`APIError` (its own 4xx), `HillclimbError` (bad input the engine found: 400) and any other
exception (500, logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Generic

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from hillclimb.errors import HillclimbError
from hillclimb.serve.api import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    RequestT,
    invalid,
    parse_request,
)
from hillclimb.serve.auth import AuthError, retry_after_header
from hillclimb.serve.billing import Account
from hillclimb.serve.host import EngineUnavailable
from hillclimb.serve.job import Job, shutting_down
from hillclimb.serve.sampling import choice_seed
from hillclimb.serve.state import AUTO, ModelEntry, ServerState
from hillclimb.serve.streaming import JobStreamingResponse

if TYPE_CHECKING:
    from hillclimb.serve.router import RouteDecision
    from hillclimb.serve.sampling import SamplingParams
    from hillclimb.tokenizer.io import Tokenizer

log = logging.getLogger("hillclimb.serve")

ROUTED_HEADER = "x-hillclimb-routed-to"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CHOICES = 64  # engine requests one HTTP request may start (prompts × n)


class Endpoint(ABC, Generic[RequestT]):
    """What one OpenAI endpoint adds to the shared flow."""

    name = ""  # metrics label and the usage row's endpoint: "chat" | "completions"
    request_type: type[RequestT]
    id_prefix = ""  # of the response id
    prompt_param = ""  # the field a context-length error names

    @abstractmethod
    def prompts(
        self, req: RequestT, tok: Tokenizer
    ) -> tuple[list[list[int]], list[dict[str, Any]] | None]:
        """Token ids per prompt, and the messages the router reads (None: only the ids)."""

    def is_fim(self, req: RequestT, tok: Tokenizer, prompts: list[list[int]]) -> bool:
        """Whether the request asks for fill-in-the-middle (`auto` then serves it with
        code-flash without scoring it; default: no)."""
        return False

    def for_model(
        self, req: RequestT, tok: Tokenizer, entry: ModelEntry, prompts: list[list[int]]
    ) -> list[list[int]]:
        """The prompts for the model the request resolved to (default: unchanged)."""
        return prompts

    def thinking_limits(self, req: RequestT, entry: ModelEntry) -> tuple[str | None, int | None]:
        """(reasoning_effort, thinking_token_budget) for the engine: the hard cap on thinking
        (default: as the request asks)."""
        return req.reasoning_effort, req.thinking_token_budget

    @abstractmethod
    def default_max_tokens(self, state: ServerState) -> int: ...

    @abstractmethod
    def logprobs(self, req: RequestT) -> int | None:
        """Top alternatives to report per token; None: no logprobs."""

    @abstractmethod
    def token_healing(self, req: RequestT) -> bool | None: ...

    def banned_tokens(self, req: RequestT, tok: Tokenizer) -> list[int] | None:
        """Token ids the engine must never sample for this request (default: none)."""
        return None

    def guided_tools(self, req: RequestT, tok: Tokenizer) -> list[dict[str, Any]] | None:
        """Tool schemas the engine decodes `<tool_call>` bodies under (default: none)."""
        return None

    def require_tool_call(self, req: RequestT) -> bool:
        """Whether the answer must call a tool (default: no)."""
        return False

    @abstractmethod
    def flywheel_request(self, req: RequestT) -> dict[str, Any] | None:
        """What the flywheel keeps of the request (only for accounts that opted in)."""
        return None

    async def collect(self, job: Job, req: RequestT, prompts: list[list[int]]) -> dict[str, Any]:
        """The whole answer as one JSON object."""

    @abstractmethod
    def stream(self, job: Job, req: RequestT, prompts: list[list[int]]) -> AsyncIterator[bytes]:
        """The answer as SSE bytes."""


# vLLM's floor for a reported logprob: a token the sampler had masked out (token healing's
# constraint on the first tokens, top-k / top-p) has -inf, which JSON cannot carry (the plain
# answer failed with a 500, a stream sent `-Infinity`, which no JSON parser reads)
MIN_LOGPROB = -9999.0


def logprob_value(value: float) -> float:
    """A logprob as a finite JSON number (`MIN_LOGPROB` for -inf or NaN)."""
    v = float(value)
    return v if math.isfinite(v) else MIN_LOGPROB


def token_text(rec: dict[str, Any], tok: Tokenizer) -> str:
    """The text of an engine logprob record's token (decoded when the record has none)."""
    text = rec.get("token")
    return text if text is not None else tok.decode([rec["token_id"]])


def record_bytes(rec: dict[str, Any], tok: Tokenizer) -> bytes:
    """The bytes of an engine logprob record's token: the token's own bytes, so the tokens of a
    character split across tokens join into its UTF-8 (each one's text alone is U+FFFD, whose
    bytes would not). A record whose text token healing cut (`Engine._unheal_record`: the part
    repeating the prompt removed) gets the matching tail of those bytes. Falls back to the
    UTF-8 of its text (special tokens have no byte form)."""
    text = token_text(rec, tok)
    tid = rec.get("token_id")
    if not (isinstance(tid, int) and 0 <= tid < tok.vocab_size and tok.token_raw_bytes[tid]):
        return text.encode("utf-8")
    raw = tok.token_raw_bytes[tid]
    for k in range(len(raw) + 1):
        if raw[k:].decode("utf-8", errors="replace") == text:
            return raw[k:]
    return raw


def escape_token_bytes(raw: bytes) -> str:
    """OpenAI's spelling of a token that is not valid UTF-8: "bytes:" then printable ASCII as
    itself and every other byte (and the backslash) as \\xNN, e.g. "bytes:\\xe2\\x80". Why:
    such tokens all decode to U+FFFD, so completions' `top_logprobs` dict lost all but one of
    them and chat entries could not be told apart. One-to-one on byte strings."""
    return "bytes:" + "".join(
        chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw
    )


def spelt_bytes(token: str) -> bytes:
    """The bytes a logprob token string stands for: the inverse of `token_repr`'s spelling
    (plain text is its UTF-8). Why: with "bytes:" tokens, `"".join(tokens)` is no longer the
    text; `b"".join(map(spelt_bytes, tokens)).decode("utf-8", "replace")` is."""
    if not token.startswith("bytes:"):
        return token.encode("utf-8")
    body = token[len("bytes:") :]
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), body).encode("latin-1")


def token_repr(rec: dict[str, Any], tok: Tokenizer) -> tuple[str, bytes]:
    """(the token string a logprob entry shows, its bytes). Valid UTF-8 shows as its text;
    bytes that are not (the text holds U+FFFD that the bytes do not) show as
    `escape_token_bytes`, as does a text that itself begins with "bytes:" (so the two forms
    cannot collide)."""
    text = token_text(rec, tok)
    raw = record_bytes(rec, tok)
    if "\ufffd" not in text and not text.startswith("bytes:"):
        return text, raw
    try:
        valid = raw.decode("utf-8") == text
    except UnicodeDecodeError:
        valid = False
    if valid and not text.startswith("bytes:"):
        return text, raw  # a real U+FFFD character
    return escape_token_bytes(raw), raw


def top_alternatives(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """An engine logprob record's top alternatives (either key the engine may use)."""
    return rec.get("top_logprobs") or rec.get("top") or []


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def server_error() -> APIError:
    return APIError(500, "The server had an error while processing your request.", "server_error")


def engine_unavailable(exc: Exception) -> APIError:
    return APIError(
        503,
        f"The model's engine is not available ({exc}); try again later.",
        "server_error",
        None,
        "engine_unavailable",
    )


def unknown_model(model: str, state: ServerState) -> APIError:
    # the id as sent, cut: a 10 MB `model` string was echoed back whole in the 404 (and logs)
    shown = model if len(model) <= 200 else model[:200] + f"… ({len(model)} characters)"
    return APIError(
        404,
        f"The model '{shown}' does not exist or you do not have access to it. "
        f"Available: {', '.join(state.model_ids())}.",
        "invalid_request_error",
        "model",
        "model_not_found",
    )


def authorize(state: ServerState, request: Request, endpoint: str) -> Account | None:
    """The request's account (None in open mode); 401 / 429 are counted here."""
    try:
        account = state.auth.authenticate(request.headers.get("authorization"))
    except AuthError as exc:
        state.metrics.requests.inc(endpoint, "-", "401")
        raise APIError(401, str(exc), "invalid_request_error", None, "invalid_api_key") from None
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


def _too_large() -> APIError:
    return APIError(
        413,
        f"Request body too large (limit {MAX_BODY_BYTES} bytes).",
        "invalid_request_error",
        None,
        "request_too_large",
    )


def _bad_json(exc: ValueError) -> APIError:
    """OpenAI's message, plus what was wrong and where: a body that is not UTF-8 (a Latin-1
    client, a binary upload) and a JSON syntax error both got only the generic hint, which
    left the client guessing which byte to look at."""
    if isinstance(exc, UnicodeDecodeError):
        detail = (
            f"The body is not valid UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); send the JSON encoded as UTF-8."
        )
    elif isinstance(exc, json.JSONDecodeError):
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})."
    else:  # an integer literal longer than Python converts
        detail = str(exc).split(";")[0] + "."
    return invalid(
        "We could not parse the JSON body of your request. (HINT: This likely "
        "means you aren't using your HTTP library correctly. The OpenAI API "
        f"expects a JSON payload.) {detail}"
    )


# a JSON `\uD800`..`\uDFFF` escape: the only way a surrogate gets into a decoded UTF-8 body
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _utf8_text(raw: bytes) -> str:
    """The body as text: UTF-8, a leading BOM dropped; anything else is a 400 naming it.

    Why one rule: `json.loads` on bytes guesses UTF-16/32 from NUL bytes, so a UTF-16 body was
    served while a Latin-1 one was refused as "not UTF-8". JSON over HTTP is UTF-8 (RFC 8259
    §8.1); the encoding the guess finds is named in the refusal so the client knows what to fix
    (a body that is not UTF-8 otherwise gets the offending byte, `_bad_json`)."""
    if 0 in raw[:4]:  # JSON text starts with ASCII: NULs among its first bytes mean UTF-16/32
        guess = json.detect_encoding(raw)
        detail = (
            f"The body is encoded as {guess.upper()}; JSON over HTTP must be UTF-8 (RFC 8259 "
            "section 8.1)."
            if guess != "utf-8"
            else "The body starts with NUL bytes, which UTF-8 JSON never holds."
        )
        raise invalid(
            "We could not parse the JSON body of your request. "
            f"{detail} Send the JSON encoded as UTF-8."
        )
    return raw.decode("utf-8-sig")  # offsets of a decoding error count the BOM's bytes


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether any string (key or value) in a decoded JSON value holds a lone UTF-16 surrogate.
    Iterative: the nesting depth is the client's."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


class _DuplicateKey(ValueError):
    """A JSON object names one key twice (`_unique_keys`)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`' object hook that refuses a key given twice.

    Why: the decoder silently keeps the last value, so `{"max_tokens": 2, "max_tokens": 4000}`
    was served (and billed) as 4000, while a proxy, a gateway's validator or a log reader that
    keeps the first value saw 2 — one body, two meanings. OpenAI-style: a 400 naming the key."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


def _client_gone() -> APIError:
    """The client closed the connection before its body arrived: nothing to answer, counted as
    499 like a stream the client closed (it was a 500 and a logged traceback)."""
    return APIError(499, "The client closed the request.", "invalid_request_error", None, None)


async def read_body(request: Request) -> Any:
    """The decoded JSON body, or 413 / 400. Read in chunks so a body without (or lying about)
    its Content-Length is refused at the limit instead of being buffered whole; a body nested
    deeper than the JSON decoder recurses, or with a lone surrogate escape (`"\\ud800"`: valid
    JSON, not text — it cannot be tokenized, stored in SQLite or even echoed back in an error
    message), an integer longer than Python parses (4300 digits) or a key given twice in one
    object is a 400, not a 500; a client that hangs up mid-body is a 499."""
    length = request.headers.get("content-length") or ""
    if length.isascii() and length.isdigit() and (len(length) > 12 or int(length) > MAX_BODY_BYTES):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        raise _client_gone() from None
    raw = b"".join(chunks)
    try:
        body = json.loads(_utf8_text(raw), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        # as text that can be echoed back: a key may hold a lone surrogate escape
        key = str(exc)[:200].encode("utf-8", "backslashreplace").decode("utf-8")
        raise invalid(
            f"The JSON body of your request names the key '{key}' more than once; send each "
            "key once.",
            key,
            "duplicate_key",
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer > 4300 digits
        raise _bad_json(exc) from None
    except RecursionError:
        raise invalid("The JSON body of your request is nested too deeply.") from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise invalid(
            "The JSON body of your request contains an unpaired UTF-16 surrogate escape "
            "(\\ud800-\\udfff); strings must be valid Unicode."
        )
    return body


async def handle(state: ServerState, request: Request, endpoint: Endpoint[Any]) -> Response:
    """One chat or completion request, from the HTTP request to the response."""
    t0 = time.perf_counter()
    job: Job | None = None
    model_label = "-"
    try:
        account = authorize(state, request, endpoint.name)
        req = parse_request(endpoint.request_type, await read_body(request))
        if req.model not in state.model_ids():
            raise unknown_model(req.model, state)
        tok = state.tokenizer
        prompts, messages = endpoint.prompts(req, tok)
        fim = req.model == AUTO and endpoint.is_fim(req, tok, prompts)
        entry, decision = await resolve_model(state, req.model, prompts[0], messages, fim=fim)
        prompts = endpoint.for_model(req, tok, entry, prompts)
        model_label = entry.id
        max_new = max_tokens(state, entry, req, prompts, endpoint)
        params = sampling_params(req, max_new, entry, endpoint, cache_scope(account, req))
        rid = endpoint.id_prefix + uuid.uuid4().hex[:24]
        job = Job(state, entry, rid, endpoint.name, req.model, account, t0)
        job.flywheel_request = endpoint.flywheel_request(req)
        state.metrics.inflight.add(amount=1)
        if len(prompts) * req.n > MAX_CHOICES:
            raise invalid(
                f"at most {MAX_CHOICES} choices per request (prompts × n).", "n", "invalid_value"
            )
        job_prompts = [p for p in prompts for _ in range(req.n)]
        job_params = [params[i % req.n] for i in range(len(job_prompts))]
        job.distinct_prompt_tokens = sum(len(p) for p in prompts)
        job.n = req.n
        job.reserve(job.distinct_prompt_tokens, max_new * len(job_prompts))
        try:
            job.submit(job_prompts, job_params)
        except EngineUnavailable:
            raise
        except HillclimbError as exc:
            raise invalid(str(exc)) from None
        headers = {"x-request-id": rid}
        job.extra = {"requested_model": req.model}
        if decision is not None:
            headers[ROUTED_HEADER] = entry.id
            job.extra.update(
                routed_to=entry.id,
                score=decision.score,
                threshold=decision.threshold,
                reason=decision.reason,
                features=getattr(decision, "features", None) or {},
            )
        if req.stream:
            return JobStreamingResponse(endpoint.stream(job, req, prompts), job, headers)
        watcher = asyncio.create_task(job.watch_disconnect(request))
        try:
            payload = await endpoint.collect(job, req, prompts)
        finally:
            watcher.cancel()
        # one failed choice fails the answer, as it fails the stream: its cut text must not
        # read as an ordinary "stop"
        if "error" in job.finish.values():
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
            state.metrics.requests.inc(endpoint.name, model_label, str(err.status))
        return error_response(err)
    except EngineUnavailable as exc:  # the server's failure, not the request's: not a 400
        log.error("request refused: %s", exc)
        err = engine_unavailable(exc)
        if job is not None:
            await job.finalize(err.status)
        else:
            state.metrics.requests.inc(endpoint.name, model_label, str(err.status))
        return error_response(err)
    except HillclimbError as exc:
        if job is not None:
            await job.finalize(400)
        else:
            state.metrics.requests.inc(endpoint.name, model_label, "400")
        return error_response(invalid(str(exc)))
    except Exception:
        log.exception("request failed")
        if job is not None:
            await job.finalize(500)
        else:
            state.metrics.requests.inc(endpoint.name, model_label, "500")
        return error_response(server_error())
    except asyncio.CancelledError:
        # only uvicorn cancels a request's task: its graceful shutdown ran out. Answer (uvicorn
        # would send a text/plain 500) and settle now: a job never finalized kept its credits
        # reserved, the in-flight gauge up and the request uncounted.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        err = shutting_down()
        if job is not None:
            await job.finalize(err.status)
        else:
            state.metrics.requests.inc(endpoint.name, model_label, str(err.status))
        return error_response(err)


async def resolve_model(
    state: ServerState,
    model: str,
    prompt_ids: list[int],
    messages: list[dict[str, Any]] | None,
    fim: bool = False,
) -> tuple[ModelEntry, RouteDecision | SimpleNamespace | None]:
    """The model that serves the request and, for `auto`, the routing decision (a
    fill-in-the-middle request goes to code-flash whenever it is served: `router.FIM_REASON`)."""
    if model != AUTO:
        return state.models[model], None
    if fim and len(state.models) > 1 and "code-flash" in state.models:
        from hillclimb.serve.router import FIM_REASON

        state.metrics.routed.inc("code-flash")
        decision = SimpleNamespace(
            model="code-flash", score=None, threshold=None, reason=FIM_REASON
        )
        return state.models["code-flash"], decision
    if state.router is None or len(state.models) < 2:
        if len(state.models) < 2:
            target = next(iter(state.models))
            reason = f"only {target} is loaded"
        else:
            target = "code-flash"
            reason = "no router configured: code-flash is the default assistant"
        fallback = SimpleNamespace(model=target, score=None, threshold=None, reason=reason)
        state.metrics.routed.inc(target)
        return state.models[target], fallback
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


def max_tokens(
    state: ServerState,
    entry: ModelEntry,
    req: ChatCompletionRequest | CompletionRequest,
    prompts: list[list[int]],
    endpoint: Endpoint[Any],
) -> int:
    """The request's completion budget, checked against the model's context."""
    ctx = entry.engine.max_context
    longest = max(len(p) for p in prompts)
    param = endpoint.prompt_param
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
        return min(endpoint.default_max_tokens(state), ctx - longest)
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


def cache_scope(
    account: Account | None, req: ChatCompletionRequest | CompletionRequest
) -> str | None:
    """The request's prefix-cache scope (`SamplingParams.cache_scope`): its account, narrowed by
    the client's `cache_salt`.

    Why the account: reused KV shows in `usage.prompt_tokens_details.cached_tokens` and in the
    time to first token, so a cache shared across accounts let one caller confirm another's
    prompt text by guessing it. An account is one key (`billing.UsageDB`: a key is its own
    account, with its own credits and flywheel consent), and its row id is never reused, so a
    new key with an old account's name does not inherit its cache. A server without keys (open
    mode) has one scope, None, shared with in-process callers of the same engine, unless the
    client salts it."""
    base = "open" if account is None else f"account:{account.id}"
    if req.cache_salt is None:
        return None if account is None else base
    return f"{base}|salt:{req.cache_salt}"  # the base never holds "|": no two pairs collide


def sampling_params(
    req: ChatCompletionRequest | CompletionRequest,
    max_new: int,
    entry: ModelEntry,
    endpoint: Endpoint[Any],
    scope: str | None = None,
) -> list[SamplingParams]:
    """One SamplingParams per choice (seeds differ per choice: `sampling.choice_seed(seed, i)`),
    all in cache scope `scope` (`cache_scope`): the n choices of one request still share."""
    from hillclimb.serve.engine import SamplingParams

    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    logprobs = endpoint.logprobs(req)
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
    effort, think_cap = endpoint.thinking_limits(req, entry)
    out = []
    for i in range(req.n):
        seed = None if req.seed is None else choice_seed(req.seed, i)
        p = SamplingParams(
            max_tokens=max_new,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=top_k,
            seed=seed,
            stop=stops,
            ignore_eos=req.ignore_eos,
            logprobs=logprobs,
            reasoning_effort=effort,
            thinking_token_budget=think_cap,
            drafter=req.drafter,
            prediction=prediction,
            token_healing=endpoint.token_healing(req),
            banned_token_ids=endpoint.banned_tokens(req, entry.engine.tokenizer),
            guided_tools=endpoint.guided_tools(req, entry.engine.tokenizer),
            require_tool_call=endpoint.require_tool_call(req),
            cache_scope=scope,
        )
        try:
            p.validate()
        except HillclimbError as exc:
            raise invalid(str(exc), _engine_param(str(exc)), "invalid_value") from None
        out.append(p)
    return out


# SamplingParams fields built from a request field of another name
_REQUEST_FIELD = {"guided_tools": "tools", "require_tool_call": "tool_choice"}


def _engine_param(message: str) -> str | None:
    """The request field a `SamplingParams.validate` refusal ("invalid sampling parameters:
    guided_tools: tool names must be unique") is about, so the 400 names it (`tools`); None when
    the refused field is not one a client sends."""
    m = re.match(r"invalid sampling parameters: (\w+)", message)
    if m is None:
        return None
    field = _REQUEST_FIELD.get(m.group(1), m.group(1))
    known = set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
    return field if field in known else None
