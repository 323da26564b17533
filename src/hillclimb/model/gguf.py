"""GGUF export: our checkpoints as llama.cpp `qwen3moe` models (`hillclimb export --format gguf`).

Why GGUF and why `qwen3moe`: llama.cpp (and everything built on it: llama-server, Ollama, LM
Studio) reads only GGUF, and its `qwen3moe` architecture computes exactly our default block
(pre-norm, GQA with per-head QK RMSNorm, rotate-half "NeoX" RoPE with optional YaRN, softmax
top-k routing with renormalised weights, SwiGLU experts). So we write the file directly from our
own weights with the `gguf` package (llama.cpp's own pure-Python writer) instead of asking users
to run llama.cpp's converter on the HF export: one command, no llama.cpp checkout, and refusals
that name *our* features.

What llama.cpp's `qwen3moe` loader reads (studied from its `llama-model.cpp`/`models/qwen3moe.cpp`
and `convert_hf_to_gguf.py`'s Qwen3MoeModel; no code copied) and what we write:

- `{arch}.context_length, embedding_length, block_count, feed_forward_length,
  expert_feed_forward_length, attention.head_count(_kv), attention.key_length/value_length
  (head_dim), attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
  expert_count, expert_used_count`, plus `rope.scaling.{type=yarn, factor,
  original_context_length, yarn_beta_fast, yarn_beta_slow}` when YaRN is on.
- tensors in PyTorch (row-major) shape; GGUF stores dims reversed, so ggml sees the transposes
  llama.cpp asks for (`attn_q` ne={D, H·hd}, `ffn_gate_exps` ne={D, I, E}):
  `token_embd`, `output_norm`, `output` (omitted when tied: llama.cpp then reuses token_embd),
  `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, attn_q_norm, attn_k_norm, ffn_norm,
  ffn_gate_inp [E,D], ffn_gate_exps [E,I,D], ffn_up_exps [E,I,D], ffn_down_exps [E,D,I]}`.
  Our fused `gate_up_proj [E,2I,D]` is split at row I (gate first, as in `hf.state_to_hf`). No Q/K
  row permutation: NeoX RoPE rotates halves, exactly like ours.
- norms and the router stay F32 whatever `--dtype` says (llama.cpp's converter does the same;
  1-D ops and routing are computed in F32), other matrices use `--dtype`.

Where `qwen3moe` is narrower than Qwen3-MoE in transformers (so the HF export would succeed but
llama.cpp would compute something else), we refuse with `NotExpressible`:
- `norm_topk_prob=False`: llama.cpp's qwen3moe graph always renormalises the top-k weights.
- YaRN with beta_fast/beta_slow other than 32/1: qwen3moe does not read those keys.
- dense first layers: qwen3moe has no dense-FFN blocks and one expert width for all layers. A dense
  SwiGLU of width ≤ d_expert is written *exactly* as a MoE layer: every expert is a copy of the
  dense MLP zero-padded to d_expert (silu(0)·0 = 0 adds nothing) and the router is all zeros, so
  whichever top-k experts llama.cpp picks, the renormalised weights are 1/k each and the sum is the
  dense output. Costs E× the dense layer's bytes. Wider dense layers (the `thinking-small` preset)
  are refused: padding every expert to the dense width would multiply the file size.

Tokenizer: llama.cpp's byte-level BPE ("gpt2" model): byte-level token strings, merges, token
types (our special tokens and other special added tokens CONTROL, non-special added tokens
USER_DEFINED), bos/eos/eot/pad/FIM ids, chat template.

Padded vocabulary rows are dropped. Our embedding/LM head has `vocab_size` rows rounded up (to 64)
beyond the tokenizer's ids; those rows stand for no token. The HF export masks them with
`generation_config.suppress_tokens`, but GGUF has no such key and llama.cpp's samplers take every
one of its `n_vocab` logits whatever the token type (an UNUSED token is sampled like any other and
detokenizes to nothing): a byte-level micro model put ~47% of its next-token probability there.
So `token_embd`/`output` keep only the tokenizer's rows (llama.cpp requires n_vocab == those rows)
and the token list stops at the tokenizer's last id: the real tokens' logits are unchanged and the
sampled distribution is exactly the HF export's (padded ids at -inf). `hillclimb.padded_vocab_size`
records the checkpoint's row count. Ids missing *inside* the tokenizer's range (a hole, never seen
in our tokenizers) stay as UNUSED `[PAD{i}]` rows.

llama.cpp cannot take a custom pre-tokenizer regex from the file: it picks a built-in one by name
(`tokenizer.ggml.pre`). Our code-aware regex (`tokenizer/pretok.py`) is closest to Qwen2's, so
we write "qwen2" and say so: encoding in llama.cpp is then *valid but not always identical* to ours
(a newline+indent+keyword run is cut into pieces before BPE), decoding is exact. The byte-level
fallback tokenizer (no merges) and GPT-2-regex tokenizers tokenize identically ("exact" in the
export report and in the file's `hillclimb.tokenizer_exact` key).

Written to a temp file beside `--out` and renamed, so a kill never leaves half a GGUF.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_path
from hillclimb.model.config import ModelConfig
from hillclimb.model.hf import NotExpressible

ARCH = "qwen3moe"
DTYPES = ("f32", "f16", "bf16")
DEFAULT_DTYPE = "f16"  # llama.cpp's converter default; --dtype f32 for bit-exact weights
FORMAT_VERSION = 1

# llama.cpp refuses a "gpt2" vocabulary without a merges array and gguf-py cannot write an empty
# array, so a merge-free (byte-level fallback) tokenizer gets this one merge, which can never
# fire: U+2581 is not in the byte-level alphabet, so no symbol of any input ever equals it.
NO_MERGES_SENTINEL = "\u2581 \u2581"

# GGUF token types (gguf.TokenType values; repeated here so the mapping is readable).
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:  # optional extra
        raise HillclimbError(
            "GGUF export needs the `gguf` package: pip install 'hillclimb[gguf]'"
        ) from exc
    return gguf


# ---- what qwen3moe can express ---------------------------------------------------------------
def gguf_problems(cfg: ModelConfig) -> list[str]:
    """Reasons llama.cpp's `qwen3moe` cannot compute this model (beyond the Qwen3-MoE checks of
    `hf.expressibility_problems`, which every GGUF export passes first)."""
    problems = []
    if not cfg.norm_topk_prob:
        problems.append(
            "norm_topk_prob=False (llama.cpp's qwen3moe always renormalises top-k weights)"
        )
    rs = cfg.rope_scaling
    if rs is not None and rs.factor > 1.0 and (rs.beta_fast != 32.0 or rs.beta_slow != 1.0):
        problems.append(
            f"YaRN beta_fast={rs.beta_fast}/beta_slow={rs.beta_slow} (llama.cpp's qwen3moe uses 32/1)"
        )
    if cfg.n_dense_layers and cfg.d_dense_eff > cfg.d_expert:
        problems.append(
            f"dense first layers of width {cfg.d_dense_eff} > d_expert {cfg.d_expert} (llama.cpp's "
            "qwen3moe has no dense blocks; only dense layers no wider than an expert can be "
            "written exactly as replicated experts)"
        )
    return problems


# ---- tensors ---------------------------------------------------------------------------------
def _blk(i: int, what: str) -> str:
    return f"blk.{i}.{what}.weight"


def gguf_state(
    cfg: ModelConfig, state: dict[str, torch.Tensor], n_rows: int | None = None
) -> dict[str, torch.Tensor]:
    """Our state dict (fused experts) → GGUF tensor name → fp32 tensor in PyTorch layout, in
    llama.cpp's order. Dense layers become replicated, zero-padded experts (see module doc).
    `n_rows`: vocabulary rows kept in `token_embd`/`output` (the tokenizer's; None: all), so
    padded ids do not exist for llama.cpp's sampler (see module doc)."""
    s = {k: v.detach().to("cpu", torch.float32) for k, v in state.items()}
    rows = slice(None) if n_rows is None else slice(0, n_rows)
    out: dict[str, torch.Tensor] = {
        "token_embd.weight": s["embed_tokens.weight"][rows].contiguous()
    }
    E, d_exp = cfg.n_experts, cfg.d_expert
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        out[_blk(i, "attn_norm")] = s[p + "input_layernorm.weight"]
        out[_blk(i, "attn_q")] = s[p + "self_attn.q_proj.weight"]
        out[_blk(i, "attn_k")] = s[p + "self_attn.k_proj.weight"]
        out[_blk(i, "attn_v")] = s[p + "self_attn.v_proj.weight"]
        out[_blk(i, "attn_output")] = s[p + "self_attn.o_proj.weight"]
        out[_blk(i, "attn_q_norm")] = s[p + "self_attn.q_norm.weight"]
        out[_blk(i, "attn_k_norm")] = s[p + "self_attn.k_norm.weight"]
        out[_blk(i, "ffn_norm")] = s[p + "post_attention_layernorm.weight"]
        if cfg.is_moe_layer[i]:
            gate_up = s[p + "mlp.experts.gate_up_proj"]  # [E, 2I, D]
            out[_blk(i, "ffn_gate_inp")] = s[p + "mlp.gate.weight"]  # [E, D]
            out[_blk(i, "ffn_gate_exps")] = gate_up[:, :d_exp].contiguous()
            out[_blk(i, "ffn_up_exps")] = gate_up[:, d_exp:].contiguous()
            out[_blk(i, "ffn_down_exps")] = s[p + "mlp.experts.down_proj"]  # [E, D, I]
        else:
            gate, up, down = (s[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
            pad = d_exp - gate.shape[0]
            if pad < 0:
                raise NotExpressible(f"layer {i}: dense width {gate.shape[0]} > d_expert {d_exp}")
            gate = torch.nn.functional.pad(gate, (0, 0, 0, pad))
            up = torch.nn.functional.pad(up, (0, 0, 0, pad))
            down = torch.nn.functional.pad(down, (0, pad))
            out[_blk(i, "ffn_gate_inp")] = torch.zeros(E, cfg.d_model)
            out[_blk(i, "ffn_gate_exps")] = gate.expand(E, -1, -1).contiguous()
            out[_blk(i, "ffn_up_exps")] = up.expand(E, -1, -1).contiguous()
            out[_blk(i, "ffn_down_exps")] = down.expand(E, -1, -1).contiguous()
    out["output_norm.weight"] = s["norm.weight"]
    if not cfg.tie_embeddings:
        out["output.weight"] = s["lm_head.weight"][rows].contiguous()
    return out


def _keep_f32(name: str, t: torch.Tensor) -> bool:
    return t.ndim <= 1 or name.endswith("_norm.weight") or name.endswith("ffn_gate_inp.weight")


def _encode(t: torch.Tensor, dtype: str, gguf: Any) -> tuple[np.ndarray, Any]:
    if dtype == "f32":
        return t.numpy(), gguf.GGMLQuantizationType.F32
    if dtype == "f16":
        return t.to(torch.float16).numpy(), gguf.GGMLQuantizationType.F16
    # bf16: torch's round-to-nearest-even, stored as raw 16-bit words
    return t.to(torch.bfloat16).view(torch.int16).numpy().view(
        np.uint16
    ), gguf.GGMLQuantizationType.BF16


# ---- tokenizer -------------------------------------------------------------------------------
@dataclass
class VocabInfo:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    exact: bool  # llama.cpp's pre-tokenizer gives exactly our token ids
    special_ids: dict[str, int]
    chat_template: str


def _classify_pretokenizer(tj: dict[str, Any], n_merges: int) -> tuple[str, bool]:
    from hillclimb.tokenizer.pretok import CODE_PATTERN

    pre = tj.get("pre_tokenizer") or {}
    if n_merges == 0:
        return "qwen2", True  # bytes only: every pre-tokenizer yields one token per byte
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2", True
    if pre.get("type") == "Sequence":
        splits = [p for p in pre.get("pretokenizers", []) if p.get("type") == "Split"]
        if splits and (splits[0].get("pattern") or {}).get("Regex") == CODE_PATTERN:
            return "qwen2", False
    return "qwen2", False


def token_rows(tok: Any, n_vocab: int) -> int:
    """Vocabulary rows the GGUF keeps: up to the tokenizer's last id (not the model's padded
    `n_vocab`: llama.cpp would sample the padded rows, see module doc)."""
    ids = tok.hf.get_vocab(with_added_tokens=True).values()
    n = max(max(ids, default=-1) + 1, tok.vocab_size)
    if n > n_vocab:
        raise HillclimbError(f"tokenizer has {n} tokens but the model vocabulary is {n_vocab}")
    return n


def vocab_info(tok: Any, n_vocab: int) -> VocabInfo:
    """GGUF vocabulary for our tokenizer: one entry per tokenizer id (`token_rows`; the model's
    padding rows beyond them are dropped, `n_vocab` only bounds the count)."""
    from hillclimb.tokenizer.specials import SPECIAL_TOKENS

    n_rows = token_rows(tok, n_vocab)
    tj = json.loads(tok.hf.to_str())
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise HillclimbError(
            f"GGUF export supports byte-level BPE tokenizers, not {model.get('type')!r}"
        )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre, exact = _classify_pretokenizer(tj, len(merges))
    by_id: dict[int, str] = {i: t for t, i in tok.hf.get_vocab(with_added_tokens=True).items()}
    specials = set(tok.special_ids.values())
    # Added tokens (beyond ours) keep their role: a NORMAL token is only reachable through merges
    # and is decoded through the byte alphabet, so an added "<|tool_x|>" was never produced from
    # text by llama.cpp and "héllo wörld" decoded to invalid UTF-8. Special ones are CONTROL,
    # the rest USER_DEFINED (matched whole in text, decoded as written), as transformers treats them.
    added = {int(a["id"]): bool(a.get("special")) for a in tj.get("added_tokens") or []}
    tokens, types = [], []
    for i in range(n_rows):
        t = by_id.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
        else:
            tokens.append(t)
            if i in specials or added.get(i):
                types.append(TOKEN_CONTROL)
            else:
                types.append(TOKEN_USER_DEFINED if i in added else TOKEN_NORMAL)
    return VocabInfo(
        tokens,
        types,
        merges,
        pre,
        exact,
        {t: tok.token_id(t) for t in SPECIAL_TOKENS},
        tok.chat_template,
    )


# ---- the export ------------------------------------------------------------------------------
def _refuse_existing(out: Path) -> None:
    """Refuse an `out` that exists, or is a symbolic link (a dangling one passes `exists()`, and
    the final rename replaced the user's link with the file)."""
    if out.is_symlink():
        raise HillclimbError(
            f"{out} is a symbolic link (to {os.readlink(out)}); refusing to replace it"
        )
    if out.exists():
        raise HillclimbError(f"{out} already exists; refusing to overwrite it")


def _check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """Why: llama.cpp computes with the file as written; NaN/inf weights (a diverged or damaged
    checkpoint) exported silently and gave NaN logits there."""
    for tname, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise HillclimbError(
                f"tensor {tname} holds NaN or inf values (weights not finite); llama.cpp would "
                "compute NaN with it — refusing to export"
            )


def _check_encoded(tname: str, arr: np.ndarray, dtype: str) -> None:
    """A finite fp32 weight beyond the half type's range (f16: ±65504) becomes ±inf when encoded:
    refuse instead of writing a file that computes inf/NaN (bf16 keeps fp32's range)."""
    if dtype == "f32":
        return
    vals = arr if dtype == "f16" else (arr.astype(np.uint32) << 16).view(np.float32)
    if not np.isfinite(vals).all():
        other = "--dtype bf16 or f32" if dtype == "f16" else "--dtype f32"
        raise HillclimbError(
            f"tensor {tname} holds values beyond the {dtype} range (they would be written as "
            f"inf); use {other}"
        )


@dataclass
class GGUFExport:
    path: Path
    dtype: str
    n_tensors: int
    n_bytes: int
    tokenizer_pre: str
    tokenizer_exact: bool
    replicated_dense_layers: list[int] = field(default_factory=list)
    n_vocab: int = 0  # rows of token_embd = tokens in the file
    dropped_vocab_rows: int = 0  # the checkpoint's padding rows beyond the tokenizer


def write_gguf(
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    tok: Any,
    out: str | os.PathLike[str],
    dtype: str = DEFAULT_DTYPE,
    name: str | None = None,
) -> GGUFExport:
    """Write `state` (our keys, fused experts) + `tok` as a llama.cpp qwen3moe GGUF at `out`."""
    from hillclimb.model.hf import expressibility_problems
    from hillclimb.tokenizer.specials import (
        ENDOFTEXT,
        FILE_SEP,
        FIM_MIDDLE,
        FIM_PAD,
        FIM_PREFIX,
        FIM_SUFFIX,
        IM_END,
        REPO_NAME,
    )

    gguf = _gguf()
    if dtype not in DTYPES:
        raise HillclimbError(f"unknown GGUF dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    out = Path(out)
    _refuse_existing(out)
    problems = expressibility_problems(cfg, state) + gguf_problems(cfg)
    if problems:
        raise NotExpressible(f"cannot export as llama.cpp {ARCH}: uses {'; '.join(problems)}")
    vocab = vocab_info(tok, cfg.vocab_size)
    n_rows = len(vocab.tokens)
    tensors = gguf_state(cfg, state, n_rows)
    _check_finite(tensors)

    w = gguf.GGUFWriter(None, ARCH)
    K = gguf.Keys
    w.add_name(name or cfg.name)
    w.add_file_type(
        {
            "f32": gguf.LlamaFileType.ALL_F32,
            "f16": gguf.LlamaFileType.MOSTLY_F16,
            "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        }[dtype]
    )
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.d_model)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.d_dense_eff)  # HF intermediate_size; unused by the MoE graph
    w.add_expert_feed_forward_length(cfg.d_expert)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(float(cfg.rope_theta))
    if cfg.rope_scaling is not None and cfg.rope_scaling.factor > 1.0:
        rs = cfg.rope_scaling
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rs.factor))
        w.add_rope_scaling_orig_ctx_len(int(rs.original_max_position_embeddings))
        w.add_rope_scaling_yarn_beta_fast(float(rs.beta_fast))
        w.add_rope_scaling_yarn_beta_slow(float(rs.beta_slow))
    w.add_layer_norm_rms_eps(float(cfg.norm_eps))
    w.add_expert_count(cfg.n_experts)
    w.add_expert_used_count(cfg.top_k)

    # tokenizer
    sp = vocab.special_ids
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges or [NO_MERGES_SENTINEL])
    w.add_bos_token_id(sp[ENDOFTEXT])  # Qwen convention: no BOS is ever added
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_eos_token_id(sp[IM_END])
    w.add_eot_token_id(sp[IM_END])
    w.add_pad_token_id(sp[FIM_PAD])
    for key, tkn in (
        (K.Tokenizer.FIM_PRE_ID, FIM_PREFIX),
        (K.Tokenizer.FIM_SUF_ID, FIM_SUFFIX),
        (K.Tokenizer.FIM_MID_ID, FIM_MIDDLE),
        (K.Tokenizer.FIM_PAD_ID, FIM_PAD),
        (K.Tokenizer.FIM_REP_ID, REPO_NAME),
        (K.Tokenizer.FIM_SEP_ID, FILE_SEP),
    ):
        w.add_uint32(key, sp[tkn])
    w.add_chat_template(vocab.chat_template)

    # provenance (llama.cpp ignores unknown keys)
    replicated = [i for i in range(cfg.n_layers) if not cfg.is_moe_layer[i]]
    w.add_uint32("hillclimb.format_version", FORMAT_VERSION)
    w.add_string("hillclimb.preset", cfg.name)
    w.add_bool("hillclimb.tokenizer_exact", vocab.exact)
    w.add_uint32("hillclimb.padded_vocab_size", cfg.vocab_size)
    w.add_string("hillclimb.model_config", json.dumps(cfg.to_dict(), sort_keys=True))
    if replicated:
        w.add_array("hillclimb.replicated_dense_layers", replicated)

    n_bytes = 0
    for tname, t in tensors.items():
        tdtype = "f32" if _keep_f32(tname, t) else dtype
        arr, qtype = _encode(t, tdtype, gguf)
        _check_encoded(tname, arr, tdtype)
        w.add_tensor(tname, arr, raw_dtype=qtype)
        n_bytes += arr.nbytes
    with atomic_path(out) as tmp:
        w.write_header_to_file(path=tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return GGUFExport(
        out,
        dtype,
        len(tensors),
        n_bytes,
        vocab.pre,
        vocab.exact,
        replicated,
        n_vocab=n_rows,
        dropped_vocab_rows=cfg.vocab_size - n_rows,
    )


def export_gguf(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dtype: str = DEFAULT_DTYPE,
) -> GGUFExport:
    """Export a checkpoint directory to one GGUF file. Refuses (NotExpressible) what the HF export
    refuses and what llama.cpp's qwen3moe cannot compute; refuses an existing `out`."""
    from hillclimb.model.checkpoint import check_weight_shapes, load_config, read_weights
    from hillclimb.model.hf import state_from_hf
    from hillclimb.tokenizer.io import load_tokenizer

    ck = Path(checkpoint)
    out = Path(out)
    cfg, layout = load_config(ck)
    _refuse_existing(out)
    if dtype not in DTYPES:
        raise HillclimbError(f"unknown GGUF dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if layout != "qwen3_moe":
        try:
            problems = (
                json.loads((ck / "config.json").read_text()).get("hillclimb_not_expressible") or []
            )
        except (OSError, json.JSONDecodeError):
            problems = []
        raise NotExpressible(
            f"{ck} cannot be exported as {ARCH}: uses {', '.join(problems or ['unsupported features'])}"
        )
    problems = gguf_problems(cfg)  # before reading weights: fail fast
    if problems:
        raise NotExpressible(
            f"{ck} cannot be exported as llama.cpp {ARCH}: uses {'; '.join(problems)}"
        )
    if not (ck / "tokenizer.json").is_file():
        raise HillclimbError(f"{ck} has no tokenizer.json; a GGUF file must carry its tokenizer")
    check_weight_shapes(ck, cfg)  # headers only: a config that misdescribes the weights, named
    tok = load_tokenizer(ck)
    state = state_from_hf(read_weights(ck), cfg)
    return write_gguf(cfg, state, tok, out, dtype=dtype, name=ck.name)
