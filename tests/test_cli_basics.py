"""CLI contract basics: help everywhere, init → load_model, clean errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import hillclimb
from hillclimb.cli import build_parser, main


def _leaf_parsers(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _leaf_parsers(sub, (*prefix, name))


def test_help_everywhere(capsys):
    parser = build_parser()
    paths = [p for p, _ in _leaf_parsers(parser)]
    assert ("init",) in paths and ("model", "info") in paths
    for path in paths:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0, path
    capsys.readouterr()


def test_console_entry_point_runs():
    r = subprocess.run(
        [sys.executable, "-m", "hillclimb", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "init" in r.stdout


def test_init_then_load(tmp_path, capsys):
    out = tmp_path / "ck"
    assert main(["init", "--preset", "code-flash-micro", "--out", str(out), "--seed", "3"]) == 0
    model = hillclimb.load_model(out)
    tok = hillclimb.load_tokenizer(out)
    ids = torch.tensor([tok.encode("print('hi')")])
    logits = model(ids)
    assert logits.shape == (1, ids.shape[1], model.cfg.vocab_size) and logits.dtype == torch.float32
    info = json.loads((out / "hillclimb.json").read_text())
    assert info["lineage"]["seed"] == 3
    # same seed → same weights
    assert (
        main(
            ["init", "--preset", "code-flash-micro", "--out", str(tmp_path / "ck2"), "--seed", "3"]
        )
        == 0
    )
    assert (out / "model.safetensors").read_bytes() == (
        tmp_path / "ck2" / "model.safetensors"
    ).read_bytes()


def test_init_with_tokenizer_sets_vocab(tmp_path):
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    tok.save(tmp_path / "tok")
    assert (
        main(
            [
                "init",
                "--preset",
                "thinking-micro",
                "--out",
                str(tmp_path / "ck"),
                "--tokenizer",
                str(tmp_path / "tok"),
            ]
        )
        == 0
    )
    m = hillclimb.load_model(tmp_path / "ck")
    assert m.cfg.vocab_size == 320  # 271 tokens padded to a multiple of 64


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["init", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert main(["init", "--preset", "thinking-micro", "--out", str(tmp_path / "exists")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "init",
                "--preset",
                "thinking-micro",
                "--out",
                str(tmp_path / "y"),
                "--tokenizer",
                str(tmp_path / "none"),
            ]
        )
        == 2
    )
    assert "tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`hillclimb model presets | head -1`: the pipe closes under us; exit quietly (141, as a
    process killed by SIGPIPE), never a BrokenPipeError traceback."""
    p = subprocess.Popen([sys.executable, "-m", "hillclimb", "model", "presets"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    p.stdout.close()  # long before the child has imported anything and printed
    err = p.stderr.read().decode()
    assert p.wait() == 141 and "Traceback" not in err and "Error" not in err, err
