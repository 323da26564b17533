"""Bad input through the CLI: one line naming what is wrong, exit 2, no traceback, and nothing
already stored is lost or overwritten (malformed config files and specs, damaged files, resumes
with other settings, an --out that is a file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _train_util import save_tokenizer_dir, write_shards
from hillclimb.cli import main


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert match in err, err
    return err


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_shards(tmp_path / "data", n_train=60, n_val=10)
    save_tokenizer_dir(tmp_path)
    return tmp_path


def _train_args(root: Path, *extra: str) -> list[str]:
    return [
        "train", "--preset", "thinking-micro", "--data", str(root / "data"),
        "--tokenizer", str(root / "tokenizer"), "--out", str(root / "run"), "--seq-len", "32",
        "--batch-size", "2", "--val-every", "0", "--val-tokens", "64", "--threads", "1",
        "--no-tensorboard", "--no-memory-check", *extra,
    ]  # fmt: skip


def test_train_config_with_wrong_types_is_one_line(data_dir: Path, capsys) -> None:
    cfg = data_dir / "bad.toml"
    cfg.write_text('[train]\nsteps = "ten"\n')
    _refused([*_train_args(data_dir), "--config", str(cfg)], capsys, "steps must be an integer")
    cfg.write_text("[sft]\nbatch_size = [1, 2]\n")
    _refused(
        ["sft", "--from", str(data_dir / "x"), "--out", str(data_dir / "s"), "--config", str(cfg)],
        capsys,
        "batch_size must be an integer",
    )
    assert not (data_dir / "run").exists() and not (data_dir / "s").exists()


def test_a_climb_recipe_as_config_names_what_to_do(data_dir: Path, capsys) -> None:
    """`train/sft/rl --config recipes/tiny.toml`: the recipe's tables are per model, so say it is
    a climb recipe instead of "unknown TrainConfig keys: ['climb', 'eval', ...]"."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny.toml"
    for argv, section in (
        (_train_args(data_dir), "pretrain"),
        (["sft", "--from", str(data_dir / "x"), "--out", str(data_dir / "s")], "sft"),
        (["rl", "--model", str(data_dir / "x"), "--out", str(data_dir / "r")], "rl"),
    ):
        err = _refused([*argv, "--config", str(recipe)], capsys, "is a climb recipe")
        assert f"copy the recipe's [{section}] settings" in err
    assert not any((data_dir / d).exists() for d in ("run", "s", "r"))


def test_resume_with_other_settings_is_refused_and_keeps_the_run(data_dir: Path, capsys) -> None:
    assert main(_train_args(data_dir, "--steps", "2", "--lr", "1e-2")) == 0
    capsys.readouterr()
    run = data_dir / "run"
    before = (run / "config.json").read_text()
    _refused(
        _train_args(data_dir, "--steps", "3", "--lr", "5e-2", "--resume"),
        capsys,
        "lr: 0.01 -> 0.05",
    )
    assert (run / "config.json").read_text() == before
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_000002"]
    # the same settings (more steps is allowed) resume
    assert main(_train_args(data_dir, "--steps", "3", "--lr", "1e-2", "--resume")) == 0


@pytest.mark.parametrize(
    "spec, match",
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"n": "x"}', "n must be an integer"),
        ('{"n": 2, "tiers": 1}', "tiers must be a list of integers"),
        ('{"n": 2, "teirs": [1]}', "unknown key(s) ['teirs']"),
        ('{"n": 2, "kinds": ["nope"]}', "unknown kinds ['nope']"),
    ],
)
def test_sft_problems_spec_errors(tmp_path: Path, capsys, spec: str, match: str) -> None:
    out = tmp_path / "s"
    _refused(["sft", "--from", str(tmp_path / "ck"), "--problems", spec, "--out", str(out)],
             capsys, match)  # fmt: skip
    assert not out.exists()


def test_sft_data_that_is_not_utf8_json_lines(tmp_path: Path, capsys) -> None:
    assert main(["init", "--preset", "thinking-micro", "--out", str(tmp_path / "ck")]) == 0
    capsys.readouterr()
    for name, blob in (("bin.jsonl", b"\xff\xfe\n"), ("bin.jsonl.gz", b"\xff\xfe"),
                       ("num.jsonl", b"5\n")):  # fmt: skip
        (tmp_path / name).write_bytes(blob)
        _refused(
            ["sft", "--from", str(tmp_path / "ck"), "--data", str(tmp_path / name),
             "--out", str(tmp_path / "s"), "--steps", "1"],
            capsys,
            name,
        )  # fmt: skip
    assert not (tmp_path / "s").exists()


def test_eval_out_that_is_a_file_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    (tmp_path / "out").write_text("keep me")
    _refused(
        ["eval", "--model", str(tmp_path / "no-such"), "--out", str(tmp_path / "out")],
        capsys,
        "is not a directory",
    )
    assert (tmp_path / "out").read_text() == "keep me"


def test_data_card_of_a_damaged_corpus(tmp_path: Path, capsys) -> None:
    (tmp_path / "data_card.json").write_text("{bad")
    _refused(["data", "card", "--data", str(tmp_path)], capsys, "cannot read the data card")
    (tmp_path / "data_card.json").write_text("{}")  # DATA_CARD.md missing
    _refused(["data", "card", "--data", str(tmp_path)], capsys, "DATA_CARD.md")


def test_data_resume_of_a_complete_build_with_other_settings(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("# SPDX-License-Identifier: MIT\ndef add(a, b):\n    return a + b\n")
    out = tmp_path / "corpus"
    args = ["data", "build", "--source", str(src), "--out", str(out), "--json"]
    assert main(args) == 0
    capsys.readouterr()
    card = (out / "data_card.json").read_text()
    assert main([*args, "--resume"]) == 0  # same settings: a no-op
    capsys.readouterr()
    (tmp_path / "other").mkdir()
    _refused(
        ["data", "build", "--source", str(src), "--source", str(tmp_path / "other"),
         "--out", str(out), "--resume"],
        capsys,
        "different configuration",
    )  # fmt: skip
    assert (out / "data_card.json").read_text() == card


def test_climb_with_a_malformed_recipe_writes_nothing(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(
        "[data]\nsources = []\n[models.x]\npreset = 'thinking-micro'\n[climb]\nseed = 'x'\n"
    )
    _refused(
        ["climb", "--recipe", str(recipe), "--out", str(tmp_path / "run")],
        capsys,
        "seed must be an integer",
    )
    assert not (tmp_path / "run").exists()
    recipe.write_bytes(b"\xff\xfe[data]\n")
    _refused(["climb", "--recipe", str(recipe)], capsys, "cannot read recipe")


def test_data_build_from_a_source_that_is_not_there(tmp_path: Path, capsys) -> None:
    out = tmp_path / "corpus"
    _refused(
        ["data", "build", "--source", str(tmp_path / "no-such"), "--out", str(out)],
        capsys,
        "no such file or directory",
    )
    assert not out.exists()


def test_data_build_that_keeps_no_document_fails_and_says_why(tmp_path: Path, capsys) -> None:
    """A `--source` tree with no license evidence lost every file to the license filter and the
    build exited 0 with a corpus of nothing (a new user's first try on their own code)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("def add(a, b):\n    return a + b\n")
    out = tmp_path / "corpus"
    assert main(["data", "build", "--source", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "kept no document" in err and "LICENSE/COPYING" in err
    assert (out / "data_card.json").is_file()  # the card says what was dropped and why


def test_client_commands_read_the_api_key_from_the_environment(monkeypatch) -> None:
    """`chat` read $HILLCLIMB_API_KEY and $OPENAI_API_KEY, `harness run` only the first, `eval`
    and `arena` neither: the same exported key was a 401 for half the commands."""
    from hillclimb.io import client_api_key

    monkeypatch.delenv("HILLCLIMB_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert client_api_key(None) is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert client_api_key(None) == "sk-openai"
    monkeypatch.setenv("HILLCLIMB_API_KEY", "sk-hc")
    assert client_api_key(None) == "sk-hc" and client_api_key("sk-flag") == "sk-flag"
    import inspect

    from hillclimb.eval import cli as eval_cli
    from hillclimb.eval.arena import cli as arena_cli
    from hillclimb.harness import cli as harness_cli
    from hillclimb.serve import cli as serve_cli

    for mod in (eval_cli, arena_cli, harness_cli, serve_cli):  # every client path uses it
        assert "client_api_key(" in inspect.getsource(mod), mod.__name__


def test_eval_table_shows_a_cell_smaller_than_asked() -> None:
    """The title said "n=40 per cell" when a cell's pool held 16 items (arith tier 1)."""
    import io

    from hillclimb.eval.cli import print_eval

    def cell(n: int) -> dict:
        return {"accuracy": 0.5, "baseline": {"best": 0.1}, "truncated": 0,
                "truncated_share": 0.0, "heldout_family": False, "n": n}  # fmt: skip

    split = {"by_family_tier": {"arith": {"1": cell(16), "2": cell(40)}}, "accuracy": 0.5,
             "correct": 28, "n": 56}  # fmt: skip
    res = {"name": "m", "preset": "micro", "model": "m", "tasks": {"settings": {"splits": ["heldout"], "tiers": [1, 2], "n_per_tier": 40},
                     "splits": {"heldout": split}, "finish_reasons": {"stop": 56},
                     "truncated_share": 0.0, "mean_completion_tokens": 9.0}}  # fmt: skip
    buf = io.StringIO()
    print_eval(res, file=buf)
    out = buf.getvalue()
    assert (
        "n=40 per cell unless shown" in out
        and "n=16" in out
        and "n=40 " not in out.split("unless shown")[1]
    )
