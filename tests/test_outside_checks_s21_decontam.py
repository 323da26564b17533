"""Outside check of decontamination (session 21): held-out evaluation items disguised the way
real copies are disguised must still be dropped — JSON-dumped with `\\uXXXX` escapes (a `.json`
file, an SFT record's tool-call arguments), printed with line numbers, retold with the numbers
spelled out, written with accents or other scripts' look-alike letters, hyphenated at line
breaks — while ordinary text keeps its single look. The data build, `hillclimb sft
--decontaminate` and the climb's flywheel all judge through `Decontaminator.check`, so the
looks are tested there, and once end to end through `data build` and `decontaminate_records`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hillclimb import problems as P
from hillclimb.data.config import DecontaminateConfig, data_config_from_dict
from hillclimb.data.decontam import (
    Decontaminator,
    Probe,
    ProbeIndex,
    normalize_tokens,
)
from hillclimb.data.decontam_records import decontaminate_records, load_probes
from hillclimb.data.jsonl import iter_documents, iter_jsonl
from hillclimb.data.pipeline import build
from hillclimb.errors import ConfigError

FAMILIES = ["word_problem", "code_function"]


@pytest.fixture(scope="module")
def index() -> ProbeIndex:
    """The probes of the held-out items below (seed 0, 3 per family x tier; about a second)."""
    recs = P.contamination_probes(seeds=[0], n_per_tier=3, families=FAMILIES)
    probes = [Probe(r["id"], f"problems:{r['split']}", t) for r in recs for t in r["texts"] if t]
    return ProbeIndex.build(probes, 13, 8)


def _judge(index: ProbeIndex) -> Decontaminator:
    return Decontaminator(index, DecontaminateConfig(), set())


def _word_problem(pred=lambda p: True) -> P.Problem:
    """The first held-out word problem (tiers 1-3) for which `pred` holds."""
    for p in P.problem_suite(0, "heldout", 3, ["word_problem"], [1, 2, 3]):
        if pred(p):
            return p
    raise AssertionError("no such held-out word problem")


def _json_hidden(index: ProbeIndex) -> P.Problem:
    """A held-out word problem every 13-word run of whose worked solution crosses a non-ASCII
    `×`: JSON-dumped (`\\u00d7`), none survives unless the escape is read as the character."""

    def hidden(p: P.Problem) -> bool:
        text = _solution(p)
        gap = "".join(c if c.isascii() else f" u{ord(c):04x} " for c in text)
        return "×" in text and index.match(text) is not None and index.match(gap) is None

    return _word_problem(hidden)


def _code() -> P.Problem:
    """A held-out code reference long enough to hold a 13-gram."""
    for p in P.problem_suite(0, "heldout", 3, ["code_function"], [2, 3, 4]):
        if len(normalize_tokens(p.answer)) >= 20:
            return p
    raise AssertionError("no held-out code reference with >= 20 tokens")


def _solution(p: P.Problem) -> str:
    return f"{p.reasoning}\n{P.final_content(p)}"


_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
_UNITS += "fifteen sixteen seventeen eighteen nineteen"
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spelled(n: int) -> str:
    """`n` (0..999) in English words, the way a retelling writes it."""
    units = _UNITS.split()
    if n < 20:
        return units[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + units[n % 10])
    rest = "" if n % 100 == 0 else " and " + _spelled(n % 100)
    return units[n // 100] + " hundred" + rest


def _spell_numbers(text: str) -> str:
    import re

    return re.sub(r"\b\d{1,3}\b", lambda m: _spelled(int(m.group(0))), text)


def _drops(index: ProbeIndex, doc: str) -> bool:
    return _judge(index).check(doc, "web", None)[0] == "drop"


# ---------------------------------------------------------------------------------------------
# Each disguise: got through before (the word look and its views missed it), dropped now
# ---------------------------------------------------------------------------------------------


def test_a_json_dumped_solution_with_non_ascii_characters_is_dropped(index):
    """`json.dumps` (ensure_ascii, its default) writes "2 × 6" as "2 \\u00d7 6": the escape read as
    a word ("u00d7") and no 13-word run of the worked solution survived."""
    p = _json_hidden(index)
    doc = json.dumps({"task": "arithmetic", "solution": _solution(p)}, indent=1)
    assert "\\u00d7" in doc
    assert _drops(index, doc)
    # Python's ascii() writes \xd7 for the same character
    assert _drops(index, f"SOLUTION = {ascii(_solution(p))}\n")


def test_an_sft_record_with_the_item_in_json_tool_call_arguments_is_dropped(index, tmp_path):
    """Tool-call arguments are a JSON string inside the record: the item is escaped twice."""
    p = _json_hidden(index)
    call = {"name": "save_note", "arguments": json.dumps({"note": _solution(p)})}
    rec = {
        "messages": [
            {"role": "user", "content": "Keep my homework notes."},
            {"role": "assistant", "content": "", "tool_calls": [{"function": call}]},
        ]
    }
    clean = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    index.save(tmp_path / "probes.npz")
    loaded, _ = load_probes(tmp_path)
    kept, rep = decontaminate_records([rec, clean], loaded)
    assert kept == [clean] and rep["dropped"] == 1
    assert rep["examples"][0]["origin"] == "problems:heldout"


def test_a_listing_with_line_numbers_is_dropped(index):
    """Code as a viewer, a PDF or a book prints it: a number before every line cut every run of
    words (the held-out function below shares none with its probe)."""
    code = _code().answer
    for fmt in ("{:3d}  {}", "{}: {}", "{:>4} | {}", "{}. {}"):
        listing = "\n".join(fmt.format(i, line) for i, line in enumerate(code.splitlines(), 1))
        doc = "Listing 3.\n\n" + listing + "\n\nThe loop visits each element once.\n"
        assert index.match(doc) is None, fmt
        assert _drops(index, doc), fmt


def test_a_word_problem_retold_with_numbers_in_words_is_dropped(index):
    """ "Kenji shares fifteen oranges equally among six friends ...": every number became a word
    and no 13-word run of the prompt or solution was left."""
    p = _word_problem(lambda p: not p.reasoning.isascii())
    doc = "Homework help!\n\n" + _spell_numbers(p.prompt + "\n" + _solution(p)) + "\n"
    assert any(w in doc for w in ("two", "six", "twelve"))
    assert _drops(index, doc)
    assert index.match(doc) is not None  # read with its number words as digits
    from hillclimb.data.decontam import _words_to_digits

    assert _words_to_digits(normalize_tokens("one hundred and twenty-four, seventy-four + fifty"))[
        0
    ] == ["124", "74", "50"]
    assert _words_to_digits(["one", "two", "three"])[0] == ["1", "2", "3"]  # three numbers


def test_probes_keep_their_number_words():
    """Documents are read with number words as digits, probes are not: HumanEval/19's table
    "'zero': 0, 'one': 1, ..." as digits would be "0 0 1 1 2 2 ...", the lookup table of every
    number-formatting library; a copy of the probe still matches as written."""
    table = (
        "value_map = {" + ", ".join(f"'{w}': {i}" for i, w in enumerate(_UNITS.split()[:8])) + "}"
    )
    index = ProbeIndex.build([Probe("he/19", "suite:humaneval", table)], 13, 8)
    assert index.match("x = " + table) is not None
    digits = "NUMBERS = {" + ", ".join(f"{i}: {i}" for i in range(8)) + "}"
    assert index.match("value map " + digits) is None


def test_accents_and_other_scripts_look_alikes_are_folded(index):
    """Accented letters ("é" for "e") and look-alikes the fold did not know (dotless ı, Latin
    alpha ɑ, Armenian օ, small capitals) hid the prompt."""
    prompt = _word_problem().prompt
    for swap in ({"e": "é", "a": "à"}, {"i": "ı"}, {"a": "ɑ"}, {"o": "օ"}, {"d": "ᴅ", "s": "ꜱ"}):
        doc = "".join(swap.get(c, c) for c in prompt) + " " + _solution(_word_problem())
        disguised = "".join(swap.get(c, c) for c in doc)
        assert _drops(index, disguised), swap
    assert normalize_tokens("Résumé ᴀᴅᴅ ɑnd ıt") == ["resume", "add", "and", "it"]


def test_a_word_hyphenated_at_a_line_break_is_joined(index):
    """Text wrapped for print splits a word at the line end ("how-\\never")."""

    def hyphenated(text: str) -> str:
        """`text` with its middle word of >= 6 letters broken after 3 letters."""
        words = text.split()
        long = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
        k = long[len(long) // 2] if long else 0
        return " ".join(words[:k]) + f" {words[k][:3]}-\n{words[k][3:]} " + " ".join(words[k + 1 :])

    p = _word_problem(lambda p: index.match(hyphenated(p.prompt)) is None)
    doc = hyphenated(p.prompt)
    assert "-\n" in doc
    assert _drops(index, doc)


# ---------------------------------------------------------------------------------------------
# Ordinary text: no new view, and the views do not invent matches
# ---------------------------------------------------------------------------------------------


def test_ordinary_text_takes_no_new_view(index):
    judge = _judge(index)
    for text in (
        "x = 1\ny = 2\n",
        "Chapter 1\nIt was a dark night.\n",
        "see 1 2 3 and more",
        'printf("\\x1b[0m%s \\u00e9\\n", name);\n',  # escapes are read in the word look itself
    ):
        assert judge._views(text) == [text]
        assert judge.check(text, "tree", None) == ("clean", None)
    # text with a hint gets its view, which finds nothing that is not there
    for text in (
        "1. install\n2. configure\n3. run the tests\n",
        "a well-\nknown fact\n",
    ):
        assert len(judge._views(text)) == 2, text
        assert judge.check(text, "tree", None) == ("clean", None)


def test_a_probe_index_of_the_format_before_is_refused(index, tmp_path):
    """Probes hashed before accents were folded would not match documents normalised now (an
    accented letter in a probe reads as its base letter in a document): an index of the old
    format must be rebuilt, not half-used."""
    path = tmp_path / "probes.npz"
    index.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    head = json.loads(bytes(arrays["head"]))
    head["format"] = "hillclimb-decontam-index-v5"
    arrays["head"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match="rebuild it"):
        load_probes(path)


# ---------------------------------------------------------------------------------------------
# End to end: a `data build` tree source holding the disguised items
# ---------------------------------------------------------------------------------------------


def test_data_build_drops_the_disguised_items_and_keeps_the_rest(index, tmp_path):
    p = _json_hidden(index)
    code = _code().answer
    src = tmp_path / "src"
    src.mkdir()
    (src / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge.\n")
    listing = "\n".join(f"{i:3d}  {line}" for i, line in enumerate(code.splitlines(), 1))
    planted = {
        "notes.json": json.dumps({"solution": _solution(p)}) + "\n",
        "listing.md": "# Listing\n\n" + listing + "\n",
        "story.md": "# Story\n\n" + _spell_numbers(p.prompt + "\n" + _solution(p)) + "\n",
    }
    clean = {
        f"mod_{i}.py": "".join(
            f"def helper_{i}_{j}(value, scale={j + 2}):\n"
            f'    """Scale value by {j + 2} and clip it at {100 + i * 7 + j}."""\n'
            f"    return min(value * scale, {100 + i * 7 + j})\n\n\n"
            for j in range(8)
        )
        for i in range(4)
    }
    for name, text in {**planted, **clean}.items():
        (src / name).write_text(text, encoding="utf-8")
    cfg = data_config_from_dict(
        {
            "val_fraction": 0.2,
            "sources": [
                {
                    "kind": "tree",
                    "name": "tree",
                    "path": str(src),
                    "license": "MIT",
                    "skip_filters": ["quality", "ai_content"],
                }
            ],
            "dedup": {"near": False},
            "decontaminate": {"problems_n_per_tier": 3, "problems_families": FAMILIES},
        }
    )
    out = tmp_path / "out"
    build(cfg, out, progress=False)
    rejects = {
        r["path"]
        for f in sorted((out / "rejects").glob("decontaminate-*.jsonl.gz"))
        for r in iter_jsonl(f)
    }
    assert rejects == set(planted)
    kept = {d["path"] for d in iter_documents(out)}
    assert kept == set(clean)


def test_a_notebook_of_a_renamed_held_out_function_is_dropped(index):
    """A Jupyter notebook stores a cell's code as a JSON list of line strings: the skeleton of
    a held-out function whose names were renamed read as quotes and commas there and got
    through (`Decontaminator` reads a JSON document's strings as one more view)."""
    code = _code().answer
    renamed = code
    for old, new in (("xs", "items"), ("count", "total"), ("seen", "found"), ("best", "top")):
        renamed = renamed.replace(old, new)
    name = code.split("(")[0].removeprefix("def ")
    renamed = renamed.replace(name, "solve")
    assert renamed != code and index.match(renamed) is None
    assert _drops(index, renamed)  # the skeleton look catches the plain renamed copy
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": ["# My solution\n"]},
            {"cell_type": "code", "source": renamed.splitlines(keepends=True), "outputs": []},
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
    }
    doc = json.dumps(nb, indent=1)
    assert _drops(index, doc)
    assert _judge(index).check(json.dumps({"cells": [], "nbformat": 4}), "tree", None)[0] == "clean"
