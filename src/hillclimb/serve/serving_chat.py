"""`POST /v1/chat/completions` (vLLM's `serving_chat`): the chat template in, reasoning /
content / tool-call deltas out.

Why one state machine (`ChatChoice`) for streaming and non-streaming answers: the same token
events become the same `reasoning_content`, `content` and `tool_calls` either way, so the two
can never disagree. Text inside `<tool_call>...</tool_call>` becomes an OpenAI tool call only when
the request gave tools; a malformed or unterminated block stays visible as content rather than
being lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hillclimb.errors import HillclimbError
from hillclimb.serve.api import ChatCompletionRequest, invalid, message_dicts
from hillclimb.serve.budget import effort_budget, resolve_budget, with_budget_note
from hillclimb.serve.job import openai_finish
from hillclimb.serve.serving import (
    Endpoint,
    logprob_value,
    token_repr,
    top_alternatives,
)
from hillclimb.serve.streaming import ChoiceStream
from hillclimb.tokenizer.specials import THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START
from hillclimb.tokenizer.toolcalls import compact_tools, use_compact_tools

if TYPE_CHECKING:
    from hillclimb.serve.engine import TokenEvent
    from hillclimb.serve.job import Job
    from hillclimb.serve.state import ModelEntry, ServerState
    from hillclimb.tokenizer.io import Tokenizer

Delta = dict[str, Any]


class Whitespace:
    """Streams a section with leading and trailing whitespace removed (like `str.strip()` on the
    whole), holding back trailing whitespace until non-space text follows. With `strip=False`
    the text passes as it is (the section an assistant prefill continues)."""

    def __init__(self, strip: bool = True) -> None:
        self.strip = strip
        self.started = False
        self.pending = ""

    def feed(self, text: str) -> str:
        if not text or not self.strip:
            return text
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


def hold_prefix(buf: str, token: str) -> int:
    """Length of the longest suffix of `buf` that is a proper prefix of `token`."""
    for k in range(min(len(buf), len(token) - 1), 0, -1):
        if token.startswith(buf[-k:]):
            return k
    return 0


class ChatChoice:
    """Turns one choice's token events into reasoning / content / tool-call deltas."""

    def __init__(
        self,
        index: int,
        parse_tools: bool,
        call_prefix: str,
        continues: str | None = None,
        single_call: bool = False,
    ):
        """`continues`: the section ("reasoning" or "content") an assistant prefill ends in
        (`continue_final_message`): the client joins the answer to its prefix, so that section
        keeps its whitespace ("Sure," + " it is" must not read "Sure,it is").
        `single_call`: `parallel_tool_calls: false` — OpenAI promises at most one tool call, so
        the answer ends with the first well-formed call (what follows is cut, as text after a
        stop sequence is; a client told "one call" would otherwise run several)."""
        self.index = index
        self.parse_tools = parse_tools
        self.single_call = single_call
        self.ended = False  # the answer ended at its single tool call
        self.call_prefix = call_prefix
        self.reasoning_ws = Whitespace(strip=continues != "reasoning")
        self.content_ws = Whitespace(strip=continues != "content")
        self.reasoning = ""
        self.content = ""
        self.tool_calls: list[dict[str, Any]] = []
        self.buf = ""  # content not yet emitted (tool-call parsing)
        self.in_call = False
        self.logprobs: list[dict[str, Any]] = []

    def feed(self, text: str, is_reasoning: bool) -> list[Delta]:
        """Deltas (dicts with `reasoning_content`, `content` or `tool_calls`) for new text."""
        text = text.replace(THINK_START, "").replace(THINK_END, "")
        if is_reasoning:
            out = self.reasoning_ws.feed(text)
            self.reasoning += out
            return [{"reasoning_content": out}] if out else []
        return self._content(text, final=False)

    def close(self) -> list[Delta]:
        return self._content("", final=True)

    def finish_reason(self, engine_reason: str | None) -> str:
        """OpenAI's finish reason: `tool_calls` when the answer ended in tool calls."""
        finish = openai_finish(engine_reason)
        # an answer cut at its single call ended there, whatever the engine did after it
        ended = self.ended and finish == "length"
        return "tool_calls" if self.tool_calls and (finish == "stop" or ended) else finish

    def _emit_content(self, text: str) -> list[Delta]:
        out = self.content_ws.feed(text)
        self.content += out
        return [{"content": out}] if out else []

    def _content(self, text: str, final: bool) -> list[Delta]:
        if not self.parse_tools:
            return self._emit_content(text)
        from hillclimb.tokenizer.toolcalls import parse_call_json

        deltas: list[Delta] = []
        if self.ended:
            return deltas
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
                    if self.single_call:
                        self.ended, self.buf = True, ""
                        break
                else:  # malformed: keep it visible as text rather than lose it
                    deltas += self._emit_content(f"{TOOL_CALL_START}{body}{TOOL_CALL_END}")
            else:
                start = self.buf.find(TOOL_CALL_START)
                if start >= 0:
                    deltas += self._emit_content(self.buf[:start])
                    self.buf = self.buf[start + len(TOOL_CALL_START) :]
                    self.in_call = True
                    continue
                hold = 0 if final else hold_prefix(self.buf, TOOL_CALL_START)
                deltas += self._emit_content(self.buf[: len(self.buf) - hold])
                self.buf = self.buf[len(self.buf) - hold :]
                break
        if final and self.in_call:  # unterminated call (length limit): give back the raw text
            deltas += self._emit_content(TOOL_CALL_START + self.buf)
            self.buf = ""
            self.in_call = False
        return deltas


def merge_deltas(deltas: list[Delta]) -> list[Delta]:
    """Adjacent text deltas of the same kind merged (fewer SSE chunks, same concatenation)."""
    out: list[Delta] = []
    for d in deltas:
        if out and set(d) == set(out[-1]) and set(d) <= {"content", "reasoning_content"}:
            k = next(iter(d))
            out[-1] = {k: out[-1][k] + d[k]}
        else:
            out.append(dict(d))
    return out


def chat_prompt(
    req: ChatCompletionRequest, tok: Tokenizer, budget: int | None = None, compact: bool = False
) -> list[list[int]]:
    """The request's messages (and tools) as prompt ids. `compact`: the tools in the compact form
    a small model was trained on (`tokenizer.toolcalls.compact_tools`, as the harness and the
    SFT data show them)."""
    kwargs: dict[str, Any] = {}
    ctk = req.chat_template_kwargs or {}
    if ctk.get("enable_thinking") is not None:  # a boolean (`api._check_chat`); null: default
        kwargs["enable_thinking"] = ctk["enable_thinking"]
    cont = bool(req.continue_final_message)
    try:
        # encode_chat keeps message text untrusted: "<|im_end|>" typed by a user stays text.
        msgs = message_dicts(req)
        if budget is not None:  # a budget-conditioned model reads its budget in the prompt
            msgs = with_budget_note(msgs, budget)
        tools = req.tools or None
        if tools and req.tool_choice == "none" and tool_call_ban(tok) is None:
            tools = None  # the call markup cannot be banned: do not offer the tools at all
        if tools and compact:
            tools = compact_tools(tools)
        ids = tok.encode_chat(
            msgs,
            tools=tools,
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


def tool_call_ban(tok: Tokenizer) -> list[int] | None:
    """The tool-call markup tokens (`<tool_call>`, `</tool_call>`) a `tool_choice: "none"`
    answer may not contain; None when the tokenizer lacks them as single tokens (then the
    tools are not shown to the model at all: `chat_prompt`)."""
    try:
        return [tok.token_id(TOOL_CALL_START), tok.token_id(TOOL_CALL_END)]
    except (KeyError, HillclimbError):
        return None


def chat_logprobs(records: list[dict[str, Any]] | None, tok: Tokenizer) -> list[dict[str, Any]]:
    """Engine logprob records → OpenAI chat `logprobs.content` entries."""
    out = []
    for rec in records or []:
        entry = _chat_entry(rec, tok)
        entry["top_logprobs"] = [_chat_entry(alt, tok) for alt in top_alternatives(rec)]
        out.append(entry)
    return out


def _chat_entry(rec: dict[str, Any], tok: Tokenizer) -> dict[str, Any]:
    """One token's `{"token", "logprob", "bytes"}`: a token that is not valid UTF-8 is spelt
    "bytes:\\xNN..." as OpenAI does (`serving.token_repr`), its `bytes` the token's own."""
    text, raw = token_repr(rec, tok)
    return {"token": text, "logprob": logprob_value(rec["logprob"]), "bytes": list(raw)}


def _answers(choices: list[ChatChoice]) -> Any:
    """The flywheel's view of the finished choices: final content and tool calls."""
    return lambda: [{"content": c.content, "tool_calls": c.tool_calls or None} for c in choices]


def continued_section(req: ChatCompletionRequest) -> str | None:
    """The section an assistant prefill ends in: "reasoning" when its text has a `<think>`
    still open, else "content"; None without `continue_final_message`."""
    if not req.continue_final_message:
        return None
    content = message_dicts(req)[-1]["content"]
    return "reasoning" if content.rfind(THINK_START) > content.rfind(THINK_END) else "content"


def _choices(job: Job, req: ChatCompletionRequest) -> list[ChatChoice]:
    parse_tools = bool(req.tools) and req.tool_choice != "none"
    prefix = f"call_{job.request_id[-8:]}"
    cont = continued_section(req)
    single = req.parallel_tool_calls is False
    return [
        ChatChoice(i, parse_tools, f"{prefix}_{i}", cont, single_call=single)
        for i in range(len(job.handles))
    ]


class ChatStream(ChoiceStream[Delta]):
    """`chat.completion.chunk`s: a first `{"role": "assistant", "content": ""}` delta per
    choice, then reasoning / content / tool-call deltas."""

    object_name = "chat.completion.chunk"
    piece_key = "delta"
    empty: Delta = {}

    def __init__(self, job: Job, req: ChatCompletionRequest):
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        super().__init__(job, include_usage)
        self.req = req
        self.tok = job.entry.engine.tokenizer
        self.choices = _choices(job, req)
        job.answers = _answers(self.choices)

    def head(self) -> list[bytes]:
        return [self.chunk(c.index, {"role": "assistant", "content": ""}) for c in self.choices]

    def feed(self, i: int, ev: TokenEvent) -> tuple[list[Delta], Any | None]:
        c = self.choices[i]
        deltas = c.feed(ev.text, ev.is_reasoning)
        if ev.finished:
            deltas += c.close()
        if self.req.logprobs and ev.logprobs:
            return deltas, {"content": chat_logprobs(ev.logprobs, self.tok)}
        return deltas, None

    def merge(self, pieces: list[Delta]) -> list[Delta]:
        return merge_deltas(pieces)

    def finish_reason(self, i: int, engine_reason: str | None) -> str:
        return self.choices[i].finish_reason(engine_reason)


class ChatEndpoint(Endpoint[ChatCompletionRequest]):
    name = "chat"
    request_type = ChatCompletionRequest
    id_prefix = "chatcmpl-"
    prompt_param = "messages"

    def prompts(
        self, req: ChatCompletionRequest, tok: Tokenizer
    ) -> tuple[list[list[int]], list[dict[str, Any]] | None]:
        return chat_prompt(req, tok), message_dicts(req)

    def flywheel_request(self, req: ChatCompletionRequest) -> dict[str, Any] | None:
        return {"messages": message_dicts(req), "tools": req.tools}

    def for_model(
        self,
        req: ChatCompletionRequest,
        tok: Tokenizer,
        entry: ModelEntry,
        prompts: list[list[int]],
    ) -> list[list[int]]:
        """A budget-conditioned model reads its thinking budget in the prompt; a model with a small
        context is shown the request's tools in the compact form it was trained on (session 23:
        full schemas, 1,554 prompt tokens where the harness in-process used 792, so the same
        episode differed served and in-process)."""
        ctx = entry.engine.max_context
        compact = bool(req.tools) and use_compact_tools(ctx)
        budget = None
        if entry.budget_note:
            profile = getattr(entry.engine, "thinking_profile", None)  # as the engine resolves it
            budget = resolve_budget(req.reasoning_effort, req.thinking_token_budget, ctx, profile)
        if budget is None and not compact:
            return prompts
        return chat_prompt(req, tok, budget, compact=compact)

    def thinking_limits(
        self, req: ChatCompletionRequest, entry: ModelEntry
    ) -> tuple[str | None, int | None]:
        """For a model trained to read its budget, `reasoning_effort` is a request the note
        carries (`for_model`), and the hard cap is only the effort table's backstop: cutting at
        the note's budget cut below the shortest correct solutions and cost such a model
        accuracy (BENCHMARKS.md, "Budget notes in SFT"). `thinking_token_budget` stays a hard
        cap for every model (vLLM's meaning)."""
        if entry.budget_note and req.thinking_token_budget is None and req.reasoning_effort:
            return None, effort_budget(req.reasoning_effort, entry.engine.max_context)
        return req.reasoning_effort, req.thinking_token_budget

    def default_max_tokens(self, state: ServerState) -> int:
        return state.default_max_tokens

    def logprobs(self, req: ChatCompletionRequest) -> int | None:
        return (req.top_logprobs or 0) if req.logprobs else None

    def token_healing(self, req: ChatCompletionRequest) -> bool | None:
        return False  # a chat prompt ends in the template's assistant header, not in user text

    def banned_tokens(self, req: ChatCompletionRequest, tok: Tokenizer) -> list[int] | None:
        """`tool_choice: "none"`: the tools are still rendered (the model may need to know
        them to answer about them), so a model trained to call them could still write
        `<tool_call>`, which came back as raw markup in `content`. OpenAI promises no call:
        the engine never samples the tool-call tokens for such a request (every path:
        prefill, batched and compiled decode, speculative verification)."""
        return tool_call_ban(tok) if req.tool_choice == "none" else None

    def require_tool_call(self, req: ChatCompletionRequest) -> bool:
        """`tool_choice: "required"` or a named function: the answer opens with a call (after
        any reasoning), decoded under the grammar of the allowed tools."""
        tc = req.tool_choice
        return bool(req.tools) and (tc == "required" or isinstance(tc, dict))

    def guided_tools(self, req: ChatCompletionRequest, tok: Tokenizer) -> list[dict] | None:
        """Structured tool calls (`serve.tool_grammar`): with tools offered, every
        `<tool_call>` the model opens is decoded as `{"name": <one of the tools>, "arguments":
        {...}}` — a call that names no tool or is not JSON is never useful to a client, and a
        small model writes both. A tool with `"strict": true` (OpenAI's structured function
        calling) also gets its arguments decoded under its `parameters` schema; the others
        any JSON object. None (unconstrained) under `tool_choice: "none"` or when the
        tokenizer has no tool-call tokens."""
        if not req.tools or req.tool_choice == "none" or tool_call_ban(tok) is None:
            if self.require_tool_call(req):
                raise invalid(  # `tool_choice` asks for a call this tokenizer cannot delimit
                    "tool_choice requires a tool call, but this model's tokenizer has no "
                    f"{TOOL_CALL_START} token.",
                    "tool_choice",
                    "invalid_value",
                )
            return None
        tc = req.tool_choice
        named = tc["function"]["name"] if isinstance(tc, dict) else None
        out = []
        for t in req.tools:
            if named is not None and t["function"]["name"] != named:
                continue  # a named tool_choice: that function is the only one a call may name
            fn = t["function"]
            if fn.get("strict") is True:
                out.append(t)
            else:
                out.append({"type": "function", "function": {"name": fn["name"],
                                                            "parameters": {"type": "object"}}})  # fmt: skip
        return out

    async def collect(
        self, job: Job, req: ChatCompletionRequest, prompts: list[list[int]]
    ) -> dict[str, Any]:
        tok = job.entry.engine.tokenizer
        choices = _choices(job, req)
        job.answers = _answers(choices)
        async for i, ev in job.events():
            c = choices[i]
            c.feed(ev.text, ev.is_reasoning)
            if req.logprobs:
                c.logprobs += chat_logprobs(ev.logprobs, tok)
        for c in choices:
            c.close()
        await job.collect_outputs()
        out = []
        for c in choices:
            msg: dict[str, Any] = {
                "role": "assistant",
                "content": c.content or None,
                "reasoning_content": c.reasoning or None,
            }
            if c.tool_calls:
                msg["tool_calls"] = c.tool_calls
            elif msg["content"] is None:
                msg["content"] = ""
            out.append(
                {
                    "index": c.index,
                    "message": msg,
                    "logprobs": {"content": c.logprobs} if req.logprobs else None,
                    "finish_reason": c.finish_reason(job.finish.get(c.index)),
                }
            )
        return job.envelope("chat.completion", out)

    def stream(
        self, job: Job, req: ChatCompletionRequest, prompts: list[list[int]]
    ) -> AsyncIterator[bytes]:
        return ChatStream(job, req).sse()
