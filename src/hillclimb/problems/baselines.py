"""No-training baselines: what an accuracy must beat before it means the model learned anything.

Printed beside every accuracy in `hillclimb eval` and the climb report:

- **lookup** — a lookup table over training items: each evaluation item is answered with the
  answer (code: the reference solution) of the most similar training item of the same family and
  tier (exact prompt first, else the largest overlap of word/number tokens). This is what pure
  memorisation scores; with an honest split (held out by underlying problem, function and
  phrasing) it should be near zero except where answers repeat by chance.
- **majority** — always answer the most common training answer of the cell (reasoning only).
- **chance** — for multiple-choice items (`meta["choices"]`: yes/no, True/False, "which of a or
  b", a name from an ordering), the mean of 1/len(choices); None when no item is multiple choice.
- **best** — the largest of the three: the number printed beside the accuracy.

The training items are `n_train` draws of the generator's train split (the same distribution the
climb trains on; not byte-identical to a given run's SFT file, which is a sample of it). Code
lookups are verified in the sandbox like any answer.

Beside them, flags for held-out items a training item would get right (`SEEN_FLAGS`): word
problems working a training story's arithmetic (`flag_seen_arithmetic`) and code items a
training function of another key passes (`flag_passed_by_train_fn`); evaluation prints the
accuracy without the flagged items beside the plain one.
"""

from __future__ import annotations

import ast
import copy
import re
import signal
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hillclimb.problems import Problem, check_many
from hillclimb.problems.verify import final_content

_TOKEN = re.compile(r"[A-Za-z_]+|\d+")


def _tokens(text: str) -> frozenset[str]:
    return frozenset(t.lower() for t in _TOKEN.findall(text))


@dataclass
class CellBaseline:
    lookup: float
    majority: float | None
    chance: float | None

    @property
    def best(self) -> float:
        return max(x for x in (self.lookup, self.majority, self.chance) if x is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lookup": self.lookup,
            "majority": self.majority,
            "chance": self.chance,
            "best": self.best,
        }


def _nearest(item: Problem, train: list[Problem], sets: list[frozenset[str]]) -> Problem:
    for t in train:
        if t.prompt == item.prompt:
            return t
    a = _tokens(item.prompt)
    best, best_score = train[0], -1.0
    for t, b in zip(train, sets, strict=True):
        inter = len(a & b)
        score = inter / (len(a) + len(b) - inter or 1)
        if score > best_score:
            best, best_score = t, score
    return best


def cell_baselines(
    items: list[Problem], train: list[Problem], *, check_timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Per-item baseline outcomes: `{"lookup": bool, "majority": bool|None, "chance": float|None}`.

    `items` and `train` are problems of one family and tier."""
    if not items:
        return []
    if not train:
        return [{"lookup": False, "majority": None, "chance": _chance(p)} for p in items]
    sets = [_tokens(t.prompt) for t in train]
    answers = [final_content(_nearest(p, train, sets)) for p in items]
    # A lookup answer is the neighbour's final content; code answers run in the sandbox.
    lookup = check_many(items, answers, timeout_s=check_timeout_s)
    majority: list[bool | None]
    if items[0].kind == "code":
        majority = [None] * len(items)
    else:
        common = Counter(t.answer for t in train).most_common(1)[0][0]
        majority = check_many(items, [f"The answer is {common}."] * len(items))
    return [
        {"lookup": bool(lk), "majority": mj, "chance": _chance(p)}
        for p, lk, mj in zip(items, lookup, majority, strict=True)
    ]


# One worked step of a word-problem solution: "a op b = c" (column arithmetic never appears there).
_STEP = re.compile(r"(\d+) ([+\-×÷]) (\d+) = \d+")


def worked_arithmetic(p: Problem) -> tuple[tuple[str, ...], ...]:
    """The arithmetic of a word problem's worked solution, one `(a, op, b)` per step in order,
    operands of + and × sorted: what stories of two templates share ("has 3, gets 5 more" and
    "3 and 5 together" are both 3 + 5). Empty for a solution with no such step."""
    out = []
    for a, op, b in _STEP.findall(p.reasoning):
        if op in "+×":
            a, b = sorted((a, b), key=int)
        out.append((a, op, b))
    return tuple(out)


def flag_seen_arithmetic(items: list[Problem], train: list[Problem]) -> int:
    """Sets `meta["arith_seen_in_train"]` on every `word_problem` item of `items`: whether a
    training item (`train`: the same family and tier) works the same arithmetic; returns how many
    are flagged. Other families are left alone (their keys are their arithmetic or logic).

    Why: word problems are keyed by template and numbers, so a held-out story may repeat a
    training story's arithmetic in other words (tier 1's number space is small: session 26's
    audit found 14 of 20 held-out tier-1 items doing so). The flag lets evaluation print the
    accuracy without them beside the plain one. With no training items nothing is flagged."""
    seen = {worked_arithmetic(t) for t in train if t.family == "word_problem"}
    seen.discard(())
    flagged = 0
    for p in items:
        if p.family != "word_problem":
            continue
        hit = bool(train) and worked_arithmetic(p) in seen
        p.meta["arith_seen_in_train"] = hit
        flagged += hit
    return flagged


# ------------------------------------------------ code items a training function already passes

CODE_FLAG_FAMILIES = ("code_function", "code_bugfix")
# Per call of a training function on a foreign input: our references finish their own inputs in
# microseconds, but another function's input can make a loop run long (the audit's guard).
CALL_TIMEOUT_S = 0.05


@dataclass(frozen=True)
class CodeCase:
    """One line of a code item's tests, `assert f(*args) == want` or `assert f(*args) is want`
    (`is` for True, False and None), read back from the item's own test text."""

    args: tuple[Any, ...]
    want: Any
    op: str  # "==" or "is"

    def passed_by(self, got: Any) -> bool:
        try:
            return bool(got is self.want if self.op == "is" else got == self.want)
        except Exception:  # noqa: BLE001 - a result that cannot be compared fails the assert
            return False


def code_cases(p: Problem) -> list[CodeCase]:
    """The test cases of a code item, parsed from its `tests` (one assert per line, literal
    arguments and result). Raises ValueError naming the item and line for any other form:
    the flag below must judge the tests the grader runs, not a guess at them."""
    cases = []
    for line in p.tests.splitlines():
        try:
            node = ast.parse(line).body[0]
            test = node.test  # type: ignore[attr-defined]
            call, (op,) = test.left, test.ops
            if not isinstance(op, ast.Eq | ast.Is) or call.func.id != p.entry_point:
                raise ValueError
            if call.keywords:
                raise ValueError
            args = tuple(ast.literal_eval(a) for a in call.args)
            want = ast.literal_eval(test.comparators[0])
        except (SyntaxError, ValueError, AttributeError, IndexError, TypeError):
            raise ValueError(
                f"code item {p.id!r}: test line {line!r} is not `assert "
                f"{p.entry_point}(<literals>) == <literal>` (or `is`)"
            ) from None
        cases.append(CodeCase(args, want, "is" if isinstance(op, ast.Is) else "=="))
    return cases


class _CallTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _CallTimeout


@contextmanager
def _alarm_handler() -> Iterator[None]:
    """SIGALRM raises `_CallTimeout` inside; after, the previous handler and the previous timer
    (less the time spent here) are restored. Why: pytest-timeout and any caller's own deadline
    use the same timer, and a flag must not switch them off."""
    t0 = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    delay, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if delay > 0:  # an outer deadline that passed meanwhile fires at once
            signal.setitimer(
                signal.ITIMER_REAL, max(1e-3, delay - (time.monotonic() - t0)), interval
            )


_FAILED = object()  # a call that raised or ran past its timeout: passes no test


def _call(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """`fn(*args)` under a one-shot alarm; `_FAILED` when it raised or ran past `timeout_s`
    (an alarm that fires as the call returns lands in the outer `except` too)."""
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            return fn(*copy.deepcopy(args))  # a function may change its arguments in place
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Exception:  # noqa: BLE001 - raising (or the timeout) is failing the test
        return _FAILED


@dataclass
class _TrainFn:
    key: str
    fn: Callable[..., Any] | None  # None: the source does not compile (never for our references)
    arity: int  # positional parameters: an item with another number of arguments is skipped
    outputs: dict[str, Any]  # repr(args) -> result: each distinct input runs once


def flag_passed_by_train_fn(
    items: list[Problem], train: list[Problem], *, timeout_s: float = CALL_TIMEOUT_S
) -> int:
    """Sets `meta["passed_by_train_fn"]` on every code item (`CODE_FLAG_FAMILIES`) of `items`:
    the key of the first training reference (`train`: code items of any family and tier; their
    `answer` is the reference source) of *another* key that passes all the item's own tests, else
    None; returns how many are flagged. Other families are left alone.

    Why: code is held out as whole functions by structure key, but a training function of
    another structure can compute the same thing on the item's inputs (session 16 audit, final
    code: 0 / 10 / 5 / 4 of 112 / 600 / 600 / 600 held-out items, tiers 1-4). Such an item is
    not unseen: a model that memorised that training function passes it. The flag lets
    evaluation print the accuracy without them beside the plain one.

    Cost (the audit's fingerprint trick): a training function's result on an input is computed
    once and shared by every item whose tests use that input, and an item's candidates are
    narrowed case by case (the shared edge cases first, as the tests list them), so most
    training functions run on a few distinct inputs, not on every item's tests. Only our own
    reference code runs here, in-process, each call under a `timeout_s` alarm; that needs the
    main thread: elsewhere nothing is flagged (the key stays absent) and a warning says so.
    With no training items every code item is set to None."""
    code = [p for p in items if p.family in CODE_FLAG_FAMILIES]
    if not code:
        return 0
    if train and threading.current_thread() is not threading.main_thread():
        warnings.warn(
            "passed_by_train_fn: foreign inputs need a SIGALRM timeout, which only the main "
            "thread has; code items are left unflagged",
            RuntimeWarning,
            stacklevel=2,
        )
        return 0
    fns: dict[tuple[str, str], _TrainFn] = {}
    for t in train:
        if t.family in CODE_FLAG_FAMILIES and (t.answer, t.entry_point) not in fns:
            fn = _compiled(t.answer, t.entry_point)
            arity = fn.__code__.co_argcount if fn is not None else -1
            fns[(t.answer, t.entry_point)] = _TrainFn(t.key, fn, arity, {})
    by_tests: dict[tuple[str, str], str | None] = {}  # paired splits share their tests
    flagged = 0
    with _alarm_handler() if fns else _nothing():
        for p in code:
            cases = code_cases(p)
            if (p.tests, p.key) not in by_tests:
                by_tests[(p.tests, p.key)] = _first_passing(p.key, cases, fns, timeout_s)
            hit = by_tests[(p.tests, p.key)]
            p.meta["passed_by_train_fn"] = hit
            flagged += hit is not None
    return flagged


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _compiled(source: str, name: str) -> Callable[..., Any] | None:
    from hillclimb.problems.codetasks import compile_function

    try:
        return compile_function(source, name)
    except Exception:  # noqa: BLE001 - a reference that does not load passes nothing
        return None


def _first_passing(
    key: str, cases: list[CodeCase], fns: dict[tuple[str, str], _TrainFn], timeout_s: float
) -> str | None:
    arity = len(cases[0].args) if cases else -1
    cands = [f for f in fns.values() if f.fn is not None and f.arity == arity and f.key != key]
    for case in cases:
        r = repr(case.args)
        alive = []
        for f in cands:
            if r not in f.outputs:
                f.outputs[r] = _call(f.fn, case.args, timeout_s)  # type: ignore[arg-type]
            got = f.outputs[r]
            if got is not _FAILED and case.passed_by(got):
                alive.append(f)
        cands = alive
        if not cands:
            return None
    return cands[0].key if cands else None


@dataclass(frozen=True)
class SeenFlag:
    """An item flag that says a held-out item is less unseen than its split claims, and how
    evaluation shows it: items carry `meta[meta_key]` (truthy: flagged; absent: never checked),
    item records copy it, each split of `eval.tasks` has `split_key` (n, correct, accuracy,
    flagged without the flagged items), and `hillclimb eval` and the climb report print that
    beside — never instead of — the plain accuracy.

    Why one record for all such flags: the word-problem flag (session 27) and the code flag
    (session 28) differ only in how an item is judged; the accounting and printing are one."""

    meta_key: str
    split_key: str
    label: str  # after "without N " in the eval's overall line
    sentence: str  # the climb report's sentence, before the per-split figures


SEEN_FLAGS: tuple[SeenFlag, ...] = (
    SeenFlag(
        "arith_seen_in_train",
        "without_seen_arith",
        "word problems of training arithmetic",
        "Without the word problems whose arithmetic a training story also works (held out by "
        "template and numbers, not by arithmetic)",
    ),
    SeenFlag(
        "passed_by_train_fn",
        "without_passed_by_train_fn",
        "code items a training function passes",
        "Without the code items a training function of another key passes (held out by "
        "structure key, not by what the tests can tell apart)",
    ),
)


def _chance(p: Problem) -> float | None:
    choices = (p.meta or {}).get("choices")
    return 1.0 / len(choices) if choices else None


def summarise(outcomes: list[dict[str, Any]]) -> CellBaseline:
    """Cell-level baseline accuracies from per-item outcomes."""
    n = max(1, len(outcomes))
    lookup = sum(bool(o["lookup"]) for o in outcomes) / n
    maj = [o["majority"] for o in outcomes if o["majority"] is not None]
    majority = sum(maj) / len(maj) if maj else None
    ch = [o["chance"] for o in outcomes]
    chance = None if all(c is None for c in ch) else sum(c or 0.0 for c in ch) / n
    return CellBaseline(lookup, majority, chance)
