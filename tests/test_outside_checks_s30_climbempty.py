"""A climb whose sources yield no document must stop at its data stage with `data build`'s own
reason. Session 30: the data stage printed a warning, recorded itself done, and the tokenizer
stage then failed with "01-data/corpus/documents holds no .jsonl[.gz] files", which names
neither the source nor why its files were dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from hillclimb.errors import HillclimbError

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp_path: Path, src: Path) -> Path:
    """smoke.toml with its one tree source pointed at `src` and the generators dropped."""
    s = (ROOT / "recipes" / "smoke.toml").read_text()
    s = s.replace('path = "{hillclimb}"', f'path = "{src.as_posix()}"')
    i = s.index("[[data.sources]]", s.index(src.as_posix()))
    s = s[:i] + s[s.index("[data.decontaminate]") :]
    r = tmp_path / "r.toml"
    r.write_text(s)
    return r


def test_a_climb_of_no_documents_stops_at_the_data_stage(tmp_path):
    from hillclimb.climb.runner import run_climb

    src = tmp_path / "src"
    src.mkdir()
    (src / "blob.bin").write_bytes(bytes(range(256)) * 8)  # nothing a document can be read from
    out = tmp_path / "run"
    with pytest.raises(HillclimbError, match="data build kept no document") as e:
        run_climb(_recipe(tmp_path, src), out, print_summary=False, registry=False)
    assert "documents holds no" not in str(e.value)
    assert not (out / "02-tokenizer").exists()  # the next stage never started
