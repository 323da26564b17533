"""Worked arithmetic written by our code: canonical number text and column-by-column steps.

Why column steps: the project's tokenizer splits digits into single tokens, so a small model can
learn multi-digit arithmetic the way a pupil does — one digit fact and one carry at a time — if
the worked solutions spell the columns out. One-digit facts stay a single line ("3 + 5 = 8.")
because tier 1 must be short enough for a few-million-parameter model to learn in minutes.

`fmt` is the one canonical way numbers (integers and fractions) are written in answers, and
`parse_number` is its tolerant inverse used by answer extraction.
"""

from __future__ import annotations

import re
from fractions import Fraction
from math import gcd

PLACES = ("Ones", "Tens", "Hundreds", "Thousands", "Ten-thousands", "Hundred-thousands")

# sign, mantissa (with its exponent `e`), power (`^k`, `^{k}`, `**k`), denominator
_NUM_RE = re.compile(
    r"^([+-]?)((?:\d+(?:\.\d+)?|\.\d+)(?:[eE]([+-]?\d+))?)"
    r"(?:(?:\^\{?|\*\*)([+-]?\d+)\}?)?(?:/(\d+))?$"
)
SUPERSCRIPT_DIGITS = (
    "\u207a\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"  # ⁺⁻⁰¹²…⁹
)
_SUPERSCRIPT_RE = re.compile(f"[{SUPERSCRIPT_DIGITS}]+")
_SUPERSCRIPTS = str.maketrans(SUPERSCRIPT_DIGITS, "+-0123456789")
MAX_EXPONENT = 4300  # Python's default int-from-text digit limit: no exact answer is longer
_CHUNK = 10**1000  # `_int_text` writes longer integers in pieces of this many digits


def fmt(x: int | Fraction) -> str:
    """Canonical text of a number: `12`, `-3`, `7/12`, `-1/6`."""
    if isinstance(x, Fraction):
        if x.denominator == 1:
            return _int_text(x.numerator)
        return f"{_int_text(x.numerator)}/{_int_text(x.denominator)}"
    return _int_text(int(x))


def _int_text(n: int) -> str:
    """`str(n)` for any size: `str` refuses integers over 4300 digits, which `parse_number`
    accepts (`1e4300`, `123e4298`), and an answer written that way crashed the checker."""
    if -_CHUNK < n < _CHUNK:
        return str(n)
    q, r = divmod(abs(n), _CHUNK)
    return ("-" if n < 0 else "") + _int_text(q) + str(r).zfill(1000)


def parse_number(text: str) -> Fraction | None:
    """Parse `1,234`, `+8`, `−3` (unicode minus), `$12`, `0.5`, `.5`, `3 / 4`, `1e5`, `2^10`
    (also `2^{10}`, `2**10`, `2¹⁰`) into a Fraction (exactly: `1e5` is 100000, `2.5e-1` is 1/4;
    an exponent beyond `MAX_EXPONENT`, or a power with more digits than that, is no number, as
    `10**10**9` would take minutes to build). A sign applies after the power: `-2^2` is -4."""
    s = text.strip().replace(",", "").replace("\u2212", "-").replace("$", "").replace(" ", "")
    # "2¹⁰" is 2^10: read as 2 until session 21, so "12²" passed for 12
    s = _SUPERSCRIPT_RE.sub(lambda m: "^" + m.group(0).translate(_SUPERSCRIPTS), s)
    m = _NUM_RE.match(s)
    if not m:
        return None
    sign, mantissa, exp, power, den = m.groups()
    # measured by its digits first: `int()` of an exponent over 4300 digits raises ValueError,
    # and a completion "The answer is 1e999…9" crashed the checker (an eval, an RL step)
    digits = (exp or "").lstrip("+-").lstrip("0")
    if len(digits) > len(str(MAX_EXPONENT)) or int(digits or "0") > MAX_EXPONENT:
        return None
    try:
        value = Fraction(mantissa)
        if power is not None:
            value = _power(value, power)
            if value is None:
                return None
        if sign == "-":
            value = -value
        if den is not None:
            if int(den) == 0:
                return None
            value = value / int(den)
    except (ValueError, ZeroDivisionError):
        return None
    return value


def _power(base: Fraction, exponent: str) -> Fraction | None:
    """`base ** exponent`, or None when the result would have more than about `MAX_EXPONENT`
    digits (before it is built) — read as "The answer is 10^5." was 10 until session 21."""
    if len(exponent.lstrip("+-")) > 20:
        return None
    k = int(exponent)
    if abs(base) not in (0, 1):
        bits = max(base.numerator.bit_length(), base.denominator.bit_length())
        if abs(k) * (bits - 1) * 0.30103 > MAX_EXPONENT:
            return None
    return base**k


def _digits(x: int) -> list[int]:
    return [int(c) for c in reversed(str(x))]


def _place(i: int) -> str:
    return PLACES[i] if i < len(PLACES) else f"Column {i + 1}"


def _column(i: int, last: bool, expr: str, carry: int, value: int) -> str:
    """One column of a written sum or product: `expr` (+ the carry in) = `value`, the digit
    written and the carry out; the last column writes its whole value."""
    expr += f" + {carry}" if carry else ""
    if last or value < 10:
        return f"{_place(i)}: {expr} = {value}, write {value}."
    return f"{_place(i)}: {expr} = {value}, write {value % 10}, carry {value // 10}."


def add_steps(a: int, b: int) -> list[str]:
    """Steps for a + b with a, b >= 0."""
    if a < 10 and b < 10:
        return [f"{a} + {b} = {a + b}."]
    da, db = _digits(a), _digits(b)
    width = max(len(da), len(db))
    lines, carry = [], 0
    for i in range(width):
        x = da[i] if i < len(da) else 0
        y = db[i] if i < len(db) else 0
        s = x + y + carry
        lines.append(_column(i, i == width - 1, f"{x} + {y}", carry, s))
        carry = s // 10
    lines.append(f"So {a} + {b} = {a + b}.")
    return lines


def sub_steps(a: int, b: int) -> list[str]:
    """Steps for a - b with a, b >= 0 (a negative result is computed as -(b - a))."""
    if a < b:
        inner = sub_steps(b, a)
        return (
            [f"{b} is larger than {a}, so compute {b} - {a} and make it negative."]
            + inner[:-1]
            + [f"So {a} - {b} = {a - b}."]
        )
    if a < 10 or (a < 20 and b < 10 and a - b < 10):
        return [f"{a} - {b} = {a - b}."]
    da, db = _digits(a), _digits(b)
    lines, borrow = [], 0
    for i in range(len(da)):
        x, y = da[i], (db[i] if i < len(db) else 0)
        x2 = x - borrow
        shown = f"{x} - 1" if borrow else f"{x}"
        if x2 < y:
            lines.append(
                f"{_place(i)}: {shown} - {y} needs a borrow: {x2 + 10} - {y} = {x2 + 10 - y}."
            )
            borrow = 1
        else:
            lines.append(f"{_place(i)}: {shown} - {y} = {x2 - y}.")
            borrow = 0
    lines.append(f"So {a} - {b} = {a - b}.")
    return lines


def mul_steps(a: int, b: int) -> list[str]:
    """Steps for a × b with a >= 0 and 0 <= b <= 99."""
    if a < 10 and b < 10:
        return [f"{a} × {b} = {a * b}."]
    if b >= 10:
        bt, bu = divmod(b, 10)
        if bu == 0:
            return [f"{a} × {bt} = {a * bt}, so {a} × {b} = {a * b}."]
        lines = [f"{a} × {b} = {a} × {bt * 10} + {a} × {bu}."]
        lines.append(f"{a} × {bu} = {a * bu}.")
        lines.append(f"{a} × {bt} = {a * bt}, so {a} × {bt * 10} = {a * bt * 10}.")
        lines.append(f"{a * bt * 10} + {a * bu} = {a * b}.")
        lines.append(f"So {a} × {b} = {a * b}.")
        return lines
    da = _digits(a)
    lines, carry = [], 0
    for i, x in enumerate(da):
        p = x * b + carry
        lines.append(_column(i, i == len(da) - 1, f"{x} × {b}", carry, p))
        carry = p // 10
    lines.append(f"So {a} × {b} = {a * b}.")
    return lines


def div_steps(a: int, b: int) -> list[str]:
    """Steps for an exact division a ÷ b (b > 0, b divides a)."""
    q = a // b
    if q <= 12 and b <= 12:
        return [f"{b} × {q} = {a}, so {a} ÷ {b} = {q}."]
    s = str(a)
    i, cur = 0, 0
    while i < len(s) - 1 and cur * 10 + int(s[i]) < b:
        cur = cur * 10 + int(s[i])
        i += 1
    cur = cur * 10 + int(s[i])
    i += 1
    qd, rem = divmod(cur, b)
    lines = [f"{cur} ÷ {b} = {qd}, remainder {rem}."]
    for d in s[i:]:
        cur = rem * 10 + int(d)
        qd, rem = divmod(cur, b)
        lines.append(f"Bring down {d}: {cur} ÷ {b} = {qd}, remainder {rem}.")
    lines.append(f"So {a} ÷ {b} = {q}.")
    return lines


def frac_steps(a: Fraction, op: str, b: Fraction) -> list[str]:
    """Steps for a ± b with proper positive fractions."""
    res = a + b if op == "+" else a - b
    da, db = a.denominator, b.denominator
    lcm = da * db // gcd(da, db)
    na, nb = a.numerator * (lcm // da), b.numerator * (lcm // db)
    lines = []
    if da != db:
        lines.append(f"Common denominator {lcm}: {fmt(a)} = {na}/{lcm} and {fmt(b)} = {nb}/{lcm}.")
    n = na + nb if op == "+" else na - nb
    lines.append(f"{na}/{lcm} {op} {nb}/{lcm} = {n}/{lcm}.")
    g = gcd(abs(n), lcm)
    if n != 0 and g > 1:
        lines.append(f"Divide top and bottom by {g}: {n}/{lcm} = {fmt(res)}.")
    elif n == 0:
        lines.append(f"{n}/{lcm} = 0.")
    return lines
