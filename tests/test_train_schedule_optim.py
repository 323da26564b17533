"""Schedules and optimizers: warmup/cosine/WSD shapes, AdamW decay groups, Muon orthogonality."""

from __future__ import annotations

import math

import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.train.optim import Muon, build_optimizers, orthogonalize, split_params
from hillclimb.train.schedule import lr_multiplier


def test_cosine_schedule_warms_up_then_decays_to_floor():
    m = [lr_multiplier(s, 100, "cosine", 10, 0.1) for s in range(100)]
    assert m[0] == pytest.approx(0.1) and m[9] == pytest.approx(1.0)
    assert all(b <= a + 1e-12 for a, b in zip(m[10:], m[11:], strict=False))
    assert m[-1] == pytest.approx(0.1)
    assert m[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 89)))


def test_wsd_schedule_is_flat_then_linear_decay():
    m = [lr_multiplier(s, 100, "wsd", 5, 0.0, decay_frac=0.2) for s in range(100)]
    assert m[4] == 1.0 and m[50] == 1.0 and m[79] == 1.0
    assert m[80] < 1.0 and m[-1] == pytest.approx(0.0)
    assert all(b < a for a, b in zip(m[80:], m[81:], strict=False))
    assert lr_multiplier(7, 100, "constant", 5) == 1.0


def test_decay_groups_exclude_norms_embeddings_and_router_goes_to_adamw():
    model = build_model(get_preset("thinking-micro"))
    split = split_params(model, use_muon=False)
    assert split.names["embed_tokens.weight"] == "no_decay"
    assert split.names["norm.weight"] == "no_decay"
    assert split.names["layers.0.input_layernorm.weight"] == "no_decay"
    assert split.names["layers.0.self_attn.q_proj.weight"] == "decay"
    assert split.names["layers.0.mlp.experts.gate_up_proj"] == "decay"
    muon = split_params(model, use_muon=True)
    assert muon.names["layers.0.mlp.experts.down_proj"] == "muon"
    assert muon.names["layers.0.self_attn.o_proj.weight"] == "muon"
    assert muon.names["layers.0.mlp.gate.weight"] == "decay"
    assert muon.names["lm_head.weight"] == "no_decay"
    n_params = len({id(p) for p in model.parameters()})
    assert len(split.decay) + len(split.no_decay) + len(split.muon) == n_params
    opts = build_optimizers(model, optimizer="muon", lr=1e-3, muon_lr=0.02)
    assert len(opts) == 2 and isinstance(opts[1], Muon)
    assert all("initial_lr" in g for o in opts for g in o.param_groups)


def test_orthogonalize_pushes_singular_values_towards_one_per_expert():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 24, 40, generator=g) * torch.tensor([0.01, 1.0, 50.0])[:, None, None]
    o = orthogonalize(w, steps=5)
    for e in range(3):  # each expert slice independently
        s = torch.linalg.svdvals(o[e])
        assert s.min() > 0.5 and s.max() < 1.5, s
    s_tall = torch.linalg.svdvals(orthogonalize(torch.randn(40, 16, generator=g)))
    assert s_tall.min() > 0.5 and s_tall.max() < 1.5


def test_muon_reduces_a_least_squares_loss():
    torch.manual_seed(0)
    target = torch.randn(16, 16)
    w = torch.nn.Parameter(torch.zeros(16, 16))
    opt = Muon([w], lr=0.05)
    first = None
    for _ in range(60):
        loss = (w - target).pow(2).mean()
        first = first if first is not None else float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert float(loss.detach()) < 0.2 * first


def test_recipe_table_fills_configs_and_flags_override(tmp_path):
    import argparse

    from hillclimb.errors import ConfigError
    from hillclimb.train import SFTConfig, TrainConfig
    from hillclimb.train.cli import register

    toml = tmp_path / "r.toml"
    toml.write_text(
        '[train]\npreset = "thinking-tiny"\nsteps = 300\nseq_len = 256\nlr = 0.004\n'
        "[sft]\nsteps = 50\nproblems = { tiers = [1], n = 10 }\n"
    )
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["train", "--config", str(toml), "--steps", "7", "--set", "bias_balancing=true"]
    )
    import dataclasses

    from hillclimb.train.cli import _collect

    d = _collect(args, "train", {f.name for f in dataclasses.fields(TrainConfig)})
    cfg = TrainConfig.from_dict(d)
    assert (cfg.preset, cfg.steps, cfg.seq_len, cfg.lr) == ("thinking-tiny", 7, 256, 0.004)
    assert cfg.model_overrides == {"bias_balancing": True}
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round-trips through run dirs
    s = SFTConfig.from_dict({"steps": 50, "problems": {"tiers": [1], "n": 10}})
    assert s.problems == {"tiers": [1], "n": 10} and s.lr == 1e-3
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"stepz": 1})
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")


def test_hold_keeps_the_peak_through_the_copy_warmup_then_runs_the_schedule_afresh():
    from hillclimb.train.schedule import lr_multiplier, lr_multiplier_with_hold

    kw = dict(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1, decay_frac=0.2)
    # no hold: exactly the plain schedule
    for s in range(0, 100, 7):
        assert lr_multiplier_with_hold(s, 100, 0, **kw) == lr_multiplier(s, 100, **kw)
    # hold 40 of 100: warmup, then the peak until step 40 ...
    held = [lr_multiplier_with_hold(s, 100, 40, **kw) for s in range(100)]
    assert held[0] == 0.1 and held[9] == 1.0 and all(m == 1.0 for m in held[9:40])
    # ... then the schedule over the other 60 steps from its own start (warmup again)
    assert held[40:] == [lr_multiplier(s, 60, **kw) for s in range(60)]
    assert held[-1] == pytest.approx(0.1)
