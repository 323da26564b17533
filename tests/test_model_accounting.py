"""`hillclimb model info`: numbers read off the modules; the full presets land on the seed figures."""

from __future__ import annotations

import json

import pytest
import torch

from hillclimb.cli import main
from hillclimb.model.accounting import account
from hillclimb.model.config import get_preset, preset_names
from hillclimb.model.transformer import build_model


@pytest.mark.parametrize(
    "preset, total, active, ctx",
    [("thinking-full", 1.0e12, 35e9, 131072), ("code-flash-full", 137e9, 5e9, 262144)],
)
def test_full_presets_match_seed_figures(preset, total, active, ctx):
    a = account(get_preset(preset))
    assert abs(a.total_params / total - 1) <= 0.10, a.total_params
    assert abs(a.active_params / active - 1) <= 0.10, a.active_params
    assert a.max_context == ctx
    assert 0.03 <= a.active_fraction <= 0.05  # "only 3-5% of parameters are active"
    assert a.kv_bytes_per_token < a.kv_bytes_per_token_mha


def test_counts_follow_the_real_modules():
    cfg = get_preset("thinking-micro")
    m = build_model(cfg, seed=0)
    a = account(cfg)
    assert a.total_params == sum(p.numel() for p in m.parameters())
    expert = sum(
        mm.experts.gate_up_proj.numel() + mm.experts.down_proj.numel() for mm in m.moe_layers()
    )
    assert a.expert_params == expert
    assert a.active_params == a.total_params - expert + expert * cfg.top_k // cfg.n_experts
    # KV bytes: K and V, n_kv_heads * head_dim per layer, 2 bytes each
    assert a.kv_bytes_per_token == cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 2
    assert a.kv_bytes_per_token_mha == cfg.n_layers * 2 * cfg.n_heads * cfg.head_dim * 2


def test_flops_measured_against_a_profiled_forward():
    """Matmul FLOPs per token equal what torch's FLOP counter sees in a real forward (no attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = get_preset("thinking-micro").replace(expert_impl="loop")
    m = build_model(cfg, seed=0).eval()
    T = 64
    ids = torch.randint(0, cfg.vocab_size, (1, T))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(ids)
    measured = fc.get_total_flops()
    a = account(cfg)
    predicted = T * a.matmul_flops_per_token
    sdpa = measured - predicted  # the remainder is attention (QK^T, AV over a causal T×T)
    full_attn = cfg.n_layers * 2 * 2 * cfg.n_heads * cfg.head_dim * T * T
    # dropless routing: each expert sees exactly its tokens, so the matmul part matches exactly
    assert 0 <= sdpa <= full_attn * 1.01, (measured, predicted)


def test_doubling_experts_keeps_active_params():
    cfg = get_preset("thinking-tiny")
    a1 = account(cfg)
    a2 = account(cfg.replace(n_experts=cfg.n_experts * 2))
    assert a2.total_params > a1.total_params * 1.4
    assert (
        a2.active_params - a1.active_params == cfg.n_layers * cfg.d_model * cfg.n_experts
    )  # router only


def test_model_info_cli_json(capsys):
    assert main(["model", "info", "--preset", "code-flash-full", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in (
        "total_params",
        "active_params",
        "matmul_flops_per_token",
        "kv_bytes_per_token",
        "kv_bytes_per_token_mha",
        "kv_bytes_at_max_context",
    ):
        assert key in d
    assert main(["model", "info", "--preset", "thinking-micro"]) == 0
    assert "active parameters" in capsys.readouterr().out


def test_all_presets_account():
    for name in preset_names():
        a = account(get_preset(name))
        assert 0 < a.active_params <= a.total_params
