"""Special tokens and the chat template — fixed here so every stage agrees on them.

The names are the ones Qwen2.5-Coder uses, so IDE plugins' FIM templates and tool-call parsers
work unchanged against our server and against vLLM serving our exported checkpoints. The order
is fixed too: special tokens take the ids right after the byte/BPE vocabulary in this order.

The chat template is ChatML with Qwen-style tool calls and `<think>` reasoning. It is written as a
Jinja template (stored in `tokenizer_config.json`, so `transformers` renders it too) and rendered
by us with the same Jinja source, so there is exactly one definition of the chat format.
"""

from __future__ import annotations

from typing import Any

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = "<think>"
THINK_END = "</think>"
TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
TOOL_RESPONSE_START = "<tool_response>"
TOOL_RESPONSE_END = "</tool_response>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_PAD = "<|fim_pad|>"
FILE_SEP = "<|file_sep|>"
REPO_NAME = "<|repo_name|>"

SPECIAL_TOKENS: list[str] = [
    ENDOFTEXT,
    IM_START,
    IM_END,
    THINK_START,
    THINK_END,
    TOOL_CALL_START,
    TOOL_CALL_END,
    TOOL_RESPONSE_START,
    TOOL_RESPONSE_END,
    FIM_PREFIX,
    FIM_SUFFIX,
    FIM_MIDDLE,
    FIM_PAD,
    FILE_SEP,
    REPO_NAME,
]

# Tokens that end generation: end of a chat turn, end of a document.
STOP_TOKENS: list[str] = [IM_END, ENDOFTEXT]

# ChatML + tools + reasoning. `reasoning_content` on an assistant message is rendered inside
# <think>...</think> before the content; `tool_calls` as <tool_call>{json}</tool_call> blocks;
# `tool` messages as <tool_response> blocks inside a user turn (as Qwen does, so that consecutive
# tool results share one turn). With `enable_thinking=false` the generation prompt carries an
# empty think block, which is how a request opts out of reasoning.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}"
    "{{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    '{{- \'\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\' }}'
    "{%- elif messages and messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}"
    "{%- if not loop.first %}{{- '<|im_start|>system\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif message.role == 'user' %}"
    "{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.reasoning_content is defined and message.reasoning_content is not none %}"
    "{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- if message.content %}{{- message.content }}{%- endif %}"
    "{%- if message.tool_calls %}"
    "{%- for tc in message.tool_calls %}"
    "{%- set fn = tc.function if tc.function is defined else tc %}"
    "{%- if (loop.first and message.content) or not loop.first %}{{- '\\n' }}{%- endif %}"
    '{{- \'<tool_call>\\n{\\"name\\": \\"\' + fn.name + \'\\", \\"arguments\\": \' }}'
    "{%- if fn.arguments is string %}{{- fn.arguments }}{%- else %}{{- fn.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def fim_prompt(prefix: str, suffix: str) -> str:
    """The PSM fill-in-the-middle prompt (Qwen2.5-Coder's layout); the model writes the middle."""
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}"


# The thinking-budget note a budget-conditioned model reads (L1-style budget conditioning). It
# lives with the chat template because SFT data (train), RL prompts (rl) and the server (serve)
# must render it byte-identically: it is part of what the model was trained on.
BUDGET_NOTE = "Think for at most {n} tokens."


def budget_note(n: int) -> str:
    """The system note that tells a budget-conditioned model its thinking budget (RL and the
    server must render it identically: it is part of what the model was trained on)."""
    return BUDGET_NOTE.format(n=int(n))


def with_budget_note(messages: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """`messages` with the budget note as the first system message (prepended to an existing
    leading system message's text, so the conversation keeps one system turn)."""
    note = budget_note(n)
    if (
        messages
        and messages[0].get("role") == "system"
        and isinstance(messages[0].get("content"), str)
    ):
        first = dict(messages[0])
        first["content"] = f"{note}\n\n{first['content']}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]
