"""The datatrove adapter runs our filters on a datatrove LocalPipelineExecutor."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("datatrove")

from hillclimb.data.config import DataConfig, DedupConfig, SourceConfig  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "data_corpus", Path(__file__).parent / "fixtures" / "data" / "corpus.py"
)
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(ln) for ln in f]


def test_filters_run_on_datatrove_executor(tmp_path):
    from datatrove.executor import LocalPipelineExecutor

    from hillclimb.data.datatrove_steps import filter_pipeline, minhash_config

    corpus.make_tree(tmp_path / "src")
    cfg = DataConfig(
        sources=[
            SourceConfig(kind="tree", name="t", path=str(tmp_path / "src"), max_file_bytes=20000)
        ]
    )
    out, rej = tmp_path / "out", tmp_path / "rej"
    LocalPipelineExecutor(
        pipeline=filter_pipeline(cfg, str(out), str(rej)),
        tasks=2,
        workers=1,
        logging_dir=str(tmp_path / "logs"),
    ).run()
    kept = [r for f in sorted(out.glob("*.jsonl.gz")) for r in _read(f)]
    paths = {d["metadata"]["path"] for d in kept}
    assert "mitpkg/util_2.py" in paths and "mitpkg/gpl_module.py" not in paths
    settings = next(d for d in kept if d["metadata"]["path"] == "mitpkg/settings.py")
    assert corpus.AWS_KEY not in settings["text"] and "<KEY>" in settings["text"]
    lic_rejects = [r for f in (rej / "license").glob("*.gz") for r in _read(f)]
    assert any(r["metadata"]["filter_reason"].startswith("license:gpl-family") for r in lic_rejects)
    mh = minhash_config(DedupConfig(threshold=0.7))
    assert (
        mh.n_grams == 5 and not mh.norm_config.lowercase and not mh.norm_config.remove_punctuation
    )
