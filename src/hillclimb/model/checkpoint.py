"""Checkpoint directories in the Hugging Face layout (DESIGN.md's checkpoint contract).

A directory holds `config.json` (Qwen3-MoE when expressible, see `hf.py`), `model.safetensors`
(or shards + `model.safetensors.index.json`), `generation_config.json`, the tokenizer files, and
`hillclimb.json` (our preset, full model config, lineage, data provenance). Whole directories are
written into a temp sibling and renamed into place, so a reader never sees half a checkpoint and a
kill during a save leaves the previous one intact.

Reading accepts our directories and plain HF Qwen3-MoE directories (the reverse interop path).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_dir, write_json_atomic
from hillclimb.model.config import ModelConfig
from hillclimb.model.hf import (
    HFConfigError,
    config_from_hf,
    config_to_hf,
    expressibility_problems,
    state_from_hf,
    state_to_hf,
)
from hillclimb.model.transformer import Transformer

FORMAT = "hillclimb-checkpoint-v1"
MAX_SHARD_BYTES = 4 * 1024**3


def _shard(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in sorted(tensors):
        n = tensors[k].numel() * tensors[k].element_size()
        if shards[-1] and size + n > max_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = tensors[k]
        size += n
    return shards


def write_weights(
    directory: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int = MAX_SHARD_BYTES
) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    shards = _shard(tensors, max_shard_bytes)
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(directory / "model.safetensors"), metadata=meta)
        return
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata=meta)
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    write_json_atomic(
        directory / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    files = _weight_files(directory)
    out: dict[str, torch.Tensor] = {}
    try:
        for f in files:
            # opened first: safetensors reports a file this user may not read as "No such file
            # or directory" (session 23: a 0600 checkpoint of another account looked missing)
            with open(f, "rb"):
                pass
            out.update(load_file(str(f)))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        # SafetensorError (truncated or corrupt file) is no ValueError: caught by name
        raise HillclimbError(f"cannot read weights in {directory}: {exc}") from exc
    return out


def _weight_files(directory: Path) -> list[Path]:
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        return [directory / f for f in _index_shards(index)]
    raise HillclimbError(f"no model.safetensors (or index) in {directory}")


def _index_shards(index: Path) -> list[str]:
    """The shard file names `model.safetensors.index.json` maps tensors to, sorted. Why checked:
    a `weight_map` that was not an object was an AttributeError traceback from every loader, and
    a shard named outside the directory ("../other/model-00001.safetensors") loaded weights from
    elsewhere and exported "successfully" a copy that lacks them (the export copies the
    directory's own files)."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise HillclimbError(f"malformed {index}: {exc}") from exc
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise HillclimbError(
            f"malformed {index}: weight_map must be an object of tensor name -> shard file name"
        )
    shards = sorted(set(weight_map.values()))
    for name in shards:
        if Path(name).name != name or name in ("", ".", ".."):
            raise HillclimbError(
                f"malformed {index}: shard {name!r} is not a file of the checkpoint directory"
            )
    return shards


def check_weight_files(directory: Path) -> None:
    """Raise HillclimbError unless every weight file of `directory` has a readable safetensors
    header that the file's size covers (a truncated copy fails), without loading a tensor. For
    copying a checkpoint as it is (`hillclimb export --format hf`)."""
    from safetensors import safe_open

    try:
        for f in _weight_files(directory):
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        raise HillclimbError(f"cannot read weights in {directory}: {exc}") from exc


def expected_hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """HF on-disk tensor name -> the shape `cfg` implies, in the model's order (built on the meta
    device: no memory, no weights)."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return {k: tuple(v.shape) for k, v in state_to_hf(model.state_dict(), cfg).items()}


def check_weight_shapes(directory: Path, cfg: ModelConfig) -> None:
    """Raise HillclimbError naming the first tensor whose stored shape (read from the safetensors
    headers, no tensor loaded) is not what `cfg` implies, or that is missing or unexpected.

    Why: `hillclimb.json` carries the model config; one that does not describe the weights
    (`model_config: {}` loads the default config) made `hillclimb export` write a file whose
    config and tensors disagree (or fail deep inside with a traceback). Checked for the Qwen3-MoE
    layout, before the export writes anything."""
    from safetensors import safe_open

    stored: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    try:
        for f in _weight_files(directory):
            with safe_open(str(f), framework="pt") as fh:
                names = fh.keys()  # a safe_open handle is not iterable
                for k in names:
                    sl = fh.get_slice(k)
                    stored[k] = tuple(sl.get_shape())
                    dtypes[k] = str(sl.get_dtype())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        raise HillclimbError(f"cannot read weights in {directory}: {exc}") from exc
    for k, dt in dtypes.items():
        if dt.upper() not in _FLOAT_DTYPES:
            raise HillclimbError(
                f"{directory}: tensor {k} is stored as {dt}, not a floating-point type; "
                "these are not model weights"
            )
    _check_shapes(directory, stored, cfg)


# safetensors header dtype names of the floating-point types a model's weights may be stored in
_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


def _check_shapes(directory: Path, stored: dict[str, tuple[int, ...]], cfg: ModelConfig) -> None:
    """HF on-disk tensor name -> stored shape, against what `cfg` implies (see
    `check_weight_shapes`); raises HillclimbError naming the first difference."""
    stored = dict(stored)
    if cfg.tie_embeddings:
        stored.pop("lm_head.weight", None)  # tied: the loader ignores a stored copy
    where = (
        f"{directory}: the model config (hillclimb.json / config.json) does not match the weights"
    )
    for name, want in expected_hf_shapes(cfg).items():
        got = stored.pop(name, None)
        if got is None:
            raise HillclimbError(f"{where}: tensor {name} (shape {list(want)}) is missing")
        if got != want:
            raise HillclimbError(
                f"{where}: tensor {name} has shape {list(got)}, the config implies {list(want)}"
            )
    if stored:
        raise HillclimbError(f"{where}: unexpected tensor {sorted(stored)[0]}")


def stored_dtype_name(state: dict[str, torch.Tensor]) -> str:
    """The dtype most of `state`'s floating-point weights are stored in, as config.json's `dtype`
    names it. Why: transformers' `dtype="auto"` and vLLM's `--dtype auto` read that key; a fixed
    "float32" loaded a bf16 checkpoint at twice its size and told vLLM a dtype it did not have."""
    by_dtype: dict[torch.dtype, int] = {}
    for v in state.values():
        if v.is_floating_point():
            by_dtype[v.dtype] = by_dtype.get(v.dtype, 0) + v.numel()
    if not by_dtype:
        return "float32"
    return str(max(by_dtype, key=lambda d: by_dtype[d])).removeprefix("torch.")


def check_weights_finite(directory: Path) -> None:
    """Raise HillclimbError naming the first stored tensor that holds NaN or inf, reading one
    tensor at a time. Why: an export hands the model to runtimes that compute with it as it is;
    a diverged or damaged checkpoint exported "successfully" and produced NaN logits there."""
    from safetensors import safe_open

    try:
        for f in _weight_files(directory):
            with safe_open(str(f), framework="pt") as fh:
                names = fh.keys()  # a safe_open handle is not iterable
                for k in names:
                    t = fh.get_tensor(k)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        raise HillclimbError(
                            f"{directory}: tensor {k} holds NaN or inf values (weights not finite); "
                            "every runtime would compute NaN with it — refusing to export"
                        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        raise HillclimbError(f"cannot read weights in {directory}: {exc}") from exc


def generation_config(tokenizer: Any | None, vocab_size: int | None = None) -> dict[str, Any]:
    """`generation_config.json`: sampling defaults, stop and pad ids, and `suppress_tokens` for
    the padding rows of the embedding (ids from the tokenizer's size up to `vocab_size`). Why:
    those ids have no token; our engine masks them, but transformers' `generate` sampled them
    (16 of 40 tokens of a random micro model), decode dropped them and vLLM cannot detokenize
    them. transformers applies `suppress_tokens` from this file by default."""
    cfg: dict[str, Any] = {"do_sample": True, "temperature": 0.7, "top_p": 0.95}
    if tokenizer is not None:
        cfg["eos_token_id"] = tokenizer.stop_ids
        cfg["pad_token_id"] = tokenizer.special_ids.get("<|fim_pad|>")
        if vocab_size is not None and vocab_size > tokenizer.vocab_size:
            cfg["suppress_tokens"] = list(range(tokenizer.vocab_size, vocab_size))
    return cfg


def save_checkpoint(
    model: Transformer,
    directory: str | os.PathLike[str],
    tokenizer: Any | None = None,
    meta: dict[str, Any] | None = None,
    extra_state: dict[str, torch.Tensor] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """Write a complete checkpoint directory atomically. `directory` must not exist."""
    from hillclimb.tokenizer.io import bytelevel_tokenizer, save_tokenizer

    d = Path(directory)
    if d.is_symlink():
        # a dangling link passes `exists()`; the final rename then failed with a traceback
        raise HillclimbError(f"{d} is a symbolic link (to {os.readlink(d)}); name a new directory")
    if d.exists():
        raise HillclimbError(f"{d} already exists; refusing to overwrite a checkpoint")
    cfg = model.cfg
    tok = tokenizer if tokenizer is not None else bytelevel_tokenizer()
    if tok.vocab_size > cfg.vocab_size:
        raise HillclimbError(
            f"tokenizer has {tok.vocab_size} tokens but the model vocabulary is {cfg.vocab_size}"
        )
    state = {k: v for k, v in model.state_dict().items()}
    problems = expressibility_problems(cfg, state)
    with atomic_dir(d) as tmp:
        if problems:
            # Not a Qwen3-MoE: say so in config.json so transformers refuses instead of loading a
            # different model; our own loader reads the full state from hillclimb_state.safetensors.
            hf_cfg = {
                "model_type": "hillclimb_moe",
                "architectures": ["HillclimbMoeForCausalLM"],
                "hillclimb_not_expressible": problems,
            }
            write_weights(
                tmp,
                {k: v for k, v in state.items() if not k.startswith("rotary.")},
                max_shard_bytes,
            )
        else:
            hf_cfg = config_to_hf(cfg)
            hf_cfg["dtype"] = stored_dtype_name(state)
            hf_cfg["eos_token_id"] = tok.stop_ids[0]
            hf_cfg["pad_token_id"] = tok.special_ids.get("<|fim_pad|>")
            write_weights(tmp, state_to_hf(state, cfg), max_shard_bytes)
        if extra_state:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in extra_state.items()},
                str(tmp / "hillclimb_extra.safetensors"),
            )
        write_json_atomic(tmp / "config.json", hf_cfg)
        write_json_atomic(tmp / "generation_config.json", generation_config(tok, cfg.vocab_size))
        save_tokenizer(tok, tmp, model_max_length=cfg.max_seq_len)
        info = {
            "format": FORMAT,
            "preset": cfg.name,
            "family": cfg.family,
            "model_config": cfg.to_dict(),
            "layout": "hillclimb" if problems else "qwen3_moe",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        info.update(meta or {})
        write_json_atomic(tmp / "hillclimb.json", info)
    return d


def read_info(directory: str | os.PathLike[str]) -> dict[str, Any]:
    f = Path(directory) / "hillclimb.json"
    if not f.is_file():
        return {}
    try:
        info = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"malformed {f}: {exc}") from exc
    if not isinstance(info, dict):
        raise HillclimbError(f"malformed {f}: not a JSON object")
    return info


def run_dir_hint(path: str | os.PathLike[str]) -> str:
    """ "; it is a run directory: its model is RUN/final" when `path` is a training run (which
    holds its own config.json, the run's settings) rather than a checkpoint; else ""."""
    final = Path(path) / "final"
    if (final / "config.json").is_file() and (final / "tokenizer.json").is_file():
        return f"; it is a training run directory: its final model is {final}"
    return ""


def load_config(directory: str | os.PathLike[str]) -> tuple[ModelConfig, str]:
    """(config, layout) for a checkpoint dir; layout is 'qwen3_moe' or 'hillclimb'."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise HillclimbError(f"{d} is a file, not a checkpoint directory")
    if not d.is_dir():
        raise HillclimbError(f"checkpoint directory not found: {d}")
    info = read_info(d)
    cfg_file = d / "config.json"
    if not cfg_file.is_file():
        raise HillclimbError(f"{d} is not a checkpoint: config.json missing{run_dir_hint(d)}")
    try:
        hf_cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"malformed {cfg_file}: {exc}") from exc
    if not isinstance(hf_cfg, dict):
        raise HillclimbError(f"malformed {cfg_file}: not a JSON object")
    layout = "hillclimb" if hf_cfg.get("model_type") == "hillclimb_moe" else "qwen3_moe"
    # A hand-edited or foreign config (a missing key, a wrong type) is one line, not a traceback.
    try:
        if "model_config" in info:
            if not isinstance(info["model_config"], dict):
                raise HillclimbError(f"malformed {d / 'hillclimb.json'}: model_config is not an object")  # fmt: skip
            cfg = ModelConfig.from_dict(info["model_config"])
        elif layout == "qwen3_moe":
            cfg = config_from_hf(hf_cfg, name=d.name)
        else:
            raise HillclimbError(f"{d}: hillclimb layout without hillclimb.json")
    except (HFConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # AttributeError: a nested value of the wrong kind (`rope_parameters: [..]`)
        if isinstance(exc, HFConfigError):  # names the field of config.json
            raise HillclimbError(f"{d}: unusable model config ({exc})") from exc
        if isinstance(exc, HillclimbError):
            raise
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise HillclimbError(f"{d}: unusable model config ({what})") from exc
    return cfg, layout


def check_config_agreement(directory: Path, cfg: ModelConfig) -> None:
    """Raise HillclimbError when `hillclimb.json` (`cfg`, what we load) and `config.json` (what
    transformers, vLLM and llama.cpp's converter load) describe different models, naming the
    fields. Why: the Qwen recipe for long context edits config.json (YaRN), and a model_config
    missing a key takes its default (`rope_theta` 10000 for 500000); either way our server ran
    one model and every other runtime another, same weights, other logits, no word said."""
    from hillclimb.model.hf import hf_config_differences

    info = read_info(directory)
    if not isinstance(info.get("model_config"), dict):
        return  # a plain HF directory: config.json is the only description
    try:
        hf = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"malformed {directory / 'config.json'}: {exc}") from exc
    diff = hf_config_differences(cfg, hf)
    if not diff:
        return
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    lacking = sorted(known - set(info["model_config"]))
    more = f"; … {len(diff) - 4} more" if len(diff) > 4 else ""
    note = f"; hillclimb.json model_config lacks {lacking} (defaults used)" if lacking else ""
    raise HillclimbError(
        f"{directory}: config.json and hillclimb.json describe different models "
        f"({'; '.join(diff[:4])}{more}{note}); hillclimb loads hillclimb.json, transformers and "
        "vLLM read config.json: make them agree"
    )


def load_model(
    directory: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Transformer:
    """Load a checkpoint directory (ours or a plain HF Qwen3-MoE one) in eval mode."""
    d = Path(directory)
    cfg, layout = load_config(d)
    raw = read_weights(d)
    for k, v in raw.items():
        if not v.is_floating_point():
            raise HillclimbError(
                f"{d}: tensor {k} is stored as {v.dtype}, not a floating-point type; "
                "these are not model weights"
            )
    if layout == "qwen3_moe":
        # shapes first: a config that does not describe the weights is one line naming the
        # tensor, not a size-mismatch traceback from torch
        _check_shapes(d, {k: tuple(v.shape) for k, v in raw.items()}, cfg)
        check_config_agreement(d, cfg)
    state = state_from_hf(raw, cfg) if layout == "qwen3_moe" else raw
    with torch.device("meta"):
        model = Transformer(cfg)
    want = model.state_dict()
    for k, v in state.items():
        if k in want and tuple(v.shape) != tuple(want[k].shape):
            raise HillclimbError(
                f"{d}: the model config (hillclimb.json) does not match the weights: tensor {k} "
                f"has shape {list(v.shape)}, the config implies {list(want[k].shape)}"
            )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model = model.to_empty(device=dev)
    # Buffers not stored on disk (rotary frequencies, zero selection bias) are recomputed.
    from hillclimb.model.rope import Rotary

    model.rotary = Rotary(cfg).to(dev)
    for m in model.moe_layers():
        m.gate.expert_bias.zero_()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [
        k
        for k in missing
        if not k.endswith("expert_bias")
        and not k.startswith("rotary.")
        and not (cfg.tie_embeddings and k == "lm_head.weight")
    ]
    if missing or unexpected:
        raise HillclimbError(
            f"checkpoint {d} does not match its config: missing={missing[:5]} unexpected={unexpected[:5]}"
        )
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    return model.to(dtype=dtype).eval()
