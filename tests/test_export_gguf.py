"""GGUF export (`hillclimb export --format gguf`): what llama.cpp's qwen3moe loader reads.

The file is read back with gguf-py's own `GGUFReader`; every tensor is compared with our weights
after the documented layout transform (written out here independently of the exporter), and the
metadata and tokenizer are checked key by key. A small numpy forward that follows llama.cpp's
qwen3moe graph reads *only* the GGUF file and must give our logits: that pins tensor orientation,
the gate/up split and the dense-layers-as-replicated-experts trick without building llama.cpp
(the real llama.cpp comparison is in docs/areas/export.md).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hillclimb
from hillclimb.cli import main
from hillclimb.errors import HillclimbError
from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset, padded_vocab
from hillclimb.model.gguf import NO_MERGES_SENTINEL, export_gguf
from hillclimb.model.hf import NotExpressible
from hillclimb.model.transformer import build_model
from hillclimb.tokenizer.specials import SPECIAL_TOKENS

gguf = pytest.importorskip("gguf")

VARIANTS = {
    "thinking-micro": ("thinking-micro", {}),
    "code-flash-micro": ("code-flash-micro", {}),
    "dense-first+tied": (
        "thinking-micro",
        {"n_dense_layers": 1, "d_dense": 48, "tie_embeddings": True},
    ),
    "yarn": (
        "thinking-micro",
        {
            "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 64},
            "max_seq_len": 256,
        },
    ),
}


def _model(variant, seed=7, **extra):
    preset, kw = VARIANTS[variant]
    cfg = get_preset(preset).replace(**kw, **extra)
    model = build_model(cfg, seed=seed).eval()
    with torch.no_grad():  # larger weights than init, so logit comparisons are not trivially small
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(3.0)
            else:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _fields(reader):
    return {k: f.contents() for k, f in reader.fields.items()}


def _expected_tensors(model, n_tokens=271):
    """GGUF name → expected fp32 array, derived from our state dict (llama.cpp's qwen3moe names).
    Vocabulary rows stop at the tokenizer's `n_tokens` (the byte-level fallback's 271): padded
    rows are dropped so llama.cpp cannot sample them."""
    cfg, s = model.cfg, {k: v.detach().float() for k, v in model.state_dict().items()}
    E, d_exp = cfg.n_experts, cfg.d_expert
    exp = {
        "token_embd.weight": s["embed_tokens.weight"][:n_tokens],
        "output_norm.weight": s["norm.weight"],
    }
    if not cfg.tie_embeddings:
        exp["output.weight"] = s["lm_head.weight"][:n_tokens]
    names = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
        "ffn_norm": "post_attention_layernorm",
    }
    for i in range(cfg.n_layers):
        for g, ours in names.items():
            exp[f"blk.{i}.{g}.weight"] = s[f"layers.{i}.{ours}.weight"]
        if i < cfg.n_dense_layers:
            d = s[f"layers.{i}.mlp.gate_proj.weight"].shape[0]
            gate = torch.zeros(E, d_exp, cfg.d_model)
            up = torch.zeros(E, d_exp, cfg.d_model)
            down = torch.zeros(E, cfg.d_model, d_exp)
            gate[:, :d] = s[f"layers.{i}.mlp.gate_proj.weight"]
            up[:, :d] = s[f"layers.{i}.mlp.up_proj.weight"]
            down[:, :, :d] = s[f"layers.{i}.mlp.down_proj.weight"]
            exp[f"blk.{i}.ffn_gate_inp.weight"] = torch.zeros(E, cfg.d_model)
        else:
            gu = s[f"layers.{i}.mlp.experts.gate_up_proj"]
            gate, up, down = gu[:, :d_exp], gu[:, d_exp:], s[f"layers.{i}.mlp.experts.down_proj"]
            exp[f"blk.{i}.ffn_gate_inp.weight"] = s[f"layers.{i}.mlp.gate.weight"]
        exp[f"blk.{i}.ffn_gate_exps.weight"] = gate
        exp[f"blk.{i}.ffn_up_exps.weight"] = up
        exp[f"blk.{i}.ffn_down_exps.weight"] = down
    return {k: v.numpy() for k, v in exp.items()}


def _as_f32(t):
    data = np.asarray(t.data)
    if t.tensor_type == gguf.GGMLQuantizationType.BF16:
        words = data.view(np.uint16).astype(np.uint32) << 16
        return (
            words.view(np.float32).reshape(data.shape[:-1] + (-1,))
            if data.dtype == np.uint8
            else words.view(np.float32)
        )
    return data.astype(np.float32)


# ---- a numpy reading of llama.cpp's qwen3moe graph (no YaRN) ---------------------------------------
def _rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope_neox(x, pos, base):  # x [T, H, hd]; rotate halves (GGML_ROPE_TYPE_NEOX)
    hd = x.shape[-1]
    inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = pos[:, None].astype(np.float64) * inv[None]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., : hd // 2], x[..., hd // 2 :]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)


def _gguf_forward(path, ids):
    r = gguf.GGUFReader(path)
    f = _fields(r)
    W = {t.name: _as_f32(t).astype(np.float64) for t in r.tensors}
    A = "qwen3moe."
    L, H, Hkv = (
        f[A + "block_count"],
        f[A + "attention.head_count"],
        f[A + "attention.head_count_kv"],
    )
    hd, eps, base = (
        f[A + "attention.key_length"],
        f[A + "attention.layer_norm_rms_epsilon"],
        f[A + "rope.freq_base"],
    )
    k_used = f[A + "expert_used_count"]
    T = len(ids)
    pos = np.arange(T)
    x = W["token_embd.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(L):
        b = f"blk.{i}."
        h = _rms(x, W[b + "attn_norm.weight"], eps)
        q = (h @ W[b + "attn_q.weight"].T).reshape(T, H, hd)
        k = (h @ W[b + "attn_k.weight"].T).reshape(T, Hkv, hd)
        v = (h @ W[b + "attn_v.weight"].T).reshape(T, Hkv, hd)
        q = _rope_neox(_rms(q, W[b + "attn_q_norm.weight"], eps), pos, base)
        k = _rope_neox(_rms(k, W[b + "attn_k_norm.weight"], eps), pos, base)
        rep = H // Hkv
        k, v = np.repeat(k, rep, 1), np.repeat(v, rep, 1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, H * hd)
        x = x + o @ W[b + "attn_output.weight"].T
        h = _rms(x, W[b + "ffn_norm.weight"], eps)
        logits = h @ W[b + "ffn_gate_inp.weight"].T
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        top = np.argsort(-p, -1, kind="stable")[:, :k_used]
        y = np.zeros_like(x)
        for t in range(T):
            w = p[t, top[t]] / p[t, top[t]].sum()  # qwen3moe always renormalises
            for e, we in zip(top[t], w, strict=True):
                g = W[b + "ffn_gate_exps.weight"][e] @ h[t]
                u = W[b + "ffn_up_exps.weight"][e] @ h[t]
                y[t] += we * (W[b + "ffn_down_exps.weight"][e] @ (g / (1 + np.exp(-g)) * u))
        x = x + y
    x = _rms(x, W["output_norm.weight"], eps)
    return x @ W.get("output.weight", W["token_embd.weight"]).T


# ---- tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tensors_and_metadata_read_back(tmp_path, variant):
    model = _model(variant)
    cfg = model.cfg
    save_checkpoint(model, tmp_path / "ck")
    rep = export_gguf(tmp_path / "ck", tmp_path / "m.gguf", dtype="f32")
    assert rep.tokenizer_exact and rep.tokenizer_pre == "qwen2"
    r = gguf.GGUFReader(tmp_path / "m.gguf")
    got = {t.name: t for t in r.tensors}
    exp = _expected_tensors(model)
    assert set(got) == set(exp)
    assert ("output.weight" in got) == (not cfg.tie_embeddings)
    for name, want in exp.items():
        t = got[name]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, name
        assert tuple(int(d) for d in t.shape) == tuple(reversed(want.shape)), name  # ggml ne order
        np.testing.assert_array_equal(_as_f32(t), want, err_msg=name)

    f = _fields(r)
    A = "qwen3moe."
    assert f["general.architecture"] == "qwen3moe"
    assert f[A + "context_length"] == cfg.max_seq_len
    assert f[A + "embedding_length"] == cfg.d_model
    assert f[A + "block_count"] == cfg.n_layers
    assert f[A + "feed_forward_length"] == cfg.d_dense_eff
    assert f[A + "expert_feed_forward_length"] == cfg.d_expert
    assert f[A + "attention.head_count"] == cfg.n_heads
    assert f[A + "attention.head_count_kv"] == cfg.n_kv_heads
    assert f[A + "attention.key_length"] == f[A + "attention.value_length"] == cfg.head_dim
    assert f[A + "expert_count"] == cfg.n_experts
    assert f[A + "expert_used_count"] == cfg.top_k
    assert f[A + "rope.freq_base"] == pytest.approx(cfg.rope_theta)
    assert f[A + "attention.layer_norm_rms_epsilon"] == pytest.approx(cfg.norm_eps)
    if cfg.rope_scaling is not None:
        assert f[A + "rope.scaling.type"] == "yarn"
        assert f[A + "rope.scaling.factor"] == pytest.approx(4.0)
        assert f[A + "rope.scaling.original_context_length"] == 64
        assert f[A + "rope.scaling.yarn_beta_fast"] == pytest.approx(32.0)
    else:
        assert A + "rope.scaling.type" not in f
    assert json.loads(f["hillclimb.model_config"]) == cfg.to_dict()
    assert f.get("hillclimb.replicated_dense_layers", []) == list(range(cfg.n_dense_layers))

    # tokenizer: byte-level fallback; the model's padding rows are dropped (llama.cpp samples
    # every row whatever its token type)
    tok = hillclimb.load_tokenizer(tmp_path / "ck")
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == tok.vocab_size == got["token_embd.weight"].shape[1]
    assert tok.vocab_size < cfg.vocab_size == f["hillclimb.padded_vocab_size"]
    assert rep.n_vocab == tok.vocab_size and rep.dropped_vocab_rows == cfg.vocab_size - 271
    for i in range(tok.vocab_size):
        assert tokens[i] == tok.id_to_token(i)
    sp = tok.special_ids
    assert {i for i, t in enumerate(types) if t == gguf.TokenType.CONTROL} == set(sp.values())
    assert gguf.TokenType.UNUSED not in types
    assert f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.merges"] == [NO_MERGES_SENTINEL]
    assert f["tokenizer.ggml.eos_token_id"] == sp["<|im_end|>"] == f["tokenizer.ggml.eot_token_id"]
    assert f["tokenizer.ggml.padding_token_id"] == sp["<|fim_pad|>"]
    assert f["tokenizer.ggml.bos_token_id"] == sp["<|endoftext|>"]
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.ggml.fim_pre_token_id"] == sp["<|fim_prefix|>"]
    assert f["tokenizer.ggml.fim_mid_token_id"] == sp["<|fim_middle|>"]
    assert f["tokenizer.chat_template"] == tok.chat_template


@pytest.mark.parametrize("variant", ["thinking-micro", "code-flash-micro", "dense-first+tied"])
def test_qwen3moe_reading_of_the_file_gives_our_logits(tmp_path, variant):
    model = _model(variant)
    save_checkpoint(model, tmp_path / "ck")
    export_gguf(tmp_path / "ck", tmp_path / "m.gguf", dtype="f32")
    ids = torch.randint(0, 271, (24,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(ids[None])[0].double().numpy()
    theirs = _gguf_forward(tmp_path / "m.gguf", ids.numpy())
    assert theirs.shape == (24, 271)  # the tokenizer's ids only: padded rows are dropped
    assert np.abs(ours).max() > 0.5
    assert np.abs(ours[:, :271] - theirs).max() < 1e-4


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_dtypes_round_like_torch_and_keep_norms_f32(tmp_path, dtype):
    model = _model("thinking-micro")
    save_checkpoint(model, tmp_path / "ck")
    export_gguf(tmp_path / "ck", tmp_path / "m.gguf", dtype=dtype)
    r = gguf.GGUFReader(tmp_path / "m.gguf")
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    qt = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16}[dtype]
    exp = _expected_tensors(model)
    assert _fields(r)["general.file_type"] == {"f16": 1, "bf16": 32}[dtype]
    for t in r.tensors:
        keep = t.name.endswith("norm.weight") or t.name.endswith("ffn_gate_inp.weight")
        assert t.tensor_type == (gguf.GGMLQuantizationType.F32 if keep else qt), t.name
        want = exp[t.name] if keep else torch.from_numpy(exp[t.name]).to(tdt).float().numpy()
        np.testing.assert_array_equal(_as_f32(t).reshape(want.shape), want, err_msg=t.name)


def test_trained_bpe_tokenizer_vocab_and_merges(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "tok_corpus_maker_gguf",
        Path(__file__).parent / "fixtures" / "tokenizer" / "corpus_maker.py",
    )
    cm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cm)
    from hillclimb.tokenizer.train import train_tokenizer

    tok = train_tokenizer([d["text"] for d in cm.documents(3)], 400)
    cfg = get_preset("code-flash-micro").replace(vocab_size=padded_vocab(tok.vocab_size))
    save_checkpoint(build_model(cfg, seed=1), tmp_path / "ck", tokenizer=tok)
    rep = export_gguf(tmp_path / "ck", tmp_path / "m.gguf")
    assert rep.tokenizer_pre == "qwen2" and rep.tokenizer_exact is False
    f = _fields(gguf.GGUFReader(tmp_path / "m.gguf"))
    tj = json.loads(tok.hf.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    assert len(merges) > 50 and f["tokenizer.ggml.merges"] == merges
    assert f["tokenizer.ggml.tokens"][: tok.vocab_size] == [
        tok.id_to_token(i) for i in range(tok.vocab_size)
    ]
    assert [f["tokenizer.ggml.tokens"][tok.token_id(t)] for t in SPECIAL_TOKENS] == SPECIAL_TOKENS
    assert f["hillclimb.tokenizer_exact"] is False


def test_refusals(tmp_path):
    model = _model("thinking-micro")
    save_checkpoint(model, tmp_path / "ck")
    (tmp_path / "exists.gguf").write_bytes(b"keep")
    with pytest.raises(HillclimbError, match="already exists"):
        export_gguf(tmp_path / "ck", tmp_path / "exists.gguf")
    assert (tmp_path / "exists.gguf").read_bytes() == b"keep"
    with pytest.raises(HillclimbError, match="dtype"):
        export_gguf(tmp_path / "ck", tmp_path / "x.gguf", dtype="q4_0")
    cases = {
        "shared": ({"n_shared_experts": 1}, "shared experts"),
        "no-norm": ({"norm_topk_prob": False}, "norm_topk_prob"),
        "wide-dense": ({"n_dense_layers": 1, "d_dense": 96}, "dense first layers"),
        "betas": (
            {
                "rope_scaling": {
                    "factor": 2.0,
                    "original_max_position_embeddings": 64,
                    "beta_fast": 16.0,
                }
            },
            "beta_fast",
        ),
    }
    for name, (kw, msg) in cases.items():
        save_checkpoint(
            build_model(get_preset("thinking-micro").replace(**kw), seed=0), tmp_path / name
        )
        with pytest.raises(NotExpressible, match=msg):
            export_gguf(tmp_path / name, tmp_path / f"{name}.gguf")
        assert not (tmp_path / f"{name}.gguf").exists()
    # a non-zero selection bias makes the checkpoint non-Qwen3-MoE: refused like the HF export
    biased = build_model(get_preset("thinking-micro").replace(bias_balancing=True), seed=0)
    for m in biased.moe_layers():
        m.gate.expert_bias.fill_(0.5)
    save_checkpoint(biased, tmp_path / "biased")
    with pytest.raises(NotExpressible, match="bias"):
        export_gguf(tmp_path / "biased", tmp_path / "biased.gguf")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_cli_export_gguf(tmp_path, capsys):
    save_checkpoint(_model("code-flash-micro"), tmp_path / "ck")
    assert (
        main(
            [
                "export",
                str(tmp_path / "ck"),
                "--format",
                "gguf",
                "--out",
                str(tmp_path / "m.gguf"),
                "--dtype",
                "bf16",
            ]
        )
        == 0
    )
    assert "qwen3moe" in capsys.readouterr().out
    assert _fields(gguf.GGUFReader(tmp_path / "m.gguf"))["general.file_type"] == 32
    assert (
        main(
            ["export", str(tmp_path / "ck"), "--format", "gguf", "--out", str(tmp_path / "m.gguf")]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert (
        main(["export", str(tmp_path / "ck"), "--out", str(tmp_path / "hf"), "--dtype", "f16"]) == 2
    )


def test_config_that_does_not_match_the_weights_is_refused(tmp_path, capsys):
    """`hillclimb.json` with `model_config: {}` loads the default config, whose shapes are not a
    code-flash-micro model's: refused (naming the first mismatching tensor) before anything is
    written, instead of a GGUF whose metadata and tensors disagree."""
    save_checkpoint(_model("code-flash-micro"), tmp_path / "ck")
    info_file = tmp_path / "ck" / "hillclimb.json"
    info = json.loads(info_file.read_text())
    info["model_config"] = {}
    info_file.write_text(json.dumps(info))
    with pytest.raises(HillclimbError, match=r"tensor model\.embed_tokens\.weight has shape"):
        export_gguf(tmp_path / "ck", tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
    # one field off (a layer more than stored) names the first tensor that is missing
    info["model_config"] = get_preset("code-flash-micro").replace(n_layers=3).to_dict()
    info_file.write_text(json.dumps(info))
    out = tmp_path / "m.gguf"
    assert main(["export", str(tmp_path / "ck"), "--format", "gguf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not match the weights" in err and "model.layers.2." in err and "missing" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
