"""Answer extraction and verification: exact-match for reasoning, sandboxed calls for code.

Conventions (one for the whole project, so SFT data, evaluation and RL rewards agree):
- reasoning problems: the assistant's final content is `The answer is X.`; `extract_answer` takes
  the LAST "answer is"/"answer:" in the completion (after any `</think>`; a `<think>` never
  closed leaves no answer; invisible characters are dropped), tolerating whitespace,
  a trailing period, thousands commas (groups of three: `1,234`; `3,5` is two numbers), a
  leading "+", "$", a unicode minus or the word "negative"/"minus", fractions (also TeX
  `\\frac{a}{b}`), `.5`, `1e5` and powers `2^10` (exact values); if the phrase is missing it
  falls back to `\\boxed{X}` and then (numeric answers only) to the last number in the final
  content. Numbers compare as exact fractions (`0.5` == `1/2`), words case-insensitively (`yes`,
  `True`, names; TeX markup around them such as `\\boxed{\\text{True}}` is skipped). A range
  ("35–36", "35 to 36", "35..36") is a hedge, like "35 or 36" (also in other languages, with
  full-width or CJK commas, TeX `\\lor`); so are a `\\boxed{}` whose value differs from the
  statement's, a statement offered as an alternative to the one before it ("..., or the answer
  is 6"), a next line holding only another candidate, and, without a statement, a last number
  offered as an alternative to the one before it ("5 or 6"). "The answer is not 6" is no answer;
  a dash in a sign's place ("–5", "is - 5") is a minus; an expression is its value after "="
  ("3 + 5 = 8" is 8; "6 times 7 = 42" is 42) or, left unevaluated ("3 + 5"), no answer. Also
  hedges (session 24): two different bare values joined by "=", "≈", ":", a sentence end or a
  dash ("5 = 6", "5 — 6", "5. 6."; "12 = 3 × 4" and "48/77 ≈ 0.62" explain one), two choices
  joined by an operator ("True + False"), an alternative word anywhere in a short gap ("5 or
  so, maybe 6", "5. It could also be 6", "5, though 6 is also possible"), a list of candidates
  under "The answer is:", and "the answer is also 6" after another statement. Look-alike
  letters (Cyrillic, Greek, full-width, mathematical, modifier) and lone superscript digits
  read as the ASCII they look like. Comparisons ("7 > 2") and denials ("5, not 6") are not.
- code problems: the content is one ```python fenced block; `extract_answer` takes the last fenced
  block (an unclosed final fence counts up to the end), or the whole completion if there is none.

Code checks are built to be an RL reward that cannot be gamed, which is why they do not simply
run the candidate next to its `assert` lines (a candidate sharing an interpreter with the asserts
can return an object equal to everything, patch `AssertionError`, exit early or forge the
"passed" message). Instead:
- The host parses `Problem.tests` with `ast` (`code_cases`): each line must be
  `assert NAME(ARGS) == EXPECTED` or `assert NAME(ARGS) is None|True|False`, with Python literals
  (`ast.literal_eval`) as positional/keyword arguments and expected value; anything else raises
  `HillclimbError` naming the line. Expected values NEVER enter the sandbox: the sandbox gets the
  candidate's code and the call arguments only, and its workspace holds no files at all.
- Inside the sandbox one runner process (`_RUNNER_PY`) forks a zygote before it reads the batch;
  the zygote forks one child per candidate (a few at a time; no exec), each in its own session
  with its own wall-clock timeout (session killed), 512 MB address space, 1 MB file-size limit,
  stdio on /dev/null and a private socketpair to the runner as its only channel. The child runs
  `_ITEM_PY`, which captures every reference it needs (`type`, `int`, `hex`, `float.hex`,
  `_json.encode_basestring_ascii`, `posix.write`, ...) before any candidate code exists, runs the
  candidate, calls the function once per test case with fresh arguments, and writes ONE line: per
  case either the return value serialised by our encoder, or the exception it raised. The encoder
  accepts only EXACT builtin types (`type(v) is int`: None, bool, int, float, str, bytes, list,
  tuple, dict, set, frozenset), reading the real type with `type()`, never `__class__`; anything
  else — subclasses included — becomes an "unserialisable TYPE" marker that equals nothing.
- The host compares, type-strictly: `1`, `1.0` and `True` are three different answers;
  list != tuple, set != frozenset; dicts and sets compare order-free; floats compare with `==`
  (so `-0.0 == 0.0`) except that NaN equals NaN. The first failing case gives `status` (a wrong
  value: "fail", an exception: "error") and `detail`; `cases_passed`/`cases_total` count them.
- The hillclimb package (generators, reference solutions) is hidden inside the check sandbox
  (`run_sandboxed(hide=...)`): with a regular install its directory in the bound site-packages is
  covered by an empty tmpfs; an editable install's source tree is not bound at all (both are
  passed to `hide` anyway).

What this defends (tests/test_reward_hacks.py): always-equal objects, `__eq__`-overriding
subclasses, `__class__` spoofing, patched builtins (`AssertionError`, `isinstance`, `type`) or
`json`/`marshal` in `sys.modules`, `sys.exit`/`os._exit`/`SystemExit` at import or in the call,
forged result lines on any fd, reading the workspace or the package. The candidate CAN write any
result line it likes (it may find every in-process secret, and with ctypes it can corrupt its own
interpreter), so nothing in its process is trusted: a forged line only passes if it holds the
exact expected values, i.e. if the candidate solved the problem.

Between processes: the runner makes itself non-dumpable before it forks the zygote, and the
zygote (which never holds a candidate's code or the token) forks every candidate without exec,
so each one is non-dumpable from its first instruction: no candidate can open another's /proc
files (fds, memory, environment), ptrace it or copy its fds (pidfd_getfd), nor the runner's —
not even in a sibling's first milliseconds. (With one exec'd `python` per candidate it could:
that window let a candidate read its siblings' code, in GRPO correct answers to its own prompt,
or write their result lines.) Runner lines to the host carry a per-batch token only the runner
holds. SIGINT is ignored throughout. Orphans a candidate leaves behind are killed when any
candidate ends.

Sabotage gains nothing. Candidates of a batch share a uid, so one can still signal (kill, stop)
its siblings, the zygote or the runner, or starve them of CPU; in GRPO, where the samples of one
prompt are compared, failing siblings would raise its advantage. So a candidate whose outcome a
sibling may have caused (`_settled`: no record, no complete result line, or a timeout during
which it was not on a CPU nearly all the time) is rerun ALONE in its own sandbox run (`workers`
runs at a time, where nothing can signal it) and that run counts; a timeout there that was
starvation by a concurrent rerun (it waited for a CPU, `/proc/PID/schedstat`) rather than its
own sleep or spin is run once more with no other run beside it. Outcomes are never attributed to
anyone: each comes from the candidate's own socket, or from its own rerun, so a candidate can
neither pass off its failure as a sibling's doing nor escape it (its rerun fails the same way).
The reruns cost time only for candidates that die without a result or time out without using a
CPU; at worst a batch of n takes ceil(n/workers) timeouts, as many again (plus a sandbox start
each) for the parallel reruns, and one more timeout per candidate starved while rerun.

Not defended: a candidate that SIGSTOPs the runner stalls its batch until the sandbox timeout
(ceil(n/workers) timeouts + 30 s) before the reruns start (time only: the culprit's own rerun
stalls too and ends in "error"). A candidate needing 95-100% of the time limit in CPU can be
tipped into a timeout by a sibling taking a little CPU, as by any load on the machine. A
candidate can fill the workspace with files up to the sandbox limits. Harness failures (sandbox
missing or refused, the runner crashing before it starts) raise `HillclimbError` instead of
being counted as wrong answers.
"""

from __future__ import annotations

import ast
import functools
import html
import json
import marshal
import math
import os
import re
import secrets
import site
import sys
import sysconfig
import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.problems.base import Problem
from hillclimb.problems.steps import SUPERSCRIPT_DIGITS, fmt, parse_number

# `is\b`: "The answer isn't 6, it's 5." read "n't 6" and passed for 6 (session 21)
_ANSWER_RE = re.compile(r"answer\s*(?:is\b|:|=)\s*:?\s*", re.IGNORECASE)
# "The answer is not 6." states no answer (it passed for 6 until session 21)
_NEGATED_RE = re.compile(r"(?:not|never|neither)\b", re.IGNORECASE)
# one level of braces inside: `\boxed{\text{True}}` (the body is `\text{True}`)
_BOXED_RE = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
# a TeX command word (`\boxed`, `\text`, `\mathrm`): markup, never the answer word
_TEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
# A number as written in an answer. A comma groups thousands only as `1,234` / `12,345,678`
# (three digits after each comma): `3,5` (a decimal comma in many locales) or `12,13` (a list)
# are two numbers — hedged when different — where they used to read as 35 and 1213. `.5` is
# 0.5 and `1e5` is 100000 (they read as 5 and 1: "The answer is 1e5." passed for 1).
# (`.5` not after another dot: "5..6" is a range, a hedge, and passed for 5 as "5" and ".6")
# (a first group never starts with 0: "0,005", a decimal comma, read as 5 until session 23)
# A power belongs to its number: "10^5" is 100000 (read as 10 until session 21).
_NUM_TOKEN = (
    r"[-+\u2212]?\$?(?:(?:(?<!\d)[1-9]\d{0,2}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<!\.)\.\d+)(?:[eE][-+]?\d+)?"
    r"(?: ?(?:\^|\*\*) ?(?:\{[-+]?\d+\}|[-+]?\d+)|[" + SUPERSCRIPT_DIGITS + "]+)?"
    r"(?:\s*/\s*\d+)?"
)
_NUM_RE = re.compile(_NUM_TOKEN)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'_-]*|" + _NUM_TOKEN)
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def final_content(p: Problem) -> str:
    """The assistant's final message for the reference solution (the one convention)."""
    if p.kind == "code":
        src = p.answer if p.answer.endswith("\n") else p.answer + "\n"
        return f"```python\n{src}```"
    return f"The answer is {p.answer}."


def _after_think(text: str) -> str:
    """The final content: what follows the last `</think>`; nothing when a `<think>` was opened
    and never closed (all of it is reasoning, e.g. a completion cut off while thinking: an
    "answer is" inside it was paid as a final answer until session 21)."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    elif "<think>" in text:
        return ""
    return text.split("<think>", 1)[0]  # a block opened again after the content


def _number(text: str) -> str | None:
    m = _NUM_RE.search(text)
    if not m:
        return None
    value = parse_number(m.group(0))
    return None if value is None or not _reduced(m.group(0), value) else fmt(value)


def _reduced(token: str, value: Fraction) -> bool:
    """Whether a number written with a "/" is a fraction in lowest terms (a whole numerator over
    a denominator above 1 sharing no factor with it), not a division left undone. Why: the
    question "Solve: 42/7" echoed back ("The answer is 42/7.") passed for 6, and so did every
    division item (session 23); `7/12` and `-1/6` are answers, `42/7`, `2/4` and `6/1` are not."""
    top, slash, den = token.partition("/")
    if not slash:
        return True
    numerator = parse_number(top)
    d = int(den.strip())
    return numerator is not None and numerator.denominator == 1 and d > 1 and value.denominator == d


# an arithmetic operator and a number, repeated: the rest of an expression ("+ 5", "× 5 + 1",
# `\times 5`); "-" and "/" are not here (a range is a hedge, "3 / 4" one fraction)
# (in words too: "6 times 7" read as 6 and "6 times 7 = 42" failed for 42 until session 24)
_EXPR_REST_RE = re.compile(
    r"(?:\s*(?:[+*\u00d7\u00b7\u22c5\u00f7xX]|\\times|\\cdot|\\div|\b(?:plus|times|multiplied by|divided by)\b)\s*\(?\s*"
    + _NUM_TOKEN
    + r"\s*\)?)+"
)
_EQUALS_RE = re.compile(r"\s*=\s*")


def _stated_number(text: str) -> str | None:
    """The number a statement gives: its first number, unless that starts an expression. Why:
    "The answer is 3 + 5." passed for 3 and "The answer is 3 + 5 = 8." failed for 8 (session
    23): an expression's value is after its "=", and one left unevaluated is no answer (the
    checker does not evaluate it)."""
    m = _NUM_RE.search(text)
    if not m:
        return None
    expr = _EXPR_REST_RE.match(text, m.end())
    if not expr:
        value = _number(m.group(0))
        if value is not None or "/" not in m.group(0):
            return value
        expr = m  # a division left undone ("42/7"): its value may follow an "="
    eq = _EQUALS_RE.match(text, expr.end())
    return _stated_number(text[eq.end() :]) if eq else None


def _normalise(p: Problem, raw: str) -> str | None:
    if parse_number(p.answer) is not None:
        return _stated_number(raw)
    # "The answer is \boxed{True}." read as the word 'boxed' (session 21)
    m = _WORD_RE.search(_TEX_COMMAND_RE.sub(" ", raw))
    if not m:
        return None
    word = m.group(0)
    value = parse_number(word)
    return fmt(value) if value is not None else word.casefold()


def extract_code(completion: str) -> str:
    text = _after_think(completion)
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        return text.strip() + "\n"
    return blocks[-1][1]


def extract_answer(p: Problem, completion: str) -> str | None:
    """The final answer in a completion, normalised (None if there is none, or if the answer
    offers several: `answer_is_hedged`)."""
    if p.kind == "code":
        return extract_code(completion)
    got, hedged = _extract(p, completion)
    return None if hedged else got


def answer_is_hedged(p: Problem, completion: str) -> bool:
    """Whether the final answer offers more than one answer: "The answer is 35 or 36",
    "True/False", "yes, no", two different `\\boxed{}`. Such a completion is never correct —
    else a policy learns to list candidates and a checker that takes the first (or last) one
    pays it (measured before this rule: "The answer is 35 or 36 or 7." passed for 35)."""
    return p.kind != "code" and _extract(p, completion)[1]


# two candidate answers joined by a list separator, with nothing else between them
# (an alternative in brackets counts too: "35 (or 36)", "yes [maybe no]"; "12 (3 × 4)" does not)
# (a sentence end counts only before a word that offers the other one: "5. Or 6.", not "5. 6 of
# them"; markup around either answer is no separator: "**5** or **6**", "`yes` or `no`")
# (a range is a hedge too: "35–36", "35 - 36", "35 to 36" passed for 35 until session 21)
# (so are "5 vs 6", "5 and/or 6", "5 ~ 6", "5 − 6", "5 ∨ 6", "5 ± 1", "5 +/- 1", "5—6", "5 — or 6", "5; otherwise
# 6", "5 or else 6": each passed for 5 until session 21)
# (and "5 ou 6", "5 oder 6", "5 или 6", "5 或 6", "5 if not 6", "5 unless it is 6", "5 but maybe
# 6", "5 and also 6", "5..6", "5…6", `$5 \lor 6$`, `$5 \quad 6$`, "5，6", "5、6": each passed for 5
# until session 23)
# (and "5 u 6", "5 либо 6", "5 oppure 6", "5 または 6" and more, "5 through 6", "5. It could also
# be 6.": each passed for 5 until session 24)
_OR_WORDS = (
    r"or|ou|o|u|oder|lub|eller|veya|vagy|oppure|ho\u1eb7c|\u0438\u043b\u0438|\u043b\u0438\u0431\u043e|"
    r"\u0430\u0431\u043e|\u03ae|\u0623\u0648|\u05d0\u05d5|\u092f\u093e|\u307e\u305f\u306f|"
    r"\u3082\u3057\u304f\u306f|\ub610\ub294|\u8fd8\u662f|\u6216\u8005?"
)  # or, in 20 languages
# "it could also be 6", "might be 6": another answer offered
_COULD_BE = r"(?:(?:it|this|that)\s+)?(?:could|might|may)\s+(?:also\s+|even\s+)?be"
_ALTERNATIVE = (
    r"(?:"
    + _OR_WORDS
    + r"|maybe|perhaps|possibly|alternatively|otherwise|else|"
    + _COULD_BE
    + r")\b"
)
_HEDGE_GAP = re.compile(r"\u2014|\s*(?:(?:[,;/|&~\u2013\u2212\u2228\u00b1-]|\+/-|\.{2,})\s*"
                        r"|[.!?\u2014]\s*(?=" + _ALTERNATIVE + r"))?"
                        r"(?:[(\[]\s*(?=" + _ALTERNATIVE + r"))?"
                        r"(?:(?:and/or|and also|if not|unless(?: it is| it's)?|" + _OR_WORDS + r"|and|to|up to|through|thru|till|until|vs\.?|versus)"
                        r"(?:\b|(?<=\.)|(?<=[^\x00-\x7f]))\s*)?"
                        r"(?:(?:but\s+)?(?:maybe|perhaps|possibly|alternatively|otherwise|else|" + _COULD_BE + r")\b\s*)?",
                        re.IGNORECASE)  # fmt: skip
# a bare other candidate in brackets: "5 (6)", "True (False)" ("12 (3 × 4)" is an explanation)
_BRACKET_OPEN = re.compile(r"\s*[(\[]\s*")
_BRACKET_CLOSE = re.compile(r"\s*[)\]]")
# markup a model wraps an answer in (bold, code, quotes, TeX math and boxes), removed from the gap
# between two candidates before the gap is judged
_GAP_MARKUP = re.compile(r"\\[A-Za-z]+\s*\{|\\[()\[\]]|[*_`\"'$\u201c\u201d\u2018\u2019{}]")
# TeX between two candidates that a reader sees as a hedge ("\\lor", "\\pm") or as a space
# ("\\quad", "\\ ", "\\,"): `$5 \\lor 6$` and `$5 \\quad 6$` passed for 5 (session 23)
_GAP_TEX = (
    (re.compile(r"\\(?:lor|vee)(?![A-Za-z])"), "\u2228"),
    (re.compile(r"\\(?:pm|mp)(?![A-Za-z])"), "\u00b1"),
    (re.compile(r"\\sim(?![A-Za-z])"), "~"),
    (re.compile(r"\\mid(?![A-Za-z])"), "|"),
    (re.compile(r"\\(?:q?quad|[,;:! ])"), " "),
    (re.compile(r"(?<=\s)\*(?=\s)"), "\u00d7"),  # "3 * 5": a product, not bold markup
)


def _gap_text(gap: str) -> str:
    """The text between two candidate answers as a reader sees it: TeX operators as their
    symbols, TeX spacing as a space, wrapping markup removed."""
    for pat, repl in _GAP_TEX:
        gap = pat.sub(repl, gap)
    return _GAP_MARKUP.sub("", gap)


def _candidates(p: Problem, text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, normalised value) of every candidate answer in `text`: each number for a
    numeric item, each of its choices (else its answer word) for a word item."""
    if parse_number(p.answer) is not None:
        return [(m.start(), m.end(), _number(m.group(0).rstrip(","))) for m in
                _NUM_RE.finditer(text)]  # fmt: skip
    choices = [str(c) for c in p.meta.get("choices") or []] or [p.answer]
    pat = "|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True))
    return [(m.start(), m.end(), m.group(0).casefold()) for m in
            re.finditer(rf"(?<!{_JOINED})(?:{pat})(?!{_JOINED})", text, re.IGNORECASE)]  # fmt: skip


# a character that makes a word longer: a letter, digit or apostrophe, but not a CJK, kana or
# hangul one (no spaces between words there: "True或者False" hid both choices until session 24)
_JOINED = "(?:[^\\W\u2e80-\u9fff\uac00-\ud7af]|')"


# Symbols that may stand between an answer and an explanation of it ("12 (3 × 4)", "12 = 3 × 4",
# "5. 6 of them", "5%"). Any other gap of symbols alone lists two answers: "5 ‖ 6", "5 • 6",
# "5 ¦ 6", `$5 \\ 6$` passed for 5 until session 23 (an enumeration of separators never ends).
_EXPLAIN_SYMBOLS = frozenset(
    ".:=()[]{}%!?\u00d7\u00b7\u22c5*+<>\u2264\u2265\u2248\u2261\u2260\u2014"
)


def _symbols_only(gap: str) -> bool:
    """A gap of symbols and spaces alone, one of them no explanation's symbol."""
    return all(not c.isalnum() for c in gap) and any(
        not c.isspace() and c not in _EXPLAIN_SYMBOLS for c in gap
    )


# a plus-minus between two numbers is a range whatever the two are: "1 ± 1" (0 to 2) passed for 1
# because its two candidates are equal (session 23)
_PLUS_MINUS_RE = re.compile(r"\s*(?:\u00b1|\+/-)\s*")


# An alternative word anywhere in a short gap offers the next candidate: "5 or so, maybe 6",
# "5, or possibly even 6" passed for 5 until session 24 (unless the gap denies it: "5, not 6")
# ("5 (alternative: 6)", "5. Also possible: 6", "5 with 70% probability, 6 with 30%")
# ("could be" only right before the other: "5; it could be checked by 2 + 3 = 5" explains 5;
# not the one-letter "o" and "u", which name variables: "12, with u = 3")
_OFFER_WORD_RE = re.compile(
    r"(?:\b|(?<=[^\x00-\x7f]))(?:(?:"
    + _OR_WORDS.replace("|o|u|", "|")
    + r"|maybe|perhaps|possibly|otherwise|"
    r"either|alternat\w*|alt|possibilit\w*|also possible|probability)\b|"
    + _COULD_BE
    + r"(?=[\s:*_`$\"']*$))",
    re.IGNORECASE,
)
# after the other candidate: "5, though 6 is also possible" passed for 5 until session 24
_POSSIBLE_AFTER_RE = re.compile(
    r"[^.;\n]{0,20}?\b(?:possible|plausible|likely|also (?:works|valid|correct|right))\b",
    re.IGNORECASE,
)
_DENIAL_RE = re.compile(
    r"n't\b|\b(?:not|never|no|neither|nor|rather than|instead of)\b", re.IGNORECASE
)
_OFFER_GAP_MAX = 60
# Symbols that join two values into one claim ("5 = 6", "5 — 6", "5: 6", "5. 6!", "True + False",
# "True × False"): with a bare value after them (nothing but punctuation follows) the two are two
# answers, where "12 = 3 × 4", "35 — 5 × 7" or "8 = 3 + 5" explain one. "5 = 6", "5 — 6", "5: 6",
# "5. 6.", "5? 6?" passed for 5 and "True + False", "True × False" for True until session 24.
# (Between numbers an arithmetic operator makes an expression: "12 (3 × 4)" explains 12.)
# (not "≡": "9^15 ≡ 9" is a congruence; not across lines: "5 > 4.\n5" is reasoning, then 5)
_JOINING_SYMBOLS = frozenset("=\u2248:.!?\u2014\u2013")
_ARITHMETIC_SYMBOLS = frozenset("+\u00d7\u00b7\u22c5*\u00f7")
# what may stand before a value that is part of an expression or relation, not an answer:
# "3 + 5 = 8" (5 is an operand), "sum ≡ 0: 116" (0 is a label's)
# ("x = 5 — 6" is still two answers: an "=" makes an operand only after a number)
_AFTER_RELATION_RE = re.compile(
    r"(?:[\d)]\s*(?:[-+*/^=\u00d7\u00b7\u22c5\u00f7\u2212\u2248]|\\times|\\cdot|\\div|"
    r"(?:plus|minus|times|multiplied by|divided by)\b)"
    r"|[<>\u2260\u2261\u2264\u2265])\s*\(?\s*\$?$"
)
# what may follow a bare answer: closing markup, then punctuation or the end
# (an "=" chain of values counts as bare: "5 = 6 = 5" passed for 5)
_BARE_AFTER_RE = re.compile(r"(?:\s*=\s*" + _NUM_TOKEN + r")*[\s*_`$\"'}\\]*(?:[.,;!?)\]]|$)")


def _joined_values(
    p: Problem, tail: str, a_start: int, gap: str, b_end: int, a: str | None, b: str | None
) -> bool:
    """Whether a gap of symbols joins two different bare values into two answers (see
    `_JOINING_SYMBOLS`); a decimal written after a value it rounds ("48/77 ≈ 0.62",
    "1/3 = 0.333...") is that value shown another way."""
    if (
        a is None
        or b is None
        or not gap.strip()
        or "\n" in gap
        or not all(not c.isalnum() for c in gap)
    ):
        return False  # (a value that is no number, "42/7", is an expression's start)
    joining = _JOINING_SYMBOLS
    if parse_number(p.answer) is None:
        joining = joining | _ARITHMETIC_SYMBOLS
    if not any(c in joining for c in gap):
        return False
    if not _BARE_AFTER_RE.match(tail, b_end) or _AFTER_RELATION_RE.search(tail[:a_start]):
        return False
    return not _rounds_to(a, b, tail[:b_end])


def _rounds_to(a: str, b: str, upto: str) -> bool:
    """Whether `b` (the last number in `upto`) is a decimal rounding or truncation of `a`."""
    x, y = parse_number(a), parse_number(b)
    m = list(_NUM_RE.finditer(upto))
    if x is None or y is None or not m or "." not in m[-1].group(0):
        return False
    decimals = re.match(r"\d*", m[-1].group(0).split(".", 1)[1])
    places = len(decimals.group(0)) if decimals else 0
    return abs(x - y) < Fraction(1, 10**places)


def _offers_other(gap: str) -> bool:
    """A short gap holding an alternative word and no denial: "5 or so, maybe 6"."""
    return (
        len(gap) <= _OFFER_GAP_MAX
        and "\n" not in gap
        and bool(_OFFER_WORD_RE.search(gap))
        and not _DENIAL_RE.search(gap)
    )


def _hedged_tail(p: Problem, tail: str, joins: bool = True, first: int = 0) -> bool:
    """Whether a tail offers two different candidates; `joins`: also two bare values joined by a
    symbol (`_joined_values`) or a longer gap holding an alternative word (`_offers_other`).
    Not across a removed "the answer is", where "No — the answer is yes" and "4. Hmm, maybe I
    slipped. The answer is 5" are corrections. Only pairs from offset `first` on are judged
    (what comes before is context: in "3 + 5 = 8" the 5 is an operand)."""
    spans = _candidates(p, tail)
    for (a_start, end, a), (start, b_end, b) in zip(spans, spans[1:], strict=False):
        if a_start < first:
            continue
        gap = tail[end:start]
        if tail[:end].endswith(","):
            gap = "," + gap
        gap = _gap_text(gap)
        if a == b:
            if _PLUS_MINUS_RE.fullmatch(gap) and _number(b) not in (None, "0"):
                return True
            continue
        if _HEDGE_GAP.fullmatch(gap) or _symbols_only(gap):
            return True
        if parse_number(p.answer) is None and _WORD_OPERATOR_RE.fullmatch(gap):
            return True
        if joins and (_offers_other(gap) or _joined_values(p, tail, a_start, gap, b_end, a, b)):
            return True
        possible = _POSSIBLE_AFTER_RE.match(tail, b_end) if joins else None
        if possible and not _DENIAL_RE.search(gap + possible.group(0)):
            return True
        after = _gap_text(tail[b_end : b_end + 16])
        if _BRACKET_OPEN.fullmatch(gap) and (
            _BRACKET_CLOSE.match(after) or _BRACKET_IF_RE.match(after)
        ):
            return True
    return False


# two words joined by an arithmetic word: "True plus False" passed for True until session 24
# (between numbers it is an expression: `_EXPR_REST_RE`)
_WORD_OPERATOR_RE = re.compile(
    r"\s*(?:plus|minus|times|multiplied by|divided by|over)\s*", re.IGNORECASE
)
# a bracketed other candidate under a condition: "5 (6 if rounded)" passed for 5 until session 24
_BRACKET_IF_RE = re.compile(r"\s+(?:if|when|unless|otherwise)\b", re.IGNORECASE)


# TeX fractions as written by models taught on competition maths: `\frac{7}{12}`, `\dfrac{-1}{6}`
_TEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([-+\u2212]?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
# a sign in words: "The answer is negative 3." read as 3 (right for 3, wrong for -3) until
# session 21
_SIGN_WORD_RE = re.compile(r"\b(?:negative|minus)\s+(?=\$?\.?\d)", re.IGNORECASE)


# Characters a reader does not see (zero-width spaces and joiners, bidi marks, the BOM, soft
# hyphens: Unicode category Cf) hid a hedge: "5\u200b or 6" and "yes\u200b/no" passed for the
# first (session 21). They are removed before anything is read.
_INVISIBLE_RE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)
# A dash that reads as a minus sign (hyphen, figure/en/em dash, small and fullwidth hyphen-minus)
# in front of a number: "The answer is –5." passed for 5 and failed for -5 (session 21). Only in
# a sign's place, so a range ("35–36") or a dash before an explanation ("35 — 5 × 7") keeps it.
_DASH_SIGN_RE = re.compile("(?<![\\w.])[\u2010-\u2015\ufe63\uff0d](?=\\$?\\.?\\d)")
_HTML_BREAK_RE = re.compile(r"<br\s*/?>|</?p>", re.IGNORECASE)
# fraction and division slashes: "5⁄6" is 5/6, not 5; full-width, CJK and Arabic punctuation as
# the ASCII a reader takes it for ("1，234" is 1234; "5，6", "5、6", "5｜6" and "5،6" are two answers
# and passed for 5 until session 23; the ideographic and Arabic commas only ever separate a list)
_SLASHES = str.maketrans(
    {
        "\u2044": "/",
        "\u2215": "/",
        "\uff0f": "/",
        "\uff0c": ",",
        "\uff1b": ";",
        "\uff5c": "|",
        "\uff5e": "~",
        "\uff1a": ":",
        "\uff0e": ".",
        "\u3001": ";",
        "\uff64": ";",
        "\u060c": ";",
        "\u061b": ";",
        "\u066c": ",",
        "\u066b": ".",
        "\u2026": "...",
    }
)
# A minus sign, then a space, right after "is", ":", "=" or "(": "The answer is - 5." read as 5
# (session 23). Not after a number ("35 - 36" stays a range) nor at a line's start (a bullet).
_SPACED_SIGN_RE = re.compile(
    "(?:(?<=\\bis )|(?<=[:=(])|(?<=[:=(] ))[-\u2212\ufe63\uff0d][ \t\u00a0]+(?=\\$?\\.?\\d)"
)


# Letters that look like Latin ones (Cyrillic, Greek) and the full-width and mathematical
# alphabets: "True or Fаlse" (a Cyrillic "а") or "yes or ｎｏ" passed for the first, the second
# answer being no candidate the checker could see (session 24). Only words of Latin look-alikes
# (and Latin letters) are read as Latin: "или" and "либо" stay Russian.
_LOOKALIKES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0455\u0458\u04cf\u0410\u0412\u0415"
    "\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406\u0405\u0408\u03bf\u03bd\u0391"
    "\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
    "aeopcyxisjlABEKMHOPCTXISJovABEZHIKMNOPTYX",
)
_LOOKALIKE_CHARS = frozenset(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0455\u0458\u04cf\u0410\u0412\u0415"
    "\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406\u0405\u0408\u03bf\u03bd\u0391"
    "\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
)
_LETTERS_RE = re.compile(r"[^\W\d_]+")
# full-width forms and the mathematical alphabets (bold, italic, double-struck ... letters)
# (and modifier letters, "5 ᵒʳ 6")
_COMPAT_RE = re.compile(
    "[\u02b0-\u02b8\u1d2c-\u1d6a\u2071\u207f\u2090-\u209c\uff01-\uff5e\U0001d400-\U0001d7ff]+"
)
# Superscript digits standing alone (not a power after a number, a letter or a bracket): "5 or ⁶"
# passed for 5, the "⁶" no number at all (session 24)
_LONE_SUPERSCRIPT_RE = re.compile(
    "(?<![\\w)\\]}" + SUPERSCRIPT_DIGITS + "])[\u207a\u207b]?[" + SUPERSCRIPT_DIGITS[2:] + "]+"
)
_SUPERSCRIPT_PLAIN = str.maketrans(SUPERSCRIPT_DIGITS, "+-0123456789")
# "5 plus or minus 1" is "5 ± 1", a range (it read as 5 and "or -1", no hedge: session 24)
_PLUS_MINUS_WORDS_RE = re.compile(r"\bplus\s*(?:or|/)\s*minus\b", re.IGNORECASE)


def _latin_word(m: re.Match[str]) -> str:
    """A word of Latin letters and Latin look-alikes, in Latin letters; any other word as is."""
    word = m.group(0)
    if any(c in _LOOKALIKE_CHARS for c in word) and all(
        c.isascii() or c in _LOOKALIKE_CHARS for c in word
    ):
        return word.translate(_LOOKALIKES)
    return word


def _plain_letters(text: str) -> str:
    """Look-alike, full-width and mathematical letters and digits as the ASCII a reader sees."""
    text = _COMPAT_RE.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)
    text = _LONE_SUPERSCRIPT_RE.sub(lambda m: m.group(0).translate(_SUPERSCRIPT_PLAIN), text)
    return _LETTERS_RE.sub(_latin_word, text)


def _clean(text: str) -> str:
    """A reasoning completion's final content as a reader sees it."""
    text = _INVISIBLE_RE.sub("", text)
    text = _plain_letters(_after_think(text)).translate(_SLASHES)
    text = _PLUS_MINUS_WORDS_RE.sub("\u00b1", text)
    # HTML a model may emit: "5<br>6" is two lines, "5&nbsp;or&nbsp;6" a hedge (both passed for
    # 5 until session 23)
    text = html.unescape(_HTML_BREAK_RE.sub("\n", text))
    # `\frac{1}{2}` read as the two numbers 1 and 2 (a correct 1/2 was "ambiguous" or "1")
    text = _TEX_FRAC_RE.sub(r"\1/\2", text)
    text = _DASH_SIGN_RE.sub("-", _SPACED_SIGN_RE.sub("-", text))
    return _SIGN_WORD_RE.sub("-", text)


# the next line offers another answer: "The answer is 5.\nOr 6." passed for 5 (session 21)
_NEXT_OFFER_RE = re.compile(r"\s*[*_`>\-]*\s*(?=" + _ALTERNATIVE + ")", re.IGNORECASE)


# a line holding nothing but a candidate answer (markup and a full stop around it allowed)
_BARE_LINE_RE = re.compile(r"[\s*_`>\-$\\(){}\[\].]*")


def _offered_next(p: Problem, rest: str) -> str:
    """The line after the answer's when it starts with an alternative ("Or 6", "Maybe 6") or is
    nothing but another candidate ("The answer is 5\\n6" passed for 5 until session 23), as
    text to judge with the answer's line; else nothing."""
    nxt = _LIST_MARKER_RE.sub("", rest.lstrip().split("\n", 1)[0], count=1)
    if _NEXT_OFFER_RE.match(nxt):
        return " " + nxt
    spans = _candidates(p, nxt)
    if len(spans) == 1:
        start, end, _ = spans[0]
        if _BARE_LINE_RE.fullmatch(nxt[:start] + nxt[end:]):
            return " or " + nxt[start:end]
        # "Answer (alt): 6", "Another possibility: 6" (passed for 5 until session 24)
        if _OFFER_WORD_RE.search(nxt[:start]) and not _DENIAL_RE.search(nxt[:start]):
            return " or " + nxt[start:end]
    return ""


# a list item's marker ("1. ", "2) ", "- ", "• "): a list of candidates under "The answer is:"
# read its "1." as the answer and never its "2. 6" (session 24)
_LIST_MARKER_RE = re.compile(r"^[ \t]*(?:\d{1,2}[.)]|[-*+\u2022])[ \t]+")


def _extract(p: Problem, completion: str) -> tuple[str | None, bool]:
    """(the final answer normalised, whether it is hedged)."""
    text = _clean(completion)
    matches = list(_ANSWER_RE.finditer(text))
    if matches:  # the last answer statement wins (a model may correct itself)
        line, _, rest = text[matches[-1].end() :].partition("\n")
        if "\n" in matches[-1].group(0):  # the answer on the next line: maybe a list's first item
            line = _LIST_MARKER_RE.sub("", line, count=1)
        tail = line.strip().strip("*`\"'")
        if _NEGATED_RE.match(tail):  # "the answer is not 6": a denial, not an answer
            return None, False
        if _added_answer(p, text, matches, tail):
            return _normalise(p, tail), True
        got = _normalise(p, tail)
        hedged = (
            _hedged_tail(p, tail + _offered_next(p, rest))
            or _boxed_other(p, text, got)
            or _joined_to_previous(p, text, matches)
        )
        return got, hedged
    boxed = _BOXED_RE.findall(text)
    if boxed:
        values = {_normalise(p, b) for b in boxed}
        return _normalise(p, boxed[-1]), len(values) > 1 or _hedged_tail(p, boxed[-1])
    if parse_number(p.answer) is not None:
        nums = list(_NUM_RE.finditer(text))
        if nums:
            # "I think 5 or 6" (no statement, no box) passed for 6 until session 23: the last
            # number is judged with the one before it, as a statement's tail is
            # (with what stands before it as context: in "3 + 5 = 8" the 5 is an operand)
            first = nums[-2].start() if len(nums) > 1 else len(text)
            context = max(0, first - 80)
            # an operand is no result: an echoed "Work out 0 + 2." passed for 2 (session 23)
            if _OPERAND_RE.search(text[max(0, nums[-1].start() - 80) : nums[-1].start()]):
                return None, False
            hedged = _hedged_tail(p, text[context:], first=first - context)
            return _number(nums[-1].group(0)), hedged
    return None, False


# "The answer is 6. The answer is also 5." passed for 5 until session 24: an answer added to
# the one before it
_ALSO_RE = re.compile(r"(?:also|too|as well|additionally)\b", re.IGNORECASE)


def _added_answer(p: Problem, text: str, matches: list[re.Match[str]], tail: str) -> bool:
    """Whether the last statement adds another value to the one before it ("the answer is also
    5"); the same value restated is no second answer."""
    if len(matches) < 2 or not _ALSO_RE.match(tail):
        return False
    before = text[matches[-2].end() : matches[-1].start()].split("\n", 1)[0]
    return _normalise(p, before.strip().strip("*`\"'")) != _normalise(p, tail)


# a number and an operator right before a number: that number is an operand ("0 + 2", `3 \times`)
_OPERAND_RE = re.compile(
    r"\d\s*(?:[-+*\u00d7\u00b7\u22c5\u00f7\u2212xX]|\\times|\\cdot|\\div)\s*\(?\s*\$?$"
)


def _boxed_other(p: Problem, text: str, got: str | None) -> bool:
    """Whether a `\\boxed{}` in the final content gives another answer than the statement: two
    final answers, like two different boxes ("The answer is 5. \\boxed{6}" passed for 5 until
    session 23; the box was never read once a statement was found). A box that reads as no
    answer at all (`\\boxed{3/351}`, a division left undone) is another answer too; an empty one
    is not."""
    if got is None:
        return False
    return any(_normalise(p, b) != got for b in _BOXED_RE.findall(text) if b.strip())


# words between a previous candidate and "answer is" that belong to the statement: "the", "my"
_LEAD_WORDS_RE = re.compile(r"(?:\b(?:the|my|final|correct)\s+)+$", re.IGNORECASE)


def _joined_to_previous(p: Problem, text: str, matches: list[re.Match[str]]) -> bool:
    """Whether the last statement is offered as an alternative to the one before it: "The answer
    is 5, or the answer is 6." and "The answer is 5.\\nOr the answer is 6." passed for 6 until
    session 23 (only the last statement was judged). The previous statement's last candidate and
    the last statement's tail are judged as one tail, the "the answer is" between them removed;
    across lines only when the last statement's line opens with an alternative ("Or ..."), so
    "The answer is 4.\\nThe answer is 19." stays a correction."""
    if len(matches) < 2:
        return False
    before = text[matches[-2].end() : matches[-1].start()]
    if _NEGATED_RE.match(before.strip().strip("*`\"'")):
        return False
    before = "\n".join(before.rsplit("\n", 2)[-2:])  # the two lines that can hold an offer
    spans = _candidates(p, before)
    if not spans:
        return False
    start, end, _ = spans[-1]
    gap = _LEAD_WORDS_RE.sub("", before[end:])
    if "\n" in gap and not _NEXT_OFFER_RE.match(gap.rsplit("\n", 1)[1]):
        return False
    line = text[matches[-1].end() :].split("\n", 1)[0]
    return _hedged_tail(p, before[start:end] + gap + line, joins=False)


def reference_answer(p: Problem) -> str:
    """The problem's answer in the same normal form `extract_answer` produces."""
    value = parse_number(p.answer)
    return fmt(value) if value is not None else p.answer.casefold()


def check(p: Problem, completion: str, *, timeout_s: float = 10.0) -> bool:
    """True iff the completion solves the problem (code runs in the sandbox, never here)."""
    if p.kind == "code":
        return check_many([p], [completion], timeout_s=timeout_s)[0]
    got = extract_answer(p, completion)
    if got is None:
        return False
    want = parse_number(p.answer)
    if want is not None:
        value = parse_number(got)
        return value is not None and Fraction(value) == want
    return got == reference_answer(p)


def check_many(
    problems: list[Problem],
    completions: list[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
) -> list[bool]:
    """Batch `check`: reasoning in-process, all code in one sandbox run per 256 candidates."""
    return [
        d["passed"]
        for d in check_many_details(problems, completions, timeout_s=timeout_s, workers=workers)
    ]


def check_many_details(
    problems: list[Problem],
    completions: list[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """Like `check_many`, with `status` (pass|fail|error|timeout|no_answer|ambiguous: a hedged
    final answer, `answer_is_hedged`) and `detail`.

    Code results also carry `cases_passed` and `cases_total` (the number of test calls that
    returned exactly the expected value; 0 when the candidate timed out or never reported).
    Every code problem's tests are parsed before anything runs, so a malformed suite raises
    `HillclimbError` without running any candidate.
    """
    if len(problems) != len(completions):
        raise HillclimbError(
            f"{len(problems)} problems but {len(completions)} completions; they must pair up"
        )
    out: list[dict[str, Any] | None] = [None] * len(problems)
    code_idx: list[int] = []
    for i, (p, c) in enumerate(zip(problems, completions, strict=True)):
        if p.kind == "code":
            code_idx.append(i)
            continue
        got, hedged = _extract(p, c)
        ok = check(p, c)
        out[i] = {
            "passed": ok,
            "status": "pass"
            if ok
            else ("ambiguous" if hedged else "no_answer" if got is None else "fail"),
            "detail": "more than one answer offered"
            if hedged
            else ("" if got is None else f"extracted {got!r}"),
        }
    codes = check_code_details(
        [problems[i] for i in code_idx],
        [extract_code(completions[i]) for i in code_idx],
        timeout_s=timeout_s,
        workers=workers,
        batch_size=batch_size,
    )
    for i, r in zip(code_idx, codes, strict=True):
        out[i] = r
    return [r for r in out if r is not None]


def check_code_details(
    problems: list[Problem],
    codes: list[str],
    *,
    timeout_s: float = 10.0,
    workers: int | None = None,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """The code half of `check_many_details` for source that is already the program (nothing
    extracted from a chat answer): e.g. a completion-form prompt with its continuation. Any
    suite whose tests have the accepted form should be scored here, not by running the
    candidate beside its asserts, which an always-equal return value or a forged end marker
    passes."""
    if len(problems) != len(codes):
        raise HillclimbError(f"{len(problems)} problems but {len(codes)} programs")
    suites = [code_cases(p) for p in problems]
    out: list[dict[str, Any]] = []
    for start in range(0, len(problems), batch_size):
        out.extend(
            _run_code_batch(
                suites[start : start + batch_size],
                codes[start : start + batch_size],
                timeout_s,
                workers,
            )
        )
    return out


# ---------------------------------------------------------------------------------- code checks

TESTS_FORM = (
    "'assert NAME(ARGS) == EXPECTED' or 'assert NAME(ARGS) is None|True|False', one per line, "
    "with ARGS (positional or keyword) and EXPECTED Python literals"
)
MEMORY_MB = 512  # address space of each candidate process
_RESULT_CAP = 64 << 10  # bytes a candidate may report, at least (4x the expected size if larger)
_TAGS_SEQ = ("list", "tuple")
_TAGS_SET = ("set", "frozenset")


@dataclass(frozen=True)
class CallCase:
    """One parsed test line: the call to make in the sandbox, and what it must return (host)."""

    line: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    expected: Any
    want: Any  # `_canon(expected)`: the type-tagged, hashable form compared against results


class _Unsupported(Exception):
    pass


def _canon(v: Any, depth: int = 0) -> Any:
    """A hashable, type-tagged form in which equality is exactly the type-strict comparison."""
    if depth > 100:
        raise _Unsupported("nesting deeper than 100")
    t = type(v)
    if v is None:
        return ("none",)
    if t is bool:
        return ("bool", v)
    if t is int:
        return ("int", v)
    if t is float:
        return ("float", "nan") if math.isnan(v) else ("float", v)
    if t is str or t is bytes:
        return (t.__name__, v)
    if t is list or t is tuple:
        return (t.__name__, tuple(_canon(x, depth + 1) for x in v))
    if t is set or t is frozenset:
        return (t.__name__, frozenset(_canon(x, depth + 1) for x in v))
    if t is dict:
        return (
            "dict",
            frozenset((_canon(k, depth + 1), _canon(x, depth + 1)) for k, x in v.items()),
        )
    raise _Unsupported(t.__name__)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Starred):
        raise ValueError("starred argument")
    return ast.literal_eval(node)


def _parse_line(line: str) -> CallCase:
    tree = ast.parse(line, mode="exec")
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert) or tree.body[0].msg:
        raise ValueError("not a single assert statement without a message")
    test = tree.body[0].test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and len(test.comparators) == 1):
        raise ValueError("not a single comparison")
    op, call = test.ops[0], test.left
    if not isinstance(op, ast.Eq | ast.Is):
        raise ValueError("the comparison must be == or is")
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise ValueError("the left side must call a function by name")
    if any(k.arg is None for k in call.keywords):
        raise ValueError("**kwargs are not allowed")
    args = tuple(_literal(a) for a in call.args)
    kwargs = {k.arg: _literal(k.value) for k in call.keywords if k.arg is not None}
    expected = _literal(test.comparators[0])
    if isinstance(op, ast.Is) and not (expected is None or type(expected) is bool):
        raise ValueError("'is' is only allowed with None, True or False")
    try:
        marshal.dumps((args, kwargs))
        want = _canon(expected)
    except (_Unsupported, ValueError) as exc:
        raise ValueError(f"a value the checker cannot compare ({exc})") from None
    return CallCase(line, call.func.id, args, kwargs, expected, want)


@functools.lru_cache(maxsize=4096)
def parse_tests(tests: str) -> tuple[CallCase, ...]:
    """The test lines of a code problem, parsed in the host (cached; the same tests recur)."""
    cases = []
    for lineno, raw in enumerate(tests.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            cases.append(_parse_line(line))
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
            raise HillclimbError(
                f"tests line {lineno} {line[:200]!r} is not of the accepted form {TESTS_FORM}: "
                f"{exc}"
            ) from None
    if not cases:
        raise HillclimbError(f"tests contain no test line of the accepted form {TESTS_FORM}")
    return tuple(cases)


def code_cases(p: Problem) -> tuple[CallCase, ...]:
    """`parse_tests(p.tests)`, with the problem's id in any error."""
    if not p.tests:
        raise HillclimbError(f"code problem {p.id} has no tests")
    try:
        return parse_tests(p.tests)
    except HillclimbError as exc:
        raise HillclimbError(f"code problem {p.id}: {exc}") from None


# The per-candidate program, exec'd in a child the zygote forked (see the runner), with its
# socket to the runner on fds 0 and 1. Everything it relies on is bound to a local before the
# candidate's code exists; it reports one ASCII line of JSON on a dup of fd 1:
# {"cases": [["ok", TREE] | ["raise", "Type: message"], ...]} or {"error": "..."}.
_ITEM_PY = r"""
def _main():
    import marshal, posix, resource
    try:
        from _json import encode_basestring_ascii as q
    except ImportError:
        from json.encoder import py_encode_basestring_ascii as q
    T, NoneT, B, I, F, S, BY = type, type(None), bool, int, float, str, bytes
    L, TU, D, SE, FS = list, tuple, dict, set, frozenset
    hx, fhex, bhex, items, dget, join = hex, float.hex, bytes.hex, dict.items, dict.get, "".join
    callable_, BaseExc, exec_, compile_, encode = callable, BaseException, exec, compile, str.encode
    ln = len
    tname = type.__dict__["__name__"].__get__
    write, read, exit_ = posix.write, posix.read, posix._exit
    data = []
    while True:
        chunk = read(0, 1 << 16)
        if not chunk:
            break
        data.append(chunk)
    code, calls, memory_mb, max_line = marshal.loads(b"".join(data))
    del data
    out = posix.dup(1)
    null = posix.open("/dev/null", posix.O_RDWR)
    for fd in (0, 1, 2):
        posix.dup2(null, fd)
    try:
        mem = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    except BaseExc:
        pass

    class Big(Exception):
        pass

    budget = [0]

    def enc(v, parts, depth):
        budget[0] += 1
        if budget[0] > 1000000:
            raise Big()
        t = T(v)
        if depth > 100:
            parts.append('["unserialisable","nested deeper than 100"]')
        elif t is NoneT:
            parts.append('["none"]')
        elif t is B:
            parts.append('["bool",true]' if v is True else '["bool",false]')
        elif t is I:
            parts.append('["int","' + hx(v) + '"]')
        elif t is F:
            parts.append('["float","' + fhex(v) + '"]')
        elif t is S:
            parts.append('["str",' + q(v) + "]")
        elif t is BY:
            parts.append('["bytes","' + bhex(v) + '"]')
        elif t is L or t is TU or t is SE or t is FS:
            tag = "list" if t is L else "tuple" if t is TU else "set" if t is SE else "frozenset"
            parts.append('["' + tag + '",[')
            first = True
            for x in v:
                if not first:
                    parts.append(",")
                first = False
                enc(x, parts, depth + 1)
            parts.append("]]")
        elif t is D:
            parts.append('["dict",[')
            first = True
            for k, x in items(v):
                parts.append("[" if first else ",[")
                first = False
                enc(k, parts, depth + 1)
                parts.append(",")
                enc(x, parts, depth + 1)
                parts.append("]")
            parts.append("]]")
        else:
            try:
                name = tname(t)
            except BaseExc:
                name = "?"
            parts.append('["unserialisable",' + q(name[:80] if T(name) is S else "?") + "]")

    def describe(exc):
        try:
            name = tname(T(exc))
        except BaseExc:
            name = "exception"
        try:
            msg = S(exc)
            msg = msg[:200] if T(msg) is S else ""
        except BaseExc:
            msg = ""
        return name + ": " + msg if msg else name

    def report(line):
        try:
            write(out, encode(line, "ascii"))
        finally:
            exit_(0)

    ns = {"__name__": "solution"}
    try:
        exec_(compile_(code, "solution.py", "exec"), ns)
    except BaseExc as exc:
        report('{"error":' + q("the code raised " + describe(exc)) + "}\n")
    cases = []
    for name, args, kwargs in calls:
        fn = dget(ns, name)
        if not callable_(fn):
            report('{"error":' + q("function " + name + " is not defined") + "}\n")
        try:
            value = fn(*args, **kwargs)
        except BaseExc as exc:
            cases.append('["raise",' + q(describe(exc)) + "]")
            continue
        parts = []
        budget[0] = 0
        try:
            enc(value, parts, 0)
            cases.append('["ok",' + join(parts) + "]")
        except BaseExc:
            cases.append('["ok",["unserialisable","could not be serialised"]]')
    line = '{"cases":[' + ",".join(cases) + "]}\n"
    if ln(line) > max_line:
        line = '{"error":"result over %d bytes"}\n' % max_line
    report(line)


_main()
"""

# The batch runner (`python -I -S -c`, the sandbox's command). It makes itself non-dumpable and
# forks the ZYGOTE before it reads anything: a single-threaded process that holds no candidate's
# code and no token, and forks one child per candidate. Each child is born non-dumpable (the
# flag survives fork; only exec resets it, which is why there is no exec), so no sibling can
# ever open its /proc files, ptrace it or copy its fds, not even for the first milliseconds.
# The runner sends the child its input over a private socketpair, reads its one result line,
# kills its session, and prints one JSON line per finished candidate with the batch token.
_RUNNER_PY = r"""
import json, marshal, os, select, signal, socket, struct, sys, threading, time

ITEM_SRC = "ITEM_SRC_HERE"
REPLY_S = 10.0  # the zygote answers in milliseconds; a stopped or dead one is given up on


class Broken(Exception):
    pass


NEWUSER, NEWNS, NEWNET, NEWIPC = 0x10000000, 0x00020000, 0x40000000, 0x08000000
USERNS = {"entered": False, "mapped": False}  # main() made a user namespace of its own


def own_userns():
    # A user namespace for the whole batch, entered while the runner is still single-threaded
    # and dumpable (it must write its own uid map): there the zygote's children may make mount,
    # network and IPC namespaces of their own, and files they create map to our uid.
    import ctypes

    uid, gid = os.getuid(), os.getgid()
    if ctypes.CDLL(None, use_errno=True).unshare(NEWUSER) != 0:
        return
    USERNS["entered"] = True
    for path, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                       ("gid_map", "%d %d 1" % (gid, gid))):
        with open("/proc/self/" + path, "w") as f:
            f.write(text)
    USERNS["mapped"] = True


def isolate():
    # Candidates of a batch share a uid, the workspace, /tmp, /dev/shm, loopback and SysV IPC:
    # one could read what a right sibling (in GRPO, another sample of its prompt) left there.
    # Each gets its own: empty tmpfs over the workspace, /tmp and /dev/shm, a network namespace
    # with no interface up, an IPC namespace. Then a nested user namespace drops the
    # capabilities that made it (the mounts, copied into any namespace it makes, stay locked).
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    cwd = os.getcwd()
    if USERNS["mapped"] and libc.unshare(NEWNS | NEWNET | NEWIPC) == 0:
        if libc.mount(b"none", b"/", None, 16384 | (1 << 18), None) == 0:  # MS_REC|MS_PRIVATE
            for d in ("/tmp", "/dev/shm", cwd):
                if d != cwd or os.path.isdir(cwd):
                    libc.mount(b"tmpfs", d.encode(), b"tmpfs", 2 | 4, b"size=64m,mode=0700")
                else:  # the workspace was under /tmp: an empty one at the same path
                    os.makedirs(cwd, 0o700)
            os.chdir(cwd)
    if libc.unshare(NEWUSER) != 0:
        raise SystemExit(70)  # never run a candidate that holds capabilities


def child(ch, item_code):
    try:
        os.setsid()  # its own session: killing it reaches whatever it starts (but setsid)
        os.dup2(ch, 0)
        os.dup2(ch, 1)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 2)
        os.closerange(3, 1 << 16)  # the zygote's socket and anything else inherited
        if USERNS["entered"]:
            isolate()
        exec(item_code, {"__name__": "__item__"})
    finally:
        os._exit(70)


def zygote(z):
    item_code = compile(ITEM_SRC, "<item>", "exec")
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):  # the host's pipes: the batch (fd 0), the records, "Traceback" (fd 2)
        os.dup2(null, fd)
    os.close(null)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(z, 64, 1)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)  # the runner is gone
        if msg[:1] == b"F" and fds:
            try:
                pid = os.fork()
            except OSError:
                pid = -1
            if pid == 0:
                z.close()
                child(fds[0], item_code)
            os.close(fds[0])
            pidfd = -1
            if pid > 0:
                try:
                    pidfd = os.pidfd_open(pid)
                except OSError:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            if pidfd < 0:
                z.send(b"E")
                continue
            socket.send_fds(z, [b"P" + struct.pack("i", pid)], [pidfd])
            os.close(pidfd)
        elif msg[:1] == b"W":
            (pid,) = struct.unpack("i", msg[1:5])
            try:  # only asked for a child that has ended (or been SIGKILLed)
                _, st, use = os.wait4(pid, 0)
                done = [os.waitstatus_to_exitcode(st), use.ru_utime + use.ru_stime]
            except (OSError, ValueError):
                done = [None, None]
            z.send(b"S" + json.dumps(done).encode())


class Zygote:
    def __init__(self, sock):
        self.sock, self.lock, self.broken = sock, threading.Lock(), False
        sock.settimeout(REPLY_S)

    def call(self, msg, fds=()):
        with self.lock:
            if self.broken:
                raise Broken
            try:
                socket.send_fds(self.sock, [msg], list(fds))
                reply, rfds, _, _ = socket.recv_fds(self.sock, 256, 1)
                if not reply:
                    raise OSError("zygote gone")
                return reply, rfds
            except OSError:
                self.broken = True
                raise Broken from None

    def fork(self, ch):
        reply, fds = self.call(b"F", [ch])
        if reply[:1] != b"P" or not fds:
            for fd in fds:
                os.close(fd)
            return None
        return struct.unpack("i", reply[1:5])[0], fds[0]

    def reap(self, pid):
        reply, _ = self.call(b"W" + struct.pack("i", pid))
        return json.loads(reply[1:]) if reply[:1] == b"S" else [None, None]


def sweep_orphans():
    # Processes a candidate left behind (setsid + double fork) are re-parented to PID 1, the
    # sandbox's init. Only inside a PID namespace, where our parent IS that init.
    me = os.getpid()
    if os.getppid() != 1:
        return
    # SIGKILL is delivered asynchronously: on a loaded machine a killed orphan can still be
    # running when the next candidate starts, so wait (briefly) until each is dead or reaped.
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid == 1:
                os.kill(int(name), signal.SIGKILL)
                killed.append(name)
        except (OSError, ValueError, IndexError):
            pass
    deadline = time.monotonic() + 2.0
    while killed and time.monotonic() < deadline:
        alive = []
        for name in killed:
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                        alive.append(name)
            except (OSError, IndexError):
                pass
        killed = alive
        if killed:
            time.sleep(0.002)


def run_one(zyg, item, timeout_s, cap):
    a, b = socket.socketpair()
    try:
        got = zyg.fork(b.fileno())
    except Broken:
        a.close()
        raise
    finally:
        b.close()
    if got is None:
        a.close()
        return {"status": "nostart", "detail": "fork failed"}
    pid, pidfd = got
    a.setblocking(False)
    deadline = time.monotonic() + timeout_s
    buf, status, pending, exited, wait = bytearray(), "done", memoryview(item), False, None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                try:  # ns on a CPU, ns waiting for one, slices: was it starved or asleep?
                    with open("/proc/%d/schedstat" % pid, "rb") as f:
                        wait = int(f.read().split()[1]) / 1e9
                except (OSError, ValueError, IndexError):
                    pass
                break
            r, w, _ = select.select([a, pidfd], [a] if pending is not None else [], [], left)
            if w:
                try:
                    pending = pending[a.send(pending[: 1 << 16]) :]
                except BlockingIOError:
                    pass
                except OSError:
                    pending = memoryview(b"")
                if not len(pending):
                    pending = None
                    try:
                        a.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
            if a in r:
                try:
                    chunk = a.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                buf += chunk
                if len(buf) > cap:
                    status = "over"
                    break
            elif pidfd in r:
                # ended, but something it started may hold the socket: stop once it is drained
                exited = True
                if not select.select([a], [], [], 0)[0]:
                    break
    finally:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        rc = cpu = None
        if not zyg.broken:  # unreaped until we ask: its pid (and group) cannot be reused yet
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            if exited or select.select([pidfd], [], [], 5.0)[0]:
                try:
                    rc, cpu = zyg.reap(pid)
                except Broken:
                    pass
        os.close(pidfd)
        a.close()
    # Only a COMPLETE last line is a result: a candidate killed while writing leaves a partial
    # one, which must read as "no result" (rerun alone), not as a malformed answer.
    last = bytes(buf[:-1]).rsplit(b"\n", 1)[-1] if buf.endswith(b"\n") else b""
    try:
        text = last.decode("ascii")
    except UnicodeDecodeError:
        text = "\ufffd"
    return {"status": status, "rc": rc, "cpu": cpu, "wait": wait, "out": text}


def main():
    import ctypes

    try:
        own_userns()
    except OSError:
        pass
    if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0, kept by every fork
        raise SystemExit("runner: cannot make itself non-dumpable")
    # SIGINT ignored here, in the zygote and in every candidate: a sibling cannot turn an answer
    # into a KeyboardInterrupt or crash the runner with a traceback. Other signals kill.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    zs, zc = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zpid = os.fork()
    if zpid == 0:  # before the batch is read: the zygote never holds a candidate's code
        zs.close()
        zygote(zc)
    zc.close()
    zyg = Zygote(zs)
    spec = marshal.loads(sys.stdin.buffer.read())
    token, items, caps = spec["token"], spec["items"], spec["caps"]
    lock = threading.Lock()
    todo = list(range(len(items)))[::-1]
    probe = run_one(zyg, marshal.dumps(("", [], 512, 64)), 10.0, 64)  # works, or we crash
    if (probe["status"], probe["rc"], probe["out"]) != ("done", 0, '{"cases":[]}'):
        raise SystemExit("runner: the zygote does not work: %r" % (probe,))

    def emit(rec):
        rec["t"] = token
        line = json.dumps(rec) + "\n"
        with lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def worker():
        while not zyg.broken:  # a dead or stopped zygote: the rest get no record (rerun alone)
            with lock:
                if not todo:
                    return
                i = todo.pop()
            try:
                rec = run_one(zyg, items[i], spec["timeout_s"], caps[i])
            except Broken:
                return
            sweep_orphans()
            rec["i"] = i
            emit(rec)

    emit({"start": len(items)})
    threads = [threading.Thread(target=worker) for _ in range(spec["workers"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.kill(zpid, signal.SIGKILL)  # our child, unreaped: this pid is still the zygote
    os.waitpid(zpid, 0)
    emit({"end": len(items)})


main()
"""


_RUNNER_SRC = _RUNNER_PY.replace('"ITEM_SRC_HERE"', repr(_ITEM_PY))


class _Malformed(Exception):
    pass


def _decode(node: Any, depth: int = 0) -> Any:
    """A reported tree -> the `_canon` form (raises _Malformed for anything our encoder never
    writes; an "unserialisable" marker decodes to a form no expected value has)."""
    if depth > 101 or type(node) is not list or not node or type(node[0]) is not str:
        raise _Malformed
    tag, rest = node[0], node[1:]
    try:
        if tag == "none" and not rest:
            return ("none",)
        if len(rest) != 1:
            raise _Malformed
        (x,) = rest
        if tag == "bool" and type(x) is bool:
            return ("bool", x)
        if tag == "int" and type(x) is str:
            return ("int", int(x, 16))
        if tag == "float" and type(x) is str:
            f = float.fromhex(x)
            return ("float", "nan") if math.isnan(f) else ("float", f)
        if tag == "str" and type(x) is str:
            return ("str", x)
        if tag == "bytes" and type(x) is str:
            return ("bytes", bytes.fromhex(x))
        if tag in _TAGS_SEQ and type(x) is list:
            return (tag, tuple(_decode(e, depth + 1) for e in x))
        if tag in _TAGS_SET and type(x) is list:
            return (tag, frozenset(_decode(e, depth + 1) for e in x))
        if tag == "dict" and type(x) is list:
            pairs = []
            for kv in x:
                if type(kv) is not list or len(kv) != 2:
                    raise _Malformed
                pairs.append((_decode(kv[0], depth + 1), _decode(kv[1], depth + 1)))
            return ("dict", frozenset(pairs))
        if tag == "unserialisable" and type(x) is str:
            return ("unserialisable", x[:80])
    except (ValueError, TypeError, OverflowError) as exc:
        raise _Malformed from exc
    raise _Malformed


def _show(c: Any, limit: int = 80) -> str:
    """A canonical value as short Python-like text (for `detail`)."""

    def go(c: Any) -> str:
        tag = c[0]
        if tag == "none":
            return "None"
        if tag == "unserialisable":
            return f"<{c[1]} object: not a plain builtin value>"
        if tag == "float":
            return "nan" if c[1] == "nan" else repr(c[1])
        if tag == "int" and c[1].bit_length() > 256:  # repr of a huge int can even raise
            return f"<int of {c[1].bit_length()} bits>"
        if tag in ("bool", "int", "str", "bytes"):
            return repr(c[1])
        if tag == "dict":
            return "{" + ", ".join(f"{go(k)}: {go(v)}" for k, v in c[1]) + "}"
        inner = ", ".join(go(x) for x in c[1])
        if tag == "list":
            return f"[{inner}]"
        if tag == "tuple":
            return f"({inner}{',' if len(c[1]) == 1 else ''})"
        return f"{tag}({{{inner}}})" if c[1] else f"{tag}()"

    text = go(c)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _verdict(suite: tuple[CallCase, ...], rec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One candidate's runner record -> the public result (never raises on hostile input)."""
    total = len(suite)

    def res(status: str, detail: str, passed: int = 0) -> dict[str, Any]:
        return {
            "passed": status == "pass",
            "status": status,
            "detail": detail,
            "cases_passed": passed,
            "cases_total": total,
        }

    status, rc, out = rec.get("status"), rec.get("rc"), rec.get("out")
    if status == "timeout":
        return res("timeout", f"over {timeout_s:g}s")
    if status == "over":
        return res("error", "reported more output than any correct answer needs")
    if not isinstance(out, str) or not out.strip():
        how = f"killed by signal {-rc}" if isinstance(rc, int) and rc < 0 else f"exit code {rc}"
        return res("error", f"no result ({how})")
    try:
        report = json.loads(out)
    except (ValueError, RecursionError):
        return res("error", "malformed result line")
    if type(report) is dict and type(report.get("error")) is str and "cases" not in report:
        return res("error", report["error"][:300])
    cases = report.get("cases") if type(report) is dict else None
    if type(cases) is not list or len(cases) != total:
        return res("error", "malformed result line")
    passed, first = 0, None
    for case, got in zip(suite, cases, strict=True):
        try:
            if type(got) is not list or len(got) != 2:
                raise _Malformed
            kind, payload = got
            if kind == "raise" and type(payload) is str:
                if first is None:
                    first = ("error", f"{case.line}: raised {payload[:200]}")
                continue
            if kind != "ok":
                raise _Malformed
            value = _decode(payload)
        except (_Malformed, RecursionError):
            return res("error", "malformed result line", passed)
        if value == case.want:
            passed += 1
        elif first is None:
            first = ("fail", f"{case.line}: got {_show(value)}")
    if first is None:
        return res("pass", "", passed)
    return res(first[0], first[1][:400], passed)


@functools.cache
def _hidden_paths() -> tuple[str, ...]:
    """What the check sandbox must not show: the installed package, and for an editable install
    (the package not directly in a site-packages directory) the source checkout holding it."""
    import hillclimb

    pkg = Path(hillclimb.__file__).resolve().parent
    out = [str(pkg)]
    sites = {*site.getsitepackages(), site.getusersitepackages()}
    sites |= {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    if not any(Path(s).resolve() == pkg.parent for s in sites if s):
        root = pkg.parent.parent if pkg.parent.name == "src" else pkg.parent
        out.append(str(root))
    return tuple(out)


def _sandbox_batch(
    suites: list[tuple[CallCase, ...]],
    codes: list[str],
    timeout_s: float,
    workers: int,
) -> tuple[list[dict[str, Any] | None], Any]:
    """One sandbox run: runner records per candidate (None where none came back), and the
    SandboxResult. Raises HillclimbError when the runner never started (a harness failure)."""
    from hillclimb.sandbox import SandboxLimits, batch_records, run_sandboxed

    n = len(suites)
    token = secrets.token_hex(16)
    caps = []
    items = []
    for suite, code in zip(suites, codes, strict=True):
        want_size = len(repr([c.expected for c in suite]))
        caps.append(max(_RESULT_CAP, 4 * want_size + 64 * len(suite)))
        calls = [(c.name, c.args, c.kwargs) for c in suite]
        items.append(marshal.dumps((code, calls, MEMORY_MB, 16 << 20)))
    batch = {
        "token": token,
        "items": items,
        "caps": caps,
        "timeout_s": timeout_s,
        "workers": workers,
    }
    rounds = -(-n // workers)
    limits = SandboxLimits(
        timeout_s=timeout_s * rounds + 30.0,
        memory_mb=max(1024, MEMORY_MB * (workers + 1)),
        max_procs=max(64, 8 * workers),
        max_output_bytes=2 * sum(caps) + 512 * n + (64 << 10),
    )
    with tempfile.TemporaryDirectory(prefix="hillclimb-check-") as ws:
        real = os.path.realpath(ws)
        hide = [h for h in _hidden_paths() if not (real + "/").startswith(h.rstrip("/") + "/")]
        res = run_sandboxed(
            [sys.executable, "-I", "-S", "-c", _RUNNER_SRC],
            ws,
            limits,
            stdin=marshal.dumps(batch),
            hide=hide,
        )
    found = batch_records(
        res, token, n, "code check runner", lambda rec: rec.get("status") != "nostart"
    )
    return [found.get(i) for i in range(n)], res


OWN_TIMEOUT_CPU = 0.95  # a timeout is the candidate's own if it ran this much of it on a CPU
ASLEEP = 0.5  # ... or, running alone, if it ran or waited for a CPU less than this much of it


def _settled(rec: dict[str, Any] | None, timeout_s: float, alone: bool = False) -> bool:
    """Whether a record is the candidate's own doing, whatever ran beside it. A result line (a
    wrong or raising answer included) is: only the candidate writes its socket, and signals
    that do not kill are ignored. Too much output is. A timeout is if the candidate ran on a
    CPU for nearly all of it (others can only lower that), or, when it ran `alone` (nothing can
    signal it there), if it mostly slept rather than waited for a CPU (a concurrent run can
    starve it). Not settled: no record (the runner or zygote died or stalled, or could not
    start it), an end without a complete result line (a sibling can SIGKILL it), any other
    timeout (a sibling can SIGSTOP it or starve it)."""
    if rec is None:
        return False
    status, cpu, wait = rec.get("status"), rec.get("cpu"), rec.get("wait")
    if status == "timeout":
        if type(cpu) is not float:
            return False
        if cpu >= OWN_TIMEOUT_CPU * timeout_s:
            return True
        return alone and type(wait) is float and cpu + wait < ASLEEP * timeout_s
    return status != "done" or bool(rec.get("out"))


def _solo(suite: tuple[CallCase, ...], code: str, timeout_s: float) -> dict[str, Any]:
    """One candidate alone in its own sandbox run: its record, or a "lost" one."""
    (rec,), res = _sandbox_batch([suite], [code], timeout_s, 1)
    if rec is None:
        if "Traceback" in res.stderr:
            raise HillclimbError(f"code check runner crashed: {res.stderr.strip()[-500:]}")
        return {"status": "lost", "detail": res.status}
    return rec


def _run_code_batch(
    suites: list[tuple[CallCase, ...]],
    codes: list[str],
    timeout_s: float,
    workers: int | None,
) -> list[dict[str, Any]]:
    n = len(suites)
    workers = max(1, min(workers or (os.cpu_count() or 2), 8, n))
    if n == 1:
        recs: list[dict[str, Any] | None] = [_solo(suites[0], codes[0], timeout_s)]
    else:
        recs, _ = _sandbox_batch(suites, codes, timeout_s, workers)
        # Sabotage is useless: a candidate whose outcome a sibling may have caused is rerun
        # ALONE in its own sandbox run (`workers` runs at a time), and that run counts. There
        # nothing can signal it (other runs are other PID namespaces), but a concurrent rerun
        # can starve it of CPU: a timeout there that was not its own is run once more, alone
        # on the machine. One that fails by itself gets the same outcome again; the reruns
        # cost time only for candidates that die without a result or time out without using
        # the CPU (see `_settled`).
        again = [i for i, r in enumerate(recs) if not _settled(r, timeout_s)]
        for conc in (min(workers, len(again)), 1):
            if not again:
                break
            with ThreadPoolExecutor(conc) as pool:
                solo = list(pool.map(lambda i: _solo(suites[i], codes[i], timeout_s), again))
            for i, rec in zip(again, solo, strict=True):
                recs[i] = rec
            if conc == 1:
                break
            again = [
                i
                for i, rec in zip(again, solo, strict=True)
                if rec.get("status") == "timeout" and not _settled(rec, timeout_s, alone=True)
            ]
    out = []
    for suite, rec in zip(suites, recs, strict=True):
        assert rec is not None
        if rec.get("status") == "lost":
            out.append(
                {
                    "passed": False,
                    "status": "error",
                    "detail": f"the checker was stopped while this candidate ran ({rec['detail']})",
                    "cases_passed": 0,
                    "cases_total": len(suite),
                }
            )
        else:
            out.append(_verdict(suite, rec, timeout_s))
    return out
