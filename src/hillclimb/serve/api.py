"""Request schemas and error objects of the OpenAI-compatible HTTP API.

Why pydantic models with `extra="allow"` and an explicit list of what we support: OpenAI clients
send many optional parameters, and silently ignoring one (say `logit_bias`) makes a client believe
it got behaviour it did not. So every field we accept is declared here; a field that is known but
not implemented (or implemented only at its neutral value, like `presence_penalty=0`) is refused
with a 400 naming the parameter; an unknown field is refused the way OpenAI refuses it
("Unrecognized request argument supplied: X"). Validation of ranges is done here, once, so the
route handlers only see well-formed requests.

Errors travel as `APIError`, which the server renders as OpenAI's error object
`{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hillclimb.serve.sampling import DRAFTERS
from hillclimb.serve.tool_grammar import strict_schema_problem

# Largest `n` (choices per prompt) we fan out; each choice is one engine request.
MAX_N = 16
# Largest number of prompts in one /v1/completions batch.
MAX_PROMPTS = 64
MAX_LOGPROBS = 20
MAX_STOP = 4
# predicted outputs: the text is tokenized and searched by the lookup drafter; beyond this many
# characters it cannot fit any context we serve (the token count is checked against the model's)
MAX_PREDICTION_CHARS = 1 << 20
# `cache_salt`: a client's label for a narrower cache scope, never stored beyond the engine's
# in-memory entries; long enough for a hex digest or a UUID with a prefix, short enough to compare
MAX_CACHE_SALT = 256
# `top_k`: beyond any vocabulary we serve (a k at or above the vocabulary keeps every token); an
# unbounded integer (10**400) was taken and reached the engine
MAX_TOP_K = 1 << 20
# `thinking_token_budget`: beyond any context we serve (a budget the context cannot reach is no
# cap); bounded so an integer like 2**80 is a 400, not a value the engine has to carry
MAX_THINKING_TOKEN_BUDGET = 1 << 24


class APIError(Exception):
    """An error answered to the client as an OpenAI error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param, code)


def unsupported(param: str, why: str = "") -> APIError:
    msg = f"Unsupported parameter: '{param}' is not supported by this server"
    return APIError(
        400,
        msg + (f" ({why})." if why else "."),
        "invalid_request_error",
        param,
        "unsupported_parameter",
    )


def _null_means_default(cls: type[BaseModel], data: Any) -> Any:
    """Drop explicit nulls of fields that have a non-null default, so null means "the default".

    Why: OpenAI's spec marks `n`, `stream`, `logprobs`, `echo`, ... as nullable, and the official
    client sends `"n": null` for `n=None` (a wrapper passing its own defaults through); a 400
    "Input should be a valid integer" for that was a refusal OpenAI never gives."""
    if not isinstance(data, dict):
        return data
    nullable = {
        name
        for name, field in cls.model_fields.items()
        if not field.is_required() and field.default is not None
    }
    return {k: v for k, v in data.items() if not (v is None and k in nullable)}


class _Base(BaseModel):
    # strict: JSON types as OpenAI documents them (no `"max_tokens": true` read as 1, no
    # `"temperature": "0.5"` read as a number); ints are accepted where floats are expected
    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _null_means_default(cls, data)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False
    continuous_usage_stats: bool = False

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        return _null_means_default(cls, data)


class _Sampling(_Base):
    """Fields shared by both endpoints."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # extension (vLLM): 0 or -1 = off
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    ignore_eos: bool = False  # extension (vLLM)
    # Reasoning controls (passed to the engine); `thinking_token_budget` comes as extra body.
    reasoning_effort: str | None = None
    thinking_token_budget: int | None = None
    # OpenAI Predicted Outputs: {"type": "content", "content": str | [text parts]} — a draft
    # source (prompt lookup searches it first); checked by hand for OpenAI-style messages
    prediction: Any = None
    # Extension: the draft source for this request ("model", "lookup", "suffix", "none"; default:
    # the model's — lookup for code-flash, the draft model for thinking — or lookup with a
    # prediction)
    drafter: str | None = None
    # Extension (vLLM's name): narrows the prefix-cache scope within the caller's account —
    # requests only reuse cached KV of requests with the same account *and* the same salt
    # (`serving.cache_scope`); absent = the account's own scope
    cache_salt: str | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    # Extension: token healing (`serve/healing.py`); null = the model's default (on for
    # code-flash, off for thinking)
    token_healing: bool | None = None


class ChatMessage(_Base):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    # Fields of an assistant message as the official client returns it: `message.model_dump()`
    # of an answer carries them (null), and clients send that dict back as history. Checked in
    # `_check_assistant_fields`: null / a refusal text are taken, anything else is refused.
    refusal: str | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None
    annotations: list[Any] | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    # Extension (vLLM): continue the last assistant message instead of starting a new turn
    # (assistant prefill, e.g. content "<think>\n" to start inside a reasoning block).
    continue_final_message: bool = False
    store: bool | None = None
    metadata: dict[str, Any] | None = None


# Known OpenAI parameters that we do not implement: named in the 400 instead of "unrecognized".
_KNOWN_UNSUPPORTED = {
    "functions": "use 'tools'",
    "function_call": "use 'tools' and 'tool_choice'",
    "audio": "text only",
    "modalities": "text only",
    "web_search_options": "no web search",
    "service_tier": "single tier",
    "min_p": "not implemented",
    "repetition_penalty": "not implemented",
    "length_penalty": "not implemented",
    "use_beam_search": "not implemented",
    "guided_json": "not implemented",
    "guided_regex": "not implemented",
    "guided_choice": "not implemented",
    "guided_grammar": "not implemented",
}


# pydantic adds union-member names ("str", "list[int]") to an error's location; they name no field
_UNION_MEMBERS = frozenset(
    {
        "str",
        "int",
        "float",
        "bool",
        "list[str]",
        "list[int]",
        "list[list[int]]",
        "list[dict[str,any]]",
        "dict[str,any]",
    }
)


def _loc_param(err: dict[str, Any]) -> str:
    """The parameter an error's location names, written as the hand checks (and OpenAI's
    messages) write it: `messages[0].content`, not pydantic's `messages.0.content` — one request
    could otherwise get two spellings of the same field depending on which check refused it."""
    out = ""
    for p in err.get("loc", ()):
        if isinstance(p, int) and not isinstance(p, bool):
            out += f"[{p}]"
        elif str(p).startswith("function-") or str(p) in _UNION_MEMBERS:
            continue
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


RequestT = TypeVar("RequestT", "CompletionRequest", "ChatCompletionRequest")


def parse_request(cls: type[RequestT], body: Any) -> RequestT:
    """Validate a decoded JSON body into `cls`, or raise a 400 `APIError` naming the parameter."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    if "model" not in body:
        raise invalid("you must provide a model parameter", "model", "missing_required_parameter")
    try:
        req = cls.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = _loc_param(err)
        if err.get("type") == "missing":
            raise invalid(
                f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
            ) from None
        raise invalid(
            f"Invalid value for '{param}': {err.get('msg')}.", param, "invalid_value"
        ) from None
    for name in req.model_extra or {}:
        if name in _KNOWN_UNSUPPORTED:
            raise unsupported(name, _KNOWN_UNSUPPORTED[name])
        raise invalid(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
    _check_sampling(req)
    if isinstance(req, CompletionRequest):
        _check_completion(req)
    else:
        _check_chat(req)
    return req


def _check_sampling(req: _Sampling) -> None:
    if req.max_tokens is not None and req.max_tokens < 1:
        raise invalid(
            f"max_tokens must be at least 1, got {req.max_tokens}.", "max_tokens", "invalid_value"
        )
    if req.temperature is not None and not 0.0 <= req.temperature <= 2.0:
        raise invalid(
            f"temperature must be between 0 and 2, got {req.temperature}.",
            "temperature",
            "invalid_value",
        )
    # 0 is allowed as OpenAI allows it: only the most likely token (`sampling.warp_probs`)
    if req.top_p is not None and not 0.0 <= req.top_p <= 1.0:
        raise invalid(f"top_p must be between 0 and 1, got {req.top_p}.", "top_p", "invalid_value")
    if req.top_k is not None and not -1 <= req.top_k <= MAX_TOP_K:
        raise invalid(
            f"top_k must be -1, 0 (off) or a positive integer of at most {MAX_TOP_K}, got "
            f"{_int_text(req.top_k)}.",
            "top_k",
            "invalid_value",
        )
    if not 1 <= req.n <= MAX_N:
        raise invalid(f"n must be between 1 and {MAX_N}, got {req.n}.", "n", "invalid_value")
    if req.seed is not None and not -(2**63) <= req.seed < 2**63:
        raise invalid("seed must fit in a signed 64-bit integer.", "seed", "invalid_value")
    stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if len(stops) > MAX_STOP:
        raise invalid(f"stop may hold at most {MAX_STOP} sequences.", "stop", "invalid_value")
    if any(s == "" for s in stops):
        raise invalid("stop sequences must be non-empty.", "stop", "invalid_value")
    for name in ("presence_penalty", "frequency_penalty"):
        v = getattr(req, name)
        if v is not None and v != 0:
            raise unsupported(name, "only 0 is supported")
    if req.logit_bias:
        raise unsupported("logit_bias")
    if req.stream_options is not None and not req.stream:
        raise invalid("stream_options is only allowed when stream is true.", "stream_options")
    if req.stream_options is not None and req.stream_options.continuous_usage_stats:
        # vLLM's usage-in-every-chunk: not implemented, and refusing beats a silent no-op
        raise unsupported("stream_options.continuous_usage_stats", "only include_usage")
    if req.reasoning_effort is not None and req.reasoning_effort not in ("low", "medium", "high"):
        raise invalid(
            f"reasoning_effort must be 'low', 'medium' or 'high', got {req.reasoning_effort!r}.",
            "reasoning_effort",
            "invalid_value",
        )
    budget = req.thinking_token_budget
    if budget is not None and not 0 <= budget <= MAX_THINKING_TOKEN_BUDGET:
        raise invalid(
            f"thinking_token_budget must be between 0 and {MAX_THINKING_TOKEN_BUDGET}, got "
            f"{_int_text(budget)}.",
            "thinking_token_budget",
            "invalid_value",
        )
    if req.drafter is not None and req.drafter not in DRAFTERS:
        raise invalid(
            f"drafter must be one of {', '.join(repr(d) for d in DRAFTERS)}, got {req.drafter!r}.",
            "drafter",
            "invalid_value",
        )
    if req.prediction is not None:
        req.prediction = prediction_text(req.prediction)
    _check_cache_salt(req.cache_salt)


def _int_text(v: int) -> str:
    """A client's integer for an error message: a 400-digit one is shortened, not echoed."""
    text = str(v)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _check_cache_salt(salt: str | None) -> None:
    """A 400 unless `cache_salt` is absent or a non-empty string of at most MAX_CACHE_SALT
    characters (its type is checked by the schema: strict strings)."""
    if salt is None:
        return
    if not salt or len(salt) > MAX_CACHE_SALT:
        raise invalid(
            f"cache_salt must be a non-empty string of at most {MAX_CACHE_SALT} characters, "
            f"got {len(salt)} characters.",
            "cache_salt",
            "invalid_value",
        )


def prediction_text(pred: Any) -> str:
    """The text of an OpenAI `prediction` object, or a 400 saying what is wrong with it."""
    if not isinstance(pred, dict):
        raise invalid(
            "Invalid type for 'prediction': expected an object like "
            "{'type': 'content', 'content': '...'}.",
            "prediction",
            "invalid_type",
        )
    extra = sorted(set(pred) - {"type", "content"})
    if extra:
        raise invalid(
            f"Unrecognized field in prediction: {extra[0]}",
            f"prediction.{extra[0]}",
            "unknown_parameter",
        )
    if pred.get("type") != "content":
        raise invalid(
            f"Invalid value for 'prediction.type': {pred.get('type')!r}; the only "
            "supported value is 'content'.",
            "prediction.type",
            "invalid_value",
        )
    content = pred.get("content")
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise invalid(
                    f"Invalid value for 'prediction.content[{j}]': expected "
                    "{'type': 'text', 'text': '...'}.",
                    f"prediction.content[{j}]",
                    "invalid_type",
                )
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise invalid(
            "Invalid type for 'prediction.content': expected a string or an array of text parts.",
            "prediction.content",
            "invalid_type",
        )
    if len(content) > MAX_PREDICTION_CHARS:
        raise invalid(
            f"prediction.content is too long: {len(content)} characters (at most "
            f"{MAX_PREDICTION_CHARS}).",
            "prediction.content",
            "invalid_value",
        )
    return content


def _check_completion(req: CompletionRequest) -> None:
    p = req.prompt
    if isinstance(p, str):
        pass
    elif not p:
        raise invalid("prompt must not be empty.", "prompt", "invalid_value")
    elif isinstance(p[0], list) and any(len(x) == 0 for x in p):
        raise invalid("token-id prompts must not be empty.", "prompt", "invalid_value")
    if isinstance(p, list) and p and isinstance(p[0], str | list) and len(p) > MAX_PROMPTS:
        raise invalid(f"at most {MAX_PROMPTS} prompts per request.", "prompt", "invalid_value")
    if req.logprobs is not None and not 0 <= req.logprobs <= MAX_LOGPROBS:
        raise invalid(
            f"logprobs must be between 0 and {MAX_LOGPROBS}.", "logprobs", "invalid_value"
        )
    if req.best_of is not None and req.best_of != req.n:
        raise unsupported("best_of", "only best_of == n")
    if req.echo and req.logprobs is not None and req.stream:
        raise unsupported(
            "echo", "echo with logprobs (prompt logprobs) is not implemented when streaming"
        )
    if req.echo and req.suffix is not None:
        raise invalid("echo cannot be combined with suffix.", "echo")


def _check_chat(req: ChatCompletionRequest) -> None:
    if req.max_completion_tokens is not None:
        if req.max_completion_tokens < 1:
            raise invalid(
                "max_completion_tokens must be at least 1.",
                "max_completion_tokens",
                "invalid_value",
            )
        if req.max_tokens is not None and req.max_tokens != req.max_completion_tokens:
            raise invalid(
                "max_tokens and max_completion_tokens disagree; send one.", "max_completion_tokens"
            )
        req.max_tokens = req.max_completion_tokens
    roles = {"system", "developer", "user", "assistant", "tool"}
    for i, m in enumerate(req.messages):
        if m.role not in roles:
            raise invalid(
                f"Invalid value for 'messages[{i}].role': {m.role!r}; expected one of "
                f"{sorted(roles)}.",
                f"messages[{i}].role",
                "invalid_value",
            )
        _check_assistant_fields(i, m)
        if isinstance(m.content, list):
            for j, part in enumerate(m.content):
                if m.role == "assistant" and _is_refusal_part(part):
                    continue
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise unsupported(
                        f"messages[{i}].content[{j}].type", "only text content parts are supported"
                    )
        if m.role in ("system", "developer", "user", "tool") and m.content is None:
            raise invalid(
                f"messages[{i}].content is required for role {m.role!r}.",
                f"messages[{i}].content",
                "invalid_value",
            )
        if m.model_extra:
            name = next(iter(m.model_extra))
            raise invalid(
                f"Unrecognized field in messages[{i}]: {name}",
                f"messages[{i}].{name}",
                "unknown_parameter",
            )
    _check_tool_turns(req.messages)
    if req.tools:
        _check_tools(req.tools)
    tc = req.tool_choice
    if isinstance(tc, str) and tc not in ("auto", "none", "required"):
        raise invalid(
            f"Invalid value for 'tool_choice': {tc!r}; expected 'none', 'auto', 'required' or a "
            "named tool.",
            "tool_choice",
            "invalid_value",
        )
    if tc is not None and tc not in ("auto", "none"):
        # "required" or a named function: the engine forces the call (`require_tool_call`)
        if not req.tools:
            raise invalid(
                "'tool_choice' is only allowed when 'tools' are specified.",
                "tool_choice",
                "invalid_value",
            )
        if isinstance(tc, dict):
            fn = tc.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if tc.get("type") != "function" or not isinstance(name, str) or not name:
                raise invalid(
                    "tool_choice must be 'none', 'auto', 'required' or "
                    "{'type': 'function', 'function': {'name': ...}}.",
                    "tool_choice",
                    "invalid_value",
                )
            if name not in {t["function"]["name"] for t in req.tools}:
                raise invalid(
                    f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                    "tool_choice",
                    "invalid_value",
                )
    if req.top_logprobs is not None:
        if not 0 <= req.top_logprobs <= MAX_LOGPROBS:
            raise invalid(
                f"top_logprobs must be between 0 and {MAX_LOGPROBS}.",
                "top_logprobs",
                "invalid_value",
            )
        if not req.logprobs:
            raise invalid("top_logprobs requires logprobs to be true.", "top_logprobs")
    if req.continue_final_message and req.messages[-1].role != "assistant":
        raise invalid(
            "continue_final_message needs the last message to be from the assistant.",
            "continue_final_message",
        )
    rf = req.response_format
    if rf is not None and rf.get("type") != "text":
        raise unsupported("response_format", "only {'type': 'text'}")
    ctk = req.chat_template_kwargs or {}
    for k in ctk:
        if k != "enable_thinking":
            raise unsupported(f"chat_template_kwargs.{k}", "only enable_thinking")
    # the template tests `enable_thinking is false`: the string "false" would leave thinking on
    # (and `bool(None)` turned it off), so only a boolean or null (the default) is taken
    if not isinstance(ctk.get("enable_thinking"), bool | None):
        raise invalid(
            "Invalid type for 'chat_template_kwargs.enable_thinking': expected a boolean.",
            "chat_template_kwargs.enable_thinking",
            "invalid_type",
        )


# OpenAI's rule for a function's name: the name is also what the model writes back in its call,
# and the template puts it between quotes in the prompt (a quote or markup would garble both)
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_tools(tools: list[dict[str, Any]]) -> None:
    """Each tool `{'type': 'function', 'function': {'name', 'description'?, 'parameters'?,
    'strict'?}}` with a well-formed, unique name; a 400 naming the first field that is not."""
    seen: dict[str, int] = {}
    for i, t in enumerate(tools):
        fn = t.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if t.get("type") != "function" or not isinstance(name, str) or not name:
            raise invalid(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                f"tools[{i}]",
                "invalid_value",
            )
        assert isinstance(fn, dict)
        if not _TOOL_NAME.fullmatch(name):
            raise invalid(
                f"Invalid 'tools[{i}].function.name': {name[:80]!r} does not match the pattern "
                "'^[a-zA-Z0-9_-]{1,64}$'.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
        if name in seen:
            raise invalid(
                f"Invalid 'tools[{i}].function.name': {name!r} is also the name of "
                f"tools[{seen[name]}]; tool names must be unique.",
                f"tools[{i}].function.name",
                "invalid_value",
            )
        seen[name] = i
        # the template renders these into the prompt as they are: a wrong type would give
        # the model a garbled tool (a silently wrong answer), so it is refused like OpenAI
        for key, kind, label in (("description", str, "a string"),
                                 ("parameters", dict, "a JSON Schema object"),
                                 ("strict", bool, "a boolean")):  # fmt: skip
            if fn.get(key) is not None and not isinstance(fn[key], kind):
                raise invalid(
                    f"Invalid type for 'tools[{i}].function.{key}': expected {label}.",
                    f"tools[{i}].function.{key}",
                    "invalid_type",
                )
        if fn.get("strict") is True and fn.get("parameters") is not None:
            _check_strict_schema(i, fn["parameters"])


def _check_strict_schema(i: int, schema: dict[str, Any]) -> None:
    """A 400 naming the spot where a `strict` tool's schema is invalid or uses what the
    grammar cannot enforce (`tool_grammar.strict_schema_problem`): strict promises valid
    arguments, so a schema we would decode more loosely than written is refused, as OpenAI
    refuses a strict schema it cannot honour. Without `strict` the same schema is taken (its
    calls are guided as any JSON object)."""
    problem = strict_schema_problem(schema)
    if problem is not None:
        where, why = problem
        param = f"tools[{i}].function.{where}"
        raise invalid(
            f"Invalid schema for function 'tools[{i}].function' with strict true: at "
            f"'{param}': {why}. Fix the schema or set 'strict' to false.",
            param,
            "invalid_value",
        )


def _check_tool_turns(messages: list[ChatMessage]) -> None:
    """Tool calls and their results as OpenAI takes them: `tool_calls` only on assistant
    messages, each `{'id', 'type': 'function', 'function': {'name', 'arguments'}}`; a `tool`
    message answers, by `tool_call_id`, a call of the latest assistant message before it.

    Why: a malformed call reached the chat template and came back as a 400 quoting the
    template's internals ("'dict object' has no attribute 'name'") with param `messages`; a
    call with an integer `arguments` or a tool result answering no call was rendered as history
    the model never produced; `tool_calls` on a user message was dropped without a word."""
    open_ids: set[str] = set()  # ids of the calls the latest assistant turn made
    for i, m in enumerate(messages):
        if m.tool_calls is not None and m.role != "assistant":
            raise invalid(
                f"Unrecognized field in messages[{i}]: tool_calls (only assistant messages "
                "carry it)",
                f"messages[{i}].tool_calls",
                "unknown_parameter",
            )
        if m.tool_call_id is not None and m.role != "tool":
            raise invalid(
                f"Unrecognized field in messages[{i}]: tool_call_id (only tool messages carry it)",
                f"messages[{i}].tool_call_id",
                "unknown_parameter",
            )
        if m.role == "assistant":
            open_ids = {_check_tool_call(i, j, tc) for j, tc in enumerate(m.tool_calls or [])}
        elif m.role == "tool":
            _check_tool_result(i, m, open_ids)
        # a user message between the results keeps the calls open: the harness answers a call
        # it could not parse (no name, so not in `tool_calls`) with a user message in its place


def _check_tool_call(i: int, j: int, tc: dict[str, Any]) -> str:
    """The id of `messages[i].tool_calls[j]`, or a 400 naming what is wrong with it."""
    where = f"messages[{i}].tool_calls[{j}]"
    fn = tc.get("function")
    if not isinstance(tc.get("id"), str) or not tc["id"]:
        raise invalid(
            f"Missing required parameter: '{where}.id' (a non-empty string).",
            f"{where}.id",
            "missing_required_parameter",
        )
    if tc.get("type", "function") != "function":
        raise invalid(
            f"Invalid value for '{where}.type': {tc.get('type')!r}; expected 'function'.",
            f"{where}.type",
            "invalid_value",
        )
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise invalid(
            f"Invalid value for '{where}.function': expected {{'name': <a non-empty string>, "
            "'arguments': <a JSON string>}.",
            f"{where}.function",
            "invalid_value",
        )
    if not isinstance(fn.get("arguments"), str | dict):
        raise invalid(
            f"Invalid type for '{where}.function.arguments': expected a JSON string (or an "
            "object).",
            f"{where}.function.arguments",
            "invalid_type",
        )
    return tc["id"]


def _check_tool_result(i: int, m: ChatMessage, open_ids: set[str]) -> None:
    """A 400 unless `messages[i]` (role tool) answers a call of the latest assistant turn."""
    if not open_ids:
        raise invalid(
            f"Invalid parameter: messages[{i}] has role 'tool' but answers no call: a tool "
            "message must answer a call of the latest assistant message with 'tool_calls'.",
            f"messages[{i}].role",
            "invalid_value",
        )
    if not m.tool_call_id:
        raise invalid(
            f"Missing required parameter: 'messages[{i}].tool_call_id'.",
            f"messages[{i}].tool_call_id",
            "missing_required_parameter",
        )
    if m.tool_call_id not in open_ids:
        raise invalid(
            f"Invalid value for 'messages[{i}].tool_call_id': {m.tool_call_id[:80]!r} is the id "
            "of no call in the latest assistant message.",
            f"messages[{i}].tool_call_id",
            "invalid_value",
        )


_ASSISTANT_ONLY = ("refusal", "audio", "function_call", "annotations")


def _is_refusal_part(part: dict[str, Any]) -> bool:
    """An assistant content part `{"type": "refusal", "refusal": "..."}` (OpenAI allows it)."""
    return part.get("type") == "refusal" and isinstance(part.get("refusal"), str)


def _check_assistant_fields(i: int, m: ChatMessage) -> None:
    """Take the response-only fields of an assistant message sent back as history, as OpenAI
    does: `refusal` is what the assistant said (rendered as its text), `annotations` are
    citations (no effect on generation); a real `audio` or `function_call` is refused by name
    rather than dropped, since dropping it would change the history the model sees."""
    for name in _ASSISTANT_ONLY:
        if getattr(m, name) is not None and m.role != "assistant":
            raise invalid(
                f"Unrecognized field in messages[{i}]: {name} (only assistant messages carry it)",
                f"messages[{i}].{name}",
                "unknown_parameter",
            )
    if m.audio is not None:
        raise unsupported(f"messages[{i}].audio", "text only")
    if m.function_call is not None:
        raise unsupported(f"messages[{i}].function_call", "use 'tool_calls'")


def _message_text(m: ChatMessage) -> str:
    """The text of a message for the template: parts joined; an assistant's refusal (a part, or
    the `refusal` field when there is no content) is what it said, so it stays in the history."""
    content = m.content
    if isinstance(content, list):
        content = "".join(
            part["refusal"] if _is_refusal_part(part) else part["text"] for part in content
        )
    if not content and m.refusal:
        content = m.refusal
    return content or ""


def message_dicts(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    """Messages as plain dicts for the chat template (text parts joined, developer→system)."""
    out = []
    for m in req.messages:
        content = _message_text(m)
        d: dict[str, Any] = {
            "role": "system" if m.role == "developer" else m.role,
            "content": content,
        }
        if m.tool_calls:
            d["tool_calls"] = m.tool_calls
        if m.reasoning_content is not None:
            d["reasoning_content"] = m.reasoning_content
        if m.name is not None:
            d["name"] = m.name
        if m.tool_call_id is not None:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]
