"""Bad input to the tool commands (harness, telemetry, tokenizer, registry, export, arena): one
line, exit 2, no traceback — and nothing already stored is changed.

Each test is a regression for a defect found by probing the CLI with inputs the other tests did not
try: an output path that is a file, limits that are zero/negative/NaN, two tasks sharing one
trajectory file, a store pointed at another store's SQLite file (which used to gain the wrong
tables silently), huge or fractional vocabulary sizes, malformed provenance and model configs,
truncated weights, an out-of-range port, a non-UTF-8 prompt set.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from hillclimb.cli import main

FIXTURE_TASK = Path(__file__).parent / "fixtures" / "harness" / "tiny_bugfix"


def run(argv: list[str]) -> int:
    """`hillclimb ARGV`'s exit status, argparse's own exits (SystemExit 2) included."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse: usage line + one error line, exit 2
        return int(exc.code or 0)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tables(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return sorted(
            r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )
    finally:
        con.close()


def one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error" in last
    for n in needles:
        assert n in last, last
    return last


# ---- harness run / generate, telemetry ------------------------------------------------------------
@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--wall", "-1"], "--wall"),
        (["--wall", "nan"], "--wall"),
        (["--max-total-tokens", "0"], "--max-total-tokens"),
        (["--max-tokens-per-turn", "-5"], "--max-tokens-per-turn"),
        (["--max-errors", "-1"], "--max-errors"),
        (["--request-timeout", "0"], "--request-timeout"),
        (["--temperature", "-1"], "--temperature"),
    ],
)
def test_harness_run_refuses_bad_limits_before_writing(tmp_path, capsys, extra, needle) -> None:
    out = tmp_path / "out"
    argv = ["harness", "run", "--tasks", str(FIXTURE_TASK), "--model", "reference"]
    assert run([*argv, "--out", str(out), *extra]) == 2
    one_error_line(capsys, needle)
    assert not out.exists()


def test_harness_run_and_generate_refuse_an_out_that_is_a_file(tmp_path, capsys) -> None:
    f = tmp_path / "results"
    f.write_text("keep me\n")
    argv = ["harness", "run", "--tasks", str(FIXTURE_TASK), "--model", "reference"]
    assert run([*argv, "--out", str(f)]) == 2
    one_error_line(capsys, "not a directory")
    assert run([*argv, "--out", str(f / "sub")]) == 2
    one_error_line(capsys, "not a directory")
    assert run(["harness", "generate", "--out", str(f), "--n", "1", "--kinds", "repo_qa"]) == 2
    one_error_line(capsys, "not a directory")
    assert f.read_text() == "keep me\n"


@pytest.mark.parametrize("prob", ["2", "-0.1", "nan"])
def test_harness_generate_refuses_a_bad_multi_prob(tmp_path, capsys, prob) -> None:
    out = tmp_path / "tasks"
    assert run(["harness", "generate", "--out", str(out), "--n", "1", "--multi-prob", prob]) == 2
    one_error_line(capsys, "--multi-prob")
    assert not out.exists()


def test_harness_run_refuses_tasks_that_share_a_trajectory_file(tmp_path, capsys) -> None:
    """`a/b` and `a_b` both became trajectories/a_b.json, and a broken task named like another
    task's id wrote its error record over that task's trajectory."""
    for tasks, ids in (("ids", {"one": "x/y", "two": "x_y"}), ("broken", {"good": None})):
        root = tmp_path / tasks
        for name, tid in ids.items():
            shutil.copytree(FIXTURE_TASK, root / name)
            if tid is not None:
                toml = root / name / "task.toml"
                toml.write_text(toml.read_text().replace('id = "tiny-bugfix"', f'id = "{tid}"'))
        if tasks == "broken":  # a task directory whose name is another task's id
            shutil.copytree(FIXTURE_TASK, root / "tiny-bugfix")
            (root / "tiny-bugfix" / "task.toml").write_text("id = \n")
        out = tmp_path / f"out-{tasks}"
        argv = ["harness", "run", "--tasks", str(root), "--model", "reference"]
        assert run([*argv, "--out", str(out)]) == 2
        one_error_line(capsys, "would both write trajectories/")
        assert not out.exists()


def test_telemetry_export_refuses_an_out_that_is_a_file(tmp_path, capsys) -> None:
    from hillclimb.harness.telemetry import Telemetry

    db = tmp_path / "telemetry.db"
    Telemetry(db).close()
    f = tmp_path / "export"
    f.write_text("keep me\n")
    assert run(["telemetry", "export", "--db", str(db), "--out", str(f)]) == 2
    one_error_line(capsys, "not a directory")
    assert f.read_text() == "keep me\n"


# ---- one store's command pointed at another store's SQLite file ---------------------------------
def test_stores_refuse_each_others_databases_untouched(tmp_path, capsys) -> None:
    from hillclimb.harness.telemetry import Telemetry
    from hillclimb.registry.db import Registry

    tel = tmp_path / "telemetry.db"
    Telemetry(tel).close()
    reg = tmp_path / "registry.sqlite"
    Registry(reg).close()
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"weights" * 20)
    before = {p: (tables(p), digest(p)) for p in (tel, reg)}
    cases = [
        (["registry", "list", "--registry", str(tel)], "not a registry database"),
        (["registry", "add", str(ck), "--registry", str(tel)], "not a registry database"),
        (["telemetry", "stats", "--db", str(reg)], "not a telemetry database"),
        (["arena", "--results", "--arena-db", str(tel)], "not an arena database"),
        (
            ["telemetry", "export", "--db", str(tel), "--out", str(tmp_path / "x"), "--served", str(reg)],
            "not a flywheel database",
        ),
    ]  # fmt: skip
    for argv, needle in cases:
        assert run(argv) == 2, argv
        one_error_line(capsys, needle)
    assert {p: (tables(p), digest(p)) for p in (tel, reg)} == before
    # each store still opens its own file
    assert run(["registry", "list", "--json", "--registry", str(reg)]) == 0
    assert run(["telemetry", "stats", "--json", "--db", str(tel)]) == 0


# ---- tokenizer --------------------------------------------------------------------------------------
@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(40):
        (d / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}  # line {i}\n")
    return d


@pytest.mark.parametrize(
    "vocab, needle",
    [("1e100", "too large"), ("1.5e0", "not an integer"), ("2147483648", "too large")],
)
def test_tokenizer_train_refuses_unusable_vocab_sizes(tmp_path, corpus, capsys, vocab, needle) -> None:  # fmt: skip
    """1e100 overflowed inside `tokenizers` (traceback); 2**31 aborted the process (Rust OOM);
    1.5e0 was silently truncated to 1."""
    out = tmp_path / "tok"
    assert run(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", vocab, "--out", str(out)]) == 2  # fmt: skip
    one_error_line(capsys, needle)
    assert not out.exists()


def test_tokenizer_train_refuses_an_existing_out_before_training(tmp_path, corpus, capsys) -> None:
    out = tmp_path / "tok"
    out.mkdir()
    (out / "other.txt").write_text("keep me\n")
    assert run(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(out)]) == 2  # fmt: skip
    one_error_line(capsys, "already exists")
    assert [p.name for p in out.iterdir()] == ["other.txt"]


def test_tokenizer_eval_refuses_malformed_provenance(tmp_path, corpus, capsys) -> None:
    tok = tmp_path / "tok"
    assert run(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(tok)]) == 0  # fmt: skip
    capsys.readouterr()
    for bad in ("[1]", '{"selection": 5}', '{"selection": {"corpus": "x"}}'):
        (tok / "tokenizer_train.json").write_text(bad)
        assert run(["tokenizer", "eval", "--tokenizer", str(tok)]) == 2
        one_error_line(capsys, "malformed", "tokenizer_train.json")


# ---- export ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ckpt") / "ck"
    assert main(["init", "--preset", "thinking-micro", "--out", str(d)]) == 0
    return d


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_export_refuses_broken_checkpoints(tmp_path, checkpoint, capsys, fmt) -> None:
    def broken(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(checkpoint, d)
        return d

    truncated = broken("truncated")
    with open(truncated / "model.safetensors", "r+b") as f:
        f.truncate((truncated / "model.safetensors").stat().st_size // 2)
    no_weights = broken("no_weights")
    (no_weights / "model.safetensors").unlink()
    list_config = broken("list_config")
    (list_config / "config.json").write_text("[1]")
    empty_config = broken("empty_config")
    (empty_config / "config.json").write_text("{}")
    (empty_config / "hillclimb.json").unlink()
    bad_info = broken("bad_info")
    (bad_info / "hillclimb.json").write_text('{"model_config": 5}')
    for ck, needle in (
        (truncated, "cannot read weights"),
        (no_weights, "no model.safetensors"),
        (list_config, "not a JSON object"),
        (empty_config, "unusable model config"),
        (bad_info, "model_config is not an object"),
    ):
        out = tmp_path / f"{ck.name}.{fmt}"
        assert run(["export", str(ck), "--format", fmt, "--out", str(out)]) == 2, ck.name
        one_error_line(capsys, needle)
        assert not out.exists()


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_export_refuses_an_out_below_a_file(tmp_path, checkpoint, capsys, fmt) -> None:
    f = tmp_path / "afile"
    f.write_text("keep me\n")
    assert run(["export", str(checkpoint), "--format", fmt, "--out", str(f / "x")]) == 2
    one_error_line(capsys, "not a directory")
    assert f.read_text() == "keep me\n"


# ---- arena ----------------------------------------------------------------------------------------
def test_arena_refuses_a_bad_port_a_corrupt_usage_db_and_binary_prompts(tmp_path, capsys) -> None:
    from hillclimb.errors import HillclimbError
    from hillclimb.eval.arena.models import load_prompts

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    models = f"a={tmp_path / 'a'},b={tmp_path / 'b'}"
    assert run(["arena", "--models", models, "--port", "99999"]) == 2
    one_error_line(capsys, "--port")
    corrupt = tmp_path / "usage.sqlite"
    corrupt.write_bytes(b"not a database at all" * 10)
    before = digest(corrupt)
    assert run(["arena", "--models", models, "--db", str(corrupt)]) == 2
    one_error_line(capsys, "cannot open usage database")
    assert digest(corrupt) == before
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(HillclimbError, match="cannot read prompt set"):
        load_prompts(prompts)
    prompts.with_suffix(".txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(HillclimbError, match="cannot read prompt set"):
        load_prompts(prompts.with_suffix(".txt"))
