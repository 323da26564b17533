"""One JSONL reader and one weights hash, shared: each caller reports what the shared one does.

Why: SFT data, tokenizer input and arena prompt sets each had their own line loop (the tokenizer's
decoded 8 KB at a time and blamed line 1 for a bad byte on line 51), and eval's record of the
weights it measured re-implemented the registry's key (a drift would make every result foreign).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError


def _latin1_on_line(path: Path, line: int, record: dict) -> None:
    rows = [json.dumps(record).encode() for _ in range(line - 1)]
    rows.append(b'{"text": "caf\xe9", "prompt": "caf\xe9"}')
    path.write_bytes(b"\n".join(rows) + b"\n")


def test_tokenizer_input_names_the_line_of_a_byte_that_is_not_utf8(tmp_path: Path) -> None:
    from hillclimb.tokenizer.train import select_documents

    f = tmp_path / "docs.jsonl"
    _latin1_on_line(f, 51, {"text": "x = 1\n" * 400})
    with pytest.raises(HillclimbError, match=r"docs\.jsonl:51: cannot read tokenizer training"):
        select_documents(f)


def test_arena_prompt_set_and_sft_data_share_the_reader(tmp_path: Path) -> None:
    from hillclimb.eval.arena.models import load_prompts
    from hillclimb.train.sft_data import read_jsonl

    f = tmp_path / "p.jsonl"
    _latin1_on_line(f, 7, {"prompt": "hello"})
    with pytest.raises(HillclimbError, match=r"p\.jsonl:7: cannot read prompt set: not UTF-8"):
        load_prompts(f)
    g = tmp_path / "sft.jsonl.gz"
    g.write_bytes(gzip.compress(b'{"text": "ok"}\n')[:-6])  # truncated stream
    with pytest.raises(HillclimbError, match=r"sft\.jsonl\.gz:\d+: cannot read SFT data"):
        read_jsonl([g])


def test_json_lines_skips_a_bom_and_keeps_unicode_separators(tmp_path: Path) -> None:
    from hillclimb.io import json_lines

    f = tmp_path / "x.jsonl"
    odd = "a\u2028b\u2029c\x85d"
    f.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"v": odd}, ensure_ascii=False).encode() + b"\r\n\r\n[1]\r"
    )
    assert list(json_lines(f, "test")) == [(f"{f}:1", {"v": odd}), (f"{f}:3", [1])]


def test_eval_records_the_registry_key_of_the_weights(tmp_path: Path) -> None:
    from hillclimb.eval.core import model_identity
    from hillclimb.registry.db import content_hash

    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "tokenizer.json").write_text("{}")
    assert model_identity(ck)["weights_sha256"] is None
    with pytest.raises(HillclimbError, match="no \\*.safetensors"):
        content_hash(ck)
    (ck / "model-00001-of-00002.safetensors").write_bytes(b"\x01" * 10)
    (ck / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 3)
    (ck / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    key = content_hash(ck)
    assert model_identity(ck)["weights_sha256"] == key
    (ck / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 4)
    assert content_hash(ck) != key  # the bytes are in the key, not only the names
