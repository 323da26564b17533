"""The named per-document filter steps: license, blocklist, ai_content, quality, secrets.

Why this shape: each filter is a small object with a `name` and `apply(doc) -> reason | None`
(None keeps the document, possibly modified in place, e.g. redacted), plus a `stats` counter for
things it changed without dropping. The pipeline runs them in a fixed order, records the first
reason a document was dropped (→ `rejects/<filter>.jsonl.gz`) and appends the names of the filters
that kept it to `kept_by`. The same objects are wrapped as datatrove `BaseFilter`s in
`datatrove_steps.py`, so local and distributed runs apply one implementation.

Order matters and is chosen for cost and auditability: cheap metadata checks first (license,
blocklist), then content heuristics, then redaction (so rejects keep the original text for
audit, and kept documents never contain secrets), and the model-based AI detector last (in
`binoculars.py`, batched, only over survivors).
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from hillclimb.data.config import (
    AIContentConfig,
    BlocklistConfig,
    DataConfig,
    LicenseConfig,
    QualityConfig,
    SecretsConfig,
)
from hillclimb.data.document import TEXT_LANGUAGES, Document
from hillclimb.data.license import (
    UNKNOWN,
    license_allowed,
    license_family,
    license_from_header,
)
from hillclimb.data.secrets import Redactor
from hillclimb.errors import ConfigError


class Filter(Protocol):
    name: str
    stats: Counter[str]

    def apply(self, doc: Document) -> str | None: ...


# ---------------------------------------------------------------------------------------------
class LicenseFilter:
    """Resolve the document's license (file header > directory/package context > source
    default) and keep it only if the allowlist permits it."""

    name = "license"

    def __init__(self, cfg: LicenseConfig):
        self.cfg = cfg
        self.stats: Counter[str] = Counter()

    def apply(self, doc: Document) -> str | None:
        if doc.language not in ("reasoning",):
            header = license_from_header(
                doc.text, self.cfg.header_lines, code=doc.language not in TEXT_LANGUAGES
            )
            if header is not None:
                doc.license = header
                self.stats["from_header"] += 1
        if not doc.license:
            doc.license = UNKNOWN
        if license_allowed(doc.license, self.cfg.allow, self.cfg.allow_unknown):
            return None
        fam = license_family(doc.license)
        return "unknown" if fam == "unknown" else f"{fam}:{doc.license}"


# ---------------------------------------------------------------------------------------------
# Hosts that serve other models' outputs: blocked by default to keep the no-distillation rule.
DEFAULT_BLOCKED_DOMAINS = [
    "chat.openai.com",
    "chatgpt.com",
    "sharegpt.com",
    "poe.com",
    "character.ai",
    "claude.ai",
    "gemini.google.com",
    "bard.google.com",
    "perplexity.ai",
    "you.com",
]
DEFAULT_BLOCKED_PATHS = {
    "vendored": [
        "*/vendor/*",
        "*/vendored/*",
        "*/_vendor/*",
        "*/third_party/*",
        "*/thirdparty/*",
        "*/node_modules/*/node_modules/*",
    ],
    "minified": ["*.min.*", "*-min.js", "*.bundle.js", "*.chunk.js", "*.packed.js"],
    "generated": [
        "*_pb2.py",
        "*_pb2_grpc.py",
        "*.pb.go",
        "*.pb.h",
        "*.pb.cc",
        "*_generated.*",
        "*.generated.*",
        "*.designer.cs",
        "*/package-lock.json",
        "package-lock.json",
        "*/migrations/0*.py",
    ],
}


class BlocklistFilter:
    """Drop web documents whose URL host is (a subdomain of) a blocked domain, and files whose
    path matches a vendored / minified / generated pattern."""

    name = "blocklist"

    def __init__(self, cfg: BlocklistConfig):
        self.cfg = cfg
        self.stats: Counter[str] = Counter()
        domains = list(cfg.domains)
        if cfg.use_default_domains:
            domains += DEFAULT_BLOCKED_DOMAINS
        if cfg.domains_file:
            try:
                lines = Path(cfg.domains_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"blocklist.domains_file unreadable: {exc}") from exc
            domains += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
        self.domains = {d.lower().lstrip(".") for d in domains}
        self.paths: list[tuple[str, str]] = []
        if cfg.use_default_paths:
            for cat, pats in DEFAULT_BLOCKED_PATHS.items():
                self.paths += [(cat, p) for p in pats]
        self.paths += [("custom", p) for p in cfg.path_patterns]

    def blocked_domain(self, url: str) -> str | None:
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            return None
        parts = host.split(".")
        for i in range(len(parts) - 1):
            cand = ".".join(parts[i:])
            if cand in self.domains:
                return cand
        return None

    def apply(self, doc: Document) -> str | None:
        if doc.url:
            dom = self.blocked_domain(doc.url)
            if dom:
                return f"domain:{dom}"
        if doc.path:
            p = "/" + doc.path.lstrip("/")
            for cat, pat in self.paths:
                if fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(doc.path, pat):
                    return f"path:{cat}"
        return None


# ---------------------------------------------------------------------------------------------
AI_PHRASES = [
    r"as an ai language model",
    r"as a large language model",
    r"as an ai (?:assistant|model)\b",
    r"i(?:'m| am) an ai (?:language model|assistant)",
    r"(?:generated|written|created|produced) (?:by|with|using) (?:chat ?gpt|gpt-?[345](?:\.5)?(?:-turbo|o)?|openai'?s? (?:chat ?gpt|gpt)|claude|bard|gemini|llama|(?:github )?copilot)\b",
    r"(?:this|the following) (?:code|text|file|answer|content) (?:was|has been|is) (?:ai[- ]generated|generated by (?:an )?ai)\b",
    r"\bai[- ]generated (?:code|content|text)\b",
    r"i cannot fulfill (?:this|that|your) request",
    r"my knowledge cutoff",
    r"regenerate response",
]


class AIContentFilter:
    """Drop documents carrying tell-tale markers of another model's output (phrase heuristic).
    The model-based detector is `binoculars.BinocularsFilter`, applied in batches later."""

    name = "ai_content"

    def __init__(self, cfg: AIContentConfig):
        self.cfg = cfg
        self.stats: Counter[str] = Counter()
        try:
            self.rx = re.compile("|".join(f"(?:{p})" for p in AI_PHRASES))
            self.extra = (
                re.compile("|".join(f"(?:{p})" for p in cfg.extra_phrases), re.I)
                if cfg.extra_phrases
                else None
            )
        except re.error as exc:
            raise ConfigError(f"ai_content.extra_phrases: invalid regex: {exc}") from exc

    def apply(self, doc: Document) -> str | None:
        # built-in phrases are lowercase: match on lowercased text (much faster than re.I)
        m = self.rx.search(doc.text.lower()) or (
            self.extra.search(doc.text) if self.extra else None
        )
        if m:
            return "marker:" + " ".join(m.group(0).lower().split())[:60]
        return None


# ---------------------------------------------------------------------------------------------
_AUTOGEN = re.compile(
    r"auto-generated|autogenerated|automatically generated|generated automatically|"
    r"this file (?:is|was) generated|do not edit|code generated by",
    re.I,
)
# Encoded blobs: base64/hex runs (one linear scan for maximal runs, then a length test) and
# escaped byte strings (\x.. / \u....), only searched when a backslash escape is present.
_RUNS = re.compile(r"[A-Za-z0-9+/=]{64,}")
_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){32,}|(?:\\u[0-9a-fA-F]{4}){16,}")


def encoded_runs(text: str) -> list[int]:
    runs = [m.end() - m.start() for m in _RUNS.finditer(text)]
    if "\\x" in text or "\\u" in text:
        runs += [m.end() - m.start() for m in _ESCAPES.finditer(text)]
    return runs


_ALNUM_DROP = re.compile(r"[\W_]+")

# Scripts written without spaces between words: Han ideographs (with the CJK extension blocks and
# compatibility ideographs), hiragana and katakana (with the half-width and phonetic-extension
# forms). Hangul is not here: Korean puts spaces between words, so `str.split` already counts it.
_CJK_CHARS = (
    "\u3005\u3007\u3021-\u3029\u3038-\u303b"  # 々 〇 Hangzhou numerals, 〻
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"  # hiragana, katakana, katakana ext.
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9d"  # Han, compat., half-width kana
    "\U00020000-\U0003134f"  # Han extensions B-G
)
_CJK = re.compile(f"[{_CJK_CHARS}]")
_CJK_SPLIT = re.compile(f"([{_CJK_CHARS}])")


def text_words(text: str) -> tuple[list[str], int]:
    """The words of prose, and how many of them are CJK characters.

    Why not just `text.split()`: Chinese and Japanese are written without spaces, so a paragraph
    is one "word" and real prose failed `too_few_words` / `mean_word_length`. Inside a
    whitespace token that holds Han or kana, each such character counts as one word (a
    character is the closest unit to a word these scripts have without a segmenter), and the
    pieces between them count as words only when they hold a letter or digit (ideographic
    punctuation is not a word, just as a comma is not in English). Tokens without Han or kana
    are kept whole, so results for English, Korean and code are what `text.split()` gave.
    """
    words: list[str] = []
    n_cjk = 0
    for tok in text.split():
        if not _CJK.search(tok):
            words.append(tok)
            continue
        for piece in _CJK_SPLIT.split(tok):
            if not piece:
                continue
            if len(piece) == 1 and _CJK.match(piece):
                words.append(piece)
                n_cjk += 1
            elif any(ch.isalnum() for ch in piece):
                words.append(piece)
    return words, n_cjk


class QualityFilter:
    """StarCoder-style heuristics for code; Gopher-style heuristics for prose."""

    name = "quality"

    def __init__(self, cfg: QualityConfig):
        self.cfg = cfg
        self.stats: Counter[str] = Counter()

    def apply(self, doc: Document) -> str | None:
        c = self.cfg
        text = doc.text
        if len(text.strip()) < c.min_chars:
            return "too_short"
        if doc.language == "reasoning":
            return None  # our own generators' output: structured, judged by their tests
        if doc.language in TEXT_LANGUAGES:
            return self._text(text)
        return self._code(text)

    def _code(self, text: str) -> str | None:
        c = self.cfg
        # encoded blobs first: they also break the line-length rules, but this is the real why
        runs = encoded_runs(text)
        if runs and (
            max(runs) > c.max_encoded_run or sum(runs) / len(text) > c.max_encoded_fraction
        ):
            return "encoded_data"
        lines = text.splitlines() or [text]
        lens = [len(ln) for ln in lines]
        if max(lens) > c.max_line_length:
            return "max_line_length"
        if sum(lens) / len(lens) > c.max_mean_line_length:
            return "mean_line_length"
        alnum = len(_ALNUM_DROP.sub("", text))
        if alnum / max(1, len(text)) < c.min_alnum_fraction:
            return "alnum_fraction"
        head = "\n".join(lines[: c.autogen_header_lines])
        if _AUTOGEN.search(head):
            return "autogenerated"
        return None

    def _text(self, text: str) -> str | None:
        c = self.cfg
        words, n_cjk = text_words(text)
        if len(words) < c.min_words:
            return "too_few_words"
        # word length means nothing for one-character CJK words: judge it on the other words,
        # and only when they are at least half of the text (mostly-CJK prose skips the check)
        spaced = [w for w in words if not (len(w) == 1 and _CJK.match(w))] if n_cjk else words
        if len(spaced) * 2 >= len(words):
            mean = sum(len(w) for w in spaced) / len(spaced)
            if not c.min_mean_word_length <= mean <= c.max_mean_word_length:
                return "mean_word_length"
        symbols = text.count("#") + text.count("...") + text.count("\u2026")
        if symbols / len(words) > c.max_symbol_word_ratio:
            # markdown headings are '#' too: count only runs that are not line-leading headings
            heading = sum(1 for ln in text.splitlines() if ln.lstrip().startswith("#"))
            if (symbols - heading) / len(words) > c.max_symbol_word_ratio:
                return "symbol_ratio"
        alpha = sum(1 for w in words if any(ch.isalpha() for ch in w))
        if alpha / len(words) < c.min_alpha_word_fraction:
            return "alpha_words"
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            ell = sum(1 for ln in lines if ln.rstrip().endswith(("...", "\u2026")))
            if ell / len(lines) > c.max_ellipsis_line_fraction:
                return "ellipsis_lines"
        return None


# ---------------------------------------------------------------------------------------------
class SecretsFilter:
    """Redact secrets and PII in place; never drops. Counts redactions per kind in `stats`."""

    name = "secrets"

    def __init__(self, cfg: SecretsConfig):
        self.redactor = Redactor(cfg)
        self.stats: Counter[str] = Counter()

    def apply(self, doc: Document) -> str | None:
        text, counts = self.redactor.redact(doc.text)
        if counts:
            doc.text = text
            self.stats.update({f"redacted:{k}": v for k, v in counts.items()})
            self.stats["documents_redacted"] += 1
        return None


def build_filters(cfg: DataConfig) -> list[Filter]:
    """The enabled per-document filters, in pipeline order."""
    out: list[Filter] = []
    if cfg.license.enabled:
        out.append(LicenseFilter(cfg.license))
    if cfg.blocklist.enabled:
        out.append(BlocklistFilter(cfg.blocklist))
    if cfg.ai_content.enabled:
        out.append(AIContentFilter(cfg.ai_content))
    if cfg.quality.enabled:
        out.append(QualityFilter(cfg.quality))
    if cfg.secrets.enabled:
        out.append(SecretsFilter(cfg.secrets))
    return out


def run_filters(filters: list[Filter], doc: Document) -> tuple[str, str] | None:
    """Apply filters in order; (filter name, reason) of the first drop, or None if kept."""
    for f in filters:
        if f.name in doc.skip_filters:
            continue
        reason = f.apply(doc)
        if reason is not None:
            return f.name, reason
        doc.kept_by.append(f.name)
    return None
