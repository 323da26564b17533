"""Record sources (JSONL, Parquet) under `max_files` / `max_bytes`: one budget for both formats.

Why a test of its own: the caps stop a record stream in file order (not a hash-ordered sample as
for trees), malformed records pass through uncounted, and JSONL and Parquet must agree."""

from __future__ import annotations

import json

import pytest

from hillclimb.data.config import SourceConfig
from hillclimb.data.sources import jsonl_items, parquet_items

TEXTS = ["aaaa", "bbbbbb", "cc", "ddddd"]


def _jsonl(tmp_path):
    p = tmp_path / "r.jsonl"
    lines = [
        json.dumps({"text": TEXTS[0]}),
        "{not json",
        *(json.dumps({"text": t}) for t in TEXTS[1:]),
    ]
    p.write_text("\n".join(lines) + "\n")
    return p


def _parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "r.parquet"
    pq.write_table(pa.table({"text": [TEXTS[0], None, *TEXTS[1:]]}), p)
    return p


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize(
    ("caps", "kept"),
    [({}, TEXTS), ({"max_files": 2}, TEXTS[:2]), ({"max_bytes": 12}, TEXTS[:3]), ({"max_bytes": 11}, TEXTS[:2]),
     ({"max_bytes": 9}, TEXTS[:1]), ({"max_files": 0}, [])],
)  # fmt: skip
def test_caps_cut_the_record_stream_in_order(tmp_path, fmt, caps, kept):
    path, items = (_jsonl, jsonl_items) if fmt == "jsonl" else (_parquet, parquet_items)
    cfg = SourceConfig(kind=fmt, name="s", path=str(path(tmp_path)), **caps)
    got = list(items(cfg))
    assert [it.text for it in got if it.text is not None] == kept
    skipped = [it.skip for it in got if it.text is None]
    # the malformed second record is passed through (uncounted) once the stream reaches it
    assert skipped == (["malformed_record"] if len(kept) >= 1 else [])


def _records(tmp_path, fmt, rows):
    if fmt == "jsonl":
        p = tmp_path / "r.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return p, jsonl_items
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    return p, parquet_items


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_record_license_not_a_string_is_never_the_sources(tmp_path, fmt):
    """A record whose `license` we cannot read was relabelled as the source's MIT and kept (a
    GPL record laundered); now it is a `malformed_license` skip, and a list of SPDX ids means
    all of them apply."""
    if fmt == "jsonl":
        rows = [
            {"text": "a", "license": ["GPL-3.0-only"]},
            {"text": "b", "license": {"spdx": "GPL-3.0-only"}},
            {"text": "c", "license": ["MIT", "Apache-2.0"]},
            {"text": "d", "license": None},
            {"text": "e"},
            {"text": "f", "license": []},
            {"text": "g", "license": 3},
            {"text": "h", "license": ["MIT OR Apache-2.0", "GPL-3.0-only"]},
        ]
    else:  # a Parquet column has one type: lists of strings (null and empty included)
        rows = [
            {"text": "a", "license": ["GPL-3.0-only"]},
            {"text": "c", "license": ["MIT", "Apache-2.0"]},
            {"text": "d", "license": None},
            {"text": "f", "license": []},
            {"text": "h", "license": ["MIT OR Apache-2.0", "GPL-3.0-only"]},
        ]
    p, items = _records(tmp_path, fmt, rows)
    got = {
        it.text or it.path: it
        for it in items(SourceConfig(kind=fmt, name="s", path=str(p), license="MIT"))
    }
    lic = {k: it.license for k, it in got.items() if it.text is not None}
    assert lic["a"] == "GPL-3.0-only"
    assert lic["c"] == "MIT AND Apache-2.0"
    assert lic["d"] == "MIT"  # null: the record states nothing → the source licence
    assert lic["h"] == "(MIT OR Apache-2.0) AND GPL-3.0-only"
    skipped = {it.path: it for it in got.values() if it.text is None}
    assert all(it.skip == "malformed_license" and it.detail for it in skipped.values())
    assert len(skipped) == (3 if fmt == "jsonl" else 1)
    if fmt == "jsonl":
        assert lic["e"] == "MIT"
        assert "spdx" in skipped["r.jsonl:2"].detail


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_wrong_text_field_names_the_field_and_the_columns(tmp_path, fmt):
    p, items = _records(tmp_path, fmt, [{"content": "hello", "id": "x1"}])
    got = list(items(SourceConfig(kind=fmt, name="s", path=str(p), text_field="text")))
    assert [it.skip for it in got] == ["malformed_record"]
    assert got[0].detail == "text_field 'text' missing; record fields: content, id"


def test_links_and_special_files_are_counted_never_followed(tmp_path):
    """A file that is a link may lead out of the source (~/.ssh, /etc) and a FIFO blocks its
    reader: neither is read, and both are counted as ingest skips instead of vanishing."""
    import os

    from hillclimb.data.sources import tree_items

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.py").write_text("x = 1\n")
    secret = tmp_path / "secret.py"
    secret.write_text("KEY = 'outside the source'\n")
    (src / "link.py").symlink_to(secret)
    os.mkfifo(src / "pipe.py")
    cfg = SourceConfig(kind="tree", name="t", path=str(src), license="MIT")
    got = {i.path: (i.skip, i.file) for i in tree_items(cfg, [(src, "", "MIT")])}
    assert got["link.py"] == ("symlink", None) and got["pipe.py"] == ("not_a_regular_file", None)
    assert got["ok.py"][0] is None and got["ok.py"][1] == str(src / "ok.py")
