"""Source kinds: enumerate candidate documents as a deterministic stream of picklable items.

Why items (not documents): enumeration is cheap (directory walks, `stat`, reading package
metadata) and happens in the main process, in a fixed order, so the stream — and therefore every
work chunk — is identical on every run; that is what lets a killed build resume at a chunk
boundary and still produce byte-identical output. Reading and decoding file bytes (the part
that meets bad input) is deferred to `load_item`, which runs inside the filter workers and turns
every failure into a counted skip reason instead of an exception.

Caps (`max_files`, `max_bytes`) pick a seeded hash-ordered sample of the candidates rather than
the first N in path order, so a capped site-packages is a spread over packages, not "a*" only.
License context (LICENSE/COPYING files, package.json, .dist-info metadata) is resolved per
directory during enumeration and attached to each item as a hint; the file's own header, read
later, overrides it.
"""

from __future__ import annotations

import codecs
import fnmatch
import functools
import gzip
import hashlib
import io
import json
import os
import site
import stat
import subprocess
import sysconfig
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hillclimb.data.config import SourceConfig
from hillclimb.data.document import Document, language_for_path
from hillclimb.data.license import (
    UNKNOWN,
    is_license_file,
    license_from_file,
    license_from_package_json,
    license_from_pkg_metadata,
    license_from_text,
    normalize_license,
)
from hillclimb.io import HELDOUT_MARKER, stdlib_heldout

SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox"}
)
GENERATED_LICENSE = "Apache-2.0"  # documents written by our own generators carry the repo's license
# Files of this package's problems/ directory (the generators, templates and hand-written
# reference solutions of every evaluation item) are never documents, whatever the recipe says:
# a tree or git source that reaches them (`{hillclimb}`, the repository, an installed copy in
# site-packages) turns each into an ingest skip with this reason, counted in the data card.
PROBLEMS_SKIP = "problem_generators"
# A directory holding a file named `io.HELDOUT_MARKER` is held out of every tree or git source: its
# files become ingest skips with HELDOUT_SKIP, counted in the data card. How code is kept for
# evaluation only — the task generator's held-out projects carry the marker
# (`harness generate --split heldout` draws only from them), and users can mark their own.
HELDOUT_SKIP = "heldout_marked"
# A third of this Python's stdlib files are the FIM suite's held-out code (`io.stdlib_heldout`):
# the python_env source skips them with this reason.
EVAL_HELDOUT_SKIP = "heldout_eval"


@functools.lru_cache(maxsize=1)
def problems_dir() -> Path:
    """The resolved `problems/` directory of this hillclimb package (not imported: a path)."""
    return Path(__file__).resolve().parent.parent / "problems"


def protected_prefix(root: Path) -> str | None:
    """Relative posix prefix under `root` of files that are problem generators: "" when `root`
    lies inside problems/, "rel/path/problems/" when problems/ lies under `root`, else None."""
    prob = problems_dir()
    try:
        real = root.resolve()
    except OSError:
        return None
    if real == prob or prob in real.parents:
        return ""
    if real in prob.parents:
        return prob.relative_to(real).as_posix() + "/"
    return None


@dataclass
class Item:
    """A candidate document, not yet read. Exactly one of file/zip/text/skip describes it."""

    source: str
    path: str | None = None  # provenance path (relative to the source root, or root-labelled)
    file: str | None = None  # absolute path to read
    zip_file: str | None = None  # archive holding `path` (JDK src.zip)
    text: str | None = None  # inline text (jsonl, parquet, generators)
    url: str | None = None
    language: str | None = None
    license: str | None = None  # license known before reading (metadata, dataset field, dir)
    skip: str | None = None  # reason this candidate is skipped without reading
    detail: str | None = None  # what exactly was wrong, for the reject record (not counted)
    meta: dict[str, Any] = field(default_factory=dict)
    skip_filters: tuple[str, ...] = ()
    max_bytes: int = 1 << 20


# byte-order marks of the encodings whose ASCII text is full of NUL bytes (UTF-32 first: its
# little-endian mark begins with UTF-16's)
_UTF16_32_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class LoadError(Exception):
    """An item could not become a document; `.reason` is the counted skip reason."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@functools.lru_cache(maxsize=4)
def _open_zip(path: str) -> zipfile.ZipFile:
    """Archives stay open per process: re-reading a JDK src.zip's directory per member costs
    ~0.2 s each."""
    return zipfile.ZipFile(path)


def _too_large(cap: int) -> LoadError:
    """The skip for a file or record over the cap, naming the cap. Why: a user's dropped file
    said only `too_large`, not which setting to raise (`max_file_bytes` of the source)."""
    return LoadError("too_large", f"over max_file_bytes = {cap:,} bytes")


def _not_utf8_detail(data: bytes, exc: UnicodeDecodeError) -> str:
    """Where the first undecodable byte is, and what to do. Why: a user's Latin-1 or cp1252
    files were `non_utf8` with nothing to find the byte by or say the fix."""
    return (
        f"byte 0x{data[exc.start]:02x} at offset {exc.start:,} is not UTF-8 "
        "(re-encode the file, e.g. `iconv -f latin1 -t utf-8`)"
    )


def load_item(item: Item) -> Document:
    """Read and decode an item into a Document, or raise LoadError(reason)."""
    if item.skip:
        raise LoadError(item.skip)
    if item.text is not None:
        text = item.text
        # the cap is in bytes, as for files: 1 MiB of CJK text is 3 MiB, not 1 Mi characters
        if len(text) > item.max_bytes or (
            4 * len(text) > item.max_bytes
            and len(text.encode("utf-8", "surrogatepass")) > item.max_bytes
        ):
            raise _too_large(item.max_bytes)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # a JSON record can hold "\ud800": not Unicode text, so no UTF-8 file, tokenizer or
            # model can take it; the same skip as a file whose bytes are not UTF-8
            bad = f"U+{ord(text[exc.start]):04X}"
            raise LoadError(
                "non_utf8", f"text holds a lone surrogate {bad} at {exc.start}"
            ) from None
    else:
        try:
            if item.zip_file:
                zf = _open_zip(item.zip_file)
                info = zf.getinfo(item.meta["member"])
                if info.file_size > item.max_bytes:
                    raise _too_large(item.max_bytes)
                data = zf.read(info)
            else:
                assert item.file is not None
                with open(item.file, "rb") as f:
                    data = f.read(item.max_bytes + 1)
                if len(data) > item.max_bytes:
                    raise _too_large(item.max_bytes)
        except LoadError:
            raise
        except (OSError, KeyError, zipfile.BadZipFile):
            raise LoadError("unreadable") from None
        bom = next((name for mark, name in _UTF16_32_BOMS if data.startswith(mark)), None)
        if bom is not None:  # text, though its NULs looked binary: say which encoding it is
            raise LoadError("non_utf8", f"{bom} text (byte-order mark)")
        if b"\x00" in data[:8192]:
            raise LoadError("binary")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LoadError("non_utf8", _not_utf8_detail(data, exc)) from None
        if text.startswith("\ufeff"):
            text = text[1:]
    if not text.strip():
        raise LoadError("empty")
    meta = {k: v for k, v in item.meta.items() if k != "member"}
    return Document(
        text=text,
        source=item.source,
        path=item.path,
        url=item.url,
        language=item.language or "text",
        license=item.license or UNKNOWN,
        meta=meta,
        skip_filters=item.skip_filters,
    )


# ---------------------------------------------------------------------------------------------
# License context for trees
# ---------------------------------------------------------------------------------------------


class TreeLicenses:
    """License of each directory under a root: nearest LICENSE/COPYING file, package.json or
    (for site-packages) the owning distribution's metadata; the root's own default last."""

    def __init__(self, root: Path, default: str | None):
        self.root = root
        self.default = normalize_license(default) if default else None
        self._dirs: dict[Path, str | None] = {}
        self._own_cache: dict[Path, str | None] = {}
        self._top: dict[str, str] = {}
        try:
            entries = sorted(root.iterdir())
        except OSError:
            entries = []
        for d in entries:
            if d.is_dir() and d.name.endswith((".dist-info", ".egg-info")):
                lic = license_from_pkg_metadata(d)
                for top in _dist_top_levels(d):
                    self._top.setdefault(top, lic)

    def _own(self, d: Path) -> str | None:
        if d not in self._own_cache:
            self._own_cache[d] = self._own_uncached(d)
        return self._own_cache[d]

    def _own_uncached(self, d: Path) -> str | None:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return None
        if "package.json" in names:
            lic = license_from_package_json(d / "package.json")
            if lic and lic != UNKNOWN:
                return lic
        for n in names:
            if is_license_file(n) and (d / n).is_file():
                lic = license_from_file(d / n)
                if lic != UNKNOWN:
                    return lic
        return None

    def for_dir(self, d: Path) -> str | None:
        if d in self._dirs:
            return self._dirs[d]
        lic = self._own(d)
        if lic is None and d != self.root and self.root in d.parents:
            lic = self.for_dir(d.parent)
        if lic is None and d == self.root:
            lic = self.default
        self._dirs[d] = lic
        return lic

    def for_file(self, f: Path) -> str | None:
        rel = f.relative_to(self.root)
        if self._top:
            top = rel.parts[0]
            key = top[:-3] if top.endswith(".py") else top
            if key in self._top and self._top[key] != UNKNOWN:
                # a package's own LICENSE file deeper in the tree still wins (vendored code)
                own = self._nearest_below_top(f.parent, self.root / top)
                return own or self._top[key]
        return self.for_dir(f.parent)

    def _nearest_below_top(self, d: Path, top: Path) -> str | None:
        while d != top and top in d.parents:
            lic = self._own(d)
            if lic:
                return lic
            d = d.parent
        return None


def _dist_top_levels(dist: Path) -> list[str]:
    tops: list[str] = []
    record = dist / "RECORD"
    tl = dist / "top_level.txt"
    try:
        if record.is_file():
            for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
                first = line.split(",", 1)[0].split("/", 1)[0]
                if not first or first.startswith("..") or first.endswith((".dist-info", ".pth")):
                    continue
                name = first[:-3] if first.endswith(".py") else first
                if name not in tops and name != "__pycache__":
                    tops.append(name)
        elif tl.is_file():
            tops = [t.strip() for t in tl.read_text().splitlines() if t.strip()]
    except OSError:
        pass
    return tops


# ---------------------------------------------------------------------------------------------
# Enumeration
# ---------------------------------------------------------------------------------------------


def _matches(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase("/" + rel, p) for p in patterns)


def _rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()


def _apply_caps(items: list[Item], sizes: list[int], cfg: SourceConfig) -> list[Item]:
    """Keep a seeded hash-ordered sample under max_files/max_bytes, in original order."""
    if cfg.max_files is None and cfg.max_bytes is None:
        return items
    order = sorted(range(len(items)), key=lambda i: _rank(cfg.seed, items[i].path or ""))
    chosen, total = set(), 0
    for i in order:
        if cfg.max_files is not None and len(chosen) >= cfg.max_files:
            break
        if cfg.max_bytes is not None and total + sizes[i] > cfg.max_bytes:
            continue
        chosen.add(i)
        total += sizes[i]
    return [it for i, it in enumerate(items) if i in chosen]


# The `format` of a data build's completion marker (`DIR/build.json`) and of a running build's
# work state (`DIR/.work/state.json`); pipeline.py writes both.
BUILD_FORMAT = "hillclimb-data-build-v1"
WORK_FORMAT = "hillclimb-data-work-v1"


def _json_format(path: Path) -> Any:
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return None
        return json.loads(path.read_bytes()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def is_data_build(d: Path) -> bool:
    """Whether directory `d` is a hillclimb data build: a finished one (`build.json`), one being
    written (`.work/state.json`; a `--force` rebuild's staging copy too). `data build --source .
    --out corpus` puts its output inside its own source; read as a tree it trained on its work
    state, a rebuild on the previous card, and a resume saw more files than the run it resumes."""
    return (
        _json_format(d / "build.json") == BUILD_FORMAT
        or _json_format(d / ".work" / "state.json") == WORK_FORMAT
    )


def _is_link(p: Path) -> bool:
    """`p.is_symlink()`, False when it cannot be told (a path past PATH_MAX raises there; os.walk
    then reports the directory as one it could not list)."""
    try:
        return stat.S_ISLNK(os.lstat(p).st_mode)
    except OSError:
        return False


def _walk(
    root: Path, exclude_dirs: tuple[str, ...] = (), errors: list[OSError] | None = None
) -> Iterator[Path]:
    """Files under `root`, sorted, and links to directories (never followed: yielded as
    entries, so the caller counts them as `symlink` skips instead of losing them). A directory
    that cannot be listed (no permission, a path beyond PATH_MAX, a root that is not a
    directory) is appended to `errors`: os.walk's default is to drop it silently, with every
    file below it. Data builds below the root (`is_data_build`) are pruned with the
    `.NAME.lock` file beside each (`io.exclusive_dir`): build outputs, not sources."""
    skip = SKIP_DIRS | set(exclude_dirs)
    onerror = errors.append if errors is not None else None
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        here = Path(dirpath)
        links = {d for d in dirnames if d not in skip and _is_link(here / d)}
        builds = {d for d in dirnames if d not in skip | links and is_data_build(here / d)}
        dirnames[:] = sorted(d for d in dirnames if d not in skip | links | builds)
        locks = {f".{d}.lock" for d in builds}
        for fn in sorted((set(filenames) - locks) | links):
            yield here / fn


class _HeldoutDirs:
    """Whether a file lies under a directory marked with `HELDOUT_MARKER` (up to its root);
    directory answers are cached, so a tree costs one stat per directory."""

    def __init__(self) -> None:
        self.cache: dict[Path, bool] = {}

    def marked(self, f: Path, root: Path) -> bool:
        d = f.parent
        trail = []
        while True:
            if d in self.cache:
                hit = self.cache[d]
                break
            trail.append(d)
            if (d / HELDOUT_MARKER).is_file():
                hit = True
                break
            if d == root or d.parent == d:
                hit = False
                break
            d = d.parent
        for t in trail:
            self.cache[t] = hit
        return hit


def tree_items(
    cfg: SourceConfig,
    roots: list[tuple[Path, str, str | None]],
    extra_exclude_dirs: tuple[str, ...] = (),
    meta: dict[str, Any] | None = None,
    files: list[tuple[Path, Path]] | None = None,
) -> list[Item]:
    """Items for files under `roots` = [(root, label prefix, default license)].

    `files` (root, file) pairs replace the walk (git: tracked files only)."""
    candidates: list[Item] = []
    resolvers: list[TreeLicenses] = []
    sizes: list[int] = []
    skips: list[Item] = []
    pairs: list[tuple[Path, str, TreeLicenses, Path]] = []
    protected: dict[Path, str | None] = {}
    heldout = _HeldoutDirs()
    for root, label, default in roots:
        lic = TreeLicenses(root, default or cfg.license)
        protected[root] = protected_prefix(root)
        errors: list[OSError] = []
        walk = (
            [f for r, f in files if r == root]
            if files is not None
            else _walk(root, extra_exclude_dirs, errors)
        )
        for f in walk:
            pairs.append((f, label, lic, root))
        for err in errors:  # a directory we could not list: counted, never silently empty
            where = Path(err.filename) if err.filename is not None else root
            try:
                rel = where.relative_to(root).as_posix()
            except ValueError:
                rel = "."
            if rel == ".":  # the root itself (not a directory, no permission)
                shown = label or str(root)
            else:
                shown = f"{label}/{rel}/" if label else f"{rel}/"
            skips.append(
                Item(
                    source=cfg.name,
                    path=shown,
                    skip="unreadable",
                    detail=f"directory not listed: {err.strerror or err}",
                    meta=dict(meta or {}),
                )
            )
    for f, label, lic, root in pairs:
        rel = f.relative_to(root).as_posix()
        shown = f"{label}/{rel}" if label else rel
        if cfg.include and not _matches(rel, cfg.include):
            continue
        if cfg.exclude and _matches(rel, cfg.exclude):
            continue
        lang = language_for_path(rel)
        base = dict(
            source=cfg.name,
            path=shown,
            skip_filters=tuple(cfg.skip_filters),
            max_bytes=cfg.max_file_bytes,
            meta=dict(meta or {}),
        )
        prefix = protected[root]
        if prefix is not None and rel.startswith(prefix):
            skips.append(Item(**base, skip=PROBLEMS_SKIP))
            continue
        if f.name == HELDOUT_MARKER:
            continue  # the marker itself is metadata, not a held-out file
        if heldout.marked(f, root):
            skips.append(Item(**base, skip=HELDOUT_SKIP))
            continue
        if label == "stdlib" and stdlib_heldout(rel):  # the FIM suite's held-out files
            skips.append(Item(**base, skip=EVAL_HELDOUT_SKIP))
            continue
        if is_license_file(f.name):
            continue  # license texts are metadata for the files beside them, not documents
        try:
            st = f.lstat()
        except OSError:
            skips.append(Item(**base, skip="unreadable"))
            continue
        if stat.S_ISLNK(st.st_mode):
            # never followed (it may lead out of the source: ~/.ssh, /etc), but counted, so a
            # corpus whose files or directories are links says where they went
            skips.append(Item(**base, skip="symlink"))
            continue
        if lang is None:
            skips.append(Item(**base, skip="unsupported_type"))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader; sockets, devices
            skips.append(Item(**base, skip="not_a_regular_file"))
            continue
        if st.st_size > cfg.max_file_bytes:
            big = _too_large(cfg.max_file_bytes)
            skips.append(Item(**base, skip=big.reason, detail=big.detail))
            continue
        candidates.append(Item(**base, file=str(f), language=lang))
        resolvers.append(lic)
        sizes.append(st.st_size)
    lic_of = {id(it): r for it, r in zip(candidates, resolvers, strict=True)}
    kept = _apply_caps(candidates, sizes, cfg)
    for it in kept:  # license context only for the files actually taken (dirs are cached)
        assert it.file is not None
        it.license = lic_of[id(it)].for_file(Path(it.file))
    return sorted(kept + skips, key=lambda it: it.path or "")


def _missing(cfg: SourceConfig, path: str) -> Item:
    return Item(source=cfg.name, path=path, skip="missing_source")


def _within_budget(cfg: SourceConfig, items: Iterator[Item]) -> Iterator[Item]:
    """A record stream cut at `max_files` / `max_bytes`: records are taken in file order (a JSONL
    or Parquet file has no tree to sample from) and the stream stops before the first text item
    that would exceed either cap; skipped records pass through uncounted."""
    n = total = 0
    for item in items:
        if item.text is not None:
            if cfg.max_files is not None and n >= cfg.max_files:
                return
            size = len(item.text.encode("utf-8", "surrogatepass"))
            if cfg.max_bytes is not None and total + size > cfg.max_bytes:
                return
            n, total = n + 1, total + size
        yield item


def _record_file_items(
    cfg: SourceConfig, records: Callable[[SourceConfig, Path], Iterator[Item]]
) -> Iterator[Item]:
    """A one-file record source (JSONL, Parquet): its `records` within the budget, or a single
    `missing_source` item when the file is not there."""
    p = Path(cfg.path)
    if not p.is_file():
        yield _missing(cfg, cfg.path)
        return
    yield from _within_budget(cfg, records(cfg, p))


def jsonl_items(cfg: SourceConfig) -> Iterator[Item]:
    return _record_file_items(cfg, _jsonl_records)


def is_gzip(p: Path) -> bool:
    """Whether `p` is gzip-compressed: named `.gz` in any case (`DUMP.JSONL.GZ`) or starting
    with gzip's magic bytes (a `.jsonl` that is compressed). Case-sensitive names read the
    compressed bytes of `X.JSONL.GZ` as JSON lines: every record malformed."""
    if p.name.lower().endswith(".gz"):
        return True
    try:
        with open(p, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _jsonl_lines(f: Any) -> Iterator[bytes | str]:
    """The lines of a JSONL stream opened "rb": bytes, or text when the file starts with a
    UTF-16/32 byte-order mark (PowerShell's `>` writes UTF-16). Why: split at b"\n", such a
    file's lines cut code units in two; of a 7-line UTF-16 export, the first and last became
    `malformed_record` and the others parsed only by accident (json's encoding guess)."""
    head = f.peek(4)[:4]
    enc = next((name for mark, name in _UTF16_32_BOMS if head.startswith(mark)), None)
    if enc is None:
        yield from f
        return
    # the codec reads the BOM and its byte order; lines end at "\n" only, as in bytes mode
    yield from io.TextIOWrapper(f, encoding=enc.replace("-", "").lower(), newline="\n")


def _jsonl_records(cfg: SourceConfig, p: Path) -> Iterator[Item]:
    opener = gzip.open if is_gzip(p) else open
    try:
        with opener(p, "rb") as f:
            for lineno, raw in enumerate(_jsonl_lines(f), 1):
                if not raw.strip():
                    continue
                where = f"{p.name}:{lineno}"
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    detail = f"not a JSON line: {str(exc)[:120]}"
                    yield Item(source=cfg.name, path=where, skip="malformed_record", detail=detail)
                    continue
                yield _record_item(cfg, obj, where)
    except (OSError, EOFError, zlib.error):  # zlib.error: a corrupt deflate stream in a .gz
        yield Item(source=cfg.name, path=p.name, skip="unreadable")
    except UnicodeDecodeError as exc:  # a UTF-16/32 file (`_jsonl_lines`) with a broken unit
        detail = f"a broken {exc.encoding} code unit after its byte-order mark; re-encode as UTF-8"
        yield Item(source=cfg.name, path=p.name, skip="non_utf8", detail=detail)


MALFORMED_LICENSE = "malformed_license"


def _record_license(value: Any, default: str | None) -> str | None:
    """The licence a record states, as an SPDX expression (None: it states none).

    A record's own `license` overrides the source's; only an absent or null field falls back to
    the source licence. A list of SPDX strings (dataset metadata often has `licenses: [...]`)
    means all of them apply, so it becomes `A AND B` and the licence filter needs every part
    allowed; a list item that is itself an expression is parenthesised. Anything else (a dict,
    a number, a list holding non-strings or nothing) raises ValueError: relabelling a record
    whose licence we cannot read as the source's would launder e.g. a GPL record into MIT.
    """
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        parts = [" ".join(v.split()) for v in value]
        if len(parts) == 1:
            return parts[0]
        return " AND ".join(f"({p})" if " " in p else p for p in parts)
    raise ValueError(f"unreadable license field {json.dumps(value, default=str)[:80]}")


def _record_item(cfg: SourceConfig, obj: Any, where: str) -> Item:
    if not isinstance(obj, dict):
        detail = f"record is a {type(obj).__name__}, not an object"
        return Item(source=cfg.name, path=where, skip="malformed_record", detail=detail)
    if not isinstance(obj.get(cfg.text_field), str):
        # name the column: a wrong `text_field` otherwise shows only as every row rejected
        keys = ", ".join(sorted(map(str, obj))[:8]) + (", ..." if len(obj) > 8 else "")
        what = "missing" if obj.get(cfg.text_field) is None else "not a string"
        detail = f"text_field {cfg.text_field!r} {what}; record fields: {keys or '(none)'}"
        return Item(source=cfg.name, path=where, skip="malformed_record", detail=detail)
    url = obj.get("url")
    if url is not None and not isinstance(url, str):
        # dropping it would hide the record's host from the domain blocklist
        detail = f"url field not a string: {json.dumps(url, default=str)[:80]}"
        return Item(source=cfg.name, path=where, skip="malformed_record", detail=detail)
    path = obj.get("path") if isinstance(obj.get("path"), str) and obj["path"] else where
    lang = obj.get("language") if isinstance(obj.get("language"), str) else None
    if lang is None and path:
        lang = language_for_path(path)
    try:
        lic = _record_license(obj.get("license"), cfg.license)
    except ValueError as exc:
        return Item(source=cfg.name, path=path, skip=MALFORMED_LICENSE, detail=str(exc))
    meta = {}
    rid = obj.get("id")
    if isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
        meta["source_id"] = str(rid)  # a dataset's row number is an id too
    return Item(
        source=cfg.name,
        path=path,
        url=url,
        text=obj[cfg.text_field],
        language=lang or "text",
        license=normalize_license(lic) if lic else None,
        meta=meta,
        skip_filters=tuple(cfg.skip_filters),
        max_bytes=cfg.max_file_bytes,
    )


def parquet_items(cfg: SourceConfig) -> Iterator[Item]:
    return _record_file_items(cfg, _parquet_records)


def _parquet_records(cfg: SourceConfig, p: Path) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
        row = 0
        for batch in pf.iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                yield _record_item(cfg, obj, f"{p.name}:{row}")
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
        yield Item(source=cfg.name, path=p.name, skip=f"unreadable:{type(exc).__name__}")


def git_items(cfg: SourceConfig) -> list[Item]:
    root = Path(cfg.path)
    if not root.is_dir():
        return [_missing(cfg, cfg.path)]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            errors="surrogateescape",
        ).stdout.strip()
        remote = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            errors="surrogateescape",
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        # say why: "not a git repository", or git refusing a repository owned by another user
        # ("dubious ownership"; trusting it is the owner's call: git config safe.directory)
        err = getattr(exc, "stderr", None) or b""
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        detail = lines[0].strip()[:300] if lines else str(exc)[:300]
        return [Item(source=cfg.name, path=cfg.path, skip="not_a_git_repo", detail=detail)]
    root = root.resolve()
    files = [(root, root / p.decode("utf-8", "surrogateescape")) for p in out.split(b"\0") if p]
    meta: dict[str, Any] = {"repo": root.name}
    if head:
        meta["commit"] = head
    if remote:
        meta["repo_url"] = remote
    return tree_items(cfg, [(root, "", None)], meta=meta, files=files)


def _git_or_walk(cfg: SourceConfig, root: Path) -> list[Item]:
    """A `tree` source holding `.git`: its tracked files, or, when git cannot read the
    repository (a broken worktree link, a copied `.git`, another user's checkout: "dubious
    ownership"), the directory walk the source asked for (`.git` itself is never read). Why: the
    whole tree was one `not_a_git_repo` skip, so a user's tree with a stale `.git` became an
    empty source. A `git` source still fails with that skip: it asked for tracked files only."""
    items = git_items(cfg)
    if len(items) == 1 and items[0].skip == "not_a_git_repo":
        return tree_items(cfg, [(root, "", None)])
    return items


def generator_items(cfg: SourceConfig) -> Iterator[Item]:
    import hillclimb.problems as problems

    families = cfg.families or sorted(problems.TRAIN_FAMILIES)
    n = 0
    for fam in families:
        if fam not in problems.FAMILIES:
            yield Item(source=cfg.name, path=fam, skip="unknown_family")
            continue
        for tier in cfg.tiers:
            for p in problems.generate(fam, tier, cfg.per_tier, cfg.seed, split="train"):
                if cfg.max_files is not None and n >= cfg.max_files:
                    return
                n += 1
                yield Item(
                    source=cfg.name,
                    path=p.id,
                    text=problems.to_document(p),
                    language="reasoning" if p.kind == "reasoning" else "python",
                    license=cfg.license or GENERATED_LICENSE,
                    meta={"family": p.family, "tier": p.tier, "problem_id": p.id},
                    skip_filters=tuple(cfg.skip_filters),
                    max_bytes=cfg.max_file_bytes,
                )


def python_env_roots() -> list[tuple[Path, str, str | None]]:
    """This interpreter's stdlib (PSF-2.0 by its LICENSE.txt) and its site-packages dirs."""
    roots: list[tuple[Path, str, str | None]] = []
    std = Path(sysconfig.get_paths()["stdlib"])
    if std.is_dir():
        roots.append((std, "stdlib", None))
    seen: set[Path] = set()
    sps = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    sps += [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    for sp in sps:
        p = Path(sp)
        if p.is_dir() and p.resolve() not in seen and p.resolve() != std.resolve():
            seen.add(p.resolve())
            roots.append((p, f"site-packages{len(seen) - 1 or ''}", None))
    return roots


def system_code_roots(parts: list[str]) -> tuple[list[tuple[Path, str, str | None]], list[Path]]:
    """System C headers and global node packages (dirs), JDK src.zip (archives); absent skipped."""
    roots: list[tuple[Path, str, str | None]] = []
    zips: list[Path] = []
    if "c_headers" in parts:
        for d in ("/usr/include", "/usr/local/include"):
            if Path(d).is_dir():
                roots.append((Path(d), d.strip("/").replace("/", "_"), None))
    if "node" in parts:
        for d in ("/usr/lib/node_modules", "/usr/local/lib/node_modules"):
            if Path(d).is_dir():
                roots.append((Path(d), d.strip("/").replace("/", "_"), None))
    if "jdk" in parts:
        found = (
            sorted(Path("/usr/lib/jvm").glob("*/lib/src.zip"))
            if Path("/usr/lib/jvm").is_dir()
            else []
        )
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "lib" / "src.zip").is_file():
            found = [Path(java_home) / "lib" / "src.zip"]
        if found:
            zips.append(found[-1])  # one JDK: several installs are near-copies of each other
    return roots, zips


def zip_items(cfg: SourceConfig, archive: Path) -> list[Item]:
    label = archive.parent.parent.name
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            head_license = None
            for i in infos:
                if is_license_file(Path(i.filename).name) and i.file_size < 200_000:
                    text = zf.read(i).decode("utf-8", "replace")
                    lic = license_from_text(text)
                    if lic != UNKNOWN:
                        head_license = lic
                        break
    except (OSError, zipfile.BadZipFile):
        return [Item(source=cfg.name, path=str(archive), skip="unreadable")]
    items: list[Item] = []
    sizes: list[int] = []
    for i in sorted(infos, key=lambda i: i.filename):
        shown = f"{label}/{i.filename}"
        lang = language_for_path(i.filename)
        if lang is None or is_license_file(Path(i.filename).name):
            continue
        if cfg.include and not _matches(i.filename, cfg.include):
            continue
        if cfg.exclude and _matches(i.filename, cfg.exclude):
            continue
        items.append(
            Item(
                source=cfg.name,
                path=shown,
                zip_file=str(archive),
                language=lang,
                license=head_license or cfg.license,
                meta={"member": i.filename},
                skip_filters=tuple(cfg.skip_filters),
                max_bytes=cfg.max_file_bytes,
            )
        )
        sizes.append(i.file_size)
    return (
        items
        if (cfg.max_files is None and cfg.max_bytes is None)
        else _apply_caps(items, sizes, cfg)
    )


def source_items(cfg: SourceConfig) -> Iterator[Item]:
    """The deterministic item stream of one source."""
    kind = cfg.kind
    if kind == "tree":
        root = Path(cfg.path)
        if not root.exists():
            yield _missing(cfg, cfg.path)
        elif (root / ".git").exists():
            yield from _git_or_walk(cfg, root)
        elif root.is_file():
            yield from tree_items(cfg, [(root.parent, "", None)], files=[(root.parent, root)])
        else:
            yield from tree_items(cfg, [(root, "", None)])
    elif kind == "git":
        yield from git_items(cfg)
    elif kind == "jsonl":
        yield from jsonl_items(cfg)
    elif kind == "parquet":
        yield from parquet_items(cfg)
    elif kind == "generators":
        yield from generator_items(cfg)
    elif kind == "python_env":
        roots = python_env_roots()
        yield from tree_items(
            cfg, roots, extra_exclude_dirs=("site-packages", "dist-packages", "lib-dynload")
        )
    elif kind == "system_code":
        roots, zips = system_code_roots(cfg.parts)
        if not roots and not zips:
            yield Item(source=cfg.name, path="system_code", skip="missing_source")
        if roots:
            yield from tree_items(cfg, roots)
        for z in zips:
            yield from zip_items(cfg, z)
    else:  # validated earlier; kept for library callers
        raise ValueError(f"unknown source kind {kind}")


def detect_kind(path: str) -> str:
    """Source kind for an ad hoc `--source PATH`."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():  # a directory is a tree whatever its name (`dumps.jsonl/`, `x.parquet/`)
        return "git" if (p / ".git").exists() else "tree"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "tree"


def all_items_for(cfg: Any) -> Iterator[Item]:
    """The item stream of every source of a DataConfig, in recipe order."""
    for s in cfg.sources:
        yield from source_items(s)
