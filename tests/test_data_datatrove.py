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


LEAK = (
    "def rolling_checksum(values, window):\n    acc = 0\n    out = []\n    for i, v in "
    "enumerate(values):\n        acc += v * (i + 7)\n        if i >= window:\n"
    "            acc -= values[i - window] * (i - window + 7)\n        out.append(acc % 65521)\n"
    "    return out\n"
)


def test_filters_run_on_datatrove_executor(tmp_path):
    """Our filters and decontamination on datatrove's executor: the scale-out path drops what
    the local build drops, an evaluation item included (before session 18 it had no
    decontamination step and kept it), and refuses to run without the probe index."""
    from datatrove.executor import LocalPipelineExecutor

    from hillclimb.data.config import DecontaminateConfig
    from hillclimb.data.datatrove_steps import filter_pipeline, minhash_config, write_probe_index
    from hillclimb.errors import ConfigError

    tree = corpus.make_tree(tmp_path / "src")
    (tree["pkg"] / "leak.py").write_text('"""Helpers."""\n\n\n' + LEAK)
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text(json.dumps({"id": "item-1", "text": LEAK}) + "\n")
    src = SourceConfig(kind="tree", name="t", path=str(tmp_path / "src"), max_file_bytes=20000)
    decon = DecontaminateConfig(problems_n_per_tier=0, suites=[], files=[str(evalset)])
    cfg = DataConfig(sources=[src], decontaminate=decon)
    out, rej = tmp_path / "out", tmp_path / "rej"
    with pytest.raises(ConfigError, match="write_probe_index"):
        filter_pipeline(cfg, str(out), str(rej))
    probes = tmp_path / "probes.npz"
    assert write_probe_index(cfg, str(probes))["probes"] == 1
    LocalPipelineExecutor(
        pipeline=filter_pipeline(cfg, str(out), str(rej), probes=str(probes)),
        tasks=2,
        workers=1,
        logging_dir=str(tmp_path / "logs"),
    ).run()
    kept = [r for f in sorted(out.glob("*.jsonl.gz")) for r in _read(f)]
    paths = {d["metadata"]["path"] for d in kept}
    assert "mitpkg/util_2.py" in paths and "mitpkg/gpl_module.py" not in paths
    assert "mitpkg/leak.py" not in paths
    dropped = [r for f in (rej / "decontaminate").glob("*.gz") for r in _read(f)]
    assert [r["metadata"]["path"] for r in dropped] == ["mitpkg/leak.py"]
    meta = dropped[0]["metadata"]
    assert meta["filter_reason"] == "decontaminate:contaminated"
    assert meta["probe"] == "eval.jsonl:item-1" and meta["probe_origin"] == "file:eval.jsonl"
    settings = next(d for d in kept if d["metadata"]["path"] == "mitpkg/settings.py")
    assert corpus.AWS_KEY not in settings["text"] and "<KEY>" in settings["text"]
    lic_rejects = [r for f in (rej / "license").glob("*.gz") for r in _read(f)]
    assert any(r["metadata"]["filter_reason"].startswith("license:gpl-family") for r in lic_rejects)
    mh = minhash_config(DedupConfig(threshold=0.7))
    assert (
        mh.n_grams == 5 and not mh.norm_config.lowercase and not mh.norm_config.remove_punctuation
    )
