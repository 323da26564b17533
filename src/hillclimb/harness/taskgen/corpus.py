"""The generator's library: small, realistic, tested Python projects (one package each).

Why hand-written projects rather than scraped code: every task the generator derives must be
*verifiable* — the original code passes its tests, a mutation makes specific tests fail — and
licensing must be clean (BRIEF.md: commercially licensed data). These projects are ours, small
enough to validate in a sandbox in well under a second, and varied in shape: classes and
functions, several multi-module packages whose modules import each other, branches that raise,
arithmetic and comparisons for bugs to hide in. Tests import modules (`from pkg import mod`) and
call `mod.func`, so removing or renaming one function fails only the tests that use it.

Each project maps relative paths to file contents; `tests/test_<name>.py` holds its tests.
"""

from __future__ import annotations

PROJECTS: dict[str, dict[str, str]] = {}

PROJECTS["inventory"] = {
    "inventory/__init__.py": '"""A small stock-keeping package."""\n',
    "inventory/models.py": '''"""Items kept in stock."""

from dataclasses import dataclass


@dataclass
class Item:
    sku: str
    name: str
    price: float
    quantity: int = 0

    def value(self):
        """Total value of this item's stock."""
        return self.price * self.quantity

    def is_low(self, threshold):
        """True when the quantity is below `threshold`."""
        return self.quantity < threshold
''',
    "inventory/store.py": '''"""An inventory of items keyed by SKU."""

from inventory.models import Item


class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, sku, name, price, quantity=0):
        """Add a new item; raises ValueError if the SKU exists or the price is negative."""
        if sku in self.items:
            raise ValueError(f"duplicate sku {sku}")
        if price < 0:
            raise ValueError("price must be non-negative")
        self.items[sku] = Item(sku, name, price, quantity)
        return self.items[sku]

    def restock(self, sku, amount):
        """Increase the quantity of an item; amount must be positive."""
        if amount <= 0:
            raise ValueError("amount must be positive")
        item = self.items[sku]
        item.quantity = item.quantity + amount
        return item.quantity

    def remove(self, sku, amount):
        """Take `amount` units out of stock; raises ValueError if there are not enough."""
        item = self.items[sku]
        if amount > item.quantity:
            raise ValueError("not enough stock")
        item.quantity = item.quantity - amount
        return item.quantity

    def total_value(self):
        """Value of everything in stock."""
        total = 0.0
        for item in self.items.values():
            total = total + item.value()
        return total

    def low_stock(self, threshold=5):
        """SKUs whose quantity is below `threshold`, sorted."""
        return sorted(sku for sku, item in self.items.items() if item.is_low(threshold))
''',
    "tests/test_inventory.py": """import pytest

from inventory import models, store


def make():
    inv = store.Inventory()
    inv.add("A1", "apple", 0.5, 10)
    inv.add("B2", "bread", 2.0, 3)
    return inv


def test_item_value():
    assert models.Item("x", "x", 2.5, 4).value() == 10.0


def test_item_is_low():
    assert models.Item("x", "x", 1.0, 2).is_low(3)
    assert not models.Item("x", "x", 1.0, 3).is_low(3)


def test_add_duplicate_raises():
    inv = make()
    with pytest.raises(ValueError):
        inv.add("A1", "again", 1.0)


def test_add_negative_price_raises():
    with pytest.raises(ValueError):
        store.Inventory().add("Z", "z", -1.0)


def test_restock():
    inv = make()
    assert inv.restock("B2", 4) == 7


def test_restock_rejects_zero():
    with pytest.raises(ValueError):
        make().restock("B2", 0)


def test_remove():
    inv = make()
    assert inv.remove("A1", 10) == 0


def test_remove_too_many():
    with pytest.raises(ValueError):
        make().remove("B2", 4)


def test_total_value():
    assert make().total_value() == pytest.approx(11.0)


def test_low_stock():
    inv = make()
    assert inv.low_stock() == ["B2"]
    assert inv.low_stock(threshold=11) == ["A1", "B2"]
""",
}

PROJECTS["textstats"] = {
    "textstats/__init__.py": '"""Text statistics."""\n',
    "textstats/core.py": '''"""Counting words, characters and sentences."""

import re

WORD_RE = re.compile(r"[A-Za-z']+")


def words(text):
    """Lower-cased words of `text`."""
    return [w.lower() for w in WORD_RE.findall(text)]


def word_count(text):
    """Number of words."""
    return len(words(text))


def char_frequency(text, ignore_spaces=True):
    """Map each character to how often it occurs."""
    counts = {}
    for ch in text:
        if ignore_spaces and ch.isspace():
            continue
        counts[ch] = counts.get(ch, 0) + 1
    return counts


def longest_word(text):
    """The longest word (the first one on ties); None for text without words."""
    best = None
    for w in words(text):
        if best is None or len(w) > len(best):
            best = w
    return best


def average_word_length(text):
    """Mean word length; 0.0 when there are no words."""
    ws = words(text)
    if not ws:
        return 0.0
    return sum(len(w) for w in ws) / len(ws)


def sentence_count(text):
    """Sentences end with '.', '!' or '?'; trailing text without one counts as a sentence."""
    parts = [p for p in re.split(r"[.!?]+", text) if p.strip()]
    return len(parts)


def top_words(text, n=3):
    """The `n` most frequent words, most frequent first, ties alphabetical."""
    counts = {}
    for w in words(text):
        counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:n]]
''',
    "tests/test_textstats.py": """from textstats import core


def test_word_count():
    assert core.word_count("Hello, world! It's fine.") == 4


def test_word_count_empty():
    assert core.word_count("") == 0


def test_char_frequency():
    assert core.char_frequency("a b a") == {"a": 2, "b": 1}


def test_char_frequency_spaces():
    assert core.char_frequency("a a", ignore_spaces=False) == {"a": 2, " ": 1}


def test_longest_word():
    assert core.longest_word("a bb ccc dd") == "ccc"
    assert core.longest_word("ab cd") == "ab"
    assert core.longest_word("...") is None


def test_average_word_length():
    assert core.average_word_length("ab abcd") == 3.0
    assert core.average_word_length("") == 0.0


def test_sentence_count():
    assert core.sentence_count("One. Two! Three? four") == 4
    assert core.sentence_count("") == 0


def test_top_words():
    assert core.top_words("b a b c a b", n=2) == ["b", "a"]
    assert core.top_words("x y", n=5) == ["x", "y"]
""",
}

PROJECTS["daterange"] = {
    "daterange/__init__.py": '"""Date ranges."""\n',
    "daterange/ranges.py": '''"""Closed date ranges [start, end]."""

from datetime import date, timedelta


class DateRange:
    def __init__(self, start, end):
        if end < start:
            raise ValueError("end before start")
        self.start = start
        self.end = end

    def days(self):
        """Number of days in the range, both ends included."""
        return (self.end - self.start).days + 1

    def contains(self, day):
        """True when `day` lies in the range."""
        return self.start <= day <= self.end

    def overlaps(self, other):
        """True when the two ranges share at least one day."""
        return self.start <= other.end and other.start <= self.end

    def intersection(self, other):
        """The shared range, or None."""
        if not self.overlaps(other):
            return None
        return DateRange(max(self.start, other.start), min(self.end, other.end))

    def each_day(self):
        """Every day in the range, in order."""
        return [self.start + timedelta(days=i) for i in range(self.days())]


def weekdays_between(start, end):
    """Count Monday-Friday days in [start, end]."""
    count = 0
    for day in DateRange(start, end).each_day():
        if day.weekday() < 5:
            count += 1
    return count


def parse_range(text):
    """Parse 'YYYY-MM-DD..YYYY-MM-DD'."""
    if ".." not in text:
        raise ValueError("expected START..END")
    a, b = text.split("..", 1)
    return DateRange(date.fromisoformat(a.strip()), date.fromisoformat(b.strip()))
''',
    "tests/test_daterange.py": """from datetime import date

import pytest

from daterange import ranges


def r(a, b):
    return ranges.DateRange(date.fromisoformat(a), date.fromisoformat(b))


def test_days():
    assert r("2024-01-01", "2024-01-31").days() == 31
    assert r("2024-02-01", "2024-02-01").days() == 1


def test_invalid():
    with pytest.raises(ValueError):
        r("2024-02-02", "2024-02-01")


def test_contains():
    x = r("2024-01-10", "2024-01-20")
    assert x.contains(date(2024, 1, 10))
    assert x.contains(date(2024, 1, 20))
    assert not x.contains(date(2024, 1, 21))


def test_overlaps():
    assert r("2024-01-01", "2024-01-10").overlaps(r("2024-01-10", "2024-01-12"))
    assert not r("2024-01-01", "2024-01-09").overlaps(r("2024-01-10", "2024-01-12"))


def test_intersection():
    got = r("2024-01-01", "2024-01-10").intersection(r("2024-01-05", "2024-01-20"))
    assert (got.start, got.end) == (date(2024, 1, 5), date(2024, 1, 10))
    assert r("2024-01-01", "2024-01-02").intersection(r("2024-01-05", "2024-01-06")) is None


def test_each_day():
    days = r("2024-02-28", "2024-03-01").each_day()
    assert days == [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]


def test_weekdays_between():
    assert ranges.weekdays_between(date(2024, 1, 1), date(2024, 1, 7)) == 5


def test_parse_range():
    got = ranges.parse_range("2024-03-01 .. 2024-03-05")
    assert got.days() == 5
    with pytest.raises(ValueError):
        ranges.parse_range("2024-03-01")
""",
}

PROJECTS["matrix"] = {
    "matrix/__init__.py": '"""Small dense matrices as lists of rows."""\n',
    "matrix/ops.py": '''"""Matrix operations on lists of lists."""


def shape(m):
    """(rows, columns)."""
    return (len(m), len(m[0]) if m else 0)


def identity(n):
    """The n x n identity matrix."""
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def transpose(m):
    """Rows become columns."""
    rows, cols = shape(m)
    return [[m[i][j] for i in range(rows)] for j in range(cols)]


def add(a, b):
    """Element-wise sum; shapes must match."""
    if shape(a) != shape(b):
        raise ValueError("shape mismatch")
    return [[x + y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


def multiply(a, b):
    """Matrix product a @ b."""
    ra, ca = shape(a)
    rb, cb = shape(b)
    if ca != rb:
        raise ValueError("inner dimensions differ")
    out = [[0] * cb for _ in range(ra)]
    for i in range(ra):
        for j in range(cb):
            total = 0
            for k in range(ca):
                total += a[i][k] * b[k][j]
            out[i][j] = total
    return out


def determinant(m):
    """Determinant by cofactor expansion along the first row."""
    n, cols = shape(m)
    if n != cols:
        raise ValueError("matrix must be square")
    if n == 1:
        return m[0][0]
    if n == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    total = 0
    for j in range(n):
        minor = [row[:j] + row[j + 1 :] for row in m[1:]]
        sign = -1 if j % 2 else 1
        total += sign * m[0][j] * determinant(minor)
    return total


def trace(m):
    """Sum of the diagonal."""
    return sum(m[i][i] for i in range(min(shape(m))))
''',
    "tests/test_matrix.py": """import pytest

from matrix import ops


def test_identity():
    assert ops.identity(2) == [[1, 0], [0, 1]]


def test_transpose():
    assert ops.transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]


def test_add():
    assert ops.add([[1, 2]], [[3, 4]]) == [[4, 6]]
    with pytest.raises(ValueError):
        ops.add([[1]], [[1, 2]])


def test_multiply():
    assert ops.multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]
    assert ops.multiply([[1, 2, 3]], [[1], [1], [1]]) == [[6]]


def test_multiply_mismatch():
    with pytest.raises(ValueError):
        ops.multiply([[1, 2]], [[1, 2]])


def test_determinant():
    assert ops.determinant([[7]]) == 7
    assert ops.determinant([[1, 2], [3, 4]]) == -2
    assert ops.determinant([[2, 0, 1], [1, 3, 2], [1, 1, 2]]) == 6


def test_determinant_not_square():
    with pytest.raises(ValueError):
        ops.determinant([[1, 2]])


def test_trace():
    assert ops.trace([[1, 2], [3, 4]]) == 5
""",
}

PROJECTS["lrucache"] = {
    "lru/__init__.py": '"""A least-recently-used cache."""\n',
    "lru/cache.py": '''"""An LRU cache with hit/miss statistics."""

from collections import OrderedDict


class LRUCache:
    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.data = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key, default=None):
        """Value for `key` (marking it most recently used), or `default`."""
        if key in self.data:
            self.data.move_to_end(key)
            self.hits += 1
            return self.data[key]
        self.misses += 1
        return default

    def put(self, key, value):
        """Insert or update; evicts the least recently used entry when full."""
        if key in self.data:
            self.data.move_to_end(key)
        self.data[key] = value
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)

    def __len__(self):
        return len(self.data)

    def hit_rate(self):
        """Fraction of lookups that hit; 0.0 before any lookup."""
        total = self.hits + self.misses
        if total == 0:
            return 0.0
        return self.hits / total

    def keys(self):
        """Keys from least to most recently used."""
        return list(self.data.keys())
''',
    "tests/test_lrucache.py": """import pytest

from lru import cache


def test_capacity_validation():
    with pytest.raises(ValueError):
        cache.LRUCache(0)


def test_get_put():
    c = cache.LRUCache(2)
    c.put("a", 1)
    assert c.get("a") == 1
    assert c.get("b", "none") == "none"


def test_eviction():
    c = cache.LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)
    assert c.keys() == ["a", "c"]
    assert len(c) == 2


def test_update_moves_to_end():
    c = cache.LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("a", 10)
    c.put("c", 3)
    assert c.keys() == ["a", "c"]
    assert c.get("a") == 10


def test_hit_rate():
    c = cache.LRUCache(1)
    assert c.hit_rate() == 0.0
    c.put("k", 1)
    c.get("k")
    c.get("x")
    c.get("k")
    assert c.hit_rate() == pytest.approx(2 / 3)
""",
}

PROJECTS["calc"] = {
    "calc/__init__.py": '"""An arithmetic expression evaluator."""\n',
    "calc/lexer.py": '''"""Tokenize arithmetic expressions."""

OPERATORS = "+-*/()"


def tokenize(text):
    """Split into numbers (int or float) and operator characters."""
    tokens = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in OPERATORS:
            tokens.append(ch)
            i += 1
        elif ch.isdigit() or ch == ".":
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] == "."):
                j += 1
            literal = text[i:j]
            tokens.append(float(literal) if "." in literal else int(literal))
            i = j
        else:
            raise ValueError(f"unexpected character {ch!r}")
    return tokens
''',
    "calc/parser.py": '''"""Recursive-descent evaluation with the usual precedence."""

from calc.lexer import tokenize


class Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def expression(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self):
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor()
            if op == "*":
                value = value * rhs
            else:
                if rhs == 0:
                    raise ZeroDivisionError("division by zero")
                value = value / rhs
        return value

    def factor(self):
        tok = self.take()
        if tok == "-":
            return -self.factor()
        if tok == "(":
            value = self.expression()
            if self.take() != ")":
                raise ValueError("missing )")
            return value
        if isinstance(tok, int | float):
            return tok
        raise ValueError(f"unexpected token {tok!r}")


def evaluate(text):
    """Value of an arithmetic expression."""
    parser = Parser(tokenize(text))
    value = parser.expression()
    if parser.peek() is not None:
        raise ValueError("trailing input")
    return value
''',
    "tests/test_calc.py": """import pytest

from calc import lexer, parser


def test_tokenize():
    assert lexer.tokenize("12 + 3.5*(2)") == [12, "+", 3.5, "*", "(", 2, ")"]


def test_tokenize_bad_char():
    with pytest.raises(ValueError):
        lexer.tokenize("2 $ 3")


def test_precedence():
    assert parser.evaluate("2 + 3 * 4") == 14
    assert parser.evaluate("10 - 4 - 3") == 3


def test_parentheses():
    assert parser.evaluate("(2 + 3) * 4") == 20


def test_division():
    assert parser.evaluate("7 / 2") == 3.5
    with pytest.raises(ZeroDivisionError):
        parser.evaluate("1 / 0")


def test_unary_minus():
    assert parser.evaluate("-3 + 5") == 2


def test_errors():
    with pytest.raises(ValueError):
        parser.evaluate("(1 + 2")
    with pytest.raises(ValueError):
        parser.evaluate("1 2")
""",
}

PROJECTS["ledger"] = {
    "ledger/__init__.py": '"""Bank accounts and transfers."""\n',
    "ledger/account.py": '''"""A bank account with an overdraft limit, amounts in cents."""


class InsufficientFunds(Exception):
    pass


class Account:
    def __init__(self, owner, balance=0, overdraft=0):
        self.owner = owner
        self.balance = balance
        self.overdraft = overdraft
        self.history = []

    def deposit(self, amount):
        """Add money; amount must be positive."""
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount
        self.history.append(("deposit", amount))
        return self.balance

    def withdraw(self, amount):
        """Take money out, allowing the balance down to -overdraft."""
        if amount <= 0:
            raise ValueError("withdrawal must be positive")
        if self.balance - amount < -self.overdraft:
            raise InsufficientFunds(self.owner)
        self.balance -= amount
        self.history.append(("withdraw", amount))
        return self.balance

    def available(self):
        """How much can still be withdrawn."""
        return self.balance + self.overdraft
''',
    "ledger/bank.py": '''"""A bank: accounts by owner, transfers, statements."""

from ledger.account import Account


class Bank:
    def __init__(self):
        self.accounts = {}

    def open(self, owner, balance=0, overdraft=0):
        """Open an account; owners are unique."""
        if owner in self.accounts:
            raise ValueError(f"{owner} already has an account")
        self.accounts[owner] = Account(owner, balance, overdraft)
        return self.accounts[owner]

    def transfer(self, source, target, amount):
        """Move money between two accounts."""
        if source == target:
            raise ValueError("cannot transfer to the same account")
        src = self.accounts[source]
        dst = self.accounts[target]
        src.withdraw(amount)
        dst.deposit(amount)
        return src.balance, dst.balance

    def total_deposits(self):
        """Sum of all balances."""
        return sum(acc.balance for acc in self.accounts.values())

    def richest(self):
        """Owner with the largest balance (alphabetically first on ties)."""
        if not self.accounts:
            return None
        return min(self.accounts, key=lambda o: (-self.accounts[o].balance, o))
''',
    "tests/test_ledger.py": """import pytest

from ledger import account, bank


def test_deposit():
    a = account.Account("ann")
    assert a.deposit(500) == 500
    with pytest.raises(ValueError):
        a.deposit(0)


def test_withdraw_with_overdraft():
    a = account.Account("ann", balance=100, overdraft=50)
    assert a.withdraw(150) == -50
    with pytest.raises(account.InsufficientFunds):
        a.withdraw(1)


def test_withdraw_positive():
    with pytest.raises(ValueError):
        account.Account("ann", 10).withdraw(-5)


def test_available():
    assert account.Account("x", balance=30, overdraft=20).available() == 50


def test_history():
    a = account.Account("x")
    a.deposit(10)
    a.withdraw(4)
    assert a.history == [("deposit", 10), ("withdraw", 4)]


def test_transfer():
    b = bank.Bank()
    b.open("ann", 100)
    b.open("bob", 5)
    assert b.transfer("ann", "bob", 30) == (70, 35)
    with pytest.raises(ValueError):
        b.transfer("ann", "ann", 1)


def test_open_duplicate():
    b = bank.Bank()
    b.open("ann")
    with pytest.raises(ValueError):
        b.open("ann")


def test_totals_and_richest():
    b = bank.Bank()
    assert b.richest() is None
    b.open("bob", 40)
    b.open("ann", 40)
    b.open("cat", 10)
    assert b.total_deposits() == 90
    assert b.richest() == "ann"
""",
}

PROJECTS["intervals"] = {
    "intervals/__init__.py": '"""Integer intervals."""\n',
    "intervals/merge.py": '''"""Merging half-open intervals [start, end)."""


def normalize(intervals):
    """Drop empty intervals and sort by start."""
    return sorted((s, e) for s, e in intervals if e > s)


def merge(intervals):
    """Merge overlapping or touching intervals."""
    out = []
    for start, end in normalize(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covered_length(intervals):
    """Total length covered by the union."""
    return sum(end - start for start, end in merge(intervals))


def gaps(intervals, lo, hi):
    """Uncovered sub-intervals of [lo, hi)."""
    out = []
    cursor = lo
    for start, end in merge(intervals):
        if end <= lo or start >= hi:
            continue
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def point_in_any(intervals, x):
    """True when some interval contains x."""
    return any(start <= x < end for start, end in intervals)
''',
    "tests/test_intervals.py": """from intervals import merge


def test_normalize():
    assert merge.normalize([(5, 6), (3, 3), (1, 2)]) == [(1, 2), (5, 6)]


def test_merge():
    assert merge.merge([(1, 3), (2, 5), (7, 8)]) == [(1, 5), (7, 8)]
    assert merge.merge([(1, 2), (2, 4)]) == [(1, 4)]
    assert merge.merge([(1, 10), (2, 3)]) == [(1, 10)]


def test_covered_length():
    assert merge.covered_length([(0, 2), (1, 4), (10, 11)]) == 5


def test_gaps():
    assert merge.gaps([(2, 4), (6, 7)], 0, 10) == [(0, 2), (4, 6), (7, 10)]
    assert merge.gaps([], 0, 3) == [(0, 3)]
    assert merge.gaps([(0, 5)], 0, 5) == []


def test_point_in_any():
    assert merge.point_in_any([(1, 3)], 1)
    assert not merge.point_in_any([(1, 3)], 3)
""",
}

PROJECTS["roman"] = {
    "roman/__init__.py": '"""Roman numerals."""\n',
    "roman/numerals.py": '''"""Convert between integers and Roman numerals (1..3999)."""

VALUES = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
    (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]
DIGITS = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def to_roman(n):
    """Roman numeral for 1 <= n <= 3999."""
    if not 1 <= n <= 3999:
        raise ValueError("out of range")
    out = []
    for value, symbol in VALUES:
        while n >= value:
            out.append(symbol)
            n -= value
    return "".join(out)


def from_roman(text):
    """Integer value of a Roman numeral (validated by round-tripping)."""
    text = text.strip().upper()
    if not text or any(ch not in DIGITS for ch in text):
        raise ValueError(f"not a roman numeral: {text!r}")
    total = 0
    for i, ch in enumerate(text):
        value = DIGITS[ch]
        if i + 1 < len(text) and DIGITS[text[i + 1]] > value:
            total -= value
        else:
            total += value
    if to_roman(total) != text:
        raise ValueError(f"non-canonical numeral: {text!r}")
    return total
''',
    "tests/test_roman.py": """import pytest

from roman import numerals


def test_to_roman():
    assert numerals.to_roman(1994) == "MCMXCIV"
    assert numerals.to_roman(4) == "IV"
    assert numerals.to_roman(3999) == "MMMCMXCIX"


def test_to_roman_range():
    with pytest.raises(ValueError):
        numerals.to_roman(0)
    with pytest.raises(ValueError):
        numerals.to_roman(4000)


def test_from_roman():
    assert numerals.from_roman("mcmxciv") == 1994
    assert numerals.from_roman("XL") == 40


def test_from_roman_invalid():
    with pytest.raises(ValueError):
        numerals.from_roman("IIII")
    with pytest.raises(ValueError):
        numerals.from_roman("ABC")
""",
}

PROJECTS["stats"] = {
    "stats/__init__.py": '"""Descriptive statistics."""\n',
    "stats/describe.py": '''"""Mean, median, mode, variance and percentiles of a list of numbers."""


def mean(xs):
    """Arithmetic mean; ValueError for no data."""
    if not xs:
        raise ValueError("mean of empty data")
    return sum(xs) / len(xs)


def median(xs):
    """Middle value (mean of the two middle values for even sizes)."""
    if not xs:
        raise ValueError("median of empty data")
    s = sorted(xs)
    mid = len(s) // 2
    if len(s) % 2 == 1:
        return s[mid]
    return (s[mid - 1] + s[mid]) / 2


def mode(xs):
    """Most common value (the smallest on ties)."""
    if not xs:
        raise ValueError("mode of empty data")
    counts = {}
    for x in xs:
        counts[x] = counts.get(x, 0) + 1
    best = max(counts.values())
    return min(x for x, c in counts.items() if c == best)


def variance(xs, sample=True):
    """Sample (n - 1) or population (n) variance."""
    n = len(xs)
    if n < 2 and sample:
        raise ValueError("sample variance needs at least two values")
    m = mean(xs)
    ss = sum((x - m) ** 2 for x in xs)
    return ss / (n - 1) if sample else ss / n


def percentile(xs, p):
    """Linear-interpolated percentile, 0 <= p <= 100."""
    if not 0 <= p <= 100:
        raise ValueError("p must be within [0, 100]")
    s = sorted(xs)
    pos = (len(s) - 1) * p / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    frac = pos - lo
    return s[lo] + (s[hi] - s[lo]) * frac
''',
    "tests/test_stats.py": """import pytest

from stats import describe


def test_mean():
    assert describe.mean([1, 2, 3, 4]) == 2.5
    with pytest.raises(ValueError):
        describe.mean([])


def test_median():
    assert describe.median([3, 1, 2]) == 2
    assert describe.median([4, 1, 3, 2]) == 2.5


def test_mode():
    assert describe.mode([1, 2, 2, 3, 3]) == 2
    assert describe.mode([5]) == 5


def test_variance():
    assert describe.variance([2, 4, 4, 4, 5, 5, 7, 9], sample=False) == 4.0
    assert describe.variance([1, 3]) == 2.0
    with pytest.raises(ValueError):
        describe.variance([1])


def test_percentile():
    xs = [10, 20, 30, 40]
    assert describe.percentile(xs, 0) == 10
    assert describe.percentile(xs, 100) == 40
    assert describe.percentile(xs, 50) == 25
    with pytest.raises(ValueError):
        describe.percentile(xs, 101)
""",
}

PROJECTS["strutil"] = {
    "strutil/__init__.py": '"""String helpers."""\n',
    "strutil/text.py": '''"""Slugs, case conversion, truncation and wrapping."""

import re


def slugify(text):
    """Lower-case words joined by '-', other characters dropped."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)


def camel_to_snake(name):
    """'parseHTTPResponse' -> 'parse_http_response'."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\\1_\\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\\1_\\2", s)
    return s.lower()


def snake_to_camel(name):
    """'parse_http_response' -> 'parseHttpResponse'."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def truncate(text, width, suffix="..."):
    """Shorten to at most `width` characters, ending with `suffix` when cut."""
    if len(text) <= width:
        return text
    if width <= len(suffix):
        return suffix[:width]
    return text[: width - len(suffix)] + suffix


def wrap(text, width):
    """Greedy word wrap into lines of at most `width` characters (long words kept whole)."""
    lines = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
''',
    "tests/test_strutil.py": """from strutil import text


def test_slugify():
    assert text.slugify("Hello, World! 2024") == "hello-world-2024"


def test_camel_to_snake():
    assert text.camel_to_snake("parseHTTPResponse") == "parse_http_response"
    assert text.camel_to_snake("simple") == "simple"


def test_snake_to_camel():
    assert text.snake_to_camel("parse_http_response") == "parseHttpResponse"


def test_truncate():
    assert text.truncate("hello", 10) == "hello"
    assert text.truncate("hello world", 8) == "hello..."
    assert text.truncate("hello", 2) == ".."


def test_wrap():
    assert text.wrap("the quick brown fox", 10) == ["the quick", "brown fox"]
    assert text.wrap("", 5) == []
    assert text.wrap("abcdefgh ij", 4) == ["abcdefgh", "ij"]
""",
}

PROJECTS["scheduler"] = {
    "scheduler/__init__.py": '"""A job queue with priorities and deadlines."""\n',
    "scheduler/jobs.py": '''"""Jobs and their ordering."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    name: str
    priority: int
    deadline: int
    duration: int = 1

    def sort_key(self):
        """Higher priority first, then earlier deadline, then name."""
        return (-self.priority, self.deadline, self.name)


def validate(job):
    """A job needs a positive duration and a non-negative deadline."""
    if job.duration <= 0:
        raise ValueError("duration must be positive")
    if job.deadline < 0:
        raise ValueError("deadline must be non-negative")
    return job
''',
    "scheduler/queue.py": '''"""Plan jobs in priority order and report missed deadlines."""

from scheduler.jobs import validate


class JobQueue:
    def __init__(self):
        self.jobs = []

    def push(self, job):
        self.jobs.append(validate(job))

    def pop(self):
        """Remove and return the most urgent job."""
        if not self.jobs:
            raise IndexError("pop from an empty queue")
        best = min(self.jobs, key=lambda j: j.sort_key())
        self.jobs.remove(best)
        return best

    def plan(self):
        """(name, start, end) for every job run back to back in urgency order."""
        t = 0
        out = []
        for job in sorted(self.jobs, key=lambda j: j.sort_key()):
            out.append((job.name, t, t + job.duration))
            t += job.duration
        return out

    def late_jobs(self):
        """Names of jobs that would finish after their deadline."""
        by_name = {j.name: j for j in self.jobs}
        return [name for name, _, end in self.plan() if end > by_name[name].deadline]
''',
    "tests/test_scheduler.py": """import pytest

from scheduler import jobs, queue


def test_sort_key():
    a = jobs.Job("a", 1, 5)
    b = jobs.Job("b", 2, 9)
    assert sorted([a, b], key=lambda j: j.sort_key()) == [b, a]


def test_validate():
    with pytest.raises(ValueError):
        jobs.validate(jobs.Job("x", 1, 3, duration=0))
    with pytest.raises(ValueError):
        jobs.validate(jobs.Job("x", 1, -1))


def test_pop_order():
    q = queue.JobQueue()
    q.push(jobs.Job("low", 1, 1))
    q.push(jobs.Job("high", 5, 10))
    q.push(jobs.Job("high2", 5, 3))
    assert [q.pop().name for _ in range(3)] == ["high2", "high", "low"]
    with pytest.raises(IndexError):
        q.pop()


def test_plan():
    q = queue.JobQueue()
    q.push(jobs.Job("a", 1, 10, duration=2))
    q.push(jobs.Job("b", 3, 10, duration=3))
    assert q.plan() == [("b", 0, 3), ("a", 3, 5)]


def test_late_jobs():
    q = queue.JobQueue()
    q.push(jobs.Job("a", 1, 4, duration=2))
    q.push(jobs.Job("b", 3, 3, duration=3))
    assert q.late_jobs() == ["a"]
""",
}

PROJECTS["gridpath"] = {
    "gridpath/__init__.py": '"""Paths on character grids."""\n',
    "gridpath/grid.py": '''"""A grid of '.' (free) and '#' (wall) cells with breadth-first search."""

from collections import deque


def parse(text):
    """Rows of the grid; all rows must have the same width."""
    rows = [line.strip() for line in text.strip().splitlines()]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("ragged grid")
    return rows


def neighbors(rows, r, c):
    """Free 4-neighbours of (r, c)."""
    out = []
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nr, nc = r + dr, c + dc
        if 0 <= nr < len(rows) and 0 <= nc < len(rows[0]) and rows[nr][nc] != "#":
            out.append((nr, nc))
    return out


def shortest_path(rows, start, goal):
    """Number of steps from start to goal, or -1 when unreachable."""
    if rows[start[0]][start[1]] == "#" or rows[goal[0]][goal[1]] == "#":
        return -1
    seen = {start}
    frontier = deque([(start, 0)])
    while frontier:
        cell, dist = frontier.popleft()
        if cell == goal:
            return dist
        for nxt in neighbors(rows, *cell):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append((nxt, dist + 1))
    return -1


def count_free(rows):
    """Number of free cells."""
    return sum(row.count(".") for row in rows)
''',
    "tests/test_gridpath.py": '''import pytest

from gridpath import grid

G = """
....
.##.
....
"""


def test_parse():
    assert grid.parse(G) == ["....", ".##.", "...."]
    with pytest.raises(ValueError):
        grid.parse("..\\n...")


def test_neighbors():
    rows = grid.parse(G)
    assert sorted(grid.neighbors(rows, 0, 0)) == [(0, 1), (1, 0)]
    assert sorted(grid.neighbors(rows, 0, 1)) == [(0, 0), (0, 2)]


def test_shortest_path():
    rows = grid.parse(G)
    assert grid.shortest_path(rows, (0, 0), (2, 3)) == 5
    assert grid.shortest_path(rows, (1, 0), (1, 3)) == 5
    assert grid.shortest_path(rows, (0, 0), (0, 0)) == 0


def test_unreachable():
    rows = grid.parse(".#.\\n.#.")
    assert grid.shortest_path(rows, (0, 0), (0, 2)) == -1
    assert grid.shortest_path(rows, (0, 0), (0, 1)) == -1


def test_count_free():
    assert grid.count_free(grid.parse(G)) == 10
''',
}
