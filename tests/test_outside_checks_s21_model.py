"""Outside checks (session 21) on the model contracts: what `hillclimb export` hands to other
runtimes (transformers, llama.cpp) and what `hillclimb model info` reports. Each test failed before
its fix."""

from __future__ import annotations

import json

import pytest
import torch

from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model


def _save(path, preset="thinking-micro", edit=None, tokenizer=None, dtype=None):
    model = build_model(get_preset(preset), seed=0)
    if edit is not None:
        with torch.no_grad():
            edit(model)
    if dtype is not None:
        model = model.to(dtype)
    save_checkpoint(model, path, tokenizer=tokenizer)
    return path


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


# ---- model info: a KV element of 0 or fewer bytes ------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-2"])
def test_model_info_refuses_a_kv_element_size_that_is_not_positive(capsys, value):
    # before: 0 was a ZeroDivisionError traceback; -2 printed negative KV-cache bytes
    rc = main(["model", "info", "--preset", "thinking-micro", "--kv-dtype-bytes", value, "--json"])
    _one_line_error(capsys, rc, "--kv-dtype-bytes")


def test_account_refuses_a_kv_element_size_that_is_not_positive():
    from hillclimb.model.accounting import account

    with pytest.raises(HillclimbError, match="kv_dtype_bytes"):
        account(get_preset("thinking-micro"), kv_dtype_bytes=0)


# ---- exports of weights that are not finite ------------------------------------------------------
def _nan_q(model):
    model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")


def _inf_down(model):
    model.layers[1].mlp.experts.down_proj[0, 0, 0] = float("-inf")


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
@pytest.mark.parametrize("edit", [_nan_q, _inf_down], ids=["nan", "inf"])
def test_export_refuses_weights_that_are_not_finite(tmp_path, capsys, fmt, edit):
    pytest.importorskip("gguf")
    ck = _save(tmp_path / "ck", edit=edit)
    out = tmp_path / ("out.gguf" if fmt == "gguf" else "out")
    # before: both formats exported the broken model and reported success
    rc = main(["export", str(ck), "--format", fmt, "--out", str(out)])
    _one_line_error(capsys, rc, "not finite")
    assert not out.exists()


def test_gguf_f16_export_refuses_weights_beyond_the_f16_range(tmp_path, capsys):
    pytest.importorskip("gguf")

    def big(model):
        model.layers[1].mlp.experts.down_proj[0, 0, 0] = 1e6

    ck = _save(tmp_path / "ck", edit=big)
    # before: 1e6 became +inf in the f16 file without a word
    rc = main(["export", str(ck), "--format", "gguf", "--out", str(tmp_path / "a.gguf")])
    err = _one_line_error(capsys, rc, "blk.1.ffn_down_exps.weight", "--dtype bf16")
    assert "f16" in err and not (tmp_path / "a.gguf").exists()
    # bf16 and f32 hold it
    for dtype in ("bf16", "f32"):
        out = tmp_path / f"{dtype}.gguf"
        assert (
            main(["export", str(ck), "--format", "gguf", "--dtype", dtype, "--out", str(out)]) == 0
        )
        assert out.is_file()


# ---- --out that is a symbolic link ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_export_refuses_an_out_that_is_a_dangling_symlink(tmp_path, capsys, fmt):
    pytest.importorskip("gguf")
    ck = _save(tmp_path / "ck")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    # before: hf was a NotADirectoryError traceback; gguf replaced the user's link with the file
    rc = main(["export", str(ck), "--format", fmt, "--out", str(link)])
    _one_line_error(capsys, rc, "symbolic link")
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


# ---- GGUF vocabulary: added tokens keep their role ------------------------------------------------
def test_gguf_marks_added_tokens_like_llama_cpp_converter(tmp_path):
    gguf = pytest.importorskip("gguf")
    from tokenizers import AddedToken

    from hillclimb.model.gguf import export_gguf
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    tok.hf.add_tokens([AddedToken("<|tool_x|>", special=False), AddedToken("héllo wörld")])
    tok.hf.add_special_tokens([AddedToken("<|extra|>", special=True)])
    ids = {t: tok.token_id(t) for t in ("<|tool_x|>", "héllo wörld", "<|extra|>")}
    ck = _save(tmp_path / "ck", tokenizer=tok)
    export_gguf(ck, tmp_path / "a.gguf")
    r = gguf.GGUFReader(str(tmp_path / "a.gguf"))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    # before: all three were NORMAL, which llama.cpp's BPE never produces from text (no merges
    # lead to them) and decodes through the byte alphabet ('héllo wörld' became invalid UTF-8)
    assert types[ids["<|tool_x|>"]] == gguf.TokenType.USER_DEFINED
    assert types[ids["héllo wörld"]] == gguf.TokenType.USER_DEFINED
    assert types[ids["<|extra|>"]] == gguf.TokenType.CONTROL
    assert tokens[ids["héllo wörld"]] == "héllo wörld"
    assert types[ord("a")] == gguf.TokenType.NORMAL  # byte symbols stay ordinary tokens


# ---- config.json's dtype says what the weights are stored in ------------------------------------
@pytest.mark.parametrize(
    "dtype, name", [(torch.bfloat16, "bfloat16"), (torch.float16, "float16"), (None, "float32")]
)
def test_config_json_dtype_is_the_stored_dtype(tmp_path, dtype, name):
    ck = _save(tmp_path / "ck", dtype=dtype)
    # before: always "float32", so transformers' dtype="auto" loaded a bf16 checkpoint at twice
    # its size and vLLM's "auto" read a dtype the weights do not have
    assert json.loads((ck / "config.json").read_text())["dtype"] == name


def test_bf16_checkpoint_loads_in_transformers_as_bf16(tmp_path):
    transformers = pytest.importorskip("transformers")
    ck = _save(tmp_path / "ck", dtype=torch.bfloat16)
    hf = transformers.AutoModelForCausalLM.from_pretrained(ck, dtype="auto")
    assert hf.dtype == torch.bfloat16


# ---- HF export: a tokenizer the copy's readers cannot load ----------------------------------------
def test_hf_export_refuses_a_damaged_tokenizer(tmp_path, capsys):
    ck = _save(tmp_path / "ck")
    (ck / "tokenizer.json").write_text("{bad")
    # before: exported and said it "loads with transformers"; AutoTokenizer then failed on it
    rc = main(["export", str(ck), "--out", str(tmp_path / "out")])
    _one_line_error(capsys, rc, "tokenizer")
    assert not (tmp_path / "out").exists()


def test_init_refuses_an_out_that_is_a_dangling_symlink(tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    # before: a NotADirectoryError traceback from the final rename (every save_checkpoint caller)
    rc = main(["init", "--preset", "thinking-micro", "--out", str(link)])
    _one_line_error(capsys, rc, "symbolic link")
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
    with pytest.raises(HillclimbError, match="symbolic link"):
        _save(link)


# ---- reading a Qwen3-MoE config.json written in the 4.x style ----------------------------------
def _legacy_yarn_dir(tmp_path):
    ck = _save(tmp_path / "ck")
    (ck / "hillclimb.json").unlink()  # a plain HF directory: config.json is the only source
    d = json.loads((ck / "config.json").read_text())
    d.pop("rope_parameters")
    d["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    (ck / "config.json").write_text(json.dumps(d))
    return ck


def test_legacy_rope_scaling_type_key_keeps_yarn(tmp_path):
    from hillclimb.model.checkpoint import load_config

    ck = _legacy_yarn_dir(tmp_path)
    # before: only `rope_type` was read, so `"type": "yarn"` (Qwen2.5-era configs, still read by
    # transformers) loaded a model without YaRN: different logits past 64 tokens
    cfg, _ = load_config(ck)
    assert cfg.rope_scaling is not None and cfg.rope_scaling.factor == 4.0
    assert cfg.rope_scaling.original_max_position_embeddings == 64


def test_legacy_rope_scaling_type_key_gives_transformers_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    from hillclimb.model.checkpoint import load_model

    ck = _legacy_yarn_dir(tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(ck, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (1, 160), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (hf(ids).logits - load_model(ck)(ids)).abs().max().item() <= 1e-4


# ---- init: a seed torch cannot take --------------------------------------------------------------
def test_init_refuses_a_seed_out_of_range(tmp_path, capsys):
    # before: a ValueError traceback ("Overflow when unpacking long long") from torch's generator
    rc = main(["init", "--preset", "thinking-micro", "--out", str(tmp_path / "ck"), "--seed", str(2**70)])  # fmt: skip
    _one_line_error(capsys, rc, "seed")
    assert not (tmp_path / "ck").exists()
    with pytest.raises(HillclimbError, match="seed"):
        build_model(get_preset("thinking-micro"), seed=-(2**64))
