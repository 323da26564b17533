"""`hillclimb data build`: sources → filters → decontaminate → dedup → documents, rejects, card.

Why this structure (three stages with on-disk state in `DIR/.work/`):

1. **Filter** — the item stream of all sources (deterministic, see sources.py) is cut into chunks
   of `chunk_docs` items. Each chunk is loaded, filtered, redacted, checked against the
   evaluation items (decontam.py: the probe index is built once per build, before this stage, and
   committed as `.work/probes.npz` so a resumed build judges every chunk by the same probes) and
   MinHashed (in-process or in a process pool) and committed atomically as
   `.work/chunks/NNNNNN.npz` (records + signatures).
   This is where nearly all the time goes, so it is where resume pays: a restarted build
   re-enumerates the stream (cheap) and skips every chunk already committed.
2. **Dedup** — global by nature: reads the committed chunks' hashes and signatures (not the
   texts), decides exact and near duplicates and the train/val split, commits `.work/dedup.json`.
3. **Write** — streams the chunks again and writes `documents/`, `rejects/`, optional `shards/`,
   `data_card.json` and `DATA_CARD.md` into `.work/final/`, then moves each into `DIR` and writes
   `DIR/build.json` last: its presence is the completion marker. The stage is re-run from
   scratch on resume; its outputs are a pure function of stages 1–2, so the result is
   byte-identical to an uninterrupted build.

An existing complete `DIR` is refused unless `--force` (which builds beside it and swaps at the
end, so the old corpus stays intact until the new one is complete); an incomplete one is refused
unless `--resume`, and resume refuses a different configuration (fingerprint check).

Local execution is this simple loop; `datatrove_steps.py` adapts the same filters to datatrove
executors (Slurm, Ray) when one machine is not enough.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hillclimb.data.binoculars import BinocularsFilter, TextScorer
from hillclimb.data.card import CARD_FORMAT, empty_corpus_message, render_markdown
from hillclimb.data.config import DataConfig
from hillclimb.data.decontam import FILTER_NAME as DECONTAM
from hillclimb.data.decontam import REASON as CONTAMINATED
from hillclimb.data.decontam import Decontaminator, ProbeIndex, build_index
from hillclimb.data.dedup import MinHasher, exact_hash, find_duplicates
from hillclimb.data.document import Document
from hillclimb.data.filters import Filter, build_filters, run_filters
from hillclimb.data.jsonl import JsonlGzWriter, dumps, gzip_bytes
from hillclimb.data.license import permissiveness
from hillclimb.data.secrets import Redactor
from hillclimb.data.sources import (
    BUILD_FORMAT,
    HELDOUT_SKIP,
    PROBLEMS_SKIP,
    WORK_FORMAT,
    Item,
    LoadError,
    all_items_for,
    load_item,
)
from hillclimb.errors import HillclimbError
from hillclimb.io import atomic_path, exclusive_dir, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from hillclimb.tokenizer.io import Tokenizer

WORK = ".work"
MARKER = "build.json"
# probes.npz: the decontamination index the build used, kept so later stages can hold their own
# inputs to it (the climb's SFT-data stage checks flywheel records: climb/flywheel.py)
OUTPUTS = ("documents", "rejects", "shards", "data_card.json", "DATA_CARD.md", "probes.npz")
REJECT_FILTERS = (
    "ingest", "license", "blocklist", "ai_content", "quality", "ai_detector", DECONTAM, "dedup",
)  # fmt: skip
PROBES = "probes.npz"  # the decontamination probe index, committed once per build
FAULT_ENV = "HILLCLIMB_DATA_FAULT"  # test hook: "kill-chunk:N", "raise-chunk:N", "kill-dedup", ...


# ---------------------------------------------------------------------------------------------
# Stage 1: per-chunk processing (runs in workers)
# ---------------------------------------------------------------------------------------------


class ChunkProcessor:
    """Loads and filters one chunk of items; returns (records blob, signatures)."""

    def __init__(
        self,
        cfg: DataConfig,
        probes: ProbeIndex | None = None,
        ai_scorer: TextScorer | None = None,
    ):
        self.cfg = cfg
        gen_sources = {s.name for s in cfg.sources if s.kind == "generators"}
        self.decon = (
            Decontaminator(probes, cfg.decontaminate, gen_sources) if probes is not None else None
        )
        self.filters: list[Filter] = build_filters(cfg)
        self.hasher = MinHasher(cfg.dedup)
        self.redactor = Redactor(cfg.secrets) if cfg.secrets.enabled else None
        self.detector = (
            BinocularsFilter(cfg.ai_content, ai_scorer)
            if ai_scorer is not None and BinocularsFilter.enabled(cfg.ai_content)
            else None
        )

    def _reject(
        self,
        o: int,
        filt: str,
        reason: str,
        doc: Document | None,
        item: Item,
        detail: str | None = None,
    ) -> dict:
        if doc is None:
            rec: dict[str, Any] = {"source": item.source, "path": item.path, "url": item.url}
            if item.detail or detail:
                rec["detail"] = item.detail or detail
        else:
            # redact, then cut: cut first, a secret straddling the cut (a key's END line gone)
            # no longer matched its pattern and its first part stayed in the reject
            text = doc.text
            if self.redactor is not None:
                text = self.redactor.redact(text)[0]
            text = text[: self.cfg.rejects_text_chars]
            rec = doc.record()
            rec["text"] = text
            rec.pop("split", None)
        rec["filter"], rec["reason"] = filt, reason
        return {"o": o, "reject": rec}

    def process(self, start: int, items: list[Item]) -> tuple[bytes, np.ndarray, dict]:
        stats: dict[str, Counter[str]] = defaultdict(Counter)
        for f in self.filters:
            f.stats = Counter()
        out: list[dict] = []
        survivors: list[tuple[int, Document, Item]] = []
        for k, item in enumerate(items):
            o = start + k
            try:
                doc = load_item(item)
            except LoadError as exc:
                out.append(self._reject(o, "ingest", exc.reason, None, item, exc.detail))
                continue
            stats["ingest"]["documents_read"] += 1
            stats["ingest"]["bytes_read"] += doc.n_bytes
            try:
                dropped = run_filters(self.filters, doc)
            except Exception as exc:  # one bad document never kills a build
                out.append(
                    self._reject(o, "ingest", f"filter_error:{type(exc).__name__}", doc, item)
                )
                continue
            if dropped is not None:
                out.append(self._reject(o, dropped[0], dropped[1], doc, item))
            else:
                survivors.append((o, doc, item))
        if self.detector is not None and survivors:
            self.detector.stats = Counter()
            name = self.detector.name
            # a source's `skip_filters = ["ai_detector"]` holds here too (not only in run_filters)
            judged = [d for _, d, _ in survivors if name not in d.skip_filters]
            verdicts = iter(self.detector.apply_batch(judged) if judged else [])
            kept = []
            for o, d, it in survivors:
                if name in d.skip_filters:
                    kept.append((o, d, it))
                    continue
                r = next(verdicts)
                if r is None:
                    d.kept_by.append(self.detector.name)
                    kept.append((o, d, it))
                else:
                    out.append(self._reject(o, self.detector.name, r, d, it))
            survivors = kept
            stats[self.detector.name].update(self.detector.stats)
        overlaps: dict[int, dict[str, Any]] = {}
        if self.decon is not None and survivors:
            kept = []
            for o, d, it in survivors:
                verdict, m = self.decon.check(d.text, d.source, d.meta.get("problem_id"))
                stats[DECONTAM]["documents_checked"] += 1
                if verdict == "drop":
                    assert m is not None
                    rej = self._reject(o, DECONTAM, CONTAMINATED, d, it)
                    rej["reject"].update(
                        probe=m.probe, probe_origin=m.origin, match=m.ngram, bytes=d.n_bytes
                    )
                    out.append(rej)
                    continue
                d.kept_by.append(DECONTAM)
                if verdict == "overlap":
                    assert m is not None
                    overlaps[o] = {"probe": m.probe, "probe_origin": m.origin, "match": m.ngram}
                kept.append((o, d, it))
            survivors = kept
        sigs = np.zeros((len(survivors), self.cfg.dedup.num_perm), dtype=np.uint32)
        for j, (o, doc, _) in enumerate(survivors):
            if self.cfg.dedup.near:
                sigs[j] = self.hasher.signature(doc.text)
            rec: dict[str, Any] = {
                "o": o,
                "doc": doc.record(),
                "exact": exact_hash(doc.text),
                "rank": permissiveness(doc.license, self.cfg.license.allow),
                "sig": j,
            }
            if o in overlaps:
                rec["overlap"] = overlaps[o]
            out.append(rec)
        out.sort(key=lambda r: r["o"])
        for f in self.filters:
            if f.stats:
                stats[f.name].update(f.stats)
        blob = gzip_bytes(
            ("\n".join(dumps(r) for r in out) + "\n").encode("utf-8", "surrogatepass"), 1
        )
        return blob, sigs, {k: dict(v) for k, v in stats.items()}


_WORKER: ChunkProcessor | None = None


def _worker_init(cfg: DataConfig, probes: ProbeIndex | None, ai_scorer: TextScorer | None) -> None:
    global _WORKER
    _WORKER = ChunkProcessor(cfg, probes, ai_scorer)


def _worker_run(start: int, items: list[Item]) -> tuple[bytes, np.ndarray, dict]:
    assert _WORKER is not None
    return _WORKER.process(start, items)


def items_key(items: list[Item]) -> str:
    """What a work chunk was made from: each item's provenance, and for a file its size and
    modification time (for inline text, its hash). A resume reuses a committed chunk only when
    the stream enumerates the same items again: a file added or removed before it shifts every
    later chunk, and an edited file would keep its old text."""
    h = hashlib.sha256()
    for it in items:
        stamp: Any = None
        if it.file is not None:
            try:
                st = os.lstat(it.file)
                stamp = [st.st_size, st.st_mtime_ns]
            except OSError:
                stamp = "missing"
        elif it.text is not None:
            stamp = hashlib.sha256(it.text.encode("utf-8", "surrogatepass")).hexdigest()
        row = [
            it.source, it.path, it.file, it.zip_file, it.url, it.language, it.license, it.skip,
            it.detail, sorted(it.meta), list(it.skip_filters), it.max_bytes, stamp,
        ]  # fmt: skip
        h.update(json.dumps(row, default=str).encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def _chunk_key(path: Path) -> str | None:
    """The `items_key` a committed chunk was saved with (None: unreadable or an older format)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(bytes(z["head"])).get("key")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _save_chunk(
    path: Path, blob: bytes, sigs: np.ndarray, stats: dict, n_items: int, key: str
) -> None:
    header = json.dumps({"items": n_items, "stats": stats, "key": key}, sort_keys=True).encode()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            rec=np.frombuffer(blob, dtype=np.uint8),
            sig=sigs,
            head=np.frombuffer(header, dtype=np.uint8),
        )


@dataclass
class Chunk:
    index: int
    items: int
    stats: dict
    records: list[dict]
    sigs: np.ndarray


def _load_chunk(path: Path) -> Chunk:
    try:
        with np.load(path, allow_pickle=False) as z:
            blob, sigs, head = bytes(z["rec"]), z["sig"], json.loads(bytes(z["head"]))
    except (OSError, ValueError, KeyError) as exc:
        raise HillclimbError(f"corrupt work chunk {path}: {exc}; rerun with --force") from exc
    # split on "\n" only: JSON keeps U+2028, U+2029 and U+0085 raw inside a string, and
    # `str.splitlines` would cut a document holding one in two (a JSONDecodeError mid-build)
    records = [
        json.loads(ln)
        for ln in gzip.decompress(blob).decode("utf-8", "surrogatepass").split("\n")
        if ln
    ]
    return Chunk(int(path.stem), head["items"], head["stats"], records, sigs)


def _chunks_of(stream: Iterator[Item], size: int) -> Iterator[tuple[int, list[Item]]]:
    buf: list[Item] = []
    k = 0
    for it in stream:
        buf.append(it)
        if len(buf) >= size:
            yield k, buf
            k, buf = k + 1, []
    if buf:
        yield k, buf


def all_items(cfg: DataConfig) -> Iterator[Item]:
    return all_items_for(cfg)


class _Fault:
    """Deterministic crash injection for resume tests (env HILLCLIMB_DATA_FAULT)."""

    def __init__(self, spec: str | None):
        self.kind, _, n = (spec or "").partition(":")
        self.n = int(n) if n else 0
        self.count: Counter[str] = Counter()

    def hit(self, point: str) -> None:
        if not self.kind:
            return
        action, _, where = self.kind.partition("-")
        if where != point:
            return
        self.count[point] += 1
        if self.count[point] > self.n:
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected fault at {point} #{self.count[point]}")


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} items · {task.fields[kept]:,} kept"),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=False,
    )


def run_filter_stage(
    cfg: DataConfig,
    work: Path,
    fault: _Fault,
    progress: bool,
    probes: ProbeIndex | None = None,
    ai_scorer: TextScorer | None = None,
) -> int:
    """Stage 1. Returns the number of chunks (committed now or before)."""
    chunk_dir = work / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    done = {int(p.stem) for p in chunk_dir.glob("*.npz")}
    n_chunks = 0
    with _progress(progress) as bar:
        task = bar.add_task("filtering", total=None, kept=0)

        def commit(k: int, key: str, n_items: int, res: tuple[bytes, np.ndarray, dict]) -> None:
            # a chunk (re)written now makes any committed dedup decision stale
            (work / "dedup.json").unlink(missing_ok=True)
            _save_chunk(chunk_dir / f"{k:06d}.npz", res[0], res[1], res[2], n_items, key)
            bar.update(task, advance=n_items, kept=bar.tasks[0].fields["kept"] + len(res[1]))
            fault.hit("chunk")

        if cfg.workers <= 1:
            proc: ChunkProcessor | None = None
            for k, items in _chunks_of(all_items(cfg), cfg.chunk_docs):
                n_chunks = k + 1
                key = items_key(items)
                if k in done and _chunk_key(chunk_dir / f"{k:06d}.npz") == key:
                    bar.update(task, advance=len(items))
                    continue
                proc = proc or ChunkProcessor(cfg, probes, ai_scorer)
                commit(k, key, len(items), proc.process(k * cfg.chunk_docs, items))
        else:
            with ProcessPoolExecutor(
                cfg.workers, initializer=_worker_init, initargs=(cfg, probes, ai_scorer)
            ) as ex:
                pending: dict[Future, tuple[int, str, int]] = {}
                for k, items in _chunks_of(all_items(cfg), cfg.chunk_docs):
                    n_chunks = k + 1
                    key = items_key(items)
                    if k in done and _chunk_key(chunk_dir / f"{k:06d}.npz") == key:
                        bar.update(task, advance=len(items))
                        continue
                    fut = ex.submit(_worker_run, k * cfg.chunk_docs, items)
                    pending[fut] = (k, key, len(items))
                    while len(pending) >= 2 * cfg.workers:
                        fin, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in sorted(fin, key=lambda f: pending[f][0]):
                            kk, kkey, nn = pending.pop(fut)
                            commit(kk, kkey, nn, fut.result())
                for fut in sorted(pending, key=lambda f: pending[f][0]):
                    kk, kkey, nn = pending[fut]
                    commit(kk, kkey, nn, fut.result())
    # chunks beyond the stream: committed before files were removed from the sources
    for p in chunk_dir.glob("*.npz"):
        if int(p.stem) >= n_chunks:
            p.unlink()
            (work / "dedup.json").unlink(missing_ok=True)
    missing = [k for k in range(n_chunks) if not (chunk_dir / f"{k:06d}.npz").is_file()]
    if missing:
        raise HillclimbError(f"work chunks missing after the filter stage: {missing[:5]}")
    return n_chunks


# ---------------------------------------------------------------------------------------------
# Stage 2: dedup + split
# ---------------------------------------------------------------------------------------------


def _split_rank(seed: int, doc_id: str) -> float:
    h = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def split_val(cfg: DataConfig, kept: list[tuple[str, int]]) -> list[int]:
    """Stream ordinals of the val documents among `kept` (doc id, ordinal), sorted.

    A document is val when its seeded hash rank is under `val_fraction`. With two or more
    documents both sides are guaranteed: none under the fraction → the lowest-ranked one is val;
    all under it (a tiny corpus: 2 documents both went to val and pre-training then had no train
    split) → the highest-ranked one goes back to train. Corpora that already had both sides
    split exactly as before. A single document stays train; the card warns there is no val.
    """
    if cfg.val_fraction <= 0 or len(kept) < 2:
        return []
    scored = sorted((_split_rank(cfg.seed, d), o) for d, o in kept)
    val = [o for u, o in scored if u < cfg.val_fraction] or [scored[0][1]]
    if len(val) == len(scored):
        val = val[:-1]
    return sorted(val)


def split_warnings(cfg: DataConfig, by_split: dict[str, dict[str, int]]) -> list[str]:
    """Plain-language problems with the split that the next stages would otherwise report as
    a bare "no documents with split == ..." error (card `warnings`, printed by the CLI)."""
    n_train = by_split.get("train", {}).get("documents", 0)
    n_val = by_split.get("val", {}).get("documents", 0)
    if n_train + n_val == 0:
        return ["no documents were kept: there is nothing to train on (see the filter reasons)"]
    if n_val == 0:
        why, fix = (
            ("val_fraction = 0", "set val_fraction > 0")
            if cfg.val_fraction <= 0
            else (f"only {n_train} document kept; a val split needs a second one", "add documents")
        )
        return [
            f"no val split ({why}): training measures validation loss on the val split, "
            f"so {fix} before training on this corpus"
        ]
    return []


def run_dedup_stage(cfg: DataConfig, work: Path, n_chunks: int) -> dict:
    path = work / "dedup.json"
    if path.is_file():
        return json.loads(path.read_text())
    ords: list[int] = []
    ids: list[str] = []
    exact: list[str] = []
    ranks: list[int] = []
    sig_parts: list[np.ndarray] = []
    for k in range(n_chunks):
        ch = _load_chunk(work / "chunks" / f"{k:06d}.npz")
        for r in ch.records:
            if "doc" in r:
                ords.append(r["o"])
                ids.append(r["doc"]["id"])
                exact.append(r["exact"])
                ranks.append(r["rank"])
        sig_parts.append(ch.sigs)
    sigs = np.concatenate(sig_parts) if sig_parts else np.zeros((0, cfg.dedup.num_perm), np.uint32)
    res = find_duplicates(exact, sigs if cfg.dedup.near else None, ranks, cfg.dedup)
    dropped = {
        str(ords[i]): [reason, ords[keep], ids[keep]] for i, (reason, keep) in res.dropped.items()
    }
    kept_ids = [(ids[i], ords[i]) for i in range(len(ords)) if i not in res.dropped]
    state = {
        "dropped": dropped,
        "val": split_val(cfg, kept_ids),
        "bands": res.bands,
        "rows": res.rows,
        "candidate_pairs": res.candidate_pairs,
    }
    write_json_atomic(path, state, indent=None)
    return state


# ---------------------------------------------------------------------------------------------
# Stage 3: write outputs
# ---------------------------------------------------------------------------------------------


def _group(counter: dict[str, dict[str, int]], key: str, n_bytes: int) -> None:
    row = counter.setdefault(key, {"documents": 0, "bytes": 0})
    row["documents"] += 1
    row["bytes"] += n_bytes


class _Examples:
    """The first match of each (source, top-level path part: a directory, a problem family),
    then the next ones, in stream order, `n` in all: varied, deterministic and bounded."""

    def __init__(self, n: int):
        self.n = n
        self.seen = 0
        self.firsts: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.head: list[tuple[int, dict[str, Any]]] = []

    def add(self, example: dict[str, Any]) -> None:
        key = (example["source"], (example.get("path") or "").split("/")[0])
        if key not in self.firsts and len(self.firsts) < self.n:
            self.firsts[key] = (self.seen, example)
        if len(self.head) < self.n:
            self.head.append((self.seen, example))
        self.seen += 1

    def pick(self) -> list[dict[str, Any]]:
        first = sorted(self.firsts.values(), key=lambda t: t[0])
        taken = {i for i, _ in first}
        rest = [t for t in self.head if t[0] not in taken]
        return [e for _, e in (first + rest)[: self.n]]


class _DecontamReport:
    """Collects the decontamination part of the card while the write stage streams records."""

    def __init__(self, n_examples: int):
        self.removed: dict[str, dict[str, int]] = {}
        self.excluded: Counter[str] = Counter()
        self.heldout: Counter[str] = Counter()  # files under `.hillclimb-heldout` directories
        self.matches = _Examples(n_examples)
        self.overlaps: Counter[str] = Counter()
        self.overlap_matches = _Examples(n_examples)

    @staticmethod
    def _example(rec: dict[str, Any], hit: dict[str, Any]) -> dict[str, Any]:
        return {
            "probe": hit["probe"],
            "probe_origin": hit["probe_origin"],
            "source": rec["source"],
            "path": rec.get("path"),
            "match": hit["match"],
        }

    def add_reject(self, rec: dict[str, Any]) -> None:
        if rec["filter"] == "ingest" and rec["reason"] == PROBLEMS_SKIP:
            self.excluded[rec["source"]] += 1
        elif rec["filter"] == "ingest" and rec["reason"] == HELDOUT_SKIP:
            self.heldout[rec["source"]] += 1
        elif rec["filter"] == DECONTAM:
            row = self.removed.setdefault(rec["source"], {"documents": 0, "bytes": 0})
            row["documents"] += 1
            row["bytes"] += rec.get("bytes", 0)
            self.matches.add(self._example(rec, rec))

    def add_overlap(self, rec: dict[str, Any], hit: dict[str, Any]) -> None:
        self.overlaps[rec["source"]] += 1
        self.overlap_matches.add(self._example(rec, hit))

    def card(self, cfg: DataConfig, probe_stats: dict[str, Any] | None) -> dict[str, Any]:
        d = cfg.decontaminate
        return {
            "params": {
                "ngram": d.ngram,
                "min_tokens": d.min_tokens,
                "problems_seeds": d.problems_seeds,
                "problems_n_per_tier": d.problems_n_per_tier,
                "problems_families": d.problems_families or "all",
                "suites": d.suites,
                "suite_items": d.suite_items,
                "files": len(d.files),
                "generator_overlaps": d.generator_overlaps,
            },
            "probes": probe_stats,
            "removed_by_source": {k: self.removed[k] for k in sorted(self.removed)},
            "examples": self.matches.pick(),
            "generator_overlaps_kept": dict(sorted(self.overlaps.items())),
            "generator_overlap_examples": self.overlap_matches.pick(),
            "excluded_problem_files": dict(sorted(self.excluded.items())),
            "excluded_heldout_files": dict(sorted(self.heldout.items())),
        }


def run_write_stage(
    cfg: DataConfig,
    work: Path,
    n_chunks: int,
    dedup: dict,
    tokenizer: str | os.PathLike[str] | Tokenizer | None,
    recipe: str | None,
    probe_stats: dict[str, Any] | None = None,
) -> Path:
    final = work / "final"
    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    docs = {s: JsonlGzWriter(final / "documents", s, cfg.docs_per_file) for s in ("train", "val")}
    (final / "documents").mkdir()
    (final / "rejects").mkdir()
    rejects = {f: JsonlGzWriter(final / "rejects", f, cfg.docs_per_file) for f in REJECT_FILTERS}
    dropped = dedup["dropped"]
    val = set(dedup["val"])
    # every configured source gets a row, so one whose documents were all removed shows 0
    sources = {s.name: {"documents": 0, "bytes": 0} for s in cfg.sources}
    by: dict[str, dict[str, dict[str, int]]] = {
        "split": {},
        "source": sources,
        "language": {},
        "license": {},
    }
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    decon = _DecontamReport(cfg.decontaminate.examples)
    items = 0
    for k in range(n_chunks):
        ch = _load_chunk(work / "chunks" / f"{k:06d}.npz")
        items += ch.items
        for name, st in ch.stats.items():
            stats[name].update(st)
        for r in ch.records:
            if "reject" in r:
                rec = r["reject"]
                rejects[rec["filter"]].write(rec)
                reasons[rec["filter"]][rec["reason"]] += 1
                decon.add_reject(rec)
                continue
            rec = r["doc"]
            if "overlap" in r:
                decon.add_overlap(rec, r["overlap"])
            d = dropped.get(str(r["o"]))
            if d is not None:
                reason, _, keep_id = d
                rec = dict(rec)
                rec.pop("split", None)
                rec["text"] = rec["text"][: cfg.rejects_text_chars]
                rec.update(filter="dedup", reason=reason, duplicate_of=keep_id)
                rejects["dedup"].write(rec)
                reasons["dedup"][reason] += 1
                continue
            if cfg.dedup.exact or cfg.dedup.near:
                rec["kept_by"] = [*rec["kept_by"], "dedup"]
            rec["split"] = "val" if r["o"] in val else "train"
            docs[rec["split"]].write(rec)
            n_bytes = len(rec["text"].encode("utf-8", "surrogatepass"))
            for key in ("split", "source", "language", "license"):
                _group(by[key], str(rec[key]), n_bytes)
    for w in docs.values():
        w.close()
    for w in rejects.values():
        w.close()

    filters: list[dict[str, Any]] = []
    names = ["ingest", "license", "blocklist", "ai_content", "quality", "secrets"]
    names += ["ai_detector"] if cfg.ai_content.observer and cfg.ai_content.performer else []
    names += [DECONTAM]
    enabled = {
        "ingest": True,
        "license": cfg.license.enabled,
        "blocklist": cfg.blocklist.enabled,
        "ai_content": cfg.ai_content.enabled,
        "quality": cfg.quality.enabled,
        "secrets": cfg.secrets.enabled,
        "ai_detector": True,
        DECONTAM: cfg.decontaminate.enabled,
    }
    for name in names:
        entry: dict[str, Any] = {
            "name": name,
            "enabled": enabled[name],
            "dropped": sum(reasons[name].values()),
            "reasons": dict(sorted(reasons[name].items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        if stats.get(name):
            entry["stats"] = dict(sorted(stats[name].items()))
        if name == DECONTAM:
            entry.update(decon.card(cfg, probe_stats))
        filters.append(entry)
    d = cfg.dedup
    filters.append(
        {
            "name": "dedup",
            "enabled": d.exact or d.near,
            "dropped": sum(reasons["dedup"].values()),
            "reasons": dict(sorted(reasons["dedup"].items())),
            "params": {
                "exact": d.exact,
                "near": d.near,
                "shingle_size": d.shingle_size,
                "num_perm": d.num_perm,
                "threshold": d.threshold,
                "bands": dedup["bands"],
                "rows": dedup["rows"],
                "strip_comments": d.strip_comments,
                "candidate_pairs": dedup["candidate_pairs"],
            },
        }
    )
    totals = {
        "documents": sum(r["documents"] for r in by["split"].values()),
        "bytes": sum(r["bytes"] for r in by["split"].values()),
        "tokens": None,
    }
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "recipe": recipe,
        "fingerprint": cfg.fingerprint(),
        "totals": totals,
        "by_split": {k: by["split"][k] for k in sorted(by["split"])},
        "by_source": {k: by["source"][k] for k in sorted(by["source"])},
        "by_language": {k: by["language"][k] for k in sorted(by["language"])},
        "by_license": {k: by["license"][k] for k in sorted(by["license"])},
        "ingest": {"items": items, "skipped": dict(sorted(reasons["ingest"].items()))},
        "filters": filters,
        "sources": [{"name": s.name, "kind": s.kind, "path": s.path or None} for s in cfg.sources],
        "files": {
            "documents": docs["train"].files + docs["val"].files,
            "rejects": sorted(f for w in rejects.values() for f in w.files),
        },
        "tokenizer": None,
    }
    warnings = split_warnings(cfg, by["split"])
    if warnings:  # only when there is one: cards of healthy builds stay byte-identical
        card["warnings"] = warnings
    if tokenizer is not None:
        from hillclimb.data.tokenize import tokenize_corpus

        tok = tokenize_corpus(final, tokenizer, final / "shards")
        apply_tokens(card, tok)
    write_json_atomic(final / "data_card.json", card)
    write_text_atomic(final / "DATA_CARD.md", render_markdown(card))
    return final


def apply_tokens(card: dict[str, Any], tok: dict[str, Any]) -> None:
    """Fill the card's token fields from `tokenize_corpus`'s result."""
    from hillclimb.data.shards import dtype_for_vocab

    info = dict(tok["tokenizer"])
    info["dtype"] = dtype_for_vocab(info["vocab_size"]).name
    card["tokenizer"] = info
    card["totals"]["tokens"] = sum(s["tokens"] for s in tok["splits"].values())
    for split, s in tok["splits"].items():
        if split in card["by_split"]:
            card["by_split"][split]["tokens"] = s["tokens"]
    for key in ("source", "language", "license"):
        for name, row in card[f"by_{key}"].items():
            row["tokens"] = tok["tokens_by"][key].get(name, 0)


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------


def _install(final: Path, out: Path, fault: _Fault) -> None:
    for name in OUTPUTS:
        src = final / name
        dst = out / name
        if not src.exists():
            if dst.exists():  # left by an earlier partial install of this same build
                shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
            continue
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.replace(src, dst)
        fault.hit("install")


def _built_with(out: Path) -> str | None:
    """The config fingerprint of the (complete or incomplete) build in `out`; None when there
    is none or it cannot be read."""
    state = dir_state(out)
    marker = out / MARKER if state == "complete" else out / WORK / "state.json"
    if state not in ("complete", "incomplete"):
        return None
    try:
        fp = json.loads(marker.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return fp if isinstance(fp, str) else None


def _refuse_empty_swap(card: dict[str, Any], out: Path, staging: Path) -> None:
    """Raise instead of replacing the build in `out` with a `--force` rebuild that kept no
    document. Why: a rebuild whose sources were all missing (a mistyped path)
    replaced a good 17-document corpus with an empty one and only then reported the failure."""
    if card.get("totals", {}).get("documents"):
        return
    raise HillclimbError(
        f"{empty_corpus_message(card)}; {out} is left as it was (the empty rebuild is in "
        f"{staging}: its DATA_CARD.md and rejects/ say what each source lost)"
    )


def dir_state(out: Path) -> str:
    """'absent' | 'empty' | 'complete' | 'incomplete' | 'foreign'."""
    if not out.exists():
        return "absent"
    if not out.is_dir():
        return "foreign"
    if (out / MARKER).is_file():
        return "complete"
    if (out / WORK).is_dir():
        return "incomplete"
    return "empty" if not any(out.iterdir()) else "foreign"


def build(
    cfg: DataConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    force: bool = False,
    tokenizer: str | os.PathLike[str] | Tokenizer | None = None,
    recipe: str | None = None,
    progress: bool = True,
    fault: str | None = None,
    ai_scorer: TextScorer | None = None,
) -> dict[str, Any]:
    """Run (or continue) a data build into `out`; returns the data card.

    `ai_scorer` scores texts for the model-based AI-content detector; it is required when
    `cfg.ai_content` names an observer and a performer (`data.cli.checkpoint_scorer` builds it).
    A second build into the same `out` while this one runs is refused (`io.exclusive_dir`)."""
    with exclusive_dir(out):
        return _build(cfg, out, resume, force, tokenizer, recipe, progress, fault, ai_scorer)


def _build(
    cfg: DataConfig,
    out: str | os.PathLike[str],
    resume: bool,
    force: bool,
    tokenizer: str | os.PathLike[str] | Tokenizer | None,
    recipe: str | None,
    progress: bool,
    fault: str | None,
    ai_scorer: TextScorer | None,
) -> dict[str, Any]:
    cfg.validate()
    if BinocularsFilter.enabled(cfg.ai_content) and ai_scorer is None:
        raise HillclimbError(
            "ai_content.observer and .performer are set but no scorer was given: pass "
            "ai_scorer=hillclimb.data.cli.checkpoint_scorer(cfg.ai_content)"
        )
    out = Path(out)
    fault_ = _Fault(fault if fault is not None else os.environ.get(FAULT_ENV))
    state = dir_state(out)
    if state == "foreign":
        raise HillclimbError(
            f"{out} exists and is not a hillclimb data build; choose an empty or new directory"
        )
    if state == "complete":
        if not force:
            if resume:
                try:
                    prev_fp = json.loads((out / MARKER).read_text()).get("fingerprint")
                except (OSError, ValueError, AttributeError):
                    prev_fp = None
                if prev_fp is not None and prev_fp != cfg.fingerprint():
                    # a no-op "resume" would hand back a corpus built from other settings
                    raise HillclimbError(
                        f"{out} holds a complete data build with a different configuration; "
                        "pass --force to rebuild it (the old one is replaced only when the new "
                        "one is complete) or choose a new --out"
                    )
                card = json.loads((out / "data_card.json").read_text())
                if tokenizer is not None and not _has_shards_of(out, card, tokenizer):
                    # asked for shards (`--tokenizer`): a no-op resume left none, or another
                    # tokenizer's, and still reported success
                    return retokenize(out, tokenizer)
                return card
            raise HillclimbError(
                f"{out} already holds a complete data build; pass --force to rebuild it "
                "(the old one is replaced only when the new one is complete)"
            )
        staging = out.parent / f".{out.name}.rebuild"
        if dir_state(staging) == "foreign" or _built_with(staging) not in (None, cfg.fingerprint()):
            # an interrupted --force of other settings: resuming it is refused ("different
            # configuration; pass --force"), which the user had passed, on every later --force
            shutil.rmtree(staging)
        card = build(
            cfg, staging, resume=True, tokenizer=tokenizer, recipe=recipe,
            progress=progress, fault=fault, ai_scorer=ai_scorer,
        )  # fmt: skip
        _refuse_empty_swap(card, out, staging)
        old = out.parent / f".{out.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
        return card
    work = out / WORK
    fp = cfg.fingerprint()
    tok_key = None
    if tokenizer is not None and isinstance(tokenizer, (str, os.PathLike)):
        tok_key = str(Path(tokenizer).resolve())
    if state == "incomplete":
        try:
            prev = json.loads((work / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            prev = {}
        if not (resume or force):
            raise HillclimbError(
                f"{out} holds an incomplete data build; pass --resume to continue it "
                "or --force to start over"
            )
        if force or prev.get("fingerprint") != fp:
            if not force:
                raise HillclimbError(
                    f"{out} holds an incomplete build with a different configuration; "
                    "pass --force to discard it"
                )
            shutil.rmtree(out)
    # The decontamination probes: built (and eval files read, so a bad one fails before anything
    # is written) unless an earlier run of this build committed them; then reused as they were.
    probes: ProbeIndex | None = None
    if cfg.decontaminate.enabled and not (work / PROBES).is_file():
        probes = build_index(cfg.decontaminate, cfg.workers)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    if not (work / "state.json").is_file():
        write_json_atomic(
            work / "state.json",
            {"format": WORK_FORMAT, "fingerprint": fp, "config": cfg.to_dict()},
        )
    if cfg.decontaminate.enabled:
        if probes is None:
            probes = ProbeIndex.load(work / PROBES)
        else:
            probes.save(work / PROBES)
            fault_.hit("probes")
    n_chunks = run_filter_stage(cfg, work, fault_, progress, probes, ai_scorer)
    dedup = run_dedup_stage(cfg, work, n_chunks)
    fault_.hit("dedup")
    final = run_write_stage(
        cfg, work, n_chunks, dedup, tokenizer, recipe, probes.stats if probes else None
    )
    card = json.loads((final / "data_card.json").read_text())
    if probes is not None:
        shutil.copyfile(work / PROBES, final / "probes.npz")
    _install(final, out, fault_)
    write_json_atomic(
        out / MARKER,
        {
            "format": BUILD_FORMAT,
            "fingerprint": fp,
            "recipe": recipe,
            "tokenizer": tok_key,
            "config": cfg.to_dict(),
        },
    )
    shutil.rmtree(work, ignore_errors=True)
    return card


def _has_shards_of(
    out: Path, card: dict[str, Any], tokenizer: str | os.PathLike[str] | Tokenizer
) -> bool:
    """Whether `out` holds shards written with `tokenizer` (by the hash the card records)."""
    from hillclimb.data.tokenize import tokenizer_sha256

    info = card.get("tokenizer") or {}
    if not (out / "shards" / "meta.json").is_file() or not info.get("sha256"):
        return False
    try:
        return bool(info["sha256"] == tokenizer_sha256(tokenizer))
    except OSError:  # no such tokenizer file: retokenize says so
        return False


def retokenize(
    data_dir: str | os.PathLike[str], tokenizer: str | os.PathLike[str] | Tokenizer
) -> dict[str, Any]:
    """(Re)write `DIR/shards` for a complete build with another tokenizer; updates the card."""
    from hillclimb.data.tokenize import tokenize_corpus

    d = Path(data_dir)
    if dir_state(d) != "complete":
        raise HillclimbError(f"{d} is not a complete data build (no {MARKER}); run data build")
    if not os.access(d, os.W_OK | os.X_OK):
        # said "Permission denied: '.../.shards.tmp'", a name the user never gave (session 23)
        raise HillclimbError(
            f"{d} is not writable by this user: `data tokenize` rewrites its shards in place; "
            "copy the build and tokenize the copy"
        )
    tmp = d / ".shards.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tok = tokenize_corpus(d, tokenizer, tmp)
    card = json.loads((d / "data_card.json").read_text())
    apply_tokens(card, tok)
    old = d / ".shards.old"
    if old.exists():
        shutil.rmtree(old)
    if (d / "shards").exists():
        os.replace(d / "shards", old)
    os.replace(tmp, d / "shards")
    shutil.rmtree(old, ignore_errors=True)
    write_json_atomic(d / "data_card.json", card)
    write_text_atomic(d / "DATA_CARD.md", render_markdown(card))
    marker = json.loads((d / MARKER).read_text())
    if isinstance(tokenizer, (str, os.PathLike)):
        marker["tokenizer"] = str(Path(tokenizer).resolve())
        write_json_atomic(d / MARKER, marker)
    return card
