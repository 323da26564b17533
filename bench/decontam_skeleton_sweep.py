"""How long a code skeleton n-gram must be (session 18, docs/LOG.md; docs/areas/data.md
"Decontamination"): recall on renamed evaluation code against matches in ordinary code.

Collects the default probes (`[data.decontaminate]` defaults) and, per skeleton n-gram length,
builds the skeleton table (`decontam._skeleton_table`, the index's own rule for which probes and
windows count) and counts
- recall: held-out probe functions with their names renamed (`bench/decontam_disguises.py`'s
  `renamed_identifiers`, 292 texts) and HumanEval's prompt + solution renamed without its
  docstring, each embedded in a document, whose skeleton shares a window with a probe;
- matches in ordinary code: files with a `def name(` under the stdlib (the `python_env` source's
  ingestable two thirds) and under `--roots`, whose skeleton shares a window with a probe
  (the word look's own matches included: this measures the skeleton table alone), with examples.

    python bench/decontam_skeleton_sweep.py --roots /usr/include \
        .venv/lib/python3.11/site-packages /usr/lib/google-cloud-sdk   # ~4 min; JSON lines
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decontam_disguises import drop_docstrings, rename_identifiers  # noqa: E402

import hillclimb.problems as P  # noqa: E402
from hillclimb.data import decontam as D  # noqa: E402
from hillclimb.data.config import DecontaminateConfig  # noqa: E402
from hillclimb.io import stdlib_heldout  # noqa: E402


def recall_texts() -> dict[str, list[str]]:
    """Renamed held-out functions (>= 13 words, as the disguise bench) and renamed HumanEval
    solutions without docstrings, each as a document."""
    from hillclimb.eval.humaneval import load_problems

    recs = P.contamination_probes(seeds=[0], n_per_tier=50)
    held = [
        t
        for r in recs
        if r["split"] == "heldout"
        for t in r["texts"]
        if len(D.normalize_tokens(t)) >= 13
    ]
    he = [drop_docstrings(p["prompt"] + p["canonical_solution"]) for p in load_problems()]
    wrap = "Some preface text here.\n{}\nend".format
    return {
        "renamed": [wrap(x) for x in map(rename_identifiers, held) if x is not None],
        "humaneval_renamed_no_docstring": [wrap(x) for x in map(rename_identifiers, he) if x],
    }


def code_files(roots: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(path, text) of the files with a `def name(`: the ingestable stdlib, then each root's
    `.py` / `.h` / `.c` files under 1 MB."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    trees: dict[str, list[Path]] = {
        "stdlib_ingestable": [
            f
            for f in sorted(stdlib.rglob("*.py"))
            if "site-packages" not in f.parts
            and not stdlib_heldout(f.relative_to(stdlib).as_posix())
        ]
    }
    for r in roots:
        trees[r] = [f for f in sorted(Path(r).rglob("*")) if f.suffix in (".py", ".h", ".c")]
    out: dict[str, list[tuple[str, str]]] = {}
    for name, files in trees.items():
        docs = []
        for f in files:
            try:
                if f.is_file() and f.stat().st_size < 1_000_000:
                    text = f.read_text(encoding="utf-8")
                    if D.looks_like_code(text):
                        docs.append((str(f), text))
            except (OSError, UnicodeDecodeError):
                continue
        out[name] = docs
    return out


def first_hit(keys: np.ndarray, owners: np.ndarray, ids: np.ndarray, n: int) -> tuple | None:
    """(position, owning probe) of the first skeleton n-gram of `ids` in the table, or None."""
    h = D.ngram_hashes(ids, n)
    if not len(h) or not len(keys):
        return None
    pos = np.searchsorted(keys, h)
    pos[pos == len(keys)] = 0
    hit = np.flatnonzero(keys[pos] == h)
    return (int(hit[0]), int(owners[pos[hit[0]]])) if len(hit) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[20, 25, 28, 30, 35, 40])
    ap.add_argument("--roots", nargs="*", default=[], help="trees of ordinary code")
    ap.add_argument("--examples", type=int, default=6)
    args = ap.parse_args()
    probes, _ = D.collect_probes(DecontaminateConfig())
    skel = lambda text: D.code_skeleton(text)[0]  # noqa: E731
    recall = {k: [D.token_ids(skel(t)) for t in v] for k, v in recall_texts().items()}
    files = {
        k: [(path, toks, D.token_ids(toks)) for path, toks in ((p, skel(t)) for p, t in v)]
        for k, v in code_files(args.roots).items()
    }
    for n in args.lengths:
        (keys, owners), stats = D._skeleton_table(probes, n)
        row: dict = {"tokens": n, "skeleton_ngrams": stats["skeleton_ngrams"]}
        for name, docs in recall.items():
            row[name] = {"n": len(docs), "caught": sum(first_hit(keys, owners, d, n) is not None
                                                       for d in docs)}  # fmt: skip
        for name, docs in files.items():
            hits = []
            for path, toks, ids in docs:
                f = first_hit(keys, owners, ids, n)
                if f is not None:
                    hits.append({"path": path, "probe": probes[f[1]].id,
                                 "skeleton": " ".join(toks[f[0] : f[0] + n])})  # fmt: skip
            row[name] = {"def_files": len(docs), "matched": len(hits),
                         "examples": hits[: args.examples]}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
