"""Suffix drafting (`serve/suffix.py`): the output history proposes the most frequent
continuation of the longest matching context, never across two outputs, forgets its oldest
outputs; the drafter prefers the request's own text; and through the engine, greedy output is
identical to plain decoding while drafts from earlier outputs are accepted."""

from __future__ import annotations

import pytest
import torch

from hillclimb.errors import HillclimbError
from hillclimb.serve.sampling import SamplingParams
from hillclimb.serve.suffix import HistoryConfig, OutputHistory, SuffixDrafter


def test_history_most_frequent_continuation_longest_context_first():
    h = OutputHistory(HistoryConfig(ngram_min=1, ngram_max=3, min_share=0.1))
    h.add([1, 2, 3, 4])
    h.add([1, 2, 3, 4])
    h.add([9, 2, 3, 7])
    # "2 3" is followed by 4 twice and 7 once: 4 wins, share 2/3
    tok, share = h.next_token([5, 2, 3])
    assert tok == 4 and share == pytest.approx(2 / 3)
    # the longer context "9 2 3" occurs once, followed by 7: the longest match decides
    assert h.next_token([9, 2, 3]) == (7, 1.0)
    # a path: 1 → 2 → 3 → 4, then the output ended (no continuation across outputs)
    assert h.draft([1], 10) == [2, 3, 4]
    assert h.next_token([8, 8]) is None


def test_history_ties_go_to_the_most_recent_and_min_share_stops():
    h = OutputHistory(HistoryConfig(ngram_min=1, ngram_max=2, min_share=0.6))
    h.add([5, 6, 1])
    h.add([5, 6, 2])
    assert h.next_token([5, 6]) == (2, 0.5)  # tie 1:1 → the later occurrence
    assert h.draft([5, 6], 4) == []  # 0.5 < min_share 0.6: no guess
    h.add([5, 6, 2])
    assert h.draft([5, 6], 4) == [2]  # 2/3 ≥ 0.6, then the outputs end


def test_history_never_spans_outputs_and_forgets_oldest():
    h = OutputHistory(HistoryConfig(ngram_min=2, ngram_max=2, max_tokens=6))
    h.add([1, 2])
    h.add([3, 4])
    assert h.next_token([2, 3]) is None  # "2 3" only exists across the boundary
    for k in range(10):
        h.add([10 + k, 20 + k, 30 + k])
    assert h.kept <= 6 and len(h.outputs) == 2
    assert h.next_token([1, 2]) is None  # dropped by the rebuild
    assert h.next_token([19, 29]) == (39, 1.0)
    assert h.stats()["added"] == 12


def test_history_config_validation():
    with pytest.raises(HillclimbError, match="n-gram"):
        HistoryConfig(ngram_min=3, ngram_max=2)
    with pytest.raises(HillclimbError, match="min_share"):
        HistoryConfig(min_share=0)


def test_drafter_prefers_own_context_then_history():
    h = OutputHistory(HistoryConfig(ngram_min=2, ngram_max=4))
    h.add([7, 8, 9, 10, 11])
    d = SuffixDrafter(1, history=h)
    g = torch.Generator().manual_seed(0)
    sp = SamplingParams(temperature=0)
    # own prompt has "1 2" → 3 5; the history knows nothing about it
    d.start(0, prompt_len=6, prediction=None, forced=True)
    toks, q = d.propose(0, [1, 2, 3, 5, 0, 1, 2], 4, sp, g)
    assert q is None and toks[:2] == [3, 5]
    assert d.slot_stats(0)["history"] == 0
    # no match in its own text: the history continues "7 8"
    d.start(0, prompt_len=3, prediction=None, forced=True)
    toks, _ = d.propose(0, [4, 7, 8], 4, sp, g)
    assert toks == [9, 10, 11]
    st = d.slot_stats(0)
    assert st["history"] == 1 and st["matches"] == 1 and st["misses"] == 0
    # neither: no proposal, one miss
    toks, _ = d.propose(0, [4, 7, 8, 40, 41], 4, sp, g)
    assert toks == [] and d.slot_stats(0)["misses"] == 1
