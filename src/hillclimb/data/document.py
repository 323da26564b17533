"""The corpus document record and language detection.

Why one small dataclass: every stage after ingestion (filters, dedup, writers, the tokenizer,
training) agrees on the record in docs/areas/data.md — text plus provenance (source, path or
URL, language, SPDX license, split, the filters that kept it). Language comes from the file
name, which is how code corpora (The Stack, StarCoder data) label it: cheap, deterministic, and
right for code, where content sniffing is both slow and unreliable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

EXT_LANGUAGE: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyx": "cython", ".pxd": "cython",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".hh": "cpp", ".hxx": "cpp", ".cu": "cuda", ".cuh": "cuda",
    ".java": "java", ".kt": "kotlin", ".scala": "scala", ".groovy": "groovy",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".m": "objective-c", ".mm": "objective-c", ".cs": "csharp", ".fs": "fsharp",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".fish": "shell",
    ".pl": "perl", ".pm": "perl", ".lua": "lua", ".r": "r", ".jl": "julia",
    ".hs": "haskell", ".ml": "ocaml", ".mli": "ocaml", ".ex": "elixir", ".exs": "elixir",
    ".erl": "erlang", ".clj": "clojure", ".el": "lisp", ".lisp": "lisp", ".scm": "scheme",
    ".sql": "sql", ".html": "html", ".htm": "html", ".css": "css", ".scss": "css",
    ".vue": "vue", ".svelte": "svelte", ".xml": "xml", ".json": "json", ".yaml": "yaml",
    ".yml": "yaml", ".toml": "toml", ".ini": "ini", ".cfg": "ini", ".cmake": "cmake",
    ".mk": "makefile", ".proto": "protobuf", ".tex": "tex", ".f90": "fortran", ".f": "fortran",
    ".zig": "zig", ".nim": "nim", ".dart": "dart", ".v": "verilog", ".vhd": "vhdl",
    ".asm": "assembly", ".s": "assembly", ".bat": "batch", ".ps1": "powershell",
    ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".txt": "text",
}  # fmt: skip

NAME_LANGUAGE: dict[str, str] = {
    "Makefile": "makefile",
    "GNUmakefile": "makefile",
    "Dockerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "README": "text",
}

# Languages judged by prose heuristics rather than code heuristics.
TEXT_LANGUAGES = frozenset({"text", "markdown", "rst", "tex"})


def language_for_path(path: str) -> str | None:
    """Language label for a file name, or None if we do not take files of this type."""
    p = PurePosixPath(path)
    if p.name in NAME_LANGUAGE:
        return NAME_LANGUAGE[p.name]
    return EXT_LANGUAGE.get(p.suffix.lower())


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Document:
    """One corpus document with provenance (the record in DIR/documents/*.jsonl.gz)."""

    text: str
    source: str
    path: str | None = None
    url: str | None = None
    language: str = "text"
    license: str = "unknown"
    split: str = "train"
    kept_by: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # extra provenance (commit, family, ...)
    skip_filters: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return text_sha256(self.text)

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8", "surrogatepass"))

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "path": self.path,
            "url": self.url,
            "language": self.language,
            "license": self.license,
            "split": self.split,
            "kept_by": list(self.kept_by),
        }
        for k, v in self.meta.items():
            if k not in rec:
                rec[k] = v
        return rec
