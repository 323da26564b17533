"""Tokenize a built corpus (DIR/documents) into training shards (DIR/shards).

Why a separate step: the climb builds data, then trains the tokenizer on it, then tokenizes —
so shards must be (re)writable from the kept documents without re-filtering, and a corpus can be
re-tokenized with another tokenizer. Documents are streamed in file order, encoded in batches
(`encode_batch` runs in Rust threads), and appended to `ShardWriter`s per split; token counts
per source, language and license are returned for the data card. Documents are data: a
special-token string inside one (`<|im_end|>` in a Python string, `<|endoftext|>` in a README)
is encoded as text, never as the token (which would end a document mid-way, or teach the model
to emit its stop token inside code).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hillclimb.data.jsonl import iter_documents
from hillclimb.data.shards import ShardWriter, file_sha256, write_meta
from hillclimb.errors import HillclimbError

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer


def tokenizer_sha256(tokenizer: str | os.PathLike[str] | Tokenizer) -> str:
    """The hash shards record for `tokenizer` (`meta.json`, the card's `tokenizer.sha256`): of
    its `tokenizer.json` file, or of a loaded tokenizer's serialisation."""
    if isinstance(tokenizer, (str, os.PathLike)):
        p = Path(tokenizer)
        return file_sha256(p / "tokenizer.json" if p.is_dir() else p)
    return hashlib.sha256(tokenizer.hf.to_str().encode()).hexdigest()


def _load(tokenizer: str | os.PathLike[str] | Tokenizer) -> tuple[Tokenizer, str]:
    if isinstance(tokenizer, (str, os.PathLike)):
        from hillclimb import load_tokenizer

        return load_tokenizer(tokenizer), tokenizer_sha256(tokenizer)
    return tokenizer, tokenizer_sha256(tokenizer)


def tokenize_corpus(
    data_dir: str | os.PathLike[str],
    tokenizer: str | os.PathLike[str] | Tokenizer,
    shards_dir: str | os.PathLike[str],
    shard_tokens: int = 1 << 26,
    batch_docs: int = 256,
) -> dict[str, Any]:
    """Write shards for every document under `data_dir` into `shards_dir` (which must not exist
    yet). Returns {"tokenizer": {...}, "splits": {...}, "tokens_by": {source|language|license}}."""
    tok, sha = _load(tokenizer)
    out = Path(shards_dir)
    if out.exists():
        raise HillclimbError(f"{out} already exists; refusing to overwrite shards in place")
    vocab, eos = tok.vocab_size, tok.eos_id
    writers = {
        s: ShardWriter(out, s, vocab, eos, shard_tokens=shard_tokens) for s in ("train", "val")
    }
    by: dict[str, Counter[str]] = {"source": Counter(), "language": Counter(), "license": Counter()}
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        for rec, ids in zip(
            batch, tok.encode_batch([r["text"] for r in batch], allow_special=False), strict=True
        ):
            split = rec.get("split", "train")
            if split not in writers:
                raise HillclimbError(f"document {rec.get('id')} has unknown split {split!r}")
            writers[split].add(ids, n_bytes=len(rec["text"].encode("utf-8", "surrogatepass")))
            n = len(ids) + 1  # + the eos separator, as stored
            for key in by:
                by[key][str(rec.get(key))] += n
        batch.clear()

    try:
        for rec in iter_documents(data_dir):
            batch.append(rec)
            if len(batch) >= batch_docs:
                flush()
        flush()
        splits = {s: w.close() for s, w in writers.items()}
        write_meta(out, splits, vocab, eos, sha)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return {
        "tokenizer": {"sha256": sha, "vocab_size": vocab, "eos_id": eos},
        "splits": splits,
        "tokens_by": {k: dict(sorted(v.items())) for k, v in by.items()},
    }
