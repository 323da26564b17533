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
