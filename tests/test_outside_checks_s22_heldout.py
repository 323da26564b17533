"""Session 22 outside check (helper `heldout`): does the held-out split mean *unseen*?

Measured with /tmp/s22/heldout/leak.py (the tiny climb's training draws — data generators, SFT,
RL pools, the lookup baseline — against its evaluation: seed 0, 20 per family x tier, both
held-out splits). Each check below reads the problem from the prompt or the reference's
behaviour, independently of the generators' keys:

- arith_chain keyed + and x runs order-free but not runs through - or ÷: 10 / 20 held-out tier-1
  and 3 / 20 tier-2 items were a training expression reordered (`8 - 6 - 2` vs `8 - 2 - 6`);
- logic orderings keyed the order the facts are stated in and each fact's direction, while the
  names are surface: every held-out ordering (10 / 20 tier-3, 8 / 20 tier-4 items) asked a
  question a training ordering asked, renamed and restated; deductions keyed their made-up
  words, so every held-out tier-2 / tier-3 deduction (9 / 20 and 9 / 20 items once orderings
  were keyed right) had a training deduction of the same shape with other words;
- code: the catalogue's `binary_search` is `index_of` on the sorted lists its spec allows, `sign`
  is the generated clamp `min(max(x, -1), 1)`, and catalogue tests too weak to tell
  `reverse_string` / `char_counts` / `add_constant` from training functions of other keys
  (reverse-then-lowercase, tally of letters only, a piecewise rule whose branch never fired).
"""

from __future__ import annotations

import ast
import random
import re

import pytest

from hillclimb.problems import codetasks as C
from hillclimb.problems import generate, logic
from hillclimb.problems.arith_chain import Node, problem_key
from hillclimb.problems.base import key_bucket
from hillclimb.problems.codetasks import compile_function

# --- arith_chain ------------------------------------------------------------------------------


def _sum_terms(n: ast.AST, sign: str, out: list[str]) -> None:
    if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
        _sum_terms(n.left, sign, out)
        flip = {"+": "-", "-": "+"}[sign] if isinstance(n.op, ast.Sub) else sign
        _sum_terms(n.right, flip, out)
    else:
        out.append(sign + _value_form(n))


def _prod_terms(n: ast.AST, inv: bool, out: list[str]) -> None:
    if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Mult, ast.FloorDiv)):
        _prod_terms(n.left, inv, out)
        _prod_terms(n.right, inv != isinstance(n.op, ast.FloorDiv), out)
    else:
        out.append(("/" if inv else "*") + _value_form(n))


def _value_form(n: ast.AST) -> str:
    """An expression up to the order of its terms: a + / - run is a multiset of signed terms, a
    x / ÷ run (the generator divides exactly) a multiset of factors and divisors."""
    if isinstance(n, ast.Constant):
        return str(n.value)
    if isinstance(n, ast.UnaryOp):
        return "neg" + _value_form(n.operand)
    terms: list[str] = []
    if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
        _sum_terms(n, "+", terms)
        return "S(" + ",".join(sorted(terms)) + ")"
    _prod_terms(n, False, terms)
    return "P(" + ",".join(sorted(terms)) + ")"


def _chain_form(p) -> str:
    text = p.meta["expression"].replace("×", "*").replace("÷", "//")
    return _value_form(ast.parse(text, mode="eval").body)


@pytest.mark.parametrize("tier", [1, 2])
def test_arith_chain_heldout_has_no_twin_reordered_across_minus(tier):
    train = {_chain_form(p) for s in range(2) for t in (1, 2) for p in generate("arith_chain", t, 1500, s)}  # fmt: skip
    for split in ("heldout", "heldout_phrasing"):
        held = generate("arith_chain", tier, 20, 0, split)
        assert len(held) == 20  # the evaluation keeps its size
        twins = [p.meta["expression"] for p in held if _chain_form(p) in train]
        assert twins == [], split


def test_arith_chain_key_orders_terms_across_minus_and_divide():
    lf = Node

    def sub(a, b):
        return Node(a.value - b.value, "-", a, b)

    def add(a, b):
        return Node(a.value + b.value, "+", a, b)

    def mul(a, b):
        return Node(a.value * b.value, "×", a, b)

    def div(a, b):
        return Node(a.value // b.value, "÷", a, b)

    same = [
        (sub(sub(lf(8), lf(6)), lf(2)), sub(sub(lf(8), lf(2)), lf(6))),  # 8 - 6 - 2 / 8 - 2 - 6
        (sub(add(lf(2), lf(7)), lf(2)), add(sub(lf(7), lf(2)), lf(2))),  # 2 + 7 - 2 / 7 - 2 + 2
        (sub(lf(9), sub(lf(4), lf(2))), add(sub(lf(9), lf(4)), lf(2))),  # 9 - (4 - 2) / 9 - 4 + 2
        (div(mul(lf(6), lf(4)), lf(3)), mul(div(lf(6), lf(3)), lf(4))),  # 6 × 4 ÷ 3 / 6 ÷ 3 × 4
    ]
    for a, b in same:
        assert problem_key(a) == problem_key(b)
    differ = [
        (sub(lf(8), lf(7)), sub(lf(7), lf(8))),
        (div(lf(12), lf(3)), div(lf(12), lf(4))),
        (sub(add(lf(2), lf(7)), lf(2)), add(add(lf(2), lf(7)), lf(2))),
        (mul(lf(2), add(lf(3), lf(4))), add(mul(lf(2), lf(3)), lf(4))),
    ]
    for a, b in differ:
        assert problem_key(a) != problem_key(b)


# --- logic orderings --------------------------------------------------------------------------

_COMPARATIVE = {}
for _more, _less, _most, _least in logic.TRAITS + logic.HELDOUT_TRAITS:
    _COMPARATIVE[_more], _COMPARATIVE[_less] = 1, -1
_SUPERLATIVE = {
    w: tag for t in logic.TRAITS + logic.HELDOUT_TRAITS for w, tag in ((t[2], "most"), (t[3], "least"))
}  # fmt: skip


def _ordering_form(p) -> tuple | None:
    """(people, question, rank of the answer) read from the prompt: names, the order of the facts
    and their direction are wording."""
    facts = re.findall(r"(\w+) is (\w+) than (\w+)\.", p.prompt)
    if p.meta.get("template") != "ordering":
        return None
    above = {}  # name -> the name directly below it
    for x, word, y in facts:
        hi, lo = (x, y) if _COMPARATIVE[word] > 0 else (y, x)
        above[hi] = lo
    top = (set(above) - set(above.values())).pop()
    ranking = [top]
    while ranking[-1] in above:
        ranking.append(above[ranking[-1]])
    q = p.prompt.rsplit(".", 1)[1]
    words = q.replace("?", "").split()
    tags = [_SUPERLATIVE.get(w, w) for w in words if w in _SUPERLATIVE or w in logic.ORDINALS]
    return len(ranking), tuple(tags), ranking.index(p.answer)


_WORD = re.compile(r"\b(" + "|".join(sorted(logic.WORDS, key=len, reverse=True)) + r")(?:e?s)?\b")


def _deduction_form(p) -> tuple | None:
    """A deduction read from the prompt with its made-up words replaced by their role: the chain
    from what the person is, whether a "No" rule is stated, where each other rule joins the
    chain, and the answer (rule order and words are wording)."""
    if p.meta.get("template") != "deduction":
        return None
    rules = []
    for sent in re.split(r"(?<=\.) ", p.prompt):
        ws = _WORD.findall(sent)
        if len(ws) == 2 and sent.startswith(("Every", "All", "No ")):
            rules.append((ws[0], ws[1], not sent.startswith("No ")))
    step = {a: b for a, b, ok in rules if ok}
    chain = [re.search(r"\w+ is a (\w+)\. (?:Is|Does)", p.prompt)[1]]
    while chain[-1] in step and step[chain[-1]] not in chain:
        chain.append(step[chain[-1]])
    joins = sorted(chain.index(b) for a, b, ok in rules if ok and a not in chain)
    return len(chain), any(not ok for *_, ok in rules), tuple(joins), p.answer


@pytest.mark.parametrize("form", [_ordering_form, _deduction_form])
def test_logic_heldout_is_not_a_training_problem_renamed(form):
    train = {form(p) for s in range(2) for t in (2, 3, 4) for p in generate("logic", t, 1000, s)}
    for split in ("heldout", "heldout_phrasing"):
        for tier in (2, 3, 4):
            held = generate("logic", tier, 20, 0, split)
            assert len(held) == 20  # the evaluation keeps its size (other logic kinds fill it)
            forms = [form(p) for p in held]
            assert [f for f in forms if f is not None and f in train] == [], (split, tier)


# --- code: catalogue functions ----------------------------------------------------------------


def _passes(source: str, entry: str, cases) -> bool:
    try:
        fn = compile_function(source, entry)
        return all(fn(*C._copy(args)) == want for args, want in cases)
    except Exception:
        return False


def _instances(task, draws: int = 3):
    seen = {}
    for k in range(draws):
        params = tuple(sorted(task.params(random.Random(k)).items())) if task.params else ()
        inst = C.instance(C.task_index(task), params)
        seen[inst.source] = inst
    return list(seen.values())


def test_catalogue_twins_share_a_key():
    """A catalogue function that another key's reference passes on every test is that function:
    `binary_search` on a sorted list of distinct values answers exactly as `index_of`."""
    by_name = {t.name: t for t in C.TASKS}
    for name, other in (("binary_search", "index_of"),):
        inst = _instances(by_name[name])[0]
        twin = _instances(by_name[other])[0]
        assert _passes(twin.source, other, inst.cases)  # the premise: no test can tell them apart
        assert inst.key == twin.key
    # sign(x) is the generated clip family's min(max(x, -1), 1)
    sign = _instances(by_name["sign"])[0]
    assert _passes("def sign(x):\n    return min(max(x, -1), 1)\n", "sign", sign.cases)
    assert sign.key == "gen:expr|atleast|atmost"


@pytest.mark.parametrize(
    ("name", "impostor"),
    [
        ("reverse_string", "def reverse_string(s):\n    return s[::-1].lower()\n"),
        (
            "reverse_string",
            "def reverse_string(s):\n    return s.replace('a', 'o') if s == s[::-1] else s[::-1]\n",
        ),
        (
            "reverse_string",
            "def reverse_string(s):\n    return s if s[:1].isupper() else s[::-1]\n",
        ),
        (
            "char_counts",
            "def char_counts(s):\n    out = {}\n    for ch in s.lower():\n        out[ch] = out.get(ch, 0) + 1\n    return out\n",
        ),
        (
            "char_counts",
            "def char_counts(s):\n    out = {}\n    for ch in s:\n        if ch.isalpha():\n            out[ch] = out.get(ch, 0) + 1\n    return out\n",
        ),
        (
            "add_constant",
            "def add_constant(x):\n    return x * x if x % 11 == 0 else x + {k}\n",
        ),
    ],
)
def test_catalogue_tests_reject_training_functions_of_other_keys(name, impostor):
    """Each impostor is the shape of a generated training function the scan found passing the
    held-out catalogue task's tests (its inputs were lowercase only, never a palindrome longer
    than 3, never a digit, uppercase letter or space, never 0)."""
    task = next(t for t in C.TASKS if t.name == name)
    # char_counts is trained since session 27: it is the string twin of the list tally and keyed
    # as it (`codegen_spec.canonical_key`); its tests must still reject the impostors
    if name != "char_counts":
        assert key_bucket(C.CODE_NAMESPACE, task.key or C.function_key(name)) != "train"
    for inst in _instances(task):
        src = impostor.replace("{k}", str(inst.meta["params"].get("k", 0)))
        assert not _passes(src, name, inst.cases), inst.meta["params"]
