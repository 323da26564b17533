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


def to_messages(p: Problem) -> list[dict]:
    return [
        {"role": "user", "content": p.prompt},
        {"role": "assistant", "reasoning_content": p.reasoning, "content": final_content(p)},
    ]


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
