"""Hugging Face interop: our checkpoints load in transformers' Qwen3-MoE with the same logits, and
local HF Qwen3-MoE directories load into our model. Nothing is downloaded: transformers builds a
random tiny Qwen3-MoE locally."""

from __future__ import annotations

import json

import pytest
import torch

import hillclimb
from hillclimb.errors import HillclimbError
from hillclimb.model.checkpoint import load_model, save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.hf import config_to_hf
from hillclimb.model.transformer import build_model

transformers = pytest.importorskip("transformers")

VARIANTS = {
    "thinking-micro": {},
    "code-flash-micro": {},
    "dense-first+tied": {"n_dense_layers": 1, "d_dense": 96, "tie_embeddings": True},
    "yarn": {
        "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 64},
        "max_seq_len": 256,
    },
    "no-norm-topk": {"norm_topk_prob": False},
}


def _cfg(variant):
    base = "code-flash-micro" if variant == "code-flash-micro" else "thinking-micro"
    return get_preset(base).replace(**VARIANTS[variant])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_our_checkpoint_loads_in_transformers_with_same_logits(tmp_path, variant):
    cfg = _cfg(variant)
    model = build_model(cfg, seed=11).eval()
    save_checkpoint(model, tmp_path / "ck")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "ck", dtype=torch.float32
    ).eval()
    assert type(hf).__name__ == "Qwen3MoeForCausalLM"
    ids = torch.randint(0, cfg.vocab_size, (2, 96))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    # and back through our loader
    again = hillclimb.load_model(tmp_path / "ck")
    with torch.no_grad():
        assert torch.equal(again(ids), ours)


@pytest.mark.parametrize("variant", ["thinking-micro", "dense-first+tied", "yarn"])
def test_hf_qwen3_moe_directory_loads_into_ours(tmp_path, variant):
    cfg = _cfg(variant)
    hf_cfg = transformers.Qwen3MoeConfig(
        **{
            k: v
            for k, v in config_to_hf(cfg).items()
            if k not in ("architectures", "model_type", "dtype", "rope_scaling", "rope_theta")
        }
    )
    torch.manual_seed(3)
    hf = transformers.Qwen3MoeForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # HF inits some weights to zero/one; randomise everything for a real test
        for p in hf.parameters():
            p.normal_(0, 0.05)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    ids = torch.randint(0, cfg.vocab_size, (2, 40))
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max().item() <= 1e-4


def test_parameter_counts_equal_transformers():
    for variant in VARIANTS:
        cfg = _cfg(variant)
        ours = build_model(cfg, device="meta")
        hf_cfg = transformers.Qwen3MoeConfig(
            **{
                k: v
                for k, v in config_to_hf(cfg).items()
                if k not in ("architectures", "model_type", "dtype", "rope_scaling", "rope_theta")
            }
        )
        with torch.device("meta"):
            hf = transformers.Qwen3MoeForCausalLM(hf_cfg)
        n_ours = sum(p.numel() for p in ours.parameters())
        n_hf = sum(p.numel() for p in hf.parameters())
        assert n_ours == n_hf, variant


def test_checkpoint_directory_contract(tmp_path):
    model = build_model(get_preset("thinking-micro"), seed=0)
    d = save_checkpoint(model, tmp_path / "ck", meta={"lineage": {"stage": "test"}})
    names = {p.name for p in d.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "hillclimb.json",
    } <= names
    info = json.loads((d / "hillclimb.json").read_text())
    assert info["preset"] == "thinking-micro" and info["lineage"]["stage"] == "test"
    tcfg = json.loads((d / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tcfg["chat_template"]
    tok = transformers.AutoTokenizer.from_pretrained(d)
    ours = hillclimb.load_tokenizer(d)
    text = "def f(x):\n    return x + 1  # ünïcode <|im_start|>"
    assert tok(text).input_ids == ours.encode(text)
    assert ours.decode(ours.encode(text)) == text
    with pytest.raises(HillclimbError, match="already exists"):
        save_checkpoint(model, d)


def test_sharded_weights_roundtrip(tmp_path):
    model = build_model(get_preset("code-flash-micro"), seed=0).eval()
    save_checkpoint(model, tmp_path / "ck", max_shard_bytes=100_000)
    assert (tmp_path / "ck" / "model.safetensors.index.json").is_file()
    ids = torch.randint(0, 512, (1, 9))
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "ck")(ids), model(ids))
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "ck", dtype=torch.float32
    ).eval()
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max() <= 1e-4


def test_not_expressible_features_fail_export_clearly(tmp_path):
    from hillclimb.cli import main

    cfg = get_preset("thinking-micro").replace(n_shared_experts=1)
    model = build_model(cfg, seed=0).eval()
    save_checkpoint(model, tmp_path / "shared")
    cfgjson = json.loads((tmp_path / "shared" / "config.json").read_text())
    assert (
        cfgjson["model_type"] == "hillclimb_moe"
    )  # transformers must refuse, not load something else
    with pytest.raises(Exception):  # noqa: B017 - any refusal from transformers is fine
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "shared")
    ids = torch.randint(0, 512, (1, 7))
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "shared")(ids), model(ids))  # ours still loads it
    assert (
        main(["export", str(tmp_path / "shared"), "--format", "hf", "--out", str(tmp_path / "x")])
        == 2
    )
    assert not (tmp_path / "x").exists()

    biased = build_model(get_preset("thinking-micro").replace(bias_balancing=True), seed=0)
    biased.layers[0].mlp.gate.expert_bias[:] = torch.tensor([0.1, 0, 0, 0])
    save_checkpoint(biased, tmp_path / "biased")
    assert (
        json.loads((tmp_path / "biased" / "config.json").read_text())["model_type"]
        == "hillclimb_moe"
    )
    assert (
        main(["export", str(tmp_path / "biased"), "--format", "hf", "--out", str(tmp_path / "y")])
        == 2
    )

    ok = build_model(get_preset("thinking-micro"), seed=0)
    save_checkpoint(ok, tmp_path / "ok")
    assert (
        main(["export", str(tmp_path / "ok"), "--format", "hf", "--out", str(tmp_path / "z")]) == 0
    )
    assert (tmp_path / "z" / "model.safetensors").is_file()


def test_hf_export_refuses_config_that_does_not_match_the_weights(tmp_path, capsys):
    """The HF export copies files as they are: a `hillclimb.json` whose `model_config` does not
    describe the weights (`{}` is the default config, not code-flash-micro) is refused with one
    line naming the first mismatching tensor, and nothing is written."""
    from hillclimb.cli import main

    save_checkpoint(build_model(_cfg("code-flash-micro"), seed=0), tmp_path / "ck")
    info_file = tmp_path / "ck" / "hillclimb.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "model_config": {}}))
    assert main(["export", str(tmp_path / "ck"), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "model.embed_tokens.weight has shape [512, 48], the config implies [512, 64]" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "hf").exists()
    # the matching config still exports
    info_file.write_text(json.dumps(info))
    assert main(["export", str(tmp_path / "ck"), "--out", str(tmp_path / "hf")]) == 0


def test_load_model_errors(tmp_path):
    with pytest.raises(HillclimbError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HillclimbError, match="config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(HillclimbError, match="malformed"):
        load_model(tmp_path / "bad")
