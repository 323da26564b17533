"""Outside checks (session 17): odd-but-legal and malformed inputs to the decontamination
probes, `eval --out`, the evaluation-only harness tasks, the flywheel and the suite baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from hillclimb.errors import ConfigError, HillclimbError

ITEM = (
    "def sum_of_odd_squares(values):\n    '''Return the sum of the squares of the odd numbers "
    "in values, ignoring negative entries and anything that is not an integer.'''\n"
)


# ---- [data.decontaminate] suites ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"suites": ["humaneval", "humaneval"]}, "suites lists \\['humaneval'\\] more than once"),
        ({"problems_seeds": [0, 0]}, "problems_seeds lists \\[0\\] more than once"),
    ],
)
def test_duplicate_suites_or_seeds_are_refused(extra, match):
    """Duplicates doubled the probes and the card's counts (humaneval: 328 items of 164)."""
    from hillclimb.data.config import data_config_from_dict

    with pytest.raises(ConfigError, match=match):
        data_config_from_dict(
            {"sources": [{"kind": "generators", "per_tier": 1}], "decontaminate": extra}
        )


@pytest.mark.parametrize("suite", ["ifeval", "fim"])
def test_seeded_suites_without_seeds_are_refused_not_silently_empty(suite):
    """`problems_seeds = []` gave the ifeval / fim suites no probes at all (card: 0 items)."""
    from hillclimb.data.config import DecontaminateConfig
    from hillclimb.data.decontam import collect_probes

    cfg = DecontaminateConfig(problems_seeds=[], suites=["humaneval", suite])
    cfg.validate()
    with pytest.raises(ConfigError, match=f"suites \\['{suite}'\\] are probed for every seed"):
        collect_probes(cfg)
    collect_probes(DecontaminateConfig(problems_seeds=[], suites=["adversarial"]))  # still fine


# ---- eval --out --------------------------------------------------------------------------------
def _out_args(out: Path, force: bool = False) -> argparse.Namespace:
    return argparse.Namespace(out=str(out), suite="ifeval", force=force)


def test_eval_out_that_cannot_be_written_is_refused_before_the_evaluation(tmp_path):
    """These failed only when the result was written, after the whole evaluation ran, and the
    unprinted result was lost."""
    from hillclimb.eval.cli import _check_out

    (tmp_path / "d" / "ifeval.json").mkdir(parents=True)
    with pytest.raises(HillclimbError, match="is a directory"):
        _check_out(_out_args(tmp_path / "d", force=True))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(HillclimbError, match="symbolic link to nothing"):
        _check_out(_out_args(tmp_path / "dangling"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(HillclimbError, match="is not a directory"):
        _check_out(_out_args(tmp_path / "f" / "sub"))
    _check_out(_out_args(tmp_path / "new" / "deeper"))  # a directory still to be made: fine
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    _check_out(_out_args(tmp_path / "link"))  # a link to a directory: fine


# ---- evaluation-only harness tasks ---------------------------------------------------------------
def test_heldout_reason_on_hand_edited_meta():
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS, heldout_reason

    held = sorted(HELDOUT_PROJECTS)[0]
    assert "held-out project" in heldout_reason({"projects": held})  # was None
    for meta in (
        {"projects": [held, {}]},  # was a TypeError (unhashable)
        {"projects": [["x"]]},
        {"template": ["grep_errors"]},
        {"template": {"a": 1}},
        {"module": "a.py", "function": "f", "line": "12"},  # was None: the site went unchecked
        {"module": "a.py", "function": "f", "line": True},
        "not a table",
    ):
        assert heldout_reason(meta), meta
    assert heldout_reason({"projects": ["no-such-project"], "template": None}) is None
    assert heldout_reason({}) is None and heldout_reason(None) is None


def test_flywheel_decontaminates_every_trained_field(tmp_path):
    """An API record whose evaluation item sat in `text` or `fim` (what `encode_record` trains
    on when a record has no messages), or in a tool schema, was admitted; `tool_calls: 5` was a
    TypeError."""
    from hillclimb.climb.flywheel import flywheel_records
    from hillclimb.data.decontam import Probe, ProbeIndex

    index = ProbeIndex.build([Probe("he/1", "suite:humaneval", ITEM)], 13, 8)
    api = {"source": "api", "consent": True}
    clean = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    recs = [
        {"text": ITEM, "meta": api},
        {"fim": {"prefix": ITEM, "middle": "    return 0\n", "suffix": ""}, "meta": api},
        {"messages": clean, "tools": [{"function": {"description": ITEM}}], "meta": api},
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": ITEM}]},
                {"role": "assistant", "content": "ok"},
            ],
            "meta": api,
        },  # fmt: skip
        {
            "messages": [
                *clean,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"function": {"name": "write", "arguments": json.dumps({"code": ITEM})}}
                    ],
                },
            ],
            "meta": api,
        },  # fmt: skip
        {"messages": [{"role": "assistant", "content": "x", "tool_calls": 5}], "meta": api},
        {"messages": clean, "meta": api},
    ]
    d = tmp_path / "export"
    d.mkdir()
    (d / "export.json").write_text('{"consent_attested_by": "test fixture"}')
    (d / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out, counts = flywheel_records([str(d)], index)
    # `tool_calls: 5` is refused as malformed (session 20): SFT cannot train on it
    assert counts["refused"] == {"contaminated": 5, "malformed": 1}
    assert len(out) == 1 and out[-1]["messages"] == clean


# ---- no-training baselines -----------------------------------------------------------------------
def test_trivial_baseline_of_a_prompt_without_a_final_newline():
    """`return EXPR` was glued to the docstring line: a syntax error, so a test that the
    identity passes read as a 0% baseline."""
    from hillclimb.eval.humaneval import trivial_item_baseline
    from hillclimb.eval.suite_common import SuiteConfig

    test = "def check(f):\n    assert f(5) == 5\n    assert f(7) == 7\n"
    item = {"task_id": "t", "prompt": "def f(x):\n    '''x'''", "entry_point": "f", "test": test}
    b = trivial_item_baseline([item], SuiteConfig(bootstrap=10))
    assert b["pass@1"]["value"] == 1.0 and b["items_passed_by_some_trivial_answer"] == 1


def test_suite_baseline_tolerates_odd_baseline_records():
    from hillclimb.eval.suite_common import suite_baseline

    assert suite_baseline({}) == {} and suite_baseline({"baseline": None}) == {}
    assert suite_baseline({"baseline": {"exact_stripped": 0.25, "what": "x"}}) == {
        "exact_stripped": 0.25
    }
    # a value print_suite could not format ("{None:.1%}" was a TypeError) is left out
    assert suite_baseline({"baseline": {"a": {"value": None}, "b": {"value": 0.5}}}) == {"b": 0.5}


def test_eval_out_empty_string_is_refused(capsys):
    from hillclimb.cli import main

    assert main(["eval", "--model", "nowhere", "--suite", "ifeval", "--out", ""]) == 2
    assert "--out needs a directory name" in capsys.readouterr().err
