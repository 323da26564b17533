"""CLI for training: `hillclimb train` (pre-training) and `hillclimb sft`.

Flags map 1:1 onto `TrainConfig` / `SFTConfig` fields; `--config FILE.toml` loads a recipe-style
table first (`[train]` or `[sft]`, or a flat table) and flags given on the command line override it.
Runs under torchrun unchanged: `torchrun --nproc_per_node 2 -m hillclimb train ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hillclimb.errors import ConfigError

# (flag, field, type, help) shared by both commands; None type = store_true.
_COMMON: list[tuple[str, str, Any, str]] = [
    ("--out", "out", Path, "run directory (checkpoints/, final/, metrics.jsonl, val.jsonl, tb/)"),
    ("--tokenizer", "tokenizer", Path, "tokenizer dir (default: the --init/--from checkpoint's)"),
    ("--seed", "seed", int, "seed for init and data order"),
    ("--seq-len", "seq_len", int, "tokens per training sequence"),
    ("--batch-size", "batch_size", int, "global sequences per optimizer step"),
    ("--micro-batch-size", "micro_batch_size", int, "sequences per forward per process"),
    ("--steps", "steps", int, "optimizer steps"),
    ("--optimizer", "optimizer", str, "adamw | muon"),
    ("--lr", "lr", float, "AdamW peak learning rate"),
    ("--muon-lr", "muon_lr", float, "Muon learning rate"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay on matrices"),
    ("--grad-clip", "grad_clip", float, "max global grad norm (0: off)"),
    ("--schedule", "schedule", str, "cosine | wsd | constant"),
    ("--warmup-steps", "warmup_steps", int, "linear warmup steps"),
    ("--min-lr-ratio", "min_lr_ratio", float, "final LR / peak LR"),
    ("--decay-frac", "decay_frac", float, "WSD: fraction of steps in the final decay"),
    ("--device", "device", str, "auto | cpu | cuda"),
    ("--dtype", "dtype", str, "auto (fp32 CPU, bf16 autocast CUDA) | fp32 | bf16"),
    ("--distributed", "distributed", str, "auto | ddp | fsdp (under torchrun) | none (1 process)"),
    ("--threads", "threads", int, "CPU threads per process"),
    ("--val-every", "val_every", int, "validate every N steps (0: at the end only)"),
    ("--val-tokens", "val_tokens", int, "validation tokens per evaluation"),
    ("--log-every", "log_every", int, "routing stats / TensorBoard / log line interval"),
    ("--ckpt-every", "ckpt_every", int, "checkpoint every N steps (0: final only)"),
    ("--keep-last", "keep_last", int, "checkpoints to keep"),
    ("--time-limit", "time_limit_s", float, "stop (and save) after this many seconds"),
    ("--compile", "compile", None, "torch.compile the model"),
    ("--resume", "resume", None, "continue from the latest complete checkpoint in --out"),
    ("--no-tensorboard", "tensorboard", "false", "do not write TensorBoard events"),
    ("--no-memory-check", "memory_check", "false", "skip the memory estimate check"),
]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file with this command's table ([train], [sft] or [rl]) or a flat table",
    )
    for flag, dest, typ, hlp in _COMMON:
        if typ is None:
            p.add_argument(
                flag, dest=dest, action="store_const", const=True, default=None, help=hlp
            )
        elif typ == "false":
            p.add_argument(
                flag, dest=dest, action="store_const", const=False, default=None, help=hlp
            )
        else:
            p.add_argument(flag, dest=dest, type=typ, default=None, help=hlp)
    p.add_argument(
        "--progress",
        dest="progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rich progress bar (default: only on a TTY)",
    )
    p.add_argument(
        "--set",
        dest="model_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model config field (JSON value), e.g. --set bias_balancing=true",
    )
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="pre-train a model on tokenized shards (torchrun-able)")
    model = t.add_mutually_exclusive_group()
    model.add_argument("--preset", default=None, help="model preset, e.g. thinking-tiny")
    model.add_argument(
        "--model-config",
        dest="model_config",
        default=None,
        help="model config as a JSON string or a .json file",
    )
    t.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights")
    t.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data dir with shards/ (from `hillclimb data build`)",
    )
    t.add_argument(
        "--allow-tokenizer-mismatch",
        dest="allow_tokenizer_mismatch",
        action="store_const",
        const=True,
        default=None,
        help="accept shards whose tokenizer hash differs",
    )
    t.add_argument(
        "--copy-fraction",
        dest="copy_fraction",
        type=float,
        default=None,
        help="share of each step's rows that are copy rows (spans and their repeats)",
    )
    t.add_argument(
        "--copy-warmup-steps",
        dest="copy_warmup_steps",
        type=int,
        default=None,
        help="the first N steps use copy rows only (in-context copying; BENCHMARKS.md)",
    )
    t.add_argument(
        "--copy-warmup-check-every",
        dest="copy_warmup_check_every",
        type=int,
        default=None,
        help="probe copying every K warm-up steps and end the warm-up at the first pass "
        "(--copy-warmup-steps is then the maximum); 0: a fixed warm-up (default 50)",
    )
    t.add_argument(
        "--copy-warmup-weight-decay",
        dest="copy_warmup_weight_decay",
        type=float,
        default=None,
        help="weight decay on matrices during the copy warm-up; the corpus phase after it uses "
        "--weight-decay (default: --weight-decay throughout)",
    )
    t.add_argument(
        "--fim-rate",
        dest="fim_rate",
        type=float,
        default=None,
        help="share of document pieces rearranged for fill-in-the-middle (0: off; code: 0.5)",
    )
    t.add_argument(
        "--fim-spm-rate",
        dest="fim_spm_rate",
        type=float,
        default=None,
        help="of those, the share in the SPM layout (suffix first) rather than PSM (0.5)",
    )
    _add_common(t)
    t.set_defaults(func=_train, _parser=t)

    s = sub.add_parser("sft", help="supervised fine-tuning (chat / reasoning / tool calls / FIM)")
    s.add_argument("--from", dest="init", type=Path, default=None, help="checkpoint to fine-tune")
    s.add_argument(
        "--data",
        dest="sft_data",
        type=Path,
        action="append",
        default=None,
        help="SFT examples JSONL (messages / fim / text records); repeatable",
    )
    s.add_argument(
        "--val-data",
        dest="val_data",
        type=Path,
        action="append",
        default=None,
        help="held-out examples JSONL (default: --val-fraction of --data)",
    )
    s.add_argument("--val-fraction", dest="val_fraction", type=float, default=None)
    s.add_argument(
        "--problems",
        default=None,
        metavar="SPEC",
        help='built-in examples from hillclimb.problems, JSON: {"tiers":[1,2],"n":500,'
        '"families":null,"kinds":["reasoning"],"verbose_fraction":0,"budget_fraction":0,'
        '"budget_range":[8,256]}',
    )
    s.add_argument(
        "--fim-corpus",
        dest="fim_corpus",
        type=Path,
        default=None,
        help="corpus dir (documents/*.jsonl) to cut FIM examples from",
    )
    s.add_argument("--fim-examples", dest="fim_examples", type=int, default=None)
    s.add_argument(
        "--copy-fraction",
        dest="copy_fraction",
        type=float,
        default=None,
        help="share of each step's rows that are copy rows (keeps in-context copying)",
    )
    s.add_argument(
        "--short-seq-len",
        dest="short_seq_len",
        type=int,
        default=None,
        help="length buckets: examples of at most this many tokens go in rows this long "
        "(more rows a step), longer ones in --seq-len rows (0: off)",
    )
    s.add_argument(
        "--copy-distant",
        dest="copy_distant",
        action="store_true",
        default=None,
        help="copy rows repeat spans from anywhere earlier in the row (long-range copying)",
    )
    s.add_argument(
        "--decontaminate",
        default=None,
        metavar="PROBES",
        help="drop --data / FIM records that contain an evaluation item: a data build's "
        "probes.npz, its output dir, or `default` (the default probes; ~1 min)",
    )
    _add_common(s)
    s.set_defaults(func=_sft, _parser=s)


def load_toml_table(path: Path, table: str) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if "climb" in data or "models" in data:
        # a climb recipe: its settings sit in [pretrain] / [sft] / [rl] with per-model tables,
        # which a single run cannot choose between; say so instead of "unknown keys: [climb, ...]"
        section = "pretrain" if table == "train" else table
        raise ConfigError(
            f"{path} is a climb recipe (run it with `hillclimb climb --recipe {path}`); --config "
            f"takes a file with a [{table}] table or a flat one: copy the recipe's [{section}] "
            f"settings (and the [{section}.<model>] overrides you want) into it"
        )
    got = data.get(table, data)
    if not isinstance(got, dict):  # `train = 5`: was a TypeError / ValueError from dict()
        raise ConfigError(f"{path}: `{table}` must be a table ([{table}]), got {got!r}")
    return dict(got)


def _model_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--set expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _collect(args: argparse.Namespace, table: str, fields: set[str]) -> dict[str, Any]:
    d: dict[str, Any] = load_toml_table(args.config, table) if args.config else {}
    for k, v in vars(args).items():
        if k in fields and v is not None:
            d[k] = v
    if args.model_set:
        base = d.get("model_overrides", {})
        if not isinstance(base, dict):  # `model_overrides = 5` beside --set: was a TypeError
            raise ConfigError(f"model_overrides must be a table, got {base!r}")
        d["model_overrides"] = {**base, **_model_overrides(args.model_set)}
    return d


def _print(result: Any, as_json: bool) -> None:
    d = result.to_dict()
    if as_json:
        print(json.dumps(d, indent=2))
        return
    bpb = f"{d['val_bpb']:.4f}" if d.get("val_bpb") is not None else "n/a"
    uni = d.get("extra", {}).get("unigram_bpb")
    uni_s = f" (unigram baseline {uni:.4f})" if uni is not None else ""
    print(
        f"{d['stage']}: {d['steps']} steps, {d['tokens']} tokens, {d['tokens_per_s']:.0f} tok/s, "
        f"loss {d['final_loss']}, val bpb {bpb}{uni_s}; final checkpoint: {d['final_dir']}",
        file=sys.stderr,
    )


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _cpu_env() -> None:
    """OpenMP threads that spin-wait collapse when the CPU is oversubscribed (measured: a tiny
    model ran ~10x slower with 2 spinning threads on a loaded 2-core machine); passive waiting
    costs little when the machine is idle. Must be set before torch loads libgomp."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    _cpu_env()

    from hillclimb.train.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    d = _collect(args, "train", fields)
    mc = d.get("model_config")
    if isinstance(mc, str):
        p = Path(mc)
        try:
            d["model_config"] = (
                json.loads(p.read_text()) if p.suffix == ".json" and p.is_file() else json.loads(mc)
            )
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--model-config is neither a JSON file nor JSON: {exc}") from exc
    cfg = TrainConfig.from_dict(d)
    from hillclimb.train import pretrain

    result = pretrain.run(cfg)
    if _is_main():
        _print(result, args.json)
    return 0


def _sft(args: argparse.Namespace) -> int:
    import dataclasses

    _cpu_env()

    from hillclimb.train.config import SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    d = _collect(args, "sft", fields)
    if isinstance(d.get("problems"), str):
        try:
            d["problems"] = json.loads(d["problems"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--problems must be JSON: {exc}") from exc
        from hillclimb.train.sft_data import PROBLEM_SPEC_TYPES, check_problem_spec

        check_problem_spec(d["problems"])
        unknown = sorted(set(d["problems"]) - set(PROBLEM_SPEC_TYPES))
        if unknown:  # a typo ("teirs") would silently fall back to the default
            raise ConfigError(
                f"--problems: unknown key(s) {unknown}; known: {sorted(PROBLEM_SPEC_TYPES)}"
            )
    cfg = SFTConfig.from_dict(d)
    from hillclimb.train import sft

    result = sft.run(cfg)
    if _is_main():
        _print(result, args.json)
        if not args.json:
            _print_decontamination(result.extra.get("decontamination"))
    return 0


def _print_decontamination(rep: Any) -> None:
    """One line on what the --data / FIM records were judged against: a user's SFT file never
    went through the data build, so saying nothing would leave its contamination unspoken."""
    if rep == "off":
        print(
            "sft: --data / FIM records were not checked against evaluation items "
            "(pass --decontaminate PROBES: a data build's probes.npz, or `default`)",
            file=sys.stderr,
        )
    elif isinstance(rep, dict):
        origins = ", ".join(f"{k} {v}" for k, v in rep["by_origin"].items()) or "none"
        print(
            f"sft: decontamination dropped {rep['dropped']:,} of {rep['judged']:,} --data / FIM "
            f"records ({origins}; probes: {rep['probes']})",
            file=sys.stderr,
        )
