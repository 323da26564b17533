"""Train the shared code-aware byte-level BPE tokenizer (`hillclimb tokenizer train`).

What it does: reads corpus documents (the `data build` layout `DIR/documents/*.jsonl[.gz]`, a
single `.jsonl[.gz]` file, or a plain directory of text/code files), picks the `train` split,
optionally subsamples it to a byte budget, and trains byte-level BPE with Hugging Face
`tokenizers` behind our code-aware pre-tokenizer (`pretok.py`). Special tokens are appended after
the learned vocabulary in `SPECIAL_TOKENS` order, so ids 0..255 are the byte symbols, then merges,
then specials - the layout `specials.py` promises.

Why it is built this way:
- HF `tokenizers` trains in Rust on all cores and is deterministic (ties between equally frequent
  pairs are broken by a fixed order), so a 8K vocabulary on ~20 MB takes seconds, and the same
  documents give a byte-identical `tokenizer.json`.
- The only randomness we add is the subsample under `--max-bytes`: each document gets the key
  sha256(seed, doc id) and the lowest keys are kept until the budget is met. Two passes (keys, then
  texts) keep memory at O(#docs), independent of corpus size, and the choice does not depend on file
  order.
- `vocab_size` counts everything, specials included, because it is the model's embedding size.
- Documents without a `split` field (plain files, foreign JSONL) get one from their content hash
  (1 in 20 is `val`), so `tokenizer eval` on the same path measures held-out text.
- The trainer's time grows with the square of a pre-token's length (measured: one 40,000-letter
  word 1.6 s, 3 MB of one line ran for over 14 minutes), so a run of one character class longer
  than `TRAIN_RUN_CHARS` (a minified blob, a data URI, a file of blanks) is cut into pieces of
  that length for training only (`training_pieces`); encoding is not affected.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import regex

from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.io import json_lines
from hillclimb.tokenizer.io import Tokenizer
from hillclimb.tokenizer.specials import SPECIAL_TOKENS

TRAIN_META = "tokenizer_train.json"  # provenance written beside tokenizer.json
VAL_EVERY = 20  # documents without a split: 1 in VAL_EVERY (by content hash) is held out
MAX_FILE_BYTES = 8 << 20  # plain-directory mode skips larger files (generated data, dumps)
MIN_VOCAB = 256 + len(SPECIAL_TOKENS) + 1
# `tokenizers`' BPE trainer allocates tables sized by the requested vocabulary up front (~70 bytes
# an entry): 2**31 aborts the process (Rust OOM, no Python error). 2**20 is 16x our largest
# preset vocabulary (65,536) and costs ~70 MB.
MAX_VOCAB = 1 << 20
# Longest run of one character class (letters/marks/underscore, digits, punctuation, whitespace)
# that training keeps whole: every pre-token of our patterns and GPT-2's longer than this plus a
# few characters holds such a run. 1,024 costs the trainer ~1 ms a distinct run; no learned
# token of a 64K vocabulary comes near that length.
TRAIN_RUN_CHARS = 1024
_LONG_RUN = regex.compile(
    "|".join(
        f"(?<!{c}){c}{{{TRAIN_RUN_CHARS + 1},}}"  # starts at its run's start: one scan per run
        for c in (r"[\p{L}\p{M}_]", r"\p{N}", r"[^\s\p{L}\p{N}]", r"\s")
    )
)

# Extension -> language for plain directories (the data pipeline records its own languages).
EXT_LANGUAGE = {
    ".py": "python", ".pyi": "python", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".java": "java", ".js": "javascript",
    ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript",
    ".tsx": "typescript", ".go": "go", ".rs": "rust", ".sh": "shell", ".bash": "shell",
    ".rb": "ruby", ".php": "php", ".cs": "csharp", ".kt": "kotlin", ".swift": "swift",
    ".scala": "scala", ".lua": "lua", ".pl": "perl", ".sql": "sql", ".html": "html",
    ".css": "css", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".xml": "xml", ".md": "markdown", ".rst": "text", ".txt": "text",
}  # fmt: skip


@dataclass(frozen=True)
class Document:
    """One corpus document as the tokenizer sees it."""

    id: str
    text: str
    language: str
    split: str


def _hash_split(doc_id: str) -> str:
    # surrogatepass: a plain directory's non-UTF-8 file names reach here surrogate-escaped
    h = int(hashlib.sha256(doc_id.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)
    return "val" if h % VAL_EVERY == 0 else "train"


def _iter_jsonl(path: Path) -> Iterator[Document]:
    for where, rec in json_lines(path, "tokenizer training documents"):
        text = rec.get("text") if isinstance(rec, dict) else None
        if not isinstance(text, str):
            raise HillclimbError(f"{where}: record has no string 'text' field")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON allows "\ud800"; BPE cannot take it
            raise HillclimbError(
                f"{where}: 'text' holds a lone surrogate "
                f"U+{ord(text[exc.start]):04X} at {exc.start}: not Unicode text"
            ) from None
        doc_id = str(rec.get("id") or hashlib.sha256(text.encode("utf-8")).hexdigest())
        split = rec.get("split") or _hash_split(doc_id)
        yield Document(doc_id, text, str(rec.get("language") or "text"), str(split))


def _plain_text(p: Path) -> tuple[str | None, str]:
    """(text, "") for a plain-directory file the tokenizer trains on, else (None, reason)."""
    try:
        # lstat: a link is never followed (it may lead out of the corpus: /etc, ~/.ssh),
        # as in `data build` (ingest skip `symlink`); FIFOs would block the read
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            return None, "symlink"
        if not stat.S_ISREG(st.st_mode):
            return None, "not_a_file"
        if st.st_size > MAX_FILE_BYTES:
            return None, "too_large"
        data = p.read_bytes()
    except OSError:
        return None, "unreadable"
    if not data:
        return None, "empty"
    if b"\x00" in data:
        return None, "binary"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "non_utf8"


def _iter_plain_dir(root: Path, skipped: Counter[str] | None = None) -> Iterator[Document]:
    """Text files under `root`, sorted; each file not taken is counted in `skipped` by reason
    (dot-directories and links to directories once each, as `hidden_dir` / `symlink`). Why counted: a tree of Latin-1 or UTF-16 files
    trained on a fraction of itself and nothing said so."""
    skipped = Counter() if skipped is None else skipped
    for dirpath, dirnames, filenames in os.walk(root):
        skipped["hidden_dir"] += sum(1 for d in dirnames if d.startswith("."))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        skipped["symlink"] += len(links)  # os.walk lists them and never enters them
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                skipped["hidden"] += 1
                continue
            text, reason = _plain_text(p)
            if text is None:
                skipped[reason] += 1
                continue
            data = text.encode("utf-8")
            rel = p.relative_to(root).as_posix()
            doc_id = hashlib.sha256(data).hexdigest()
            lang = EXT_LANGUAGE.get(p.suffix.lower(), "text")
            yield Document(doc_id, text, lang, _hash_split(doc_id + rel))


def corpus_files(path: str | os.PathLike[str]) -> tuple[str, list[Path]]:
    """Classify a corpus path: ("jsonl", files) or ("plain", [root])."""
    p = Path(path)
    if not p.exists():
        raise HillclimbError(f"corpus path {p} does not exist")
    if p.is_file():
        if p.name.endswith((".jsonl", ".jsonl.gz")):
            return "jsonl", [p]
        raise HillclimbError(f"corpus file {p} is not .jsonl or .jsonl.gz")
    docs_dir = p / "documents"
    if docs_dir.is_dir():
        files = sorted(f for f in docs_dir.iterdir() if f.name.endswith((".jsonl", ".jsonl.gz")))
        if not files:
            raise HillclimbError(f"{docs_dir} holds no .jsonl[.gz] files")
        return "jsonl", files
    return "plain", [p]


def iter_documents(
    path: str | os.PathLike[str], split: str | None = None, skipped: Counter[str] | None = None
) -> Iterator[Document]:
    """Documents of a corpus (any of the three accepted layouts), optionally one split only;
    a plain directory's files not taken are counted by reason into `skipped`."""
    kind, files = corpus_files(path)
    for f in files:
        docs = _iter_jsonl(f) if kind == "jsonl" else _iter_plain_dir(f, skipped)
        for d in docs:
            if split is None or d.split == split:
                yield d


@dataclass
class Selection:
    """Which training documents were used: enough to reproduce and to verify the choice."""

    corpus: str
    split: str
    seed: int
    max_bytes: int | None
    documents: int = 0
    bytes: int = 0
    fingerprint: str = ""  # sha256 over the sorted ids of the chosen documents
    skipped: dict[str, int] = field(default_factory=dict)  # plain directory: files not taken
    ids: set[str] = field(default_factory=set, repr=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("ids")
        return d


def select_documents(
    path: str | os.PathLike[str],
    split: str = "train",
    max_bytes: int | None = None,
    seed: int = 0,
) -> Selection:
    """Choose the documents of `split` to train on, within `max_bytes` (UTF-8), by seeded hash."""
    if max_bytes is not None and max_bytes <= 0:
        raise ConfigError(f"--max-bytes must be positive, got {max_bytes}")
    keyed: list[tuple[str, str, int]] = []
    skipped: Counter[str] = Counter()
    for d in iter_documents(path, split, skipped):
        key = hashlib.sha256(f"{seed}\0{d.id}".encode("utf-8", "surrogatepass")).hexdigest()
        keyed.append((key, d.id, len(d.text.encode("utf-8"))))
    if not keyed:
        why = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()) if v)
        raise HillclimbError(
            f"corpus {path} has no documents with split == {split!r}"
            + (f" (files skipped: {why}; only UTF-8 text files are read)" if why else "")
        )
    keyed.sort()
    sel = Selection(corpus=str(Path(path).resolve()), split=split, seed=seed, max_bytes=max_bytes)
    sel.skipped = {k: v for k, v in sorted(skipped.items()) if v}
    for _key, doc_id, n in keyed:
        if max_bytes is not None and sel.bytes + n > max_bytes and sel.documents > 0:
            continue  # skip ones that do not fit; smaller later ones may still fit
        if doc_id in sel.ids:
            continue  # the same text twice counts once
        sel.ids.add(doc_id)
        sel.documents += 1
        sel.bytes += n
    ids = "\n".join(sorted(sel.ids)).encode("utf-8", "surrogatepass")
    sel.fingerprint = hashlib.sha256(ids).hexdigest()
    return sel


def iter_selected_texts(sel: Selection) -> Iterator[str]:
    """Stream the texts of a selection (second pass over the corpus, in corpus order)."""
    seen: set[str] = set()
    for d in iter_documents(sel.corpus, sel.split):
        if d.id in sel.ids and d.id not in seen:
            seen.add(d.id)
            yield d.text


@dataclass
class RunCuts:
    """How many over-long runs `training_pieces` cut, in how many texts (for the provenance)."""

    runs: int = 0
    texts: int = 0


def _may_hold_long_run(text: str) -> bool:
    """False when `text` cannot hold a run longer than `TRAIN_RUN_CHARS` (every line and every
    stretch of blank lines a third of it or shorter: a run lies in one line, or is the blank end
    of one, blank lines, and the indentation of the next). Why: `_LONG_RUN` scans at ~4 MB/s,
    this at ~300 MB/s, and almost no text needs the scan."""
    if len(text) <= TRAIN_RUN_CHARS:
        return False
    third = TRAIN_RUN_CHARS // 3
    lines = text.split("\n")
    if max(map(len, lines)) > third:
        return True
    blank = 0
    for line in lines:
        if line and not line.isspace():
            blank = 0
            continue
        blank += len(line) + 1
        if blank > third:
            return True
    return False


def training_pieces(text: str, cuts: RunCuts | None = None) -> Iterator[str]:
    """`text` as the trainer should see it: whole, unless it holds a run of one character class
    longer than `TRAIN_RUN_CHARS`; then the text around each such run, and the run cut into
    pieces of at most `TRAIN_RUN_CHARS` characters (each piece is its own training text, so no
    pre-token can span a cut). Why: the BPE trainer is quadratic in a pre-token's length."""
    if not _may_hold_long_run(text):
        yield text
        return
    pos = 0
    for m in _LONG_RUN.finditer(text):
        if cuts is not None:
            cuts.runs += 1
            cuts.texts += pos == 0
        if m.start() > pos:
            yield text[pos : m.start()]
        for i in range(m.start(), m.end(), TRAIN_RUN_CHARS):
            yield text[i : min(i + TRAIN_RUN_CHARS, m.end())]
        pos = m.end()
    if pos == 0 or pos < len(text):
        yield text[pos:]


def check_vocab_size(vocab_size: int) -> None:
    """Raise ConfigError unless MIN_VOCAB <= vocab_size <= MAX_VOCAB."""
    if vocab_size < MIN_VOCAB:
        raise ConfigError(
            f"vocab size {vocab_size} too small: need >= {MIN_VOCAB} "
            f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens + 1 merge)"
        )
    if vocab_size > MAX_VOCAB:
        raise ConfigError(f"vocab size {vocab_size} too large: at most {MAX_VOCAB}")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    pretokenizer: str = "code",
    min_frequency: int = 2,
    show_progress: bool = False,
    cuts: RunCuts | None = None,
) -> Tokenizer:
    """Train byte-level BPE on `texts`; `vocab_size` is the total size, special tokens included.

    `pretokenizer="code"` is ours (pretok.CODE_PATTERN); `"gpt2"` is GPT-2's regex, the baseline
    the eval compares against. Deterministic: the same texts give the same tokenizer. Over-long
    runs are cut for training (`training_pieces`; counted into `cuts` when given).
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from hillclimb.tokenizer.pretok import build_pretokenizer

    check_vocab_size(vocab_size)
    hf = HFTokenizer(models.BPE(fuse_unk=False, byte_fallback=False))
    hf.pre_tokenizer = build_pretokenizer(pretokenizer)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        min_frequency=min_frequency,
        show_progress=show_progress,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    pieces = (piece for text in texts for piece in training_pieces(text, cuts))
    hf.train_from_iterator(pieces, trainer=trainer)
    hf.add_special_tokens(SPECIAL_TOKENS)
    return Tokenizer(hf)


@dataclass
class TrainConfig:
    """`hillclimb tokenizer train` settings."""

    corpus: str
    vocab_size: int
    max_bytes: int | None = None
    seed: int = 0
    pretokenizer: str = "code"
    min_frequency: int = 2


def train_from_corpus(cfg: TrainConfig, show_progress: bool = False) -> tuple[Tokenizer, dict]:
    """Select documents, train, and return the tokenizer with its provenance record."""
    from hillclimb.tokenizer.pretok import pattern_of

    check_vocab_size(cfg.vocab_size)  # before reading the corpus, which can take minutes
    sel = select_documents(cfg.corpus, "train", cfg.max_bytes, cfg.seed)
    t0 = time.perf_counter()
    cuts = RunCuts()
    tok = train_tokenizer(
        iter_selected_texts(sel),
        cfg.vocab_size,
        pretokenizer=cfg.pretokenizer,
        min_frequency=cfg.min_frequency,
        show_progress=show_progress,
        cuts=cuts,
    )
    seconds = time.perf_counter() - t0
    meta = {
        "format": "hillclimb-tokenizer-train-v1",
        "vocab_size": tok.vocab_size,
        "requested_vocab_size": cfg.vocab_size,
        "pretokenizer": cfg.pretokenizer,
        "pattern_version": pattern_of(cfg.pretokenizer)[0],
        "pattern": pattern_of(cfg.pretokenizer)[1],
        "min_frequency": cfg.min_frequency,
        "selection": sel.to_json(),
        "long_runs_cut": {"runs": cuts.runs, "documents": cuts.texts, "chars": TRAIN_RUN_CHARS},
        "train_seconds": round(seconds, 3),
    }
    return tok, meta


def check_new_out(out: str | os.PathLike[str]) -> Path:
    """`out` as a path a new tokenizer directory may be published at: absent, or an empty
    directory. A symbolic link is refused, dangling or not: publishing renames a directory
    onto the path, which fails on a link (it was a NotADirectoryError traceback, after
    training for a dangling one)."""
    out = Path(out)
    if out.is_symlink():
        raise HillclimbError(f"output {out} is a symbolic link; choose a new directory")
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise HillclimbError(f"output {out} already exists; choose a new directory")
    return out


def save_trained(tok: Tokenizer, meta: dict, out: str | os.PathLike[str]) -> Path:
    """Write tokenizer.json, tokenizer_config.json and the provenance record atomically as a
    directory: `out` appears complete or not at all; an existing non-empty `out` is refused."""
    from hillclimb.io import atomic_dir, write_json_atomic
    from hillclimb.tokenizer.io import save_tokenizer

    out = check_new_out(out)
    if out.exists():
        out.rmdir()  # empty (check_new_out)
    with atomic_dir(out) as tmp:
        save_tokenizer(tok, tmp)
        write_json_atomic(tmp / TRAIN_META, meta)
    return out


def read_train_meta(tokdir: str | os.PathLike[str]) -> dict | None:
    """The provenance record, checked for the fields `tokenizer eval` reads (a hand-edited or
    foreign file is one clear error, not a KeyError deep in the evaluation)."""
    f = Path(tokdir) / TRAIN_META
    if not f.is_file():
        return None
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HillclimbError(f"malformed {f}: {exc}") from exc
    sel = meta.get("selection") if isinstance(meta, dict) else None
    ok = (
        isinstance(sel, dict)
        and isinstance(sel.get("corpus"), str)
        and isinstance(sel.get("split"), str)
        and isinstance(sel.get("seed"), int)
        and (sel.get("max_bytes") is None or isinstance(sel.get("max_bytes"), int))
        and isinstance(sel.get("fingerprint"), str)
    )
    if not ok:
        raise HillclimbError(
            f"malformed {f}: expected an object whose `selection` has corpus, split, seed, "
            "max_bytes and fingerprint"
        )
    return meta
