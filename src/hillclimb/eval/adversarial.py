"""Adversarial coding: small functions whose obvious implementation is wrong, by category.

Why: our generators and HumanEval reward code that handles the examples; real bugs live where
the obvious code breaks — an off-by-one, `len()` of UTF-8 bytes vs characters, an empty list, a
shared mutable default, `0.1 + 0.2 == 0.3`, Python's floor division where C truncates, a path
that climbs out of its directory, a string pasted into a shell or SQL, a counter or a cache
shared by threads, a month that has no 31st. Each item here is a
function spec written by us that names the trap only as a requirement, plus hidden tests that
the naive solution fails. Per-category accuracy says which kind of care a model lacks.

Items are asked in chat form (one user turn; the last fenced code block is the answer). The
answer runs alone in its own sandboxed process and the tests in a trusted tester that reaches it
over an RPC (`eval.programs.run_object_checks`): values cross as exact builtin types (and dates),
other objects — closures, counters, caches — as handles whose calls run in the answer's process,
each on its own thread, and callables the tests pass (`call_once(slow)`) call back into the
tester. In one interpreter with the tests (`answer + tests`, until session 23) an always-equal
return value passed 31 of 50 items and printing the end marker read from the program's own code
object (or from an excepthook / atexit handler) passed all 50; now both pass 0 (tests/
test_outside_checks_s23_adv.py measures them). This package — which holds the tests and
reference solutions — is hidden from the answer. `REFERENCES` exist so the tests can be checked
(every reference passes, tests/test_eval_suites.py) and are never shown to a model.

What the numbers do not show: 5 items per category move a category by 20 points each; the specs
are short, so a miss can be a misunderstanding rather than the trap. concurrency/1 runs its 8 x
5000 increments inside the answer's process (`hammer`: an RPC per increment is too slow to
race), started together at a barrier, traced per opcode (a thread switch can fall between any
two bytecodes) and handing the CPU over before every 13th store: a bare `self.value += 1`,
which CPython 3.11 otherwise never interrupts between load and store, passed 20 of 20 runs of 8
x 100000 plain increments and now fails (session 24: 0 of 40, ~5,100 of 40,001 counted; the
locked reference passed 40 of 40 at 0.4-0.7 s an item on a busy machine). An answer written for
this item could still fake the count there, as any fake counter could. The tests' changes to a
returned object stay in the tester (no item relies on them), and only top-level arguments keep
their identity across the RPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hillclimb.eval.backends import Backend, Request
from hillclimb.eval.programs import STRESS
from hillclimb.eval.suite_common import (
    SuiteConfig,
    first_param,
    generation_stats,
    metric,
    program_item,
    trivial_baseline,
)

DEFAULT_MAX_TOKENS = 512
PROMPT = (
    "Write a Python function `{signature}`. {spec}\n"
    "Answer with the complete function (and any imports it needs) in one ```python code block."
)


@dataclass(frozen=True)
class AdvItem:
    id: str
    category: str
    signature: str
    spec: str
    tests: str  # assert lines, run after the answer's code

    @property
    def prompt(self) -> str:
        return PROMPT.format(signature=self.signature, spec=self.spec)


def _i(cat: str, n: int, sig: str, spec: str, tests: str) -> AdvItem:
    return AdvItem(f"{cat}/{n}", cat, sig, spec, tests.strip())


ITEMS: tuple[AdvItem, ...] = (
    # ---- off by one
    _i("off_by_one", 1, "inclusive_range_sum(a, b)",
       "Return the sum of the integers from a to b, both included; 0 when a > b.",
       "assert inclusive_range_sum(1, 1) == 1\nassert inclusive_range_sum(1, 5) == 15\n"
       "assert inclusive_range_sum(3, 2) == 0\nassert inclusive_range_sum(-2, 2) == 0"),
    _i("off_by_one", 2, "last_n(xs, n)",
       "Return the last n items of list xs as a new list (all of xs when n exceeds its length, "
       "an empty list when n is 0).",
       "assert last_n([1, 2, 3], 0) == []\nassert last_n([1, 2, 3], 2) == [2, 3]\n"
       "assert last_n([1, 2], 5) == [1, 2]"),
    _i("off_by_one", 3, "chunks(xs, size)",
       "Split list xs into consecutive lists of `size` items; the last may be shorter.",
       "assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]\n"
       "assert chunks([], 3) == []\nassert chunks([1, 2], 2) == [[1, 2]]"),
    _i("off_by_one", 4, "count_windows(n, k)",
       "Return how many contiguous windows of length k (k >= 1) a sequence of length n has.",
       "assert count_windows(5, 5) == 1\nassert count_windows(5, 1) == 5\n"
       "assert count_windows(3, 4) == 0\nassert count_windows(5, 2) == 4"),
    _i("off_by_one", 5, "pages_needed(items, per_page)",
       "Return how many pages are needed to show `items` items at `per_page` per page.",
       "assert pages_needed(0, 10) == 0\nassert pages_needed(10, 10) == 1\n"
       "assert pages_needed(11, 10) == 2\nassert pages_needed(1, 10) == 1"),
    # ---- unicode
    _i("unicode", 1, "utf8_length(s)",
       "Return the number of bytes of string s encoded as UTF-8.",
       "assert utf8_length('a') == 1\nassert utf8_length('é') == 2\n"
       "assert utf8_length('日本') == 6\nassert utf8_length('😀') == 4"),
    _i("unicode", 2, "same_ignoring_case(a, b)",
       "Return whether strings a and b are equal ignoring case, by full Unicode case folding.",
       "assert same_ignoring_case('Straße', 'STRASSE')\nassert same_ignoring_case('abc', 'ABC')\n"
       "assert not same_ignoring_case('a', 'b')"),
    _i("unicode", 3, "is_palindrome(s)",
       "Return whether s reads the same backwards, ignoring case and every character that is "
       "not a letter or digit (any script).",
       "assert is_palindrome('A man, a plan, a canal: Panama')\nassert is_palindrome('Ésé')\n"
       "assert not is_palindrome('ab')\nassert is_palindrome('')\n"
       "assert is_palindrome('日本日')"),
    _i("unicode", 4, "truncate_utf8(s, max_bytes)",
       "Return the longest prefix of s whose UTF-8 encoding has at most max_bytes bytes, never "
       "splitting a character.",
       "assert truncate_utf8('héllo', 2) == 'h'\nassert truncate_utf8('héllo', 3) == 'hé'\n"
       "assert truncate_utf8('日本', 5) == '日'\nassert truncate_utf8('abc', 10) == 'abc'"),
    _i("unicode", 5, "same_text(a, b)",
       "Return whether a and b are the same text once both are in Unicode NFC normal form.",
       "assert same_text('e\\u0301', '\\u00e9')\nassert not same_text('e', '\\u00e9')\n"
       "assert same_text('abc', 'abc')"),
    # ---- empty inputs
    _i("empty_inputs", 1, "average(xs)",
       "Return the arithmetic mean of the numbers in xs, or None when xs is empty.",
       "assert average([]) is None\nassert average([1, 2]) == 1.5\nassert average([-3]) == -3"),
    _i("empty_inputs", 2, "max_or_default(xs, default)",
       "Return the largest number in xs, or `default` when xs is empty.",
       "assert max_or_default([], 0) == 0\nassert max_or_default([-5, -2], 0) == -2\n"
       "assert max_or_default([3], None) == 3"),
    _i("empty_inputs", 3, "first_word(s)",
       "Return the first whitespace-separated word of s, or '' when there is none.",
       "assert first_word('  hi there') == 'hi'\nassert first_word('') == ''\n"
       "assert first_word('   ') == ''"),
    _i("empty_inputs", 4, "merge_counts(a, b)",
       "Return a new dict with the counts of dicts a and b added key by key; either may be "
       "empty and neither is modified.",
       "assert merge_counts({}, {'x': 1}) == {'x': 1}\nassert merge_counts({}, {}) == {}\n"
       "a = {'x': 1}\nassert merge_counts(a, {'x': 2, 'y': 1}) == {'x': 3, 'y': 1}\n"
       "assert a == {'x': 1}"),
    _i("empty_inputs", 5, "join_nonempty(parts, sep)",
       "Join the non-empty strings of `parts` with `sep`.",
       "assert join_nonempty(['a', '', 'b'], '-') == 'a-b'\nassert join_nonempty([], ',') == ''\n"
       "assert join_nonempty(['', ''], ',') == ''"),
    # ---- mutable defaults / aliasing
    _i("mutable_defaults", 1, "append_item(item, items=None)",
       "Return a new list: `items` (empty when not given) followed by item. The list passed in "
       "is not modified.",
       "assert append_item(1) == [1]\nassert append_item(2) == [2]\nl = [0]\n"
       "assert append_item(1, l) == [0, 1]\nassert l == [0]"),
    _i("mutable_defaults", 2, "with_tag(tags, tag)",
       "Return a new set holding the tags of set `tags` plus `tag`; `tags` is not modified.",
       "t = {'a'}\nassert with_tag(t, 'b') == {'a', 'b'}\nassert t == {'a'}"),
    _i("mutable_defaults", 3, "make_counter()",
       "Return a function that returns 1, 2, 3, ... on successive calls; every counter made "
       "counts on its own.",
       "c = make_counter()\nd = make_counter()\nassert c() == 1\nassert c() == 2\n"
       "assert d() == 1\nassert c() == 3"),
    _i("mutable_defaults", 4, "register(name, registry=None)",
       "Add name -> len(name) to `registry` (a new empty dict when not given) and return it.",
       "assert register('a') == {'a': 1}\nassert register('bc') == {'bc': 2}\nr = {}\n"
       "assert register('x', r) is r and r == {'x': 1}"),
    _i("mutable_defaults", 5, "with_defaults(options=None)",
       "Return a dict of the defaults {'debug': False, 'level': 1} updated with `options`; "
       "neither the defaults of later calls nor `options` change.",
       "assert with_defaults({'level': 3}) == {'debug': False, 'level': 3}\n"
       "assert with_defaults() == {'debug': False, 'level': 1}\no = {'debug': True}\n"
       "with_defaults(o)['level'] = 9\nassert o == {'debug': True}\n"
       "assert with_defaults() == {'debug': False, 'level': 1}"),
    # ---- floating point
    _i("float_comparison", 1, "approx_equal(a, b)",
       "Return whether floats a and b differ by at most 1e-9 times the larger of 1, |a|, |b|.",
       "assert approx_equal(0.1 + 0.2, 0.3)\nassert not approx_equal(1.0, 1.1)\n"
       "assert approx_equal(1e20, 1e20 + 1e5)\nassert not approx_equal(0.0, 1e-3)"),
    _i("float_comparison", 2, "sums_to_one(xs)",
       "Return whether the floats in xs add up to 1 (within 1e-9).",
       "assert sums_to_one([0.1] * 10)\nassert not sums_to_one([0.5, 0.6])\n"
       "assert sums_to_one([1.0])"),
    _i("float_comparison", 3, "round_half_up(x)",
       "Round x to the nearest integer, halves away from zero, and return an int.",
       "assert round_half_up(2.5) == 3\nassert round_half_up(3.5) == 4\n"
       "assert round_half_up(-2.5) == -3\nassert round_half_up(2.4) == 2\n"
       "assert type(round_half_up(0.5)) is int and round_half_up(0.5) == 1"),
    _i("float_comparison", 4, "money_total(prices)",
       "Add decimal price strings such as '19.99' exactly and return the total rounded half up "
       "to cents as a string with two decimals.",
       "assert money_total(['0.10', '0.20']) == '0.30'\n"
       "assert money_total(['19.99', '0.01']) == '20.00'\nassert money_total([]) == '0.00'\n"
       "assert money_total(['1.005']) == '1.01'"),
    _i("float_comparison", 5, "is_whole(x)",
       "Return whether float x has no fractional part; False for infinities and NaN.",
       "assert is_whole(3.0)\nassert not is_whole(3.5)\nassert not is_whole(float('inf'))\n"
       "assert not is_whole(float('nan'))\nassert is_whole(-0.0)"),
    # ---- integer semantics
    _i("integer_semantics", 1, "div_trunc(a, b)",
       "Integer division of ints that rounds toward zero, as in C.",
       "assert div_trunc(7, 2) == 3\nassert div_trunc(-7, 2) == -3\n"
       "assert div_trunc(7, -2) == -3\nassert div_trunc(10**30 + 1, 1) == 10**30 + 1"),
    _i("integer_semantics", 2, "c_mod(a, b)",
       "The remainder of int division with the sign of the dividend, as C's %.",
       "assert c_mod(-7, 2) == -1\nassert c_mod(7, -2) == 1\nassert c_mod(7, 2) == 1\n"
       "assert c_mod(-6, 3) == 0"),
    _i("integer_semantics", 3, "to_int32(x)",
       "Wrap int x to a signed 32-bit two's complement value.",
       "assert to_int32(2**31) == -2**31\nassert to_int32(2**32 + 5) == 5\n"
       "assert to_int32(-1) == -1\nassert to_int32(2**31 - 1) == 2**31 - 1"),
    _i("integer_semantics", 4, "midpoint(a, b)",
       "Return the floor of the mean of ints a and b, exactly, however large they are.",
       "assert midpoint(10**30 + 1, 10**30 + 2) == 10**30 + 1\nassert midpoint(-3, 0) == -2\n"
       "assert midpoint(4, 6) == 5"),
    _i("integer_semantics", 5, "digit_sum(n)",
       "Return the sum of the decimal digits of int n, ignoring its sign.",
       "assert digit_sum(-123) == 6\nassert digit_sum(0) == 0\nassert digit_sum(10**50) == 1\n"
       "assert digit_sum(99999999999999999999) == 180"),
    # ---- path traversal
    _i("path_traversal", 1, "safe_join(base, name)",
       "Join POSIX directory `base` and relative path `name` and return the normalised path; "
       "raise ValueError when the result would lie outside `base`.",
       "assert safe_join('/srv/files', 'a/b.txt') == '/srv/files/a/b.txt'\n"
       "assert safe_join('/srv/files', 'a/../b.txt') == '/srv/files/b.txt'\n"
       "for bad in ['../etc/passwd', '/etc/passwd', 'a/../../x', '../files2/x']:\n"
       "    try:\n        safe_join('/srv/files', bad)\n    except ValueError:\n        pass\n"
       "    else:\n        raise AssertionError(bad)"),
    _i("path_traversal", 2, "is_plain_filename(name)",
       "Return whether `name` is a plain file name: non-empty, not '.' or '..', and without "
       "'/', '\\\\' or NUL characters.",
       "assert is_plain_filename('a.txt')\nassert not is_plain_filename('..')\n"
       "assert not is_plain_filename('a/b')\nassert not is_plain_filename('a\\\\b')\n"
       "assert not is_plain_filename('')\nassert not is_plain_filename('a\\x00b')\n"
       "assert is_plain_filename('..a')"),
    _i("path_traversal", 3, "is_within(base, path)",
       "For absolute POSIX paths, return whether `path`, normalised, is `base` or lies inside it.",
       "assert is_within('/a/b', '/a/b/c')\nassert not is_within('/a/b', '/a/bc')\n"
       "assert not is_within('/a/b', '/a/b/../c')\nassert is_within('/a/b', '/a/b')"),
    _i("path_traversal", 4, "member_ok(member)",
       "Return whether archive member name `member` is safe to extract: relative, no '..' path "
       "component (either slash counts as a separator), and no drive letter like 'C:'.",
       "assert member_ok('docs/a.txt')\nassert not member_ok('../a')\n"
       "assert not member_ok('/etc/x')\nassert not member_ok('a/../../b')\n"
       "assert not member_ok('C:/x')\nassert not member_ok('a\\\\..\\\\..\\\\b')\n"
       "assert member_ok('a/..b')"),
    _i("path_traversal", 5, "url_path_ok(path)",
       "Return whether URL path `path` has no '..' segment once percent-escapes are decoded.",
       "assert url_path_ok('/files/a.txt')\nassert not url_path_ok('/files/%2e%2e/secret')\n"
       "assert not url_path_ok('/files/..%2fsecret')\nassert not url_path_ok('/a/../b')\n"
       "assert url_path_ok('/files/a..b')"),
    # ---- quoting for other interpreters
    _i("quoting", 1, "shell_command(args)",
       "Return one string that /bin/sh parses back into exactly the argument list `args`.",
       "import shlex\nfor a in (['echo', 'a b', '$(rm -rf /)'], [\"it's\", ';', '|x'], ['']):\n"
       "    assert shlex.split(shell_command(a)) == a, a"),
    _i("quoting", 2, "sql_string_literal(s)",
       "Return s as a standard SQL string literal in single quotes.",
       "assert sql_string_literal(\"O'Brien\") == \"'O''Brien'\"\n"
       "assert sql_string_literal('') == \"''\"\n"
       "assert sql_string_literal(\"''\") == \"''''''\""),
    _i("quoting", 3, "html_escape(s)",
       "Escape s for HTML text and attribute values: & < > \" ' become &amp; &lt; &gt; &quot; "
       "&#x27;.",
       "assert html_escape('<a href=\"x\">&\\'') == "
       "'&lt;a href=&quot;x&quot;&gt;&amp;&#x27;'\n"
       "assert html_escape('&amp;') == '&amp;amp;'\nassert html_escape('plain') == 'plain'"),
    _i("quoting", 4, "csv_field(s)",
       "Return s as one RFC 4180 CSV field: quoted when it contains a comma, a double quote, "
       "CR or LF, with inner double quotes doubled; unchanged otherwise.",
       "assert csv_field('a') == 'a'\nassert csv_field('a,b') == '\"a,b\"'\n"
       "assert csv_field('say \"hi\"') == '\"say \"\"hi\"\"\"'\n"
       "assert csv_field('x\\ny') == '\"x\\ny\"'"),
    _i("quoting", 5, "like_pattern(s)",
       "Escape user text s for an SQL LIKE pattern that matches it literally, with backslash as "
       "the escape character.",
       "assert like_pattern('50%_off') == '50\\\\%\\\\_off'\n"
       "assert like_pattern('a\\\\b') == 'a\\\\\\\\b'\nassert like_pattern('plain') == 'plain'"),
    # ---- concurrency: shared state under threads (the tests force frequent thread switches)
    _i("concurrency", 1, "make_counter()",
       "Return an object with a method increment() and an attribute value (starting at 0) that "
       "stays exact when many threads call increment() at the same time.",
       "c = make_counter()\nassert c.value == 0\nc.increment()\nassert c.value == 1\n"
       "hammer(c.increment, 8, 5000)  # 8 threads x 5000 calls at once, in the answer\n"
       "assert c.value == 40001, c.value\nd = make_counter()\nd.increment()\n"
       "assert d.value == 1 and c.value == 40001"),
    _i("concurrency", 2, "run_all(funcs)",
       "Call every zero-argument function in funcs concurrently (one thread each) and return "
       "their results as a list in the order of funcs, not in the order they finish.",
       "import time\nfs = [lambda d=d: (time.sleep(d), d)[1] for d in (0.4, 0.0, 0.3)]\n"
       "t = time.monotonic()\nassert run_all(fs) == [0.4, 0.0, 0.3]\n"
       "assert time.monotonic() - t < 0.6  # concurrent (one after another takes 0.7 s)\n"
       "assert run_all([]) == []"),
    # (the slow first call lasts 0.5 s: every thread's call must arrive while it runs, and each
    # crosses the process split; at 0.05 s a naive wrapper passed once on a loaded machine)
    _i("concurrency", 3, "call_once(f)",
       "Return a wrapper that takes no arguments and calls f() only the first time it is called, "
       "returning f's result every time — even when many threads call the wrapper at once while "
       "the first call is still running.",
       "import threading, time\nn = [0]\n"
       "def slow():\n    time.sleep(0.5)\n    n[0] += 1\n    return 'v'\n"
       "w = call_once(slow)\nout = []\n"
       "ts = [threading.Thread(target=lambda: out.append(w())) for _ in range(4)]\n"
       "[t.start() for t in ts]\n[t.join() for t in ts]\n"
       "assert n[0] == 1 and out == ['v'] * 4, (n, out)\nassert w() == 'v' and n[0] == 1"),
    _i("concurrency", 4, "bounded_map(f, xs, limit)",
       "Return [f(x) for x in xs], computed in threads with at most limit calls of f running at "
       "the same time.",
       "import threading, time\nlock = threading.Lock()\nnow, peak = [0], [0]\n"
       "def f(x):\n    with lock:\n        now[0] += 1\n        peak[0] = max(peak[0], now[0])\n"
       "    time.sleep(0.02)\n    with lock:\n        now[0] -= 1\n    return x * x\n"
       "assert bounded_map(f, list(range(12)), 3) == [x * x for x in range(12)]\n"
       "assert 1 <= peak[0] <= 3, peak\nassert bounded_map(f, [], 2) == []"),
    _i("concurrency", 5, "make_cache(compute)",
       "Return an object with a method get(key) that returns compute(key), calling compute at "
       "most once per key even when several threads ask for the same new key at the same time.",
       "import threading, time\ncalls = []\n"
       "def compute(k):\n    calls.append(k)\n    time.sleep(0.5)\n    return k * 2\n"
       "c = make_cache(compute)\nout = []\n"
       "ts = [threading.Thread(target=lambda: out.append(c.get(7))) for _ in range(4)]\n"
       "[t.start() for t in ts]\n[t.join() for t in ts]\n"
       "assert out == [14] * 4 and calls == [7], (out, calls)\n"
       "assert c.get(1) == 2 and calls == [7, 1]"),
    # ---- dates and calendars: the rules the simple formula gets wrong
    _i("dates", 1, "is_leap(year)",
       "Return True if year is a leap year in the Gregorian calendar.",
       "assert is_leap(2024) and is_leap(2000) and is_leap(1600)\n"
       "assert not is_leap(1900) and not is_leap(2100) and not is_leap(2023)"),
    _i("dates", 2, "days_in_month(year, month)",
       "Return the number of days in the given month (1-12) of the given Gregorian year.",
       "assert days_in_month(2024, 2) == 29 and days_in_month(1900, 2) == 28\n"
       "assert days_in_month(2000, 2) == 29 and days_in_month(2023, 4) == 30\n"
       "assert days_in_month(2023, 12) == 31"),
    _i("dates", 3, "add_months(d, n)",
       "d is a datetime.date; return the date n months later (n may be negative), keeping the "
       "day of month but clamping it to the last day of the target month.",
       "from datetime import date\nassert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)\n"
       "assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)\n"
       "assert add_months(date(2023, 12, 15), 1) == date(2024, 1, 15)\n"
       "assert add_months(date(2023, 3, 31), -1) == date(2023, 2, 28)\n"
       "assert add_months(date(2023, 5, 10), -17) == date(2021, 12, 10)"),
    _i("dates", 4, "age_on(birth, day)",
       "birth and day are datetime.date; return the person's age in whole years on day (the "
       "birthday itself counts; someone born on 29 February has a birthday on 1 March in "
       "non-leap years).",
       "from datetime import date\nassert age_on(date(2000, 6, 15), date(2024, 6, 14)) == 23\n"
       "assert age_on(date(2000, 6, 15), date(2024, 6, 15)) == 24\n"
       "assert age_on(date(2000, 2, 29), date(2023, 2, 28)) == 22\n"
       "assert age_on(date(2000, 2, 29), date(2023, 3, 1)) == 23\n"
       "assert age_on(date(2000, 2, 29), date(2024, 2, 29)) == 24"),
    _i("dates", 5, "iso_week(d)",
       "d is a datetime.date; return (iso_year, week) of its ISO 8601 week (weeks start on "
       "Monday; week 1 contains the year's first Thursday).",
       "from datetime import date\nassert iso_week(date(2024, 12, 30)) == (2025, 1)\n"
       "assert iso_week(date(2021, 1, 3)) == (2020, 53)\n"
       "assert iso_week(date(2023, 6, 15)) == (2023, 24)"),
)  # fmt: skip

CATEGORIES = tuple(dict.fromkeys(it.category for it in ITEMS))

# Reference solutions: they show the tests are satisfiable (tests/test_eval_suites.py runs them);
# never sent to a model.
REFERENCES: dict[str, str] = {
    "off_by_one/1": "def inclusive_range_sum(a, b):\n    return sum(range(a, b + 1))",
    "off_by_one/2": "def last_n(xs, n):\n    return list(xs[len(xs) - n:]) if n else []",
    "off_by_one/3": "def chunks(xs, size):\n    return [xs[i:i + size] for i in range(0, len(xs), size)]",
    "off_by_one/4": "def count_windows(n, k):\n    return max(0, n - k + 1)",
    "off_by_one/5": "def pages_needed(items, per_page):\n    return -(-items // per_page)",
    "unicode/1": "def utf8_length(s):\n    return len(s.encode('utf-8'))",
    "unicode/2": "def same_ignoring_case(a, b):\n    return a.casefold() == b.casefold()",
    "unicode/3": "def is_palindrome(s):\n    t = [c.casefold() for c in s if c.isalnum()]\n    return t == t[::-1]",
    "unicode/4": "def truncate_utf8(s, max_bytes):\n    return s.encode()[:max_bytes].decode('utf-8', 'ignore')",
    "unicode/5": "import unicodedata\ndef same_text(a, b):\n    return unicodedata.normalize('NFC', a) == unicodedata.normalize('NFC', b)",
    "empty_inputs/1": "def average(xs):\n    return sum(xs) / len(xs) if xs else None",
    "empty_inputs/2": "def max_or_default(xs, default):\n    return max(xs, default=default)",
    "empty_inputs/3": "def first_word(s):\n    w = s.split()\n    return w[0] if w else ''",
    "empty_inputs/4": "def merge_counts(a, b):\n    out = dict(a)\n    for k, v in b.items():\n        out[k] = out.get(k, 0) + v\n    return out",
    "empty_inputs/5": "def join_nonempty(parts, sep):\n    return sep.join(p for p in parts if p)",
    "mutable_defaults/1": "def append_item(item, items=None):\n    return list(items or []) + [item]",
    "mutable_defaults/2": "def with_tag(tags, tag):\n    return set(tags) | {tag}",
    "mutable_defaults/3": "def make_counter():\n    n = 0\n    def c():\n        nonlocal n\n        n += 1\n        return n\n    return c",
    "mutable_defaults/4": "def register(name, registry=None):\n    if registry is None:\n        registry = {}\n    registry[name] = len(name)\n    return registry",
    "mutable_defaults/5": "def with_defaults(options=None):\n    return {'debug': False, 'level': 1, **(options or {})}",
    "float_comparison/1": "def approx_equal(a, b):\n    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))",
    "float_comparison/2": "import math\ndef sums_to_one(xs):\n    return abs(math.fsum(xs) - 1.0) <= 1e-9",
    "float_comparison/3": "import math\ndef round_half_up(x):\n    return int(math.copysign(math.floor(abs(x) + 0.5), x))",
    "float_comparison/4": "from decimal import Decimal, ROUND_HALF_UP\ndef money_total(prices):\n    t = sum((Decimal(p) for p in prices), Decimal(0))\n    return str(t.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP))",
    "float_comparison/5": "import math\ndef is_whole(x):\n    return math.isfinite(x) and x == int(x)",
    "integer_semantics/1": "def div_trunc(a, b):\n    q = abs(a) // abs(b)\n    return q if (a >= 0) == (b >= 0) else -q",
    "integer_semantics/2": "def c_mod(a, b):\n    r = abs(a) % abs(b)\n    return r if a >= 0 else -r",
    "integer_semantics/3": "def to_int32(x):\n    x &= 0xFFFFFFFF\n    return x - (1 << 32) if x >= 1 << 31 else x",
    "integer_semantics/4": "def midpoint(a, b):\n    return (a + b) // 2",
    "integer_semantics/5": "def digit_sum(n):\n    return sum(int(c) for c in str(abs(n)))",
    "path_traversal/1": "import posixpath\ndef safe_join(base, name):\n    p = posixpath.normpath(posixpath.join(base, name))\n    if p != base and not p.startswith(base.rstrip('/') + '/'):\n        raise ValueError(name)\n    return p",
    "path_traversal/2": "def is_plain_filename(name):\n    return name not in ('', '.', '..') and not any(c in name for c in '/\\\\\\x00')",
    "path_traversal/3": "import posixpath\ndef is_within(base, path):\n    p = posixpath.normpath(path)\n    return p == base or p.startswith(base.rstrip('/') + '/')",
    "path_traversal/4": "import re\ndef member_ok(member):\n    if member.startswith(('/', '\\\\')) or re.match(r'^[A-Za-z]:', member):\n        return False\n    return '..' not in re.split(r'[/\\\\]', member)",
    "path_traversal/5": "from urllib.parse import unquote\ndef url_path_ok(path):\n    return '..' not in unquote(path).split('/')",
    "quoting/1": "import shlex\ndef shell_command(args):\n    return shlex.join(args)",
    "quoting/2": "def sql_string_literal(s):\n    return \"'\" + s.replace(\"'\", \"''\") + \"'\"",
    "quoting/3": "import html\ndef html_escape(s):\n    return html.escape(s, quote=True)",
    "quoting/4": "def csv_field(s):\n    if any(c in s for c in ',\"\\r\\n'):\n        return '\"' + s.replace('\"', '\"\"') + '\"'\n    return s",
    "quoting/5": "def like_pattern(s):\n    return s.replace('\\\\', '\\\\\\\\').replace('%', '\\\\%').replace('_', '\\\\_')",
    "concurrency/1": "import threading\nclass _Counter:\n    def __init__(self):\n        self.value = 0\n        self._lock = threading.Lock()\n    def increment(self):\n        with self._lock:\n            self.value += 1\ndef make_counter():\n    return _Counter()",
    "concurrency/2": "import threading\ndef run_all(funcs):\n    out = [None] * len(funcs)\n    def run(i, f):\n        out[i] = f()\n    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(funcs)]\n    for t in ts:\n        t.start()\n    for t in ts:\n        t.join()\n    return out",
    "concurrency/3": "import threading\ndef call_once(f):\n    lock, box = threading.Lock(), []\n    def w():\n        with lock:\n            if not box:\n                box.append(f())\n        return box[0]\n    return w",
    "concurrency/4": "from concurrent.futures import ThreadPoolExecutor\ndef bounded_map(f, xs, limit):\n    with ThreadPoolExecutor(max_workers=max(1, limit)) as ex:\n        return list(ex.map(f, xs))",
    "concurrency/5": "import threading\nclass _Cache:\n    def __init__(self, compute):\n        self.compute, self.values, self.lock = compute, {}, threading.Lock()\n        self.key_locks = {}\n    def get(self, key):\n        with self.lock:\n            if key in self.values:\n                return self.values[key]\n            kl = self.key_locks.setdefault(key, threading.Lock())\n        with kl:\n            with self.lock:\n                if key in self.values:\n                    return self.values[key]\n            v = self.compute(key)\n            with self.lock:\n                self.values[key] = v\n            return v\ndef make_cache(compute):\n    return _Cache(compute)",
    "dates/1": "def is_leap(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
    "dates/2": "import calendar\ndef days_in_month(year, month):\n    return calendar.monthrange(year, month)[1]",
    "dates/3": "import calendar\nfrom datetime import date\ndef add_months(d, n):\n    m = d.year * 12 + d.month - 1 + n\n    y, mo = divmod(m, 12)\n    return date(y, mo + 1, min(d.day, calendar.monthrange(y, mo + 1)[1]))",
    "dates/4": "import calendar\ndef age_on(birth, day):\n    bm, bd = birth.month, birth.day\n    if (bm, bd) == (2, 29) and not calendar.isleap(day.year):\n        bm, bd = 3, 1\n    return day.year - birth.year - ((day.month, day.day) < (bm, bd))",
    "dates/5": "def iso_week(d):\n    y, w, _ = d.isocalendar()\n    return (y, w)",
}  # fmt: skip


def check_program(item: AdvItem, answer_code: str) -> str:
    """The item as one program (answer, then tests): what a reader runs by hand. Not how it is
    judged (`score`)."""
    return f"{answer_code}\n\n{_READER_PRELUDE}\n{item.tests}\n"


# `hammer` as the tester defines it (`eval.programs.STRESS`, the same source), for
# `check_program`'s one-process form.
_READER_PRELUDE = (
    "import os as _os, threading as _th\n" + STRESS.strip("\n") + "\n\n\nhammer = _stress\n"
)


def function_check(item: AdvItem, answer_code: str) -> Any:
    """What judges `answer_code` on `item`: the tests run in a trusted tester whose function of
    the item's name is a proxy to the answer's own process (`programs.run_object_checks`)."""
    from hillclimb.eval.programs import FunctionCheck

    return FunctionCheck(answer_code, item.signature.split("(")[0], (item.tests,))


def score(items: list[AdvItem], completions: list[str], timeout_s: float) -> list[Any]:
    """`ProgramResult`s of the answers' last code blocks against the items' tests.

    Why not `programs.run_programs(answer + tests)`: in one interpreter with the tests, an answer
    returning an object equal to everything passed 31 of 50 items, and one that printed the run's
    end marker (read from its own code object) and exited 0 passed all 50 (session 23)."""
    from hillclimb.eval.humaneval import hidden_paths
    from hillclimb.eval.programs import run_object_checks
    from hillclimb.problems.verify import extract_code

    checks = [function_check(it, extract_code(c)) for it, c in zip(items, completions, strict=True)]
    return run_object_checks(checks, timeout_s=timeout_s, hide=hidden_paths())


def run_adversarial(backend: Backend, cfg: SuiteConfig) -> dict[str, Any]:
    items = list(ITEMS[: cfg.limit] if cfg.limit else ITEMS)
    max_tokens = cfg.max_tokens or DEFAULT_MAX_TOKENS
    comps = backend.chat(
        [Request(it.id, it.prompt, 0, max_tokens, 0.0, 1.0, (), cfg.seed) for it in items]
    )
    results = score(items, [c.text for c in comps], cfg.timeout_s)
    rows = [
        program_item(it.id, r, c, category=it.category)
        for it, c, r in zip(items, comps, results, strict=True)
    ]
    by_cat = {}
    for k, cat in enumerate(CATEGORIES):
        vals = [float(r["passed"]) for r in rows if r["category"] == cat]
        if vals:
            by_cat[cat] = metric(vals, cfg, salt=10 + k)
    baseline = trivial_baseline(
        [first_param(f"def {it.signature}: pass", it.signature.split("(")[0]) for it in items],
        lambda i, e: f"def {items[i].signature}:\n    return {e}\n",
        lambda idx, progs: [r.passed for r in score([items[i] for i in idx], progs, cfg.timeout_s)],
        "accuracy",
        cfg,
    )
    return {
        "n_items": len(items),
        "metrics": {"accuracy": metric([float(r["passed"]) for r in rows], cfg)},
        "baseline": baseline,
        "by_category": by_cat,
        **generation_stats(comps),
        "items": rows,
    }
