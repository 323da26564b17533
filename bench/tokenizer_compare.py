"""Benchmark: our code-aware tokenizer vs GPT-2-regex BPE (same data, same vocab) and real GPT-2.

Prints one JSON object. Steps:
1. Corpus: `--corpus DIR` (a `hillclimb data build` output or any layout `tokenizer train`
   accepts), or by default a corpus built here from local code any machine has - this Python's
   stdlib (no site-packages), system C/C++ headers (/usr/include) and Node/JS trees
   (/usr/lib/node_modules, /usr/share/javascript) - written as `documents/*.jsonl.gz` records with a
   content-hash train/val split (1 in 20 held out). Files > 1 MB, non-UTF-8 and binary are skipped.
2. GPT-2's real vocabulary: `--gpt2-tiktoken PATH`, or fetched once into the work dir with
   `pip download --no-deps --no-binary :all: openai-whisper==20250625` and extracting
   `whisper/assets/gpt2.tiktoken` from the sdist (a package-registry download, setup only).
3. For each vocabulary size (32768, plus the climb's small sizes): `tokenizer train` (timed), then
   `tokenizer eval`, which trains the GPT-2-regex baseline on the identical documents.

Usage: python bench/tokenizer_compare.py [--vocab 32768 8192 4096] [--max-bytes N]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

EXT = {".py": "python", ".h": "c", ".c": "c", ".hpp": "cpp", ".cc": "cpp", ".js": "javascript",
       ".mjs": "javascript", ".cjs": "javascript", ".ts": "typescript"}  # fmt: skip
WHISPER = "openai-whisper==20250625"


def default_roots() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path("/usr/include"),
             Path("/usr/lib/node_modules"), Path("/usr/share/javascript")]  # fmt: skip
    return [r for r in roots if r.is_dir()]


def build_local_corpus(out: Path, roots: list[Path], max_file: int = 1 << 20) -> dict:
    """Write out/documents/part-00000.jsonl.gz from code files under `roots` (deduplicated)."""
    seen: set[str] = set()
    stats: dict[str, int] = {}
    (out / "documents").mkdir(parents=True, exist_ok=True)
    tmp = out / "documents" / ".part-00000.jsonl.gz.tmp"
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for root in roots:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(
                    d for d in dirnames if d not in ("site-packages", "__pycache__")
                    and not d.startswith(".")
                )  # fmt: skip
                for name in sorted(filenames):
                    lang = EXT.get(os.path.splitext(name)[1])
                    p = Path(dirpath) / name
                    if lang is None or p.is_symlink():
                        continue
                    try:
                        data = p.read_bytes()
                        if not data or len(data) > max_file or b"\0" in data:
                            continue
                        text = data.decode("utf-8")
                    except (OSError, UnicodeDecodeError):
                        continue
                    h = hashlib.sha256(data).hexdigest()
                    if h in seen:
                        continue
                    seen.add(h)
                    split = "val" if int(h[:8], 16) % 20 == 0 else "train"
                    rec = {"id": h, "text": text, "source": str(root), "path": str(p),
                           "url": None, "language": lang, "license": "unknown",
                           "split": split, "kept_by": []}  # fmt: skip
                    f.write(json.dumps(rec) + "\n")
                    key = f"{lang}/{split}_bytes"
                    stats[key] = stats.get(key, 0) + len(data)
    tmp.rename(out / "documents" / "part-00000.jsonl.gz")
    return stats


def fetch_gpt2_tiktoken(workdir: Path) -> Path | None:
    dest = workdir / "gpt2.tiktoken"
    if dest.is_file():
        return dest
    dl = workdir / "whisper_sdist"
    dl.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           WHISPER, "-d", str(dl)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    sdists = sorted(dl.glob("openai_whisper-*.tar.gz")) or sorted(
        dl.glob("openai-whisper-*.tar.gz")
    )
    if r.returncode != 0 or not sdists:
        print(f"could not fetch {WHISPER}: {r.stderr[-500:]}", file=sys.stderr)
        return None
    with tarfile.open(sdists[0]) as tar:
        member = next(
            m for m in tar.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken")
        )
        src = tar.extractfile(member)
        assert src is not None
        dest.write_bytes(src.read())
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/hillclimb-bench-tokenizer"))
    ap.add_argument("--vocab", type=int, nargs="+", default=[32768, 8192, 4096])
    ap.add_argument("--max-bytes", type=int, default=None,
                    help="training byte budget for the 32K+ vocabularies (default: all)")  # fmt: skip
    ap.add_argument("--small-max-bytes", type=int, default=20_000_000,
                    help="training byte budget for vocabularies < 16K (the climb's setting)")  # fmt: skip
    ap.add_argument("--gpt2-tiktoken", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hillclimb.tokenizer.evaluate import evaluate
    from hillclimb.tokenizer.train import TrainConfig, save_trained, train_from_corpus

    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus_stats = None
    corpus = args.corpus
    if corpus is None:
        corpus = args.workdir / "corpus"
        if corpus.exists():
            shutil.rmtree(corpus)
        t0 = time.perf_counter()
        corpus_stats = build_local_corpus(corpus, default_roots())
        corpus_stats["build_seconds"] = round(time.perf_counter() - t0, 1)
    gpt2 = args.gpt2_tiktoken or fetch_gpt2_tiktoken(args.workdir)

    results = []
    for vocab in args.vocab:
        budget = args.max_bytes if vocab >= 16384 else args.small_max_bytes
        cfg = TrainConfig(corpus=str(corpus), vocab_size=vocab, max_bytes=budget, seed=args.seed)
        tok, meta = train_from_corpus(cfg)
        out = args.workdir / f"tok_{vocab}"
        if out.exists():
            shutil.rmtree(out)
        save_trained(tok, meta, out)
        rep = evaluate(out, gpt2_tiktoken=gpt2)
        code = rep["languages"].get("code", rep["languages"]["all"])
        results.append({
            "vocab_size": vocab,
            "train_bytes": meta["selection"]["bytes"],
            "train_documents": meta["selection"]["documents"],
            "train_seconds_ours": meta["train_seconds"],
            "code": {k: code[k] for k in code if k not in ("documents",)},
            "per_language": {
                lang: {n: row[n]["chars_per_token"] for n in rep["vocab_sizes"]}
                | {k: v for k, v in row.items() if k.startswith("fewer_tokens")}
                for lang, row in rep["languages"].items()
            },
            "targets": rep["targets"],
            "throughput_mb_per_s": rep["throughput_mb_per_s"],
            "notes": rep["notes"],
        })  # fmt: skip
    print(json.dumps({
        "bench": "tokenizer_compare",
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.platform()}",
        "python": platform.python_version(),
        "corpus": str(corpus),
        "corpus_stats": corpus_stats,
        "gpt2_tiktoken": str(gpt2) if gpt2 else None,
        "results": results,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
