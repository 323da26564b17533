"""The catalogue of hand-written coding tasks, and the `Instance` every code problem is made of.

Each catalogue task is a function specification with a reference implementation written by hand
here, an input sampler and edge cases. Tests are `assert f(args) == expected` lines whose expected
values come from running OUR reference implementation in-process (it is our code, not a model's;
model-written code only ever runs in the sandbox). Some tasks take parameters (a constant, a
character, a greeting) that change the spec, the reference and the tests together.

Why it is built this way:

- The catalogue is small (49 functions) and classic (binary search, roman numerals, Kadane); most
  code problems now come from the generators in `codegen`, which compose thousands of distinct
  functions per tier. Both produce the same `Instance` (name, spec, canonical reference, fixed
  test cases, split key, input sampler), so `code_function` and `code_bugfix` treat them alike.
- Split keys name the function: `catalogue:<name>`, except for the few catalogue tasks that are
  one member of a generated family (`count_positive` is `gen:list|filter_above|count` with 0);
  those carry the family's key so the family is held out or trained as a whole (`sign` is the
  clip `min(max(x, -1), 1)`), and `binary_search` carries `index_of`'s key: on the sorted lists
  of distinct values it is given, every correct answer is `index_of`'s (session 22).

Tiers: 1 = one-line expressions; 2 = a condition or a simple loop; 3 = list/string algorithms;
4 = classic algorithms (binary search, sieve, DP, bracket matching, roman numerals).

References are written in `ast.unparse` canonical form so the bug-fix family can diff a mutated
tree against the original line by line.
"""

from __future__ import annotations

import ast
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hillclimb.problems.base import derive_seed
from hillclimb.problems.codegen_spec import canonical_key


@dataclass(frozen=True)
class CodeTask:
    name: str
    tier: int
    args: str
    doc: str
    src: str
    plan: str
    inputs: Callable[[random.Random, dict], tuple]
    edge: tuple[tuple, ...] = ()
    params: Callable[[random.Random], dict] | None = field(default=None)
    key: str = ""  # the split key when the task belongs to a generated family (see above)
    same_as: str = ""  # another catalogue task this one is, on the inputs it is given (see above)


def fill(text: str, params: dict[str, Any]) -> str:
    for k, v in params.items():
        text = text.replace("{" + k + "!r}", repr(v)).replace("{" + k + "}", str(v))
    return text


def _ints(r: random.Random, lo: int, hi: int, nmin: int, nmax: int) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(nmin, nmax))]


def _word(r: random.Random, lo: int = 1, hi: int = 7, letters: str = "abcdeor") -> str:
    return "".join(r.choice(letters) for _ in range(r.randint(lo, hi)))


def _pal(r: random.Random) -> str:
    half = _word(r, 1, 3, "abcd")
    return half + (r.choice("abcd") if r.random() < 0.5 else "") + half[::-1]


def _sentence(r: random.Random) -> str:
    return " ".join(_word(r, 1, 6, string.ascii_lowercase[:8]) for _ in range(r.randint(1, 4)))


def _k(lo: int, hi: int) -> Callable[[random.Random], dict]:
    return lambda r: {"k": r.randint(lo, hi)}


TASKS: tuple[CodeTask, ...] = (
    # ---------------- tier 1: one line ----------------
    CodeTask(
        "add",
        1,
        "a, b",
        "returns the sum of a and b",
        "def add(a, b):\n    return a + b\n",
        "Add the two numbers and return the result.",
        lambda r, P: (r.randint(-20, 50), r.randint(-20, 50)),
    ),
    CodeTask(
        "subtract",
        1,
        "a, b",
        "returns a minus b",
        "def subtract(a, b):\n    return a - b\n",
        "Subtract b from a and return the result.",
        lambda r, P: (r.randint(-20, 50), r.randint(-20, 50)),
    ),
    CodeTask(
        "multiply",
        1,
        "a, b",
        "returns the product of a and b",
        "def multiply(a, b):\n    return a * b\n",
        "Multiply the two numbers and return the product.",
        lambda r, P: (r.randint(-9, 12), r.randint(-9, 12)),
    ),
    CodeTask(
        "add_constant",
        1,
        "x",
        "returns x plus {k}",
        "def add_constant(x):\n    return x + {k}\n",
        "Return x with {k} added to it.",
        lambda r, P: (r.randint(-20, 50),),
        # 0 and -1: with random inputs only, "x * x if x % 11 == 0 else x + k" (a generated
        # training function of another key) passed every test
        edge=((0,), (-1,)),
        params=_k(2, 20),
    ),
    CodeTask(
        "scale",
        1,
        "x",
        "returns x multiplied by {k}",
        "def scale(x):\n    return x * {k}\n",
        "Return x times {k}.",
        lambda r, P: (r.randint(-20, 50),),
        params=_k(2, 12),
    ),
    CodeTask(
        "square",
        1,
        "x",
        "returns x squared",
        "def square(x):\n    return x * x\n",
        "Multiply x by itself.",
        lambda r, P: (r.randint(-12, 20),),
    ),
    CodeTask(
        "is_even",
        1,
        "n",
        "returns True if n is even and False otherwise",
        "def is_even(n):\n    return n % 2 == 0\n",
        "A number is even when n % 2 is 0.",
        lambda r, P: (r.randint(-20, 50),),
        edge=((0,), (7,)),
        key="gen:test|modulo|below",  # n % 2 < 1
    ),
    CodeTask(
        "larger",
        1,
        "a, b",
        "returns the larger of a and b",
        "def larger(a, b):\n    return max(a, b)\n",
        "Use max to pick the larger value.",
        lambda r, P: (r.randint(-20, 50), r.randint(-20, 50)),
    ),
    CodeTask(
        "negate",
        1,
        "x",
        "returns the negative of x",
        "def negate(x):\n    return -x\n",
        "Return minus x.",
        lambda r, P: (r.randint(-20, 50),),
    ),
    CodeTask(
        "last_digit",
        1,
        "n",
        "returns the last digit of the non-negative integer n",
        "def last_digit(n):\n    return n % 10\n",
        "The last digit is the remainder of n divided by 10.",
        lambda r, P: (r.randint(0, 9999),),
    ),
    CodeTask(
        "is_multiple",
        1,
        "n",
        "returns True if n is divisible by {k} and False otherwise",
        "def is_multiple(n):\n    return n % {k} == 0\n",
        "n is divisible by {k} when n % {k} is 0.",
        lambda r, P: (r.randint(0, 100) if r.random() < 0.6 else P["k"] * r.randint(0, 9),),
        params=_k(2, 9),
        key="gen:test|modulo|below",  # n % k < 1
    ),
    CodeTask(
        "first_item",
        1,
        "xs",
        "returns the first element of the non-empty list xs",
        "def first_item(xs):\n    return xs[0]\n",
        "The first element is at index 0.",
        lambda r, P: (_ints(r, -9, 30, 1, 5),),
    ),
    CodeTask(
        "greet",
        1,
        "name",
        "returns the string '{g}, ' followed by name and '!'",
        "def greet(name):\n    return {g2!r} + name + '!'\n",
        "Join '{g}, ', the name and '!'.",
        lambda r, P: (r.choice(("Ann", "Bo", "Cy", "Dee", "Eve", "Fin")),),
        params=lambda r: (lambda g: {"g": g, "g2": g + ", "})(r.choice(("Hello", "Hi", "Welcome"))),
    ),
    CodeTask(
        "is_positive",
        1,
        "x",
        "returns True if x is greater than 0 and False otherwise",
        "def is_positive(x):\n    return x > 0\n",
        "Compare x with 0.",
        lambda r, P: (r.randint(-20, 20),),
        edge=((0,),),
    ),
    # ---------------- tier 2: a condition or a simple loop ----------------
    CodeTask(
        "max_of_three",
        2,
        "a, b, c",
        "returns the largest of a, b and c without using max",
        "def max_of_three(a, b, c):\n    best = a\n    if b > best:\n        best = b\n    if c > best:\n        best = c\n    return best\n",
        "Start with a as the best value, then replace it by b or c whenever they are larger.",
        lambda r, P: (r.randint(-9, 30), r.randint(-9, 30), r.randint(-9, 30)),
        edge=((1, 2, 3), (3, 2, 1), (2, 3, 1)),
    ),
    CodeTask(
        "absolute",
        2,
        "x",
        "returns the absolute value of x without using abs",
        "def absolute(x):\n    if x < 0:\n        return -x\n    return x\n",
        "If x is negative return -x, otherwise return x.",
        lambda r, P: (r.randint(-30, 30),),
        edge=((0,), (-5,), (5,)),
        key="gen:piecewise|below|negate|identity",
    ),
    CodeTask(
        "clamp",
        2,
        "x, lo, hi",
        "returns x limited to the range from lo to hi (lo <= hi)",
        "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
        "Values below lo become lo, values above hi become hi, the rest stay.",
        lambda r, P: (lambda lo: (r.randint(-10, 30), lo, lo + r.randint(0, 10)))(
            r.randint(-5, 10)
        ),
        edge=((-3, 0, 5), (9, 0, 5), (3, 0, 5)),
    ),
    CodeTask(
        "sum_list",
        2,
        "xs",
        "returns the sum of the numbers in the list xs without using sum",
        "def sum_list(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n",
        "Start a total at 0 and add every element to it.",
        lambda r, P: (_ints(r, -9, 30, 1, 6),),
        edge=(([],), ([4, 5],)),
    ),
    CodeTask(
        "count_positive",
        2,
        "xs",
        "returns how many numbers in the list xs are greater than 0",
        "def count_positive(xs):\n    count = 0\n    for x in xs:\n        if x > 0:\n            count += 1\n    return count\n",
        "Go through the list and count the elements greater than 0.",
        lambda r, P: (_ints(r, -9, 9, 1, 7),),
        edge=(([],), ([0, 1, -1],)),
        key="gen:list|filter_above|count",
    ),
    CodeTask(
        "factorial",
        2,
        "n",
        "returns n! (the product 1 * 2 * ... * n, with 0! = 1)",
        "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
        "Multiply a running result by every number from 2 to n.",
        lambda r, P: (r.randint(0, 10),),
        edge=((0,), (1,), (5,)),
    ),
    CodeTask(
        "reverse_string",
        2,
        "s",
        "returns the string s reversed",
        "def reverse_string(s):\n    return s[::-1]\n",
        "A slice with step -1 reverses a string.",
        # with spaces: reversing each word in place is another function; capitals and longer
        # palindromes: lowercase-only inputs let "reverse, then lowercase", "capitalised: keep"
        # and "a palindrome: replace a letter" (generated training functions) pass every test
        lambda r, P: (_word(r) if r.random() < 0.5 else _sentence(r),),
        edge=(("",), ("ab",), ("ab cde",), ("Abc d",), ("abcba",), (" aba ",), ("Aroma",)),
    ),
    CodeTask(
        "is_palindrome",
        2,
        "s",
        "returns True if the string s reads the same backwards and False otherwise",
        "def is_palindrome(s):\n    return s == s[::-1]\n",
        "Compare s with its reverse.",
        lambda r, P: (_pal(r) if r.random() < 0.5 else _word(r, 2, 5, "abcd"),),
        edge=(("",), ("ab",), ("aba",)),
    ),
    CodeTask(
        "count_char",
        2,
        "s",
        "returns how many times the character {c!r} appears in the string s",
        "def count_char(s):\n    count = 0\n    for ch in s:\n        if ch == {c!r}:\n            count += 1\n    return count\n",
        "Loop over the characters and count those equal to {c!r}.",
        lambda r, P: (_word(r, 0, 9, "abcdeor"),),
        edge=(("",),),
        params=lambda r: {"c": r.choice("abcdeor")},
        key="gen:list|filter_equal|count",  # = gen:chars|filter_same|count (canonical_key)
    ),
    CodeTask(
        "sign",
        2,
        "x",
        "returns -1 if x is negative, 0 if x is 0 and 1 if x is positive",
        "def sign(x):\n    if x < 0:\n        return -1\n    if x == 0:\n        return 0\n    return 1\n",
        "Check negative first, then zero; everything else is positive.",
        lambda r, P: (r.randint(-20, 20),),
        edge=((0,), (-3,), (4,)),
        # on integers sign(x) is min(max(x, -1), 1): a member of the generated clip family
        key="gen:expr|atleast|atmost",
    ),
    CodeTask(
        "sum_to_n",
        2,
        "n",
        "returns 1 + 2 + ... + n (0 when n is 0)",
        "def sum_to_n(n):\n    total = 0\n    for i in range(1, n + 1):\n        total += i\n    return total\n",
        "Add every number from 1 to n to a running total.",
        lambda r, P: (r.randint(0, 40),),
        edge=((0,), (1,), (4,)),
    ),
    CodeTask(
        "count_vowels",
        2,
        "s",
        "returns how many vowels (a, e, i, o, u) the lowercase string s contains",
        "def count_vowels(s):\n    count = 0\n    for ch in s:\n        if ch in 'aeiou':\n            count += 1\n    return count\n",
        "Count the characters that are in 'aeiou'.",
        lambda r, P: (_word(r, 0, 9, "abeiotu"),),
        edge=(("",), ("xyz",)),
        key="gen:chars|filter_vowel|count",
    ),
    CodeTask(
        "min_list",
        2,
        "xs",
        "returns the smallest number in the non-empty list xs without using min",
        "def min_list(xs):\n    smallest = xs[0]\n    for x in xs[1:]:\n        if x < smallest:\n            smallest = x\n    return smallest\n",
        "Start with the first element and keep any smaller element you meet.",
        lambda r, P: (_ints(r, -20, 40, 1, 7),),
        edge=(([3],), ([5, 1, 4],), ([1, 5, 4],)),
    ),
    # ---------------- tier 3: list and string algorithms ----------------
    CodeTask(
        "running_sum",
        3,
        "xs",
        "returns a list whose i-th element is the sum of xs[0..i]",
        "def running_sum(xs):\n    out = []\n    total = 0\n    for x in xs:\n        total += x\n        out.append(total)\n    return out\n",
        "Keep a running total and append it after adding each element.",
        lambda r, P: (_ints(r, -9, 20, 1, 6),),
        edge=(([],), ([1, 2, 3],)),
    ),
    CodeTask(
        "remove_duplicates",
        3,
        "xs",
        "returns the list xs without repeated elements, keeping the first occurrence order",
        "def remove_duplicates(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out\n",
        "Remember the elements already seen in a set and keep only the first occurrence.",
        lambda r, P: (_ints(r, 0, 6, 1, 8),),
        edge=(([],), ([1, 1, 2, 1],)),
    ),
    CodeTask(
        "second_largest",
        3,
        "xs",
        "returns the second largest distinct value in xs (xs has at least two distinct values)",
        "def second_largest(xs):\n    values = sorted(set(xs))\n    return values[-2]\n",
        "Sort the distinct values; the second largest is the second from the end.",
        lambda r, P: (lambda xs: (xs + [max(xs) + 1] if len(set(xs)) < 2 else xs,))(
            _ints(r, -9, 20, 2, 7)
        ),
        edge=(([1, 2],), ([5, 5, 3],)),
    ),
    CodeTask(
        "is_prime",
        3,
        "n",
        "returns True if n is a prime number and False otherwise",
        "def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, n):\n        if d * d > n:\n            break\n        if n % d == 0:\n            return False\n    return True\n",
        "Numbers below 2 are not prime; otherwise try divisors d while d * d <= n.",
        lambda r, P: (r.randint(0, 120),),
        edge=((0,), (1,), (2,), (9,), (25,), (29,)),
    ),
    CodeTask(
        "fibonacci",
        3,
        "n",
        "returns the n-th Fibonacci number, with fibonacci(0) == 0 and fibonacci(1) == 1",
        "def fibonacci(n):\n    a, b = (0, 1)\n    for _ in range(n):\n        a, b = (b, a + b)\n    return a\n",
        "Step a pair (a, b) forward n times; a is the answer.",
        lambda r, P: (r.randint(0, 25),),
        edge=((0,), (1,), (2,), (7,)),
    ),
    CodeTask(
        "digit_sum",
        3,
        "n",
        "returns the sum of the decimal digits of the non-negative integer n",
        "def digit_sum(n):\n    total = 0\n    for ch in str(n):\n        total += int(ch)\n    return total\n",
        "Turn n into a string and add up its digits.",
        lambda r, P: (r.randint(0, 99999),),
        edge=((0,), (909,)),
    ),
    CodeTask(
        "caesar",
        3,
        "s",
        "shifts every letter of the lowercase string s forward by {k} places in the alphabet, wrapping from z to a",
        "def caesar(s):\n    out = []\n    for ch in s:\n        out.append(chr((ord(ch) - 97 + {k}) % 26 + 97))\n    return ''.join(out)\n",
        "Map each letter to 0..25, add {k} modulo 26 and map back.",
        lambda r, P: (_word(r, 1, 7, "abcxyz"),),
        edge=(("",), ("xyz",)),
        params=_k(1, 25),
    ),
    CodeTask(
        "filter_even",
        3,
        "xs",
        "returns the even numbers of xs in their original order",
        "def filter_even(xs):\n    return [x for x in xs if x % 2 == 0]\n",
        "Keep the elements whose remainder modulo 2 is 0.",
        lambda r, P: (_ints(r, -9, 20, 1, 7),),
        edge=(([],), ([1, 3],)),
        key="gen:list|filter_multiple|list",
    ),
    CodeTask(
        "char_counts",
        3,
        "s",
        "returns a dict mapping each character of s to how many times it occurs",
        "def char_counts(s):\n    counts = {}\n    for ch in s:\n        counts[ch] = counts.get(ch, 0) + 1\n    return counts\n",
        "Walk the string and increment a per-character counter in a dict.",
        lambda r, P: (_word(r, 0, 8, "abcd"),),
        # every kind of character: on "abcd" only, tallies of the letters, of the lowercase
        # letters or of the lowercased string (generated training functions) passed every test
        edge=(("",), ("aab",), ("aB b1A",)),
        key="gen:list|tally",  # = gen:chars|tally (canonical_key)
    ),
    CodeTask(
        "index_of",
        3,
        "xs, target",
        "returns the index of the first occurrence of target in xs, or -1 if it is absent",
        "def index_of(xs, target):\n    for i in range(len(xs)):\n        if xs[i] == target:\n            return i\n    return -1\n",
        "Scan the indices in order and return the first match; -1 if the loop ends.",
        lambda r, P: (_ints(r, 0, 9, 1, 7), r.randint(0, 9)),
        edge=(([], 1), ([3, 1, 3], 3), ([1, 2], 2)),
    ),
    CodeTask(
        "rotate_left",
        3,
        "xs, k",
        "returns xs rotated left by k positions (k may exceed the length; an empty list stays empty)",
        "def rotate_left(xs, k):\n    if not xs:\n        return []\n    k = k % len(xs)\n    return xs[k:] + xs[:k]\n",
        "Reduce k modulo the length, then join the tail after position k with the head.",
        lambda r, P: (_ints(r, 0, 9, 1, 6), r.randint(0, 8)),
        edge=(([], 3), ([1, 2, 3], 1), ([1, 2, 3], 4)),
    ),
    CodeTask(
        "capitalize_words",
        3,
        "s",
        "returns s with the first letter of every space-separated word in upper case",
        "def capitalize_words(s):\n    return ' '.join((w.capitalize() for w in s.split()))\n",
        "Split into words, capitalize each and join them with single spaces.",
        lambda r, P: (_sentence(r),),
        edge=(("",),),
        key="gen:words|map_capitalize|joined",
    ),
    # ---------------- tier 4: classic algorithms ----------------
    CodeTask(
        "binary_search",
        4,
        "xs, target",
        "returns an index of target in the sorted list xs using binary search, or -1 if it is absent",
        "def binary_search(xs, target):\n    lo, hi = (0, len(xs) - 1)\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if xs[mid] == target:\n            return mid\n        if xs[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
        "Keep a window lo..hi; compare the middle element and halve the window until found or empty.",
        lambda r, P: (sorted(set(_ints(r, 0, 40, 1, 9))), r.randint(0, 40)),
        edge=(([], 3), ([1, 3, 5], 5), ([1, 3, 5], 1), ([1, 3, 5], 4)),
        # on the sorted lists of distinct values it is given, any correct answer is index_of's:
        # one function, whatever the algorithm (a held-out binary_search was a training index_of)
        same_as="index_of",
    ),
    CodeTask(
        "common_prefix",
        4,
        "words",
        "returns the longest common prefix of the strings in the list words ('' for an empty list)",
        "def common_prefix(words):\n    if not words:\n        return ''\n    prefix = words[0]\n    for w in words[1:]:\n        i = 0\n        for a, b in zip(prefix, w):\n            if a != b:\n                break\n            i += 1\n        prefix = prefix[:i]\n    return prefix\n",
        "Start from the first word and shorten the prefix to what each next word shares with it.",
        lambda r, P: (lambda p: ([p + _word(r, 0, 3, "abc") for _ in range(r.randint(1, 4))],))(
            _word(r, 0, 3, "ab")
        ),
        edge=(([],), (["ab", "ac"],), (["abc"],), (["x", "y"],)),
    ),
    CodeTask(
        "balanced",
        4,
        "s",
        "returns True if the brackets ()[]{} in s are balanced and correctly nested, False otherwise",
        "def balanced(s):\n    pairs = {')': '(', ']': '[', '}': '{'}\n    stack = []\n    for ch in s:\n        if ch in '([{':\n            stack.append(ch)\n        elif ch in pairs:\n            if not stack or stack[-1] != pairs[ch]:\n                return False\n            stack.pop()\n    return not stack\n",
        "Push opening brackets on a stack; each closing bracket must match the top. The stack must end empty.",
        lambda r, P: (
            "".join(r.choice("()[]{}") for _ in range(r.randint(1, 6)))
            if r.random() < 0.5
            else r.choice(("()", "[()]", "{[]}()", "(([]))", "[{}]")),
        ),
        edge=(("",), ("(]",), ("(()",), ("([])",), (")(",)),
    ),
    CodeTask(
        "primes_up_to",
        4,
        "n",
        "returns the list of all primes <= n in increasing order (use a sieve)",
        "def primes_up_to(n):\n    if n < 2:\n        return []\n    is_p = [True] * (n + 1)\n    is_p[0] = is_p[1] = False\n    for i in range(2, n + 1):\n        if is_p[i]:\n            for j in range(i * i, n + 1, i):\n                is_p[j] = False\n    return [i for i in range(n + 1) if is_p[i]]\n",
        "Mark every multiple of each prime as composite; what stays marked True is prime.",
        lambda r, P: (r.randint(0, 60),),
        edge=((0,), (2,), (10,), (13,)),
    ),
    CodeTask(
        "run_length",
        4,
        "s",
        "returns the run-length encoding of s: each run of a character as the character followed by the run length, e.g. 'aaab' -> 'a3b1'",
        "def run_length(s):\n    out = []\n    i = 0\n    for j in range(1, len(s) + 1):\n        if j == len(s) or s[j] != s[i]:\n            out.append(s[i] + str(j - i))\n            i = j\n    return ''.join(out)\n",
        "Track where the current run starts; when the character changes or the string ends, emit it with its length.",
        lambda r, P: (_word(r, 0, 9, "aab"),),
        edge=(("",), ("a",), ("aaab",), ("abba",)),
    ),
    CodeTask(
        "transpose",
        4,
        "matrix",
        "returns the transpose of a non-empty rectangular matrix given as a list of rows",
        "def transpose(matrix):\n    rows, cols = (len(matrix), len(matrix[0]))\n    return [[matrix[i][j] for i in range(rows)] for j in range(cols)]\n",
        "Row j of the result collects element j of every input row.",
        lambda r, P: (
            lambda rows, cols: ([[r.randint(0, 9) for _ in range(cols)] for _ in range(rows)],)
        )(r.randint(1, 4), r.randint(1, 4)),
        edge=(([[1, 2, 3]],), ([[1], [2]],), ([[1, 2], [3, 4], [5, 6]],)),
    ),
    CodeTask(
        "lis_length",
        4,
        "xs",
        "returns the length of the longest strictly increasing subsequence of xs",
        "def lis_length(xs):\n    best = [1] * len(xs)\n    for i in range(len(xs)):\n        for j in range(i):\n            if xs[j] < xs[i] and best[j] + 1 > best[i]:\n                best[i] = best[j] + 1\n    return max(best, default=0)\n",
        "best[i] is the longest increasing run ending at i: extend any earlier smaller element's best by one.",
        lambda r, P: (_ints(r, 0, 9, 1, 8),),
        edge=(([],), ([3, 1, 2],), ([1, 2, 3],), ([2, 2],)),
    ),
    CodeTask(
        "to_roman",
        4,
        "n",
        "returns the Roman numeral for 1 <= n <= 3999",
        "def to_roman(n):\n    values = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'), (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n    out = []\n    for value, sym in values:\n        while n >= value:\n            out.append(sym)\n            n -= value\n    return ''.join(out)\n",
        "Greedily take the largest value (including the subtractive pairs like 900 = CM) while it fits.",
        lambda r, P: (r.randint(1, 3999),),
        edge=((4,), (9,), (14,), (40,), (1994,)),
    ),
    CodeTask(
        "max_subarray",
        4,
        "xs",
        "returns the largest sum of a non-empty contiguous slice of the non-empty list xs",
        "def max_subarray(xs):\n    best = cur = xs[0]\n    for x in xs[1:]:\n        cur = max(x, cur + x)\n        best = max(best, cur)\n    return best\n",
        "Kadane: the best slice ending here either extends the previous one or starts fresh.",
        lambda r, P: (_ints(r, -9, 9, 1, 8),),
        edge=(([-3],), ([-2, -1],), ([2, -1, 2],), ([-1, 3, -5, 4],)),
    ),
    CodeTask(
        "two_sum",
        4,
        "xs, target",
        "returns the pair (i, j) with i < j and xs[i] + xs[j] == target that comes first (smallest i, then smallest j), or None",
        "def two_sum(xs, target):\n    for i in range(len(xs)):\n        for j in range(i + 1, len(xs)):\n            if xs[i] + xs[j] == target:\n                return (i, j)\n    return None\n",
        "Try every pair i < j in order and return the first whose sum is target.",
        lambda r, P: (_ints(r, 0, 9, 2, 6), r.randint(0, 18)),
        edge=(([1, 2], 3), ([1, 2], 5), ([3, 3, 3], 6), ([], 1)),
    ),
)

_INDEX = {t.name: i for i, t in enumerate(TASKS)}
# One-string tasks whose spec holds for every string, not only for what their sampler draws
# (lowercase words): these get a case holding the characters generated rules test for
# (`codegen.with_alphabet_case`, session 29). Not in it: `caesar` and `count_vowels` (lowercase
# only), `capitalize_words` (a generated key's twin, tested as that family).
OPEN_DOMAIN = frozenset(
    {
        "greet",
        "reverse_string",
        "is_palindrome",
        "count_char",
        "char_counts",
        "balanced",
        "run_length",
    }
)
BY_TIER: dict[int, tuple[CodeTask, ...]] = {
    t: tuple(x for x in TASKS if x.tier == t) for t in (1, 2, 3, 4)
}


@dataclass(frozen=True, eq=False)
class Instance:
    """One function to write: spec, canonical reference, fixed test cases and split key.

    `cases` are (args, expected) pairs computed by running the reference; `inputs(rng)` draws one
    more argument tuple (the example a prompt shows)."""

    name: str
    args: str
    doc: str
    plan: str
    source: str  # canonical reference source
    cases: tuple[tuple[tuple, Any], ...]
    key: str
    inputs: Callable[[random.Random], tuple]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sig(self) -> str:
        return f"{self.name}({self.args})"


def call_repr(name: str, args: tuple) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def assert_line(name: str, args: tuple, expected: Any) -> str:
    if expected is None or isinstance(expected, bool):
        return f"assert {call_repr(name, args)} is {expected!r}"
    return f"assert {call_repr(name, args)} == {expected!r}"


@lru_cache(maxsize=4096)
def compile_function(source: str, name: str) -> Callable:
    """Run OUR reference (or our mutation of it) in-process to compute expectations."""
    ns: dict[str, Any] = {}
    exec(compile(source, f"<{name}>", "exec"), ns)
    return ns[name]


def canonical(source: str) -> str:
    return ast.unparse(ast.parse(source)) + "\n"


def derive_cases(
    source: str,
    fn: Callable,
    edges: tuple[tuple, ...],
    inputs: Callable[[random.Random], tuple],
    n_random: int = 5,
    strict: bool = True,
) -> tuple[tuple[tuple, Any], ...]:
    """Edge cases plus `n_random` distinct random inputs (seeded by the source), with the
    reference's results. `strict=False` skips inputs the reference raises on."""
    rng = random.Random(derive_seed("code-cases", source))
    seen: list[tuple] = []
    for args in edges:
        if args not in seen:
            seen.append(args)
    target = len(seen) + n_random
    tries = 0
    while len(seen) < target and tries < 12 * n_random:
        tries += 1
        args = inputs(rng)
        if args not in seen:
            seen.append(args)
    out = []
    for args in seen:
        try:
            out.append((args, fn(*_copy(args))))
        except Exception:
            if strict:
                raise
    return tuple(out)


# Random inputs per catalogue task beside its edge cases: as many as a generated function gets
# (`codegen.N_RANDOM_CASES`); with 5 (until session 22) training functions of other keys passed
# held-out catalogue tasks' tests (a tally of one letter missed, a branch that never fired).
CATALOGUE_RANDOM_CASES = 9


@lru_cache(maxsize=4096)
def instance(task_index: int, params: tuple[tuple[str, Any], ...]) -> Instance:
    task = TASKS[task_index]
    p = dict(params)
    source = canonical(fill(task.src, p))
    fn = compile_function(source, task.name)

    def inputs(r: random.Random) -> tuple:
        return task.inputs(r, p)

    cases = derive_cases(source, fn, task.edge, inputs, CATALOGUE_RANDOM_CASES)
    return Instance(
        name=task.name,
        args=task.args,
        doc=fill(task.doc, p),
        plan=fill(task.plan, p),
        source=source,
        cases=cases,
        key=canonical_key(task.key) if task.key else function_key(task.same_as or task.name),
        inputs=inputs,
        meta={"origin": "catalogue", "task": task.name, "params": p},
    )


def _copy(args: tuple) -> tuple:
    return tuple(ast.literal_eval(repr(a)) for a in args)


# Both code families split by function: one key namespace, the key names the function.
CODE_NAMESPACE = "code"


def function_key(name: str) -> str:
    """The split key of a catalogue function: the whole task, whatever its parameters or example."""
    return f"catalogue:{name}"


def task_index(task: CodeTask) -> int:
    return _INDEX[task.name]


def draw_instance(rng: random.Random, tier: int) -> Instance:
    """A catalogue task of this tier with its parameters drawn."""
    task = rng.choice(BY_TIER[tier])
    params = tuple(sorted(task.params(rng).items())) if task.params else ()
    return instance(_INDEX[task.name], params)


# ------------------------------------------------------------------ hidden cases beyond the shown
# Every cheat must fail at least this many cases, so that it still fails one after being
# special-cased on the one example the prompt shows (`strengthen_cases`).
MIN_CHEAT_FAILURES = 2
HIDDEN_DRAWS = 64
MAX_HIDDEN_CASES = 6
MAX_HIDDEN_LINE = 300


def _first_argument(*args: Any) -> Any:
    return args[0] if args else None


def _same(got: Any, expected: Any) -> bool:
    try:
        return bool(got == expected) and type(got) is type(expected)
    except Exception:  # noqa: BLE001 - an incomparable result is a different one
        return False


def _fails(cheat: Callable, args: tuple, expected: Any) -> bool:
    try:
        return not _same(cheat(*_copy(args)), expected)
    except Exception:  # noqa: BLE001 - a cheat that raises fails the case
        return True


def _deficit(cases: list[tuple[tuple, Any]], failed: list[int]) -> int:
    """How far `cases` are from failing every constant answer and every cheat (`failed[i]`: cases
    cheat i fails) at least `MIN_CHEAT_FAILURES` times."""
    keys = [(type(e).__name__, repr(e)) for _, e in cases]
    counts: dict[tuple[str, str], int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    const = sum(max(0, MIN_CHEAT_FAILURES - (len(keys) - c)) for c in counts.values())
    return const + sum(max(0, MIN_CHEAT_FAILURES - f) for f in failed)


def strengthen_cases(
    inst: Instance, cheats: tuple[Callable, ...] = (), salt: str = ""
) -> tuple[tuple[tuple, Any], ...]:
    """`inst.cases` plus hidden cases drawn from `inst.inputs` until every constant answer, the
    answer that returns its first argument, and each of `cheats` (the buggy code of a bug-fix
    item) fails at least `MIN_CHEAT_FAILURES` cases — or the draws run out (a cheat that equals
    the reference on every input is a right answer).

    Why: a prompt shows one example (a worked call, or the failing assert of a bug-fix item), so
    a policy can return it from a lookup table and anything else otherwise. Where the fixed
    cases had only that one input on which the buggy code is wrong (measured: 2-7 of 40 bug-fix
    items per tier), the buggy code special-cased on the shown call passed; where all other
    results were one value, a lookup of the shown call with a constant passed. The cases added
    depend on the function (and the cheats) only, never on which example is shown, so paired
    `heldout`/`heldout_phrasing` items keep equal tests; the draws use their own seeded stream,
    so nothing about which items are drawn (their keys and splits) moves."""
    ref = compile_function(inst.source, inst.name)
    all_cheats = (_first_argument, *cheats)
    cases = list(inst.cases)
    failed = [sum(_fails(c, a, e) for a, e in cases) for c in all_cheats]
    if _deficit(cases, failed) == 0:
        return inst.cases
    rng = random.Random(derive_seed("code-hidden", inst.source, salt))
    seen = [a for a, _ in cases]
    for _ in range(HIDDEN_DRAWS):
        if len(cases) - len(inst.cases) >= MAX_HIDDEN_CASES or _deficit(cases, failed) == 0:
            break
        args = inst.inputs(rng)
        if args in seen:
            continue
        seen.append(args)
        try:
            expected = ref(*_copy(args))
        except Exception:  # noqa: BLE001 - an input outside the reference's domain
            continue
        if len(assert_line(inst.name, args, expected)) > MAX_HIDDEN_LINE:
            continue
        new_failed = [
            f + _fails(c, args, expected) for c, f in zip(all_cheats, failed, strict=True)
        ]
        if _deficit([*cases, (args, expected)], new_failed) < _deficit(cases, failed):
            cases.append((args, expected))
            failed = new_failed
    return tuple(cases)
