"""Family `arith_chain`: multi-step expressions solved one operation at a time.

An expression is a random binary tree rendered with the fewest parentheses that keep its meaning
(a right operand of equal precedence is always parenthesised, so the text reads exactly as the
tree evaluates). The worked solution reduces one operation per line in school order —
innermost parentheses first, then × and ÷, then + and -, each left to right — and shows what is
left after each step ("3 × 4 = 12, leaving 2 + 12 - 5."). Divisions are made exact by choosing
the divisor among the divisors of the left operand's value; out-of-range draws are rejected and
redrawn (cheap: expressions are tiny).

Tiers: 1 = two + / - steps on one-digit numbers (values 0..20, no parentheses); 2 = two or three
steps with ×, no parentheses; 3 = three or four steps with ÷ and parentheses; 4 = four or five
steps, larger numbers, negative intermediate values allowed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hillclimb.problems.base import Built, Draft, Phrasing

KIND = "reasoning"
TIER_SUMMARY = {
    1: "two + / - steps on one-digit numbers",
    2: "two or three steps with x (order of operations, no parentheses)",
    3: "three or four steps with x, / and parentheses",
    4: "four or five steps, numbers up to 30, negative intermediate values",
}

TEMPLATES = ("What is {e}?", "Evaluate {e}.", "Compute {e}.", "Work out {e}.")
# Held-out phrasings (never trained): other requests, and the expression in ASCII operators.
HELDOUT_TEMPLATES = (
    "Find the value of {e}.",
    "Simplify {e}.",
    "What number is {e}?",
    "{e} equals what?",
    "Solve: {e}",
    "Please calculate {e} for me.",
)
ASCII = {"×": "*", "÷": "/"}

PREC = {"+": 1, "-": 1, "×": 2, "÷": 2}


@dataclass
class Node:
    value: int
    op: str | None = None
    left: Node | None = None
    right: Node | None = None


# Per tier: (ops choices, min ops, max ops, literal max, value min, value max, parentheses ok)
SPEC = {
    1: ("+-", 2, 2, 9, 0, 20, False),
    2: ("+-×", 2, 3, 9, 0, 100, False),
    3: ("+-×÷", 3, 4, 20, 0, 300, True),
    4: ("+-×÷", 4, 5, 30, -999, 999, True),
}


class _Reject(Exception):
    pass


def _apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "×":
        return a * b
    return a // b


def _gen(rng: random.Random, k: int, tier: int) -> Node:
    ops, _, _, lit_max, vmin, vmax, _ = SPEC[tier]
    if k == 0:
        return Node(rng.randint(1, lit_max))
    op = rng.choice(ops)
    if op == "÷":
        left = _gen(rng, k - 1, tier)
        divs = [d for d in range(2, 13) if left.value % d == 0 and left.value // d != 0]
        if not divs:
            raise _Reject
        d = rng.choice(divs)
        right = Node(d)
    else:
        kl = rng.randint(0, k - 1)
        left, right = _gen(rng, kl, tier), _gen(rng, k - 1 - kl, tier)
    v = _apply(op, left.value, right.value)
    if not vmin <= v <= vmax:
        raise _Reject
    return Node(v, op, left, right)


def _needs_parens(child: Node, parent: Node, right: bool) -> bool:
    if child.op is None or parent.op is None:
        return False
    pc, pp = PREC[child.op], PREC[parent.op]
    return pc < pp or (right and pc == pp)


def _render(node: Node, leftmost: bool = True) -> str:
    if node.op is None:
        return str(node.value) if node.value >= 0 or leftmost else f"({node.value})"
    assert node.left is not None and node.right is not None
    lp = _needs_parens(node.left, node, False)
    rp = _needs_parens(node.right, node, True)
    ls = _render(node.left, leftmost and not lp)
    rs = _render(node.right, rp)
    if lp:
        ls = f"({ls})"
    if rp:
        rs = f"({rs})"
    return f"{ls} {node.op} {rs}"


def _next_reducible(root: Node) -> Node:
    """The node school order evaluates next: deepest parentheses, then precedence, then leftmost."""
    best: tuple[int, int, int] | None = None
    best_node = root
    counter = [0]

    def walk(node: Node, depth: int) -> None:
        nonlocal best, best_node
        if node.op is None:
            counter[0] += 1
            return
        assert node.left is not None and node.right is not None
        pos = counter[0]
        walk(node.left, depth + _needs_parens(node.left, node, False))
        walk(node.right, depth + _needs_parens(node.right, node, True))
        if node.left.op is None and node.right.op is None:
            key = (depth, PREC[node.op], -pos)
            if best is None or key > best:
                best, best_node = key, node

    walk(root, 0)
    return best_node


def _fmt_leaf(v: int) -> str:
    return str(v) if v >= 0 else f"({v})"


def solve_steps(root: Node) -> list[str]:
    lines = []
    while root.op is not None:
        node = _next_reducible(root)
        assert node.left is not None and node.right is not None and node.op is not None
        a, b = node.left.value, node.right.value
        fact = f"{a} {node.op} {_fmt_leaf(b)} = {node.value}"
        node.op, node.left, node.right = None, None, None
        if root.op is None:
            lines.append(f"{fact}.")
        else:
            lines.append(f"{fact}, leaving {_render(root)}.")
    return lines


def problem_key(node: Node) -> str:
    """The expression up to the order of its terms (as `arith` keys its facts): a run of + and -
    is one sorted list of signed terms and a run of x and / one sorted list of factors and
    divisors, so `9 + 7 × 2` and `7 × 2 + 9`, `5 + 7 + 7` and `7 + 7 + 5`, `8 - 6 - 2` and
    `8 - 2 - 6`, `2 + 7 - 2` and `7 - 2 + 2`, `6 × 4 ÷ 3` and `6 ÷ 3 × 4` are one problem and
    split together (every division here is exact, so a product run may be reordered). Measured
    before keys were order-free for + and x (default suite, seed 0): 23 / 50 held-out tier-1 and
    32 / 50 tier-2 expressions had such a twin among the training draws; with only + and x
    runs order-free (until session 22) 10 / 20 tier-1 and 3 / 20 tier-2 held-out items of the
    tiny climb's evaluation still had a twin reordered across a - or ÷ in its training draws."""
    if node.op is None:
        return str(node.value)
    signs = ("+", "-") if node.op in "+-" else ("×", "÷")
    terms: tuple[list[str], list[str]] = ([], [])  # added (multiplied), subtracted (divided by)
    stack = [(node, False)]
    while stack:
        n, inverted = stack.pop()
        if n.op in signs:
            assert n.left is not None and n.right is not None
            stack += [(n.right, inverted != (n.op == signs[1])), (n.left, inverted)]
        else:
            terms[inverted].append(problem_key(n))
    # written as before for what was already canonical (`(2 + 7)`, `(8 - 6)`), so those keep
    # their split; only runs through a - or ÷ get a new key
    text = f" {signs[0]} ".join(sorted(terms[0]))
    return "(" + text + "".join(f" {signs[1]} {t}" for t in sorted(terms[1])) + ")"


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    _, kmin, kmax, _, _, _, parens_ok = SPEC[tier]
    while True:
        k = rng.randint(kmin, kmax)
        try:
            root = _gen(rng, k, tier)
        except _Reject:
            continue
        expr = _render(root)
        if not parens_ok and "(" in expr:
            continue
        break
    if phr.style == "train":
        prompt = phr.rng.choice(TEMPLATES).format(e=expr)
    else:
        shown = expr
        if phr.rng.random() < 0.5:
            for sym, asc in ASCII.items():
                shown = shown.replace(sym, asc)
        prompt = phr.rng.choice(HELDOUT_TEMPLATES).format(e=shown)

    key = problem_key(root)  # before build(), which reduces the tree in place

    def build() -> Built:
        value = root.value
        lines = solve_steps(root)
        return {
            "reasoning": "\n".join(lines),
            "answer": str(value),
            "meta": {"expression": expr, "steps": len(lines)},
        }

    return Draft(prompt, key, build)
