"""Shared helpers for tests/test_train_*.py: tiny synthetic shards written with ShardWriter."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from hillclimb.data.shards import ShardWriter, write_meta
from hillclimb.tokenizer.io import bytelevel_tokenizer

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "dog",
    "ran",
    "to",
    "a",
    "red",
    "ball",
    "and",
    "then",
    "slept",
]


def synthetic_text(rng: random.Random) -> str:
    n = rng.randint(4, 12)
    body = " ".join(rng.choice(WORDS) for _ in range(n))
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return f"{body}. {a}+{b}={a + b}\n"


def write_shards(root: Path, n_train: int = 400, n_val: int = 40, seed: int = 0, tok=None) -> Path:  # noqa: ANN001
    """A data dir with shards/ (train + val) tokenized by the byte-level tokenizer."""
    tok = tok or bytelevel_tokenizer()
    rng = random.Random(seed)
    shards = root / "shards"
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        w = ShardWriter(shards, split, tok.vocab_size, tok.eos_id, shard_tokens=4096)
        for _ in range(n):
            text = synthetic_text(rng)
            w.add(tok.encode(text), n_bytes=len(text.encode()))
        splits[split] = w.close()
    sha = hashlib.sha256(tok.hf.to_str().encode()).hexdigest()
    write_meta(shards, splits, tok.vocab_size, tok.eos_id, sha)
    return root


def save_tokenizer_dir(root: Path, tok=None) -> Path:  # noqa: ANN001
    from hillclimb.tokenizer.io import save_tokenizer

    tok = tok or bytelevel_tokenizer()
    d = root / "tokenizer"
    save_tokenizer(tok, d)
    return d
