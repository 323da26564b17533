"""Session 22 outside checks of the data pipeline and the tokenizer on corpora the authors had
not seen (a user's repository with mixed licences, odd secrets, non-UTF-8 files, links, huge
lines, odd JSONL fields): sources that change between an interrupted build and its resume,
JSONL `url`/`id`/`path` fields of the wrong type, directory links, whitespace runs that make the
tokenizer's regex engine panic, links followed by the tokenizer's plain-directory reader,
`tokenizer eval` on val splits without text, unquoted secrets in config lines, and quadratic
scans in the secrets filter."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hillclimb.data.config import DataConfig, DecontaminateConfig, SourceConfig
from hillclimb.data.pipeline import build

MIT = (
    "MIT License\n\nCopyright (c) 2024 Someone\n\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy\n"
)
NO_DECONTAM = DecontaminateConfig(enabled=False)


def _code(i: int) -> str:
    return "".join(
        f"def f{i}_{j}(value):\n    # scale value {i} by {j} and add something\n"
        f"    return value * {j} + {i}\n\n"
        for j in range(5)
    )


def _tree(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "LICENSE").write_text(MIT)
    for i in range(n):
        (root / f"m{i:02d}.py").write_text(_code(i))
    return root


def _cfg(*sources: SourceConfig, **kw) -> DataConfig:
    kw.setdefault("decontaminate", NO_DECONTAM)
    kw.setdefault("val_fraction", 0.2)
    return DataConfig(sources=list(sources), **kw)


def _records(out: Path, sub: str) -> list[dict]:
    recs = []
    for f in sorted((out / sub).glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            recs += [json.loads(line) for line in fh]
    return recs


def _tree_bytes(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


# ---------------------------------------------------------------------------------------------
# 1. A resume whose sources changed since the interrupted run
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change", ["add_first", "remove_first", "edit_committed", "remove_last_chunk"]
)
def test_a_resume_after_the_sources_changed_equals_a_fresh_build(tmp_path, change):
    """Committed work chunks were reused by index: a file added or removed before them shifted
    every later chunk, so the resumed corpus read one file twice and never read another (the
    card still added up), an edited file kept its old text, and with files removed after the
    dedup stage the old dedup decision was reused. Now a committed chunk is reused only when its
    items (paths, sizes, modification times) are the ones enumerated again, and a chunk written
    or dropped discards the dedup decision."""
    src = _tree(tmp_path / "src", 30)
    cfg = _cfg(SourceConfig(kind="tree", name="t", path=str(src)), chunk_docs=5)
    out = tmp_path / "out"
    # killed after three chunks, or (files removed) after all six and the dedup decision
    fault = "raise-dedup" if change == "remove_last_chunk" else "raise-chunk:2"
    with pytest.raises(RuntimeError, match="injected fault"):
        build(cfg, out, progress=False, fault=fault)
    if change == "add_first":
        (src / "a_new.py").write_text(_code(99).replace("scale", "SCALE"))
    elif change == "remove_first":
        (src / "m00.py").unlink()
    elif change == "edit_committed":
        (src / "m03.py").write_text(_code(77))
    else:
        for i in range(22, 30):
            (src / f"m{i:02d}.py").unlink()
    build(cfg, out, resume=True, progress=False)
    ref = tmp_path / "ref"
    build(cfg, ref, progress=False)
    assert _tree_bytes(out) == _tree_bytes(ref)
    paths = [r["path"] for r in _records(out, "documents")]
    assert len(paths) == len(set(paths))


# ---------------------------------------------------------------------------------------------
# 2. JSONL records with odd fields
# ---------------------------------------------------------------------------------------------


def _jsonl_build(tmp_path: Path, lines: list[str]) -> Path:
    src = tmp_path / "odd.jsonl"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out"
    cfg = _cfg(SourceConfig(kind="jsonl", name="j", path=str(src), license="MIT"))
    build(cfg, out, progress=False)
    return out


@pytest.mark.parametrize(
    "url",
    [["https://chatgpt.com/share/abc"], {"href": "https://chatgpt.com/share/abc"}, 7],
)
def test_a_url_that_is_not_a_string_is_malformed_not_dropped_from_the_blocklist(tmp_path, url):
    """A record's `url` that was not a string was silently set to None: a page from a blocked
    host (`chatgpt.com`) given as `"url": ["https://chatgpt.com/..."]` reached the corpus past
    the domain blocklist. Like an unreadable `license`, it is a counted skip naming the field."""
    text = _code(1)
    out = _jsonl_build(tmp_path, [json.dumps({"text": text, "url": url})])
    assert _records(out, "documents") == []
    (rej,) = _records(out, "rejects")
    assert rej["reason"] == "malformed_record"
    assert "url" in rej["detail"]


def test_a_line_that_is_not_json_says_why(tmp_path):
    """Record skips carry a `detail` (docs/areas/data.md); a line that is not JSON had none."""
    out = _jsonl_build(tmp_path, ['{"text": "unterminated', json.dumps({"text": _code(2)})])
    (rej,) = [r for r in _records(out, "rejects") if r["filter"] == "ingest"]
    assert rej["reason"] == "malformed_record"
    assert rej["detail"] and "JSON" in rej["detail"]


def test_integer_ids_and_empty_paths_keep_their_provenance(tmp_path):
    """`"id": 17` (a dataset's row number) was dropped from the record's provenance (only a
    string id became `source_id`), and `"path": ""` replaced the `file:line` locator with an
    empty path."""
    other = "class Account:\n    # a bank account holding a balance in cents\n" + "".join(
        f"    def op{j}(self, amount):\n        self.balance -= amount * {j}\n" for j in range(6)
    )
    out = _jsonl_build(
        tmp_path,
        [
            json.dumps({"text": _code(3), "id": 17, "path": "", "language": "python"}),
            json.dumps({"text": other, "language": "python"}),
        ],
    )
    docs = {d["text"]: d for d in _records(out, "documents")}
    assert docs[_code(3)]["source_id"] == "17"
    assert docs[_code(3)]["path"] == "odd.jsonl:1"
    assert "source_id" not in docs[other]


# ---------------------------------------------------------------------------------------------
# 3. The tokenizer on huge whitespace runs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tok(tmp_path_factory):
    from hillclimb.tokenizer.train import train_tokenizer

    texts = [_code(i) + "\n\t  x = ' '\n" for i in range(40)]
    out = tmp_path_factory.mktemp("tok") / "tok"
    train_tokenizer(texts, 320).save(out)
    from hillclimb.tokenizer.io import load_tokenizer

    return load_tokenizer(out)


@pytest.mark.slow
def test_a_whitespace_run_past_the_regex_limit_encodes_and_round_trips(small_tok):
    """Ten million tabs in one run (a padded dump, a hostile prompt): the code pre-tokenizer's
    line-start alternative `\\s*[\\r\\n]` backtracks over the whole run, Oniguruma gives up
    after 10M steps and the Rust binding panics - a `PanicException`, a BaseException that no
    `except Exception` (a server's 4xx handler, the data build's per-document guard) catches.
    Such texts are now encoded with their long whitespace runs cut into 1 Mi-char pieces: ids
    that decode to the text; every other text keeps its plain ids."""
    text = "def f():\n" + "\t" * 10_000_000 + "return 1\n"
    batch = small_tok.encode_batch(["x = 1\n", text], allow_special=False)
    assert batch[0] == small_tok.encode("x = 1\n")
    assert small_tok.decode(batch[1]) == text


# ---------------------------------------------------------------------------------------------
# 4. Tokenizer training on a plain directory holding links out of it
# ---------------------------------------------------------------------------------------------


def test_tokenizer_training_on_a_plain_directory_never_follows_file_links(tmp_path):
    """`tokenizer train --corpus DIR` on a plain source tree read a file link's target
    (`passwd.py -> /etc/passwd`, `id.py -> ~/.ssh/id_rsa`): `Path.is_file` follows links, so
    text from outside the corpus was trained on. `data build` never follows them (ingest skip
    `symlink`); neither does the tokenizer's plain-directory reader now."""
    from hillclimb.tokenizer.train import iter_documents

    outside = tmp_path / "outside.py"
    outside.write_text("SECRET_OUTSIDE_THE_CORPUS = 1\n")
    root = _tree(tmp_path / "src", 2)
    (root / "link.py").symlink_to(outside)
    (root / "loop.py").symlink_to(root / "loop.py")
    texts = [d.text for d in iter_documents(root)]
    assert len(texts) == 3  # LICENSE and the two modules
    assert not any("SECRET_OUTSIDE" in t for t in texts)


# ---------------------------------------------------------------------------------------------
# 5. Directory links in a tree source
# ---------------------------------------------------------------------------------------------


def test_directory_links_are_counted_as_symlink_skips(tmp_path):
    """A file link is an ingest skip `symlink` "so a corpus whose files are links says where
    they went", but a directory link (`vendor -> ~/other-project`, `up -> ..`) vanished from
    the card, and an extensionless file link (`loop_a -> loop_b`) was `unsupported_type`.
    Both are `symlink` skips now; neither is followed."""
    elsewhere = _tree(tmp_path / "elsewhere", 1)
    src = _tree(tmp_path / "src", 2)
    (src / "vendor").symlink_to(elsewhere)
    (src / "up").symlink_to("..")
    (src / "loop_a").symlink_to("loop_b")
    (src / "loop_b").symlink_to("loop_a")
    out = tmp_path / "out"
    card = build(_cfg(SourceConfig(kind="tree", name="t", path=str(src))), out, progress=False)
    rejects = {r["path"]: r["reason"] for r in _records(out, "rejects")}
    assert rejects == {p: "symlink" for p in ("vendor", "up", "loop_a", "loop_b")}
    assert card["ingest"]["skipped"] == {"symlink": 4}
    assert sorted(d["path"] for d in _records(out, "documents")) == ["m00.py", "m01.py"]


# ---------------------------------------------------------------------------------------------
# 6. `tokenizer eval` on val splits of empty documents
# ---------------------------------------------------------------------------------------------


def _jsonl(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_tokenizer_eval_on_a_val_split_without_text_is_an_error(small_tok, tmp_path, capsys):
    """A val split whose documents are all empty was "evaluated": every rate None, printed as
    `0.000` chars/token and `0.0` MB/s. No text is nothing to measure, as no val split is."""
    from hillclimb.cli import main

    tokdir = tmp_path / "tok"
    small_tok.save(tokdir)
    corpus = _jsonl(
        tmp_path / "c.jsonl",
        [{"text": _code(i), "split": "train"} for i in range(3)] + [{"text": "", "split": "val"}],
    )
    assert main(["tokenizer", "eval", "--tokenizer", str(tokdir), "--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "val" in err and "no text" in err and "Traceback" not in err


def test_tokenizer_eval_table_shows_undefined_rates_as_undefined(small_tok, tmp_path):
    """A language whose val documents are empty has no chars/token: the table said `0.000`."""
    from hillclimb.tokenizer.evaluate import evaluate, format_report

    tokdir = tmp_path / "tok"
    small_tok.save(tokdir)
    corpus = _jsonl(
        tmp_path / "c.jsonl",
        [{"text": _code(i), "split": "train", "language": "python"} for i in range(3)]
        + [{"text": _code(7), "split": "val", "language": "python"}]
        + [{"text": "", "split": "val", "language": "markdown"}],
    )
    rep = evaluate(tokdir, corpus=corpus, baseline=False)
    assert rep["languages"]["markdown"]["ours"]["chars_per_token"] is None
    (row,) = [ln for ln in format_report(rep).splitlines() if ln.startswith("markdown")]
    assert "0.000" not in row and "n/a" in row


# ---------------------------------------------------------------------------------------------
# 7. Secrets assigned without quotes (shell, Dockerfile, YAML, .ini)
# ---------------------------------------------------------------------------------------------

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "line",
    [
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f"ENV AWS_SECRET_ACCESS_KEY={AWS_SECRET}  # for the CI",
        "api_token: 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "secret_key = 8f4a9c2e1b7d6f3a0e5c",
    ],
)
def test_an_unquoted_secret_in_a_config_line_is_redacted(line):
    """Only quoted values were looked at (`key = "..."`): a shell script's `export
    AWS_SECRET_ACCESS_KEY=...`, a Dockerfile's `ENV`, a YAML `api_token: ...` kept the secret
    verbatim in the corpus. A whole-line unquoted value of key characters (no dots, brackets or
    snake_case identifier) with the same entropy test is redacted now; on 50,962 source and
    config files of this machine (stdlib, site-packages, /usr/include, /usr/share) it matched
    nothing else."""
    from hillclimb.data.secrets import Redactor

    text, counts = Redactor().redact(f"#!/bin/sh\n{line}\necho done\n")
    assert "<KEY>" in text and counts["generic_key"] == 1
    assert AWS_SECRET not in text and "9f8e7d6c" not in text and "8f4a9c2e" not in text
    assert text.endswith("\necho done\n")


@pytest.mark.parametrize(
    "line",
    [
        "token = tokenizer_v2_fast_slow",
        "LayoutLMv3TokenizerFast = LayoutLMv3Tokenizer",
        "secret = self.settings.secret_key_v2",
        "api_key = os.environ['API_KEY_2']",
        "token: Optional[str] = None",
        "SECRET_KEY = get_secret(key_id_2024_01)",
        "access_key = ACCESS_KEY_FROM_ENV_2",
    ],
)
def test_code_assigned_to_key_names_is_not_a_secret(line):
    from hillclimb.data.secrets import Redactor

    assert Redactor().redact(line + "\n")[0] == line + "\n"


@pytest.mark.parametrize("run", ["_token", "-secret", "_api_key", "-password", "_pwd"])
def test_a_long_name_of_repeated_key_words_is_redacted_in_linear_time(run):
    """`[\\w-]*` after the keyword ran to the end of the name from every occurrence of the
    keyword in it: 30 KB of `_token_token...` (a generated identifier, a minified bundle) took
    5.5 s in the secrets filter, a 1 MiB file hours. The name's tail is bounded (64 chars,
    possessive) now."""
    import time

    from hillclimb.data.secrets import Redactor

    text = f"x{run * (60_000 // len(run))} = f(x)\n"  # no value to redact: every start fails
    t0 = time.perf_counter()
    assert Redactor().redact(text)[0] == text
    assert time.perf_counter() - t0 < 2.0
    secret = f'{run.strip("_-")}{run * 3} = "8f4a9c2e1b7d6f3a0e5c"\n'
    assert "8f4a9c2e" not in Redactor().redact(secret)[0]


def test_many_private_key_headers_without_end_lines_are_redacted_in_linear_time():
    """Each `-----BEGIN ... PRIVATE KEY-----` looked for its END line to the end of the text:
    4,000 unclosed headers (144 KB) took 6.8 s, a 1 MiB file minutes. The block now stops at
    the next BEGIN line (a key holds none); the unclosed headers are still redacted."""
    import time

    from hillclimb.data.secrets import Redactor

    text = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c7\n" * 4000
    t0 = time.perf_counter()
    out, counts = Redactor().redact(text)
    assert time.perf_counter() - t0 < 2.0
    assert "MIIE" not in out and counts["private_key"] == 4000
    closed = "a\n-----BEGIN PRIVATE KEY-----\nMIIEabc\n-----END PRIVATE KEY-----\nb\n"
    assert Redactor().redact(closed * 2)[0] == "a\n<PRIVATE_KEY>\nb\n" * 2
