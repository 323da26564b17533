"""Reading evaluation files into the registry: what `hillclimb eval --json|--out` and the climb write.

Two kinds of result. A standard-suite result (`hillclimb eval --suite S`, format
`hillclimb-suite-v1`) is one suite, S, with its `items`. A `run_eval` result gives one suite per
evaluation split (`heldout`, `heldout_phrasing`) from `tasks.items`; every split's `n`/`correct`
totals are checked against its items, so a truncated or hand-edited file is refused.

`run_eval` results (format `hillclimb-eval-v2`) come in three wrappers: the result itself (`hillclimb
eval --json`, `--out DIR/eval.json`), a climb's per-model file `NN-eval/<model>.json`
(`{"model", "pretrain", "sft", "rl"}`), and the climb's `NN-eval/eval.json` (model → that).
`pick_result` finds the one that evaluated a given checkpoint: by `--stage` when given, else by
the checkpoint path the result names, else the only result with task accuracy. Anything else —
unreadable JSON, no result, several candidates — is a `HillclimbError` before anything is
stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError

EVAL_FORMATS = ("hillclimb-eval-v1", "hillclimb-eval-v2", "hillclimb-suite-v1")


@dataclass(frozen=True)
class Item:
    """One evaluated item as the registry stores it (a row of `eval_items`). Defined here, by the
    parser that makes them, so `db.py` imports this module and not the other way round (issue 16)."""

    item_id: str
    family: str | None
    tier: int | None
    kind: str | None
    passed: bool
    score: float


def eval_file_path(path: str | Path) -> Path:
    """The result file `path` names: itself, or for a directory (an `eval --out DIR`) the one
    JSON file in it that holds an evaluation result.

    Why: the README offers `add-eval CKPT` "an `hillclimb eval --out DIR` result", and giving DIR
    said "eval file not found: DIR". A directory with several results (a climb's `NN-eval`, two
    suites in one `--out`) is refused naming them, not guessed at."""
    p = Path(path)
    if not p.is_dir():
        return p
    found = []
    for f in sorted(p.glob("*.json")):
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not a result: unreadable files are no candidates
        if find_results(obj):
            found.append(f)
    if len(found) == 1:
        return found[0]
    if not found:
        raise HillclimbError(
            f"{p} is a directory with no evaluation result in it (expected a `hillclimb eval "
            "--out` directory); name the result file"
        )
    names = ", ".join(f.name for f in found)
    raise HillclimbError(f"{p} holds several evaluation results ({names}); name the one to add")


def load_eval_file(path: str | Path) -> Any:
    p = eval_file_path(path)
    if not p.is_file():
        raise HillclimbError(f"eval file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"{p} is not valid JSON (corrupt eval file?): {exc}") from exc


def find_results(obj: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every `run_eval` result inside `obj`, with its location (`"thinking.sft"`, `""`)."""
    if isinstance(obj, dict):
        if obj.get("format") in EVAL_FORMATS:
            return [(where, obj)]
        out: list[tuple[str, dict[str, Any]]] = []
        for k, v in obj.items():
            out += find_results(v, f"{where}.{k}" if where else str(k))
        return out
    return []


def pick_result(
    obj: Any,
    checkpoint_path: str,
    *,
    source: str,
    stage: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """The result in `obj` for the checkpoint at `checkpoint_path` (see the module doc);
    `force` takes the only result with task accuracy whatever checkpoint path it names, or a
    result of a URL (`_served_url`)."""
    result = _pick(obj, checkpoint_path, source=source, stage=stage, force=force)
    url = _served_url(result)
    if url is not None and not force:
        raise HillclimbError(
            f"{source}: it evaluated a server ({url}), and the registry cannot tell which "
            f"weights that server ran; pass --force if it served {checkpoint_path}"
        )
    return result


def _served_url(result: dict[str, Any]) -> str | None:
    """The URL a result evaluated (`eval --model URL`), or None for a checkpoint's.

    Why: such a result names no checkpoint directory, so it was attached silently to whatever
    checkpoint `add-eval` was given — a hosted model's numbers could gate a promotion."""
    model = result.get("model")
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        return model
    if result.get("backend") == "http":
        return str(model)
    return None


def _pick(
    obj: Any, checkpoint_path: str, *, source: str, stage: str | None, force: bool
) -> dict[str, Any]:
    found = find_results(obj)
    if not found:
        raise HillclimbError(
            f"{source}: no evaluation result in it (expected format {EVAL_FORMATS[-1]}, "
            "from `hillclimb eval --json` or a climb's eval stage)"
        )
    if stage is not None:
        sel = [(w, r) for w, r in found if w.split(".")[-1] == stage]
        if len(sel) != 1:
            have = ", ".join(w or "(top level)" for w, _ in found)
            raise HillclimbError(f"{source}: no single result for stage {stage!r}; it has {have}")
        return sel[0][1]
    target = str(Path(checkpoint_path).resolve())
    by_path = [(w, r) for w, r in found if _same(r.get("model"), target)]
    if len(by_path) == 1:
        return by_path[0][1]
    with_tasks = [(w, r) for w, r in found if r.get("tasks") or r.get("items")]
    if force and len(with_tasks) == 1:
        return with_tasks[0][1]
    if len(found) == 1 and not _other_dir(found[0][1].get("model"), target):
        return found[0][1]  # e.g. a suite result naming the model, not its directory
    if len(found) == 1 or (not by_path and len(with_tasks) == 1):
        w, r = found[0] if len(found) == 1 else with_tasks[0]
        raise HillclimbError(
            f"{source}: its result{' at ' + w if w else ''} evaluated {r.get('model')!r}, not "
            f"{checkpoint_path}; pass --force if the checkpoint moved"
        )
    have = ", ".join(f"{w or '(top)'} = {r.get('model')}" for w, r in found)
    raise HillclimbError(f"{source}: several results and none for {checkpoint_path}: {have}")


def _same(model: Any, target: str) -> bool:
    if not isinstance(model, str):
        return False
    try:
        return str(Path(model).resolve()) == target
    except OSError:
        return False


def _other_dir(model: Any, target: str) -> bool:
    """`model` names an existing directory other than `target` (the result is someone else's)."""
    if not isinstance(model, str) or model.startswith(("http://", "https://")):
        return False
    p = Path(model)
    try:
        return p.is_dir() and str(p.resolve()) != target
    except OSError:
        return False


# ---- reading an eval result -----------------------------------------------------------------------
# Settings that change what an item's outcome means (generation budget); two evaluations that
# differ here are still compared on shared items, with a warning.
OUTCOME_SETTINGS = ("max_tokens", "max_tokens_margin", "temperature_greedy")


# Suites whose items are drawn from the evaluation seed and numbered by position (`ifeval-000`,
# `fim-000`, `fim-test-t1-00`): under another seed the same id is another prompt. Their seed is
# kept in the settings as `item_seed`, and evaluations with different ones are never paired
# (`gate.compare` refuses). HumanEval's and the problems suite's ids name their item whatever the
# seed (a fixed problem set; content-derived problem ids), so their seed is not kept.
SEEDED_SUITES = ("ifeval", "fim")
# Settings that decide which item an id names: two evaluations that differ here share no item.
ITEM_SETTINGS = ("item_seed",)

# Settings that make two evaluations of one suite measure different things, recorded in results
# since session 23: the tokenizer (`eval.core.model_identity`), the completion form's token
# healing (HumanEval/completion: 11 of 12 completions changed with it), how the problems
# suite sized its budgets (`max_tokens_rule`: served tokens vs UTF-8 bytes) and each item's own
# `max_tokens` (`item_max_tokens`, `item_caps`). Kept in the settings only when the result
# records them — a key missing is "unknown" (an older result), not a value — and the gate
# calls two evaluations that differ in one of them not comparable (`gate.compare`).
# Since session 24 also the scoring code (`scorer_sha256`, `eval.core.scorer_sha256`): a result
# scored by older, more lenient checkers is not comparable with one scored by today's.
LIKE_SETTINGS = (
    "tokenizer_sha256",
    "scorer_sha256",
    "token_healing",
    "max_tokens_rule",
    "item_max_tokens",
)
# The suites each is recorded for (None: every suite); where one of them lacks it, the
# comparison says it could not check it.
LIKE_SETTING_SUITES: dict[str, tuple[str, ...] | None] = {
    "tokenizer_sha256": None,
    "scorer_sha256": None,
    "token_healing": ("humaneval", "completion"),
    "max_tokens_rule": ("problems",),
    "item_max_tokens": ("problems", "heldout", "heldout_phrasing", "val"),
}


def cap_cell(item: Item) -> str:
    """The key of `item`'s budget in `item_max_tokens` when its whole cell shares one."""
    return f"cell:{item.family}/t{item.tier}" if item.family else f"item:{item.item_id}"


def item_cap(caps: dict[str, Any], item: Item) -> Any:
    """`item`'s `max_tokens` from an `item_max_tokens` map (see `item_caps`)."""
    return caps.get(f"item:{item.item_id}", caps.get(cap_cell(item)))


def item_caps(pairs: list[tuple[Item, Any]]) -> dict[str, Any]:
    """`item_max_tokens`: each item's budget, one entry per family x tier cell when the cell's
    items share it (they do: budgets are sized per cell), else one per item.

    Why kept: a cell's budget is sized from reference solutions in the model's tokens, so a
    re-run with another margin or tokenizer gives other budgets under the same `max_tokens`
    setting (None: per cell); compared only on the items both evaluations share."""
    cells: dict[str, list[tuple[Item, Any]]] = {}
    for it, cap in pairs:
        cells.setdefault(cap_cell(it), []).append((it, cap))
    out: dict[str, Any] = {}
    for key, group in cells.items():
        if len({json.dumps(c) for _, c in group}) == 1:
            out[key] = group[0][1]
        else:
            out.update((f"item:{it.item_id}", c) for it, c in group)
    return out


def like_settings(result: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The `LIKE_SETTINGS` a result records (but `item_max_tokens`): from the result itself or
    its suite body (`body`: a `run_eval` result's `tasks`)."""
    out = {}
    for k in ("tokenizer_sha256", "scorer_sha256", "token_healing", "max_tokens_rule"):
        for where in (result, body):
            if k in where:
                out[k] = where[k]
                break
    return out


SUITE_FORMAT = "hillclimb-suite-v1"  # eval.suites (HumanEval, IFEval, ...): one suite per file
Parsed = dict[str, tuple[dict[str, Any], dict[str, Any], list[Item]]]


def parse_result(result: Any, source: str) -> Parsed:
    """suite → (summary, settings, items) from one evaluation result: a `run_eval` result (one
    suite per split) or a standard-suite result (`hillclimb eval --suite S`: one suite, S).
    `HillclimbError` when there are no item-level results or they disagree with the totals."""
    if isinstance(result, dict) and result.get("format") == SUITE_FORMAT:
        return parse_suite_result(result, source)
    return parse_task_result(result, source)


def _bad(source: str, why: str) -> HillclimbError:
    return HillclimbError(f"{source}: not a usable evaluation result: {why}")


def _score(source: str, iid: str, compute: Callable[[], Any]) -> float:
    """An item's score (a pass rate over samples) checked to be a number in [0, 1].

    Why: the registry stores it as REAL NOT NULL — SQLite stores NaN as NULL, so a NaN failed
    as an IntegrityError traceback — and a hand-edited `samples: "0"` divided by zero; inf or
    a rate above 1 is no pass rate at all."""
    try:
        x = float(compute())
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise _bad(source, f"item {iid}: its score is not a number ({exc})") from None
    if not 0.0 <= x <= 1.0:  # False for NaN too
        raise _bad(source, f"item {iid}: its score {x!r} is not a pass rate in [0, 1]")
    return x


def parse_suite_result(result: dict[str, Any], source: str) -> Parsed:
    name, raw = result.get("suite"), result.get("items")
    if not isinstance(name, str) or not name or ":" in name:
        raise _bad(source, f"bad suite name {name!r}")
    if not isinstance(raw, list) or not raw:
        raise _bad(source, "it has no item-level results (`items`)")
    items: list[Item] = []
    caps: list[tuple[Item, Any]] = []
    seen: set[str] = set()
    for i, it in enumerate(raw):
        if not isinstance(it, dict) or "id" not in it or not isinstance(it.get("passed"), bool):
            raise _bad(source, f"item {i} needs an id and passed: true/false")
        iid = str(it["id"])
        if iid in seen:
            raise _bad(source, f"item {iid} appears twice")
        seen.add(iid)
        score = float(it["passed"])
        if it.get("samples"):
            score = _score(
                source, iid, lambda it=it: float(it.get("samples_passed", 0)) / it["samples"]
            )
        fam, tier = _group(it)
        items.append(Item(iid, fam, tier, _kind(fam), it["passed"], score))
        if "max_tokens" in it:
            caps.append((items[-1], it["max_tokens"]))
    correct = sum(it.passed for it in items)
    st = result.get("settings") if isinstance(result.get("settings"), dict) else {}
    settings = {k: st.get(k) for k in ("max_tokens", "form", "timeout_s")}
    settings.update(like_settings(result, result))
    if caps:
        settings["item_max_tokens"] = item_caps(caps)
    if name in SEEDED_SUITES:
        settings["item_seed"] = st.get("seed")
    summary = {
        "metric": "greedy pass rate",
        "n": len(items),
        "correct": correct,
        "accuracy": correct / len(items),
        "metrics": result.get("metrics") or {},
        "model": result.get("model"),
        "backend": result.get("backend"),
    }
    return {name: (summary, settings, items)}


def _group(it: dict[str, Any]) -> tuple[str | None, int | None]:
    """(family, tier) of a suite item: its `category` (adversarial) or `family` (the problems
    suite), and its `tier` (problems, completion).

    Why: only `category` was read, so a problems-suite result lost every family, tier and kind,
    and `registry compare --suite problems:arith` (or `:code`, `:t2`) matched no item."""
    fam = it.get("category") or it.get("family")
    tier = it.get("tier")
    ok = isinstance(tier, int) and not isinstance(tier, bool)
    return (fam if isinstance(fam, str) else None), (tier if ok else None)


def _kind(family: str | None) -> str | None:
    """The kind filter of a generator family (reasoning, code, heldout_family); None else."""
    from hillclimb import problems as P

    if family in P.HELDOUT_FAMILIES:
        return "heldout_family"
    return P.FAMILIES.get(family) if isinstance(family, str) else None


def parse_task_result(result: Any, source: str) -> Parsed:
    """The `run_eval` case of `parse_result`: one suite per evaluation split."""

    def bad(why: str) -> HillclimbError:
        return _bad(source, why)

    if not isinstance(result, dict):
        raise bad("expected a JSON object")
    tasks = result.get("tasks")
    if not isinstance(tasks, dict):
        raise bad("it has no task results (`tasks` is missing or null; bits/byte only?)")
    raw_items = tasks.get("items")
    if not isinstance(raw_items, list):
        raise bad(
            "it has no item-level results (`tasks.items`); it was written by an older "
            "`hillclimb eval` — evaluate again"
        )
    splits = tasks.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise bad("`tasks.splits` is missing")
    st = tasks.get("settings") if isinstance(tasks.get("settings"), dict) else {}
    settings = {k: st.get(k) for k in OUTCOME_SETTINGS}
    settings.update(like_settings(result, tasks))
    by_split: dict[str, list[Item]] = {s: [] for s in splits}
    caps: dict[str, list[tuple[Item, Any]]] = {s: [] for s in splits}
    seen: set[tuple[str, str]] = set()
    for i, it in enumerate(raw_items):
        try:
            split, iid, fam = str(it["split"]), str(it["id"]), it.get("family")
            tier = int(it["tier"]) if it.get("tier") is not None else None
            passed = it["passed"]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"item {i} is malformed ({type(exc).__name__}: {exc})") from None
        if not isinstance(passed, bool):
            raise bad(f"item {i} ({iid}): `passed` must be true/false, got {passed!r}")
        score = _score(source, iid, lambda it=it, p=passed: it.get("sample_pass_rate", float(p)))
        if split not in by_split:
            raise bad(f"item {iid} is in split {split!r}, which the result does not report")
        if (split, iid) in seen:
            raise bad(f"item {iid} appears twice in split {split!r}")
        seen.add((split, iid))
        by_split[split].append(Item(iid, fam, tier, _kind(fam), passed, score))
        if "max_tokens" in it:
            caps[split].append((by_split[split][-1], it["max_tokens"]))
    out: dict[str, tuple[dict[str, Any], dict[str, Any], list[Item]]] = {}
    for s, rec in splits.items():
        items = by_split[s]
        try:
            n, correct = int(rec["n"]), int(rec["correct"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"split {s!r} has no n/correct totals") from None
        if n != len(items) or correct != sum(it.passed for it in items):
            raise bad(
                f"split {s!r} reports {correct}/{n} correct but its items say "
                f"{sum(it.passed for it in items)}/{len(items)}"
            )
        if not items:
            raise bad(f"split {s!r} has no items")
        summary = {
            "metric": "greedy accuracy",
            "n": n,
            "correct": correct,
            "accuracy": correct / n,
            "by_kind_tier": rec.get("by_kind_tier") or {},
            "by_family_tier": {
                f: {t: c.get("accuracy") for t, c in cells.items()}
                for f, cells in (rec.get("by_family_tier") or {}).items()
            },
            "model": result.get("model"),
            "preset": result.get("preset"),
        }
        split_settings = (
            {**settings, "item_max_tokens": item_caps(caps[s])} if caps[s] else settings
        )
        out[s] = (summary, split_settings, items)
    return out
