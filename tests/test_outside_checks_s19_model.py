"""Outside checks (session 19) on the model contracts: configs the code accepts, checkpoints as
other tools and damage leave them, trainer state on resume. Each test failed before its fix."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import hillclimb
from _train_util import save_tokenizer_dir, write_shards
from hillclimb.cli import main
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.model.checkpoint import load_model, save_checkpoint
from hillclimb.model.config import PRESETS, get_preset
from hillclimb.model.hf import config_to_hf
from hillclimb.model.transformer import build_model


# ---- model configs: a value of the wrong type is refused up front --------------------------------
@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"n_experts": 2.5}, "n_experts must be an int"),
        ({"top_k": 1.5}, "top_k must be an int"),
        ({"d_expert": "64"}, "d_expert must be an int"),
        ({"n_experts": True, "top_k": True}, "n_experts must be an int"),
        ({"max_seq_len": 8.5}, "max_seq_len must be an int"),
        ({"rope_theta": "abc"}, "rope_theta must be a finite number"),
        ({"norm_eps": "x"}, "norm_eps must be a finite number"),
        ({"d_dense": -5, "n_dense_layers": 1}, "d_dense must be >= 0"),
        ({"d_shared": -3, "n_shared_experts": 1}, "d_shared must be >= 0"),
        ({"tie_embeddings": "false"}, "tie_embeddings must be true or false"),
        ({"qk_norm": "no"}, "qk_norm must be true or false"),
        ({"rope_scaling": 5}, "rope_scaling must be an object or null"),
        ({"rope_scaling": {"factor": 2.0, "bogus": 1}}, "unknown rope_scaling keys"),
        (
            {
                "rope_scaling": {
                    "factor": 2.0,
                    "original_max_position_embeddings": 64,
                    "beta_fast": -1,
                }
            },
            "beta_fast and beta_slow must be > 0",
        ),
        ({"name": 5}, "name must be a string"),
    ],
)
def test_model_config_values_of_the_wrong_type_are_refused(kw, msg):
    # before: TypeError/AttributeError tracebacks at construction or deep inside torch, or
    # (strings for booleans) silently a different model
    with pytest.raises(ConfigError, match=msg):
        get_preset("thinking-micro").replace(**kw)


def test_train_set_with_a_string_boolean_is_one_line_before_any_work(tmp_path, capsys):
    # `--set tie_embeddings=no` (not JSON) arrives as the string "no", which was truthy: the run
    # trained a tied model the user had asked not to tie
    write_shards(tmp_path / "data", n_train=40, n_val=4)
    save_tokenizer_dir(tmp_path)
    rc = main([
        "train", "--preset", "thinking-micro", "--data", str(tmp_path / "data"),
        "--tokenizer", str(tmp_path / "tokenizer"), "--out", str(tmp_path / "run"),
        "--seq-len", "16", "--batch-size", "2", "--steps", "1", "--no-tensorboard",
        "--set", "tie_embeddings=no",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "tie_embeddings must be true or false" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- HF export: widths transformers' default MoE kernel cannot take ------------------------------
@pytest.mark.parametrize("kw", [{"d_model": 49}, {"d_expert": 33}])
def test_unaligned_widths_load_in_transformers_with_our_logits(tmp_path, kw):
    transformers = pytest.importorskip("transformers")
    cfg = get_preset("thinking-micro").replace(**kw)
    model = build_model(cfg, seed=3).eval()
    save_checkpoint(model, tmp_path / "ck")
    # before: transformers' grouped_mm raised "strides should be multiple of 16 bytes"
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "ck", dtype=torch.float32
    ).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 24))
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max().item() <= 1e-4


def test_aligned_presets_keep_the_default_transformers_path():
    for cfg in PRESETS.values():
        assert "experts_implementation" not in config_to_hf(cfg)


# ---- damaged checkpoints: one line, not a traceback ----------------------------------------------
@pytest.fixture
def ck(tmp_path):
    d = tmp_path / "ck"
    save_checkpoint(build_model(get_preset("code-flash-micro"), seed=0), d)
    return d


def _edit_json(path, fn):
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def test_config_that_misdescribes_the_weights_is_one_line_for_every_loader(ck, tmp_path, capsys):
    # hillclimb.json `model_config: {}` (the default config: d_model 64 against weights of 48);
    # before: eval / sft --from / rl --model / serve died in load_state_dict with a traceback
    _edit_json(ck / "hillclimb.json", lambda d: d.update(model_config={}))
    with pytest.raises(HillclimbError, match=r"embed_tokens.weight has shape \[512, 48\]"):
        load_model(ck)
    # the same through config.json alone (a foreign checkpoint without hillclimb.json)
    (ck / "hillclimb.json").unlink()
    _edit_json(ck / "config.json", lambda d: d.update(hidden_size=64))
    with pytest.raises(HillclimbError, match="does not match the weights"):
        load_model(ck)
    rc = main(["eval", "--model", str(ck), "--families", "arith", "--tiers", "1",
               "--n-per-tier", "1", "--max-tokens", "2", "--baseline-train-n", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "does not match the weights" in err and "Traceback" not in err


def test_integer_weights_are_refused_not_cast(ck, tmp_path, capsys):
    # before: int64 tensors were silently cast to float and "loaded" (and exported)
    t = load_file(str(ck / "model.safetensors"))
    save_file({k: (v * 100).long() for k, v in t.items()}, str(ck / "model.safetensors"))
    with pytest.raises(HillclimbError, match="not a floating-point type"):
        load_model(ck)
    assert main(["export", str(ck), "--out", str(tmp_path / "hf")]) == 2
    assert "not a floating-point type" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


def test_config_json_with_a_nested_value_of_the_wrong_kind(ck):
    # before: AttributeError ('list' object has no attribute 'get') from every loader
    (ck / "hillclimb.json").unlink()
    _edit_json(ck / "config.json", lambda d: d.update(rope_parameters=[1]))
    with pytest.raises(HillclimbError, match="unusable model config"):
        load_model(ck)


def test_hf_export_refuses_config_json_that_disagrees_with_hillclimb_json(ck, tmp_path, capsys):
    # our loader reads hillclimb.json, transformers reads config.json: the copy exported before
    # this check loaded in hillclimb and failed in transformers (size mismatch)
    _edit_json(ck / "config.json", lambda d: d.update(hidden_size=64))
    assert main(["export", str(ck), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "d_model: hillclimb.json 48, config.json 64" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "hf").exists()


def test_no_false_disagreement_for_configs_we_write():
    from hillclimb.model.hf import hf_config_differences

    variants = [
        {"n_dense_layers": 1, "d_dense": 96, "tie_embeddings": True},
        {"n_dense_layers": 2, "d_dense": 0},
        {"rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 64}},
        {"rope_scaling": {"factor": 1.0}},
        {"n_experts": 1, "top_k": 1, "norm_topk_prob": False},
    ]
    cfgs = list(PRESETS.values()) + [get_preset("thinking-micro").replace(**v) for v in variants]
    for cfg in cfgs:
        assert hf_config_differences(cfg, config_to_hf(cfg)) == [], cfg.name


# ---- resume: a damaged trainer state ----------------------------------------------------------------
def test_resume_from_a_damaged_trainer_state_is_one_line(tmp_path):
    from hillclimb.train import pretrain
    from hillclimb.train.config import TrainConfig

    write_shards(tmp_path / "data", n_train=60, n_val=6)
    save_tokenizer_dir(tmp_path)
    cfg = TrainConfig(
        preset="code-flash-micro", data=tmp_path / "data", tokenizer=tmp_path / "tokenizer",
        out=tmp_path / "run", seq_len=16, batch_size=2, steps=3, warmup_steps=1, val_tokens=32,
        ckpt_every=2, threads=1, tensorboard=False, progress=False,
    )  # fmt: skip
    pretrain.run(cfg)
    state_file = tmp_path / "run" / "checkpoints" / "step_000003" / "trainer_state.pt"
    good = torch.load(state_file, weights_only=True)
    shutil.rmtree(tmp_path / "run" / "final")
    (tmp_path / "run" / "run.json").unlink()
    resume = cfg.replace(resume=True)
    for bad, msg in [
        ({"format": good["format"], "step": 3}, "damaged trainer state"),  # was KeyError
        ([1, 2], "not a trainer state"),  # was AttributeError
        ({**good, "expert_bias": {}}, "cannot restore the trainer state"),  # was KeyError
        ({**good, "rng": {"torch": 5}}, "cannot restore the trainer state"),  # was TypeError
    ]:
        torch.save(bad, state_file)
        with pytest.raises(HillclimbError, match=msg):
            pretrain.run(resume)
    torch.save(good, state_file)  # the intact state still resumes
    assert pretrain.run(resume).steps == 3
    assert hillclimb.load_model(tmp_path / "run" / "final") is not None
