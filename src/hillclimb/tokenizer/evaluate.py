"""Measure a tokenizer on held-out text against two baselines (`hillclimb tokenizer eval`).

Reported per language on the `val` split: documents, characters, lines, tokens, chars/token and
tokens/line for
- **ours** - the tokenizer under test;
- **(a) gpt2-regex BPE** - byte-level BPE with GPT-2's pre-tokenization regex, trained on the
  *same* training documents at the *same* vocabulary size. It isolates what our pre-tokenizer buys
  (same trainer, same data, same budget). The documents are re-selected from the provenance that
  `tokenizer train` recorded (corpus, split, seed, byte budget) and checked against its
  fingerprint, so the baseline is reproducible; training is deterministic;
- **(b) GPT-2** - OpenAI's real 50,257-token vocabulary, built with `tiktoken.Encoding` from the
  `gpt2.tiktoken` rank file that the `openai-whisper` sdist ships. Optional: without
  `--gpt2-tiktoken PATH` it is skipped with a note (nothing is downloaded at run time); the CLI
  refuses a given PATH that does not exist, while `evaluate()` skips it (the bench's opt-out).

Every tokenizer encodes text as plain text (special-token lookalikes inside documents are not
specials), so counts are comparable. Throughput is MB/s of UTF-8 over the whole val set with each
library's batch encoder (multi-threaded where the library is). "Code" aggregates every language
except prose-like ones (`NON_CODE`); the targets from issue 3 are checked on it.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hillclimb.errors import HillclimbError
from hillclimb.tokenizer.io import Tokenizer, encode_texts, load_tokenizer
from hillclimb.tokenizer.train import (
    Document,
    iter_documents,
    iter_selected_texts,
    read_train_meta,
    select_documents,
    train_tokenizer,
)

NON_CODE = frozenset({"text", "markdown", "reasoning", "prose", "other", "unknown"})
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TARGET_VS_REGEX_BPE = 0.15  # issue 3: >= 15% fewer tokens than (a) on code at equal vocab
TARGET_VS_GPT2 = 0.0  # issue 3: fewer tokens than GPT-2's 50K vocabulary


def load_gpt2_tiktoken(path: str | os.PathLike[str]) -> Any:
    """GPT-2's encoder from a `gpt2.tiktoken` rank file (base64 token, space, rank per line)."""
    import tiktoken

    p = Path(path)
    ranks: dict[bytes, int] = {}
    try:
        lines = p.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"cannot read GPT-2 rank file {p}: {exc}") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError as exc:  # binascii.Error is a ValueError
            raise HillclimbError(f"{p}:{lineno}: not a tiktoken rank line: {exc}") from exc
    if not ranks:
        raise HillclimbError(f"GPT-2 rank file {p} is empty")
    n = max(ranks.values()) + 1
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=n + 1,
        pat_str=GPT2_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": n},
    )


@dataclass
class _Encoder:
    name: str
    vocab_size: int
    encode_batch: Callable[[list[str]], list[int]]  # -> token count per text


def _hf_encoder(name: str, tok: Tokenizer) -> _Encoder:
    hf = tok.hf

    def run(texts: list[str]) -> list[int]:
        prev = hf.encode_special_tokens
        hf.encode_special_tokens = True  # documents' special-token lookalikes are plain text
        try:
            return [len(ids) for ids in encode_texts(hf, texts)]
        finally:
            hf.encode_special_tokens = prev

    return _Encoder(name, tok.vocab_size, run)


def _tiktoken_encoder(name: str, enc: Any) -> _Encoder:
    def run(texts: list[str]) -> list[int]:
        return [len(ids) for ids in enc.encode_ordinary_batch(texts)]

    return _Encoder(name, enc.n_vocab, run)


def _lines(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


def _measure(enc: _Encoder, docs: list[Document]) -> dict[str, Any]:
    texts = [d.text for d in docs]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    t0 = time.perf_counter()
    counts = enc.encode_batch(texts)
    seconds = time.perf_counter() - t0
    per_lang: dict[str, int] = {}
    for d, c in zip(docs, counts, strict=True):
        per_lang[d.language] = per_lang.get(d.language, 0) + c
    return {
        "tokens": per_lang,
        "mb_per_s": round(n_bytes / 1e6 / seconds, 3) if seconds > 0 else None,
    }


def _baseline_texts(tokdir: Path, corpus: Path | None, max_bytes: int | None, seed: int):
    """The training texts for baseline (a) + a note on how they were chosen."""
    meta = read_train_meta(tokdir)
    notes = []
    if meta is not None and "selection" in meta:
        s = meta["selection"]
        train_corpus = Path(s["corpus"])
        if corpus is not None and corpus.resolve() != train_corpus.resolve():
            notes.append(
                f"--corpus differs from the tokenizer's training corpus {train_corpus}; "
                "baseline (a) is trained on --corpus instead"
            )
            sel = select_documents(corpus, "train", max_bytes, seed)
        else:
            sel = select_documents(train_corpus, s["split"], s["max_bytes"], s["seed"])
            if sel.fingerprint != s["fingerprint"]:
                notes.append(
                    "the training corpus changed since the tokenizer was trained "
                    "(document fingerprint differs); baseline (a) uses today's documents"
                )
            else:
                notes.append("baseline (a) trained on the identical documents (fingerprint ok)")
    else:
        if corpus is None:
            raise HillclimbError(
                f"{tokdir} has no tokenizer_train.json provenance; pass --corpus PATH"
            )
        sel = select_documents(corpus, "train", max_bytes, seed)
        notes.append("tokenizer has no training provenance; baseline (a) trained on --corpus")
    return sel, notes


def evaluate(
    tokenizer_dir: str | os.PathLike[str],
    corpus: str | os.PathLike[str] | None = None,
    gpt2_tiktoken: str | os.PathLike[str] | None = None,
    max_bytes: int | None = None,
    seed: int = 0,
    baseline: bool = True,
) -> dict[str, Any]:
    """Evaluate `tokenizer_dir` on the val split; returns the JSON-able report."""
    tokdir = Path(tokenizer_dir)
    ours = load_tokenizer(tokdir)
    meta = read_train_meta(tokdir)
    corpus_path = Path(corpus) if corpus is not None else None
    if corpus_path is None:
        if meta is None:
            raise HillclimbError(f"{tokdir} records no training corpus; pass --corpus PATH")
        corpus_path = Path(meta["selection"]["corpus"])
    val = list(iter_documents(corpus_path, "val"))
    if not val:
        raise HillclimbError(f"corpus {corpus_path} has no documents with split == 'val'")
    if not any(d.text for d in val):  # every rate would be 0/0: nothing to measure
        raise HillclimbError(
            f"corpus {corpus_path}: the val split's {len(val)} document(s) hold no text"
        )

    notes: list[str] = []
    encoders = [_hf_encoder("ours", ours)]
    if baseline:
        given = Path(corpus) if corpus is not None else None
        sel, bnotes = _baseline_texts(tokdir, given, max_bytes, seed)
        notes += bnotes
        t0 = time.perf_counter()
        base = train_tokenizer(iter_selected_texts(sel), ours.vocab_size, pretokenizer="gpt2")
        notes.append(f"baseline (a) trained in {time.perf_counter() - t0:.1f}s")
        encoders.append(_hf_encoder("gpt2_regex_bpe", base))
    if gpt2_tiktoken is not None and Path(gpt2_tiktoken).is_file():
        encoders.append(_tiktoken_encoder("gpt2", load_gpt2_tiktoken(gpt2_tiktoken)))
    else:
        where = f" ({gpt2_tiktoken} not found)" if gpt2_tiktoken else ""
        notes.append(
            "GPT-2 comparison (b) skipped: pass --gpt2-tiktoken PATH to whisper/assets/"
            f"gpt2.tiktoken from the openai-whisper sdist{where}"
        )

    langs: dict[str, dict[str, int]] = {}
    for d in val:
        s = langs.setdefault(d.language, {"documents": 0, "chars": 0, "bytes": 0, "lines": 0})
        s["documents"] += 1
        s["chars"] += len(d.text)
        s["bytes"] += len(d.text.encode("utf-8"))
        s["lines"] += _lines(d.text)

    results = {e.name: _measure(e, val) for e in encoders}
    report_langs: dict[str, Any] = {}
    groups = {lang: [lang] for lang in sorted(langs)}
    code_langs = [lang for lang in sorted(langs) if lang not in NON_CODE]
    if code_langs:
        groups["code"] = code_langs
    groups["all"] = sorted(langs)
    for group, members in groups.items():
        stats = {
            k: sum(langs[m][k] for m in members) for k in ("documents", "chars", "bytes", "lines")
        }
        row: dict[str, Any] = dict(stats)
        for name, r in results.items():
            tokens = sum(r["tokens"].get(m, 0) for m in members)
            row[name] = {
                "tokens": tokens,
                "chars_per_token": round(stats["chars"] / tokens, 4) if tokens else None,
                "tokens_per_line": round(tokens / stats["lines"], 4) if stats["lines"] else None,
            }
        for name in results:
            if name != "ours" and row[name]["tokens"]:
                row[f"fewer_tokens_vs_{name}"] = round(
                    1 - row["ours"]["tokens"] / row[name]["tokens"], 4
                )
        report_langs[group] = row

    target_group = "code" if "code" in report_langs else "all"
    targets: dict[str, Any] = {}
    tg = report_langs[target_group]
    if "fewer_tokens_vs_gpt2_regex_bpe" in tg:
        m = tg["fewer_tokens_vs_gpt2_regex_bpe"]
        targets["vs_gpt2_regex_bpe_equal_vocab"] = {
            "group": target_group, "target": TARGET_VS_REGEX_BPE, "measured": m,
            "met": m >= TARGET_VS_REGEX_BPE,
        }  # fmt: skip
    if "fewer_tokens_vs_gpt2" in tg:
        m = tg["fewer_tokens_vs_gpt2"]
        targets["vs_gpt2_50k"] = {
            "group": target_group, "target_gt": TARGET_VS_GPT2, "measured": m,
            "met": m > TARGET_VS_GPT2,
        }  # fmt: skip
    return {
        "tokenizer": str(tokdir),
        "corpus": str(corpus_path),
        "split": "val",
        "vocab_sizes": {e.name: e.vocab_size for e in encoders},
        "throughput_mb_per_s": {n: r["mb_per_s"] for n, r in results.items()},
        "languages": report_langs,
        "targets": targets,
        "notes": notes,
    }


def _rate(value: float | None, width: int, digits: int) -> str:
    """A table cell; None (no tokens or no lines to divide by) is `n/a`, never a 0."""
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def format_report(rep: dict[str, Any]) -> str:
    """A plain-text table of `evaluate`'s report."""
    names = list(rep["vocab_sizes"])
    head = f"{'language':<12} {'docs':>6} {'lines':>8}"
    for n in names:
        head += f" | {n + ' c/t':>20} {'t/line':>7}"
    out = [f"tokenizer {rep['tokenizer']} on {rep['corpus']} (split val)", head]
    for lang, row in rep["languages"].items():
        line = f"{lang:<12} {row['documents']:>6} {row['lines']:>8}"
        for n in names:
            r = row[n]
            line += f" | {_rate(r['chars_per_token'], 20, 3)} {_rate(r['tokens_per_line'], 7, 2)}"
        out.append(line)
    out.append(
        "vocab: " + ", ".join(f"{n}={v}" for n, v in rep["vocab_sizes"].items())
        + "; throughput MB/s: "
        + ", ".join(f"{n}={v}" for n, v in rep["throughput_mb_per_s"].items())
    )  # fmt: skip
    for name, t in rep["targets"].items():
        out.append(
            f"target {name} on {t['group']}: {t['measured'] * 100:.1f}% fewer tokens "
            f"({'met' if t['met'] else 'NOT met'})"
        )
    out += [f"note: {n}" for n in rep["notes"]]
    return "\n".join(out)
