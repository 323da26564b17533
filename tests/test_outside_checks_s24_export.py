"""Outside checks (session 24, export): padded vocabulary ids in the GGUF export, and the HF
export's chat template + tokenizer against our own `encode_chat`.

1. Our embedding/LM head is padded beyond the tokenizer (micro: 512 rows, byte-level fallback
   tokenizer 271 ids). llama.cpp's samplers read every one of its `n_vocab` logits whatever the
   token type, so padded rows written as UNUSED tokens could still be sampled (an untrained micro
   model put ~47% of its next-token mass there; they detokenize to nothing). The GGUF now keeps
   only the tokenizer's rows: the real tokens' logits are unchanged, padded ids do not exist.
2. transformers' `AutoTokenizer.from_pretrained(export).apply_chat_template(tokenize=True)` must
   give exactly our `encode_chat` ids (same Jinja source, specials as single ids, no BOS/EOS
   added) for system/user/assistant/tool-call/tool-result/reasoning conversations. Untrusted text
   holding special-token strings is the one documented difference (we encode it as data).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import hillclimb
from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset, padded_vocab
from hillclimb.model.gguf import export_gguf
from hillclimb.model.transformer import build_model

gguf = pytest.importorskip("gguf")


def _fields(path: Path) -> tuple[dict, dict]:
    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items()}, {t.name: t for t in r.tensors}


def _rows(t) -> np.ndarray:
    """A GGUF f32 matrix as torch layout [rows, cols] (ggml stores dims reversed)."""
    cols, rows = (int(d) for d in t.shape)
    return np.asarray(t.data, dtype=np.float32).reshape(rows, cols)


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_keeps_only_the_tokenizer_rows(tmp_path, tied):
    cfg = get_preset("thinking-micro").replace(tie_embeddings=tied)
    model = build_model(cfg, seed=3).eval()
    save_checkpoint(model, tmp_path / "ck")
    tok = hillclimb.load_tokenizer(tmp_path / "ck")
    n = tok.vocab_size
    assert n < cfg.vocab_size  # the premise: the model is padded beyond the tokenizer

    rep = export_gguf(tmp_path / "ck", tmp_path / "m.gguf", dtype="f32")
    f, t = _fields(tmp_path / "m.gguf")
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    # llama.cpp: n_vocab = len(tokens) must equal token_embd's rows; every row is a real token
    assert len(tokens) == len(types) == n == int(t["token_embd.weight"].shape[1])
    assert gguf.TokenType.UNUSED not in types
    assert not any(s.startswith("[PAD") for s in tokens)
    assert f["hillclimb.padded_vocab_size"] == cfg.vocab_size
    assert (rep.n_vocab, rep.dropped_vocab_rows) == (n, cfg.vocab_size - n)

    # the head llama.cpp multiplies with (output, or token_embd when tied) = our rows [:n], so its
    # logits are ours on the real ids and the sampled distribution is ours with padded ids masked
    sd = model.state_dict()
    embd = sd["embed_tokens.weight"].numpy()
    np.testing.assert_array_equal(_rows(t["token_embd.weight"]), embd[:n])
    assert ("output.weight" in t) == (not tied)
    head = _rows(t["output.weight"]) if not tied else _rows(t["token_embd.weight"])
    np.testing.assert_array_equal(head, sd["lm_head.weight"].numpy()[:n])
    # the GGUF logits for one hidden state: ours over the real ids; the masked softmax sums to 1
    h = torch.randn(cfg.d_model, generator=torch.Generator().manual_seed(0)).numpy()
    ours = sd["lm_head.weight"].numpy() @ h
    theirs = head @ h
    np.testing.assert_allclose(theirs, ours[:n], rtol=1e-6, atol=1e-6)
    masked = np.where(np.arange(cfg.vocab_size) < n, ours, -np.inf)
    p_ours = np.exp(masked - masked.max()) / np.exp(masked - masked.max()).sum()
    p_theirs = np.exp(theirs - theirs.max()) / np.exp(theirs - theirs.max()).sum()
    np.testing.assert_allclose(p_theirs, p_ours[:n], rtol=1e-5, atol=1e-7)


def test_gguf_unpadded_model_drops_nothing(tmp_path):
    """A tokenizer that fills the embedding exactly keeps every row (nothing else changes)."""
    tok = _bpe_tokenizer()
    cfg = get_preset("code-flash-micro").replace(vocab_size=tok.vocab_size)
    save_checkpoint(build_model(cfg, seed=1), tmp_path / "ck", tokenizer=tok)
    rep = export_gguf(tmp_path / "ck", tmp_path / "m.gguf", dtype="f32")
    f, t = _fields(tmp_path / "m.gguf")
    assert rep.dropped_vocab_rows == 0 and rep.n_vocab == tok.vocab_size
    assert len(f["tokenizer.ggml.tokens"]) == int(t["token_embd.weight"].shape[1]) == cfg.vocab_size


# ---- 2. the HF chat template + tokenizer vs encode_chat ------------------------------------------
def _bpe_tokenizer():
    spec = importlib.util.spec_from_file_location(
        "tok_corpus_maker_s24_export",
        Path(__file__).parent / "fixtures" / "tokenizer" / "corpus_maker.py",
    )
    cm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cm)
    from hillclimb.tokenizer.train import train_tokenizer

    return train_tokenizer([d["text"] for d in cm.documents(3)], 400)


_WORDS = [
    "def",
    "foo(x):",
    "return",
    "x+1",
    "héllo",
    "日本",
    "🙂",
    "  ",
    "\n",
    "    if",
    "{}",
    "\t",
]
_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "run",
            "description": "run a command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
    }
]


def _text(rng: random.Random) -> str:
    return "".join(
        rng.choice(_WORDS) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(0, 8))
    )


def _conversation(rng: random.Random) -> tuple[list[dict], dict]:
    """A random conversation with every role and feature the template renders."""
    msgs: list[dict] = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": _text(rng)})
    for _ in range(rng.randint(1, 2)):
        msgs.append({"role": "user", "content": _text(rng)})
        a: dict = {"role": "assistant", "content": _text(rng)}
        if rng.random() < 0.5:
            a["reasoning_content"] = _text(rng)
        if rng.random() < 0.5:
            args = {"cmd": _text(rng)}
            a["tool_calls"] = [
                {"type": "function", "function": {"name": "run", "arguments": arg}}
                for arg in (args, json.dumps(args))[: rng.randint(1, 2)]
            ]
            msgs.append(a)
            msgs += [{"role": "tool", "content": _text(rng)} for _ in range(rng.randint(1, 2))]
            msgs.append({"role": "assistant", "content": _text(rng)})
        else:
            msgs.append(a)
    kw: dict = {"add_generation_prompt": rng.random() < 0.5}
    if kw["add_generation_prompt"]:
        msgs.append({"role": "user", "content": _text(rng)})
    if rng.random() < 0.4:
        kw["tools"] = _TOOLS
    if rng.random() < 0.5:
        kw["enable_thinking"] = rng.random() < 0.5
    return msgs, kw


def _hf_ids(hft, msgs, **kw) -> list[int]:
    out = hft.apply_chat_template(msgs, tokenize=True, **kw)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def test_hf_chat_template_gives_encode_chat_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = _bpe_tokenizer()
    cfg = get_preset("code-flash-micro").replace(vocab_size=padded_vocab(tok.vocab_size))
    save_checkpoint(build_model(cfg, seed=1), tmp_path / "ck", tokenizer=tok)
    ours_tok = hillclimb.load_tokenizer(tmp_path / "ck")
    hft = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ck"))

    # special tokens are single special ids in both; no BOS/EOS is added to plain text
    for sp, tid in ours_tok.special_ids.items():
        assert hft.encode(sp, add_special_tokens=False) == [tid] == ours_tok.encode(sp)
    assert hft("def f")["input_ids"] == ours_tok.encode("def f")

    rng = random.Random(0)
    differ = []
    for _ in range(40):
        msgs, kw = _conversation(rng)
        if _hf_ids(hft, msgs, **kw) != ours_tok.encode_chat(msgs, **kw):
            differ.append((msgs, kw))
    assert not differ, f"{len(differ)}/40 conversations differ, e.g. {differ[0]}"

    # prefill (continue_final_message) agrees too
    prefill = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "def f():\n  "}]
    assert _hf_ids(hft, prefill, continue_final_message=True) == ours_tok.encode_chat(
        prefill, continue_final_message=True
    )
