"""Dataclass configuration of `hillclimb data build`, filled from a recipe's `[data]` table.

Why dataclasses filled from TOML (and not free dicts): every knob has one documented default here,
unknown keys are rejected with a clear `ConfigError` (a typo in a recipe must not silently fall
back to a default), and the whole config serialises to a canonical JSON whose hash fingerprints a
build, so `--resume` can refuse to continue a build that was started with different settings.
The schema is documented in docs/areas/data.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from hillclimb.config_types import check_field_types
from hillclimb.errors import ConfigError

SOURCE_KINDS = ("tree", "jsonl", "parquet", "git", "generators", "python_env", "system_code")
# the filters a source may opt out of (`skip_filters`): the per-document ones and the detector;
# ingest, decontamination and dedup apply to every document of the build
SKIPPABLE_FILTERS = ("license", "blocklist", "ai_content", "quality", "secrets", "ai_detector")

# Permissive licenses kept by default (SPDX ids; LicenseRef-BSD is an unversioned "BSD License"
# trove classifier, which is permissive in every variant).
DEFAULT_ALLOW = [
    "MIT",
    "MIT-0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "LicenseRef-BSD",
    "Apache-2.0",
    "ISC",
    "PSF-2.0",
    "Python-2.0",
    "Zlib",
    "Unlicense",
    "CC0-1.0",
    "0BSD",
    "BSL-1.0",
    "HPND",
    "X11",
    "NCSA",
    "UPL-1.0",
]


@dataclass
class SourceConfig:
    """One input of the build. `path` is required for tree/jsonl/parquet/git."""

    kind: str
    name: str = ""
    path: str = ""
    max_files: int | None = None  # cap on documents taken from this source
    max_bytes: int | None = None  # cap on the sum of document bytes taken from this source
    max_file_bytes: int = 1 << 20  # larger files are skipped as "too_large"
    include: list[str] = field(default_factory=list)  # glob patterns on the relative path
    exclude: list[str] = field(default_factory=list)
    license: str | None = None  # license to assume when none is detected (e.g. a dataset's)
    text_field: str = "text"  # jsonl/parquet: the column holding the document
    skip_filters: list[str] = field(default_factory=list)  # filter names not applied here
    # generators: families (empty = all), tiers, problems per (family, tier), seed
    families: list[str] = field(default_factory=list)
    tiers: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    per_tier: int = 50
    seed: int = 0
    # system_code: which parts to look for
    parts: list[str] = field(default_factory=lambda: ["c_headers", "node", "jdk"])


@dataclass
class LicenseConfig:
    enabled: bool = True
    allow: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOW))
    allow_unknown: bool = False
    header_lines: int = 40  # lines of a file's header searched for SPDX tags / license text


@dataclass
class BlocklistConfig:
    enabled: bool = True
    domains: list[str] = field(default_factory=list)  # extra blocked domains (subdomains too)
    domains_file: str | None = None  # one domain per line
    use_default_domains: bool = True
    path_patterns: list[str] = field(default_factory=list)  # extra blocked path globs
    use_default_paths: bool = True


@dataclass
class AIContentConfig:
    enabled: bool = True
    extra_phrases: list[str] = field(default_factory=list)  # regexes, case-insensitive
    # Binoculars-style detector: both paths must be set to enable it.
    observer: str | None = None
    performer: str | None = None
    threshold: float = 0.9  # score below this -> machine-generated (calibrate per model pair)
    max_tokens: int = 512
    batch_size: int = 8
    device: str | None = None


@dataclass
class QualityConfig:
    enabled: bool = True
    # code (StarCoder-style)
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alnum_fraction: float = 0.25
    max_encoded_run: int = 1024  # longest base64/hex run allowed (chars)
    max_encoded_fraction: float = 0.5
    autogen_header_lines: int = 5
    # text (Gopher-style)
    min_words: int = 20
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    min_alpha_word_fraction: float = 0.6
    max_ellipsis_line_fraction: float = 0.3
    min_chars: int = 16


@dataclass
class SecretsConfig:
    enabled: bool = True
    emails: bool = True
    keys: bool = True
    private_keys: bool = True
    passwords: bool = True
    min_entropy: float = 3.5  # bits/char for generic key=value assignments
    email_allow_domains: list[str] = field(
        default_factory=lambda: ["example.com", "example.org", "example.net", "localhost"]
    )


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    shingle_size: int = 5  # tokens per shingle
    num_perm: int = 128
    threshold: float = 0.7  # estimated Jaccard at or above which two docs are near-duplicates
    bands: int | None = None  # LSH bands/rows; None = chosen from threshold
    rows: int | None = None
    strip_comments: bool = False
    seed: int = 1


# the standard evaluation suites whose items can be decontamination probes; their texts come
# from `hillclimb.eval.probes` (a layer above: decontam.py imports it lazily)
SUITE_PROBE_NAMES: tuple[str, ...] = ("humaneval", "adversarial", "ifeval", "fim")


@dataclass
class DecontaminateConfig:
    """Drop documents that contain evaluation items (`decontam.py`; docs/areas/data.md).

    Probes are the texts of `hillclimb.problems.contamination_probes(problems_seeds,
    problems_n_per_tier, problems_families)` (the val / heldout / heldout_phrasing splits) plus
    the items of the standard evaluation `suites` (`hillclimb.eval.probes`) plus every text of
    the JSONL `files`. The defaults cover the climb's evaluation suites (seed 0, up to 50 items
    per family x tier; HumanEval, adversarial, IFEval-style and FIM items)."""

    enabled: bool = True
    ngram: int = 13  # a shared run of this many normalised word tokens = contaminated
    min_tokens: int = 8  # probes shorter than `ngram` count only when whole and at least this long
    # the evaluation seeds; [] only without seeded suites (ifeval, fim); no problem probes:
    # problems_n_per_tier = 0
    problems_seeds: list[int] = field(default_factory=lambda: [0])
    problems_n_per_tier: int = 50
    problems_families: list[str] = field(default_factory=list)  # empty = every family
    # standard evaluation suites whose items are probes too (`hillclimb.eval.probes`); the
    # generated ones (ifeval, fim) for every seed of `problems_seeds`; [] = none
    suites: list[str] = field(default_factory=lambda: list(SUITE_PROBE_NAMES))
    suite_items: int = 1000  # items per seed of the ifeval suite's probes (its default run: 120)
    files: list[str] = field(default_factory=list)  # JSONL(.gz) eval sets: extra probes
    text_fields: list[str] = field(default_factory=lambda: ["text"])  # probe fields in `files`
    examples: int = 5  # example matches shown in the data card
    # generators-source documents that share n-grams with probes: "keep" (counted in the card;
    # their split is by problem key and siblings share template phrases and sub-steps) or "drop"
    generator_overlaps: str = "keep"

    def validate(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        w = "[data.decontaminate]"
        if not is_int(self.ngram) or self.ngram < 4:
            raise ConfigError(
                f"{w} ngram must be an integer >= 4 (shorter n-grams match ordinary prose and "
                f"code everywhere), got {self.ngram!r}"
            )
        if not is_int(self.min_tokens) or not 1 <= self.min_tokens <= self.ngram:
            raise ConfigError(
                f"{w} min_tokens must be an integer in [1, ngram={self.ngram}], "
                f"got {self.min_tokens!r}"
            )
        if not is_int(self.problems_n_per_tier) or self.problems_n_per_tier < 0:
            raise ConfigError(f"{w} problems_n_per_tier must be an integer >= 0")
        if not isinstance(self.problems_seeds, list) or not all(
            is_int(s) for s in self.problems_seeds
        ):
            raise ConfigError(f"{w} problems_seeds must be a list of integers")
        if not isinstance(self.suites, list) or not all(isinstance(x, str) for x in self.suites):
            raise ConfigError(f"{w} suites must be a list of suite names")
        unknown = [x for x in self.suites if x not in SUITE_PROBE_NAMES]
        if unknown:
            raise ConfigError(
                f"{w} suites {unknown}: no probes for these; known: {list(SUITE_PROBE_NAMES)} "
                "(completion's items are the problem probes' code_function items)"
            )
        if not is_int(self.suite_items) or self.suite_items < 0:
            raise ConfigError(f"{w} suite_items must be an integer >= 0")
        for key in ("suites", "problems_seeds"):
            v = getattr(self, key)
            twice = sorted({x for x in v if v.count(x) > 1})
            if twice:  # their probes would be counted twice in the card
                raise ConfigError(f"{w} {key} lists {twice} more than once")
        for key in ("problems_families", "files", "text_fields"):
            v = getattr(self, key)
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise ConfigError(f"{w} {key} must be a list of non-empty strings")
        if self.files and not self.text_fields:
            raise ConfigError(f"{w} text_fields must name at least one field when files are set")
        if not is_int(self.examples) or self.examples < 0:
            raise ConfigError(f"{w} examples must be an integer >= 0")
        if self.generator_overlaps not in ("keep", "drop"):
            raise ConfigError(
                f'{w} generator_overlaps must be "keep" or "drop", got {self.generator_overlaps!r}'
            )


@dataclass
class DataConfig:
    """The `[data]` table of a recipe."""

    sources: list[SourceConfig] = field(default_factory=list)
    license: LicenseConfig = field(default_factory=LicenseConfig)
    blocklist: BlocklistConfig = field(default_factory=BlocklistConfig)
    ai_content: AIContentConfig = field(default_factory=AIContentConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    val_fraction: float = 0.02
    seed: int = 0
    chunk_docs: int = 1000  # items per committed work chunk (the resume granularity)
    docs_per_file: int = 50000  # documents per output documents/*.jsonl.gz file
    rejects_text_chars: int = 20000  # text kept per rejected document (audit, not training)
    workers: int = 1  # processes for the per-document filters (1 = in-process)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (not `workers`, which never does)."""
        d = self.to_dict()
        d.pop("workers", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("data config has no sources")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.chunk_docs < 1 or self.docs_per_file < 1 or self.workers < 1:
            raise ConfigError("chunk_docs, docs_per_file and workers must be >= 1")
        names = set()
        for s in self.sources:
            if s.kind not in SOURCE_KINDS:
                raise ConfigError(f"unknown source kind {s.kind!r}; expected one of {SOURCE_KINDS}")
            if s.kind in ("tree", "jsonl", "parquet", "git") and not s.path:
                raise ConfigError(f"source of kind {s.kind!r} needs a `path`")
            if s.name in names:
                raise ConfigError(f"duplicate source name {s.name!r}")
            for cap in ("max_files", "max_bytes"):
                if getattr(s, cap) is not None and getattr(s, cap) < 0:
                    raise ConfigError(f"source {s.name!r}: {cap} must be >= 0")
            if s.max_file_bytes < 1:
                raise ConfigError(f"source {s.name!r}: max_file_bytes must be >= 1")
            if s.kind == "generators":
                _check_generators(s)
            names.add(s.name)
            if "decontaminate" in s.skip_filters:
                raise ConfigError(
                    f"source {s.name!r}: decontamination cannot be skipped (evaluation items must "
                    "never reach training data); disable it for the whole build with "
                    "[data.decontaminate] enabled = false"
                )
            bad = [f for f in s.skip_filters if f not in SKIPPABLE_FILTERS]
            if bad:  # a misspelt filter name was ignored: the filter ran as if not skipped
                raise ConfigError(
                    f"source {s.name!r}: skip_filters {bad} name no filter that can be skipped; "
                    f"known: {list(SKIPPABLE_FILTERS)}"
                )
        self.decontaminate.validate()
        d = self.dedup
        if not 0.0 < d.threshold <= 1.0:
            raise ConfigError(f"dedup.threshold must be in (0, 1], got {d.threshold}")
        if d.shingle_size < 1 or d.num_perm < 2:
            raise ConfigError("dedup.shingle_size must be >= 1 and num_perm >= 2")
        if (d.bands is None) != (d.rows is None):
            raise ConfigError("set both dedup.bands and dedup.rows, or neither")
        if d.bands is not None and d.rows is not None and (d.bands < 1 or d.rows < 1):
            # 0 bands compare nothing and -1 x -1 passed the product check: near-dedup was off
            # without a word while the card still said `near: true`
            raise ConfigError(
                f"dedup.bands and dedup.rows must be >= 1, got {d.bands} and {d.rows}"
            )
        if d.bands is not None and d.bands * d.rows > d.num_perm:
            raise ConfigError("dedup.bands * dedup.rows must be <= num_perm")


def _check_generators(s: SourceConfig) -> None:
    """A generators source names real families and tiers: a typo would otherwise build a corpus
    without those problems and only count them as rejects."""
    from hillclimb import problems as P

    bad = [f for f in s.families if f not in P.FAMILIES]
    if bad:
        raise ConfigError(
            f"source {s.name!r}: unknown problem families {bad}; known: {sorted(P.FAMILIES)}"
        )
    bad_tiers = [t for t in s.tiers if t not in P.TIERS]
    if bad_tiers:
        raise ConfigError(f"source {s.name!r}: tiers {bad_tiers} not in {list(P.TIERS)}")
    if s.per_tier < 0:
        raise ConfigError(f"source {s.name!r}: per_tier must be >= 0, got {s.per_tier}")


def _fill(cls: type, table: dict[str, Any], where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {type(table).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}")
    # `max_files = "x"` or `tiers = 1` is named now, not as a TypeError mid-build
    check_field_types(cls, table, where)
    kwargs = {}
    for k, v in table.items():
        if k == "sources":
            if not isinstance(v, list):
                raise ConfigError(f"{where}.sources must be an array of tables")
            v = [_fill(SourceConfig, s, f"{where}.sources[{i}]") for i, s in enumerate(v)]
        elif cls is DataConfig and k in _SUBTABLES:
            v = _fill(_SUBTABLES[k], v, f"{where}.{k}")
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


_SUBTABLES: dict[str, type] = {
    "license": LicenseConfig,
    "blocklist": BlocklistConfig,
    "ai_content": AIContentConfig,
    "quality": QualityConfig,
    "secrets": SecretsConfig,
    "dedup": DedupConfig,
    "decontaminate": DecontaminateConfig,
}


def data_config_from_dict(table: dict[str, Any]) -> DataConfig:
    """Build and validate a `DataConfig` from a recipe's `[data]` table."""
    cfg = _fill(DataConfig, table, "[data]")
    for i, s in enumerate(cfg.sources):
        if not s.name:
            pathless = ("python_env", "system_code", "generators")
            s.name = s.kind if s.kind in pathless else f"{s.kind}{i}"
    cfg.validate()
    return cfg
