"""Held-out audit: a held-out problem has no training twin that is the same problem reordered.

`arith` keys its facts order-free (3 + 5 and 5 + 3 split together). The other reasoning
families keyed the text as drawn, so a held-out item's commutative twin was a training problem:
before the fix, of the default suite (seed 0, 50 per tier) 44 / 50 held-out logic tier-1 items
("Which is smaller, 8 or 6?" vs the trained "Which is smaller, 6 or 8?"), 23 / 50 arith_chain
tier-1 and 32 / 50 tier-2 items ("9 + 7 × 2" vs "7 × 2 + 9") and 7 / 43 word_problem tier-1
items ("A has 4 cards and B has 3" vs "A has 3 and B has 4", names being surface) had one.
These checks canonicalise the *prompt* independently of the generators' keys.
"""

from __future__ import annotations

import ast
import re

import pytest

from hillclimb.problems import generate
from hillclimb.problems.arith_chain import Node, problem_key

_OPS = {"×": "*", "÷": "//"}


def _canon_arith(n: ast.AST) -> str:
    """Python AST of an arith_chain expression, + and * operands sorted (through runs)."""
    if isinstance(n, ast.Constant):
        return str(n.value)
    if isinstance(n, ast.UnaryOp):
        return f"-{_canon_arith(n.operand)}"
    assert isinstance(n, ast.BinOp)
    op = type(n.op).__name__
    if op in ("Add", "Mult"):
        terms, stack = [], [n]
        while stack:
            c = stack.pop()
            if isinstance(c, ast.BinOp) and type(c.op).__name__ == op:
                stack += [c.left, c.right]
            else:
                terms.append(_canon_arith(c))
        return f"{op}({','.join(sorted(terms))})"
    return f"{op}({_canon_arith(n.left)},{_canon_arith(n.right)})"


def _chain_expr(prompt: str) -> str:
    m = re.search(r"(-?\(?\d[\d\s+\-×÷*/()]*)", prompt)
    assert m, prompt
    text = m.group(1).strip().rstrip(".?")
    for sym, py in _OPS.items():
        text = text.replace(sym, py)
    return _canon_arith(ast.parse(text, mode="eval").body)


def _canon_bool(n: ast.AST) -> str:
    if isinstance(n, ast.Constant):
        return str(n.value)
    if isinstance(n, ast.Name):
        return n.id
    if isinstance(n, ast.UnaryOp):
        return f"not({_canon_bool(n.operand)})"
    assert isinstance(n, ast.BoolOp), ast.dump(n)
    op = type(n.op).__name__
    terms, stack = [], list(n.values)
    while stack:
        c = stack.pop()
        if isinstance(c, ast.BoolOp) and type(c.op).__name__ == op:
            stack += c.values
        else:
            terms.append(_canon_bool(c))
    return f"{op}({','.join(sorted(terms))})"


def _logic_content(prompt: str) -> str | None:
    """An order-free reading of a tier-1 logic prompt (training phrasing)."""
    m = re.fullmatch(r"Which is (larger|smaller), (\d+) or (\d+)\?", prompt)
    if m:
        a, b = sorted((int(m[2]), int(m[3])))
        return f"{m[1]}:{a},{b}"
    m = re.fullmatch(r"Is (\d+) (greater|less) than (\d+)\? Answer yes or no\.", prompt)
    if m:
        a, b = int(m[1]), int(m[3])
        x, y = (a, b) if m[2] == "greater" else (b, a)
        return f"is:{x}>{y}"
    m = re.fullmatch(r"What is (.+)\? Answer True or False\.", prompt)
    if m:
        return "bool:" + _canon_bool(ast.parse(m[1], mode="eval").body)
    raise AssertionError(f"unrecognised tier-1 logic prompt {prompt!r}")


@pytest.mark.parametrize("tier", [1, 2])
def test_arith_chain_heldout_has_no_reordered_training_twin(tier):
    train = {
        _chain_expr(p.prompt) for s in range(2) for p in generate("arith_chain", tier, 1500, s)
    }
    held = generate("arith_chain", tier, 50, 0, "heldout")
    assert len(held) == 50
    twins = [p.prompt for p in held if _chain_expr(p.prompt) in train]
    assert twins == []


def test_logic_tier1_heldout_has_no_swapped_training_twin():
    train = {_logic_content(p.prompt) for s in range(3) for p in generate("logic", 1, 1000, s)}
    for split in ("val", "heldout"):
        items = generate("logic", 1, 50, 0, split)
        assert len(items) >= 10  # fewer problems once keys are order-free, never none
        twins = [p.prompt for p in items if _logic_content(p.prompt) in train]
        assert twins == [], split


def test_word_problem_combine_is_order_free():
    def pair(p):  # the two owners' counts, in any order
        return tuple(sorted(int(x) for x in re.findall(r"\d+", p.prompt)))

    train = {pair(p) for s in range(3) for p in generate("word_problem", 1, 1000, s)
             if p.meta["template"] == "combine"}  # fmt: skip
    held = [
        p for p in generate("word_problem", 1, 50, 0, "heldout") if p.meta["template"] == "combine"
    ]
    assert held and not [p.prompt for p in held if pair(p) in train]


def test_keys_ignore_operand_order():
    leaf = Node
    a = Node(23, "+", Node(9), Node(14, "×", leaf(7), leaf(2)))  # 9 + 7 × 2
    b = Node(23, "+", Node(14, "×", leaf(2), leaf(7)), Node(9))  # 2 × 7 + 9
    assert problem_key(a) == problem_key(b)
    c = Node(19, "+", Node(12, "+", leaf(5), leaf(7)), leaf(7))  # 5 + 7 + 7
    d = Node(19, "+", Node(14, "+", leaf(7), leaf(7)), leaf(5))  # 7 + 7 + 5
    assert problem_key(c) == problem_key(d)
    e = Node(1, "-", leaf(8), leaf(7))  # 8 - 7 is not 7 - 8
    f = Node(-1, "-", leaf(7), leaf(8))
    assert problem_key(e) != problem_key(f)
