"""CLI for the model package: `hillclimb init`, `hillclimb model info`, `hillclimb export`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a randomly initialised checkpoint (HF layout)")
    p.add_argument("--preset", required=True, help="e.g. thinking-micro, code-flash-tiny")
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="tokenizer dir to copy in (default: byte-level fallback)",
    )
    p.set_defaults(func=_init, _parser=p)

    m = sub.add_parser("model", help="model family: accounting")
    msub = m.add_subparsers(dest="model_command", metavar="COMMAND")
    m.set_defaults(_parser=m)
    info = msub.add_parser("info", help="total/active params, FLOPs/token, KV bytes/token")
    src = info.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="a preset name")
    src.add_argument("--checkpoint", type=Path, help="a checkpoint directory")
    info.add_argument(
        "--kv-dtype-bytes", type=int, default=2, help="bytes per KV element (bf16: 2)"
    )
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info, _parser=info)
    lst = msub.add_parser("presets", help="list presets")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_presets, _parser=lst)

    e = sub.add_parser("export", help="export a checkpoint for other runtimes")
    e.add_argument("checkpoint", type=Path)
    e.add_argument(
        "--format",
        choices=["hf", "gguf"],
        default="hf",
        help="hf: checkpoint directory (transformers; the Qwen3-MoE layout vLLM/SGLang read, not "
        "run here); gguf: one llama.cpp file",
    )
    e.add_argument("--out", required=True, type=Path)
    e.add_argument(
        "--dtype",
        choices=["f32", "f16", "bf16"],
        default=None,
        help="gguf only: matrix dtype (default f16; norms and router stay f32)",
    )
    e.set_defaults(func=_export, _parser=e)


def _init(args: argparse.Namespace) -> int:
    from hillclimb.io import refuse_unusable_parent
    from hillclimb.model.checkpoint import save_checkpoint
    from hillclimb.model.config import get_preset, padded_vocab
    from hillclimb.model.transformer import build_model

    cfg = get_preset(args.preset)
    if args.out.exists():
        raise HillclimbError(f"{args.out} already exists; choose a new --out directory")
    refuse_unusable_parent(args.out)  # `--out FILE/x`: was a FileExistsError traceback
    tok = None
    if args.tokenizer is not None:
        from hillclimb.tokenizer.io import load_tokenizer

        tok = load_tokenizer(args.tokenizer)
        cfg = cfg.replace(vocab_size=padded_vocab(tok.vocab_size))
    model = build_model(cfg, seed=args.seed)
    save_checkpoint(
        model,
        args.out,
        tokenizer=tok,
        meta={"lineage": {"stage": "init", "seed": args.seed, "parent": None}},
    )
    n = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.out} ({cfg.name}, {n:,} parameters, vocab {cfg.vocab_size}, seed {args.seed})"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hillclimb.model.accounting import account, human, human_bytes
    from hillclimb.model.config import get_preset

    if args.kv_dtype_bytes < 1:
        raise HillclimbError(
            f"--kv-dtype-bytes must be a positive number of bytes (bf16: 2), got {args.kv_dtype_bytes}"
        )
    if args.preset:
        cfg = get_preset(args.preset)
    else:
        from hillclimb.model.checkpoint import load_config

        cfg, _ = load_config(args.checkpoint)
    acc = account(cfg, kv_dtype_bytes=args.kv_dtype_bytes)
    if args.json:
        d = acc.to_dict()
        d["config"] = cfg.to_dict()
        print(json.dumps(d, indent=2))
        return 0
    t = Table(
        title=f"{cfg.name}  ({cfg.n_layers} layers, d={cfg.d_model}, {cfg.n_experts} experts top-{cfg.top_k}, "
        f"{cfg.n_heads}q/{cfg.n_kv_heads}kv heads)"
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    rows = [
        ("total parameters", f"{human(acc.total_params)}  ({acc.total_params:,})"),
        ("active parameters / token", f"{human(acc.active_params)}  ({acc.active_params:,})"),
        ("active fraction", f"{acc.active_fraction:.1%}"),
        ("routed-expert parameters", human(acc.expert_params)),
        ("forward FLOPs / token (matmuls)", human(acc.matmul_flops_per_token)),
        ("forward FLOPs / token @4K ctx", human(acc.flops_per_token_4k)),
        ("training FLOPs / token @4K ctx", human(acc.train_flops_per_token_4k)),
        (
            f"attention FLOPs / token @{acc.max_context:,} ctx",
            human(acc.attn_flops_per_token_at_max_ctx),
        ),
        (f"KV bytes / token ({acc.kv_dtype_bytes}-byte)", human_bytes(acc.kv_bytes_per_token)),
        ("KV bytes / token, plain MHA", human_bytes(acc.kv_bytes_per_token_mha)),
        ("KV saving vs MHA", f"{acc.kv_saving:.1%}"),
        (f"KV bytes @ max context ({acc.max_context:,})", human_bytes(acc.kv_bytes_at_max_context)),
        ("KV bytes @ max context, plain MHA", human_bytes(acc.kv_bytes_at_max_context_mha)),
    ]
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)
    return 0


def _presets(args: argparse.Namespace) -> int:
    from hillclimb.model.config import PRESETS

    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in PRESETS.items()}, indent=2))
    else:
        for name, cfg in PRESETS.items():
            print(
                f"{name:20s} {cfg.family:10s} d={cfg.d_model} L={cfg.n_layers} E={cfg.n_experts} k={cfg.top_k} ctx={cfg.max_seq_len}"
            )
    return 0


def _export(args: argparse.Namespace) -> int:
    from hillclimb.io import atomic_dir
    from hillclimb.model.checkpoint import (
        check_weight_files,
        check_weight_shapes,
        check_weights_finite,
        load_config,
        read_info,
    )
    from hillclimb.model.hf import NotExpressible

    parent = next((p for p in args.out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise HillclimbError(f"--out {args.out}: {parent} is not a directory")
    if args.out.is_symlink():
        # a dangling link passes `exists()`: the final rename then failed with a traceback (a
        # directory) or replaced the user's link (a GGUF file)
        raise HillclimbError(
            f"--out {args.out} is a symbolic link (to {os.readlink(args.out)}); name a new path"
        )
    _refuse_out_inside(args.checkpoint, args.out)
    if args.format == "gguf":
        return _export_gguf(args)
    if args.dtype is not None:
        raise HillclimbError(
            "--dtype applies to --format gguf only (the HF export copies weights as stored)"
        )
    cfg, layout = load_config(args.checkpoint)
    if args.out.exists():
        raise HillclimbError(f"{args.out} already exists")
    if layout != "qwen3_moe":
        problems = read_info(args.checkpoint).get("model_config") and json.loads(
            (args.checkpoint / "config.json").read_text()
        ).get("hillclimb_not_expressible", [])
        raise NotExpressible(
            f"{args.checkpoint} cannot be exported as Qwen3-MoE: uses {', '.join(problems or ['unsupported features'])}"
        )
    # the HF export copies files as they are: a checkpoint with no weights, or a truncated
    # copy of them, must fail here instead of producing an export that does not load
    check_weight_files(args.checkpoint)
    # ... and one whose config does not describe its weights would export a model that does not
    # load (the copy would carry the wrong config.json / hillclimb.json)
    check_weight_shapes(args.checkpoint, cfg)
    # ... and NaN/inf weights would be handed on as a model that computes NaN
    check_weights_finite(args.checkpoint)
    # ... and the copy carries the tokenizer files transformers' AutoTokenizer reads
    _check_tokenizer_files(args.checkpoint, cfg.vocab_size)
    # the copy carries config.json, which every other reader uses in place of hillclimb.json (our
    # loader's source): two files that describe different models export a model that does not load
    if "model_config" in read_info(args.checkpoint):
        from hillclimb.model.hf import hf_config_differences

        diff = hf_config_differences(cfg, json.loads((args.checkpoint / "config.json").read_text()))
        if diff:
            more = f"; … {len(diff) - 4} more" if len(diff) > 4 else ""
            raise HillclimbError(
                f"{args.checkpoint}: config.json and hillclimb.json describe different models "
                f"({'; '.join(diff[:4])}{more}); transformers would read config.json"
            )
    with atomic_dir(args.out) as tmp:
        for f in sorted(args.checkpoint.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                shutil.copy2(f, tmp / f.name)
    print(
        f"exported {args.checkpoint} → {args.out} (Qwen3-MoE, HF layout; loads with "
        "transformers.AutoModelForCausalLM; vLLM and SGLang read this layout but have not been "
        "run on it here)"
    )
    return 0


def _refuse_out_inside(checkpoint: Path, out: Path) -> None:
    """Refuse an `--out` inside the checkpoint directory. Why: the export was written into the
    checkpoint itself: a `*.safetensors` name changed the registry's content hash of the weights,
    and the next HF export (which copies the directory's files) carried the GGUF along."""
    ck = checkpoint.resolve()
    if ck.is_dir() and ck in out.absolute().resolve().parents:
        raise HillclimbError(
            f"--out {out} is inside the checkpoint {checkpoint}; write the export elsewhere"
        )


def _check_tokenizer_files(checkpoint: Path, vocab_size: int | None = None) -> None:
    """Raise HillclimbError when the checkpoint's tokenizer files would not load in the copy's
    readers (`tokenizers` for tokenizer.json, JSON for tokenizer_config.json). Why: the HF export
    copies files as they are and promised a copy that loads with transformers; a damaged
    tokenizer.json was exported and AutoTokenizer then failed on it. Only the files' own formats
    are checked, not our special tokens, so a foreign Qwen3-MoE directory still exports.

    With `vocab_size` (the embedding rows), a tokenizer from another run is caught too: one with
    more tokens than rows (transformers indexed past the embedding on those ids), or one that
    lacks the stop/pad ids generation_config.json and config.json name (generate never stopped)."""
    from tokenizers import Tokenizer

    tj = checkpoint / "tokenizer.json"
    if tj.is_file():
        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as exc:  # tokenizers raises plain Exception on malformed files
            raise HillclimbError(f"{checkpoint}: cannot read tokenizer {tj.name}: {exc}") from exc
        if vocab_size is not None:
            _check_tokenizer_fits(checkpoint, tok, vocab_size)
    tc = checkpoint / "tokenizer_config.json"
    if tc.is_file():
        try:
            if not isinstance(json.loads(tc.read_text()), dict):
                raise HillclimbError(f"{checkpoint}: malformed tokenizer {tc.name}: not an object")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HillclimbError(f"{checkpoint}: malformed tokenizer {tc.name}: {exc}") from exc


def _check_tokenizer_fits(checkpoint: Path, tok: Any, vocab_size: int) -> None:
    """See `_check_tokenizer_files`: the tokenizer must fit the embedding and hold the special
    ids the generation files name."""
    n = tok.get_vocab_size(with_added_tokens=True)
    if n > vocab_size:
        raise HillclimbError(
            f"{checkpoint}: the tokenizer has {n} tokens but the model has {vocab_size} embedding "
            "rows; is the tokenizer from another run?"
        )
    for fname in ("generation_config.json", "config.json"):
        f = checkpoint / fname
        if not f.is_file():
            continue  # a missing generation_config.json is allowed (transformers' defaults)
        try:
            d = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            # transformers then falls back to its defaults without a word: the stop ids and
            # the padding suppression the file carries are lost in the copy
            raise HillclimbError(f"{checkpoint}: malformed {fname}: {exc}") from exc
        if not isinstance(d, dict):
            raise HillclimbError(f"{checkpoint}: malformed {fname}: not an object")
        for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
            ids = d.get(key)
            for i in ids if isinstance(ids, list) else [ids]:
                if i is None:
                    continue
                if (
                    isinstance(i, bool)
                    or not isinstance(i, int)
                    or i < 0
                    or tok.id_to_token(i) is None
                ):
                    raise HillclimbError(
                        f"{checkpoint}: {fname} {key} {i!r} is not a token of its tokenizer "
                        f"({n} tokens); is the tokenizer from another run?"
                    )


def _export_gguf(args: argparse.Namespace) -> int:
    from hillclimb.model.gguf import DEFAULT_DTYPE, export_gguf

    r = export_gguf(args.checkpoint, args.out, dtype=args.dtype or DEFAULT_DTYPE)
    note = (
        ""
        if r.tokenizer_exact
        else (
            f"; tokenizer pre-split as '{r.tokenizer_pre}' (ours is custom: llama.cpp's encoding can differ,"
            " decoding is exact)"
        )
    )
    if r.replicated_dense_layers:
        note += f"; dense layers {r.replicated_dense_layers} written as replicated experts"
    print(
        f"exported {args.checkpoint} → {args.out} (llama.cpp qwen3moe GGUF, {r.dtype}, {r.n_tensors} tensors, "
        f"{r.n_bytes / 2**20:.1f} MiB{note})"
    )
    return 0
