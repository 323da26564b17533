"""Session 23 outside check (helper `heldout2`): held-out items that are a training item renamed.

Each check reads the problem from the prompt text, independently of the generators' keys, and
counts held-out items whose reading is a training item's (seed 0, 200 held-out items against a
few thousand training draws per family x tier):

- logic tier 4 formulas over variables were keyed by the variable names and the whole
  assignment: 29 of 176 held-out formulas were a training formula with the variables renamed or
  an unused variable's value changed, and 78 of 176 evaluated the same literal formula once
  substituted (50 of 176 a tier-3 *training* formula); now keyed by the substituted formula, 0;
- word problems keyed the two legs of a tier-3 trip in the order told: 2 of 64 held-out trips
  were a training trip with its legs swapped; now 0 (the tier-4 change story's three purchases,
  listed in the order drawn, are keyed order-free too: 0 measured either way, same reason).
"""

from __future__ import annotations

import ast
import itertools
import re

import pytest

from hillclimb.problems import generate
from test_heldout_audit import _canon_bool  # noqa: E402 (tests/ is on sys.path)

# --- logic: formulas over variables ----------------------------------------------------------


def _formula(prompt: str) -> tuple[dict[str, str], str] | None:
    """(assignment, expression) of a formula prompt, or None for another kind of logic item."""
    m = re.fullmatch(
        r"(?:Let|Given) (.*?)[.,] (?:What is|evaluate) (.*?)[?.] "
        r"(?:Answer True or False|Reply with True or False)\.",
        prompt,
    )
    if not m:
        return None
    return dict(re.findall(r"(\w+) = (True|False)", m[1])), m[2]


def _literal(prompt: str) -> str | None:
    """A literal formula (tiers 1-3) as the formula a tier-4 item's values substitute into."""
    m = re.fullmatch(r"What is (.+)\? Answer True or False\.", prompt)
    return _canon_bool(ast.parse(m[1], mode="eval").body) if m else None


def _substituted(prompt: str) -> str | None:
    f = _formula(prompt)
    if f is None:
        return None
    env, expr = f
    text = re.sub(r"\b([a-z])\b", lambda v: env[v[1]], expr)
    return _canon_bool(ast.parse(text, mode="eval").body)


def _renamed(prompt: str) -> str | None:
    """The formula up to the names of its variables, with the values of the used ones only."""
    f = _formula(prompt)
    if f is None:
        return None
    env, expr = f
    names = sorted(env)
    forms = []
    for perm in itertools.permutations(names):
        ren = dict(zip(names, (n.upper() for n in perm), strict=True))
        text = re.sub(r"\b([a-z])\b", lambda v, ren=ren: ren[v[1]], expr)
        back = {ren[k]: k for k in names}
        used = sorted(set(re.findall(r"\b([A-Z])\b", text)))
        values = ",".join(f"{u}={env[back[u]]}" for u in used)
        forms.append(values + "|" + _canon_bool(ast.parse(text, mode="eval").body))
    return min(forms)


@pytest.fixture(scope="module")
def logic_training() -> dict[str, set[str]]:
    t4 = [p.prompt for s in range(2) for p in generate("logic", 4, 2000, s)]
    t3 = [p.prompt for s in range(2) for p in generate("logic", 3, 2000, s)]
    return {
        "renamed": {f for f in map(_renamed, t4) if f},
        "substituted": {f for f in map(_substituted, t4) if f}
        | {f for f in map(_literal, t3) if f},
    }


@pytest.mark.parametrize("split", ["heldout", "heldout_phrasing"])
@pytest.mark.parametrize("reading", ["renamed", "substituted"])
def test_logic_formula_is_not_a_training_formula_renamed(logic_training, split, reading):
    held = generate("logic", 4, 200, 0, split)
    assert len(held) == 200  # the evaluation keeps its size
    form = _renamed if reading == "renamed" else _substituted
    forms = [form(p.prompt) for p in held]
    assert sum(f is not None for f in forms) >= 150  # most tier-4 logic items are formulas
    twins = [p.prompt for p, f in zip(held, forms, strict=True) if f in logic_training[reading]]
    assert twins == [], (len(twins), twins[:3])


def test_literal_formula_is_not_a_training_formula_substituted(logic_training):
    """The other direction: a held-out tier-3 literal formula is no tier-4 training formula's
    substitution (both kinds share one key space, so they split together)."""
    t4 = {
        f for s in range(2) for p in generate("logic", 4, 2000, s) if (f := _substituted(p.prompt))
    }
    held = [_literal(p.prompt) for p in generate("logic", 3, 200, 0, "heldout")]
    assert sum(f is not None for f in held) >= 20
    assert [f for f in held if f and f in t4] == []


# --- word problems: parts told in an order the story does not need ------------------------------


def _trip(prompt: str) -> tuple | None:
    """The two (speed, hours) legs of a tier-3 trip, in any order."""
    if "per hour for" in prompt and "then at" in prompt:  # training sentence: s1, t1, s2, t2
        s1, t1, s2, t2 = map(int, re.findall(r"\d+", prompt)[:4])
    elif prompt.startswith("For the first"):  # held-out sentence: t1, s1, t2, s2
        t1, s1, t2, s2 = map(int, re.findall(r"\d+", prompt)[:4])
    else:
        return None
    return tuple(sorted([(s1, t1), (s2, t2)]))


def _change(prompt: str) -> tuple | None:
    """The three (count, price) purchases of a tier-4 change story, in any order, and the bill."""
    pairs = re.findall(r"(\d+) [\w ]+? (?:at |\()(\d+) ", prompt)
    bill = re.findall(r"(?:pays|with) (\d+)", prompt)
    if len(pairs) != 3 or not bill:
        return None
    return tuple(sorted(pairs)), bill[-1]


@pytest.mark.parametrize(("tier", "form"), [(3, _trip), (4, _change)])
def test_word_problem_is_not_a_training_story_reordered(tier, form):
    train = {f for s in range(3) for p in generate("word_problem", tier, 2000, s) if (f := form(p.prompt))}  # fmt: skip
    for split in ("heldout", "heldout_phrasing"):
        held = generate("word_problem", tier, 200, 0, split)
        assert len(held) == 200
        forms = [form(p.prompt) for p in held]
        assert sum(f is not None for f in forms) >= 40  # the template is in the sample
        twins = [p.prompt for p, f in zip(held, forms, strict=True) if f and f in train]
        assert twins == [], (split, len(twins), twins[:2])


def test_a_reordered_story_has_the_reordered_key():
    """Key-level statement of the same rule: the legs of one trip told in either order are one
    problem, and a story whose numbers play other roles is not."""
    by_key: dict[str, set[tuple]] = {}
    for s in range(3):
        for p in generate("word_problem", 3, 2000, s):
            if (f := _trip(p.prompt)) is not None:
                by_key.setdefault(f, set()).add(p.key)
    assert by_key and all(len(keys) == 1 for keys in by_key.values())
