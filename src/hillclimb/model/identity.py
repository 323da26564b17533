"""Which weights a checkpoint directory holds: one content hash, without loading torch.

Why one module: evaluation records the hash of the weights it measured (`eval.json`'s
`weights_sha256`) and the registry keys checkpoints by the same hash and refuses a result of
other weights (`registry.db.check_weights`). The two were separate copies of one loop; a change
to either (another shard layout, the index file) would have made every result look foreign.
No torch import: the registry lists and gates checkpoints on machines that only read them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def weight_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The files that make up the weights: every `*.safetensors`, sorted, and the shard index."""
    d = Path(directory)
    files = sorted(d.glob("*.safetensors"))
    index = d / "model.safetensors.index.json"
    return files + ([index] if index.is_file() else [])


def weights_sha256(directory: str | os.PathLike[str]) -> str | None:
    """SHA-256 over each weight file's name, size and bytes (sorted); None without weights.

    Name and size go in before the bytes so that two layouts of one byte stream (one file vs
    shards) hash differently: a result is of a directory as written, not of a tensor set."""
    files = weight_files(directory)
    if not any(f.suffix == ".safetensors" for f in files):
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + str(f.stat().st_size).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()
