"""Adapters that run hillclimb's data steps on datatrove executors (Local, Slurm, Ray).

Why datatrove for scale-out: it is the field's tool for exactly this shape of work — a pipeline
of readers, filters and writers sharded over `world_size` tasks with per-step stats and
exclusion writers for rejects — and it already ships the multi-stage MinHash dedup that a
cluster needs (signatures → buckets → clusters → filter, each stage sharded). We do not
re-implement a scheduler. What we keep ours is the *logic*: the same filter objects as the local
pipeline (`filters.py`), wrapped here as `BaseFilter`s, and a code-appropriate MinHash
normalisation (datatrove's default lowercases and strips punctuation and numbers, which suits
web text and merges distinct code).

datatrove is optional: it is imported here and only here, so the default local build never
needs it. Install with `pip install datatrove` (an optional extra).

Typical cluster use:

    from datatrove.executor import SlurmPipelineExecutor
    from hillclimb.data.datatrove_steps import filter_pipeline, write_probe_index
    write_probe_index(cfg, "/shared/probes.npz")      # once, before the executor
    SlurmPipelineExecutor(pipeline=filter_pipeline(cfg, "s3://bucket/out", "s3://bucket/rej",
                                                   probes="/shared/probes.npz"),
                          tasks=512, ...).run()

followed by datatrove's four MinHash stages configured with `minhash_config(cfg.dedup)`.

Decontamination runs here too, as in the local build (after the filters, before dedup): a
scale-out corpus that skipped it would train on the evaluation items the local build drops, and
nothing downstream would say so. The probe index is built once, before the executor, by
`write_probe_index(cfg, PATH)` on a filesystem every task can read (it is the local build's
`probes.npz`), and each task loads it once; `filter_pipeline` refuses a config with
decontamination on and no index, rather than leave it out silently.
"""

from __future__ import annotations

from typing import Any

try:
    from datatrove.data import Document as DTDocument
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters.base_filter import BaseFilter
except ImportError as exc:  # pragma: no cover - exercised only without datatrove
    from hillclimb.errors import HillclimbError

    raise HillclimbError(
        "datatrove is not installed; `pip install datatrove` to run data steps on its executors"
    ) from exc

from hillclimb.data.config import DataConfig, DedupConfig
from hillclimb.data.document import Document
from hillclimb.data.filters import build_filters
from hillclimb.data.sources import LoadError, all_items_for, load_item
from hillclimb.errors import ConfigError

_PROVENANCE = ("source", "path", "url", "language", "license")


def to_datatrove(doc: Document) -> DTDocument:
    meta = {k: getattr(doc, k) for k in _PROVENANCE}
    meta["kept_by"] = list(doc.kept_by)
    meta.update(doc.meta)
    if doc.skip_filters:
        meta["skip_filters"] = list(doc.skip_filters)
    return DTDocument(text=doc.text, id=doc.id, metadata=meta)


def from_datatrove(d: DTDocument) -> Document:
    m = dict(d.metadata)
    extra = {k: v for k, v in m.items() if k not in (*_PROVENANCE, "kept_by", "skip_filters")}
    return Document(
        text=d.text,
        source=m.get("source", ""),
        path=m.get("path"),
        url=m.get("url"),
        language=m.get("language") or "text",
        license=m.get("license") or "unknown",
        kept_by=list(m.get("kept_by", [])),
        meta=extra,
        skip_filters=tuple(m.get("skip_filters", ())),
    )


class HillclimbReader(PipelineStep):
    """Reads the recipe's sources; task `rank` of `world_size` takes items rank, rank+W, ..."""

    name = "hillclimb sources"
    type = "📖 - READER"

    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for i, item in enumerate(all_items_for(self.cfg)):
            if i % world_size != rank:
                continue
            try:
                doc = load_item(item)
            except LoadError as exc:
                self.stat_update(f"skipped_{exc.reason}")
                continue
            self.stat_update("documents")
            yield to_datatrove(doc)


class HillclimbFilter(BaseFilter):
    """One of our named filters (license, blocklist, ai_content, quality, secrets) as a
    datatrove filter; drop reasons become datatrove `dropped_<reason>` stats and the
    `filter_reason` of excluded documents."""

    type = "🔻 - FILTER"

    def __init__(self, cfg: DataConfig, filter_name: str, exclusion_writer: Any = None):
        super().__init__(exclusion_writer=exclusion_writer)
        matches = [f for f in build_filters(cfg) if f.name == filter_name]
        if not matches:
            raise ValueError(f"filter {filter_name!r} is not enabled in this config")
        self.inner = matches[0]
        self.name = f"hillclimb {filter_name}"

    def filter(self, doc: DTDocument) -> bool | tuple[bool, str]:
        ours = from_datatrove(doc)
        if self.inner.name in ours.skip_filters:
            return True
        reason = self.inner.apply(ours)
        if reason is not None:
            return False, f"{self.inner.name}:{reason}"
        ours.kept_by.append(self.inner.name)
        doc.text = ours.text  # redaction
        doc.metadata["license"] = ours.license
        doc.metadata["kept_by"] = ours.kept_by
        return True


def write_probe_index(cfg: DataConfig, path: str) -> dict[str, Any]:
    """Build the decontamination probe index of `cfg` (problem items, standard suites, eval
    files) and save it atomically at `path` (a local or shared-filesystem path every task can
    read); returns its stats. Run once, before the executor."""
    from pathlib import Path

    from hillclimb.data.decontam import build_index

    index = build_index(cfg.decontaminate, cfg.workers)
    index.save(Path(path))
    return index.stats


class HillclimbDecontaminate(BaseFilter):
    """The local build's decontamination (`data.decontam.Decontaminator`) as a datatrove filter:
    documents that contain an evaluation item are dropped with reason
    `decontaminate:contaminated` (the exclusion writer's record names the `probe`,
    `probe_origin` and `match`); a generators document's expected n-gram overlaps are kept and
    counted (`generator_overlap`) unless `generator_overlaps = "drop"`."""

    type = "🔻 - FILTER"
    name = "hillclimb decontaminate"

    def __init__(self, cfg: DataConfig, probes: str, exclusion_writer: Any = None):
        super().__init__(exclusion_writer=exclusion_writer)
        self.cfg = cfg
        self.probes = str(probes)
        self._judge: Any = None  # loaded once per task process (the step is pickled to tasks)

    def _load(self) -> Any:
        if self._judge is None:
            from pathlib import Path

            from hillclimb.data.decontam import Decontaminator, ProbeIndex

            gen = {s.name for s in self.cfg.sources if s.kind == "generators"}
            index = ProbeIndex.load(Path(self.probes))
            self._judge = Decontaminator(index, self.cfg.decontaminate, gen)
        return self._judge

    def filter(self, doc: DTDocument) -> bool | tuple[bool, str]:
        m = doc.metadata
        verdict, match = self._load().check(doc.text, m.get("source", ""), m.get("problem_id"))
        if verdict == "clean":
            return True
        assert match is not None
        if verdict == "overlap":
            self.stat_update("generator_overlap")
            return True
        m.update(probe=match.probe, probe_origin=match.origin, match=match.ngram)
        self.stat_update(f"contaminated_{match.origin.split(':')[0]}")
        return False, "decontaminate:contaminated"


def minhash_config(d: DedupConfig) -> Any:
    """datatrove MinhashConfig with our parameters and code-appropriate normalisation."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.text import TextNormConfig

    from hillclimb.data.dedup import optimal_bands

    bands, rows = (d.bands, d.rows) if d.bands else optimal_bands(d.threshold, d.num_perm)
    return MinhashConfig(
        n_grams=d.shingle_size,
        num_buckets=bands,
        hashes_per_bucket=rows,
        seed=d.seed,
        norm_config=TextNormConfig(
            lowercase=False,
            norm_whitespace=True,
            remove_punctuation=False,
            norm_unicode_diacritics=False,
            norm_numbers=False,
        ),
    )


def filter_pipeline(
    cfg: DataConfig, output_dir: str, rejects_dir: str | None = None, probes: str | None = None
) -> list[PipelineStep]:
    """Reader → our filters in pipeline order → decontamination (with `probes`, the index
    `write_probe_index` saved) → JSONL writer (rejects per filter if asked)."""
    from datatrove.pipeline.writers import JsonlWriter

    if cfg.decontaminate.enabled and probes is None:
        raise ConfigError(
            "[data.decontaminate] is enabled: build the probe index first with "
            "`write_probe_index(cfg, PATH)` (a path every task can read) and pass probes=PATH, "
            "or set [data.decontaminate] enabled = false to build without it"
        )
    steps: list[PipelineStep] = [HillclimbReader(cfg)]
    for f in build_filters(cfg):
        excl = JsonlWriter(f"{rejects_dir}/{f.name}") if rejects_dir else None
        steps.append(HillclimbFilter(cfg, f.name, exclusion_writer=excl))
    if cfg.decontaminate.enabled:
        excl = JsonlWriter(f"{rejects_dir}/decontaminate") if rejects_dir else None
        steps.append(HillclimbDecontaminate(cfg, str(probes), exclusion_writer=excl))
    steps.append(JsonlWriter(output_dir))
    return steps
