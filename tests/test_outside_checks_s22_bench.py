"""Outside checks of the benchmark scripts (bench/*.py, session 22): every script's argument
parser runs, bad arguments and missing inputs end in a message (no traceback), the statistics
the scripts print are sound for any count, and the cheapest configurations still run on the
current code and print the JSON fields BENCHMARKS.md refers to.

The scripts are run in this process through `runpy` with `__name__ == "__main__"`, exactly as
`python bench/X.py ...` runs them, so a test costs what the script's own work costs."""

from __future__ import annotations

import gzip
import json
import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))


def _run(monkeypatch: pytest.MonkeyPatch, script: str, *argv: str) -> None:
    """Run `python bench/<script> argv...` in this process (sys.path and argv restored after):
    the script's directory first on the path, as the interpreter puts it."""
    monkeypatch.setattr(sys, "argv", [str(BENCH / script), *argv])
    monkeypatch.setattr(sys, "path", [str(BENCH), *sys.path])
    runpy.run_path(str(BENCH / script), run_name="__main__")


def _ok(monkeypatch: pytest.MonkeyPatch, script: str, *argv: str) -> None:
    """Run the script; it must end with exit status 0 (`raise SystemExit(main())`)."""
    assert _exit(monkeypatch, script, *argv).code in (None, 0)


def _exit(monkeypatch: pytest.MonkeyPatch, script: str, *argv: str) -> SystemExit:
    with pytest.raises(SystemExit) as exc:
        _run(monkeypatch, script, *argv)
    return exc.value


@pytest.fixture(scope="module")
def micro_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Randomly initialised thinking-micro and code-flash-micro checkpoints (tokenizer included),
    as `hillclimb init --preset ... --out DIR` writes them."""
    from hillclimb.cli import main as cli_main

    root = tmp_path_factory.mktemp("bench_ckpts")
    out = {}
    for preset in ("thinking-micro", "code-flash-micro"):
        assert cli_main(["init", "--preset", preset, "--out", str(root / preset)]) == 0
        out[preset] = root / preset
    return out


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 30, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses_help(monkeypatch: pytest.MonkeyPatch, script: str, capsys) -> None:
    """`python bench/X.py --help` prints usage and exits 0 on the current code (its imports
    resolve: the engine, serving, problems and eval APIs moved a lot)."""
    assert _exit(monkeypatch, script, "--help").code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("copy_probe.py", ["--model", "{missing}"]),
        ("copy_warmup.py", ["--like", "{missing}", "--steps", "1"]),
        ("serve_suffix.py", ["--model", "{missing}"]),
        ("serve_effort.py", ["--model", "{missing}"]),
        ("serve_bugfix_lookup.py", ["--model", "{missing}"]),
        ("harness_episodes.py", ["--model", "{missing}", "--n-tasks", "1"]),
        ("sft_verbose_tokens.py", ["--data", "{missing}", "--tokenizer", "{missing}"]),
    ],
)
def test_missing_input_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str, argv: list[str]
) -> None:
    """A checkpoint / tokenizer path that does not exist: was the library's HillclimbError
    escaping as a traceback; now `error: ...` on stderr and a non-zero exit."""
    missing = str(tmp_path / "nope")
    code = _exit(monkeypatch, script, *[a.format(missing=missing) for a in argv]).code
    assert isinstance(code, str) and code.startswith("error: "), code
    assert "nope" in code


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("sandbox_overhead.py", ["--n", "0"]),
        ("data_dedup.py", ["--originals", "0"]),
        ("data_dedup.py", ["--exact-frac", "-1"]),
        ("serve_decode.py", ["--tokens", "1", "--presets", "thinking-micro"]),
        ("serve_decode.py", ["--repeats", "0", "--presets", "thinking-micro"]),
        ("model_train_step.py", ["--presets", "thinking-micro", "--rounds", "0"]),
        ("train_throughput.py", ["--presets", "thinking-micro", "--steps", "0"]),
        ("serve_bugfix_lookup.py", ["--model", "{ckpt}", "--repeats", "0"]),
        ("serve_suffix.py", ["--model", "{ckpt}", "--repeats", "0"]),
        ("train_scaling.py", ["--preset", "thinking-micro", "--steps", "2"]),
        ("train_scaling.py", ["--preset", "thinking-micro", "--batch", "3"]),
        ("serve_concurrency.py", ["--preset", "micro", "--levels", "1,x"]),
        ("serve_concurrency.py", ["--preset", "micro", "--levels", "0"]),
        ("serve_batched_context.py", ["--batches", "0", "--threads", "1"]),
        ("serve_batched_context.py", ["--contexts", "200,x", "--threads", "1"]),
        ("serve_batched_context.py", ["--contexts", "100000", "--threads", "1"]),
    ],
)
def test_bad_numbers_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
    micro_ckpts: dict[str, Path],
    script: str,
    argv: list[str],
    capsys,
) -> None:
    """Counts the measurement cannot use (no timed call, no document, one token: no rate) were a
    StatisticsError / ValueError / ZeroDivisionError traceback (or a silently empty run); now
    argparse's usage error, exit 2."""
    argv = [a.format(ckpt=micro_ckpts["thinking-micro"]) for a in argv]
    assert _exit(monkeypatch, script, *argv).code == 2
    assert "error:" in capsys.readouterr().err


def test_sandbox_p90_is_never_below_the_median() -> None:
    """`--n 2` reported p90 = the faster of two calls, below the median (index int(0.9 * (n-1))
    floors to 0); nearest rank keeps p90 >= median for every n, and equals the old value at the
    n BENCHMARKS.md used (40, 50)."""
    stats = runpy.run_path(str(BENCH / "sandbox_overhead.py"))["stats"]
    for n in range(1, 60):
        times = [i / 1000 for i in range(1, n + 1)]
        s = stats(times)
        assert s["p90_ms"] >= s["median_ms"], (n, s)
    assert stats([i / 1000 for i in range(1, 41)])["p90_ms"] == 36.0
    assert stats([i / 1000 for i in range(1, 51)])["p90_ms"] == 45.0


def test_sandbox_overhead_smallest_run_prints_its_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """... and leaves no `hc-bench-ws-*` workspace behind in the temp dir (every run left one)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _ok(monkeypatch, "sandbox_overhead.py", "--n", "1")
    assert list(tmp_path.iterdir()) == []
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 1
    for key in ("true", "python_c_pass"):
        assert out["baseline_subprocess"][key]["median_ms"] > 0
    assert "unsafe" in out and "true_copy_workspace" in out["unsafe"]


def test_data_dedup_small_run_reports_precision_recall(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _ok(monkeypatch, "data_dedup.py", "--originals", "20")
    out = json.loads(capsys.readouterr().out)
    for key in ("precision", "recall", "f1", "planted_copies", "near_copies_true_jaccard"):
        assert key in out
    assert 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1


def test_copy_probe_runs_on_a_micro_checkpoint(
    monkeypatch: pytest.MonkeyPatch, micro_ckpts: dict[str, Path], capsys
) -> None:
    ck = micro_ckpts["thinking-micro"]
    _ok(monkeypatch, "copy_probe.py", "--model", str(ck), "--rows", "2", "--length", "8")
    out = json.loads(capsys.readouterr().out)
    assert out["bench"] == "copy_probe" and len(out["models"]) == 1


def test_rl_climb_missing_sft_is_a_usage_error_and_makes_no_out_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """`--sft` that is not a checkpoint: was `hillclimb rl`'s message followed by a
    CalledProcessError traceback, with --out already created; now a usage error first."""
    out = tmp_path / "out"
    code = _exit(monkeypatch, "rl_climb.py", "--sft", str(tmp_path / "nope"), "--out", str(out))
    assert code.code == 2 and "not a checkpoint directory" in capsys.readouterr().err
    assert not out.exists()


def test_rl_climb_failing_rl_run_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, micro_ckpts: dict[str, Path]
) -> None:
    """A `--rl-arg` that `hillclimb rl` rejects: the child prints its usage error; the bench
    then raised CalledProcessError (a traceback); now it ends with one `error:` line."""
    code = _exit(
        monkeypatch,
        "rl_climb.py",
        "--sft",
        str(micro_ckpts["thinking-micro"]),
        "--out",
        str(tmp_path / "out"),
        "--rl-arg=--no-such-flag",
    ).code
    assert isinstance(code, str) and code.startswith("error: `hillclimb rl` exited 2"), code


def test_tokenizer_compare_missing_gpt2_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """`--gpt2-tiktoken` naming a file that is not there: the run went on, the GPT-2 columns were
    silently left out, and the JSON still named the path as `gpt2_tiktoken`; now a usage error
    before any training."""
    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    with gzip.open(docs / "part-00000.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(40):  # the layout `data build` writes, with a held-out (val) share
            text = f"def add_{i}(a, b):\n    return a + b * {i}\n" * 20
            rec = {
                "id": str(i),
                "text": text,
                "lang": "python",
                "split": "val" if i % 4 == 0 else "train",
            }
            f.write(json.dumps(rec) + "\n")
    corpus = docs.parent
    code = _exit(
        monkeypatch,
        "tokenizer_compare.py",
        "--corpus",
        str(corpus),
        "--workdir",
        str(tmp_path / "work"),
        "--vocab",
        "300",
        "--gpt2-tiktoken",
        str(tmp_path / "gpt2.tiktoken"),
    ).code
    assert code == 2 and "no such file" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_serve_decode_refuses_a_rate_below_timing_noise() -> None:
    """`--tokens 2` on a micro model: t(2 tokens) came out below t(1 token) and the rate was
    clamped to (N-1)/1e-9, printed as 1,000,000,000 tok/s and a 1,112,961x speedup; now the run
    stops and says to use more --tokens. A measurable rate is unchanged."""
    from hillclimb.errors import HillclimbError

    rates = runpy.run_path(str(BENCH / "serve_decode.py"))["_rates"]

    def noisy(k: int) -> tuple[float, list[int]]:
        return (0.010 if k == 1 else 0.008), [1] * k

    with pytest.raises(HillclimbError, match="too few --tokens"):
        rates([noisy], 2, 1)

    def steady(k: int) -> tuple[float, list[int]]:
        return 0.001 * k, [1] * k

    (rate,), _ = rates([steady], 11, 3)
    assert rate == pytest.approx(1000.0)


def test_serve_concurrency_percentiles_of_nothing_are_null_not_nan() -> None:
    """A level where every request failed (or `--levels 0`, which ran a server for a minute to
    measure nothing) printed `"latency_p50_s": NaN`: not JSON (`jq`, JavaScript and any strict
    reader reject it). Now null; real percentiles are unchanged."""
    pct = runpy.run_path(str(BENCH / "serve_concurrency.py"))["percentile"]
    row = {"latency_p50_s": pct([], 0.5), "ttft_p99_s": pct([], 0.99)}
    assert json.loads(json.dumps(row, allow_nan=False)) == {
        "latency_p50_s": None,
        "ttft_p99_s": None,
    }
    assert pct([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert pct([0.12345678], 0.99) == 0.1235
