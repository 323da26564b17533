"""`hillclimb data build|tokenize|card`: the data stage's commands.

Why thin: the handlers only turn arguments into a `DataConfig` (from a recipe's `[data]` table,
or the default filters over ad hoc `--source` paths) and call `pipeline.build` /
`pipeline.retokenize`, so the climb and tests call the same library functions.

The command is also where the AI-content detector's checkpoints are loaded (`checkpoint_scorer`):
the data library takes a scorer and never loads a model (DESIGN.md); the climb's data stage uses
the same function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hillclimb.data.card import (
    LICENSE_HINT,
    empty_corpus_message,
    missing_paths,
)
from hillclimb.errors import HillclimbError

if TYPE_CHECKING:
    import torch

    from hillclimb.data.binoculars import TextScorer
    from hillclimb.data.config import AIContentConfig, DataConfig
    from hillclimb.tokenizer.io import Tokenizer


class CheckpointPairScorer:
    """Binoculars scores from an observer and a performer checkpoint (same tokenizer).

    Loads both lazily, on the first call, so the object pickles cheaply into the workers of a
    parallel build and each worker loads its own copy (torch state is never forked)."""

    def __init__(
        self, observer: str, performer: str, device: str | None = None, max_tokens: int = 512
    ):
        self.paths = (observer, performer)
        self.device = device
        self.max_tokens = max_tokens
        self._loaded: tuple[Tokenizer, torch.nn.Module, torch.nn.Module] | None = None

    def _load(self) -> tuple[Tokenizer, torch.nn.Module, torch.nn.Module]:
        if self._loaded is None:
            from hillclimb import load_model, load_tokenizer

            observer, performer = self.paths
            tok = load_tokenizer(observer)
            if load_tokenizer(performer).hf.to_str() != tok.hf.to_str():
                raise HillclimbError(
                    "Binoculars needs observer and performer checkpoints with the same tokenizer"
                )
            self._loaded = (
                tok,
                load_model(observer, device=self.device),
                load_model(performer, device=self.device),
            )
        return self._loaded

    def __call__(self, texts: list[str]) -> list[float]:
        import torch

        from hillclimb.data.binoculars import binoculars_scores

        tok, observer, performer = self._load()
        seqs = [ids[: self.max_tokens] for ids in tok.encode_batch(texts, allow_special=False)]
        seqs = [s if len(s) >= 2 else s + [tok.eos_id] * (2 - len(s)) for s in seqs]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.eos_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        if self.device:
            ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.no_grad():
            scores = binoculars_scores(observer(ids), performer(ids), ids, mask)
        return [float(x) for x in scores.cpu()]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}


def checkpoint_scorer(cfg: AIContentConfig) -> TextScorer | None:
    """The scorer for `cfg`'s observer/performer pair, or None when the detector is off."""
    from hillclimb.data.binoculars import BinocularsFilter

    if not BinocularsFilter.enabled(cfg):
        return None
    assert cfg.observer and cfg.performer
    return CheckpointPairScorer(cfg.observer, cfg.performer, cfg.device, cfg.max_tokens)


def _config_from_args(args: argparse.Namespace) -> DataConfig:
    from hillclimb.data.config import DataConfig, SourceConfig
    from hillclimb.data.recipe import load_data_config
    from hillclimb.data.sources import detect_kind

    if args.recipe and args.source:
        raise HillclimbError("give --recipe or --source, not both")
    if args.license is not None and not args.source:
        # a recipe's sources carry their own `license`; silently ignoring the flag would let a
        # user believe their files were relabelled
        raise HillclimbError(
            '--license applies to --source paths; in a recipe, set `license = "..."` on the source'
        )
    if args.recipe:
        cfg = load_data_config(args.recipe)
    elif args.source:
        sources = []
        for i, p in enumerate(args.source):
            # a path typed on the command line that is not there is a typo, not a source to
            # count as skipped (a recipe's optional sources may be missing on some machines)
            if not Path(p).exists():
                raise HillclimbError(f"--source {p}: no such file or directory")
            name = Path(p).name or f"source{i}"
            name = name if name not in {s.name for s in sources} else f"{name}{i}"
            sources.append(
                SourceConfig(kind=detect_kind(p), name=name, path=p, license=args.license)
            )
        _refuse_all_empty(args.source)
        cfg = DataConfig(sources=sources)
    else:
        raise HillclimbError("data build needs --recipe R or at least one --source PATH")
    if args.workers is not None:
        cfg.workers = args.workers
    cfg.validate()
    return cfg


def _build(args: argparse.Namespace) -> int:
    from hillclimb.data.pipeline import build

    cfg = _config_from_args(args)
    recipe = None
    if args.recipe:
        recipe = Path(args.recipe).stem if args.recipe.endswith(".toml") else args.recipe
    card = build(
        cfg,
        args.out,
        resume=args.resume,
        force=args.force,
        tokenizer=args.tokenizer,
        recipe=recipe,
        progress=not args.json,
        ai_scorer=checkpoint_scorer(cfg.ai_content),
    )
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        _summary(card, args.out)
    if not card["totals"]["documents"]:
        # a corpus of nothing is a failed build, not a success (a `--source` tree without any
        # license evidence loses every file to the license filter)
        print(f"hillclimb: error: {empty_corpus_message(card)}", file=sys.stderr)
        return 1
    return 0


def _is_empty_dir(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False  # a file, or unlistable: the build says so (an `unreadable` skip)


def _refuse_all_empty(paths: list[str]) -> None:
    """Refuse `--source` directories that hold nothing at all, before the build starts. Why:
    the build would first spend seconds on the decontamination probes and then fail with
    "kept no document", which reads like a filter problem rather than a wrong path. One empty
    directory beside others is built and warned about (`source_warnings`)."""
    if paths and all(_is_empty_dir(p) for p in paths):
        raise HillclimbError(
            f"--source {' '.join(paths)}: the director{'y is' if len(paths) == 1 else 'ies are'} "
            "empty (no file to build from)"
        )


_RECORD_KINDS = ("jsonl", "parquet")


def source_warnings(card: dict, out: str | Path) -> list[str]:
    """A warning per configured source that kept no document while others kept some, with
    the reasons its files were dropped (counted from `rejects/`). Why: the build succeeds on
    the other sources (the generators, say), so a user's own tree lost to the license filter
    was only visible as a 0 row in the card, and the models trained without it."""
    if not card.get("totals", {}).get("documents"):
        return []  # the whole build failed: empty_corpus_message says it once
    empty = [n for n, v in card.get("by_source", {}).items() if not v.get("documents")]
    if not empty:
        return []
    reasons = _reject_reasons(Path(out) / "rejects", set(empty))
    msgs = []
    for name in empty:
        counts = reasons.get(name, {})
        top = ", ".join(f"{f}:{r} {n}" for (f, r), n in sorted(counts.items(), key=lambda x: -x[1]))
        why = f": {top}" if top else f": it yielded no {_unit(card, name)}"
        hint = f"; {LICENSE_HINT}" if counts.get(("license", "unknown")) else ""
        hint += "".join(f"; no such path: {p}" for _, p in missing_paths(card, {name}))
        msgs.append(f"source {name!r} kept no document{why}{hint}")
    return msgs


def _unit(card: dict, name: str) -> str:
    """What a source yields: records for JSONL/Parquet (an empty JSONL file "yielded no file"
    read as if the file were missing), files otherwise."""
    kind = next((s.get("kind") for s in card.get("sources", []) if s.get("name") == name), None)
    return "record" if kind in _RECORD_KINDS else "file"


def _reject_reasons(rejects: Path, names: set[str]) -> dict[str, dict[tuple[str, str], int]]:
    """(filter, reason) counts per source, for the sources in `names`, from the rejects files."""
    import gzip

    out: dict[str, dict[tuple[str, str], int]] = {}
    for path in sorted(rejects.glob("*.jsonl.gz")):
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    rec = json.loads(line)
                    src = rec.get("source")
                    if src in names:
                        key = (str(rec.get("filter")), str(rec.get("reason")))
                        per = out.setdefault(src, {})
                        per[key] = per.get(key, 0) + 1
        except (OSError, ValueError):
            continue  # a damaged rejects file only costs the warning its reasons
    return out


def _summary(card: dict, out: str) -> None:
    t = card["totals"]
    toks = f", {t['tokens']:,} tokens" if t.get("tokens") is not None else ""
    print(f"data build: {t['documents']:,} documents, {t['bytes']:,} bytes{toks} -> {out}")
    for f in card["filters"]:
        if f["name"] == "decontaminate" and f.get("probes"):
            kept = sum(f.get("generator_overlaps_kept", {}).values())
            excluded = sum(f.get("excluded_problem_files", {}).values())
            print(
                f"  decontaminate dropped {f['dropped']:,} of "
                f"{f.get('stats', {}).get('documents_checked', 0):,} checked against "
                f"{f['probes']['probes']:,} probes; {excluded:,} problem-generator files "
                f"excluded; {kept:,} generator overlaps kept"
            )
        elif f["dropped"]:
            top = ", ".join(f"{r} {n}" for r, n in list(f["reasons"].items())[:4])
            print(f"  {f['name']:<11} dropped {f['dropped']:>7,}  ({top})")
        elif f.get("stats"):
            print(f"  {f['name']:<11} {', '.join(f'{k} {v}' for k, v in f['stats'].items())}")
    for w in [*card.get("warnings", []), *source_warnings(card, out)]:
        print(f"  warning: {w}")
    print(f"  see {Path(out) / 'DATA_CARD.md'}")


def _tokenize(args: argparse.Namespace) -> int:
    from hillclimb.data.pipeline import retokenize

    card = retokenize(args.data, args.tokenizer)
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print(
            f"data tokenize: {card['totals']['tokens']:,} tokens "
            f"({card['tokenizer']['dtype']}) -> {Path(args.data) / 'shards'}"
        )
    return 0


def _card(args: argparse.Namespace) -> int:
    p = Path(args.data) / "data_card.json"
    if not p.is_file():
        raise HillclimbError(f"no data_card.json in {args.data}")
    md = Path(args.data) / "DATA_CARD.md"
    try:  # a damaged or partly copied corpus: say which file, never a traceback
        card = json.loads(p.read_text(encoding="utf-8"))
        text = None if args.json else md.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HillclimbError(f"cannot read the data card in {args.data}: {exc}") from exc
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build the clean, licensed pre-training corpus")
    data.set_defaults(_parser=data)
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    b = dsub.add_parser(
        "build",
        help="sources -> filters -> dedup -> documents/, rejects/, data card, shards",
        description="Build a corpus from a recipe's [data] table or ad hoc local paths. "
        "Output: DIR/documents/*.jsonl.gz, DIR/rejects/, DIR/data_card.json, "
        "DIR/DATA_CARD.md, DIR/shards/ (with --tokenizer).",
    )
    b.add_argument("--recipe", help="recipe name (recipes/NAME.toml) or path; uses its [data]")
    b.add_argument(
        "--source",
        action="append",
        metavar="PATH",
        help="local path (dir, git clone, .jsonl[.gz], .parquet); repeatable; default filters",
    )
    b.add_argument(
        "--license",
        metavar="SPDX",
        help="with --source: the license to assume where a file's own cannot be told "
        "(e.g. MIT for your own code; GPL-family and unknown licenses are still dropped)",
    )
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--tokenizer", metavar="DIR", help="also write tokenized shards to DIR/shards")
    b.add_argument("--resume", action="store_true", help="continue an incomplete build in DIR")
    b.add_argument("--force", action="store_true", help="rebuild even if DIR holds a build")
    b.add_argument("--workers", type=int, help="filter processes (default: recipe, else 1)")
    b.add_argument("--json", action="store_true", help="print the data card as JSON")
    b.set_defaults(func=_build, _parser=b)

    t = dsub.add_parser("tokenize", help="(re)write DIR/shards for a built corpus")
    t.add_argument("--data", required=True, metavar="DIR")
    t.add_argument("--tokenizer", required=True, metavar="DIR")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_tokenize, _parser=t)

    c = dsub.add_parser("card", help="show a built corpus's data card")
    c.add_argument("--data", required=True, metavar="DIR")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_card, _parser=c)
