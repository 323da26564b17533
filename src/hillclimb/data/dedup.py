"""Exact and near-duplicate detection: sha256 of normalised text; MinHash + LSH banding.

Why our own numpy MinHash (datasketch is installed and correct, but): signatures are computed
inside the filter workers chunk by chunk and stored with the work state, so we want a plain
`uint32[num_perm]` array per document, one vectorised matrix op per document (shingle hashes ×
permutations, in blocks to bound memory), and full control of normalisation. Code needs a
different normalisation from web text — datatrove's and text-dedup's defaults lowercase and
strip punctuation, which makes `a[i] = b` and `a(i) == b` the same document. We tokenise into
identifiers/numbers and single punctuation characters (case kept), collapse whitespace, optionally
drop comments, and shingle 5 consecutive tokens.

Hashing is deterministic across processes (CRC32 of tokens, never Python's salted `hash`), so a
resumed or multi-process build produces the same signatures. LSH bands/rows are chosen for the
threshold by minimising the false-positive + false-negative area of the S-curve (the standard
derivation, also used by datasketch); candidate pairs are verified against the estimated Jaccard
before they are merged, and clusters are closed with union-find. In each cluster we keep the
most permissively licensed copy (ties: the first in stream order).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from hillclimb.data.config import DedupConfig

_TOKEN = re.compile(r"\w+|[^\w\s]")
_LINE_COMMENT = re.compile(r"(?m)(?:^|(?<=\s))(?:#|//).*$")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_BLOCK = 2048  # shingles per matrix block


def normalize_exact(text: str) -> str:
    """Exact-dedup normal form: unified newlines, trailing spaces stripped, outer blank trimmed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(ln.rstrip() for ln in lines).strip()


def exact_hash(text: str) -> str:
    return hashlib.sha256(normalize_exact(text).encode("utf-8", "surrogatepass")).hexdigest()


def code_tokens(text: str, strip_comments: bool = False) -> list[str]:
    if strip_comments:
        text = _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub(" ", text))
    return _TOKEN.findall(text)


def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising weighted FP + FN probability mass."""
    xs = np.linspace(0.0, 1.0, 1001)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - xs**r) ** b
            fp = np.trapezoid(np.where(xs < threshold, p, 0.0), xs)
            fn = np.trapezoid(np.where(xs >= threshold, 1.0 - p, 0.0), xs)
            err = fp_weight * fp + (1 - fp_weight) * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


class MinHasher:
    """`signature(text) -> uint32[num_perm]` with seeded multiply-shift hashes.

    Each permutation is h(x) = ((a*x + b) mod 2^64) >> 32 for a 32-bit shingle hash x and random
    64-bit a, b: Dietzfelbinger's strongly universal multiply-shift family. It needs no modulo by
    a prime (uint64 arithmetic wraps for free), which makes it ~3x faster in numpy than the
    (a*x + b) mod (2^61 - 1) form."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        self.a = rng.integers(0, 1 << 63, cfg.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(
            1
        )
        self.b = rng.integers(0, 1 << 63, cfg.num_perm, dtype=np.uint64)
        self._tok_cache: dict[str, int] = {}

    def _token_hashes(self, toks: list[str]) -> np.ndarray:
        cache = self._tok_cache
        if len(cache) > 1_000_000:
            cache.clear()
        out = np.empty(len(toks), dtype=np.uint64)
        for i, t in enumerate(toks):
            h = cache.get(t)
            if h is None:
                h = zlib.crc32(t.encode("utf-8", "surrogatepass"))
                cache[t] = h
            out[i] = h
        return out

    def shingles(self, text: str) -> np.ndarray:
        """Unique 32-bit hashes of the document's k-token shingles."""
        k = self.cfg.shingle_size
        th = self._token_hashes(code_tokens(text, self.cfg.strip_comments))
        if th.size == 0:
            return np.zeros(1, dtype=np.uint64)
        if th.size < k:
            k = th.size
        n = th.size - k + 1
        sh = th[:n].copy()
        mul = np.uint64(1000003)
        for j in range(1, k):
            sh = sh * mul + th[j : j + n]  # uint64 arithmetic wraps modulo 2^64
        sh = (sh ^ (sh >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
        return np.unique(sh)

    def signature(self, text: str) -> np.ndarray:
        sh = self.shingles(text)
        sig = np.full(self.cfg.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        shift = np.uint64(32)
        for s in range(0, sh.size, _BLOCK):
            block = sh[s : s + _BLOCK, None]
            vals = (block * self.a[None, :] + self.b[None, :]) >> shift
            np.minimum(sig, vals.min(axis=0), out=sig)
        return sig.astype(np.uint32)


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class DedupResult:
    """`dropped[i] = (reason, index of the kept copy)` for every removed document index."""

    dropped: dict[int, tuple[str, int]]
    bands: int
    rows: int
    candidate_pairs: int


def _keep_one(
    groups: Iterable[list[int]],
    key: Callable[[int], tuple[int, int]],
    why: str,
    dropped: dict[int, tuple[str, int]],
) -> None:
    """In each group of duplicates keep the member with the lowest `key`; every other member is
    dropped as (`why`, the kept one)."""
    for members in groups:
        if len(members) > 1:
            keep = min(members, key=key)
            for m in members:
                if m != keep:
                    dropped[m] = (why, keep)


def find_duplicates(
    exact: list[str], sigs: np.ndarray | None, ranks: list[int], cfg: DedupConfig
) -> DedupResult:
    """Decide which documents to drop. Inputs are in stream order; `ranks` orders preference
    (lower = keep first: permissiveness), ties broken by stream position."""
    n = len(exact)
    dropped: dict[int, tuple[str, int]] = {}
    key = lambda i: (ranks[i], i)  # noqa: E731
    if cfg.exact:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, h in enumerate(exact):
            groups[h].append(i)
        _keep_one(groups.values(), key, "exact", dropped)
    if cfg.bands is not None and cfg.rows is not None:
        bands, rows = cfg.bands, cfg.rows
    else:
        bands, rows = optimal_bands(cfg.threshold, cfg.num_perm)
    pairs = 0
    if cfg.near and sigs is not None and n > 1:
        alive = [i for i in range(n) if i not in dropped]
        uf = _UnionFind(n)
        checked: set[tuple[int, int]] = set()
        for b in range(bands):
            buckets: dict[bytes, list[int]] = defaultdict(list)
            band = np.ascontiguousarray(sigs[:, b * rows : (b + 1) * rows])
            for i in alive:
                buckets[band[i].tobytes()].append(i)
            for members in buckets.values():
                if len(members) < 2:
                    continue
                # all pairs in small buckets; against the first member in huge ones
                todo = (
                    [(x, y) for k, x in enumerate(members) for y in members[k + 1 :]]
                    if len(members) <= 64
                    else [(members[0], y) for y in members[1:]]
                )
                for x, y in todo:
                    if (x, y) in checked or uf.find(x) == uf.find(y):
                        continue
                    checked.add((x, y))
                    pairs += 1
                    if estimated_jaccard(sigs[x], sigs[y]) >= cfg.threshold:
                        uf.union(x, y)
        clusters: dict[int, list[int]] = defaultdict(list)
        for i in alive:
            clusters[uf.find(i)].append(i)
        _keep_one(clusters.values(), key, "near", dropped)
    return DedupResult(dropped=dropped, bands=bands, rows=rows, candidate_pairs=pairs)
