"""Outside checks (session 21): a user's own recipe and corpus through the climb.

What a user does after the smoke climb: points `[data]` at a directory of their own, reorders or
adds tables between runs, writes keys the climb does not read, and reads the report. No model is
trained here: a finished climb is stood in for by stage directories with valid markers (the
runner decides what to skip, redo or refuse from the markers alone), so every test takes
seconds.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hillclimb.cli import main
from hillclimb.errors import HillclimbError


def _smoke_raw() -> dict[str, Any]:
    from hillclimb.climb.climb_recipe import resolve_recipe_path

    return tomllib.loads(resolve_recipe_path("smoke").read_text())


def _recipe(raw: dict[str, Any], path: Path):
    """`raw` parsed as the recipe at `path` (the file exists: the climb copies it into RUN)."""
    from hillclimb.climb.climb_recipe import parse_recipe

    path.touch()
    return parse_recipe(raw, path)


def _fake_finished_run(run: Path, recipe) -> list[str]:
    """A run directory as a finished `--no-registry` climb of `recipe` leaves it, as far as the
    runner reads it: `climb.json` and one directory per planned stage with a valid marker."""
    from hillclimb.climb.runner import plan
    from hillclimb.climb.state import MARKER, MARKER_FORMAT, RUN_FILE

    run.mkdir(parents=True)
    (run / RUN_FILE).write_text(json.dumps({"format": "hillclimb-climb-run-v1"}))
    names = []
    for s in plan(recipe):
        d = run / s.dirname
        d.mkdir()
        marker = {"format": MARKER_FORMAT, "stage": s.key, "hash": s.hash, "section": s.section,
                  "parents": s.parents, "seconds": 1.0, "finished": "2026-01-01T00:00:00+00:00",
                  "result": {"skipped": "registry disabled (--no-registry)"}
                  if s.key == "registry" else {}}  # fmt: skip
        (d / MARKER).write_text(json.dumps(marker))
        names.append(s.dirname)
    return names


def _swap_models(raw: dict[str, Any]) -> dict[str, Any]:
    raw = dict(raw)
    raw["models"] = dict(reversed(list(raw["models"].items())))
    return raw


# ---- a stage list that changed between runs ------------------------------------------------------
def test_renumbered_stages_are_refused_not_mixed(tmp_path, monkeypatch):
    """Reordering `[models]` after a climb renumbers its stages (`04-pretrain-code-flash` becomes
    `05-pretrain-code-flash`). The eval stage's mismatch then suggested `--restart-from eval`,
    which re-ran everything from pre-training into the new names and left the old directories
    beside them: 04-pretrain-code-flash and 05-pretrain-code-flash, 07-sft-code-flash and
    08-sft-code-flash…, and the summary's stage times mixed the two layouts. Now: refused
    before any work, naming the stale directories and the stage to restart from; that restart
    removes them."""
    from hillclimb.climb.runner import run_climb

    path = tmp_path / "mine.toml"
    run = tmp_path / "run"
    old = _fake_finished_run(run, _recipe(_smoke_raw(), path))
    swapped = _recipe(_swap_models(_smoke_raw()), path)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(HillclimbError, match=r"04-pretrain-code-flash.*--restart-from pretrain-th"):
        run_climb(swapped, run, print_summary=False, registry=False)
    with pytest.raises(HillclimbError, match=r"does not plan.*--restart-from pretrain-thinking"):
        run_climb(swapped, run, restart_from="eval", print_summary=False, registry=False)
    assert sorted(p.name for p in run.iterdir()) == before  # refused: nothing touched
    # the suggested restart removes the stale layout with the stages it redoes (the stage
    # itself is stopped by the test hook before any training)
    monkeypatch.setenv("HILLCLIMB_CLIMB_FAULT", "fail:pretrain-thinking")
    with pytest.raises(HillclimbError, match="injected failure"):
        run_climb(swapped, run, restart_from="pretrain-thinking", print_summary=False,
                  registry=False)  # fmt: skip
    left = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert left == ["01-data", "02-tokenizer", "03-shards", "04-pretrain-thinking"]
    assert "04-pretrain-code-flash" in old


def test_adding_rl_after_a_climb_asks_for_a_restart(tmp_path):
    """A climb without `[rl]`, then the same recipe with it: `09-eval` and `10-registry` of the
    first run would have stayed beside the new `11-eval` and `12-registry`."""
    from hillclimb.climb.runner import run_climb

    path = tmp_path / "mine.toml"
    no_rl = _smoke_raw()
    del no_rl["rl"], no_rl["rl_harness"]
    run = tmp_path / "run"
    assert "09-eval" in _fake_finished_run(run, _recipe(no_rl, path))
    with pytest.raises(HillclimbError, match=r"09-eval, 10-registry.*--restart-from rl-code-flash"):
        run_climb(_recipe(_smoke_raw(), path), run, print_summary=False, registry=False)
    # the unchanged recipe still finds its finished climb
    s = run_climb(_recipe(no_rl, path), run, print_summary=False, registry=False)
    assert s["stages_run"] == []


# ---- keys the climb does not read ---------------------------------------------------------------
def test_keys_in_the_report_table_are_refused(tmp_path, capsys):
    """`[report]` was accepted with any keys and read by nothing: `title = "mine"` or
    `samples = 3` changed nothing, silently (every other table refuses unknown keys)."""
    from hillclimb.errors import ConfigError

    raw = _smoke_raw()
    raw["report"] = {"samples": 3}
    with pytest.raises(ConfigError, match=r"\[report\]: unknown key\(s\) \['samples'\]"):
        _recipe(raw, tmp_path / "mine.toml")
    raw["report"] = {}  # an empty table stays valid (and keeps the report stage's hash)
    empty = _recipe(raw, tmp_path / "mine.toml")
    from hillclimb.climb.runner import plan

    assert plan(empty)[-1].hash == plan(_recipe(_smoke_raw(), tmp_path / "mine.toml"))[-1].hash
    from hillclimb.climb.climb_recipe import resolve_recipe_path

    toml = tmp_path / "r.toml"
    toml.write_text(resolve_recipe_path("smoke").read_text() + '\n[report]\ntitle = "mine"\n')
    assert main(["climb", "--recipe", str(toml), "--out", str(tmp_path / "o")]) == 2
    assert "[report]: unknown key(s) ['title']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- numbers in the report -----------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 4])
def test_the_report_states_the_cell_size_it_evaluated(tmp_path, n):
    """report.md said "cells of 20 items move by 5 points per item" whatever `[eval] n_per_tier`
    was: on a recipe with one problem per cell (the smoke recipe's) one item moves a cell by 100
    points. The sentence now reads the evaluations' own cell size."""
    from hillclimb.climb.report import write_report
    from hillclimb.climb.runner import plan
    from hillclimb.climb.state import Climb
    from test_report_html import _eval_rec

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    c = Climb(recipe=recipe, out=run, stages=plan(recipe))
    for m in recipe.model_names:
        rec = {"model": m, "pretrain": _eval_rec(m, None), "sft": _eval_rec(m, 0.3)}
        rec["sft"]["tasks"]["settings"]["n_per_tier"] = n
        (c.dir("eval") / f"{m}.json").write_text(json.dumps(rec))
    write_report(c, run / "report")
    md = (run / "report" / "report.md").read_text()
    assert "cells of 20 items" not in md
    step = "100" if n == 1 else "25"
    assert f"({n} item{'s' if n > 1 else ''} per cell: {step})" in md


# ---- a user's corpus path -------------------------------------------------------------------------
def _own_corpus_recipe(tmp_path: Path, corpus: str) -> Path:
    """The smoke recipe with its `{hillclimb}` source replaced by the user's directory `corpus`
    (as written in the recipe: relative paths are the recipe directory's)."""
    from hillclimb.climb.climb_recipe import resolve_recipe_path

    text = resolve_recipe_path("smoke").read_text()
    text = text.replace('path = "{hillclimb}"', f'path = "{corpus}"', 1)
    assert corpus in text
    (tmp_path / "recipes").mkdir(exist_ok=True)
    path = tmp_path / "recipes" / "mine.toml"
    path.write_text(text)
    return path


def test_a_missing_corpus_directory_is_refused_before_the_data_build(tmp_path, capsys):
    """A typo in the user's source path (here a relative path written as if from the shell's
    directory, not the recipe's) was an ingest skip `missing_source`: the climb trained and
    evaluated both models on the generators' problems alone and finished with exit 0. Now the
    climb refuses before any stage runs, saying how the path was resolved; a finished climb whose
    corpus moved away afterwards still re-runs (it never reads its sources again)."""
    from hillclimb.climb.climb_recipe import load_recipe
    from hillclimb.climb.runner import run_climb

    (tmp_path / "my corpus").mkdir()
    (tmp_path / "my corpus" / "a.py").write_text("def f():\n    return 1\n")
    recipe = _own_corpus_recipe(tmp_path, "my corpus")  # meant: ../my corpus
    out = tmp_path / "run"
    assert main(["climb", "--recipe", str(recipe), "--out", str(out), "--no-registry"]) == 2
    err = capsys.readouterr().err
    assert "does not exist (the recipe says 'my corpus'" in err and str(recipe.parent) in err
    assert not out.exists()  # refused before anything was written
    # with --restart-from data too
    with pytest.raises(HillclimbError, match="does not exist"):
        run_climb(recipe, out, restart_from="data", print_summary=False)
    # the right relative path loads, and a finished climb no longer needs its sources
    good = load_recipe(_own_corpus_recipe(tmp_path, "../my corpus"))
    assert Path(good.data["sources"][0]["path"]) == tmp_path / "my corpus"
    _fake_finished_run(out, good)
    (tmp_path / "my corpus" / "a.py").unlink()
    (tmp_path / "my corpus").rmdir()
    assert run_climb(good, out, print_summary=False, registry=False)["stages_run"] == []


# ---- options of a re-run ------------------------------------------------------------------------------
def test_a_rerun_with_another_registry_registers_there(tmp_path, monkeypatch):
    """`--registry` is an option, in no stage hash: a climb finished with `--no-registry` and
    re-run with `--registry FILE` skipped its registry stage, registered nothing and printed
    "registry disabled (--no-registry)". Now the registry stage (and the report after it) runs
    again when the target differs, and a re-run with the same target still skips everything."""
    from hillclimb.climb.runner import run_climb

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    assert run_climb(recipe, run, print_summary=False, registry=False)["stages_run"] == []
    monkeypatch.setenv("HILLCLIMB_CLIMB_FAULT", "fail:registry")  # stop it where it would start
    with pytest.raises(HillclimbError, match="injected failure in stage registry"):
        run_climb(recipe, run, print_summary=False, registry=tmp_path / "reg.sqlite")
    events = [json.loads(x) for x in (run / "climb.jsonl").read_text().splitlines()]
    assert [e["stage"] for e in events if e["event"] == "start"] == ["registry"]
    assert not (run / "report").exists()  # the report showed the old registry result


# ---- model fields set in the training tables --------------------------------------------------------
@pytest.mark.slow  # ≈9 s: a data build and two micro pre-trainings
def test_pretrain_model_overrides_reach_the_model_and_its_sft_data(tmp_path, monkeypatch):
    """`[pretrain] model_overrides` passed the recipe's checks (its `max_seq_len` even bounds
    `seq_len` there) and was then replaced by `[models.NAME] overrides` when the stage built its
    config: the model was trained without it, silently. And the SFT examples rendered tools for
    the preset's context, not the trained model's: with a 16k context the harness shows the full
    tool schemas, the SFT data taught the compact ones. The real stages run (micro models, a
    two-file corpus) up to the first SFT, which the test hook stops."""
    from hillclimb.climb.climb_recipe import load_recipe
    from hillclimb.climb.runner import run_climb
    from hillclimb.harness.tools import TOOL_SCHEMAS

    corpus = tmp_path / "my corpus"
    corpus.mkdir()
    (corpus / "a.py").write_text("def add(a, b):\n    return a + b\n" * 20)
    (corpus / "notes.md").write_text("# Notes\n\nSome words about adding numbers.\n" * 20)
    path = _own_corpus_recipe(tmp_path, "../my corpus")
    text = path.read_text().replace(
        "[pretrain]\n", "[pretrain]\nmodel_overrides = { rope_theta = 12345.0 }\n"
    )
    text = text.replace("steps = 16\n", "steps = 2\n", 1).replace("per_tier = 6", "per_tier = 2")
    path.write_text(text + "\n[pretrain.code-flash]\nmodel_overrides = { max_seq_len = 16384 }\n")
    recipe = load_recipe(path)
    monkeypatch.setenv("HILLCLIMB_CLIMB_FAULT", "fail:sft-code-flash")
    with pytest.raises(HillclimbError, match="injected failure"):
        run_climb(recipe, tmp_path / "run", print_summary=False, registry=False)
    for m, ctx in (("code-flash", 16384), ("thinking", 512)):
        final = tmp_path / "run" / f"0{4 if m == 'code-flash' else 5}-pretrain-{m}" / "run"
        cfg = json.loads((final / "final" / "config.json").read_text())
        assert cfg["rope_theta"] == 12345.0 and cfg["max_position_embeddings"] == ctx, m
    tools = [json.loads(x) for x in (tmp_path / "run" / "06-sft-data" / "code-flash.jsonl")
             .read_text().splitlines() if '"kind": "tool"' in x]  # fmt: skip
    assert tools and all(t["tools"] == TOOL_SCHEMAS for t in tools)


def test_an_unknown_model_field_in_pretrain_model_overrides_is_refused(tmp_path):
    """Now that `[pretrain] model_overrides` reaches the model, a field ModelConfig does not have
    is refused at load (it was dropped with the rest)."""
    from hillclimb.errors import ConfigError

    raw = _smoke_raw()
    raw["pretrain"]["model_overrides"] = {"n_expert": 4}
    with pytest.raises(
        ConfigError, match=r"\[pretrain\] for code-flash: model_overrides: .*n_expert"
    ):
        _recipe(raw, tmp_path / "mine.toml")


# ---- the "recipe changed" message -------------------------------------------------------------------
def test_a_changed_source_is_named_by_its_key(tmp_path):
    """Editing one glob of one `[[data.sources]]` entry (or moving the recipe, so its relative
    corpus path resolves elsewhere) printed both whole source lists, every key of every source,
    instead of the key that changed."""
    from hillclimb.climb.climb_recipe import load_recipe
    from hillclimb.climb.runner import run_climb

    (tmp_path / "my corpus").mkdir()
    path = _own_corpus_recipe(tmp_path, "../my corpus")
    run = tmp_path / "run"
    _fake_finished_run(run, load_recipe(path))
    path.write_text(path.read_text().replace('include = ["*.py"]', 'include = ["*.py", "*.c"]'))
    with pytest.raises(HillclimbError) as exc:
        run_climb(path, run, print_summary=False, registry=False)
    msg = str(exc.value)
    assert "data.sources[0].include: ['*.py'] -> ['*.py', '*.c']" in msg
    assert "generators" not in msg and "max_file_bytes" not in msg
    # the recipe moved one directory down: its relative corpus path now means another directory
    (tmp_path / "recipes" / "v2").mkdir()
    moved = tmp_path / "recipes" / "v2" / "mine.toml"
    moved.write_text(path.read_text().replace('include = ["*.py", "*.c"]', 'include = ["*.py"]'))
    with pytest.raises(HillclimbError, match=r"data\.sources\[0\]\.path: '.*/my corpus' -> "):
        run_climb(moved, run, print_summary=False, registry=False)


def test_sft_data_that_makes_no_example_is_refused_at_load(tmp_path):
    """`[sft_data] n = 0` with no tool / FIM / text examples for a model passed the recipe's
    checks; the climb built the data, trained the tokenizer and pre-trained both models, then
    stopped in sft-data ("produced no examples") — minutes or hours later on a real recipe."""
    from hillclimb.errors import ConfigError

    raw = _smoke_raw()
    raw["sft_data"]["n"] = 0
    raw["sft_data"]["code-flash"] = {"fim_examples": 0, "tool_examples": 0, "text_examples": 0}
    with pytest.raises(ConfigError, match=r"\[sft_data\] for code-flash: makes no SFT example"):
        _recipe(raw, tmp_path / "mine.toml")
    raw["sft_data"]["n"], raw["sft_data"]["tiers"] = 4, []  # no tiers: no problem either
    with pytest.raises(ConfigError, match=r"for code-flash: makes no SFT example"):
        _recipe(raw, tmp_path / "mine.toml")
    raw["sft_data"]["code-flash"]["text_examples"] = 1  # thinking has nothing: named
    with pytest.raises(ConfigError, match=r"for thinking: makes no SFT example"):
        _recipe(raw, tmp_path / "mine.toml")


def test_a_rerun_with_the_same_registry_skips_from_any_directory(tmp_path, monkeypatch):
    """The registry stage records its registry as an absolute path, so `--registry reg.sqlite`
    from the same directory is the same registry (skipped) and `--no-registry` keeps what was
    registered; only another file runs the stage again."""
    from hillclimb.climb.runner import run_climb
    from hillclimb.climb.state import MARKER

    recipe = _recipe(_smoke_raw(), tmp_path / "mine.toml")
    run = tmp_path / "run"
    _fake_finished_run(run, recipe)
    marker = next(run.glob(f"*-registry/{MARKER}"))
    rec = json.loads(marker.read_text())
    rec["result"] = {"registry": str(tmp_path / "reg.sqlite"), "models": {}}
    marker.write_text(json.dumps(rec))
    monkeypatch.chdir(tmp_path)
    for reg in (Path("reg.sqlite"), False):
        assert run_climb(recipe, run, print_summary=False, registry=reg)["stages_run"] == []
    monkeypatch.setenv("HILLCLIMB_CLIMB_FAULT", "fail:registry")
    monkeypatch.chdir(run)  # the same relative name from elsewhere is another file
    with pytest.raises(HillclimbError, match="injected failure in stage registry"):
        run_climb(recipe, run, print_summary=False, registry=Path("reg.sqlite"))
