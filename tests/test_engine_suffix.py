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
    h = OutputHistory(HistoryConfig(ngram_min=1, ngram_max=3, min_share=0.1, min_match=1))
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
    h = OutputHistory(HistoryConfig(ngram_min=1, ngram_max=2, min_share=0.6, min_match=1))
    h.add([5, 6, 1])
    h.add([5, 6, 2])
    assert h.next_token([5, 6]) == (2, 0.5)  # tie 1:1 → the later occurrence
    assert h.draft([5, 6], 4) == []  # 0.5 < min_share 0.6: no guess
    h.add([5, 6, 2])
    assert h.draft([5, 6], 4) == [2]  # 2/3 ≥ 0.6, then the outputs end


def test_history_never_spans_outputs_and_forgets_oldest():
    h = OutputHistory(HistoryConfig(ngram_min=2, ngram_max=2, max_tokens=6, min_match=2))
    h.add([1, 2])
    h.add([3, 4])
    assert h.next_token([2, 3]) is None  # "2 3" only exists across the boundary
    for k in range(10):
        h.add([10 + k, 20 + k, 30 + k])
    assert h.kept <= 6 and len(h.outputs) == 2
    assert h.next_token([1, 2]) is None  # dropped by the rebuild
    assert h.next_token([19, 29]) == (39, 1.0)
    assert h.stats()["added"] == 12


def test_history_drafts_only_from_long_enough_contexts():
    h = OutputHistory(HistoryConfig(ngram_min=1, ngram_max=4, min_match=3))
    h.add([1, 2, 3, 4, 5])
    assert h.draft([9, 3], 4) == []  # "3" alone (and "9 3") is too short a context to trust
    assert h.draft([1, 2, 3], 4) == [4, 5]  # "1 2 3" is long enough
    assert h.next_token([9, 3]) == (4, 1.0)  # next_token itself still walks down to n_min


def test_history_config_validation():
    with pytest.raises(HillclimbError, match="n-gram"):
        HistoryConfig(ngram_min=3, ngram_max=2)
    with pytest.raises(HillclimbError, match="min_share"):
        HistoryConfig(min_share=0)
    with pytest.raises(HillclimbError, match="min_match"):
        HistoryConfig(ngram_max=4, min_match=6)


def test_drafter_prefers_own_context_then_history():
    h = OutputHistory(HistoryConfig(ngram_min=2, ngram_max=4, min_match=2))
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


# ---- through the engine -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def micro():
    from hillclimb.model.config import get_preset
    from hillclimb.model.transformer import build_model
    from hillclimb.tokenizer.io import bytelevel_tokenizer

    torch.set_num_threads(1)
    return build_model(get_preset("thinking-micro"), seed=0).eval(), bytelevel_tokenizer()


def test_suffix_greedy_identical_and_drafts_from_earlier_outputs(micro):
    from hillclimb.serve.engine import Engine

    model, tok = micro
    greedy = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    prompts = ["def add(a, b):\n", "Hello world", "x = 1\ny = 2\n"]
    plain = Engine(model, tok, max_batch=4, seed=0)
    ref = [plain.generate(p, greedy) for p in prompts]
    suf = Engine(model, tok, max_batch=4, seed=0, drafter="suffix", spec_max_running=4,
                 prefix_cache=False)  # fmt: skip
    first = [suf.generate(p, greedy) for p in prompts]
    # the same prompts again: their own text holds none of the answer, the history holds it all
    again = [suf.generate(p, greedy) for p in prompts]
    for r, a, b in zip(ref, first, again, strict=True):
        assert a.token_ids == r.token_ids and b.token_ids == r.token_ids
    st = suf.stats()["suffix"]
    assert st["history"]["added"] == 6 and st["drafted"] > 0
    hist = sum(o.spec["accepted"] for o in again)
    assert hist > sum(o.spec["accepted"] for o in first)  # the history is what pays
    assert sum(o.spec["accepted"] for o in again) >= 0.5 * sum(len(o.token_ids) for o in again)
    # a plain engine records no history (nothing asked for it)
    assert plain.stats()["suffix"]["history"]["added"] == 0


def test_sampled_suffix_follows_target_distribution(micro, monkeypatch):
    """History drafts are one-hot proposals like prompt lookup's: 3-token samples match the
    exact target distribution (chi-square), and skipping the p(d) test is detected."""

    import hillclimb.serve.engine as engine_mod
    from hillclimb.serve.engine import Engine
    from test_engine_lookup import _chi_square, _wrong_accept, chi2_crit, sampled_case

    model, tok = micro
    depth, n = 3, 300
    params, ids, exact, likely = sampled_case(model, tok, depth)

    def empirical():
        eng = Engine(model, tok, max_batch=16, seed=0, drafter="suffix", spec_max_running=16,
                     prefix_cache=False)  # fmt: skip
        for _ in range(3):  # earlier outputs that continued this prompt with `likely`
            eng.suffix.history.add(ids[-8:] + likely + likely)
        sps = [SamplingParams(seed=s, speculative=True, **params) for s in range(n)]
        outs = eng.generate_batch(["The answer is"] * n, sps)
        counts: dict[tuple, int] = {}
        for o in outs:
            k = tuple(o.token_ids[:depth])
            counts[k] = counts.get(k, 0) + 1
        return counts, outs

    counts, outs = empirical()
    assert set(counts) <= set(exact)
    assert sum(o.spec["drafted"] for o in outs) >= n // 2
    stat, dof = _chi_square(counts, exact, n)
    assert stat < chi2_crit(dof), (stat, dof, counts)
    monkeypatch.setattr(engine_mod, "accept_drafts", _wrong_accept)
    bad, _ = empirical()
    bad_stat, bad_dof = _chi_square(bad, exact, n)
    assert bad_stat > chi2_crit(bad_dof), (bad_stat, bad)
