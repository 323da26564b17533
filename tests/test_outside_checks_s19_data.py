"""Session 19 outside checks of `hillclimb data build` and `hillclimb tokenizer train` on corpora
unlike the project's own: non-UTF-8 file names, JSON records holding lone surrogates, corrupt
gzip, directories that cannot be listed, a directory named like a JSONL file, git refusing a
repository, and SPDX tags written in other languages' comment syntax."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.data.config import DataConfig, DecontaminateConfig, SourceConfig
from hillclimb.data.pipeline import build

MIT = (
    "MIT License\n\nCopyright (c) 2024 Someone\n\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n"
)
NO_DECONTAM = DecontaminateConfig(enabled=False)


def _code(name: str, n: int) -> str:
    return f"def {name}(value):\n    # scale the value and shift it a little\n    return value * {n} + 7\n"


def _cfg(*sources: SourceConfig, **kw) -> DataConfig:
    kw.setdefault("decontaminate", NO_DECONTAM)
    return DataConfig(sources=list(sources), val_fraction=0.5, **kw)


def _strict_records(out: Path, sub: str) -> list[dict]:
    """Every record of out/sub/*.jsonl.gz read the way any JSON tool reads it: strict UTF-8."""
    recs = []
    for f in sorted((out / sub).glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            recs += [json.loads(line) for line in fh]
    return recs


def _rejects(out: Path) -> list[dict]:
    return _strict_records(out, "rejects")


def test_non_utf8_file_names_keep_every_output_file_valid_utf8(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "LICENSE").write_text(MIT)
    bad = os.fsencode(src) + b"/caf\xe9_module.py"
    with open(bad, "w") as f:
        f.write(_code("latin_named", 3))
    (src / "plain.py").write_text(_code("plain", 5))
    probe = (
        "seventeen purple elephants dance happily around the old oak tree "
        "while the quick brown fox sleeps under a warm summer sky"
    )
    evals = tmp_path / "evals.jsonl"
    evals.write_text(json.dumps({"id": "p1", "text": probe}) + "\n")
    with open(os.fsencode(src) + b"/con\xfftaminated.py", "w") as f:
        f.write(f"def g(x):\n    '''{probe}'''\n    return x\n")
    decon = DecontaminateConfig(
        problems_n_per_tier=1, problems_families=["arith"], suites=[], files=[str(evals)]
    )
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="tree", name="t", path=str(src)), decontaminate=decon), out)
    # documents and rejects are strict UTF-8 JSON and the name comes back exactly
    docs = _strict_records(out, "documents")
    assert sorted(d["path"] for d in docs) == ["caf\udce9_module.py", "plain.py"]
    rej = _rejects(out)
    assert [(r["path"], r["reason"]) for r in rej] == [("con\udcfftaminated.py", "contaminated")]
    # the card names the contaminated file; it was unwritable (UnicodeEncodeError) before
    assert "con\\udcfftaminated.py" in (out / "DATA_CARD.md").read_text(encoding="utf-8")
    assert (out / "build.json").is_file()


def test_record_text_with_a_lone_surrogate_is_a_non_utf8_skip(tmp_path):
    recs = tmp_path / "recs.jsonl"
    bad = _code("surrogate_holder", 3).replace("scale", "scale \ud800")
    recs.write_text(
        json.dumps({"text": bad, "path": "a.py"})
        + "\n"
        + json.dumps({"text": _code("fine", 4), "path": "b.py"})
        + "\n"
        + json.dumps({"text": _code("odd_path", 6), "path": "c\udcff.py"})
        + "\n"
    )
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="jsonl", name="j", path=str(recs), license="MIT")), out)
    docs = _strict_records(out, "documents")
    assert sorted(d["path"] for d in docs) == ["b.py", "c\udcff.py"]
    (rej,) = _rejects(out)
    assert (rej["path"], rej["reason"]) == ("a.py", "non_utf8")
    assert "U+D800" in rej["detail"]
    # the corpus trains a tokenizer (before: the documents file was not UTF-8)
    assert main(["tokenizer", "train", "--corpus", str(out), "--vocab-size", "300",
                 "--out", str(tmp_path / "tok")]) == 0  # fmt: skip


def test_corrupt_gzip_is_an_error_message_not_a_traceback(tmp_path, capsys):
    good = gzip.compress(b'{"text": "def f():\\n    return 1234567 + 7654321\\n"}\n' * 200, mtime=0)
    bad = bytearray(good)
    for i in range(30, 60):
        bad[i] ^= 0x55  # the deflate stream, not the header: zlib.error, not BadGzipFile
    path = tmp_path / "corrupt.jsonl.gz"
    path.write_bytes(bytes(bad))
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="jsonl", name="j", path=str(path), license="MIT")), out)
    assert [r["reason"] for r in _rejects(out)] == ["unreadable"]
    assert main(["tokenizer", "train", "--corpus", str(path), "--vocab-size", "300",
                 "--out", str(tmp_path / "tok")]) != 0  # fmt: skip
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err
    # a built corpus whose documents file was damaged afterwards: `data tokenize` reads it too
    from hillclimb.data.jsonl import iter_jsonl
    from hillclimb.errors import HillclimbError

    with pytest.raises(HillclimbError, match="cannot read"):
        list(iter_jsonl(path))


def test_tokenizer_train_on_non_utf8_names_and_surrogate_text(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(4):
        with open(os.fsencode(plain) + f"/m{i}_\xff.py".encode("latin-1"), "w") as f:
            f.write(_code(f"name_{i}", i + 2))
    assert main(["tokenizer", "train", "--corpus", str(plain), "--vocab-size", "300",
                 "--out", str(tmp_path / "tok")]) == 0  # fmt: skip
    recs = tmp_path / "recs.jsonl"
    recs.write_text(
        json.dumps({"text": "ordinary text", "split": "train"})
        + "\n"
        + json.dumps({"text": "abc \udc80 def", "split": "train"})
        + "\n"
    )
    assert main(["tokenizer", "train", "--corpus", str(recs), "--vocab-size", "300",
                 "--out", str(tmp_path / "tok2")]) != 0  # fmt: skip
    err = capsys.readouterr().err
    assert "recs.jsonl:2" in err and "lone surrogate" in err and "Traceback" not in err
    assert not (tmp_path / "tok2").exists()


def test_directories_that_cannot_be_listed_are_counted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "LICENSE").write_text(MIT)
    (src / "top.py").write_text(_code("top", 3))
    # a tree deeper than PATH_MAX: os.walk cannot list the last directory and, by default,
    # says nothing; its file vanished from the corpus without a count
    os.makedirs(src / "deep", exist_ok=True)
    here = os.open(src / "deep", os.O_RDONLY)
    try:
        for _ in range(22):
            os.mkdir("n" * 200, dir_fd=here)
            nxt = os.open("n" * 200, os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = nxt
        fd = os.open("hidden.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=here)
        os.write(fd, _code("hidden", 4).encode())
        os.close(fd)
    finally:
        os.close(here)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    build(
        _cfg(
            SourceConfig(kind="tree", name="t", path=str(src)),
            SourceConfig(kind="tree", name="f", path=str(fifo)),
        ),
        out,
    )
    rej = {(r["source"], r["reason"]): r for r in _rejects(out)}
    assert set(rej) == {("t", "unreadable"), ("f", "unreadable")}
    assert rej[("t", "unreadable")]["path"].startswith("deep/nnnn")
    assert "File name too long" in rej[("t", "unreadable")]["detail"]
    assert rej[("f", "unreadable")]["path"] == str(fifo)
    assert "Not a directory" in rej[("f", "unreadable")]["detail"]
    card = json.loads((out / "data_card.json").read_text())
    ingest = next(f for f in card["filters"] if f["name"] == "ingest")
    assert ingest["reasons"]["unreadable"] == 2


def test_a_directory_named_like_a_jsonl_file_is_a_tree(tmp_path):
    d = tmp_path / "dump.jsonl"
    d.mkdir()
    (d / "LICENSE").write_text(MIT)
    (d / "a.py").write_text(_code("in_a_dir", 3))
    (d / "b.py").write_text(_code("also_in_it", 5))
    from hillclimb.data.sources import detect_kind

    assert detect_kind(str(d)) == "tree"
    assert detect_kind(str(tmp_path / "real.jsonl")) == "jsonl"
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind=detect_kind(str(d)), name="d", path=str(d))), out)
    assert sorted(r["path"] for r in _strict_records(out, "documents")) == ["a.py", "b.py"]


def test_git_refusing_a_repository_says_why(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".git").write_text("gitdir: /nonexistent/elsewhere\n")  # a broken worktree link
    (repo / "a.py").write_text(_code("a", 3))
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="git", name="g", path=str(repo))), out)
    (rej,) = _rejects(out)
    assert rej["reason"] == "not_a_git_repo"
    assert "not a git repository" in rej["detail"]
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0


@pytest.mark.parametrize(
    "header, expected",
    [
        ("(* SPDX-License-Identifier: GPL-3.0-only *)", "GPL-3.0-only"),  # OCaml, Pascal
        ("{- SPDX-License-Identifier: GPL-3.0-only -}", "GPL-3.0-only"),  # Haskell
        ("{# SPDX-License-Identifier: AGPL-3.0-only #}", "AGPL-3.0-only"),  # Jinja
        ("<%-- SPDX-License-Identifier: GPL-2.0-only --%>", "GPL-2.0-only"),  # JSP
        ('""" SPDX-License-Identifier: GPL-3.0-or-later """', "GPL-3.0-or-later"),
        ("// SPDX-License-Identifier: GPL-3.0-only;", "GPL-3.0-only"),
        ("# SPDX-License-Identifier: GPL-3.0-only, see LICENSE", "GPL-3.0-only"),
        ("# spdx-license-identifier: GPL-3.0-only", "GPL-3.0-only"),
        (
            "/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */",
            "GPL-2.0 WITH Linux-syscall-note",
        ),
        (
            "/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) */",
            "(GPL-2.0 WITH Linux-syscall-note)",
        ),
        ("# SPDX-License-Identifier: LicenseRef-Acme-Internal", "unknown"),
        # unchanged forms
        ("/* SPDX-License-Identifier: (MIT OR Apache-2.0) */", "(MIT OR Apache-2.0)"),
        ("<!-- SPDX-License-Identifier: MIT -->", "MIT"),
        ("# SPDX-License-Identifier: LGPL-2.1+", "LGPL-2.1+"),
    ],
)
def test_spdx_tags_in_any_comment_syntax_override_the_directory(header, expected):
    from hillclimb.data.config import DEFAULT_ALLOW
    from hillclimb.data.license import license_allowed, license_from_header

    got = license_from_header(f"{header}\nlet x = 1\n", code=True)
    assert got == expected
    permissive = expected.startswith(("(MIT", "MIT"))
    assert license_allowed(got, DEFAULT_ALLOW) is permissive


def test_permissive_exception_expression_is_allowed_and_a_mention_is_no_tag():
    from hillclimb.data.config import DEFAULT_ALLOW
    from hillclimb.data.license import license_allowed, license_from_header

    got = license_from_header("// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception\n")
    assert got == "Apache-2.0 WITH LLVM-exception"
    assert license_allowed(got, DEFAULT_ALLOW)
    # code that builds a tag is not one
    assert license_from_header("x = 'SPDX-License-Identifier: ' + spdx\n", code=True) is None


def test_gpl_file_in_an_mit_tree_is_not_relabelled_mit(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "LICENSE").write_text(MIT)
    (src / "ok.ml").write_text("(* a permissive module *)\nlet add_numbers a b = a + b + 1234\n")
    (src / "gpl.ml").write_text(
        "(* SPDX-License-Identifier: GPL-3.0-only *)\nlet mul_numbers a b = a * b * 4321\n"
    )
    (src / "kernel.h").write_text(
        "/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */\n"
        "#define KERNEL_VALUE_FOR_THINGS 12345\nint kernel_function(int value);\n"
    )
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="tree", name="t", path=str(src))), out)
    docs = _strict_records(out, "documents")
    assert [(d["path"], d["license"]) for d in docs] == [("ok.ml", "MIT")]
    reasons = sorted((r["path"], r["reason"]) for r in _rejects(out))
    assert reasons == [
        ("gpl.ml", "gpl-family:GPL-3.0-only"),
        ("kernel.h", "gpl-family:GPL-2.0 WITH Linux-syscall-note"),
    ]


def test_a_command_line_argument_that_is_not_utf8_can_hold_an_output_dir(tmp_path, monkeypatch):
    """`exclusive_dir` writes the holder's command line into its lock: an argument with bytes
    that are not UTF-8 (a file name, surrogate-escaped in sys.argv) made every command that
    takes the lock fail with a UnicodeEncodeError traceback before any work."""
    import sys

    from hillclimb.io import exclusive_dir

    monkeypatch.setattr(sys, "argv", ["hillclimb", "data", "build", "--source", "bad\udcffdir"])
    with exclusive_dir(tmp_path / "out"):
        locks = [p for p in tmp_path.glob(".*lock") if p.is_file()]  # beside the directory
        assert locks and any(b"bad\xffdir" in p.read_bytes() for p in locks)


def test_a_recipe_from_a_pipe_is_refused_with_what_to_do(tmp_path):
    """`--recipe <(printf ...)` was "recipe ... not found" although the path exists."""
    import subprocess as sp
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    p = sp.run(
        ["bash", "-c", f'"{sys.executable}" -m hillclimb climb --recipe <(printf "[climb]\\n") '
         f'--out "{tmp_path}/run"'],
        capture_output=True, text=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )  # fmt: skip
    assert p.returncode != 0 and "not a regular file" in p.stderr, p.stderr[-800:]
    assert "Traceback" not in p.stderr and not (tmp_path / "run").exists()


def test_data_card_tables_survive_pipes_and_newlines_in_names():
    from hillclimb.data.card import _match_rows, _table

    rows = _table("by source", {"a|b\nc": {"documents": 1, "bytes": 2}}, False)
    row = rows[4]
    assert row.count(" | ") == 2 and "\n" not in row and "a\\|b c" in row
    m = _match_rows(
        [{"probe": "p", "probe_origin": "o", "source": "s|t", "path": "x\ny|z", "match": "w"}]
    )[2]
    assert m.count(" | ") == 3 and "\n" not in m and "s\\|t" in m


def test_token_bytes_sum_to_the_texts_utf8_length():
    """Bits per byte divide by the bytes the tokens stand for. A token holding part of a
    multi-byte character decodes alone to U+FFFD, and `token_bytes` counted its 3 bytes: "é😀"
    came to 18 bytes instead of 6, flattering bpb on non-ASCII text."""
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    for text in (
        "é😀",
        "naïve — 漢字 ≥ ∑",
        "plain ascii\n\tdef f(x): return x",
    ):
        ids = tok.encode(text)
        assert sum(tok.token_bytes[i] for i in ids) == len(text.encode("utf-8")), text
        assert b"".join(tok.token_raw_bytes[i] for i in ids) == text.encode("utf-8")
    assert all(tok.token_bytes[i] == 0 for i in tok.special_ids.values())
