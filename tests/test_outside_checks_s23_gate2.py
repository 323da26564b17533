"""Outside checks (session 23, gate2): the registry compares like with like.

An evaluation audit found settings that change a suite's numbers and are now recorded in the
results: the completion form's `token_healing`, the problems suite's `max_tokens_rule`, each
item's `max_tokens`, the tokenizer (`tokenizer_sha256`) and the weights evaluated
(`weights_sha256`). Checkpoints here are directories with a fake weights file (the registry only
hashes bytes); results have the shape `hillclimb eval` writes, as in tests/test_registry.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.registry.db import Registry
from hillclimb.registry.gate import GateConfig, compare, promote

TOK_A = "a" * 64
TOK_B = "b" * 64
SCORER = "c" * 64  # one scoring code for both sides (`scorer_sha256`, session 24)


def fake_ckpt(path: Path, seed: int) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "tokenizer.json").write_text(json.dumps({"seed": seed}))
    (path / "model.safetensors").write_bytes(f"weights {seed}".encode() * 50)
    (path / "hillclimb.json").write_text(
        json.dumps({"family": "thinking", "preset": "thinking-micro", "lineage": {"stage": "sft"}})
    )
    return path


def task_result(model: Path, passed: list[bool], *, caps: list[int] | None = None, **top) -> dict:
    """A `run_eval` result (split heldout); item i is the same problem for every model. `caps`:
    each item's `max_tokens` (as results since session 23 record it); `top`: identity fields."""
    items = []
    for i, p in enumerate(passed):
        it = {"id": f"arith/t{1 + i % 2}/{i:05d}", "split": "heldout", "family": "arith",
              "tier": 1 + i % 2, "passed": p}  # fmt: skip
        if caps is not None:
            it["max_tokens"] = caps[i]
        items.append(it)
    return {
        "format": "hillclimb-eval-v2",
        "model": str(model),
        **top,
        "tasks": {
            "settings": {"max_tokens": None, "max_tokens_margin": 1.5, "temperature_greedy": 0.0},
            "splits": {"heldout": {"n": len(passed), "correct": sum(passed)}},
            "items": items,
        },
    }


def suite_result(model: Path, suite: str, passed: list[bool], **body) -> dict:
    """A `hillclimb eval --suite S` result; `body`: what the suite records (token_healing, ...)."""
    return {
        "format": "hillclimb-suite-v1",
        "suite": suite,
        "model": str(model),
        "backend": "local",
        "settings": {"max_tokens": 256, "form": "completion", "timeout_s": 10.0},
        **body,
        "items": [{"id": f"{suite}/{i}", "passed": p} for i, p in enumerate(passed)],
    }


WIN = [False] * 30 + [True] * 10, [True] * 40  # incumbent, candidate: +75 points on 40 items


def _pair(tmp_path: Path, reg: Registry, inc: dict, cand: dict) -> tuple[str, str]:
    """Register two checkpoints and import `inc` / `cand` (results made for them by a builder
    taking the checkpoint directory and the outcomes)."""
    ids = []
    for name, seed, (build, passed) in (("inc", 1, inc), ("cand", 2, cand)):
        d = fake_ckpt(tmp_path / name, seed)
        ck = reg.register_checkpoint(d)
        reg.add_eval_result(ck.id, build(d, passed))
        ids.append(ck.id)
    return ids[0], ids[1]


def _snapshot(db: Path) -> list:
    con = sqlite3.connect(db)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, sorted(map(repr, con.execute(f"SELECT * FROM {t}")))) for t in sorted(names)]
    finally:
        con.close()


# ---- (1) a result of other weights is refused -----------------------------------------------------
def test_add_eval_refuses_a_result_of_other_weights(tmp_path, capsys):
    """A result records the content hash of the weights it evaluated (`eval.core.model_identity`,
    the registry's `content_hash`); a stale `eval.json` at a path that now holds other weights
    was attached to them — `--force` attached it whatever it named."""
    from hillclimb.eval.core import model_identity

    db = tmp_path / "r.sqlite"
    old, new = fake_ckpt(tmp_path / "old", 1), fake_ckpt(tmp_path / "new", 2)
    stale = task_result(new, WIN[1], **model_identity(old))  # names new's path, old's weights
    f = tmp_path / "eval.json"
    f.write_text(json.dumps(stale))
    assert main(["registry", "add", str(new), "--registry", str(db)]) == 0
    capsys.readouterr()
    before = _snapshot(db)
    for extra in ([], ["--force"]):
        assert main(["registry", "add-eval", str(new), str(f), "--registry", str(db), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "evaluated weights" in err and len(err.splitlines()) == 1, err
        assert "Traceback" not in err
        assert _snapshot(db) == before  # nothing stored
    # the same file for the weights it did evaluate is taken; so is a result of `new` itself
    f.write_text(json.dumps(task_result(new, WIN[1], **model_identity(new))))
    assert main(["registry", "add-eval", str(new), str(f), "--registry", str(db)]) == 0
    with Registry(db) as reg:
        assert len(reg.evals(reg.resolve(str(new)).id)) == 1


# ---- (2) unlike evaluations are not compared as like ----------------------------------------------
def _humaneval(heal):
    return lambda d, p: suite_result(
        d, "humaneval", p, token_healing=heal, tokenizer_sha256=TOK_A, scorer_sha256=SCORER
    )


def _problems(rule):
    return lambda d, p: suite_result(
        d, "problems", p, max_tokens_rule=rule, tokenizer_sha256=TOK_A, scorer_sha256=SCORER
    )


def _tasks(caps, tok=TOK_A, scorer=SCORER):
    return lambda d, p: task_result(
        d, p, caps=caps(len(p)), tokenizer_sha256=tok, scorer_sha256=scorer
    )


@pytest.mark.parametrize(
    ("suite", "inc", "cand", "says"),
    [
        ("humaneval", _humaneval(False), _humaneval(True), "token_healing (False vs True)"),
        ("problems", _problems("served tokens"), _problems("UTF-8 bytes"), "max_tokens_rule"),
        ("heldout", _tasks(lambda n: [64] * n), _tasks(lambda n: [96] * n), "max_tokens on 40 of"),
        ("heldout", _tasks(lambda n: [64] * n), _tasks(lambda n: [64] * n, TOK_B),
         "tokenizer_sha256 ('aaaaaaaaaaaa' vs 'bbbbbbbbbbbb')"),
        # session 24: scored by other checkers (an incumbent evaluated by older, laxer code)
        ("heldout", _tasks(lambda n: [64] * n), _tasks(lambda n: [64] * n, scorer="d" * 64),
         "scorer_sha256 ('cccccccccccc' vs 'dddddddddddd')"),
    ],
)  # fmt: skip
def test_unlike_evaluations_are_not_comparable_and_never_promote(
    tmp_path, capsys, suite, inc, cand, says
):
    """A +75-point "gain" measured with healing on against healing off (or another budget rule,
    other item budgets, another tokenizer) was promoted like any other; now the comparison says
    it is not comparable and the gate refuses, naming the setting."""
    db = tmp_path / "r.sqlite"
    with Registry(db) as reg:
        a, b = _pair(tmp_path, reg, (inc, WIN[0]), (cand, WIN[1]))
        dec = promote(reg, b, a, GateConfig(target=suite, resamples=500), alias="thinking@prod")
        assert not dec.promoted and "not comparable" in dec.reasons[0]
        comp = compare(reg, a, b, suite, resamples=500)
        assert any(says in x for x in comp.not_comparable), comp.not_comparable
        assert any("NOT COMPARABLE" in w for w in comp.warnings)
        assert reg.find_alias("thinking@prod") is None
    assert main(["registry", "compare", a, b, "--suite", suite, "--registry", str(db)]) == 0
    assert "NOT COMPARABLE" in capsys.readouterr().out
    # a gate (not only the target) that is not comparable refuses too
    with Registry(db) as reg:
        dec = promote(reg, b, a, GateConfig(target=suite, gates=(suite,), resamples=500))
        assert not dec.promoted


def test_like_evaluations_still_promote_and_budgets_only_count_on_shared_items(tmp_path):
    """The same settings: promoted, with nothing to warn about. Budgets that differ only on
    items the other evaluation does not have are no difference (only shared items are paired)."""
    with Registry(tmp_path / "r.sqlite") as reg:
        inc = _tasks(lambda n: [64] * n)  # evaluated on 38 items (WIN cut below)
        inc = lambda d, p, f=inc: f(d, p[:38])  # noqa: E731
        cand = _tasks(lambda n: [64] * 38 + [999] * (n - 38))
        a, b = _pair(tmp_path, reg, (inc, WIN[0]), (cand, WIN[1]))
        comp = compare(reg, a, b, "heldout", resamples=500)
        assert comp.not_comparable == [] and comp.unchecked == []
        assert comp.notes() == [] and not any("NOT COMPARABLE" in w for w in comp.warnings)
        dec = promote(reg, b, a, GateConfig(target="heldout", resamples=500))
        assert dec.promoted


# ---- (3) older results stay usable: unknown, and said so ------------------------------------------
@pytest.mark.parametrize("old_side", ["inc", "cand"])
def test_an_older_result_is_compared_and_the_report_says_what_was_not_checked(tmp_path, old_side):
    """A result from before these fields (no token_healing, no tokenizer hash) is neither
    refused nor silently taken as like: it is compared, and the warning names what could not
    be checked."""
    new = _humaneval(True)
    old = lambda d, p: suite_result(d, "humaneval", p)  # noqa: E731
    inc, cand = (old, new) if old_side == "inc" else (new, old)
    with Registry(tmp_path / "r.sqlite") as reg:
        a, b = _pair(tmp_path, reg, (inc, WIN[0]), (cand, WIN[1]))
        dec = promote(reg, b, a, GateConfig(target="humaneval", resamples=500))
        assert dec.promoted
        assert any("could not check" in n and "token_healing" in n for n in dec.to_dict()["notes"])
        assert "note: humaneval: could not check that both used the same tokenizer_sha256" in (
            dec.render()
        )
        comp = compare(reg, a, b, "humaneval", resamples=500)
        assert comp.not_comparable == []
        assert [u.split()[0] for u in comp.unchecked] == [
            "tokenizer_sha256",
            "scorer_sha256",
            "token_healing",
        ]
        assert f"not recorded by {a if old_side == 'inc' else b}'s eval #" in comp.unchecked[2]


def test_a_registry_written_before_these_fields_stays_readable(tmp_path):
    """Evaluations stored before (settings without the new keys, as the real climb results of
    session 22 were imported) are read, compared and gated as before."""
    db = tmp_path / "r.sqlite"
    with Registry(db) as reg:
        a, b = _pair(
            tmp_path,
            reg,
            (lambda d, p: task_result(d, p), WIN[0]),
            (_tasks(lambda n: [64] * n), WIN[1]),
        )
        stored = {e.id: e.settings for e in reg.evals(a)}
        assert all(
            "item_max_tokens" not in s and "tokenizer_sha256" not in s for s in stored.values()
        )
    with Registry(db) as reg:
        comp = compare(reg, a, b, "heldout", resamples=500)
        assert comp.not_comparable == [] and len(comp.unchecked) == 3  # tokenizer, scorer, caps
        assert promote(reg, b, a, GateConfig(target="heldout", resamples=500)).promoted


def test_a_setting_recorded_as_unknown_is_named_not_called_unlike(tmp_path):
    """`token_healing: null` is what a server that takes no such setting records: unknown, so
    the comparison says it could not check it rather than calling the two unlike."""
    with Registry(tmp_path / "r.sqlite") as reg:
        a, b = _pair(tmp_path, reg, (_humaneval(None), WIN[0]), (_humaneval(False), WIN[1]))
        comp = compare(reg, a, b, "humaneval", resamples=500)
        assert comp.not_comparable == [] and "token_healing" in comp.notes()[0]


def test_the_gate_finds_the_incumbents_comparable_evaluation(tmp_path):
    """The incumbent evaluated with healing off (timeout 10 s) and later with healing on: a
    candidate with healing off (timeout 20 s) has no exact match, and the gate took the newest
    — not comparable — while a comparable one was stored. Now the comparable one is compared
    (the timeout difference is a warning, as before)."""
    with Registry(tmp_path / "r.sqlite") as reg:
        a, b = _pair(tmp_path, reg, (_humaneval(False), WIN[0]), (_humaneval(True), WIN[1]))
        off = reg.evals(a)[0]
        healed = suite_result(Path(reg.checkpoint(a).path), "humaneval", WIN[1], token_healing=True)
        reg.add_eval_result(a, {**healed, "tokenizer_sha256": TOK_A})  # newest: healing on
        cand = suite_result(Path(reg.checkpoint(b).path), "humaneval", WIN[1], token_healing=False)
        cand["settings"] = {**cand["settings"], "timeout_s": 20.0}
        reg.add_eval_result(b, {**cand, "tokenizer_sha256": TOK_A})
        comp = compare(reg, a, b, "humaneval", resamples=500)
        assert comp.eval_a == off.id and comp.not_comparable == []
        assert any("timeout_s" in w for w in comp.warnings)
        assert promote(reg, b, a, GateConfig(target="humaneval", resamples=500)).promoted
