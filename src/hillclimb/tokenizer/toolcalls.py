"""Tool calls in both wire formats, and the one message shape the harness keeps.

Inside the harness a conversation is a list of OpenAI-style messages: an assistant message carries
`tool_calls: [{"id", "type": "function", "function": {"name", "arguments": "<json string>"}}]` and
each result is a `{"role": "tool", "tool_call_id", "name", "content"}` message. That is exactly
what OpenAI-compatible endpoints take, and our ChatML template (tokenizer/specials.py) renders the
same messages as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks and
`<tool_response>` turns — so one trajectory serves evaluation, SFT export and RL alike.

hillclimb's own models emit tool calls as text; `parse_assistant_text` recovers them (plus the
`<think>` reasoning) and reports each malformed block as a call with an `error`, which the agent
loop feeds back to the model instead of crashing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hillclimb.tokenizer.specials import THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | None  # None when `raw_arguments` did not parse
    raw_arguments: str = "{}"
    error: str | None = None  # why the call is malformed (fed back to the model)

    def to_message_part(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments},
        }


@dataclass
class ParsedText:
    content: str
    reasoning: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(text: str) -> Any:
    """`json.loads` for model-written text, where every failure is a `json.JSONDecodeError`: a
    body nested past the recursion limit (RecursionError), an integer of more than 4,300 digits
    (ValueError) — what a small model stuck in a loop writes — ended the agent loop or the
    server's request in a traceback (session 21). `NaN` / `Infinity` are refused: they are not
    JSON, and re-serialised as `NaN` no OpenAI client could read the arguments."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        msg = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise json.JSONDecodeError(msg, text[:200], 0) from None


_BLOCK = re.compile(re.escape(TOOL_CALL_START) + r"(.*?)" + re.escape(TOOL_CALL_END), re.DOTALL)


def parse_arguments(name: str, raw: Any) -> tuple[dict[str, Any] | None, str, str | None]:
    """(arguments, raw json string, error) from an arguments value (object or JSON string)."""
    if isinstance(raw, dict):
        return raw, json.dumps(raw, ensure_ascii=False), None
    if raw is None or raw == "":
        return {}, "{}", None
    if not isinstance(raw, str):
        return None, json.dumps(raw), f"arguments of {name!r} must be a JSON object"
    try:
        parsed = loads_json(raw)
    except json.JSONDecodeError as exc:
        return None, raw, f"arguments of {name!r} are not valid JSON: {exc}"
    if not isinstance(parsed, dict):
        return None, raw, f"arguments of {name!r} must be a JSON object"
    return parsed, raw, None


def close_json(text: str) -> str | None:
    """`text` with the brackets it leaves open closed, or None when nothing can be closed
    safely (an unterminated string, a stray closer). Small models end a call one `}` short
    (`{"name": "read_file", "arguments": {"path": "a.py"}</tool_call>`): the intent is
    unambiguous, so the parser accepts the closed form rather than end the episode on it."""
    stack: list[str] = []
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and (not stack or stack.pop() != ch):
            return None  # a closer with nothing (or something else) open
    if in_str or not stack:
        return None
    return text + "".join(reversed(stack))


def parse_call_json(body: str, call_id: str) -> ToolCall:
    """One `<tool_call>` body: `{"name": str, "arguments": {...} | "json"}`; a body that only
    lacks closing brackets is read closed (`close_json`)."""
    try:
        obj = loads_json(body.strip())
    except json.JSONDecodeError as exc:
        closed = close_json(body.strip())
        try:
            obj = loads_json(closed) if closed is not None else None
        except json.JSONDecodeError:
            obj = None
        if obj is None:
            return ToolCall(call_id, "", None, body.strip(), f"tool call is not valid JSON: {exc}")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return ToolCall(
            call_id, "", None, body.strip(), 'tool call must be {"name": ..., "arguments": {...}}'
        )
    args, raw, err = parse_arguments(obj["name"], obj.get("arguments", {}))
    return ToolCall(call_id, obj["name"], args, raw, err)


def parse_assistant_text(text: str, id_prefix: str = "call") -> ParsedText:
    """Split generated text into reasoning, visible content and tool calls."""
    reasoning = None
    rest = text
    if THINK_END in rest:
        before, _, after = rest.partition(THINK_END)
        reasoning = before.split(THINK_START, 1)[-1].strip()
        rest = after
    calls: list[ToolCall] = []
    for i, m in enumerate(_BLOCK.finditer(rest)):
        calls.append(parse_call_json(m.group(1), f"{id_prefix}_{i}"))
    content = _BLOCK.sub("", rest)
    if TOOL_CALL_START in content:  # an unterminated block (generation hit a limit)
        idx = content.index(TOOL_CALL_START)
        calls.append(
            ToolCall(f"{id_prefix}_{len(calls)}", "", None, content[idx + len(TOOL_CALL_START) :][:2000],
                     f"unterminated {TOOL_CALL_START} (missing {TOOL_CALL_END})")
        )  # fmt: skip
        content = content[:idx]
    return ParsedText(content=content.strip(), reasoning=reasoning, tool_calls=calls)


def assistant_message(content: str, reasoning: str | None, calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant turn as kept in the conversation.

    Calls without a usable name cannot be echoed as structured tool calls (endpoints reject them),
    so their raw text stays in `content` and the loop answers them with a user message instead.
    """
    named = [c for c in calls if c.name]
    broken = [c.raw_arguments for c in calls if not c.name]
    text = "\n".join(
        [content or ""] + [f"{TOOL_CALL_START}{b}{TOOL_CALL_END}" for b in broken]
    ).strip()
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning:
        msg["reasoning_content"] = reasoning
    if named:
        msg["tool_calls"] = [c.to_message_part() for c in named]
    return msg


def tool_message(call: ToolCall, content: str) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": call.id,
        "name": call.name or "invalid",
        "content": content,
    }


def compact_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool schemas as a small model is shown them: name, the description's first
    sentence, and `{"param": "type"}` with optional parameters marked `param?` — ≈650 instead of
    ≈1,450 template tokens for our seven tools on the tiny tokenizer, which leaves a 1–2k-token
    context room for the task. The tool *calls* are unchanged (same names and arguments), so a
    trajectory is valid under either rendering; SFT data and the harness must use the same one."""
    out = []
    for t in tools:
        f = t.get("function", t) if isinstance(t, dict) else {}
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ValueError(f"not a function tool schema: {str(t)[:200]}")
        params = f.get("parameters") or {}
        required = set(params.get("required") or [])
        props = params.get("properties") or {}
        desc = str(f.get("description") or "").split(". ")[0].strip().rstrip(".")
        out.append(
            {
                "name": f["name"],
                "description": desc,
                "parameters": {
                    (k if k in required else f"{k}?"): (
                        v.get("type", "any") if isinstance(v, dict) else "any"
                    )
                    for k, v in props.items()
                },
            }
        )
    return out


# Models with at most this many tokens of context are shown `compact_tools` (the full schemas
# take ≈1.45k of a tiny model's 1–2k tokens); one rule for the harness, the SFT data and the
# server (session 23: the server rendered full schemas, so a tiny model behind `hillclimb serve`
# saw tools in a form it was never trained on: 1,554 prompt tokens where the harness used 792)
COMPACT_CONTEXT = 8192


def use_compact_tools(context: int) -> bool:
    """Whether a model with this context is shown the compact tool schemas."""
    return context <= COMPACT_CONTEXT
