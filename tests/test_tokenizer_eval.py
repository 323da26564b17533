"""`hillclimb tokenizer eval`: report shape, reproducible baseline (a), optional GPT-2 (b)."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from unittest import mock

import pytest

import hillclimb.cli

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizer"
_spec = importlib.util.spec_from_file_location("tok_corpus_maker", FIXTURES / "corpus_maker.py")
corpus_maker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_maker)


def main(argv: list[str]) -> int:
    """The real `hillclimb` entry point, loading only this area's commands (so a half-built
    stage elsewhere in the tree cannot break these tests)."""
    with mock.patch.object(hillclimb.cli, "COMMAND_MODULES", ["hillclimb.tokenizer.cli"]):
        return hillclimb.cli.main(argv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("eval")
    corpus = corpus_maker.write_corpus(base / "corpus", gz=False)
    tok = base / "tok"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "512",
                 "--out", str(tok)]) == 0  # fmt: skip
    return corpus, tok


def _byte_ranks_file(path: Path) -> Path:
    """A small but real tiktoken rank file: the 256 single bytes plus two merges."""
    ranks = [bytes([b]) for b in range(256)] + [b"  ", b"    "]
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(ranks)))
    return path


def test_eval_json_report(trained, tmp_path: Path, capsys):
    corpus, tok = trained
    ranks = _byte_ranks_file(tmp_path / "gpt2.tiktoken")
    assert main(["tokenizer", "eval", "--tokenizer", str(tok), "--gpt2-tiktoken", str(ranks),
                 "--json"]) == 0  # fmt: skip
    rep = json.loads(capsys.readouterr().out)
    assert rep["vocab_sizes"] == {"ours": 512, "gpt2_regex_bpe": 512, "gpt2": 259}
    langs = rep["languages"]
    assert set(langs) == {"c", "javascript", "markdown", "python", "code", "all"}
    val = [d for d in corpus_maker.documents() if d["split"] == "val"]
    assert langs["all"]["documents"] == len(val)
    assert langs["all"]["chars"] == sum(len(d["text"]) for d in val)
    assert langs["code"]["documents"] == sum(d["language"] != "markdown" for d in val)
    py = langs["python"]
    assert py["ours"]["tokens"] > 0 and py["ours"]["chars_per_token"] > 1.5
    # ours must beat a byte-level vocabulary by far; and the report computes the ratios
    assert py["ours"]["tokens"] < py["gpt2"]["tokens"] / 2
    assert py["fewer_tokens_vs_gpt2"] == round(1 - py["ours"]["tokens"] / py["gpt2"]["tokens"], 4)
    assert set(rep["targets"]) == {"vs_gpt2_regex_bpe_equal_vocab", "vs_gpt2_50k"}
    assert rep["targets"]["vs_gpt2_regex_bpe_equal_vocab"]["group"] == "code"
    assert all(v and v > 0 for v in rep["throughput_mb_per_s"].values())
    assert any("identical documents" in n for n in rep["notes"])


def test_eval_is_reproducible_and_gpt2_optional(trained, capsys):
    corpus, tok = trained
    reps = []
    for _ in range(2):
        assert main(["tokenizer", "eval", "--tokenizer", str(tok), "--corpus", str(corpus),
                     "--json"]) == 0  # fmt: skip
        reps.append(json.loads(capsys.readouterr().out))
    a, b = (r["languages"] for r in reps)
    assert a["all"]["gpt2_regex_bpe"] == b["all"]["gpt2_regex_bpe"]
    assert "gpt2" not in reps[0]["vocab_sizes"]
    assert any("skipped" in n for n in reps[0]["notes"])
    # plain-text report too
    assert main(["tokenizer", "eval", "--tokenizer", str(tok), "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "python" in out and "ours c/t" in out


def test_eval_errors(trained, tmp_path: Path, capsys):
    _, tok = trained
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).write_bytes((tok / name).read_bytes())
    assert main(["tokenizer", "eval", "--tokenizer", str(bare)]) == 2
    assert "--corpus" in capsys.readouterr().err
    assert main(["tokenizer", "eval", "--tokenizer", str(tmp_path / "none")]) == 2
    capsys.readouterr()
    # an explicit --gpt2-tiktoken that is missing (or a directory) is an error, not a skip
    for missing in (tmp_path / "nonexistent" / "gpt2.tiktoken", tmp_path):
        assert main(["tokenizer", "eval", "--tokenizer", str(tok), "--no-baseline",
                     "--gpt2-tiktoken", str(missing)]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert "--gpt2-tiktoken" in err and "omit the option" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not a rank file\n")
    assert main(["tokenizer", "eval", "--tokenizer", str(tok), "--no-baseline",
                 "--gpt2-tiktoken", str(bad)]) == 2  # fmt: skip
