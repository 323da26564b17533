"""`called_from` knows which expression the task named (session 30, `StructuralCheck.expr`).

Session 29's `structural.moved_out` compared expression shapes of the caller before and after
the refactor without knowing which expression the task asked to extract: moving another
expression of the caller into the helper met it, so did a copy of the named expression kept
with its operands swapped (or `x * 1` inside) and its value used, and without the "before"
caller names were compared as written. The task generator now records the expression
(`expr`), and with it the check needs that expression, normalised, gone from the caller and
computed by the helper. Each test builds a tiny module next to its "before" copy and runs
`run_check` as `grading` does (the task's repository as `baseline`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.harness.structural import run_check, shape
from hillclimb.harness.task import StructuralCheck, load_task

BEFORE = '''\
def area(w, h, pad):
    """The padded area plus the rim."""
    inner = w * h + pad
    other = round(w / pad, 2)
    return round(inner + other, 2)
'''

HELPER = "def compute_inner(h, pad, w):\n    return w * h + pad\n\n\n"
EXPR = "w * h + pad"


def _named() -> StructuralCheck:
    return StructuralCheck(
        "called_from", "compute_inner", module="geo.py", caller="area", expr=EXPR
    )


def _caller(*lines: str) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f'def area(w, h, pad):\n    """The padded area plus the rim."""\n{body}'


REST = ("other = round(w / pad, 2)", "return round(inner + other, 2)")


def _check(tmp_path: Path, after: str, baseline: bool = True, check: StructuralCheck | None = None):
    base, ws = tmp_path / "base", tmp_path / "ws"
    base.mkdir(parents=True)
    ws.mkdir()
    (base / "geo.py").write_text(BEFORE)
    (ws / "geo.py").write_text(after)
    return run_check(ws, check or _named(), baseline=base if baseline else None)


# Each met session 29's `called_from` (checked below with the check that has no `expr`).
ATTACKS = {
    # the named expression stays inline; another expression of the caller moves
    "moved_other": "def compute_inner(pad, w):\n    return round(w / pad, 2)\n\n\n"
    + _caller("inner = w * h + pad", "other = compute_inner(pad, w)", REST[1]),
    # only a part of the named expression moves
    "moved_part": "def compute_inner(h, w):\n    return w * h\n\n\n"
    + _caller("inner = compute_inner(h, w) + pad", *REST),
    "swapped_copy_used": HELPER
    + _caller("inner = (compute_inner(h, pad, w), pad + h * w)[1]", *REST),  # fmt: skip
    "times_one_copy_used": HELPER
    + _caller("inner = (compute_inner(h, pad, w), w * 1 * h + 0 + pad)[1]", *REST),
    "swapped_renamed_copy": HELPER
    + _caller("a, b, c = w, h, pad", "inner = (compute_inner(h, pad, w), c + b * a)[1]", *REST),
}

HONEST = {
    "reference": HELPER + _caller("inner = compute_inner(h, pad, w)", *REST),
    "assigned_first": HELPER + _caller("v = compute_inner(h, pad, w)", "inner = v", *REST),
    "in_a_loop": HELPER
    + _caller("for _ in range(1):", "    inner = compute_inner(h, pad, w)", *REST),
    "passed_on": HELPER + _caller("inner = next(iter([compute_inner(h, pad, w)]))", *REST),
    "helper_in_steps": "def compute_inner(h, pad, w):\n    t = w * h\n    return t + pad\n\n\n"
    + _caller("inner = compute_inner(h, pad, w)", *REST),
    "helper_params_renamed": "def compute_inner(y, p, x):\n    return x * y + p\n\n\n"
    + _caller("inner = compute_inner(h, pad, w)", *REST),
    "helper_operands_swapped": "def compute_inner(h, pad, w):\n    return pad + h * w\n\n\n"
    + _caller("inner = compute_inner(h, pad, w)", *REST),
    "caller_locals_renamed": HELPER
    + "def area(ww, hh, pp):\n    inner = compute_inner(hh, pp, ww)\n"
    + "    other = round(ww / pp, 2)\n    return round(inner + other, 2)\n",
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_met_the_check_without_the_named_expression(tmp_path: Path, name: str) -> None:
    old = StructuralCheck("called_from", "compute_inner", module="geo.py", caller="area")
    got = _check(tmp_path, ATTACKS[name], check=old)
    assert got.ok, got.detail  # session 29's reading (and old task files) let it through


@pytest.mark.parametrize("baseline", [True, False])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_with_the_named_expression(tmp_path: Path, name: str, baseline: bool) -> None:
    got = _check(tmp_path, ATTACKS[name], baseline=baseline)
    assert not got.ok, got.detail
    assert "named" in got.detail


@pytest.mark.parametrize("baseline", [True, False])
@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_refactor_meets_the_check(tmp_path: Path, name: str, baseline: bool) -> None:
    got = _check(tmp_path, HONEST[name], baseline=baseline)
    assert got.ok, got.detail


def test_renamed_copy_is_seen_without_a_baseline(tmp_path: Path) -> None:
    after = HELPER + _caller("a, b, c = w, h, pad", "inner = (compute_inner(h, pad, w), a * b + c)[1]", *REST)  # fmt: skip
    old = StructuralCheck("called_from", "compute_inner", module="geo.py", caller="area")
    assert _check(tmp_path, after, baseline=False, check=old).ok  # names compared as written
    assert not _check(tmp_path / "n", after, baseline=False).ok


def test_normalised_shapes() -> None:
    import ast

    def s(code: str) -> str:
        return shape(ast.parse(code, mode="eval").body, {"a", "b", "c"}, normal=True)

    assert s("a * b + c") == s("c + b * a") == s("a * 1 * b + 0 + c") == s("(1 * a) * b - 0 + c")
    assert s("a > f(b)") == s("f(b) < a")
    assert s("f(a) == g(b)") == s("g(b) == f(a)")
    assert s("f(a) or g(b)") == s("g(b) or f(a)")
    assert s("f(a) - g(b)") != s("g(b) - f(a)")  # not commutative
    assert s("a * 2 + c") != s("a + c")  # only identity constants drop
    plain = ast.parse("a * b + c", mode="eval").body
    assert shape(plain, {"a", "b", "c"}) != s("a * b + c")  # off unless asked: old tasks


def test_a_helper_that_blows_up_when_read_in_steps_stays_cheap(tmp_path: Path) -> None:
    steps = "".join(f"    t{i} = t{i - 1} + t{i - 1}\n" for i in range(1, 60))
    after = f"def compute_inner(h, pad, w):\n    t0 = w * h\n{steps}    return t59 + pad\n\n\n"
    after += _caller("inner = compute_inner(h, pad, w)", *REST)
    t0 = time.monotonic()
    got = _check(tmp_path, after)
    assert time.monotonic() - t0 < 5
    assert not got.ok and "does not compute the expression" in got.detail


def _task(tmp_path: Path, extra: str) -> Path:
    root = tmp_path / "task"
    (root / "repo").mkdir(parents=True)
    (root / "repo" / "geo.py").write_text(BEFORE)
    (root / "task.toml").write_text(
        'id = "t"\nkind = "refactor"\ninstruction = "x"\n'
        '[[checks]]\ntype = "called_from"\nname = "compute_inner"\nmodule = "geo.py"\n'
        f'caller = "area"\n{extra}'
    )
    return root


def test_task_files_with_and_without_expr_load(tmp_path: Path) -> None:
    assert load_task(_task(tmp_path / "a", "")).checks[0].expr is None
    got = load_task(_task(tmp_path / "b", 'expr = """w * (\n    h) + pad"""\n')).checks[0]
    assert got.expr == "w * (\n    h) + pad"


@pytest.mark.parametrize(
    "extra, why",
    [
        ('expr = "w * "\n', "not one Python expression"),
        ('expr = "x = 1"\n', "not one Python expression"),
        ('expr = ""\n', "non-empty string"),
        ("expr = 3\n", "non-empty string"),
    ],
)
def test_bad_expr_is_refused_with_a_clear_message(tmp_path: Path, extra: str, why: str) -> None:
    with pytest.raises(HillclimbError, match=why):
        load_task(_task(tmp_path, extra))


def test_expr_only_on_called_from(tmp_path: Path) -> None:
    root = _task(tmp_path, "")
    toml = (root / "task.toml").read_text().replace('"called_from"', '"function_exists"')
    (root / "task.toml").write_text(toml + 'expr = "a + b"\n')
    with pytest.raises(HillclimbError, match="only for called_from"):
        load_task(root)


class _AllPass:
    """A runner whose every test passes: `_refactor_task` without a sandbox."""

    def run(self, files: dict[str, str]) -> tuple[dict[str, str], str, str]:
        return {"tests/test_x.py::test_x": "passed"}, "ok", ""


def test_generated_extract_tasks_name_their_expression() -> None:
    from hillclimb.harness.taskgen.generate import _refactor_task

    seen = 0
    for seed in range(40):
        spec = _refactor_task(random.Random(seed), _AllPass(), "t", 0.0)
        if spec is None or spec.meta.get("refactor") != "extract_function":
            continue
        seen += 1
        (called,) = [c for c in spec.checks if c["type"] == "called_from"]
        assert f"extract the expression `{called['expr']}`" in spec.instruction
    assert seen >= 3


def test_every_generatable_extract_edit_meets_the_check(tmp_path: Path) -> None:
    from hillclimb.harness.taskgen import mutate
    from hillclimb.harness.taskgen.corpus import PROJECTS

    total = 0
    for files in PROJECTS.values():
        for rel, src in files.items():
            if not rel.endswith(".py") or rel.split("/")[-1].startswith("test"):
                continue
            for edit in mutate.extract_edits(src):
                total += 1
                base, ws = tmp_path / f"b{total}", tmp_path / f"w{total}"
                for root, text in ((base, src), (ws, edit.new_source)):
                    (root / rel).parent.mkdir(parents=True)
                    (root / rel).write_text(text)
                check = StructuralCheck(
                    "called_from", edit.extra["helper"], module=rel,
                    caller=str(edit.function), expr=edit.extra["expr"],
                )  # fmt: skip
                got = run_check(ws, check, baseline=base)
                assert got.ok, (rel, edit.function, got.detail)
                assert run_check(ws, check).ok  # without the task's repository too
    assert total >= 30


def test_a_check_built_with_a_bad_expr_says_so(tmp_path: Path) -> None:
    bad = StructuralCheck(
        "called_from", "compute_inner", module="geo.py", caller="area", expr="w *"
    )
    got = _check(tmp_path, HONEST["reference"], check=bad)
    assert not got.ok and "expr 'w *' is not one Python expression" in got.detail
