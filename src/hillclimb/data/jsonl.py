"""Deterministic, atomic JSON-lines(.gz) files and a reader for corpus directories.

Why: a resumed build must be byte-identical to an uninterrupted one, and gzip normally embeds
the file name and modification time in its header. We write gzip with mtime=0 and no name,
fixed compression level and `sort_keys=False` JSON with a fixed key order, each file through a
temp path renamed into place (hillclimb.io), so a crash never leaves half a file.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept as UTF-8 except lone surrogates, which are written as `\\uXXXX`
    escapes: a file name that is not UTF-8 (os.walk, `git ls-files` give it surrogate-escaped)
    or a record field holding `"\\ud800"` must not make the output file invalid UTF-8 that
    ordinary JSON readers refuse. `json.loads` returns the identical string."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if not s.isascii() and _SURROGATE.search(s):
        s = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    return s


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


class JsonlGzWriter:
    """Rolling writer: `prefix-00000.jsonl.gz`, `prefix-00001.jsonl.gz`, ... every `per_file`
    records. Each file is compressed in memory and written atomically when it is full."""

    def __init__(self, directory: str | os.PathLike[str], prefix: str, per_file: int = 50000):
        self.dir = Path(directory)
        self.prefix = prefix
        self.per_file = per_file
        self.files: list[str] = []
        self.count = 0
        self._lines: list[str] = []

    def write(self, obj: dict[str, Any]) -> None:
        self._lines.append(dumps(obj))
        self.count += 1
        if len(self._lines) >= self.per_file:
            self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        from hillclimb.io import write_bytes_atomic

        name = f"{self.prefix}-{len(self.files):05d}.jsonl.gz"
        data = ("\n".join(self._lines) + "\n").encode("utf-8", "surrogatepass")
        write_bytes_atomic(self.dir / name, gzip_bytes(data))
        self.files.append(name)
        self._lines = []

    def close(self) -> list[str]:
        self._flush()
        return self.files


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    p = Path(path)
    opener = gzip.open if p.name.endswith(".gz") else open
    try:
        with opener(p, "rt", encoding="utf-8", errors="surrogatepass") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise HillclimbError(f"{p}:{lineno}: malformed JSON: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt deflate data in a .gz
        raise HillclimbError(f"cannot read {p}: {exc}") from exc


def document_files(data_dir: str | os.PathLike[str]) -> list[Path]:
    """The corpus files of a built data directory (DIR/documents/*.jsonl[.gz]), sorted."""
    d = Path(data_dir)
    docs = d / "documents" if (d / "documents").is_dir() else d
    files = sorted([*docs.glob("*.jsonl.gz"), *docs.glob("*.jsonl")])
    if not files:
        raise HillclimbError(f"no documents/*.jsonl[.gz] under {data_dir}")
    return files


def iter_documents(data_dir: str | os.PathLike[str], split: str | None = None) -> Iterator[dict]:
    """Every document record of a built corpus, in file order (optionally one split)."""
    for f in document_files(data_dir):
        for rec in iter_jsonl(f):
            if split is None or rec.get("split") == split:
                yield rec
