"""Outside check of decontamination (session 22): a SHORT held-out function — too few words for
a 13-word run, too few tokens for a 30-token code skeleton — copied with type hints added, its
names renamed, a docstring added or removed, reformatted or written as a lambda must still be
dropped (`code_fingerprint`: whole-function canonical forms), while ordinary one-liners that
every code base has (`return x ** 2`) and the same structure with other constants are kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hillclimb import problems as P
from hillclimb.data.code_fingerprint import MIN_NODES, canonical, text_fingerprints
from hillclimb.data.config import DecontaminateConfig
from hillclimb.data.decontam import Decontaminator, Probe, ProbeIndex
from hillclimb.data.decontam_records import decontaminate_records, load_probes
from hillclimb.errors import ConfigError

FAMILIES = ["code_function", "code_bugfix"]


@pytest.fixture(scope="module")
def index() -> ProbeIndex:
    """The probes of the held-out code items (seed 0, 3 per family x tier; about a second)."""
    recs = P.contamination_probes(seeds=[0], n_per_tier=3, families=FAMILIES)
    probes = [Probe(r["id"], f"problems:{r['split']}", t) for r in recs for t in r["texts"] if t]
    return ProbeIndex.build(probes, 13, 8)


def _drops(index: ProbeIndex, doc: str) -> bool:
    return Decontaminator(index, DecontaminateConfig(), set()).check(doc, "web", None)[0] == "drop"


def _hinted(name: str, params: list[str], body: str, doc: str = "") -> str:
    """`def name(p: int, ...) -> int:` with an optional docstring and `body` (4-space lines)."""
    sig = ", ".join(f"{p}: int" for p in params)
    docstring = f'    """{doc}"""\n' if doc else ""
    return f"def {name}({sig}) -> int:\n{docstring}{body}"


def _short(index: ProbeIndex) -> tuple[str, list[str], str]:
    """(name, parameters, return expression) of a held-out one-line reference function with
    enough nodes to be fingerprinted, whose copy with type hints the word and skeleton looks
    miss (`def pair_value(a, b): return a * b // 5`)."""
    import ast

    for p in P.problem_suite(0, "heldout", 3, ["code_function"], [1, 2]):
        fn = ast.parse(p.answer).body[0]
        if not (isinstance(fn, ast.FunctionDef) and len(fn.body) == 1):
            continue
        if not isinstance(fn.body[0], ast.Return) or canonical(fn)[1] < MIN_NODES:
            continue
        params = [a.arg for a in fn.args.args]
        expr = ast.unparse(fn.body[0].value)
        doc = _hinted(fn.name, params, f"    return {expr}\n")
        if index.match(doc) is None and index.match_skeleton(doc) is None:
            return fn.name, params, expr
    raise AssertionError("no short held-out function hidden by type hints")


def _renamed(params: list[str], expr: str) -> tuple[list[str], str]:
    """`params` renamed (`total`, `value`, ...) in `expr` too, word by word."""
    import re

    new = dict(zip(params, ["total", "value", "amount", "extra"], strict=False))
    return [new[p] for p in params], re.sub(r"\b\w+\b", lambda m: new.get(m[0], m[0]), expr)


# ---------------------------------------------------------------------------------------------
# Each disguise: got through before (no look matched), dropped now
# ---------------------------------------------------------------------------------------------


def test_a_short_held_out_function_with_type_hints_and_a_docstring_is_dropped(index):
    name, params, expr = _short(index)
    code = _hinted(name, params, f"    return {expr}\n", "Compute the value for the inputs.")
    doc = f"Here is my solution:\n\n```python\n{code}```\n\nHope it helps.\n"
    assert _drops(index, doc)


def test_a_short_held_out_function_renamed_and_reformatted_is_dropped(index):
    """Names renamed, hints added, a black-style signature (one parameter a line, `) -> int:`
    at the def's own indentation), as a method of a class inside prose."""
    _, params, expr = _short(index)
    params, expr = _renamed(params, expr)
    sig = "".join(f"        {p}: int,\n" for p in params)
    doc = (
        "Notes from the review.\n\nclass Helpers:\n    @staticmethod\n    def compute(\n"
        f"{sig}    ) -> int:\n        return ({expr})\n\nThat is all for today.\n"
    )
    assert _drops(index, doc)


def test_a_short_held_out_function_as_a_lambda_or_without_its_docstring_is_dropped(index):
    name, params, expr = _short(index)
    params, expr = _renamed(params, expr)
    assert _drops(index, f"Use this:\n    solve = lambda {', '.join(params)}: {expr}\nDone.\n")
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": [f"def f({', '.join(params)}):\n", f"    return {expr}\n"],
            }
        ]
    }
    assert _drops(index, json.dumps(nb))


# ---------------------------------------------------------------------------------------------
# Ordinary code is kept: generic one-liners are not fingerprinted, other constants differ
# ---------------------------------------------------------------------------------------------


def test_generic_one_liners_and_other_constants_are_kept(index):
    name, params, expr = _short(index)
    import re

    other = re.sub(r"\b\d+\b", lambda m: str(int(m[0]) + 7), expr)
    assert other != expr
    assert not _drops(index, _hinted(name, params, f"    return {other}\n"))
    # functions below MIN_NODES have no fingerprint: they are in every code base
    for code in (
        "def square(x):\n    return x ** 2\n",
        "def size(xs):\n    return len(xs)\n",
        "def rev(s):\n    return s[::-1]\n",
        "def stub(a, b):\n    '''Only a docstring.'''\n",
    ):
        assert list(text_fingerprints(code)) == [], code
    own = "def square(x: int) -> int:\n    '''Square.'''\n    return x ** 2\n"
    index2 = ProbeIndex.build([Probe("p", "problems:heldout", own)], 13, 8)
    assert index2.functions[0].size == 0 and not _drops(index2, "def sq(v):\n    return v ** 2\n")


def test_the_fingerprint_ignores_hints_names_docstrings_and_layout():
    a = list(text_fingerprints("def pair_value(a, b):\n    return a * b // 5\n"))
    b = list(
        text_fingerprints(
            "def go(\n    x: int,\n    y: int,\n) -> int:\n    '''Doc.'''\n    z: int = (x * y) // 5\n"
            "    return z\n"
        )
    )
    c = list(text_fingerprints("go = lambda x, y: x * y // 5"))
    assert len(a) == 1 and a == c
    assert b and b != a  # an extra local is another function: no overreach
    assert list(text_fingerprints("def f(x, y):\n    return x * y // 6\n")) != a


@pytest.mark.parametrize("terms", [2000, 5000])
def test_a_deeply_nested_expression_is_no_crash(index, terms):
    """`x + x + ... + x` parses into a chain thousands deep: the canonical walk must not raise
    RecursionError out of a data build (it did at 2,000 terms before the guard)."""
    doc = "Generated:\n\ndef f(x):\n    return " + " + ".join(["x"] * terms) + "\n"
    assert list(text_fingerprints(doc)) == []
    assert Decontaminator(index, DecontaminateConfig(), set()).check(doc, "web", None)[0] == "clean"


# ---------------------------------------------------------------------------------------------
# The index: saved and reloaded with its fingerprints; the format before is refused
# ---------------------------------------------------------------------------------------------


def test_a_reloaded_index_drops_the_same_and_v6_is_refused(index, tmp_path):
    name, params, expr = _short(index)
    doc = _hinted(name, params, f"    return {expr}\n")
    index.save(tmp_path / "probes.npz")
    loaded, _ = load_probes(tmp_path)
    assert len(loaded.functions[0]) == len(index.functions[0]) > 0
    assert _drops(loaded, doc)
    # an SFT record (`hillclimb sft --decontaminate`, the flywheel) is judged the same way
    rec = {
        "messages": [
            {"role": "user", "content": "Solve it."},
            {"role": "assistant", "content": doc},
        ]
    }
    clean = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    kept, rep = decontaminate_records([rec, clean], loaded)
    assert kept == [clean] and rep["examples"][0]["match"].startswith("function: ")
    path = tmp_path / "probes.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    head = json.loads(bytes(arrays["head"]))
    head["format"] = "hillclimb-decontam-index-v6"
    arrays["head"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match="rebuild it"):
        load_probes(path)
