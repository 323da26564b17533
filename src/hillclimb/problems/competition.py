"""Family `competition` (held out): AIME-style counting and number-theory problems.

Why it exists: the system we reproduce reports AIME-like maths, the hardest reasoning a model is
asked for — several ideas chained (inclusion–exclusion, divisor counting, Legendre's formula,
lattice paths, a DP over residues), one integer answer, no multiple choice. Our other reasoning
families grow by *size* (more digits, more steps); this one grows by *idea*. It is the hard tier
of the reasoning suite and, like `sequence`, a held-out family (`problems.HELDOUT_FAMILIES`):
never generated for `train` or `val`, so no recipe can put it into training data, and a score on
it is transfer, not recall. Every answer is computed here by brute force or an exact formula
cross-checked against brute force (tests/test_problems_competition.py); the worked solution
shows the idea and the arithmetic.

Tiers: 1 = inclusion–exclusion for multiples, a power modulo a small number; 2 = counting
divisors from a factorisation, digit sum of a power, a sum of squares modulo m; 3 = ordered pairs
with 1/x + 1/y = 1/n, lattice paths avoiding a point, non-negative solutions of ax + by = N;
4 = subsets with a sum divisible by k (DP over residues), the exponent of a prime in N!
(Legendre), n ≤ N with a quadratic divisible by a prime.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from hillclimb.problems.base import Built, Draft, Phrasing

KIND = "reasoning"
TIER_SUMMARY = {
    1: "inclusion-exclusion for multiples, a power modulo a small number",
    2: "divisor count from a factorisation, digit sum of a power, sum of squares mod m",
    3: "pairs with 1/x + 1/y = 1/n, lattice paths avoiding a point, solutions of ax + by = N",
    4: "subsets with sum divisible by k, prime exponent in N! (Legendre), quadratic residues",
}

# (training-pool wordings, held-out wordings) per template; `{...}` are the template's fields.
WORDINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "multiples": (
        ("How many integers from 1 to {n} are divisible by {a} or by {b}?",
         "Count the positive integers not exceeding {n} that are multiples of {a} or of {b}."),
        ("Among 1, 2, ..., {n}, how many numbers have {a} or {b} as a divisor?",
         "Find the number of n with 1 <= n <= {n} such that {a} | n or {b} | n."),
    ),
    "powmod": (
        ("Find the remainder when {a}^{k} is divided by {m}.",
         "What is {a}^{k} mod {m}?"),
        ("Compute {a} to the power {k}, modulo {m}.",
         "{a}^{k} leaves what remainder on division by {m}?"),
    ),
    "divisors": (
        ("How many positive divisors does {n} have?",
         "Find the number of positive integers that divide {n}."),
        ("Count the divisors of {n} (including 1 and {n}).",
         "What is the number of positive factors of {n}?"),
    ),
    "digitsum": (
        ("What is the sum of the digits of {a}^{k}?",
         "Find the digit sum of {a}^{k}."),
        ("Add up the decimal digits of {a} raised to the power {k}.",
         "If N = {a}^{k}, what is the sum of the digits of N?"),
    ),
    "sumsq": (
        ("Find the remainder when 1^2 + 2^2 + ... + {n}^2 is divided by {m}.",
         "What is (1^2 + 2^2 + ... + {n}^2) mod {m}?"),
        ("The squares of 1 through {n} are added. What remainder does the total leave modulo {m}?",
         "Compute the sum of k^2 for k = 1..{n}, reduced modulo {m}."),
    ),
    "pairs": (
        ("How many ordered pairs (x, y) of positive integers satisfy 1/x + 1/y = 1/{n}?",
         "Find the number of ordered pairs of positive integers (x, y) with 1/x + 1/y = 1/{n}."),
        ("Count the solutions in positive integers x, y (order matters) of 1/x + 1/y = 1/{n}.",
         "For how many ordered pairs of positive integers does 1/x + 1/y equal 1/{n}?"),
    ),
    "paths": (
        ("A path from (0, 0) to ({m}, {n}) moves one unit right or up at each step. How many "
         "such paths avoid the point ({p}, {q})?",
         "How many up/right lattice paths from (0, 0) to ({m}, {n}) do not pass through "
         "({p}, {q})?"),
        ("Count the monotone lattice paths (unit steps east or north) from the origin to "
         "({m}, {n}) that never visit ({p}, {q}).",
         "On a grid, walk from (0, 0) to ({m}, {n}) using only right and up moves, skipping "
         "the point ({p}, {q}). How many walks are possible?"),
    ),
    "linear": (
        ("How many pairs (x, y) of non-negative integers satisfy {a}x + {b}y = {n}?",
         "Find the number of non-negative integer solutions of {a}x + {b}y = {n}."),
        ("Count the ways to write {n} as {a}x + {b}y with x, y whole numbers (zero allowed).",
         "In how many ways can {n} be paid exactly with coins of {a} and {b}?"),
    ),
    "subsets": (
        ("How many subsets of {{1, 2, ..., {n}}} (the empty set included) have a sum divisible "
         "by {k}?",
         "Count the subsets of {{1, ..., {n}}}, empty set included, whose elements add up to a "
         "multiple of {k}."),
        ("Including the empty subset, how many subsets of the first {n} positive integers have "
         "a total that is a multiple of {k}?",
         "For S = {{1, ..., {n}}}, find the number of subsets T (T may be empty) with "
         "sum(T) ≡ 0 (mod {k})."),
    ),
    "legendre": (
        ("What is the largest integer e such that {p}^e divides {n}!?",
         "Find the exponent of {p} in the prime factorisation of {n}!."),
        ("How many factors of {p} does {n} factorial contain?",
         "{n}! is divisible by {p}^e. What is the largest possible e?"),
    ),
    "quadratic": (
        ("How many integers n with 1 <= n <= {N} make n^2 + {c}n + {d} divisible by {p}?",
         "Count n in 1..{N} such that {p} divides n^2 + {c}n + {d}."),
        ("For how many n from 1 to {N} is n^2 + {c}n + {d} a multiple of {p}?",
         "Find the number of n, 1 <= n <= {N}, with n^2 + {c}n + {d} ≡ 0 (mod {p})."),
    ),
}  # fmt: skip

TIER_TEMPLATES: dict[int, tuple[str, ...]] = {
    1: ("multiples", "powmod"),
    2: ("divisors", "digitsum", "sumsq"),
    3: ("pairs", "paths", "linear"),
    4: ("subsets", "legendre", "quadratic"),
}

PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)

Solved = tuple[dict[str, int], list[str], int]  # (fields, worked lines, answer)


def factorise(n: int) -> list[tuple[int, int]]:
    out, p = [], 2
    while p * p <= n:
        e = 0
        while n % p == 0:
            n, e = n // p, e + 1
        if e:
            out.append((p, e))
        p += 1
    if n > 1:
        out.append((n, 1))
    return out


def _fact_text(fs: list[tuple[int, int]]) -> str:
    return " × ".join(f"{p}^{e}" if e > 1 else str(p) for p, e in fs)


def _multiples(rng: random.Random) -> Solved:
    a = rng.randint(2, 9)
    b = rng.choice([x for x in range(2, 13) if x != a and x % a and a % x])
    n = rng.randint(40, 400)
    lcm = a * b // math.gcd(a, b)
    x, y, z = n // a, n // b, n // lcm
    lines = [
        f"Multiples of {a} up to {n}: {n} // {a} = {x}.",
        f"Multiples of {b}: {n} // {b} = {y}.",
        f"Counted twice are the multiples of lcm({a}, {b}) = {lcm}: {n} // {lcm} = {z}.",
        f"By inclusion–exclusion: {x} + {y} - {z} = {x + y - z}.",
    ]
    return {"n": n, "a": a, "b": b}, lines, x + y - z


def _powmod(rng: random.Random) -> Solved:
    a, k, m = rng.randint(2, 12), rng.randint(6, 15), rng.randint(5, 19)
    if a % m == 0:
        a += 1
    r, steps = 1, []
    for i in range(1, k + 1):
        r = r * a % m
        steps.append(f"{a}^{i} ≡ {r}")
    lines = [f"Multiply by {a} and reduce modulo {m} at each step:", ", ".join(steps) + "."]
    return {"a": a, "k": k, "m": m}, lines, r


def _divisors(rng: random.Random) -> Solved:
    while True:
        n = 1
        for p in rng.sample(PRIMES[:6], rng.randint(2, 3)):
            n *= p ** rng.randint(1, 4)
        if 60 <= n <= 20000:
            break
    fs = factorise(n)
    count = math.prod(e + 1 for _, e in fs)
    lines = [
        f"{n} = {_fact_text(fs)}.",
        "A divisor picks each prime's exponent from 0 up to its exponent in n, so the count is "
        + " × ".join(f"({e} + 1)" for _, e in fs)
        + f" = {count}.",
    ]
    return {"n": n}, lines, count


def _digitsum(rng: random.Random) -> Solved:
    a = rng.randint(2, 9)
    k = rng.randint(8, max(9, int(15 / math.log10(a))))
    v = a**k
    s = sum(int(c) for c in str(v))
    lines = [f"{a}^{k} = {v}.", f"Its digits add up to {' + '.join(str(v))} = {s}."]
    return {"a": a, "k": k}, lines, s


def _sumsq(rng: random.Random) -> Solved:
    n, m = rng.randint(10, 200), rng.randint(7, 97)
    total = n * (n + 1) * (2 * n + 1) // 6
    lines = [
        "1^2 + ... + n^2 = n(n + 1)(2n + 1) / 6.",
        f"For n = {n}: {n} × {n + 1} × {2 * n + 1} / 6 = {total}.",
        f"{total} = {m} × {total // m} + {total % m}.",
    ]
    return {"n": n, "m": m}, lines, total % m


def _pairs(rng: random.Random) -> Solved:
    n = rng.randint(6, 120)
    fs = factorise(n)
    sq = [(p, 2 * e) for p, e in fs]
    count = math.prod(e + 1 for _, e in sq)
    lines = [
        f"Clearing denominators: xy = {n}(x + y), so (x - {n})(y - {n}) = {n}^2 = {n * n}.",
        f"Both factors are positive (x, y > {n}), so each ordered pair is a divisor d of "
        f"{n * n} with x = {n} + d.",
        f"{n * n} = {_fact_text(sq)}, which has "
        + " × ".join(f"({e} + 1)" for _, e in sq)
        + f" = {count} divisors.",
    ]
    return {"n": n}, lines, count


def _paths(rng: random.Random) -> Solved:
    m, n = rng.randint(3, 8), rng.randint(3, 8)
    p, q = rng.randint(1, m - 1), rng.randint(1, n - 1)
    total = math.comb(m + n, m)
    through = math.comb(p + q, p) * math.comb(m - p + n - q, m - p)
    lines = [
        f"All paths: C({m + n}, {m}) = {total}.",
        f"Paths through ({p}, {q}): C({p + q}, {p}) × C({m - p + n - q}, {m - p}) = "
        f"{math.comb(p + q, p)} × {math.comb(m - p + n - q, m - p)} = {through}.",
        f"Avoiding it: {total} - {through} = {total - through}.",
    ]
    return {"m": m, "n": n, "p": p, "q": q}, lines, total - through


def _linear(rng: random.Random) -> Solved:
    a, b = rng.sample(range(2, 14), 2)
    n = rng.randint(30, 180)
    xs = [x for x in range(n // a + 1) if (n - a * x) % b == 0]
    lines = [
        f"x runs from 0 to {n // a}; y = ({n} - {a}x) / {b} must be a whole number.",
        (f"That holds for x = {', '.join(map(str, xs))}." if xs else "It never holds."),
        "So there is 1 solution." if len(xs) == 1 else f"So there are {len(xs)} solutions.",
    ]
    return {"a": a, "b": b, "n": n}, lines, len(xs)


def _subsets(rng: random.Random) -> Solved:
    n, k = rng.randint(6, 14), rng.randint(3, 9)
    counts = [1] + [0] * (k - 1)  # subsets of {} by sum mod k: only the empty one
    lines = [f"Count subsets by their sum modulo {k}; start with the empty set: {counts}."]
    for i in range(1, n + 1):
        counts = [counts[r] + counts[(r - i) % k] for r in range(k)]
        lines.append(f"Adding {i}: {counts}.")
    lines.append(f"Subsets with sum ≡ 0: {counts[0]}.")
    return {"n": n, "k": k}, lines, counts[0]


def _legendre(rng: random.Random) -> Solved:
    p, n = rng.choice((2, 3, 5, 7)), rng.randint(50, 2000)
    terms, q = [], p
    while q <= n:
        terms.append((q, n // q))
        q *= p
    e = sum(t for _, t in terms)
    lines = [
        f"Legendre: e = sum of floor({n} / {p}^i).",
        " + ".join(f"floor({n}/{q}) = {t}" for q, t in terms) + ".",
        f"e = {' + '.join(str(t) for _, t in terms)} = {e}.",
    ]
    return {"p": p, "n": n}, lines, e


def _quadratic(rng: random.Random) -> Solved:
    p = rng.choice(PRIMES[2:9])
    c, d, big_n = rng.randint(1, 20), rng.randint(1, 40), rng.randint(60, 500)
    roots = [r for r in range(p) if (r * r + c * r + d) % p == 0]
    count = sum(1 for x in range(1, big_n + 1) if x % p in roots)
    per = [(r, sum(1 for x in range(1, big_n + 1) if x % p == r)) for r in roots]
    lines = [
        f"Check n = 0..{p - 1} modulo {p}: n^2 + {c}n + {d} ≡ 0 for n ≡ "
        + (", ".join(map(str, roots)) if roots else "none of them")
        + f" (mod {p}).",
    ]
    if roots:
        lines.append(
            f"In 1..{big_n}: "
            + "; ".join(f"{cnt} numbers are ≡ {r} (mod {p})" for r, cnt in per)
            + "."
        )
    lines.append(f"Total: {count}.")
    return {"N": big_n, "c": c, "d": d, "p": p}, lines, count


SOLVERS: dict[str, Callable[[random.Random], Solved]] = {
    "multiples": _multiples,
    "powmod": _powmod,
    "divisors": _divisors,
    "digitsum": _digitsum,
    "sumsq": _sumsq,
    "pairs": _pairs,
    "paths": _paths,
    "linear": _linear,
    "subsets": _subsets,
    "legendre": _legendre,
    "quadratic": _quadratic,
}


def sample(rng: random.Random, tier: int, phr: Phrasing) -> Draft:
    name = rng.choice(TIER_TEMPLATES[tier])
    fields, lines, answer = SOLVERS[name](rng)
    train, heldout = WORDINGS[name]
    prompt = phr.pick(train, heldout).format(**fields)
    key = f"{name}:" + ",".join(f"{k}={v}" for k, v in sorted(fields.items()))

    def build() -> Built:
        return {
            "reasoning": "\n".join(lines),
            "answer": str(answer),
            "meta": {"template": name, "steps": len(lines)},
        }

    return Draft(prompt, key, build)
