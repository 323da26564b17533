"""Family `logic`: comparisons, orderings, boolean evaluation and syllogism chains.

Every instance has exactly one correct answer by construction:
- orderings are made from a hidden random ranking and state only adjacent pairs (shuffled, in
  mixed "taller"/"shorter" directions), whose transitive closure is the full ranking;
- deductions use made-up words ("Every wug is a dax.") so no world knowledge can help or hurt,
  and the question is asked only about a property that the rules prove or refute;
- boolean expressions are fully parenthesised and evaluated one operator per line.
Answers are a number, a name, `yes`/`no`, or `True`/`False` (matching is case-insensitive).

Tiers: 1 = one comparison or one boolean operator; 2 = largest of three, three-person orderings,
two-operator booleans, one-step deductions; 3 = four people, three operators, two-to-three-step
chains; 4 = five people with middle positions, boolean formulas over variables, longer chains
with distractor rules.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hillclimb.problems.base import Built

KIND = "reasoning"
TIER_SUMMARY = {
    1: "compare two numbers, one boolean operator",
    2: "largest/smallest of three, order three people, two boolean operators, one-step deduction",
    3: "order four people, three boolean operators, two-to-three-step deductions",
    4: "order five people (middle positions), boolean formulas over variables, long deductions",
}

PEOPLE = (
    "Ann",
    "Bob",
    "Cara",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jill",
    "Kai",
    "Lou",
    "Max",
    "Nell",
    "Otto",
    "Pia",
    "Quin",
    "Rex",
    "Sia",
    "Ted",
)
# (comparative, opposite, superlative, opposite superlative)
TRAITS = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
)
WORDS = (
    "wug",
    "dax",
    "fep",
    "blick",
    "toma",
    "zorp",
    "glim",
    "pilf",
    "vonk",
    "yerp",
    "quib",
    "lorp",
    "mib",
    "tazz",
    "snib",
    "krel",
    "fomp",
    "drax",
)
ORDINALS = ("first", "second", "third", "fourth", "fifth")


def _compare(rng: random.Random, tier: int) -> tuple[str, list[str], str, str]:
    hi = 9 if tier == 1 else 99
    a, b = rng.sample(range(0, hi + 1), 2)
    k = rng.randrange(3)
    rel = ">" if a > b else "<"
    if k == 0:
        q = f"Which is larger, {a} or {b}?"
        return q, [f"{a} {rel} {b}."], str(max(a, b)), "compare"
    if k == 1:
        q = f"Which is smaller, {a} or {b}?"
        return q, [f"{a} {rel} {b}."], str(min(a, b)), "compare"
    word, sym, truth = rng.choice((("greater", ">", a > b), ("less", "<", a < b)))
    q = f"Is {a} {word} than {b}? Answer yes or no."
    return (
        q,
        [f"{a} {rel} {b}, so {a} {sym} {b} is {'true' if truth else 'false'}."],
        ("yes" if truth else "no"),
        "compare",
    )


def _extreme3(rng: random.Random) -> tuple[str, list[str], str, str]:
    xs = rng.sample(range(0, 100), 3)
    largest = rng.random() < 0.5
    word = "largest" if largest else "smallest"
    q = f"Which number is the {word}: {xs[0]}, {xs[1]} or {xs[2]}?"
    best = xs[0]
    lines = []
    for x in xs[1:]:
        new = max(best, x) if largest else min(best, x)
        lines.append(f"Compare {best} and {x}: keep {new}.")
        best = new
    return q, lines, str(best), "extreme"


def _ordering(rng: random.Random, n: int, middle: bool) -> tuple[str, list[str], str, str]:
    names = rng.sample(PEOPLE, n)  # hidden ranking, index 0 = most
    more, less, most, least = rng.choice(TRAITS)
    facts, norm = [], []
    for i in range(n - 1):
        x, y = names[i], names[i + 1]
        if rng.random() < 0.5:
            facts.append(f"{x} is {more} than {y}.")
        else:
            facts.append(f"{y} is {less} than {x}.")
        norm.append((x, y))
    order = list(range(n - 1))
    rng.shuffle(order)
    facts = [facts[i] for i in order]
    norm = [norm[i] for i in order]
    if middle:
        pos = rng.randrange(1, n - 1)
        q_text, ans = f"Who is the {ORDINALS[pos]} {most}?", names[pos]
    elif rng.random() < 0.5:
        q_text, ans, pos = f"Who is the {most}?", names[0], 0
    else:
        q_text, ans, pos = f"Who is the {least}?", names[-1], n - 1
    q = " ".join(facts) + " " + q_text
    lines = [f"{x} is {more} than {y}." for x, y in norm]
    lines.append(f"From {most} to {least}: {', '.join(names)}.")
    if middle:
        lines.append(f"Position {pos + 1} is {ans}.")
    return q, lines, ans, "ordering"


# --- boolean expressions -----------------------------------------------------------------------

Expr = bool | str | tuple  # literal | variable | ("not", e) | (op, a, b)


def _gen_bool(rng: random.Random, k: int, variables: tuple[str, ...]) -> Expr:
    if k == 0:
        return rng.choice(variables) if variables else rng.choice((True, False))
    if rng.random() < 0.25:
        return ("not", _gen_bool(rng, k - 1, variables))
    kl = rng.randint(0, k - 1)
    return (
        rng.choice(("and", "or")),
        _gen_bool(rng, kl, variables),
        _gen_bool(rng, k - 1 - kl, variables),
    )


def _bool_text(e: Expr, top: bool = True) -> str:
    if isinstance(e, bool):
        return str(e)
    if isinstance(e, str):
        return e
    if e[0] == "not":
        return f"not {_bool_text(e[1], False)}"
    s = f"{_bool_text(e[1], False)} {e[0]} {_bool_text(e[2], False)}"
    return s if top else f"({s})"


def _subst(e: Expr, env: dict[str, bool]) -> Expr:
    if isinstance(e, str):
        return env[e]
    if isinstance(e, bool):
        return e
    return (e[0], *(_subst(c, env) for c in e[1:]))


def _bool_steps(e: Expr, lines: list[str]) -> bool:
    """Evaluate innermost-first, left to right, one operator per line."""
    if isinstance(e, bool):
        return e
    assert not isinstance(e, str)
    if e[0] == "not":
        v = _bool_steps(e[1], lines)
        lines.append(f"not {v} = {not v}.")
        return not v
    a = _bool_steps(e[1], lines)
    b = _bool_steps(e[2], lines)
    v = (a and b) if e[0] == "and" else (a or b)
    lines.append(f"{a} {e[0]} {b} = {v}.")
    return v


def _boolean(rng: random.Random, tier: int) -> tuple[str, list[str], str, str]:
    k = {1: 1, 2: 2, 3: 3, 4: rng.randint(3, 5)}[tier]
    if tier < 4:
        e = _gen_bool(rng, k, ())
        q = f"What is {_bool_text(e)}? Answer True or False."
        lines: list[str] = []
        v = _bool_steps(e, lines)
        return q, lines, str(v), "boolean"
    names = ("p", "q", "r")
    env = {x: rng.random() < 0.5 for x in names}
    e = _gen_bool(rng, k, names)
    assign = ", ".join(f"{x} = {env[x]}" for x in names)
    q = f"Let {assign}. What is {_bool_text(e)}? Answer True or False."
    e2 = _subst(e, env)
    lines = [f"Substitute: {_bool_text(e2)}."]
    v = _bool_steps(e2, lines)
    return q, lines, str(v), "boolean"


def _deduction(rng: random.Random, steps: int, distractors: int) -> tuple[str, list[str], str, str]:
    words = rng.sample(WORDS, steps + 2 + distractors)
    chain = words[: steps + 1]
    person = rng.choice(PEOPLE)
    rules = [(chain[i], chain[i + 1], True) for i in range(steps)]
    negate = rng.random() < 0.5
    target = words[steps + 1]
    if negate:
        rules.append((chain[-1], target, False))
    for j in range(distractors):
        rules.append((words[steps + 2 + j], rng.choice(chain), True))
    shown = rules[:]
    rng.shuffle(shown)

    def rule_text(a: str, b: str, pos: bool) -> str:
        return f"Every {a} is a {b}." if pos else f"No {a} is a {b}."

    q_target = target if negate else chain[-1]
    q = (
        " ".join(rule_text(*r) for r in shown)
        + f" {person} is a {chain[0]}. Is {person} a {q_target}? Answer yes or no."
    )
    lines = [f"{person} is a {chain[0]}."]
    for a, b, _ in rules[:steps]:
        lines.append(f"Every {a} is a {b}, so {person} is a {b}.")
    if negate:
        lines.append(f"No {chain[-1]} is a {target}, so {person} is not a {target}.")
    return q, lines, "no" if negate else "yes", "deduction"


def _problem(rng: random.Random, tier: int) -> tuple[str, list[str], str, str]:
    if tier == 1:
        return _compare(rng, 1) if rng.random() < 0.6 else _boolean(rng, 1)
    k = rng.randrange(4)
    if tier == 2:
        if k == 0:
            return _extreme3(rng)
        if k == 1:
            return _ordering(rng, 3, False)
        if k == 2:
            return _boolean(rng, 2)
        return _deduction(rng, 1, 0)
    if tier == 3:
        if k == 0:
            return _ordering(rng, 4, False)
        if k == 1:
            return _ordering(rng, 4, True)
        if k == 2:
            return _boolean(rng, 3)
        return _deduction(rng, rng.randint(2, 3), rng.randint(0, 1))
    if k <= 1:
        return _ordering(rng, 5, True)
    if k == 2:
        return _boolean(rng, 4)
    return _deduction(rng, rng.randint(3, 4), rng.randint(1, 3))


def sample(rng: random.Random, tier: int) -> tuple[str, Callable[[], Built]]:
    prompt, lines, answer, kind = _problem(rng, tier)

    def build() -> Built:
        return {
            "reasoning": "\n".join(lines),
            "answer": answer,
            "meta": {"template": kind, "steps": len(lines)},
        }

    return prompt, build
