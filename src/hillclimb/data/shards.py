"""Tokenized training shards: the contract between `data build` / `tokenizer` and `train`.

Layout under `DIR/shards/`:

- `meta.json`: `{"format": "hillclimb-shards-v1", "dtype": "uint16"|"uint32", "vocab_size": V,
  "tokenizer_sha256": "...", "eos_id": id, "splits": {"train": {"shards": [...], "tokens": N,
  "documents": D, "bytes": B}, "val": {...}}}`
- `{split}_{k:05d}.bin`: raw little-endian token ids; each document is followed by `eos_id`.
- `{split}_{k:05d}.idx.npy`: int64 document start offsets within the shard (length D_k + 1).

Why this shape: numpy memmaps read in O(1) memory at any scale (nanoGPT/nanochat do the same),
uint16 halves the bytes whenever the vocabulary fits, and document offsets let training and
evaluation pack or pick whole documents. The split is by document (decided upstream), never by
token, so no validation document leaks into training.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_path, write_json_atomic

FORMAT = "hillclimb-shards-v1"
SPLITS = ("train", "val")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Append tokenized documents to one split; rolls over to a new shard file every
    `shard_tokens` tokens. Each shard file is written atomically when closed."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        split: str,
        vocab_size: int,
        eos_id: int,
        shard_tokens: int = 1 << 26,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.dtype = dtype_for_vocab(vocab_size)
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self.shard_tokens = shard_tokens
        self.shards: list[str] = []
        self.tokens = 0
        self.documents = 0
        self.bytes = 0
        self._buf: list[np.ndarray] = []
        self._offsets: list[int] = [0]
        self._buf_tokens = 0

    def add(self, ids: list[int] | np.ndarray, n_bytes: int = 0) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise HillclimbError(f"token id out of range for vocab {self.vocab_size}")
        arr = np.concatenate([arr, np.array([self.eos_id], dtype=np.int64)]).astype(self.dtype)
        self._buf.append(arr)
        self._buf_tokens += arr.size
        self._offsets.append(self._buf_tokens)
        self.tokens += arr.size
        self.documents += 1
        self.bytes += n_bytes
        if self._buf_tokens >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        name = f"{self.split}_{len(self.shards):05d}"
        with atomic_path(self.dir / f"{name}.bin") as tmp:
            np.concatenate(self._buf).tofile(tmp)
        with atomic_path(self.dir / f"{name}.idx.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(self._offsets, dtype=np.int64))
        self.shards.append(name)
        self._buf, self._offsets, self._buf_tokens = [], [0], 0

    def close(self) -> dict:
        self._flush()
        return {
            "shards": self.shards,
            "tokens": self.tokens,
            "documents": self.documents,
            "bytes": self.bytes,
        }


def write_meta(
    directory: str | os.PathLike[str],
    splits: dict[str, dict],
    vocab_size: int,
    eos_id: int,
    tokenizer_sha256: str,
) -> None:
    write_json_atomic(
        Path(directory) / "meta.json",
        {
            "format": FORMAT,
            "dtype": dtype_for_vocab(vocab_size).name,
            "vocab_size": vocab_size,
            "eos_id": eos_id,
            "tokenizer_sha256": tokenizer_sha256,
            "splits": splits,
        },
    )


@dataclass
class Split:
    """A read-only view of one split: the token stream and document boundaries."""

    tokens: np.ndarray  # 1-D, concatenation of all shards (memmaps when there is one shard)
    doc_offsets: np.ndarray  # int64, len = documents + 1
    bytes: int

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.size)


class ShardReader:
    """Opens `DIR/shards` (or `DIR` itself if it holds `meta.json`) and validates it."""

    def __init__(self, directory: str | os.PathLike[str]):
        d = Path(directory)
        if (d / "shards" / "meta.json").is_file():
            d = d / "shards"
        meta_file = d / "meta.json"
        if not meta_file.is_file():
            raise HillclimbError(
                f"no tokenized shards at {directory} (expected shards/meta.json; "
                "run `hillclimb data build` with a tokenizer first)"
            )
        try:
            self.meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as exc:
            raise HillclimbError(f"malformed {meta_file}: {exc}") from exc
        if self.meta.get("format") != FORMAT:
            raise HillclimbError(f"{meta_file}: unknown shard format {self.meta.get('format')!r}")
        self.dir = d
        self.vocab_size = int(self.meta["vocab_size"])
        self.eos_id = int(self.meta["eos_id"])
        self.dtype = np.dtype(self.meta["dtype"])
        for split, info in self.meta["splits"].items():
            for name in info["shards"]:
                for suffix in (".bin", ".idx.npy"):
                    if not (d / f"{name}{suffix}").is_file():
                        raise HillclimbError(f"shard file missing: {d / (name + suffix)} ({split})")

    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def split(self, name: str) -> Split:
        info = self.meta["splits"].get(name)
        if info is None:
            raise HillclimbError(f"shards at {self.dir} have no {name!r} split")
        toks, offs, base = [], [np.zeros(1, dtype=np.int64)], 0
        for shard in info["shards"]:
            t = np.memmap(self.dir / f"{shard}.bin", dtype=self.dtype, mode="r")
            o = np.load(self.dir / f"{shard}.idx.npy")
            if int(o[-1]) != t.size:
                raise HillclimbError(f"shard {shard} is truncated or corrupt (index/bin mismatch)")
            toks.append(t)
            offs.append(o[1:] + base)
            base += t.size
        tokens = (
            toks[0]
            if len(toks) == 1
            else (np.concatenate(toks) if toks else np.zeros(0, self.dtype))
        )
        return Split(
            tokens=tokens, doc_offsets=np.concatenate(offs), bytes=int(info.get("bytes", 0))
        )
