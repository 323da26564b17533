"""End-to-end tests of `hillclimb data build` on small corpora made in tmp_path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hillclimb.cli import main
from hillclimb.data.config import (
    DataConfig,
    DecontaminateConfig,
    SourceConfig,
    data_config_from_dict,
)
from hillclimb.data.jsonl import iter_documents, iter_jsonl
from hillclimb.data.pipeline import build, split_val
from hillclimb.data.shards import ShardReader
from hillclimb.errors import HillclimbError

_spec = importlib.util.spec_from_file_location(
    "data_corpus", Path(__file__).parent / "fixtures" / "data" / "corpus.py"
)
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

SRC = str(Path(__file__).resolve().parents[1] / "src")
# Decontamination runs in every build here, against a small probe set: the default one (what the
# climb evaluates) takes tens of seconds to generate and is tested in test_data_decontam.py.
SMALL_PROBES = {"problems_n_per_tier": 3}


@pytest.fixture
def small_default_probes(monkeypatch):
    """For builds whose config cannot be set (ad hoc `--source`): probes of at most 3 items per
    family x tier."""
    from hillclimb.data import decontam

    real = decontam.problem_probe_records
    monkeypatch.setattr(
        decontam,
        "problem_probe_records",
        lambda seeds, n, fams, workers=1: real(seeds, min(n, 3), fams, workers),
    )


def _cfg(tree: Path, **kw) -> DataConfig:
    cfg = DataConfig(
        sources=[
            SourceConfig(kind="tree", name="tree", path=str(tree), max_file_bytes=20000),
            SourceConfig(kind="tree", name="missing", path=str(tree / "does-not-exist")),
        ],
        chunk_docs=4,
        val_fraction=0.2,
        decontaminate=DecontaminateConfig(**SMALL_PROBES),
    )
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    corpus.make_tree(root / "src")
    tok_dir = root / "tok"
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    bytelevel_tokenizer().save(tok_dir)
    out = root / "out"
    card = build(_cfg(root / "src"), out, tokenizer=str(tok_dir), progress=False)
    docs = list(iter_documents(out))
    rejects = {}
    for f in sorted((out / "rejects").glob("*.jsonl.gz")):
        for r in iter_jsonl(f):
            rejects.setdefault(r["filter"], []).append(r)
    return {
        "root": root,
        "out": out,
        "card": card,
        "docs": docs,
        "rejects": rejects,
        "tok": tok_dir,
    }


def _paths(recs):
    return {r["path"] for r in recs}


def _reason(built, path):
    for filt, recs in built["rejects"].items():
        for r in recs:
            if r["path"] == path:
                return filt, r["reason"]
    return None


def test_output_layout(built):
    out = built["out"]
    assert (out / "build.json").is_file() and (out / "data_card.json").is_file()
    assert (out / "DATA_CARD.md").is_file()
    assert list((out / "documents").glob("*.jsonl.gz"))
    assert not (out / ".work").exists()


def test_mit_package_kept_with_provenance(built):
    by_path = {d["path"]: d for d in built["docs"]}
    for i in range(2, 6):
        d = by_path[f"mitpkg/util_{i}.py"]
        assert d["license"] == "MIT"
        assert d["source"] == "tree" and d["language"] == "python"
        assert d["split"] in ("train", "val")
        assert d["kept_by"] == [
            "license",
            "blocklist",
            "ai_content",
            "quality",
            "secrets",
            "decontaminate",
            "dedup",
        ]
        assert len(d["id"]) == 64


def test_gpl_header_file_dropped(built):
    assert "mitpkg/gpl_module.py" not in _paths(built["docs"])
    filt, reason = _reason(built, "mitpkg/gpl_module.py")
    assert filt == "license" and reason.startswith("gpl-family:GPL-3.0")


def test_unlicensed_dropped_as_unknown(built):
    assert _reason(built, "nolicense/thing.py") == ("license", "unknown")


def test_api_key_redacted(built):
    d = next(d for d in built["docs"] if d["path"] == "mitpkg/settings.py")
    text = d["text"]
    assert corpus.AWS_KEY not in text and corpus.GITHUB_TOKEN not in text
    assert corpus.EMAIL not in text and "hunter2" not in text
    assert 'AWS_ACCESS_KEY_ID = "<KEY>"' in text and "<EMAIL>" in text and "<PASSWORD>" in text
    secrets = next(f for f in built["card"]["filters"] if f["name"] == "secrets")
    assert secrets["stats"]["redacted:aws_access_key"] == 1
    assert secrets["stats"]["redacted:github_token"] == 1


def test_duplicates_removed_keep_one(built):
    paths = _paths(built["docs"])
    # exactly one of each duplicate pair survives
    assert len(paths & {"mitpkg/util_0.py", "mitpkg/util_0_edited.py"}) == 1
    assert len(paths & {"mitpkg/util_1.py", "mitpkg/copy_of_1.py"}) == 1
    dedup = {r["path"]: r for r in built["rejects"]["dedup"]}
    assert dedup["mitpkg/util_0_edited.py"]["reason"] == "near"
    # stream order is path order: copy_of_1.py comes first and is the copy kept
    assert dedup["mitpkg/util_1.py"]["reason"] == "exact"
    kept = {d["id"] for d in built["docs"]}
    assert all(r["duplicate_of"] in kept for r in dedup.values())


def test_bad_input_skipped_with_reasons(built):
    assert _reason(built, "mitpkg/blob.py") == ("ingest", "binary")
    assert _reason(built, "mitpkg/latin1.py") == ("ingest", "non_utf8")
    assert _reason(built, "mitpkg/empty.py") == ("ingest", "empty")
    assert _reason(built, "mitpkg/huge.py") == ("ingest", "too_large")
    assert _reason(built, "mitpkg/picture.png") == ("ingest", "unsupported_type")
    skipped = built["card"]["ingest"]["skipped"]
    assert skipped["missing_source"] == 1
    assert skipped["binary"] == 1 and skipped["non_utf8"] == 1


def test_other_filters(built):
    assert _reason(built, "mitpkg/vendor/six_copy.py") == ("blocklist", "path:vendored")
    assert _reason(built, "mitpkg/app.min.js") == ("blocklist", "path:minified")
    filt, reason = _reason(built, "mitpkg/assistant.py")
    assert filt == "ai_content" and reason.startswith("marker:as an ai language model")
    assert _reason(built, "mitpkg/encoded.py")[0] == "quality"


def test_data_card_contents(built):
    card, docs = built["card"], built["docs"]
    assert card == json.loads((built["out"] / "data_card.json").read_text())
    assert card["totals"]["documents"] == len(docs)
    assert card["totals"]["bytes"] == sum(len(d["text"].encode()) for d in docs)
    assert card["by_license"]["MIT"]["documents"] == len(docs)
    assert card["by_source"]["tree"]["documents"] == len(docs)
    assert card["by_language"]["python"]["documents"] == len(docs)
    assert set(card["by_split"]) == {"train", "val"}
    names = [f["name"] for f in card["filters"]]
    assert names == [
        "ingest", "license", "blocklist", "ai_content", "quality", "secrets", "decontaminate",
        "dedup",
    ]  # fmt: skip
    lic = card["filters"][1]
    assert lic["dropped"] == sum(lic["reasons"].values()) == len(built["rejects"]["license"])
    dd = card["filters"][-1]
    assert dd["reasons"] == {"exact": 1, "near": 1}
    assert dd["params"]["shingle_size"] == 5 and dd["params"]["num_perm"] == 128
    # tokens: byte-level tokenizer -> tokens = bytes + one eos per document
    assert card["totals"]["tokens"] == card["totals"]["bytes"] + len(docs)
    assert card["by_source"]["tree"]["tokens"] == card["totals"]["tokens"]
    md = (built["out"] / "DATA_CARD.md").read_text()
    assert "license — dropped" in md and "gpl-family" in md and "| MIT |" in md


def test_shards_readable(built):
    r = ShardReader(built["out"])
    assert r.meta["dtype"] == "uint16"
    docs = {d["id"]: d for d in built["docs"]}
    train = [d for d in built["docs"] if d["split"] == "train"]
    sp = r.split("train")
    assert sp.doc_offsets.size == len(train) + 1
    first = bytes(sp.tokens[sp.doc_offsets[0] : sp.doc_offsets[1] - 1].astype("uint8"))
    assert first.decode() == train[0]["text"]
    assert int(sp.tokens[sp.doc_offsets[1] - 1]) == r.eos_id
    assert r.split("val").doc_offsets.size - 1 == len(docs) - len(train)


def test_existing_output_refused_then_forced(built, tmp_path):
    with pytest.raises(HillclimbError, match="complete data build"):
        build(_cfg(built["root"] / "src"), built["out"], progress=False)
    out = tmp_path / "copy"
    cfg = _cfg(built["root"] / "src")
    build(cfg, out, progress=False)
    before = (out / "data_card.json").read_bytes()
    cfg2 = _cfg(built["root"] / "src", val_fraction=0.5)
    build(cfg2, out, force=True, progress=False)
    assert (out / "data_card.json").read_bytes() != before
    assert not (tmp_path / ".copy.rebuild").exists() and not (tmp_path / ".copy.old").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(HillclimbError, match="not a hillclimb data build"):
        build(cfg, foreign, force=True, progress=False)


def _tree_bytes(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


def test_resume_after_injected_failure_is_identical(built, tmp_path):
    cfg = _cfg(built["root"] / "src")
    ref = tmp_path / "ref"
    build(cfg, ref, tokenizer=str(built["tok"]), progress=False)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected fault"):
        build(cfg, out, tokenizer=str(built["tok"]), progress=False, fault="raise-chunk:2")
    assert len(list((out / ".work" / "chunks").glob("*.npz"))) == 3
    with pytest.raises(HillclimbError, match="--resume"):
        build(cfg, out, progress=False)
    with pytest.raises(HillclimbError, match="different configuration"):
        build(_cfg(built["root"] / "src", seed=5), out, resume=True, progress=False)
    build(cfg, out, resume=True, tokenizer=str(built["tok"]), progress=False)
    assert _tree_bytes(out) == _tree_bytes(ref)


@pytest.mark.parametrize("fault", ["kill-chunk:3", "kill-dedup", "kill-install:2"])
def test_sigkill_then_resume_is_identical(built, tmp_path, fault):
    """A real SIGKILL of a CLI build at several points, then `--resume` via the CLI."""
    src = built["root"] / "src"
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[data]\nchunk_docs = 3\nval_fraction = 0.2\n"
        f'[[data.sources]]\nkind = "tree"\nname = "tree"\npath = "{src}"\nmax_file_bytes = 20000\n'
        # a small probe set: each killed subprocess builds its own (the full one takes seconds)
        '[data.decontaminate]\nproblems_n_per_tier = 2\nproblems_families = ["arith", "logic"]\n'
    )
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["data", "build", "--recipe", str(recipe), "--out", str(ref)]) == 0
    env = {**os.environ, "PYTHONPATH": SRC, "HILLCLIMB_DATA_FAULT": fault}
    cmd = [sys.executable, "-m", "hillclimb", "data", "build", "--recipe", str(recipe)]
    proc = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert (out / ".work").is_dir() and not (out / "build.json").exists()
    env.pop("HILLCLIMB_DATA_FAULT")
    proc = subprocess.run([*cmd, "--out", str(out), "--resume"], env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _tree_bytes(out) == _tree_bytes(ref)


def test_jsonl_and_parquet_sources(tmp_path, small_default_probes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jl = corpus.make_jsonl(tmp_path / "docs.jsonl")
    table = pa.table(
        {
            "text": [corpus.python_module(700), corpus.python_module(701)],
            "license": ["Apache-2.0", "unknown"],
            "path": ["x/a.py", "x/b.py"],
        }
    )
    pq.write_table(table, tmp_path / "docs.parquet")
    out = tmp_path / "out"
    rc = main(
        ["data", "build", "--source", str(jl), "--source", str(tmp_path / "docs.parquet"),
         "--out", str(out), "--json"]
    )  # fmt: skip
    assert rc == 0
    docs = {d["path"]: d for d in iter_documents(out)}
    assert set(docs) == {"a/ok.py", "x/a.py"}
    assert docs["a/ok.py"]["source"] == "docs.jsonl" and docs["x/a.py"]["license"] == "Apache-2.0"
    card = json.loads((out / "data_card.json").read_text())
    assert card["filters"][0]["reasons"]["malformed_record"] == 2
    assert card["filters"][2]["reasons"] == {"domain:chatgpt.com": 1}
    assert card["filters"][1]["reasons"] == {"gpl-family:GPL-2.0-only": 1, "unknown": 1}


def test_site_packages_metadata_and_package_json(tmp_path):
    sp = tmp_path / "site-packages"
    (sp / "goodpkg").mkdir(parents=True)
    (sp / "goodpkg" / "core.py").write_text(corpus.python_module(800))
    di = sp / "goodpkg-1.0.dist-info"
    di.mkdir()
    (di / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: goodpkg\nVersion: 1.0\n"
        "Classifier: License :: OSI Approved :: BSD License\n\nlong description\n"
    )
    (di / "RECORD").write_text("goodpkg/core.py,,\ngoodpkg-1.0.dist-info/METADATA,,\n")
    (sp / "badpkg").mkdir()
    (sp / "badpkg" / "core.py").write_text(corpus.python_module(801))
    db = sp / "badpkg-2.0.dist-info"
    db.mkdir()
    (db / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: badpkg\nLicense-Expression: GPL-3.0-or-later\n"
    )
    (db / "RECORD").write_text("badpkg/core.py,,\n")
    nm = tmp_path / "node_modules" / "leftpad"
    nm.mkdir(parents=True)
    (nm / "package.json").write_text(json.dumps({"name": "leftpad", "license": "ISC"}))
    (nm / "index.js").write_text(
        "function leftPad(str, len, ch) {\n  str = String(str);\n  let i = -1;\n"
        "  if (!ch && ch !== 0) ch = ' ';\n  len = len - str.length;\n"
        "  while (++i < len) { str = ch + str; }\n  return str;\n}\n"
        "module.exports = leftPad;\n"
    )
    out = tmp_path / "out"
    build(
        data_config_from_dict(
            {
                "sources": [
                    {"kind": "tree", "path": str(sp)},
                    {"kind": "tree", "path": str(nm.parent)},
                ],
                "decontaminate": SMALL_PROBES,
            }
        ),
        out,
        progress=False,
    )
    lic = {d["path"]: d["license"] for d in iter_documents(out)}
    assert lic == {
        "goodpkg/core.py": "LicenseRef-BSD",
        "leftpad/index.js": "ISC",
        "leftpad/package.json": "ISC",
    }


def test_recipe_data_table_and_resolution(tmp_path, monkeypatch):
    from hillclimb.data.recipe import load_data_config, resolve_recipe

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mini.toml").write_text(
        '[model]\npreset = "whatever"\n[train]\nsteps = 3\n'
        '[data]\nseed = 3\n[[data.sources]]\nkind = "jsonl"\npath = "x.jsonl"\nlicense = "MIT"\n'
        "[data.dedup]\nthreshold = 0.75\n"
    )
    monkeypatch.chdir(tmp_path)
    assert resolve_recipe("mini") == tmp_path / "recipes" / "mini.toml"
    cfg = load_data_config("mini")
    assert cfg.seed == 3 and cfg.dedup.threshold == 0.75 and cfg.sources[0].name == "jsonl0"
    assert cfg.sources[0].license == "MIT"
    assert cfg.sources[0].path == str(tmp_path / "recipes" / "x.jsonl")  # relative to the recipe
    (tmp_path / "recipes" / "bad.toml").write_text("[data]\nsed = 3\n")
    with pytest.raises(HillclimbError, match="unknown key"):
        load_data_config("bad")
    with pytest.raises(HillclimbError, match="not found"):
        resolve_recipe("nope")
    default = load_data_config(
        Path(__file__).resolve().parents[1] / "recipes" / "data-default.toml"
    )
    assert {s.kind for s in default.sources} >= {"python_env", "system_code"}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "build", "--out", str(tmp_path / "o")]) == 2
    assert "needs --recipe" in capsys.readouterr().err
    assert main(["data", "tokenize", "--data", str(tmp_path), "--tokenizer", str(tmp_path)]) == 2


def test_retokenize(built, tmp_path):
    import shutil

    out = tmp_path / "corpus"
    shutil.copytree(built["out"], out)
    shutil.rmtree(out / "shards")
    card = json.loads((out / "data_card.json").read_text())
    card["tokenizer"] = None
    (out / "data_card.json").write_text(json.dumps(card))
    assert main(["data", "tokenize", "--data", str(out), "--tokenizer", str(built["tok"])]) == 0
    assert (out / "shards" / "meta.json").read_bytes() == (
        built["out"] / "shards" / "meta.json"
    ).read_bytes()
    assert json.loads((out / "data_card.json").read_text()) == built["card"]


def test_generators_source(tmp_path):
    problems = pytest.importorskip("hillclimb.problems")
    if not hasattr(problems, "generate"):  # a namespace package while it is being written
        pytest.skip("hillclimb.problems API not available yet")
    fam = sorted(problems.FAMILIES)[0]
    cfg = data_config_from_dict(
        {
            "sources": [{"kind": "generators", "families": [fam], "tiers": [1], "per_tier": 5}],
            "decontaminate": SMALL_PROBES,
        }
    )
    out = tmp_path / "out"
    build(cfg, out, progress=False)
    docs = list(iter_documents(out))
    assert docs and all(d["source"] == "generators" and d["family"] == fam for d in docs)
    assert all(d["license"] == "Apache-2.0" for d in docs)


def test_split_always_keeps_a_train_document():
    """With >= 2 documents both splits are non-empty: 2 documents both under val_fraction went
    to val (pre-training then failed: "no documents with split == 'train'"). Splits that had
    both sides are unchanged (the old rule, inlined)."""
    two = [("doc-a", 0), ("doc-b", 1)]
    assert len(split_val(DataConfig(val_fraction=0.99), two)) == 1
    assert split_val(DataConfig(val_fraction=0.2), [("only", 0)]) == []
    assert split_val(DataConfig(val_fraction=0.0), two) == []
    from hillclimb.data.pipeline import _split_rank

    for n in (2, 3, 10, 50):
        kept = [(f"doc-{i}", i) for i in range(n)]
        for frac in (0.02, 0.2, 0.5, 0.9):
            cfg = DataConfig(val_fraction=frac)
            scored = sorted((_split_rank(cfg.seed, d), o) for d, o in kept)
            old = sorted([o for u, o in scored if u < frac] or [scored[0][1]])
            val = split_val(cfg, kept)
            assert 1 <= len(val) < n
            if len(old) < n:
                assert val == old


def test_single_document_warns_and_emptied_source_shows_zero(tmp_path, capsys):
    """One kept document → no val split: the card (JSON and Markdown) and the CLI summary say so.
    A source whose every document was removed (here: all exact duplicates) keeps a 0 row in
    the card's "by source" instead of vanishing. A record-level skip carries its `detail`."""
    from hillclimb.data import cli as data_cli

    doc = {"text": corpus.python_module(900), "path": "a/one.py", "license": "MIT"}
    (tmp_path / "a.jsonl").write_text(json.dumps(doc) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(doc) + "\n" + json.dumps({"body": "x"}) + "\n")
    cfg = DataConfig(
        sources=[
            SourceConfig(kind="jsonl", name="a", path=str(tmp_path / "a.jsonl")),
            SourceConfig(kind="jsonl", name="b", path=str(tmp_path / "b.jsonl")),
        ],
        val_fraction=0.1,
        decontaminate=DecontaminateConfig(enabled=False),
    )
    out = tmp_path / "out"
    card = build(cfg, out, progress=False)
    assert card["by_split"] == {"train": card["by_source"]["a"]}
    assert card["by_source"]["b"] == {"documents": 0, "bytes": 0}
    assert "| b | 0 | 0 |" in (out / "DATA_CARD.md").read_text()
    assert card["warnings"] and card["warnings"][0].startswith("no val split (only 1 document")
    assert "**Warning:** no val split" in (out / "DATA_CARD.md").read_text()
    data_cli._summary(card, str(out))
    assert "warning: no val split" in capsys.readouterr().out
    (ingest,) = [r for f in (out / "rejects").glob("ingest*") for r in iter_jsonl(f)]
    assert ingest["reason"] == "malformed_record"
    assert ingest["detail"] == "text_field 'text' missing; record fields: body"


def test_special_token_strings_in_documents_are_text_in_the_shards(tmp_path):
    """A corpus document that quotes `<|endoftext|>` or `<|im_end|>` (this package's own source
    does) is encoded as text: the shards hold one eos per document, as separator, and no other
    special token."""
    from hillclimb.data.tokenize import tokenize_corpus
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    tok = bytelevel_tokenizer()
    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    texts = ['STOP = "<|im_end|>"\n', "a README: <|endoftext|> ends a document\n", "plain\n"]
    (docs / "part-0.jsonl").write_text(
        "".join(
            json.dumps({"id": str(i), "text": t, "split": "train"}) + "\n"
            for i, t in enumerate(texts)
        )  # fmt: skip
    )
    tokenize_corpus(tmp_path / "corpus", tok, tmp_path / "shards")
    sp = ShardReader(tmp_path / "shards").split("train")
    ids = [int(x) for x in sp.tokens[: sp.doc_offsets[-1]]]
    specials = set(tok.special_ids.values())
    assert [i for i in ids if i in specials] == [tok.eos_id] * len(texts)
    assert tok.decode(ids[: int(sp.doc_offsets[1]) - 1]) == texts[0]
