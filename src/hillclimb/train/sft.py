"""`hillclimb.train.sft.run(cfg) -> RunResult`: supervised fine-tuning from a checkpoint.

Examples come from JSONL files (`sft_data`), from the built-in problem generators
(`problems = {"families", "tiers", "n"}`) and from FIM cuts of a corpus (`fim_corpus`,
`fim_examples`) — our generators and our licensed corpus, never another model. They are encoded by
`sft_data` (loss on assistant tokens / FIM middles only), examples longer than a row are dropped
(and counted), a held-out share becomes the validation set (or `val_data`), and the shared loop
trains with the masked loss. Validation bpb is over the assistant/middle bytes only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.tokenizer.specials import BUDGET_NOTE
from hillclimb.train import sft_data as S
from hillclimb.train.config import SFTConfig
from hillclimb.train.loop import RunResult, TrainTask, require_out, run_training
from hillclimb.train.pretrain import resolve_model_config, resolve_tokenizer

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer


def collect_records(
    cfg: SFTConfig, tok: Tokenizer | None = None
) -> tuple[list[dict], list[dict], dict | str]:
    """(train records, explicit val records, decontamination report); `tok` measures solutions
    for budget notes.

    With `cfg.decontaminate`, records from `--data` files and FIM cuts are judged against the
    evaluation items (`data.decontam_records`) before anything else and the contaminated ones
    dropped; built-in problem examples are the generators' train split and are not judged. The
    report says what was judged and dropped ("off" without it, "nothing to judge" when only
    problem examples are trained)."""
    data = S.read_jsonl(cfg.sft_data) if cfg.sft_data else []
    fim: list[dict] = []
    if cfg.fim_corpus is not None and cfg.fim_examples > 0:
        fim = S.fim_from_corpus(
            cfg.fim_corpus,
            cfg.fim_examples,
            cfg.seed,
            max_chars=cfg.seq_len * 3,
            languages=cfg.fim_languages,
        )
    report: dict | str = "off" if data or fim else "nothing to judge"
    if cfg.decontaminate is not None and (data or fim):
        from hillclimb.data.decontam_records import decontaminate_records, load_probes

        index, where = load_probes(cfg.decontaminate)
        kept, rep = decontaminate_records(data + fim, index)
        report = {"probes": where, **rep}
        if not kept:
            raise HillclimbError(
                f"every one of the {len(data) + len(fim)} --data / FIM records contains an "
                f"evaluation item (--decontaminate {cfg.decontaminate}); e.g. "
                f"{rep['examples'][0]}"
            )
        keep = {id(r) for r in kept}
        data = [r for r in data if id(r) in keep]
        fim = [r for r in fim if id(r) in keep]
    recs: list[dict] = list(data)
    if cfg.problems:
        count = (lambda text: len(tok.encode(text))) if tok is not None else None
        recs += S.problem_examples(cfg.problems, cfg.seed, count)
    recs += fim
    if not recs:
        raise ConfigError("no SFT data: pass --data FILE.jsonl, --problems or --fim-corpus")
    val = S.read_jsonl(cfg.val_data) if cfg.val_data else []
    return recs, val, report


def encode_all(
    tok: Tokenizer, recs: list[dict], max_len: int, why: dict[str, int] | None = None
) -> tuple[list[S.Example], int]:
    """Encode `recs`; examples longer than `max_len` tokens or with nothing to learn are dropped
    and counted in `why` by reason and kind (`too_long:tool`, `no_targets:chat`), so a drop is
    reported, not silent (session 22: a climb's two tool episodes were both too long for the
    row, while its sft-data stage still said `tool: 2`)."""
    out, dropped = [], 0
    for r in recs:
        ex = S.encode_record(tok, r)
        if len(ex) > max_len or ex.n_targets == 0:
            dropped += 1
            if why is not None:
                k = f"{'too_long' if len(ex) > max_len else 'no_targets'}:{ex.kind}"
                why[k] = why.get(k, 0) + 1
            continue
        out.append(ex)
    return out, dropped


def split_val(
    examples: list[S.Example], fraction: float, seed: int
) -> tuple[list[S.Example], list[S.Example]]:
    """(train, val): a seeded `fraction` of the distinct examples held out, every copy of an
    example on the same side.

    Why by distinct example: a record repeated in the data (the generators' train split repeats
    easy problems: 142 of 2,400 tier 1-2 reasoning records repeat another) had one copy held
    out and another trained on, so the "held-out" validation partly measured memorised
    examples. Without repeats the split is the one made before (the same permutation)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(tuple(e.ids), []).append(i)
    members = list(groups.values())
    if len(members) < 2:  # one distinct example: nothing can be held out from it
        return examples, []
    order = np.random.default_rng([seed & 0xFFFFFFFF, 0x76616C]).permutation(len(members))
    # at least one example for validation, and at least one left to train on: a share near 1
    # rounded up to every example, and the run failed as "every SFT example is longer than N
    # tokens"
    n_val = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
    val_idx = {i for g in order[:n_val].tolist() for i in members[g]}
    return (
        [e for i, e in enumerate(examples) if i not in val_idx],
        [e for i, e in enumerate(examples) if i in val_idx],
    )


def examples_fingerprint(examples: list[S.Example]) -> str:
    """SHA-256 of the training examples (ids and masks, in order): what `--resume` compares,
    since the `--data` paths may change but other records behind them would splice two runs."""
    import hashlib

    h = hashlib.sha256()
    for e in examples:
        h.update(len(e.ids).to_bytes(8, "little"))
        h.update(np.asarray(e.ids, dtype=np.int64).tobytes())
        h.update(np.asarray(e.mask, dtype=np.int8).tobytes())
        h.update(b"\0" + e.kind.encode() + b"\0")
    return h.hexdigest()


def build_task(cfg: SFTConfig) -> TrainTask:
    if cfg.init is None:
        raise ConfigError("SFT starts from a checkpoint: pass --from CHECKPOINT")
    if not Path(cfg.init).is_dir():  # before its tokenizer is looked for: name the real problem
        raise ConfigError(f"--from {cfg.init}: checkpoint directory not found")
    tok, tok_path = resolve_tokenizer(cfg.tokenizer, cfg.init, cfg.allow_tokenizer_mismatch)
    mcfg = resolve_model_config(cfg, tok)
    recs, val_recs, decon = collect_records(cfg, tok)
    max_len = cfg.max_example_tokens or cfg.seq_len + 1
    why: dict[str, int] = {}
    examples, dropped = encode_all(tok, recs, max_len, why)
    if not val_recs and cfg.val_fraction > 0:
        examples, val_ex = split_val(examples, cfg.val_fraction, cfg.seed)
    else:
        val_ex, vdrop = encode_all(tok, val_recs, max_len, why)
        dropped += vdrop
    if dropped:
        print(
            f"sft: WARNING dropped {dropped} of {len(recs) + len(val_recs)} examples "
            f"({', '.join(f'{k} {v}' for k, v in sorted(why.items()))}; too_long = over "
            f"{max_len} tokens: raise --seq-len / --max-example-tokens to keep them)",
            file=sys.stderr,
            flush=True,
        )
    if not examples:
        raise HillclimbError(
            f"no SFT example to train on: {dropped} of {len(recs) + len(val_recs)} records "
            f"are longer than {max_len} tokens; raise --seq-len"
        )
    pad = S.pad_id(tok)
    batches: S.SFTBatches | S.BucketedSFTBatches
    if cfg.short_seq_len:
        batches = S.BucketedSFTBatches(
            examples, cfg.seq_len, cfg.batch_size, cfg.seed, pad, cfg.short_seq_len
        )
    else:
        batches = S.SFTBatches(examples, cfg.seq_len, cfg.batch_size, cfg.seed, pad)
    batch_fn = batches.batch
    if cfg.copy_fraction > 0:
        # copy rows keep in-context copying alive through SFT (it wears off without them:
        # probe 0.81 -> 0.20 over 800 code SFT steps, LOG.md session 11); ids from the examples
        from hillclimb.train.data import COPY_SPAN, CopyRows, ordinary_ids

        if cfg.short_seq_len and cfg.short_seq_len < 2 * COPY_SPAN[0]:
            # copy rows take the width of the step's rows: a short bucket's rows cannot hold a
            # span and its repeat (it was a numpy ValueError at the first short step, mid-run)
            raise ConfigError(
                f"copy rows need rows of at least {2 * COPY_SPAN[0]} tokens (a span and its "
                f"repeat); --short-seq-len {cfg.short_seq_len} is shorter: raise it or drop "
                "--copy-fraction"
            )
        every = np.fromiter((i for e in examples for i in e.ids), dtype=np.int64)
        copies = CopyRows(ordinary_ids(every, set(tok.special_ids.values())), cfg.seq_len + 1,
                          cfg.seed, distant=cfg.copy_distant)  # fmt: skip

        def batch_fn(step: int) -> tuple[np.ndarray, np.ndarray | None]:
            return copies.mix(step, *batches.batch(step), cfg.copy_fraction)

    if val_ex:
        vi, vm = S.pack(val_ex, range(len(val_ex)), cfg.seq_len + 1, pad)
        keep = max(1, cfg.val_tokens // cfg.seq_len)
        vi, vm = vi[:keep], vm[:keep]
    else:
        vi = np.zeros((0, cfg.seq_len + 1), dtype=np.int64)
        vm = np.zeros_like(vi)
    kinds: dict[str, int] = {}
    for e in examples:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    summary = {
        "data_fingerprint": examples_fingerprint(examples),
        "sft_examples": len(examples),
        "sft_val_examples": len(val_ex),
        "sft_dropped": dropped,
        "sft_dropped_by": dict(sorted(why.items())),
        "sft_kinds": kinds,
        "rows_per_epoch": batches.rows_per_epoch(),
        "copy_fraction": cfg.copy_fraction,
        "target_tokens": int(sum(e.n_targets for e in examples)),
        "decontamination": decon,
    }
    summary["epochs"] = round(batches.epochs(cfg.steps), 3)
    noted = S.budget_noted(recs)
    if noted:
        summary["budget_noted"] = noted
    meta: dict = {
        # trained on the budget note: the server renders it for this model (serve.budget)
        **({"budget_conditioning": {"note": BUDGET_NOTE, "sft_examples": noted}} if noted else {}),
        "data": {
            "sft": [str(p) for p in cfg.sft_data],
            "problems": cfg.problems,
            "fim_corpus": str(cfg.fim_corpus) if cfg.fim_corpus else None,
            "examples": len(examples),
            # what the --data / FIM records were judged against (the checkpoint keeps it)
            "decontamination": decon
            if isinstance(decon, str)
            else {k: decon[k] for k in ("probes", "judged", "dropped", "by_origin")},
        },
    }
    other_rows = {}
    if isinstance(batches, S.BucketedSFTBatches) and batches.short_rows is not None:
        other_rows[
            f"a short-bucket step (batch_size * seq_len // short_seq_len = {cfg.batch_size} * "
            f"{cfg.seq_len} // {cfg.short_seq_len}; choose --short-seq-len to make it a "
            "multiple of the process count)"
        ] = batches.short_rows
    return TrainTask(
        stage="sft",
        model_cfg=mcfg,
        tokenizer=tok,
        batches=batch_fn,
        val_ids=vi,
        val_mask=vm,
        init_checkpoint=Path(cfg.init),
        meta=meta,
        summary=summary,
        other_rows=other_rows,
    )


def run(cfg: SFTConfig) -> RunResult:
    """Fine-tune per `cfg`; returns the run's summary (also written to RUN_DIR/run.json)."""
    require_out(cfg)  # before the data is read
    return run_training(cfg, build_task(cfg))
