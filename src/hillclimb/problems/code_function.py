"""Family `code_function`: write a Python function from a one-sentence spec; tests are asserts.

Why it is built this way:

- The function comes from `codegen.draw`: about 70% generated programs (compositions of
  filters, maps and aggregates, piecewise rules, string steps — thousands per tier) and 30% the
  hand-written catalogue. The split key is the function's structure (or catalogue name), shared
  with `code_bugfix`, so a held-out function is never trained on in either family.
- The prompt names the function and its arguments, states the behaviour and shows one worked
  example. The example is wording, not content: it is drawn from the phrasing stream, so the
  same function appears with different examples in training while `heldout` and
  `heldout_phrasing` pair item by item.
- Held-out phrasings (`phr.style == "heldout"`) use forms no training prompt has: the docstring
  completion an editor sends (with a doctest; a None result is shown as `... is None` → True,
  as doctest would print nothing), a conversational request and a terse one.
- The reference answer is our canonical implementation; the worked reasoning is the plan plus a
  check of the example. Tests are the fixed edge and random cases plus the example, all computed
  by running our reference, plus hidden cases (`codetasks.strengthen_cases`) wherever the others
  would let a lookup of the shown example pass: without any one case, every constant answer and
  the first argument still fail one.
"""

from __future__ import annotations

import copy
import random
import textwrap

from hillclimb.problems.base import Built, Draft, Phrasing
from hillclimb.problems.codegen import draw
from hillclimb.problems.codetasks import (
    CODE_NAMESPACE,
    Instance,
    assert_line,
    call_repr,
    compile_function,
    strengthen_cases,
)

KIND = "code"
TIER_SUMMARY = {
    1: "one-line expressions: two integer steps, True/False tests, string steps (+ add, is_even…)",
    2: "one condition or a two-stage pipeline over a list/range/digits/string (+ sum_list…)",
    3: "three-stage pipelines, dicts, zip/common/concat, three-way bands (+ is_prime…)",
    4: "four stages: pairs i<j, windows, matrix rows, runs, iterated rules (+ binary_search…)",
}

TEMPLATES = (
    "Write a Python function `{sig}` that {doc}.",
    "Implement `{sig}` in Python: it {doc}.",
    "Define a Python function `{sig}` which {doc}.",
)
# Held-out phrasings: the docstring-completion form an editor sends, and other requests.
HELDOUT_TEMPLATES = (
    'Complete this Python function:\n```python\ndef {sig}:\n    """{Doc}.\n\n'
    '    >>> {doctest}\n    {shown}\n    """\n```',
    "I need a Python function called `{sig}`. It {doc}. As an example, {call} should give "
    "{expected}.",
    "Python: {sig} -- {doc}. Example: {call} -> {expected}",
)


def _docstring(doc: str) -> str:
    """The spec wrapped for a docstring body (first line after the opening quotes)."""
    text = doc[:1].upper() + doc[1:] + "."
    return textwrap.fill(text, width=92, subsequent_indent="    ")[:-1]


def completion_prompt(inst: Instance, args: tuple, expected: object) -> str:
    """The function as an editor would send it for completion (HumanEval's native form): the
    signature and a docstring with one doctest, to be continued with the body. Kept in every
    problem's `meta["completion_prompt"]` for `hillclimb eval --suite completion`."""
    call = call_repr(inst.name, args)
    doctest, shown = (f"{call} is None", "True") if expected is None else (call, repr(expected))
    return f'def {inst.sig}:\n    """{_docstring(inst.doc)}.\n\n    >>> {doctest}\n    {shown}\n    """\n'


def prompt_for(inst: Instance, args: tuple, expected: object, phr: Phrasing) -> str:
    call = call_repr(inst.name, args)
    if phr.style == "train":
        example = f"For example, `{call}` returns `{expected!r}`."
        return phr.rng.choice(TEMPLATES).format(sig=inst.sig, doc=inst.doc) + " " + example
    doctest, shown = (f"{call} is None", "True") if expected is None else (call, repr(expected))
    return phr.rng.choice(HELDOUT_TEMPLATES).format(
        sig=inst.sig,
        doc=inst.doc,
        Doc=_docstring(inst.doc),
        call=call,
        expected=repr(expected),
        doctest=doctest,
        shown=shown,
    )


def _unbuilt() -> Built:
    raise AssertionError("a draft refused by the split is never built")


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    inst = draw(rng, tier, lambda key: phr.wants(CODE_NAMESPACE, key))
    if isinstance(inst, str):  # refused by the split: nothing built
        return Draft("", inst, _unbuilt, namespace=CODE_NAMESPACE)
    # The example shown is wording, not content: drawn from the phrasing stream.
    args = inst.inputs(phr.rng)
    expected = compile_function(inst.source, inst.name)(*copy.deepcopy(args))
    prompt = prompt_for(inst, args, expected, phr)

    def build() -> Built:
        cases = list(strengthen_cases(inst))
        if all(a != args for a, _ in cases):
            cases.append((args, expected))
        tests = "\n".join(assert_line(inst.name, a, e) for a, e in cases) + "\n"
        reasoning = f"{inst.plan}\nCheck: {call_repr(inst.name, args)} gives {expected!r}."
        return {
            "reasoning": reasoning,
            "answer": inst.source,
            "tests": tests,
            "entry_point": inst.name,
            "meta": {**inst.meta, "completion_prompt": completion_prompt(inst, args, expected)},
        }

    return Draft(prompt, inst.key, build, namespace=CODE_NAMESPACE)
