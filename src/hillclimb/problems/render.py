"""Turning problems into training text: pre-training documents and chat (SFT) messages.

`to_messages` is the SFT format: the worked solution goes into `reasoning_content` (the chat
template renders it inside `<think>…</think>`) and `content` is the one final-answer convention
(`The answer is X.` / a single ```python block). `to_document` writes the same problem as natural
pre-training text in one of a few layouts, picked by a hash of the problem id so a corpus sees
varied layouts but every problem always renders the same way (deterministic data builds). Every
reasoning layout ends with the same `The answer is X.` sentence the SFT data uses, so pre-training
already teaches the answer format.
"""

from __future__ import annotations

import hashlib

from hillclimb.problems.base import Problem
from hillclimb.problems.verify import final_content


def _layout(p: Problem, n: int) -> int:
    return int(hashlib.sha256(p.id.encode()).hexdigest()[:8], 16) % n


def to_messages(p: Problem, verbose: bool = False) -> list[dict]:
    """The SFT chat record; `verbose` writes the reasoning the long way (`verbose_reasoning`)."""
    reasoning = verbose_reasoning(p) if verbose and p.kind == "reasoning" else p.reasoning
    return [
        {"role": "user", "content": p.prompt},
        {"role": "assistant", "reasoning_content": reasoning, "content": final_content(p)},
    ]


VERBOSE_CHECK = "Let me check by working it out again."
VERBOSE_AGREE = "Both workings agree."


def verbose_reasoning(p: Problem) -> str:
    """The worked solution written the way a reasoner that overthinks writes it: the question
    restated, the work, then the same work again as a check. Every step is correct and the
    answer unchanged; the tokens are redundant by construction.

    Why: length control (RL with ALP, `hillclimb rl --length-penalty alp`) can only shorten
    reasoning that is longer than it needs to be, and our generators write the minimal worked
    solution. `[sft_data] verbose_fraction` mixes this form into SFT so the experiment has
    something to remove, as the long chains of thought of the reasoners the technique was made
    for do (docs/areas/rl.md). Family-independent on purpose: no step is invented."""
    return (
        f"The question: {p.prompt}\n{p.reasoning}\n{VERBOSE_CHECK}\n{p.reasoning}\n{VERBOSE_AGREE}"
    )


def to_document(p: Problem) -> str:
    final = final_content(p)
    if p.kind == "reasoning":
        layout = _layout(p, 3)
        if layout == 0:
            return f"Problem: {p.prompt}\n\nSolution:\n{p.reasoning}\n{final}\n"
        if layout == 1:
            return (
                f"Question: {p.prompt}\nLet's work it out step by step.\n{p.reasoning}\n{final}\n"
            )
        return f"Q: {p.prompt}\nA: {p.reasoning}\n{final}\n"
    tests = p.tests or ""
    layout = _layout(p, 3)
    if layout == 0:
        return (
            f"Task: {p.prompt}\n\nPlan: {p.reasoning}\n\n{final}\n\nTests:\n```python\n{tests}```\n"
        )
    if layout == 1:
        # A plain Python file: the task and plan as comments, then the solution and its tests.
        return (
            f"{_as_comments('Task: ' + p.prompt)}\n#\n{_as_comments(p.reasoning)}\n\n"
            f"{p.answer}\n\n{tests}"
        )
    return f"{p.prompt}\n\n{p.reasoning}\n\n{final}\n"


def _as_comments(text: str) -> str:
    return "\n".join(f"# {line}" for line in text.splitlines())
