"""Qwen3-MoE interop: our config/weights ⇄ the Hugging Face format on disk.

Why Qwen3-MoE: its architecture is exactly ours for the default presets (pre-norm, GQA with
per-head QK-norm, rotate-half RoPE with optional YaRN, softmax top-k routing with renormalised
weights, SwiGLU experts, optional dense first layers via `mlp_only_layers`), and vLLM, SGLang and
llama.cpp's converter all read it. So our checkpoints *are* HF checkpoints.

On disk, experts use the per-expert key layout (`mlp.experts.{e}.{gate,up,down}_proj.weight`) that
every reader understands; in memory we keep them fused ([E, 2I, D] / [E, D, I]) for grouped
matmuls. A feature Qwen3-MoE cannot express (shared experts, a non-zero selection bias from
auxiliary-loss-free balancing, no QK-norm) raises `NotExpressible` — export then fails loudly
instead of writing a silently different model.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from hillclimb.errors import HillclimbError
from hillclimb.model.config import ModelConfig, RopeScaling


class NotExpressible(HillclimbError):
    """The model uses a feature the Qwen3-MoE architecture cannot represent."""


def expressibility_problems(
    cfg: ModelConfig, state: dict[str, torch.Tensor] | None = None
) -> list[str]:
    problems = []
    if cfg.n_shared_experts:
        problems.append("shared experts (Qwen3-MoE has none)")
    if not cfg.qk_norm:
        problems.append("qk_norm=False (Qwen3-MoE always applies QK-norm)")
    if state is not None:
        for k, v in state.items():
            if k.endswith("expert_bias") and bool(torch.as_tensor(v).abs().sum() > 0):
                problems.append(
                    "a non-zero auxiliary-loss-free balancing bias (changes expert selection; "
                    "Qwen3-MoE routing has no bias)"
                )
                break
    return problems


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(cfg.rope_theta)}
    if cfg.rope_scaling is not None and cfg.rope_scaling.factor > 1.0:
        rs = cfg.rope_scaling
        rope = {
            "rope_type": "yarn",
            "rope_theta": float(cfg.rope_theta),
            "factor": float(rs.factor),
            "original_max_position_embeddings": int(rs.original_max_position_embeddings),
            "beta_fast": float(rs.beta_fast),
            "beta_slow": float(rs.beta_slow),
        }
    out = {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_dense_eff,
        "moe_intermediate_size": cfg.d_expert,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": rope,
        # transformers 4.x readers look for these two:
        "rope_theta": float(cfg.rope_theta),
        "rope_scaling": None
        if rope["rope_type"] == "default"
        else {k: v for k, v in rope.items() if k != "rope_theta"},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "num_experts": cfg.n_experts,
        "num_experts_per_tok": cfg.top_k,
        "norm_topk_prob": cfg.norm_topk_prob,
        "decoder_sparse_step": 1,
        "mlp_only_layers": list(range(cfg.n_dense_layers)),
        "router_aux_loss_coef": cfg.aux_loss_coef,
        "output_router_logits": False,
        "initializer_range": cfg.init_std,
        "use_cache": True,
        "dtype": "float32",
    }
    if cfg.d_model % 8 or cfg.d_expert % 8:
        # transformers' default MoE path (`grouped_mm`) needs 16-byte row strides and fails on
        # such widths ("strides should be multiple of 16 bytes"); its per-expert loop computes the
        # same model. Other readers ignore the key. (Our own model falls back the same way.)
        out["experts_implementation"] = "eager"
    return out


class HFConfigError(HillclimbError):
    """A config.json field is missing or of the wrong type (the message names the field)."""


_REQUIRED = object()


def _field(d: dict[str, Any], key: str, kind: type, default: Any = _REQUIRED) -> Any:
    """`d[key]` checked to be of `kind` (int, float or bool; JSON null or absent: `default`),
    raising HillclimbError naming the key. Why strict: `int()`/`bool()` coercion read
    `"tie_word_embeddings": "false"` as True (the stored lm_head silently ignored), truncated a
    top-k of 2.9 to 2 and took a bool as 1, so a hand-edited config loaded as another model."""
    v = d.get(key) if isinstance(d, dict) else None
    if v is None:
        if default is _REQUIRED:
            raise HFConfigError(f"config.json: {key} is missing (or null)")
        return default
    if kind is bool:
        if isinstance(v, bool):
            return v
        raise HFConfigError(f"config.json: {key} must be true or false, got {v!r}")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise HFConfigError(f"config.json: {key} must be a number, got {v!r}")
    if kind is int:
        if v != int(v):
            raise HFConfigError(f"config.json: {key} must be an integer, got {v!r}")
        return int(v)
    return float(v)


def config_from_hf(d: dict[str, Any], name: str = "hf-import") -> ModelConfig:
    if d.get("model_type") not in ("qwen3_moe", None):
        raise HillclimbError(
            f"unsupported model_type {d.get('model_type')!r}: hillclimb reads Qwen3-MoE checkpoints"
        )
    if d.get("attention_bias"):
        raise HillclimbError("attention_bias=True is not supported")
    if d.get("use_sliding_window"):
        raise HillclimbError("sliding-window attention is not supported")
    if d.get("hidden_act", "silu") != "silu":
        raise HillclimbError(f"hidden_act {d.get('hidden_act')!r} is not supported (silu only)")
    n_layers = _field(d, "num_hidden_layers", int)
    step = _field(d, "decoder_sparse_step", int, 1) or 1
    n_experts = _field(d, "num_experts", int, None)
    if n_experts is None:
        n_experts = _field(d, "num_local_experts", int, 0)
    mlp_only_raw = d.get("mlp_only_layers") or []
    if not isinstance(mlp_only_raw, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in mlp_only_raw
    ):
        raise HFConfigError(
            f"config.json: mlp_only_layers must be a list of layer indices, got {mlp_only_raw!r}"
        )
    mlp_only = sorted(mlp_only_raw)
    dense = [i for i in range(n_layers) if i in mlp_only or n_experts == 0 or (i + 1) % step != 0]
    if dense != list(range(len(dense))):
        raise HillclimbError(
            f"dense (non-MoE) layers {dense} are not a prefix of the stack; hillclimb supports "
            "dense first layers only"
        )
    rope = d.get("rope_parameters") or {}
    legacy = d.get("rope_scaling") or {}
    for key, block in (("rope_parameters", rope), ("rope_scaling", legacy)):
        if not isinstance(block, dict):
            raise HFConfigError(f"config.json: {key} must be an object, got {block!r}")
    if "rope_theta" in rope:
        theta = _field(rope, "rope_theta", float, 10000.0)
    else:
        theta = _field(d, "rope_theta", float, 10000.0)
    scaling = None
    rtype = _rope_type(rope) or _rope_type(legacy) or "default"
    if rtype == "yarn":
        src = rope if _rope_type(rope) == "yarn" else legacy
        if src.get("attention_factor") or src.get("mscale") or src.get("truncate") is False:
            raise HillclimbError(
                "YaRN with attention_factor/mscale/truncate overrides is not supported"
            )
        scaling = RopeScaling(
            factor=_field(src, "factor", float),
            original_max_position_embeddings=_field(src, "original_max_position_embeddings", int),
            beta_fast=_field(src, "beta_fast", float, 32.0) or 32.0,
            beta_slow=_field(src, "beta_slow", float, 1.0) or 1.0,
        )
    elif rtype != "default":
        raise HillclimbError(f"rope type {rtype!r} is not supported (default or yarn)")
    hidden = _field(d, "hidden_size", int)
    n_heads = _field(d, "num_attention_heads", int)
    if n_heads <= 0:
        raise HFConfigError(f"config.json: num_attention_heads must be > 0, got {n_heads}")
    intermediate = _field(d, "intermediate_size", int, 0)
    return ModelConfig(
        name=name,
        family="custom",
        vocab_size=_field(d, "vocab_size", int),
        d_model=hidden,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=_field(d, "num_key_value_heads", int, 0) or n_heads,
        head_dim=_field(d, "head_dim", int, 0) or hidden // n_heads,
        n_experts=max(n_experts, 1),
        top_k=_field(d, "num_experts_per_tok", int, 1),
        d_expert=_field(d, "moe_intermediate_size", int, 0) or intermediate,
        norm_topk_prob=_field(d, "norm_topk_prob", bool, False),
        n_dense_layers=len(dense),
        d_dense=intermediate,
        max_seq_len=_field(d, "max_position_embeddings", int, 2048),
        rope_theta=theta,
        rope_scaling=scaling,
        qk_norm=True,
        norm_eps=_field(d, "rms_norm_eps", float, 1e-6),
        tie_embeddings=_field(d, "tie_word_embeddings", bool, False),
        aux_loss_coef=_field(d, "router_aux_loss_coef", float, 0.01),
        init_std=_field(d, "initializer_range", float, 0.02),
    )


def _rope_type(params: dict[str, Any]) -> str | None:
    """A RoPE parameter block's type. Why both keys: configs of the transformers 4.x era (Qwen2.5's
    long-context recipe among them) write `"type": "yarn"`, which transformers still reads as
    `rope_type`; reading only `rope_type` loaded such a model without YaRN (other logits)."""
    return params.get("rope_type") or params.get("type")


def hf_config_differences(cfg: ModelConfig, hf: dict[str, Any]) -> list[str]:
    """What a Qwen3-MoE reader of `hf` (a config.json) would build differently from `cfg`
    (the model `hillclimb.json` describes), as "field: hillclimb.json X, config.json Y" strings.
    Our loader reads `hillclimb.json`; transformers, vLLM and llama.cpp's converter read
    config.json, so a copy whose two files disagree loads in one and not the other."""
    try:
        other = config_from_hf(hf, name=cfg.name)
    except (HillclimbError, KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        return [f"config.json is not a usable Qwen3-MoE config ({what})"]

    def view(c: ModelConfig) -> dict[str, Any]:
        rs = c.rope_scaling
        d = {
            f: getattr(c, f)
            for f in (
                "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                "top_k", "d_expert", "norm_topk_prob", "n_dense_layers", "max_seq_len",
                "rope_theta", "norm_eps", "tie_embeddings",
            )
        }  # fmt: skip
        d["rope_scaling"] = None if rs is None or rs.factor <= 1.0 else vars(rs)
        if c.n_dense_layers < c.n_layers:
            d["n_experts"] = c.n_experts
        if c.n_dense_layers:
            d["d_dense"] = c.d_dense_eff
        return d

    a, b = view(cfg), view(other)
    return [f"{k}: hillclimb.json {a.get(k)!r}, config.json {b.get(k)!r}" for k in a if a.get(k) != b.get(k)]  # fmt: skip


_EXPERT_KEY = re.compile(
    r"^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$"
)


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict → HF on-disk keys (per-expert weights, `model.` prefix, no selection bias)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("rotary.") or k.endswith("expert_bias"):
            continue
        if k == "lm_head.weight":
            if not cfg.tie_embeddings:
                out[k] = v
            continue
        m = re.match(r"^layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)$", k)
        if m:
            layer = m.group(1)
            for e in range(v.shape[0]):
                base = f"model.layers.{layer}.mlp.experts.{e}"
                if m.group(2) == "gate_up_proj":
                    gate, up = v[e].chunk(2, dim=0)
                    out[f"{base}.gate_proj.weight"] = gate.contiguous()
                    out[f"{base}.up_proj.weight"] = up.contiguous()
                else:
                    out[f"{base}.down_proj.weight"] = v[e].contiguous()
            continue
        out[f"model.{k}"] = v.contiguous()
    return out


def state_from_hf(hf: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF on-disk keys → our state dict (fusing experts). Raises on missing/unexpected keys."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    unexpected = []
    for k, v in hf.items():
        m = _EXPERT_KEY.match(k)
        if m:
            experts.setdefault((int(m.group(1)), m.group(3)), {})[int(m.group(2))] = v
        elif k == "lm_head.weight":
            out[k] = v
        elif k.startswith("model."):
            out[k[len("model.") :]] = v
        else:
            unexpected.append(k)
    if unexpected:
        raise HillclimbError(f"unexpected tensors in checkpoint: {unexpected[:5]}")
    E = cfg.n_experts
    for layer in range(cfg.n_layers):
        if not cfg.is_moe_layer[layer]:
            continue
        parts = {p: experts.get((layer, p), {}) for p in ("gate", "up", "down")}
        for p, d in parts.items():
            if sorted(d) != list(range(E)):
                raise HillclimbError(
                    f"layer {layer}: expected {E} '{p}_proj' experts, found {len(d)}"
                )
        out[f"layers.{layer}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([parts["gate"][e], parts["up"][e]], dim=0) for e in range(E)]
        )
        out[f"layers.{layer}.mlp.experts.down_proj"] = torch.stack(
            [parts["down"][e] for e in range(E)]
        )
    if cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out
