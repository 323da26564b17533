"""Decontamination in `hillclimb data build`: planted evaluation items are removed exactly, the
package's problem generators never become documents, the card counts it all, resume stays
byte-identical and bad configuration fails clearly. Corpora are made in tmp_path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hillclimb import problems as P
from hillclimb.cli import main
from hillclimb.data.config import DataConfig, DecontaminateConfig, data_config_from_dict
from hillclimb.data.decontam import (
    Probe,
    ProbeIndex,
    build_index,
    coverage_gap,
    normalize_tokens,
)
from hillclimb.data.jsonl import iter_documents, iter_jsonl
from hillclimb.data.pipeline import build
from hillclimb.data.recipe import expand_source_path, load_data_config
from hillclimb.data.sources import PROBLEMS_SKIP, problems_dir, source_items
from hillclimb.errors import ConfigError

_spec = importlib.util.spec_from_file_location(
    "data_corpus", Path(__file__).parent / "fixtures" / "data" / "corpus.py"
)
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
# small probe set for speed: the planted items are drawn from exactly these suites
PROBES = {"problems_n_per_tier": 3, "problems_families": ["word_problem", "code_function"]}


def _heldout_word_problem() -> P.Problem:
    return P.problem_suite(0, "heldout", 3, ["word_problem"], [3])[0]


def _heldout_code() -> P.Problem:
    """A held-out code reference long enough to hold a 13-gram (tier 1 ones are one-liners)."""
    for p in P.problem_suite(0, "heldout", 3, ["code_function"], [2, 3, 4]):
        if len(normalize_tokens(p.answer)) >= 13:
            return p
    raise AssertionError("no held-out code reference with >= 13 tokens")


def _make_corpus(root: Path, planted: bool) -> dict[str, Path]:
    """An MIT tree of distinct modules and a JSONL file; with `planted`, one tree file holds a
    held-out word problem (prompt + worked solution), one a held-out code reference as a Python
    string literal (with \\n escapes), and one JSONL record the word problem again."""
    pkg = root / "tree"
    pkg.mkdir(parents=True)
    (pkg / "LICENSE").write_text(corpus.MIT)
    for i in range(6):
        (pkg / f"mod_{i}.py").write_text(corpus.python_module(1000 + i))
    recs = [
        {"text": corpus.python_module(2000 + i), "path": f"j/m{i}.py", "license": "MIT"}
        for i in range(4)
    ]
    if planted:
        wp, code = _heldout_word_problem(), _heldout_code()
        doc = f'"""Notes.\n\n{wp.prompt}\n\n{wp.reasoning}\n{P.final_content(wp)}\n"""\n\n'
        (pkg / "notes.py").write_text(doc + corpus.python_module(3000, 2))
        (pkg / "table.py").write_text(
            f"REFERENCE = {code.answer!r}\n\n\n" + corpus.python_module(3001, 2)
        )
        assert "\\n" in repr(code.answer)
        recs.insert(
            2,
            {"text": doc + corpus.python_module(3002, 2), "path": "j/planted.py", "license": "MIT"},
        )
    jl = root / "docs.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {"tree": pkg, "jsonl": jl}


def _cfg(paths: dict[str, Path], **decon) -> DataConfig:
    return data_config_from_dict(
        {
            "chunk_docs": 3,
            "val_fraction": 0.2,
            "sources": [
                {"kind": "tree", "name": "tree", "path": str(paths["tree"])},
                {"kind": "jsonl", "name": "jl", "path": str(paths["jsonl"])},
            ],
            "decontaminate": {**PROBES, **decon},
        }
    )


def _rejects(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for f in sorted((out / "rejects").glob("*.jsonl.gz")):
        for r in iter_jsonl(f):
            found.setdefault(r["filter"], []).append(r)
    return found


def _entry(card: dict) -> dict:
    return next(f for f in card["filters"] if f["name"] == "decontaminate")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    paths = _make_corpus(root / "src", planted=True)
    out, base = root / "out", root / "base"
    card = build(_cfg(paths), out, progress=False)
    card_off = build(_cfg(paths, enabled=False), base, progress=False)
    return {"paths": paths, "out": out, "card": card, "base": base, "card_off": card_off}


# ---------------------------------------------------------------------------------------------
# Normalisation and the index
# ---------------------------------------------------------------------------------------------


def test_normalisation_matches_code_written_out_and_as_string_literal():
    code = "def count_vowels(word):\n    total = 0\n    for ch in word:\n        total += 1\n"
    assert normalize_tokens(repr(code)) == normalize_tokens(code)
    assert normalize_tokens("A\tB\\tc\\nD_e") == ["a", "b", "c", "d", "e"]
    assert normalize_tokens("x = 3 +  4") == normalize_tokens("X=3+4")


def test_index_ngrams_whole_short_probes_and_too_short():
    long = "the quick brown fox jumps over the lazy dog while seven tired otters sleep soundly"
    short = "alpha beta gamma delta epsilon zeta eta theta iota"  # 9 tokens: whole only
    tiny = "one two three"  # too short to mean anything
    probes = [Probe(name, "file:t", text) for name, text in [("long", long), ("short", short)]]
    index = ProbeIndex.build([*probes, Probe("tiny", "file:t", tiny)], ngram=13, min_tokens=8)
    assert index.stats["probes"] == 3 and index.stats["too_short"] == 1
    assert index.stats["whole_text_probes"] == 1
    words = long.split()
    m = index.match("Intro text. " + " ".join(words[1:14]).upper() + " -- end")
    assert m is not None and m.probe == "long" and m.tokens == 13
    assert m.ngram == " ".join(words[1:14])
    assert index.match("intro " + " ".join(words[:12]) + " end") is None  # only 12 shared
    assert index.match(f"see: {short}!").probe == "short"
    assert index.match(" ".join(short.split()[:8])) is None  # part of a short probe: no
    assert index.match(f"{tiny} {tiny}") is None
    assert index.match("") is None


def test_unicode_disguises_do_not_hide_a_probe():
    """Measured before `_fold` (the default probes' held-out texts of >= 13 words, 2,871; `bench/decontam_disguises.py`): a
    document with the item's digits written full-width was caught 39% of the time, with Latin
    letters swapped for Cyrillic look-alikes 3.6%, with a soft hyphen after each `o` 53%."""
    text = (
        "Nina shares 18 shells equally among 2 friends and keeps what is left over. "
        "Then she gives 5 of the leftover shells to her brother. How many does she keep?"
    )
    index = ProbeIndex.build([Probe("item", "problems:heldout", text)], ngram=13, min_tokens=8)
    fullwidth = text.translate({ord(d): chr(0xFF10 + int(d)) for d in "0123456789"})
    cyrillic = text.translate(str.maketrans("aeopcxiAEOPCX", "аеорсхіАЕОРСХ"))
    greek = text.translate(str.maketrans("oai", "οαι"))
    soft = text.replace("o", "o\u00ad").replace("e", "e\u200b")
    for disguised in (fullwidth, cyrillic, greek, soft, text.replace(" ", "\u3000")):
        assert disguised != text
        m = index.match("Preface.\r\n" + disguised + "\r\n")
        assert m is not None and m.probe == "item", disguised
    # genuine non-Latin text is not turned into probe words
    assert index.match("Нина делит 18 ракушек поровну между 2 друзьями и оставляет остаток") is None
    assert normalize_tokens("ｄｅｆ ａｄｄ（ａ， ｂ）") == ["def", "add", "a", "b"]
    assert normalize_tokens("\ufb01nd the \ufb02ag") == ["find", "the", "flag"]  # ligatures


def test_index_survives_save_and_load(tmp_path):
    probes = [Probe(f"p{i}", "file:t", corpus.python_module(i, 1)) for i in range(5)]
    index = ProbeIndex.build(probes, 13, 8)
    index.save(tmp_path / "probes.npz")
    again = ProbeIndex.load(tmp_path / "probes.npz")
    assert again.stats == index.stats and again.labels == index.labels
    for p in probes:
        assert again.match(p.text).probe == index.match(p.text).probe == p.id


def test_parallel_probe_generation_equals_one_call():
    from hillclimb.data import decontam

    fams = ["word_problem", "code_bugfix", "sequence"]
    decontam._PROBLEM_CACHE.pop(((0,), 2, tuple(fams)), None)
    par = decontam.problem_probe_records([0], 2, fams, workers=2)
    assert par == P.contamination_probes(seeds=[0], n_per_tier=2, families=fams)


# ---------------------------------------------------------------------------------------------
# Planted evaluation items
# ---------------------------------------------------------------------------------------------


def test_planted_items_removed_exactly(planted):
    rej = _rejects(planted["out"])["decontaminate"]
    assert {(r["source"], r["path"]) for r in rej} == {
        ("tree", "notes.py"),
        ("tree", "table.py"),
        ("jl", "j/planted.py"),
    }
    wp, code = _heldout_word_problem(), _heldout_code()
    probe_of = {r["path"]: r["probe"] for r in rej}
    assert probe_of == {"notes.py": wp.id, "j/planted.py": wp.id, "table.py": code.id}
    assert all(r["reason"] == "contaminated" and r["match"] for r in rej)
    assert all(r["probe_origin"] == "problems:heldout" for r in rej)
    # nothing else changed: the same documents as without decontamination, minus the planted
    kept = {d["id"] for d in iter_documents(planted["out"])}
    base = {d["path"]: d["id"] for d in iter_documents(planted["base"])}
    planted_ids = {base.pop(p) for p in ("notes.py", "table.py", "j/planted.py")}
    assert kept == set(base.values()) and not kept & planted_ids
    assert all("decontaminate" in d["kept_by"] for d in iter_documents(planted["out"]))


def test_card_counts_removals(planted):
    e = _entry(planted["card"])
    assert e["enabled"] and e["dropped"] == 3 and e["reasons"] == {"contaminated": 3}
    rej = _rejects(planted["out"])["decontaminate"]
    assert e["removed_by_source"] == {
        "jl": {"documents": 1, "bytes": sum(r["bytes"] for r in rej if r["source"] == "jl")},
        "tree": {"documents": 2, "bytes": sum(r["bytes"] for r in rej if r["source"] == "tree")},
    }
    assert {x["probe"] for x in e["examples"]} == {_heldout_word_problem().id, _heldout_code().id}
    assert [(x["source"], x["path"]) for x in e["examples"]] == [
        ("tree", "notes.py"),
        ("tree", "table.py"),
        ("jl", "j/planted.py"),
    ]
    pr = e["probes"]
    assert pr["probes"] > 0 and pr["too_short"] >= 0 and pr["ngrams"] > 0
    assert set(pr["by_origin"]) == {
        "problems:val", "problems:heldout", "problems:heldout_phrasing",
        "suite:humaneval", "suite:adversarial", "suite:ifeval", "suite:fim",
    }  # fmt: skip
    assert pr["suite_items"]["humaneval"] == 164 and pr["suite_items"]["ifeval"] == 1000
    assert e["stats"]["documents_checked"] == planted["card_off"]["ingest"]["items"] - sum(
        planted["card_off"]["ingest"]["skipped"].values()
    )
    md = (planted["out"] / "DATA_CARD.md").read_text()
    assert "decontaminate — dropped 3" in md and _heldout_code().id in md
    assert f"Probes: {pr['probes']:,} texts" in md
    assert "the suites' items (adversarial 50, fim " in md and "humaneval 164, ifeval 1,000)" in md
    off = _entry(planted["card_off"])
    assert not off["enabled"] and off["dropped"] == 0 and off["probes"] is None


def test_clean_corpus_loses_nothing(tmp_path):
    paths = _make_corpus(tmp_path / "src", planted=False)
    card = build(_cfg(paths), tmp_path / "on", progress=False)
    build(_cfg(paths, enabled=False), tmp_path / "off", progress=False)
    e = _entry(card)
    assert e["dropped"] == 0 and e["removed_by_source"] == {} and e["examples"] == []
    on = {d["id"]: d["text"] for d in iter_documents(tmp_path / "on")}
    off = {d["id"]: d["text"] for d in iter_documents(tmp_path / "off")}
    assert on == off and len(on) == 10
    assert "decontaminate" not in _rejects(tmp_path / "on")


def test_eval_file_probes(tmp_path):
    item = "Zorblax quantifies the wibbling frumious bandersnatch across eleven purple harbors"
    evals = tmp_path / "evals.jsonl"
    evals.write_text(
        json.dumps({"id": "q1", "question": item, "answer": "42"})
        + "\n"
        + json.dumps(["a list of strings is a probe per string", "second string of it"])
        + "\n\n"
        + json.dumps("a bare string line")
        + "\n"
    )
    paths = _make_corpus(tmp_path / "src", planted=False)
    (paths["tree"] / "leak.py").write_text(f"# {item.lower()}\n" + corpus.python_module(4000, 2))
    cfg = _cfg(
        paths, files=[str(evals)], text_fields=["question", "answer"], problems_seeds=[], suites=[]
    )
    card = build(cfg, tmp_path / "out", progress=False)
    e = _entry(card)
    assert e["dropped"] == 1 and e["examples"][0]["probe"] == "evals.jsonl:q1"
    assert e["examples"][0]["probe_origin"] == "file:evals.jsonl"
    pr = e["probes"]
    assert pr["by_origin"] == {"file:evals.jsonl": 5} and pr["problem_items"] == 0
    assert pr["files"][0]["probes"] == 5 and len(pr["files"][0]["sha256"]) == 64
    assert pr["too_short"] == 3  # "42", the second list string and the bare string
    assert pr["whole_text_probes"] == 2  # the 11-word item and the 9-word list string


# ---------------------------------------------------------------------------------------------
# The package's problem generators
# ---------------------------------------------------------------------------------------------


def _problem_files() -> set[str]:
    return {
        f"problems/{p.relative_to(problems_dir()).as_posix()}"
        for p in problems_dir().rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_hillclimb_tree_never_includes_problems():
    from hillclimb.data.config import SourceConfig

    hc = expand_source_path("{hillclimb}", ROOT)
    items = list(source_items(SourceConfig(kind="tree", name="hc", path=hc, include=["*.py"])))
    skipped = {it.path for it in items if it.skip == PROBLEMS_SKIP}
    assert skipped == _problem_files() and len(skipped) >= 8
    assert not [it for it in items if it.file and Path(it.file).is_relative_to(problems_dir())]
    assert any(it.path == "data/decontam.py" and it.file for it in items)
    # a source rooted inside problems/: every file excluded
    inner = list(source_items(SourceConfig(kind="tree", name="p", path=str(problems_dir()))))
    assert inner and all(it.skip == PROBLEMS_SKIP for it in inner if it.path.endswith(".py"))
    # a git source of the repository (tracked files) reaches them through src/hillclimb/problems
    if (ROOT / ".git").exists():
        git = list(source_items(SourceConfig(kind="git", name="g", path=str(ROOT))))
        under = [it for it in git if it.path.startswith("src/hillclimb/problems/")]
        assert under and all(it.skip == PROBLEMS_SKIP for it in under)


@pytest.mark.parametrize("enabled", [True, False])
def test_problem_files_excluded_and_counted_always(tmp_path, enabled):
    table = {
        "sources": [
            {"kind": "tree", "name": "hc", "path": "{hillclimb}", "license": "Apache-2.0",
             "include": ["problems/*.py", "errors.py"]},
        ],
        "decontaminate": {**PROBES, "enabled": enabled},
    }  # fmt: skip
    recipe = tmp_path / "r.toml"
    recipe.write_text("")
    from hillclimb.data.recipe import expand_data_paths

    card = build(data_config_from_dict(expand_data_paths(table, tmp_path)), tmp_path / "o")
    n = len({f for f in _problem_files() if f.count("/") == 1})
    assert card["ingest"]["skipped"] == {PROBLEMS_SKIP: n}
    assert _entry(card)["excluded_problem_files"] == {"hc": n}
    assert [d["path"] for d in iter_documents(tmp_path / "o")] == ["errors.py"]
    # the index the build used is an output (the climb's SFT-data stage checks flywheel data)
    assert (tmp_path / "o" / "probes.npz").is_file() == enabled
    assert f"hc {n} files" in (tmp_path / "o" / "DATA_CARD.md").read_text()


def test_heldout_marked_directories_are_never_documents(tmp_path):
    """A directory holding `.hillclimb-heldout` (and everything below it) is held out of tree
    and git sources, counted in the data card; the task generator's held-out projects carry
    the marker, so a recipe ingesting this package never trains on them."""
    from hillclimb.data.config import SourceConfig
    from hillclimb.data.sources import HELDOUT_SKIP
    from hillclimb.harness.taskgen.common import HELDOUT_PROJECTS
    from hillclimb.io import HELDOUT_MARKER

    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.py").write_text("def a():\n    return 1\n")
    (src / "eval_only" / "deep").mkdir(parents=True)
    (src / "eval_only" / HELDOUT_MARKER).write_text("")
    (src / "eval_only" / "b.py").write_text("def b():\n    return 2\n")
    (src / "eval_only" / "deep" / "c.py").write_text("def c():\n    return 3\n")
    table = {"sources": [{"kind": "tree", "name": "t", "path": str(src),
                          "license": "Apache-2.0"}]}  # fmt: skip
    card = build(data_config_from_dict(table), tmp_path / "o")
    assert [d["path"] for d in iter_documents(tmp_path / "o")] == ["keep/a.py"]
    assert card["ingest"]["skipped"] == {HELDOUT_SKIP: 2}
    assert _entry(card)["excluded_heldout_files"] == {"t": 2}
    assert "Held-out directories" in (tmp_path / "o" / "DATA_CARD.md").read_text()
    # this package's own tree: the held-out task projects are skipped, the others are not
    hc = expand_source_path("{hillclimb}", ROOT)
    items = list(source_items(SourceConfig(kind="tree", name="hc", path=hc, include=["*.py"])))
    held = {it.path.split("/")[4] for it in items if it.skip == HELDOUT_SKIP}
    assert held == HELDOUT_PROJECTS - {"ranges", "semver"}  # include: *.py (those are .js)
    kept = {it.path.split("/")[4] for it in items
            if it.file and it.path.startswith("harness/taskgen/projects/")}  # fmt: skip
    assert kept and not kept & HELDOUT_PROJECTS


def test_generator_documents_are_never_evaluation_items(tmp_path):
    """The generators source (train split) must never yield an evaluation item; its n-gram
    overlaps with probes (shared templates and sub-steps of sibling problems) are kept and
    counted, or dropped on request. Probes: 10 items per family x tier x split (the default 50
    takes tens of seconds to generate)."""
    cfg = data_config_from_dict(
        {
            "sources": [{"kind": "generators", "per_tier": 30}],
            "decontaminate": {"problems_n_per_tier": 10},
        }
    )
    card = build(cfg, tmp_path / "keep", progress=False)
    e = _entry(card)
    assert e["dropped"] == 0
    n_docs = 30 * len(P.TRAIN_FAMILIES) * len(P.TIERS)
    assert e["stats"]["documents_checked"] == n_docs  # the check ran over every document
    index = build_index(cfg.decontaminate)  # memoised: the same probes
    generated = {d["problem_id"] for d in iter_documents(tmp_path / "keep")}
    generated |= {r["problem_id"] for r in _rejects(tmp_path / "keep").get("dedup", [])}
    assert len(generated) > 0.9 * n_docs and not generated & index.item_ids
    overlaps = sum(e["generator_overlaps_kept"].values())
    assert all(x["source"] == "generators" for x in e["generator_overlap_examples"])
    cfg.decontaminate.generator_overlaps = "drop"
    e2 = _entry(build(cfg, tmp_path / "drop", progress=False))
    assert e2["dropped"] == overlaps and e2["generator_overlaps_kept"] == {}


def test_a_leaked_generator_item_is_dropped(tmp_path, monkeypatch):
    """If the split ever leaked, the generators source would emit an evaluation item: simulate
    it by making generate() return held-out problems, and check they are removed by id."""
    import hillclimb.data.sources as sources

    real = P.generate
    monkeypatch.setattr(
        P, "generate", lambda fam, tier, n, seed, split="train": real(fam, tier, n, seed, "heldout")
    )
    cfg = data_config_from_dict(
        {
            "sources": [{"kind": "generators", "families": ["arith"], "tiers": [1], "per_tier": 3}],
            "decontaminate": {"problems_n_per_tier": 3, "problems_families": ["arith"]},
            "dedup": {"exact": False, "near": False},
        }
    )
    assert sources.generator_items  # the source reads problems.generate at call time
    e = _entry(build(cfg, tmp_path / "o", progress=False))
    assert e["dropped"] == 3 and e["removed_by_source"]["generators"]["documents"] == 3
    assert all("evaluation item itself" in x["match"] for x in e["examples"])


# ---------------------------------------------------------------------------------------------
# Resume and configuration
# ---------------------------------------------------------------------------------------------


def _tree_bytes(d: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


@pytest.mark.parametrize("fault", ["raise-probes", "raise-chunk:2", "raise-dedup"])
def test_resume_after_failure_is_identical(planted, tmp_path, fault):
    cfg = _cfg(planted["paths"])
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected fault"):
        build(cfg, out, progress=False, fault=fault)
    assert (out / ".work" / "probes.npz").is_file()
    build(cfg, out, resume=True, progress=False)
    assert _tree_bytes(out) == _tree_bytes(planted["out"])


def test_sigkill_after_probes_then_resume_is_identical(planted, tmp_path):
    paths = planted["paths"]
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[data]\nchunk_docs = 3\nval_fraction = 0.2\n"
        f'[[data.sources]]\nkind = "tree"\nname = "tree"\npath = "{paths["tree"]}"\n'
        f'[[data.sources]]\nkind = "jsonl"\nname = "jl"\npath = "{paths["jsonl"]}"\n'
        "[data.decontaminate]\nproblems_n_per_tier = 3\n"
        'problems_families = ["word_problem", "code_function"]\n'
    )
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["data", "build", "--recipe", str(recipe), "--out", str(ref)]) == 0
    env = {**os.environ, "PYTHONPATH": SRC, "HILLCLIMB_DATA_FAULT": "kill-probes"}
    cmd = [sys.executable, "-m", "hillclimb", "data", "build", "--recipe", str(recipe)]
    proc = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert (out / ".work" / "probes.npz").is_file() and not (out / ".work" / "chunks").exists()
    env.pop("HILLCLIMB_DATA_FAULT")
    proc = subprocess.run([*cmd, "--out", str(out), "--resume"], env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _tree_bytes(out) == _tree_bytes(ref)
    assert _entry(json.loads((out / "data_card.json").read_text()))["dropped"] == 3


@pytest.mark.parametrize(
    ("decon", "match"),
    [
        ({"ngram": 3}, "ngram must be an integer >= 4"),
        ({"ngram": 10, "min_tokens": 11}, "min_tokens must be an integer in"),
        ({"generator_overlaps": "maybe"}, "generator_overlaps"),
        ({"problems_seeds": "0"}, "problems_seeds must be a list"),
        ({"ngrams": 13}, "unknown key"),
    ],
)
def test_bad_config_is_a_clear_error(decon, match):
    with pytest.raises(ConfigError, match=match):
        data_config_from_dict({"sources": [{"kind": "generators"}], "decontaminate": decon})


def test_decontamination_cannot_be_skipped_per_source():
    with pytest.raises(ConfigError, match="cannot be skipped"):
        data_config_from_dict(
            {"sources": [{"kind": "generators", "skip_filters": ["decontaminate"]}]}
        )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot read it"),
        (b"{not json\n", "line 1 is not JSON"),
        (b'{"text": "ok"}\n{"other": "x"}\n', "line 2 has none of the text fields"),
        (b"42\n", "neither a string"),
        (b"\n\n", "holds no probe texts"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_eval_file_fails_before_writing(tmp_path, content, match):
    evals = tmp_path / "evals.jsonl"
    if content is not None:
        evals.write_bytes(content)
    cfg = data_config_from_dict(
        {
            "sources": [{"kind": "generators", "per_tier": 1}],
            "decontaminate": {"files": [str(evals)], "problems_seeds": []},
        }
    )
    with pytest.raises(ConfigError, match=match):
        build(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_reports_unreadable_eval_file_in_one_line(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[data]\n[[data.sources]]\nkind = "generators"\nper_tier = 1\n'
        '[data.decontaminate]\nfiles = ["missing.jsonl"]\n'
    )
    assert main(["data", "build", "--recipe", str(recipe), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "eval file" in err and str(tmp_path / "missing.jsonl") in err and "\n" not in err


def test_recipe_paths_and_eval_coverage(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[data]\n[[data.sources]]\nkind = "generators"\n'
        '[data.decontaminate]\nfiles = ["evals/a.jsonl"]\n'
    )
    cfg = load_data_config(recipe)
    assert cfg.decontaminate.files == [str((tmp_path / "evals" / "a.jsonl").resolve())]
    assert coverage_gap(DecontaminateConfig(), 0, 50, None) is None
    assert "n_per_tier" in coverage_gap(DecontaminateConfig(problems_n_per_tier=10), 0, 20, None)
    assert "seed 3" in coverage_gap(DecontaminateConfig(), 3, 10, None)
    assert coverage_gap(DecontaminateConfig(enabled=False), 3, 99, None) is None
    # the climb refuses a recipe whose probes miss its own evaluation suite
    from hillclimb.climb.climb_recipe import parse_recipe

    for name in ("smoke", "tiny"):
        path = ROOT / "recipes" / f"{name}.toml"
        raw = tomllib.loads(path.read_text())
        parse_recipe(raw, path)
        raw["data"]["decontaminate"]["problems_n_per_tier"] = 0
        with pytest.raises(ConfigError, match="must cover the \\[eval\\] suites"):
            parse_recipe(raw, path)


def test_standard_suite_items_are_probes(tmp_path):
    """HumanEval, the adversarial set, the IFEval-style prompts and the FIM suite's held-out
    stdlib code are probes by default: a corpus file holding any of them is dropped (the tiny
    recipe's own corpus held eval/adversarial.py, references and hidden tests included); with
    `suites = []` the same files are kept."""
    from hillclimb.eval.adversarial import ITEMS, REFERENCES
    from hillclimb.eval.fim_suite import stdlib_files
    from hillclimb.eval.humaneval import load_problems
    from hillclimb.eval.ifeval import generate_items

    he = load_problems()[17]
    adv = ITEMS[9]
    planted = {
        "he.py": he["prompt"] + he["canonical_solution"],
        "adv_tests.py": f"def {adv.signature}:\n    pass\n\n{adv.tests}\n",
        "adv_ref.py": REFERENCES[adv.id],
        "ifeval.md": "Prompts we like:\n\n" + generate_items(30, 0)[29].prompt + "\n",
        "fim.py": stdlib_files()[3].read_text(encoding="utf-8"),
    }
    paths = _make_corpus(tmp_path / "src", planted=False)
    for name, text in planted.items():
        (paths["tree"] / name).write_text(text)
    on = build(_cfg(paths, problems_seeds=[0]), tmp_path / "on", progress=False)
    kept_on = {d["path"] for d in iter_documents(tmp_path / "on")}
    assert not kept_on & set(planted)
    e = _entry(on)
    hits = {(x["path"], x["probe_origin"]) for x in _rejects(tmp_path / "on")["decontaminate"]}
    assert hits == {
        ("he.py", "suite:humaneval"), ("adv_tests.py", "suite:adversarial"),
        ("adv_ref.py", "suite:adversarial"), ("ifeval.md", "suite:ifeval"),
        ("fim.py", "suite:fim"),
    }  # fmt: skip
    assert e["params"]["suites"] == ["humaneval", "adversarial", "ifeval", "fim"]
    build(_cfg(paths, problems_seeds=[0], suites=[]), tmp_path / "off", progress=False)
    kept_off = {d["path"] for d in iter_documents(tmp_path / "off")}
    assert set(planted) <= kept_off and kept_off - set(planted) == kept_on


def test_the_package_eval_suites_never_reach_the_corpus(tmp_path):
    """A tree source over the installed package (the tiny recipe's `{hillclimb}`) keeps the
    evaluation code but not the suites whose items live in it."""
    table = {
        "sources": [
            {"kind": "tree", "name": "hc", "path": "{hillclimb}", "license": "Apache-2.0",
             "include": ["eval/*.py"]},
        ],
        "decontaminate": {"problems_n_per_tier": 0},
    }  # fmt: skip
    from hillclimb.data.recipe import expand_data_paths

    card = build(data_config_from_dict(expand_data_paths(table, tmp_path)), tmp_path / "o")
    kept = {d["path"] for d in iter_documents(tmp_path / "o")}
    assert "eval/humaneval.py" in kept and "eval/probes.py" in kept
    assert not {"eval/adversarial.py", "eval/ifeval.py"} & kept
    dropped = {r["path"] for r in _rejects(tmp_path / "o")["decontaminate"]}
    assert {"eval/adversarial.py", "eval/ifeval.py"} <= dropped
    assert _entry(card)["removed_by_source"]["hc"]["documents"] == len(dropped)


def test_suite_coverage_and_config_errors():
    d = DecontaminateConfig()
    assert coverage_gap(d, 0, 50, None, ["humaneval", "adversarial", "ifeval", "fim"], 0) is None
    gap = coverage_gap(DecontaminateConfig(suites=["humaneval"]), 0, 50, None, ["adversarial"])
    assert "lacks the evaluated suite 'adversarial'" in gap
    assert "suite_items 1000" in coverage_gap(d, 0, 50, None, ["ifeval"], 1500)
    # completion: `limit` held-out code functions per tier; fim: 4 x limit // 10 candidates
    assert coverage_gap(d, 0, 50, None, ["completion"], 50) is None
    assert "completion/fim" in coverage_gap(d, 0, 50, None, ["completion"], 51)
    assert "completion/fim" in coverage_gap(d, 0, 50, None, ["fim"], 200)
    fams = DecontaminateConfig(problems_families=["arith"])
    assert "code_function" in coverage_gap(fams, 0, 50, ["arith"], ["completion"])
    assert coverage_gap(DecontaminateConfig(enabled=False), 0, 50, None, ["adversarial"]) is None
    for bad, msg in (
        ({"suites": ["mmlu"]}, "no probes for these"),
        ({"suites": "humaneval"}, "list of suite names"),
        ({"suite_items": -1}, "suite_items"),
    ):
        with pytest.raises(ConfigError, match=msg):
            DecontaminateConfig(**bad).validate()
    # the climb refuses a recipe that evaluates a suite its data build would not look for
    from hillclimb.climb.climb_recipe import parse_recipe

    path = ROOT / "recipes" / "tiny.toml"
    raw = tomllib.loads(path.read_text())
    raw["data"]["decontaminate"]["suites"] = ["adversarial"]
    with pytest.raises(ConfigError, match="lacks the evaluated suite 'humaneval'"):
        parse_recipe(raw, path)


def test_evaluation_code_annotated_line_by_line_is_still_caught():
    """A held-out function with a comment after every line was a different run of words: the
    default probes' held-out texts of >= 13 words so edited were caught 1,419 of 2,877 times.
    The second look without line comments catches 2,872 (session 16), and never un-catches."""
    from hillclimb.data.decontam import Decontaminator, strip_line_comments

    ref = P.generate("code_function", 3, 1, 0, "heldout")[0]
    index = ProbeIndex.build([Probe(ref.id, "problems:heldout", ref.answer)], 13, 8)
    annotated = "\n".join(line + "  # step" for line in ref.answer.splitlines())
    judge = Decontaminator(index, DecontaminateConfig(), set())
    assert index.match(annotated) is None  # the first look alone misses it
    verdict, m = judge.check("# my notes\n" + annotated + "\n", "web", None)
    assert verdict == "drop" and m.probe == ref.id
    assert judge.check("x = 1  # nothing here\n", "web", None) == ("clean", None)
    assert strip_line_comments('u = "http://x.y/#a"  # c\n') == 'u = "http://x.y/#a"  \n'


def test_fim_probes_on_a_python_without_sources(monkeypatch):
    """A Python shipped without its stdlib .py files (some slim images) has no FIM items to
    protect: the default suite probes must not fail the data build there."""
    import hillclimb.eval.fim_suite as fim
    import hillclimb.eval.probes as probes

    monkeypatch.setattr(fim, "stdlib_files", lambda root=None: [])
    monkeypatch.setattr(probes, "_CACHE", {})
    assert probes.suite_probe_records(["fim"], [0], 10) == []
    assert probes.suite_probe_records(["adversarial"], [0], 10)  # the others are unaffected


def test_number_runs_that_could_come_from_anywhere_are_not_probes():
    """HumanEval/152's tests hold thirteen zeros in a row and /129's count 1 … 13: as probe
    n-grams they dropped C headers and numpy files as contaminated. Runs of numbers with at most
    3 values or one step size are skipped; the items themselves are still caught."""
    from hillclimb.data.decontam import Decontaminator, uninformative_windows
    from hillclimb.eval.humaneval import load_problems

    def vague(text: str, n: int) -> list[bool]:
        return list(uninformative_windows(normalize_tokens(text), n))

    assert vague("0 0 0 0 0 0 0 0 0", 8) == [True, True]
    assert vague("xs 1 2 3 4 5 6 7 8 9", 9) == [False, True]
    assert all(vague("0 0 0 1 1 1 1 2 2 2 2 3 3", 13))
    assert all(vague("10 11 12 13 14 15 16 17", 8))
    assert all(vague("0 1 2 3 4 5 6 7 8 9 a b c", 13))  # hex digits, in a Unicode table
    assert not any(vague("3 1 4 1 5 9 2 6 5 3 5 8 9", 13))  # a real test's data
    assert not any(vague("x 1 y 2 z 3 w 4", 8))
    cfg = DecontaminateConfig(problems_n_per_tier=0, suites=["humaneval"])
    index = build_index(cfg)
    assert index.stats["uninformative_ngrams_skipped"] > 0
    dec = Decontaminator(index, cfg, set())
    header = "static const int table[] = {" + ", ".join(["0"] * 40) + "};\n"
    counting = "months = [" + ", ".join(str(i) for i in range(1, 20)) + "]\n"
    for text in (header, counting):
        assert dec.check(text, "tree", None) == ("clean", None)
    he = {it["task_id"]: it for it in load_problems()}
    for tid in ("HumanEval/152", "HumanEval/129"):
        verdict, m = dec.check(he[tid]["prompt"] + he[tid]["canonical_solution"], "tree", None)
        assert verdict == "drop" and m.probe == f"humaneval/{tid}"


def test_evaluation_code_in_a_web_page_is_caught():
    """Held-out code as a web page shows it — HTML-escaped with <br> line breaks, or syntax-
    highlighted by Pygments into <span>s — was caught 1,360 of 2,877 times (the escaped form,
    session 17): markup gets a look as text, which only adds matches."""
    import html as html_mod

    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    from hillclimb.data.decontam import Decontaminator, html_to_text

    p = _heldout_code()
    cfg = DecontaminateConfig(**PROBES, suites=[])
    dec = Decontaminator(build_index(cfg), cfg, set())
    escaped = "<pre>" + html_mod.escape(p.answer).replace("\n", "<br>\n") + "</pre>"
    highlighted = highlight(p.answer, PythonLexer(), HtmlFormatter())
    for page in (escaped, highlighted):
        assert html_to_text(page) != page
        verdict, m = dec.check(f"<html><body>{page}</body></html>", "web", None)
        assert verdict == "drop" and m.probe == p.id
    # C's address-of before a name that is also an entity name stays as it is
    assert html_to_text("x = &notify; y = a &lt; b") == "x = &notify; y = a < b"
    assert dec.check("<p>Nothing to see here, only prose about lists.</p>", "web", None)[0] == (
        "clean"
    )


# ---------------------------------------------------------------------------------------------
# Renamed identifiers and URL-encoding (session 18)
# ---------------------------------------------------------------------------------------------

PROBE_FN = """def count_blocks_chars(s):
    values = []
    for ch in s:
        c = 'e' if ch == 'u' else ch
        values.append(c)
    count = 0
    for i in range(len(values)):
        if i == 0 or values[i] != values[i - 1]:
            count += 1
    return count
"""
# the same function, every name the code chose itself renamed consistently
RENAMED_FN = """def runs_of_letters(text):
    parts = []
    for letter in text:
        mapped = 'e' if letter == 'u' else letter  # same rule
        parts.append(mapped)
    total = 0
    for k in range(len(parts)):
        if k == 0 or parts[k] != parts[k - 1]:
            total += 1
    return total
"""
# the same control structure, every literal and attribute different: another function
OTHER_FN = """def count_changes(s):
    values = []
    for ch in s:
        c = 'x' if ch == 'y' else ch
        values.insert(c)
    count = 1
    for i in range(len(values)):
        if i == 2 or values[i] != values[i - 3]:
            count -= 4
    return count
"""


def _fn_index() -> ProbeIndex:
    probes = [
        Probe("item/fn", "problems:heldout", PROBE_FN),
        Probe("item/prose", "problems:heldout", "Count the blocks of equal characters in s."),
    ]
    return ProbeIndex.build(probes, 13, 8)


def _judge(index: ProbeIndex):
    from hillclimb.data.decontam import Decontaminator

    return Decontaminator(index, DecontaminateConfig(), set())


def test_a_renamed_copy_of_a_probe_function_is_dropped():
    """Held-out functions with their names consistently renamed (s -> text, count -> total) were
    caught 0 of 292 times (`bench/decontam_disguises.py`, session 18): every 13-word run holds a
    name. Their skeletons (names numbered per function) are probe n-grams of their own."""
    from hillclimb.data.decontam import code_skeleton

    index = _fn_index()
    assert index.stats["skeleton_probes"] == 1 and index.stats["skeleton_ngrams"] > 0
    assert code_skeleton(RENAMED_FN)[0] == code_skeleton(PROBE_FN)[0]
    doc = "Here is my solution:\n\n```python\n" + RENAMED_FN + "```\n\nIt runs in O(n).\n"
    assert index.match(doc) is None  # the word look alone misses it
    verdict, m = _judge(index).check(doc, "web", None)
    assert verdict == "drop" and m.probe == "item/fn" and m.origin == "problems:heldout"
    assert m.ngram.startswith("skeleton: def <0> ( <1> ) :") and m.tokens == index.skeleton_ngram
    # a method of a class, re-indented: numbered from its own `def` line all the same
    method = "class Solver:\n" + "".join("    " + line + "\n" for line in RENAMED_FN.splitlines())
    assert _judge(index).check(method, "web", None)[1].probe == "item/fn"
    # and quoted as a string literal with \n escapes, as the problem catalogue stores code
    assert _judge(index).check(f"REF = {RENAMED_FN!r}\n", "web", None)[1].probe == "item/fn"


def test_the_same_structure_with_other_literals_and_attributes_is_kept():
    """A skeleton keeps literals, keywords, builtins and attributes: a function with the probe's
    control flow but its own constants and method calls is ordinary code, not a copy."""
    judge = _judge(_fn_index())
    assert judge.check("# utils\n" + OTHER_FN, "tree", None) == ("clean", None)
    generic = (
        "def best_of(xs):\n    best = None\n    for x in xs:\n        best = x\n    return best\n"
    )
    assert judge.check(generic, "tree", None) == ("clean", None)


def test_url_encoded_copies_are_dropped():
    """URL-encoded held-out texts were caught 0 of 2,877 times (`quote`) and 663 (`quote_plus`,
    whose `+` separates words) before the percent-decoded look (session 18)."""
    from urllib.parse import quote, quote_plus

    index = _fn_index()
    judge = _judge(index)
    for enc in (quote, quote_plus):
        doc = f"GET /run?lang=python&code={enc(PROBE_FN)} HTTP/1.1\n"
        assert index.match(doc) is None or enc is quote_plus
        verdict, m = judge.check(doc, "web", None)
        assert verdict == "drop" and m.probe == "item/fn", enc
    renamed = "https://example.org/paste?src=" + quote(RENAMED_FN)
    assert judge.check(renamed, "web", None)[1].probe == "item/fn"  # both looks at once


def test_ordinary_documents_do_not_pay_for_the_new_looks(monkeypatch):
    """No `def `: no skeleton; no run of percent-escapes: no decoded view (C's printf formats,
    a single `%20`). The data build judges mostly such text."""
    from hillclimb.data import decontam

    judge = _judge(_fn_index())

    def boom(text: str):
        raise AssertionError("skeleton computed")

    monkeypatch.setattr(decontam, "code_skeleton", boom)
    for text in ("int main(void) { printf(\"%02d %5s\\n\", x, y); return 0; }",
                 "See https://example.org/a%20b for the blocks of s.", "x = 100 % 7\n"):  # fmt: skip
        assert judge._views(text) == [text]
        assert judge.check(text, "web", None) == ("clean", None)


def test_reloaded_index_judges_renamed_and_encoded_copies_the_same(tmp_path):
    """A resumed build reloads `probes.npz`: the skeleton table and its length travel with it."""
    from urllib.parse import quote

    index = _fn_index()
    index.save(tmp_path / "probes.npz")
    again = ProbeIndex.load(tmp_path / "probes.npz")
    assert again.stats == index.stats and again.skeleton_ngram == index.skeleton_ngram
    assert all((a == b).all() for a, b in zip(again.skeleton, index.skeleton, strict=True))
    for doc in ("x\n" + RENAMED_FN, quote(PROBE_FN), OTHER_FN):
        assert _judge(again).check(doc, "web", None) == _judge(index).check(doc, "web", None)
    # an index of the format before skeletons (v4: no skeleton table) is refused, not half-used
    import numpy as np

    from hillclimb.errors import HillclimbError

    with np.load(tmp_path / "probes.npz") as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("skeleton")}
    head = json.loads(bytes(arrays["head"]))
    head["format"] = "hillclimb-decontam-index-v4"
    arrays["head"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v4.npz", **arrays)
    with pytest.raises(HillclimbError, match="unknown format; rerun with --force"):
        ProbeIndex.load(tmp_path / "v4.npz")
