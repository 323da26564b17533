"""Family `code_function`: write a Python function from a one-sentence spec; tests are asserts.

The prompt names the function and its arguments, states the behaviour, and gives one worked
example drawn at random (which is what makes prompts of the same task distinct). The reference
answer is our hand-written implementation from `codetasks`; the worked reasoning is the task's
plan plus a check of the example. Tests are the task's fixed edge and random cases plus the
example, all computed by running our reference.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

from hillclimb.problems.base import Built
from hillclimb.problems.codetasks import (
    BY_TIER,
    assert_line,
    call_repr,
    compile_function,
    draw_instance,
)

KIND = "code"
TIER_SUMMARY = {t: f"{', '.join(x.name for x in BY_TIER[t])}" for t in BY_TIER}

TEMPLATES = (
    "Write a Python function `{sig}` that {doc}.",
    "Implement `{sig}` in Python: it {doc}.",
    "Define a Python function `{sig}` which {doc}.",
)


def sample(rng: random.Random, tier: int) -> tuple[str, Callable[[], Built]]:
    inst = draw_instance(rng, tier)
    task = inst.task
    sig = f"{task.name}({task.args})"
    args = task.inputs(rng, dict(inst.params))
    expected = compile_function(inst.source, task.name)(*copy.deepcopy(args))
    example = f"For example, `{call_repr(task.name, args)}` returns `{expected!r}`."
    prompt = rng.choice(TEMPLATES).format(sig=sig, doc=inst.doc) + " " + example

    def build() -> Built:
        cases = list(inst.cases)
        if all(a != args for a, _ in cases):
            cases.append((args, expected))
        tests = "\n".join(assert_line(task.name, a, e) for a, e in cases) + "\n"
        reasoning = f"{inst.plan}\nCheck: {call_repr(task.name, args)} gives {expected!r}."
        return {
            "reasoning": reasoning,
            "answer": inst.source,
            "tests": tests,
            "entry_point": task.name,
            "meta": {"task": task.name, "params": dict(inst.params)},
        }

    return prompt, build
