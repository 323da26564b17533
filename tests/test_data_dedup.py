"""MinHash/LSH near-duplicate detection and exact dedup."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from hillclimb.data.config import DedupConfig
from hillclimb.data.dedup import (
    MinHasher,
    code_tokens,
    estimated_jaccard,
    exact_hash,
    find_duplicates,
    optimal_bands,
)

_spec = importlib.util.spec_from_file_location(
    "data_corpus", Path(__file__).parent / "fixtures" / "data" / "corpus.py"
)
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def test_code_normalisation_keeps_case_and_punctuation():
    assert code_tokens("a[i] = b") != code_tokens("a(i) == b")
    assert code_tokens("Foo = 1") != code_tokens("foo = 1")
    assert code_tokens("x  =\n\t1") == code_tokens("x = 1")
    assert code_tokens("x = 1  # note", strip_comments=True) == code_tokens("x = 1")


def test_exact_hash_normalises_whitespace_only():
    assert exact_hash("a = 1  \r\nb = 2\n\n") == exact_hash("a = 1\nb = 2")
    assert exact_hash("a = 1") != exact_hash("a = 2")


def test_signature_similarity():
    h = MinHasher(DedupConfig())
    a = corpus.python_module(1)
    near = corpus.near_copy(a)
    other = corpus.python_module(2)
    assert estimated_jaccard(h.signature(a), h.signature(near)) >= 0.8
    assert estimated_jaccard(h.signature(a), h.signature(other)) < 0.3
    assert h.signature("").shape == (128,) and h.signature("x").dtype == np.uint32


def test_signatures_deterministic_across_processes():
    code = (
        "import sys; sys.path.insert(0, {!r})\n"
        "from hillclimb.data.dedup import MinHasher; from hillclimb.data.config import DedupConfig\n"
        "print(MinHasher(DedupConfig()).signature('def f(x):\\n    return x * 2\\n')[:8].tolist())"
    ).format(str(Path(__file__).resolve().parents[1] / "src"))
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": s}
        ).stdout
        for s in ("1", "2")
    }
    assert len(outs) == 1 and outs.pop().startswith("[")


def test_lsh_params():
    b, r = optimal_bands(0.7, 128)
    assert b * r <= 128
    assert 0.6 < (1 / b) ** (1 / r) < 0.8  # S-curve midpoint near the threshold


def test_find_duplicates_prefers_permissive():
    h = MinHasher(DedupConfig())
    a = corpus.python_module(10)
    texts = [a, corpus.near_copy(a), corpus.python_module(11), a]
    sigs = np.stack([h.signature(t) for t in texts])
    ranks = [1, 0, 0, 0]  # the first copy is less permissive than the others
    res = find_duplicates([exact_hash(t) for t in texts], sigs, ranks, DedupConfig())
    # exact group {0, 3}: keep 3 (permissive); near cluster {3, 1}: keep 1 (earlier, same rank)
    assert res.dropped[0] == ("exact", 3)
    assert res.dropped[3] == ("near", 1)
    assert 2 not in res.dropped and 1 not in res.dropped
