"""`called_from` also asks that the caller no longer does the extracted work (session 29, discard).

Session 29's red team: a caller that kept its inline code, also called the new helper and threw
the result away (`bench/redteam/graders_s29.py`, `call_discard`) met every check by calls and
resolved 9/9 generated extract-function tasks. `structural.moved_out` now compares expression
shapes (the AST with the function's own names numbered): the caller must hold fewer copies of
the helper's returned value than before, something must have left it and reached the helper,
and a returned value must be kept. The attacks below met the old check; the honest refactors
must meet the new one. Each builds a tiny module next to its "before" copy and runs
`run_check` on it as `grading` does (the task's repository as `baseline`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.harness.structural import run_check
from hillclimb.harness.task import StructuralCheck

BEFORE = '''\
def area(w, h, pad):
    """The padded area plus the rim."""
    inner = w * h + pad * 2
    other = w * pad + h * 2
    return round(inner + other, 2)
'''

HELPER = """\
def compute_inner(h, pad, w):
    return w * h + pad * 2


"""

CHECK = StructuralCheck("called_from", "compute_inner", module="geo.py", caller="area")


def _caller(*lines: str) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f'def area(w, h, pad):\n    """The padded area plus the rim."""\n{body}'


REFERENCE = HELPER + _caller(
    "inner = compute_inner(h, pad, w)",
    "other = w * pad + h * 2",
    "return round(inner + other, 2)",
)


def _check(tmp_path: Path, after: str, baseline: bool = True):
    base, ws = tmp_path / "base", tmp_path / "ws"
    base.mkdir(parents=True)
    ws.mkdir()
    (base / "geo.py").write_text(BEFORE)
    (ws / "geo.py").write_text(after)
    return run_check(ws, CHECK, baseline=base if baseline else None)


# Each met the old `called_from` (a live call of the helper from the caller).
ATTACKS = {
    # graders_s29.call_discard: a stub helper called under `if True:`, the caller unchanged
    "stub_if_true": "def compute_inner(*a, **k):\n    return None\n\n\n"
    + _caller(
        "if True:",
        "    compute_inner()",
        "inner = w * h + pad * 2",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    "discard_stmt": HELPER
    + _caller(
        "compute_inner(h, pad, w)",
        "inner = w * h + pad * 2",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    "renamed_copy": HELPER
    + _caller(
        "ww, hh, pp = w, h, pad",
        "inner = (compute_inner(h, pad, w), ww * hh + pp * 2)[1]",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    "if_true_copy": HELPER
    + _caller(
        "if True:",
        "    kept = w * h + pad * 2",
        "inner = (compute_inner(h, pad, w), kept)[1]",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    "reordered": HELPER
    + _caller(
        "other = w * pad + h * 2",
        "inner = w * h + pad * 2",
        "assert compute_inner(h, pad, w) == inner",
        "return round(inner + other, 2)",
    ),
    "copy_in_nested_def": HELPER
    + _caller(
        "def again():",
        "    return w * h + pad * 2",
        "inner = (compute_inner(h, pad, w), again())[1]",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    # the stub again, with another expression of the caller changed so that something "left"
    "stub_with_decoy": "def compute_inner(*a, **k):\n    return None\n\n\n"
    + _caller(
        "compute_inner()",
        "inner = w * h + pad * 2",
        "other = (w * pad) + (h + h)",
        "return round(inner + other, 2)",
    ),
    # the copy rewritten (operands swapped: no shape matches), the helper's result unread
    "rewritten_result_dropped": HELPER
    + _caller(
        "_ = compute_inner(h, pad, w)",
        "inner = pad * 2 + w * h",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_called_from(tmp_path: Path, name: str) -> None:
    got = _check(tmp_path, ATTACKS[name])
    assert not got.ok, got.detail
    assert "does not call" not in got.detail  # the call is there: the new reading fails it


def test_kept_copy_fails_without_a_baseline(tmp_path: Path) -> None:
    """No "before" copy of the caller: one copy of the returned value (names as written) is
    too many."""
    got = _check(tmp_path, ATTACKS["discard_stmt"], baseline=False)
    assert not got.ok and "still computes what compute_inner returns" in got.detail


HONEST = {
    "reference": REFERENCE,
    "in_a_loop": HELPER
    + _caller(
        "for _ in range(1):",
        "    inner = compute_inner(h, pad, w)",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    "returned": HELPER
    + _caller("other = w * pad + h * 2", "return round(compute_inner(h, pad, w) + other, 2)"),
    "passed_on": HELPER
    + _caller(
        "inner = float(compute_inner(h, pad, w))",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
    # the helper in steps, with its own parameter names: a sub-expression that left the
    # caller is in the helper
    "helper_in_steps": "def compute_inner(height, padding, width):\n"
    "    base = width * height\n    return base + padding * 2\n\n\n"
    + _caller(
        "inner = compute_inner(h, pad, w)",
        "other = w * pad + h * 2",
        "return round(inner + other, 2)",
    ),
}


KEPT = '    """The padded area plus the rim."""\n'


@pytest.mark.parametrize("name", sorted(HONEST))
@pytest.mark.parametrize("baseline", [True, False])
def test_honest_refactor_meets_called_from(tmp_path: Path, name: str, baseline: bool) -> None:
    """`other = w * pad + h * 2` has the shape of the extracted `w * h + pad * 2` and stays:
    the caller held two such copies before and holds one now. The same refactor with the
    extracted line also kept (its twin) fails."""
    got = _check(tmp_path / "honest", HONEST[name], baseline)
    assert got.ok, got.detail
    twin = HONEST[name].replace(KEPT, KEPT + "    kept = w * h + pad * 2\n")
    assert twin != HONEST[name]
    if name == "helper_in_steps" and not baseline:
        # a known limit: no "before" caller and no returned value the copy matches, so the
        # twin here also drops the helper's result
        twin = HONEST[name].replace(
            "inner = compute_inner(h, pad, w)",
            "compute_inner(h, pad, w)\n    inner = w * h + pad * 2",
        )
    got = _check(tmp_path / "twin", twin, baseline)
    assert not got.ok and ("still computes" in got.detail or "drops" in got.detail)


def test_helper_returning_nothing_may_be_called_as_a_statement(tmp_path: Path) -> None:
    before = "def report(w, h, pad):\n    print(w * h + pad * 2)\n    return w\n"
    after = (
        "def show(w, h, pad):\n    print(w * h + pad * 2)\n\n\n"
        "def report(w, h, pad):\n    show(w, h, pad)\n    return w\n"
    )
    base, ws = tmp_path / "base", tmp_path / "ws"
    base.mkdir()
    ws.mkdir()
    (base / "m.py").write_text(before)
    (ws / "m.py").write_text(after)
    check = StructuralCheck("called_from", "show", module="m.py", caller="report")
    got = run_check(ws, check, baseline=base)
    assert got.ok, got.detail
    (ws / "m.py").write_text(after.replace("    show(w, h, pad)\n", "    show(w, h, pad)\n" + before.splitlines(keepends=True)[1]))  # fmt: skip
    got = run_check(ws, check, baseline=base)  # the print kept in the caller as well
    assert not got.ok and "still computes all it did" in got.detail


def _fn(src: str):
    import ast

    return ast.parse(src).body[0]


def test_shapes_number_locals_and_keep_module_names() -> None:
    import ast

    from hillclimb.harness.structural import computations, moved_out, shape

    a = _fn("def f(a, b):\n    return len(a) * b + 1\n")
    b = _fn("def g(x, y):\n    return len(x) * y + 1\n")
    c = _fn("def g(x, y):\n    return abs(x) * y + 1\n")
    va, vb, vc = (f.body[0].value for f in (a, b, c))
    assert shape(va, {"a", "b"}) == shape(vb, {"x", "y"})
    assert shape(va, {"a", "b"}) != shape(vc, {"x", "y"})  # builtins/module names as written
    assert computations(a) == computations(b)
    tree = ast.parse(ATTACKS["discard_stmt"])
    caller = tree.body[1]
    assert moved_out(tree, caller, CHECK, None).startswith("area still computes")
    ref = ast.parse(REFERENCE)
    assert moved_out(ref, ref.body[1], CHECK, _fn(BEFORE)) == ""
