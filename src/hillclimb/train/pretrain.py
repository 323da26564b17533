"""`hillclimb.train.pretrain.run(cfg) -> RunResult`: pre-train a model on tokenized shards.

Everything that can be wrong with the inputs is checked here, before a tensor is allocated:
shards present and intact (`ShardReader`), a tokenizer (from `tokenizer` or the `init`
checkpoint), the shards tokenized with *this* tokenizer (vocabulary size and SHA-256 of the
tokenizer file as recorded in `shards/meta.json`), the model vocabulary = `padded_vocab(tokenizer
size)`, and a train split long enough for one window. The loop itself is `loop.run_training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hillclimb.data.shard_eval import check_shards_match, unigram_bpb, val_windows
from hillclimb.data.shards import ShardReader
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.model.config import ModelConfig, get_preset, padded_vocab
from hillclimb.train import distributed as D
from hillclimb.train.config import TrainConfig
from hillclimb.train.data import PretrainBatches, check_ids_in_vocab
from hillclimb.train.fim import FimIds
from hillclimb.train.loop import RunResult, TrainTask, require_out, run_training

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer


def resolve_tokenizer(
    tokenizer: Path | None, init: Path | None, allow_mismatch: bool = False
) -> tuple[Tokenizer, Path]:
    """The run's tokenizer: `tokenizer`, else the `init` checkpoint's.

    Both given: they must map every id to the same token (unless `allow_mismatch`). Why: the
    checkpoint's embeddings and head mean its own tokenizer's ids; fine-tuning it through
    another one (a retrained BPE of a similar size) trained silently on ids that meant other
    text, and saved the other tokenizer beside those weights as if they belonged together."""
    from hillclimb.tokenizer.io import load_tokenizer

    src = tokenizer or init
    if src is None:
        raise ConfigError("a tokenizer is required: pass --tokenizer DIR (or --init CHECKPOINT)")
    tok = load_tokenizer(src)
    if tokenizer is not None and init is not None and not allow_mismatch:
        try:
            own = load_tokenizer(init)
        except HillclimbError:  # a checkpoint without tokenizer files: --tokenizer supplies it
            own = None
        if own is not None and own.hf.get_vocab(True) != tok.hf.get_vocab(True):
            raise HillclimbError(
                f"--tokenizer {tokenizer} is not the tokenizer checkpoint {init} was trained "
                "with (their ids stand for other text); leave --tokenizer out to use the "
                "checkpoint's, or set allow_tokenizer_mismatch"
            )
    return tok, Path(src)


def resolve_model_config(cfg: TrainConfig, tok: Tokenizer) -> ModelConfig:
    vocab = padded_vocab(tok.vocab_size)
    if cfg.init is not None:
        from hillclimb.model.checkpoint import load_config

        mcfg, _ = load_config(cfg.init)
        if cfg.model_overrides:
            mcfg = mcfg.replace(**cfg.model_overrides)
        if mcfg.vocab_size < tok.vocab_size:
            raise HillclimbError(
                f"checkpoint {cfg.init} has vocabulary {mcfg.vocab_size} < tokenizer size {tok.vocab_size}"
            )
        return mcfg
    if cfg.model_config is not None:
        mcfg = ModelConfig.from_dict(dict(cfg.model_config))
    elif cfg.preset is not None:
        mcfg = get_preset(cfg.preset)
    else:
        raise ConfigError(
            "a model is required: --preset NAME, --model-config JSON or --init CHECKPOINT"
        )
    over = dict(cfg.model_overrides)
    want = over.pop("vocab_size", vocab)  # `--set vocab_size=N`: a larger table is allowed
    if isinstance(want, bool) or not isinstance(want, int) or want < tok.vocab_size:
        raise ConfigError(
            f"vocab_size must be an int >= the tokenizer's {tok.vocab_size} tokens, got {want!r} "
            f"(default: {vocab}, the tokenizer's size padded)"
        )
    return mcfg.replace(vocab_size=want, **over)


def shards_fingerprint(reader: ShardReader) -> str:
    """What a pre-training run's batches are drawn from, for `--resume` to compare: the train
    split's record in `meta.json` (shard names, tokens, documents, bytes) and the tokenizer the
    shards were made with — not the path, which may move. Cheap: no token is read."""
    import hashlib
    import json

    rec = {
        "train": reader.meta["splits"].get("train"),
        "vocab_size": reader.vocab_size,
        "eos_id": reader.eos_id,
        "tokenizer_sha256": reader.meta.get("tokenizer_sha256"),
    }
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()


def build_task(cfg: TrainConfig) -> TrainTask:
    if cfg.data is None:
        raise ConfigError("--data DIR (tokenized shards from `hillclimb data build`) is required")
    reader = ShardReader(cfg.data)
    tok, tok_path = resolve_tokenizer(cfg.tokenizer, cfg.init, cfg.allow_tokenizer_mismatch)
    check_shards_match(reader, tok, tok_path, cfg.allow_tokenizer_mismatch)
    mcfg = resolve_model_config(cfg, tok)
    train = reader.split("train")
    check_ids_in_vocab(train.tokens, tok.vocab_size, f"the train split of {reader.dir}")
    warmup = None
    if cfg.copy_warmup_steps > 0:
        from hillclimb.train.copy_check import COPY_THRESHOLD, CopyWarmup, probe_rows

        wd = cfg.copy_warmup_weight_decay
        warmup = CopyWarmup(
            cfg.copy_warmup_steps, cfg.copy_warmup_check_every, COPY_THRESHOLD,
            rows=probe_rows(tok.vocab_size, set(tok.special_ids.values())),
            weight_decay=cfg.weight_decay if wd is None else wd,
        )  # fmt: skip
    batches = PretrainBatches(
        train,
        cfg.seq_len,
        cfg.batch_size,
        cfg.seed,
        cfg.copy_fraction,
        cfg.copy_warmup_steps,
        special=set(tok.special_ids.values()),
        fim_rate=cfg.fim_rate,
        fim_spm_rate=cfg.fim_spm_rate,
        fim_ids=FimIds.from_tokenizer(tok, reader.eos_id) if cfg.fim_rate > 0 else None,
        warmup=warmup,
    )
    val = reader.split("val") if "val" in reader.splits() else None
    if val is not None:
        check_ids_in_vocab(val.tokens, tok.vocab_size, f"the val split of {reader.dir}")
    if val is not None and val.n_tokens > cfg.seq_len + 1:
        val_ids = val_windows(val, cfg.seq_len, cfg.val_tokens)
    else:
        val_ids = np.zeros((0, cfg.seq_len + 1), dtype=np.int64)
    tb = np.asarray(tok.token_bytes + [0] * (mcfg.vocab_size - tok.vocab_size), dtype=np.float64)
    uni = unigram_bpb(train, val_ids[:, 1:], tb, mcfg.vocab_size) if val_ids.size else None
    meta = {
        "data": {
            "shards": str(reader.dir),
            "train_tokens": train.n_tokens,
            "tokenizer_sha256": reader.meta.get("tokenizer_sha256"),
        }
    }
    if cfg.fim_rate:  # what an IDE client can expect of the checkpoint (absent: never taught)
        meta["fim"] = {"rate": cfg.fim_rate, "spm_rate": cfg.fim_spm_rate}
    return TrainTask(
        stage="pretrain",
        model_cfg=mcfg,
        tokenizer=tok,
        batches=batches.batch_and_mask,
        val_ids=val_ids,
        val_mask=None,
        init_checkpoint=cfg.init,
        meta=meta,
        copy_warmup=warmup,
        summary={
            "data_fingerprint": shards_fingerprint(reader),
            "unigram_bpb": uni,
            "train_tokens": train.n_tokens,
            "val_windows": int(val_ids.shape[0]),
        },
    )


def run(cfg: TrainConfig) -> RunResult:
    """Pre-train per `cfg`; returns the run's summary (also written to RUN_DIR/run.json)."""
    require_out(cfg)  # before the data is read
    result = run_training(cfg, build_task(cfg))
    # a copy warm-up can end without copying (seed-dependent): measure it, never silently
    if cfg.copy_warmup_steps > 0 and "copy_check" not in result.extra and D.env_rank() == 0:
        from hillclimb.train.copy_check import attach_copy_check

        attach_copy_check(result)
    return result
