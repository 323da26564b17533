"""Training progress lines name the model and say the time spent and left."""

from __future__ import annotations

from hillclimb.train.logging import RunLogger, _duration


def test_duration_format():
    assert [_duration(x) for x in (0, 12.4, 65, 3599, 3720)] == [
        "0s",
        "12s",
        "1m05s",
        "59m59s",
        "1h02m",
    ]


def test_plain_lines_carry_model_name_elapsed_and_eta(tmp_path, capsys):
    log = RunLogger(tmp_path, True, 10, 0, False, False, "pretrain", model="thinking-micro")
    log._plain = True  # plain lines are off under pytest; the format is what is tested
    log._t0 -= 20.0  # 20 s spent on 2 of 10 steps → 80 s left
    log.step({"step": 2, "loss": 1.0, "tok_s": 100.0, "balance": 1.1, "lr": 1e-3}, show=True)
    log.val({"step": 2, "val_loss": 1.0, "val_bpb": 2.0})
    log.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[pretrain thinking-micro] step 2/10 loss 1.0000")
    assert err[0].endswith("20s elapsed, ETA 1m20s")
    assert err[1].startswith("[pretrain thinking-micro] step 2 val loss")


def test_eta_counts_only_this_processes_steps(tmp_path):
    """A resumed run (start_step 5) paces the ETA on the steps it ran itself."""
    log = RunLogger(tmp_path, False, 10, 5, False, False, "sft", model="code-flash-micro")
    t0 = log._t0
    assert log.label == "sft code-flash-micro"
    assert log.timing(6, now=t0 + 10.0) == "10s elapsed, ETA 40s"
    assert log.timing(10, now=t0 + 50.0) == "50s elapsed, done"
    assert log.timing(5, now=t0 + 1.0) == "1s elapsed"
    assert RunLogger(tmp_path, False, 10, 0, False, False, "rl").label == "rl"


def test_pretrain_lines_name_the_model(tmp_path, monkeypatch, capsys):
    """A real (micro, 4-step) pre-training run prints `[pretrain thinking-micro] ... ETA`."""
    from _train_util import save_tokenizer_dir, write_shards
    from hillclimb.train import TrainConfig, pretrain

    write_shards(tmp_path / "data", n_train=60, n_val=10)
    save_tokenizer_dir(tmp_path)
    cfg = TrainConfig(preset="thinking-micro", data=tmp_path / "data", out=tmp_path / "run",
                      tokenizer=tmp_path / "tokenizer", seq_len=32, batch_size=4,
                      micro_batch_size=4, steps=4, warmup_steps=1, val_every=4, val_tokens=128,
                      log_every=2, threads=1, tensorboard=False)  # fmt: skip
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # plain lines are off under pytest
    pretrain.run(cfg)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[pretrain")]
    steps = [x for x in lines if " val " not in x]
    assert steps and all(x.startswith("[pretrain thinking-micro] step ") for x in steps), lines
    assert "elapsed, ETA " in steps[0] and steps[-1].endswith("elapsed, done"), steps
