"""Outside checks (session 22, climb2): a user's own recipe and SFT data through the climb.

What a user writes after the smoke climb: typos in keys and in per-model table names, one model
only, odd-but-legal `[sft_data]` values, FIM for a language named their own way, and their own
SFT data — hand-written JSONL for `hillclimb sft --data`, or a `telemetry export` fed back
through `[sft_data] flywheel`. Every refusal must come at load (or name the record), never after
pre-training has run. No model is trained here: every test takes a second or two.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hillclimb.errors import ConfigError, HillclimbError


def _smoke_raw() -> dict[str, Any]:
    from hillclimb.climb.climb_recipe import resolve_recipe_path

    return tomllib.loads(resolve_recipe_path("smoke").read_text())


def _recipe(raw: dict[str, Any], path: Path):
    from hillclimb.climb.climb_recipe import parse_recipe

    path.touch()
    return parse_recipe(raw, path)


# ---- typos in a recipe's keys ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "key", "said"),
    [
        (
            "pretrain",
            "stps",
            r"\[pretrain\] for code-flash: unknown TrainConfig keys: \['stps'\].*"
            r"'steps'",
        ),
        ("sft", "warmup_step", r"\[sft\] for code-flash: .*\['warmup_step'\].*'warmup_steps'"),
        ("rl", "group_sise", r"\[rl\] for code-flash: .*\['group_sise'\].*'group_size'"),
        ("sft_data", "tool_example", r"\['tool_example'\].*did you mean 'tool_examples'"),
        ("eval", "n_per_teir", r"\[eval\]: unknown key\(s\) \['n_per_teir'\].*'n_per_tier'"),
        ("tokenizer", "vocab", r"\[tokenizer\]: unknown key\(s\) \['vocab'\].*'vocab_size'"),
        ("climb", "sed", r"\[climb\]: unknown key\(s\) \['sed'\].*'seed'"),
    ],
)
def test_a_misspelt_key_is_refused_naming_the_nearest_valid_one(tmp_path, table, key, said):
    """`[pretrain] stps = 3` was refused as "unknown TrainConfig keys: ['stps']" — no valid key
    named — and `[sft_data] tool_example` with the table's thirteen keys to read through. Now
    every table names the nearest valid key."""
    raw = _smoke_raw()
    raw.setdefault(table, {})[key] = 3
    with pytest.raises(ConfigError, match=said) as exc:
        _recipe(raw, tmp_path / "mine.toml")
    assert "did you mean" in str(exc.value)


@pytest.mark.parametrize("table", ["pretrain", "sft", "sft_data", "rl"])
def test_a_per_model_table_for_no_model_of_the_recipe_is_named_as_such(tmp_path, table):
    """`[sft.codeflash]` (a typo of the model's name) was "unknown SFTConfig keys:
    ['codeflash']" — as if the user had misspelt a field — and a one-model recipe that kept the
    smoke recipe's `[sft_data.code-flash]` got the same message. Now the table is named as a
    per-model table for a model the recipe does not have, with the nearest model name."""
    raw = _smoke_raw()
    raw[table]["codeflash"] = {"seed": 1}
    with pytest.raises(ConfigError, match=rf"\[{table}\.codeflash\]: 'codeflash' is not a model .*"
                       r"did you mean \[" + table + r"\.code-flash\]"):  # fmt: skip
        _recipe(raw, tmp_path / "mine.toml")
    one = _smoke_raw()  # one model only, the smoke recipe's code-flash tables left in
    del one["models"]["code-flash"], one["rl_harness"]
    one["eval"]["suites"] = []
    with pytest.raises(ConfigError, match=r"\[sft_data\.code-flash\]: 'code-flash' is not a model"):
        _recipe(one, tmp_path / "mine.toml")
    del one["sft_data"]["code-flash"]
    assert _recipe(one, tmp_path / "mine.toml").model_names == ["thinking"]


def test_a_table_valued_field_is_still_a_field(tmp_path):
    """`model_overrides` is a table that is a field, not a model: still read as one."""
    raw = _smoke_raw()
    raw["sft"]["model_overrides"] = {"rope_theta": 5000.0}
    assert _recipe(raw, tmp_path / "mine.toml").sft["thinking"]["model_overrides"]


# ---- [sft_data] values knowable at load -------------------------------------------------------------
def test_tool_examples_without_tiers_are_refused_at_load(tmp_path):
    """Tool episodes are `code_bugfix` problems of `[sft_data] tiers`; with `tiers = []` (no chat
    problems wanted) `tool_examples = 2` made none, silently — and a model with nothing else
    passed the load check, built the data, trained the tokenizer and pre-trained, then failed
    in sft-data as "produced no examples"."""
    raw = _smoke_raw()
    raw["sft_data"]["tiers"] = []
    raw["sft_data"]["thinking"] = {"text_examples": 2}
    with pytest.raises(ConfigError, match=r"\[sft_data\] for code-flash: tool_examples = 2 "
                       r"needs tiers"):  # fmt: skip
        _recipe(raw, tmp_path / "mine.toml")
    raw["sft_data"]["code-flash"]["tool_examples"] = 0  # FIM and text examples alone: fine
    assert _recipe(raw, tmp_path / "mine.toml").sft_data["code-flash"]["tiers"] == []


@pytest.mark.parametrize(
    ("langs", "said"),
    [(["Python"], "did you mean 'python'"), (["py"], "'py'"), (["klingon"], "'klingon'")],
)
def test_a_fim_language_no_source_can_have_is_refused_at_load(tmp_path, langs, said):
    """`fim_languages = ["Python"]` (the corpus labels it `python`) passed the load; the sft-data
    stage, after the data build and both pre-trainings, failed as "no code documents in the
    corpus for FIM examples". Languages come from file extensions (tree, git, … sources) or
    from the generators; only jsonl / parquet records carry labels of their own."""
    raw = _smoke_raw()
    raw["sft_data"]["code-flash"]["fim_languages"] = langs
    with pytest.raises(ConfigError, match=r"\[sft_data\] for code-flash: fim_languages .*" + said):
        _recipe(raw, tmp_path / "mine.toml")
    raw["sft_data"]["code-flash"]["fim_languages"] = ["python", "rust"]  # labels a tree can have
    assert _recipe(raw, tmp_path / "mine.toml").sft_data["code-flash"]["fim_languages"]
    # a jsonl source may label its records as it likes: any name is taken
    (tmp_path / "mine.jsonl").write_text('{"text": "x", "language": "Python"}\n')
    raw["data"]["sources"].append(
        {"kind": "jsonl", "name": "mine", "path": "mine.jsonl", "license": "MIT"}
    )
    raw["sft_data"]["code-flash"]["fim_languages"] = ["Python"]
    assert _recipe(raw, tmp_path / "mine.toml").sft_data["code-flash"]["fim_languages"]


# ---- a user's SFT JSONL -------------------------------------------------------------------------------
GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def test_a_non_utf8_byte_is_reported_on_its_own_line(tmp_path):
    """A Latin-1 byte on line 51 of a user's SFT file was reported as line 1 (the reader
    decoded the file in 8 KB chunks and counted the lines it had returned)."""
    from hillclimb.train.sft_data import read_jsonl

    good = (json.dumps(GOOD) + "\n").encode()
    f = tmp_path / "mine.jsonl"
    f.write_bytes(good * 50 + b'{"text": "caf\xe9"}\n' + good * 5)
    with pytest.raises(HillclimbError, match=r"mine\.jsonl:51: .*not UTF-8"):
        read_jsonl([f])
    # CRLF line ends, a byte-order mark and lone-CR line ends are still read
    f.write_bytes(b"\xef\xbb\xbf" + good.replace(b"\n", b"\r\n") * 2 + good.replace(b"\n", b"\r"))
    assert len(read_jsonl([f])) == 3


def test_a_chat_record_without_an_assistant_turn_is_refused_naming_its_line(tmp_path):
    """A record with a system and a user turn only passed the reader and failed in the encoder
    after the model was loaded, as "chat example has no assistant message to learn from" —
    which record, of which file, not said."""
    from hillclimb.train.sft_data import read_jsonl

    f = tmp_path / "mine.jsonl"
    only_user = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    f.write_text(json.dumps(GOOD) + "\n" + json.dumps(only_user) + "\n")
    with pytest.raises(HillclimbError, match=r"mine\.jsonl:2: no assistant message to learn"):
        read_jsonl([f])


def test_roles_in_any_order_and_think_blocks_are_kept(tmp_path):
    """What the server accepts, SFT takes too: system turns anywhere, a tool result with no
    call before it, an assistant turn first, reasoning, tool calls; duplicates are kept (the
    validation split keeps copies on one side)."""
    from hillclimb.tokenizer.io import bytelevel_tokenizer
    from hillclimb.train.sft_data import encode_record, read_jsonl

    call = {"function": {"name": "read_file", "arguments": {"path": "a.py"}}}
    recs = [
        GOOD,
        GOOD,
        {"messages": [{"role": "assistant", "content": "first"}, {"role": "user", "content": "u"},
                      {"role": "system", "content": "late"}]},
        {"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": None,
                                                         "tool_calls": [call]}]},
        {"messages": [{"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a", "reasoning_content": "think"}]},
    ]  # fmt: skip
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    tok = bytelevel_tokenizer()
    got = [encode_record(tok, r) for r in read_jsonl([f])]
    assert len(got) == 5 and all(e.n_targets > 0 for e in got)


# ---- the flywheel: a telemetry export as SFT data ----------------------------------------------------
def _export(d: Path, lines: list[str]) -> Path:
    d.mkdir(parents=True)
    (d / "export.json").write_text('{"consent_attested_by": "test fixture"}')
    (d / "sft.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    (d / "rl_prompts.jsonl").write_text('{"prompt": "p\u2028q"}\n', encoding="utf-8")
    return d


def _api(content: str, rid: str) -> str:
    rec = {"messages": [{"role": "user", "content": "q"},
                        {"role": "assistant", "content": content}],
           "meta": {"source": "api", "consent": True, "request_id": rid, "account": "a"}}  # fmt: skip
    return json.dumps(rec, ensure_ascii=False)  # as `telemetry export` writes API answers


def test_an_exported_answer_holding_a_unicode_line_separator_is_one_record(tmp_path):
    """`telemetry export` writes API answers with `ensure_ascii=False`, so an answer holding
    U+2028 (text pasted from a web page, a JavaScript string) or U+0085 has it raw in its line.
    The flywheel split the file with `str.splitlines`, which breaks lines there too: the halves
    were "not JSON" and the climb failed in sft-data, after pre-training. Now a line is what
    ends in a newline, as for every other JSONL reader."""
    from hillclimb.climb.flywheel import flywheel_records

    d = _export(tmp_path / "exp", [_api("a\u2028b", "r1"), _api("c\x85d\u2029e", "r2")])
    recs, counts = flywheel_records([str(d)])
    assert [r["messages"][1]["content"] for r in recs] == ["a\u2028b", "c\x85d\u2029e"]
    assert counts["sft_examples"] == 2 and counts["rl_prompts_available"] == 1


def test_a_damaged_export_line_is_refused_at_load_naming_its_line(tmp_path):
    """A line of an export that is not JSON, or not UTF-8, is refused (the export is damaged or
    not an export) — but it was found only by the sft-data stage, after the data build and both
    pre-trainings; and a Latin-1 byte was reported for the whole file. Now the recipe load reads
    the exports and names the line."""
    from hillclimb.climb.flywheel import flywheel_records

    d = _export(tmp_path / "exp", [_api("ok", "r1"), _api("ok2", "r2"), '{"messages": ['])
    raw = _smoke_raw()
    raw["sft_data"]["code-flash"]["flywheel"] = ["exp"]
    with pytest.raises(ConfigError, match=r"\[sft_data\] for code-flash: flywheel export .*"
                       r"sft\.jsonl:3: not JSON"):  # fmt: skip
        _recipe(raw, tmp_path / "mine.toml")
    (d / "sft.jsonl").write_bytes(
        (_api("ok", "r1") + "\n" + _api("ok2", "r2") + "\n").encode() + b'{"text": "caf\xe9"}\n'
    )
    with pytest.raises(ConfigError, match=r"sft\.jsonl:3: not UTF-8"):
        _recipe(raw, tmp_path / "mine.toml")
    with pytest.raises(ConfigError, match=r"sft\.jsonl:3: not UTF-8"):
        flywheel_records([str(d)])
    (d / "sft.jsonl").write_text(_api("ok", "r1") + "\n")
    assert _recipe(raw, tmp_path / "mine.toml").sft_data["code-flash"]["flywheel"]


@pytest.mark.parametrize("where", ["suites", "rl_harness"])
def test_a_misspelt_model_in_eval_suites_or_rl_harness_names_the_model(tmp_path, where):
    """`[eval] suites = {codeflash = [...]}` and `[rl_harness.codeflash]` were refused without
    the model meant; they now name it."""
    raw = _smoke_raw()
    if where == "suites":
        raw["eval"]["suites"] = {"codeflash": ["completion"]}
    else:
        raw["rl_harness"]["codeflash"] = raw["rl_harness"].pop("code-flash")
    with pytest.raises(ConfigError, match=r"not (a model|models).*did you mean.*code-flash"):
        _recipe(raw, tmp_path / "mine.toml")


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda m: m.update(overrides={"n_layer": 2}),
         r"\[models\.code-flash\]\.overrides: unknown ModelConfig fields: \['n_layer'\].*'n_layers'"),
        (lambda m: m.update(overrides={"tie_embeddings": "yes"}),
         r"\[models\.code-flash\]\.overrides: .*tie_embeddings must be true or false"),
        (lambda m: m.update(preset="code-flash-mciro"),
         r"\[models\.code-flash\]: unknown preset 'code-flash-mciro' \(did you mean "
         r"'code-flash-micro'\?\)"),
    ],
)  # fmt: skip
def test_a_model_table_error_names_the_model_and_the_nearest_field(tmp_path, edit, said):
    """`[models.code-flash] overrides = { n_layer = 2 }` was "unknown model config keys:
    ['n_layer']" — no table, no model, no `n_layers` — and a misspelt preset or a wrong value
    did not say which model's table held it."""
    raw = _smoke_raw()
    edit(raw["models"]["code-flash"])
    with pytest.raises(ConfigError, match=said):
        _recipe(raw, tmp_path / "mine.toml")


def test_a_tier_listed_twice_in_sft_data_is_refused(tmp_path):
    """`[sft_data] tiers = [1, 1]`, `n = [4, 8]` reads as twelve tier-1 problems; the generator
    was called twice with the same seed, so it made the first four twice: 12 records, 8
    distinct. Eval refuses a repeated tier for the same reason; so does `[sft_data]` now."""
    from hillclimb.train.sft_data import problem_examples

    spec = {"families": ["arith_chain"], "tiers": [1, 1], "n": [4, 8]}
    recs = problem_examples(spec, 0)
    assert len(recs) == 12 and len({r["source"] for r in recs}) == 8  # what it made
    raw = _smoke_raw()
    raw["sft_data"].update(spec)
    with pytest.raises(ConfigError, match=r"\[sft_data\] for code-flash: tiers lists \[1\] more"):
        _recipe(raw, tmp_path / "mine.toml")
    raw["sft_data"].update(tiers=[1], n=[12], families=["arith", "arith"])
    with pytest.raises(ConfigError, match=r"families lists \['arith'\] more than once"):
        _recipe(raw, tmp_path / "mine.toml")
