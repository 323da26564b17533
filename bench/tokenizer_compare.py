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
       python bench/tokenizer_compare.py --cross-language [--train-bytes N] [--vocab ...]

`--cross-language` (issue 16) runs a different comparison instead: BPE trained on Python only
(this Python's stdlib, a small byte budget), measured in-domain on held-out stdlib files and
cross-language on Java (the `java.base` sources of the first JDK `lib/src.zip` under
/usr/lib/jvm) and C (/usr/include), for our pre-tokenizer now (`code`), before issue 16
(`code-v1`) and GPT-2's regex, every vocabulary size side by side in one JSON object.
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


def _take(items: list[tuple[str, str]], cap: int) -> list[str]:
    """Texts in key order while they fit in `cap` UTF-8 bytes (deterministic, file-order free)."""
    out, n = [], 0
    for _key, text in sorted(items):
        size = len(text.encode("utf-8"))
        if n + size <= cap:
            out.append(text)
            n += size
    return out


def _code_files(root: Path, exts: set[str], max_file: int = 1 << 20):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ("site-packages", "__pycache__") and not d.startswith(".")
        )
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if os.path.splitext(name)[1] in exts and not p.is_symlink():
                try:
                    data = p.read_bytes()
                    if data and len(data) <= max_file and b"\0" not in data:
                        yield data, data.decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue


def cross_language_sets(train_bytes: int, heldout_bytes: int) -> tuple[dict, dict]:
    """{"train": Python texts, "python"|"java"|"c": held-out texts} and where each came from."""
    import zipfile

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    train, val, seen = [], [], set()
    for data, text in _code_files(stdlib, {".py"}):
        h = hashlib.sha256(data).hexdigest()
        if h not in seen:
            seen.add(h)
            key = hashlib.sha256(b"train\0" + data).hexdigest()
            (val if int(h[:8], 16) % 20 == 0 else train).append((key, text))
    sets = {"train": _take(train, train_bytes), "python": _take(val, heldout_bytes)}
    sources = {"train": f"{stdlib} (*.py, 19 in 20 by content hash)",
               "python": f"{stdlib} (*.py, the other 1 in 20)"}  # fmt: skip
    jdk = sorted(p for p in Path("/usr/lib/jvm").glob("*/lib/src.zip") if p.is_file())
    if jdk:
        with zipfile.ZipFile(jdk[0]) as z:
            java = [(hashlib.sha256(b).hexdigest(), b.decode("utf-8", "replace"))
                    for i in z.infolist() if i.filename.startswith("java.base/")
                    and i.filename.endswith(".java") and (b := z.read(i))]  # fmt: skip
        sets["java"] = _take(java, heldout_bytes)
        sources["java"] = f"{jdk[0]} (java.base/**/*.java)"
    c = [
        (hashlib.sha256(d).hexdigest(), t)
        for d, t in _code_files(Path("/usr/include"), {".h", ".c"})
    ]
    if c:
        sets["c"] = _take(c, heldout_bytes)
        sources["c"] = "/usr/include (*.h, *.c)"
    return sets, sources


def cross_language(vocabs: list[int], train_bytes: int, heldout_bytes: int) -> dict:
    """Issue 16's comparison; `fewer_vs_gpt2_regex` = 1 - tokens / GPT-2-regex BPE tokens."""
    from hillclimb.tokenizer.pretok import pattern_of
    from hillclimb.tokenizer.train import train_tokenizer

    sets, sources = cross_language_sets(train_bytes, heldout_bytes)
    langs = [k for k in sets if k != "train"]
    groups = {lang: [lang] for lang in langs} | {"cross": [x for x in langs if x != "python"]}
    kinds = ["code", "code-v1", "gpt2"]
    results = []
    for vocab in vocabs:
        row: dict = {"vocab_size": vocab, "train_seconds": {}, "tokens": {}}
        for kind in kinds:
            t0 = time.perf_counter()
            tok = train_tokenizer(sets["train"], vocab, pretokenizer=kind)
            row["train_seconds"][kind] = round(time.perf_counter() - t0, 1)
            row["tokens"][kind] = {
                lang: sum(len(ids) for ids in tok.encode_batch(sets[lang])) for lang in langs
            }
            for g, members in groups.items():
                row["tokens"][kind][g] = sum(row["tokens"][kind][m] for m in members)
        base = row["tokens"]["gpt2"]
        row["fewer_vs_gpt2_regex"] = {
            kind: {g: round(1 - row["tokens"][kind][g] / base[g], 4) for g in groups}
            for kind in kinds if kind != "gpt2"
        }  # fmt: skip
        results.append(row)
    return {
        "bench": "tokenizer_cross_language",
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.platform()}",
        "python": platform.python_version(),
        "patterns": {k: pattern_of(k)[0] for k in kinds},
        "sources": sources,
        "sizes": {
            k: {"documents": len(v), "bytes": sum(len(t.encode("utf-8")) for t in v)}
            for k, v in sets.items()
        },  # fmt: skip
        "cross_group": groups["cross"],
        "results": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/hillclimb-bench-tokenizer"))
    ap.add_argument("--vocab", type=int, nargs="+", default=None,
                    help="default: 32768 8192 4096 (--cross-language: 4096 8192 32768)")  # fmt: skip
    ap.add_argument("--max-bytes", type=int, default=None,
                    help="training byte budget for the 32K+ vocabularies (default: all)")  # fmt: skip
    ap.add_argument("--small-max-bytes", type=int, default=20_000_000,
                    help="training byte budget for vocabularies < 16K (the climb's setting)")  # fmt: skip
    ap.add_argument("--gpt2-tiktoken", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cross-language", action="store_true",
                    help="Python-only training, held-out Python/Java/C (issue 16) instead")  # fmt: skip
    ap.add_argument("--train-bytes", type=int, default=5_000_000,
                    help="--cross-language: Python training budget")  # fmt: skip
    ap.add_argument("--heldout-bytes", type=int, default=1_500_000,
                    help="--cross-language: held-out budget per language")  # fmt: skip
    args = ap.parse_args()
    if args.gpt2_tiktoken is not None and not args.gpt2_tiktoken.is_file():
        # asked for by name: a typo must not quietly drop the GPT-2 columns from the report
        ap.error(f"--gpt2-tiktoken {args.gpt2_tiktoken}: no such file")
    if args.cross_language:
        vocabs = sorted(args.vocab or [4096, 8192, 32768])
        rep = cross_language(vocabs, args.train_bytes, args.heldout_bytes)
        print(json.dumps(rep, indent=2))
        return 0

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
    for vocab in args.vocab or [32768, 8192, 4096]:
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
    from hillclimb.errors import HillclimbError

    try:
        raise SystemExit(main())
    except HillclimbError as exc:  # bad input (a missing checkpoint, ...): a message, no traceback
        raise SystemExit(f"error: {exc}") from None
