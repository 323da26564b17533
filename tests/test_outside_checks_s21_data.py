"""Session 21 outside checks of `hillclimb data build`: documents holding Unicode line
separators, an output directory inside the source tree, private keys without their END line,
source options that name no filter, LSH settings that turn near-dedup off, `--resume` asked for
shards, and JSONL sources with upper-case or `.ndjson.gz` names."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.data.config import DataConfig, DecontaminateConfig, SourceConfig
from hillclimb.data.pipeline import build
from hillclimb.errors import ConfigError

MIT = (
    "MIT License\n\nCopyright (c) 2024 Someone\n\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n"
)
NO_DECONTAM = DecontaminateConfig(enabled=False)


def _code(name: str, n: int) -> str:
    return f"def {name}(value):\n    # scale the value and shift it a little\n    return value * {n} + 7\n"


def _cfg(*sources: SourceConfig, **kw) -> DataConfig:
    kw.setdefault("decontaminate", NO_DECONTAM)
    kw.setdefault("val_fraction", 0.5)
    return DataConfig(sources=list(sources), **kw)


def _records(out: Path, sub: str) -> list[dict]:
    recs = []
    for f in sorted((out / sub).glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            recs += [json.loads(line) for line in fh]
    return recs


def _tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "LICENSE").write_text(MIT)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------
# 1. U+2028 / U+2029 / U+0085 inside a document
# ---------------------------------------------------------------------------------------------


def test_documents_holding_unicode_line_separators_build(tmp_path):
    """JSON keeps U+2028, U+2029 and U+0085 raw (`ensure_ascii=False`); the work chunks were read
    back with `str.splitlines`, which splits on them: the dedup stage died with a JSONDecodeError
    traceback, and every `--resume` died the same way."""
    texts = {
        "a.js": 'var s = "one\u2028two three four five six";\nfunction f(x) { return x * 2 + 17; }\n',
        "b.py": _code("plain", 3),
        "c.py": _code("nel", 4).replace("scale", "sc\x85ale"),
        "d.md": "A paragraph\u2029of prose that goes on for a while about many different things.\n",
    }
    src = _tree(tmp_path / "src", texts)
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="tree", name="t", path=str(src))), out, progress=False)
    docs = {d["path"]: d["text"] for d in _records(out, "documents")}
    assert set(docs) == {"a.js", "b.py", "c.py"}  # d.md: prose too short for the quality filter
    assert docs["a.js"] == texts["a.js"] and docs["c.py"] == texts["c.py"]
    (rej,) = _records(out, "rejects")
    assert rej["path"] == "d.md" and rej["text"] == texts["d.md"]


def test_eval_files_holding_unicode_line_separators_are_read(tmp_path):
    """An eval file is JSON lines split on "\\n": a probe text with a raw U+2028 was refused as
    "line 1 is not JSON" (`str.splitlines`)."""
    from hillclimb.data.decontam import file_probes

    probe = "seventeen purple elephants\u2028dance happily around the old oak tree at noon"
    f = tmp_path / "evals.jsonl"
    f.write_text(
        json.dumps({"id": "p1", "text": probe}, ensure_ascii=False) + "\n" + json.dumps("x\x85y")
    )
    probes, info = file_probes(str(f), ["text"])
    assert [p.text for p in probes] == [probe, "x\x85y"] and info["probes"] == 2


# ---------------------------------------------------------------------------------------------
# 2. --out inside a --source tree
# ---------------------------------------------------------------------------------------------


def test_an_output_dir_inside_the_source_tree_is_not_a_source(tmp_path, monkeypatch):
    """`hillclimb data build --source . --out corpus` in a project: the build read its own
    `.work/state.json` as a training document, and a `--force` rebuild also its old
    `DATA_CARD.md`, `data_card.json` and `build.json` (and its staging directory), so the second
    corpus differed from the first and held the first one's card."""
    src = _tree(tmp_path / "proj", {"a.py": _code("alpha", 3), "pkg/b.py": _code("beta", 5)})
    monkeypatch.chdir(src)
    cfg = _cfg(SourceConfig(kind="tree", name="t", path="."))
    first = build(cfg, "corpus", progress=False)
    paths = sorted(d["path"] for d in _records(src / "corpus", "documents"))
    assert paths == ["a.py", "pkg/b.py"]
    assert _records(src / "corpus", "rejects") == []  # not even the lock file beside it
    again = build(cfg, "corpus", force=True, progress=False)
    assert sorted(d["path"] for d in _records(src / "corpus", "documents")) == paths
    assert again == first
    # another build directory in the tree (an earlier corpus) is pruned too; a directory that
    # merely holds a file named build.json is not
    (src / "web").mkdir()
    (src / "web" / "build.json").write_text('{"format": "webpack", "entry": "src/index.js"}')
    (src / "web" / "c.py").write_text(_code("gamma", 7))
    build(cfg, "corpus2", progress=False)
    paths2 = sorted(d["path"] for d in _records(src / "corpus2", "documents"))
    assert paths2 == ["a.py", "pkg/b.py", "web/build.json", "web/c.py"]


# ---------------------------------------------------------------------------------------------
# 3. private keys without their END line; secrets cut in two in rejects
# ---------------------------------------------------------------------------------------------

KEY_LINE = "MIIEowIBAAKCAQEA1xV3Zbq9Kq8s7G2yP0aB4cD9eF1gH3iJ5kL7mNq2Wz8Xc4Vb6Nm0Lk"


def test_a_private_key_without_its_end_line_is_redacted():
    """Only BEGIN ... END blocks were redacted: a key pasted in part, or a JSON service-account
    file cut short, kept every line of key material."""
    from hillclimb.data.secrets import Redactor

    pem = f"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n{KEY_LINE}\n{KEY_LINE[:20]}==\n"
    text, counts = Redactor().redact(f'KEY = """{pem}"""\nprint(KEY)\n')
    assert text == 'KEY = """<PRIVATE_KEY>"""\nprint(KEY)\n' and counts["private_key"] == 1
    escaped = '{"private_key": "-----BEGIN PRIVATE KEY-----\\n' + KEY_LINE + "\\n" + KEY_LINE
    text, _ = Redactor().redact(escaped + '", "client_email": "x"}')
    assert text == '{"private_key": "<PRIVATE_KEY>", "client_email": "x"}'
    crlf = f"-----BEGIN OPENSSH PRIVATE KEY-----\r\n{KEY_LINE}\r\n{KEY_LINE}"
    assert Redactor().redact(crlf)[0] == "<PRIVATE_KEY>"
    # complete blocks are as before
    whole = f"-----BEGIN EC PRIVATE KEY-----\n{KEY_LINE}\n-----END EC PRIVATE KEY-----\nx = 1\n"
    assert Redactor().redact(whole)[0] == "<PRIVATE_KEY>\nx = 1\n"


def test_secrets_in_rejects_are_redacted_before_the_text_is_cut(tmp_path):
    """A reject's text was cut at `rejects_text_chars` and then redacted: a key whose END line (or
    an AWS key whose last characters) fell past the cut no longer matched and its first part
    stayed in `rejects/`."""
    head = "# SPDX-License-Identifier: GPL-3.0-only\n" + "# filler line of the header\n" * 10
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_LINE}\n{KEY_LINE}\n-----END RSA PRIVATE KEY-----"
    aws = "AKIAIOSFODNN7EXAMPLE"
    src = _tree(
        tmp_path / "src",
        {
            "key.py": head + f'KEY = """{pem}"""\n',
            "aws.py": head + f'ACCESS = "{aws}"\n',
            "ok.py": _code("fine", 3),
        },
    )
    cut = len(head) + 100  # inside the key body; inside the AWS key: len(head) + 14
    out = tmp_path / "out"
    for n, name in ((cut, "key.py"), (len(head) + 14, "aws.py")):
        cfg = _cfg(SourceConfig(kind="tree", name="t", path=str(src)), rejects_text_chars=n)
        build(cfg, out, force=out.exists(), progress=False)
        rej = {r["path"]: r for r in _records(out, "rejects")}[name]
        assert rej["reason"] == "gpl-family:GPL-3.0-only"
        assert KEY_LINE[:12] not in rej["text"] and "AKIAIOSF" not in rej["text"], rej["text"]
        assert len(rej["text"]) <= n


# ---------------------------------------------------------------------------------------------
# 4. skip_filters: names that are no filter; the AI detector
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qualty", "licence", "dedup", "ingest", "Quality"])
def test_skip_filters_naming_no_filter_is_a_config_error(name):
    """A misspelt `skip_filters` entry was ignored without a word: the filter the user meant to
    turn off for a source still ran (a typo must not silently become a default)."""
    from hillclimb.data.config import data_config_from_dict

    table = {"sources": [{"kind": "tree", "path": "/src", "skip_filters": ["secrets", name]}]}
    with pytest.raises(ConfigError, match=rf"skip_filters \['{name}'\].*known: \['license'"):
        data_config_from_dict(table)


def test_skip_filters_ai_detector_keeps_the_sources_documents(tmp_path):
    """`skip_filters = ["ai_detector"]` was honoured by the per-document filters only: the
    Binoculars detector (run in batches after them) still scored and dropped the source's
    documents."""
    from hillclimb.data.config import AIContentConfig

    a = _tree(tmp_path / "a", {"a1.py": _code("first", 3), "a2.py": _code("second", 5)})
    b = _tree(tmp_path / "b", {"b1.py": _code("third", 7), "b2.py": _code("fourth", 9)})
    cfg = _cfg(
        SourceConfig(kind="tree", name="judged", path=str(a)),
        SourceConfig(kind="tree", name="trusted", path=str(b), skip_filters=["ai_detector"]),
        ai_content=AIContentConfig(observer="obs", performer="perf", threshold=0.5),
    )
    scored: list[str] = []

    def scorer(texts: list[str]) -> list[float]:  # every text reads as machine-written
        scored.extend(texts)
        return [0.1] * len(texts)

    out = tmp_path / "out"
    build(cfg, out, progress=False, ai_scorer=scorer)
    docs = _records(out, "documents")
    assert sorted(d["path"] for d in docs) == ["b1.py", "b2.py"]
    assert all("ai_detector" not in d["kept_by"] for d in docs)
    assert sorted(r["path"] for r in _records(out, "rejects")) == ["a1.py", "a2.py"]
    assert len(scored) == 2


# ---------------------------------------------------------------------------------------------
# 5. LSH settings that compare nothing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bands, rows", [(0, 5), (-1, -1), (4, 0), (-2, -8)])
def test_lsh_bands_and_rows_below_one_are_config_errors(bands, rows):
    """`bands = 0` (or `bands = rows = -1`, whose product passed the `<= num_perm` check) built
    a corpus with near-duplicates left in while the card said `near: true`."""
    from hillclimb.data.config import data_config_from_dict

    table = {
        "sources": [{"kind": "tree", "path": "/src"}],
        "dedup": {"bands": bands, "rows": rows},
    }
    with pytest.raises(ConfigError, match="bands and dedup.rows must be >= 1"):
        data_config_from_dict(table)
    data_config_from_dict({**table, "dedup": {"bands": 16, "rows": 8}})  # 128 = num_perm: fine


# ---------------------------------------------------------------------------------------------
# 6. --resume of a complete build asked for shards
# ---------------------------------------------------------------------------------------------


def test_resume_of_a_complete_build_with_a_tokenizer_writes_the_shards(tmp_path, capsys):
    """`data build ... --resume --tokenizer T` on a complete build without shards (or with
    another tokenizer's) returned the old card and exit 0: no shards, no tokens, no word."""
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    src = _tree(tmp_path / "src", {"a.py": _code("alpha", 3), "b.py": _code("beta", 5)})
    tok = tmp_path / "tok"
    bytelevel_tokenizer().save(tok)
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[data]\nval_fraction = 0.5\n[[data.sources]]\nkind = "tree"\npath = "{src}"\n'
        "[data.decontaminate]\nenabled = false\n"
    )
    out = tmp_path / "out"
    base = ["data", "build", "--recipe", str(recipe), "--out", str(out)]
    assert main(base) == 0
    assert not (out / "shards").exists()
    capsys.readouterr()
    assert main([*base, "--resume", "--tokenizer", str(tok)]) == 0
    assert "tokens" in capsys.readouterr().out
    card = json.loads((out / "data_card.json").read_text())
    assert card["totals"]["tokens"] > 0 and (out / "shards" / "meta.json").is_file()
    assert json.loads((out / "build.json").read_text())["tokenizer"] == str(tok.resolve())
    # the same tokenizer again: nothing to do, the shards stay as they are
    meta = (out / "shards" / "meta.json").stat().st_mtime_ns
    assert main([*base, "--resume", "--tokenizer", str(tok)]) == 0
    assert (out / "shards" / "meta.json").stat().st_mtime_ns == meta
    # a plain --resume (the climb's call) does not touch the shards either
    assert main([*base, "--resume"]) == 0 and (out / "shards" / "meta.json").is_file()


# ---------------------------------------------------------------------------------------------
# 7. JSONL sources and eval files named in upper case, `.ndjson.gz`, with a BOM
# ---------------------------------------------------------------------------------------------


def _jsonl_body(n: int) -> str:
    recs = [{"text": _code(f"rec_{i}", i + 2), "path": f"f{i}.py"} for i in range(n)]
    return "\r\n".join(json.dumps(r) for r in recs) + "\r\n"


@pytest.mark.parametrize("name", ["DUMP.JSONL.GZ", "dump.ndjson.gz", "packed.jsonl"])
def test_compressed_jsonl_sources_are_read_whatever_their_name(tmp_path, name):
    """`--source DUMP.JSONL.GZ` was detected as JSONL (lower-cased) but opened as plain text
    (case-sensitive `.gz` test): every record a `malformed_record`. `x.ndjson.gz` was a tree of
    one `unsupported_type` file though `.ndjson` is JSONL, and a gzip-compressed `.jsonl` was
    all malformed records."""
    from hillclimb.data.sources import detect_kind

    path = tmp_path / name
    path.write_bytes(gzip.compress(_jsonl_body(3).encode(), mtime=0))
    assert detect_kind(str(path)) == "jsonl"
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="jsonl", name="j", path=str(path), license="MIT")), out)
    assert sorted(d["path"] for d in _records(out, "documents")) == ["f0.py", "f1.py", "f2.py"]
    assert _records(out, "rejects") == []


def test_eval_files_with_a_bom_or_an_upper_case_gz_name_are_read(tmp_path):
    from hillclimb.data.decontam import file_probes

    line = json.dumps({"id": "q", "text": "a held out question about seventeen purple elephants"})
    bom = tmp_path / "evals.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (line + "\r\n").encode())
    up = tmp_path / "EVALS.JSONL.GZ"
    up.write_bytes(gzip.compress((line + "\n").encode(), mtime=0))
    for f in (bom, up):
        probes, _ = file_probes(str(f), ["text"])
        assert [(p.id, p.text) for p in probes] == [(f"{f.name}:q", json.loads(line)["text"])]


# ---------------------------------------------------------------------------------------------
# 8. an interrupted --force, then a --force with other settings
# ---------------------------------------------------------------------------------------------


def test_a_force_after_an_interrupted_force_of_other_settings_rebuilds(tmp_path):
    """`--force` builds beside the old corpus in `.NAME.rebuild` and resumes it when rerun. After
    an interrupted `--force`, a `--force` with other settings was refused on every try
    (".out.rebuild holds an incomplete build with a different configuration; pass --force")."""
    files = {f"m{i}.py": _code(f"mod_{i}", i + 2) for i in range(6)}
    src = _tree(tmp_path / "src", files)

    def cfg(seed: int) -> DataConfig:
        return _cfg(SourceConfig(kind="tree", name="t", path=str(src)), seed=seed, chunk_docs=2)

    out = tmp_path / "out"
    first = build(cfg(0), out, progress=False)
    with pytest.raises(RuntimeError, match="injected fault"):
        build(cfg(1), out, force=True, progress=False, fault="raise-chunk:1")
    assert (tmp_path / ".out.rebuild").is_dir()
    assert json.loads((out / "data_card.json").read_text()) == first  # the old one intact
    card = build(cfg(2), out, force=True, progress=False)
    fresh = build(cfg(2), tmp_path / "fresh", progress=False)
    assert card == fresh and card["fingerprint"] == cfg(2).fingerprint()
    assert _records(out, "documents") == _records(tmp_path / "fresh", "documents")
    assert not (tmp_path / ".out.rebuild").exists()


# ---------------------------------------------------------------------------------------------
# 9. ingest reasons that say what happened
# ---------------------------------------------------------------------------------------------


def test_utf16_files_are_non_utf8_not_binary(tmp_path):
    """A UTF-16 source file (Windows editors, PowerShell) is text with a byte-order mark; its
    NUL bytes made it a `binary` skip in the card."""
    src = _tree(tmp_path / "src", {"ok.py": _code("fine", 3)})
    (src / "win.ps1").write_bytes(_code("wide", 4).encode("utf-16"))
    (src / "wide32.py").write_bytes(_code("wider", 5).encode("utf-32"))
    (src / "blob.py").write_bytes(b"\x00\x01\x02" * 10)
    out = tmp_path / "out"
    build(_cfg(SourceConfig(kind="tree", name="t", path=str(src))), out, progress=False)
    got = {r["path"]: (r["reason"], r.get("detail")) for r in _records(out, "rejects")}
    assert got == {
        "win.ps1": ("non_utf8", "UTF-16 text (byte-order mark)"),
        "wide32.py": ("non_utf8", "UTF-32 text (byte-order mark)"),
        "blob.py": ("binary", None),
    }


def test_max_file_bytes_caps_record_bytes_not_characters(tmp_path):
    """A JSONL record's size was measured in characters: 400 KB of CJK text (1.2 MB in UTF-8)
    passed `max_file_bytes = 1 MiB`, which files are held to in bytes."""
    recs = tmp_path / "recs.jsonl"
    cjk = "漢字仮名交じり文" * 50_000  # 400,000 characters, 1,200,000 bytes
    small = _code("small", 3)
    recs.write_text(
        json.dumps({"text": cjk, "path": "big.txt"}, ensure_ascii=False)
        + "\n"
        + json.dumps({"text": small, "path": "small.py"})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    src = SourceConfig(kind="jsonl", name="j", path=str(recs), license="MIT")
    build(_cfg(src, quality=_no_quality()), out, progress=False)
    assert [d["path"] for d in _records(out, "documents")] == ["small.py"]
    assert [(r["path"], r["reason"]) for r in _records(out, "rejects")] == [
        ("big.txt", "too_large")
    ]


def _no_quality():
    from hillclimb.data.config import QualityConfig

    return QualityConfig(enabled=False)
