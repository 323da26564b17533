"""A setting added after a run started is absent from the run's `config.json`; `--resume` compared
only the keys the record holds, so a run recorded before session 29 resumed with
`copy_warmup_weight_decay = 0` (or any other new setting away from its default) continued a
different run under the same name, silently (session 29's open item). Now a missing key counts
as the default the run trained with, resolved as the config resolves it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError
from hillclimb.rl.config import RLConfig
from hillclimb.train import TrainConfig
from hillclimb.train.loop import check_resume_config


def _record(out: Path, cfg, drop: tuple[str, ...]) -> None:
    """Write `cfg` as a run's config.json, as a run started before `drop` existed wrote it."""
    d = json.loads(json.dumps(cfg.to_dict(), default=str))
    for k in drop:
        d.pop(k)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"train": d}))


def _pre(out: Path, **kw) -> TrainConfig:
    return TrainConfig(preset="code-flash-micro", out=out, steps=10, copy_warmup_steps=4, **kw)


def test_new_setting_away_from_its_default_is_refused(tmp_path):
    out = tmp_path / "run"
    _record(out, _pre(out), drop=("copy_warmup_weight_decay",))
    with pytest.raises(HillclimbError) as e:
        check_resume_config(out, _pre(out, copy_warmup_weight_decay=0.0))
    msg = str(e.value)
    assert "copy_warmup_weight_decay: (not recorded" in msg and "default None) -> 0.0" in msg
    assert "choose a new --out" in msg


def test_new_setting_left_at_its_default_resumes(tmp_path):
    out = tmp_path / "run"
    _record(out, _pre(out), drop=("copy_warmup_weight_decay",))
    check_resume_config(out, _pre(out))  # the same run: no error


def test_missing_key_resolved_as_the_config_resolves_it(tmp_path):
    """RL's `std_norm` default (None) resolves from `loss_agg` in the config; a record without it
    trained with the resolved value, so the same settings resume and the other one is refused."""
    out = tmp_path / "rl"
    for agg, same, other in (("token-mean", True, False), ("dr-grpo", False, True)):
        _record(out, RLConfig(out=out, loss_agg=agg), drop=("std_norm",))
        check_resume_config(out, RLConfig(out=out, loss_agg=agg))
        assert RLConfig(out=out, loss_agg=agg).std_norm is same
        if agg == "token-mean":  # dr-grpo refuses std division itself; only this one can differ
            with pytest.raises(HillclimbError, match=r"std_norm: \(not recorded"):
                check_resume_config(out, RLConfig(out=out, loss_agg=agg, std_norm=other))


def test_recorded_keys_still_compared_and_a_removed_field_is_ignored(tmp_path):
    out = tmp_path / "run"
    _record(out, _pre(out), drop=())
    with pytest.raises(HillclimbError, match=r"\blr: "):
        check_resume_config(out, _pre(out, lr=1e-3))
    # a record holding a field this version no longer knows still compares what it holds
    rec = json.loads((out / "config.json").read_text())
    rec["train"]["a_field_since_removed"] = 1
    del rec["train"]["copy_warmup_weight_decay"]
    (out / "config.json").write_text(json.dumps(rec))
    check_resume_config(out, _pre(out))
    with pytest.raises(HillclimbError, match="copy_warmup_weight_decay: \\(not recorded"):
        check_resume_config(out, _pre(out, copy_warmup_weight_decay=0.0))
