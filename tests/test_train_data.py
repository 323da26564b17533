"""Data for training: stateless shard batches, val windows, bpb baseline, SFT masks and packing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from _train_util import write_shards
from hillclimb.data.shard_eval import unigram_bpb, val_windows
from hillclimb.data.shards import ShardReader
from hillclimb.errors import ConfigError, HillclimbError
from hillclimb.tokenizer.io import bytelevel_tokenizer
from hillclimb.train import sft_data as S
from hillclimb.train.data import PretrainBatches, rank_rows


@pytest.fixture(scope="module")
def tok():
    return bytelevel_tokenizer()


def test_pretrain_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    reader = ShardReader(write_shards(tmp_path))
    train = reader.split("train")
    a = PretrainBatches(train, 32, 6, seed=1)
    b = PretrainBatches(train, 32, 6, seed=1)
    assert a.batch(5).shape == (6, 33)
    assert np.array_equal(a.batch(5), b.batch(5))  # resumable: no hidden position
    assert not np.array_equal(a.batch(5), a.batch(6))
    assert not np.array_equal(a.batch(5), PretrainBatches(train, 32, 6, seed=2).batch(5))
    # windows are real slices of the token stream
    row = a.batch(3)[0]
    toks = np.asarray(train.tokens, dtype=np.int64)
    hits = [i for i in range(toks.size - 33) if np.array_equal(toks[i : i + 33], row)]
    assert hits
    full = a.batch(2)
    parts = [rank_rows(full, r, 3) for r in range(3)]
    assert np.array_equal(np.concatenate(parts), full)


def _spans(ids: np.ndarray, mask: np.ndarray) -> list[int]:
    """Parse a copy row: span (k tokens, no targets), its repeat's first token (no target), the
    rest of the repeat (k - 1 targets), and so on; the last span may be cut by the row's end.
    Checks every repeat against its span; returns the lengths of the spans seen whole."""
    ks, i, n = [], 0, len(ids)
    while i < n:
        j = i
        while j < n and mask[j] == 0:
            j += 1
        if j == n:
            break
        e = j
        while e < n and mask[e] == 1:
            e += 1
        k = j - i - 1
        assert ids[j - 1] == ids[i]  # the repeat's first token
        assert np.array_equal(ids[j:e], ids[i + 1 : i + 1 + (e - j)])
        if e < n:
            assert e - j == k - 1
            ks.append(k)
        i = e
    return ks


def test_copy_rows_repeat_corpus_tokens_with_targets_on_the_repeats_only(tmp_path):
    reader = ShardReader(write_shards(tmp_path))
    train = reader.split("train")
    plain = PretrainBatches(train, 64, 8, seed=3)
    ids0, mask0 = plain.batch_and_mask(4)
    assert mask0 is None and np.array_equal(ids0, plain.batch(4))  # off: the batch is unchanged
    every = PretrainBatches(train, 256, 8, seed=3, copy_fraction=1.0)
    ids, mask = every.batch_and_mask(4)
    assert ids.shape == mask.shape == (8, 257)
    vocab = set(np.asarray(train.tokens).tolist())
    for r in range(8):
        assert set(ids[r].tolist()) <= vocab  # corpus ids, never made-up ones
        ks = _spans(ids[r], mask[r])
        assert ks and all(8 <= k <= 48 for k in ks)
    again = PretrainBatches(train, 256, 8, seed=3, copy_fraction=1.0).batch_and_mask(4)
    assert np.array_equal(again[0], ids) and np.array_equal(again[1], mask)  # pure of (seed, step)
    half = PretrainBatches(train, 64, 64, seed=3, copy_fraction=0.5)
    hi, hm = half.batch_and_mask(7)
    copied = (hm == 0).any(axis=1)
    assert 10 < copied.sum() < 54  # about half the rows, chosen per step
    # the other rows are the plain windows of the same step, targets everywhere
    base = PretrainBatches(train, 64, 64, seed=3).batch(7)
    assert np.array_equal(hi[~copied], base[~copied]) and (hm[~copied] == 1).all()


def test_copy_warmup_steps_give_copy_rows_only_then_the_mix(tmp_path):
    reader = ShardReader(write_shards(tmp_path))
    train = reader.split("train")
    b = PretrainBatches(train, 64, 16, seed=5, copy_fraction=0.0, copy_warmup_steps=3)
    for step in range(3):  # the warm-up: every row a copy row
        ids, mask = b.batch_and_mask(step)
        assert (mask == 0).any(axis=1).all()
        for r in range(16):
            assert _spans(ids[r], mask[r])
    ids, mask = b.batch_and_mask(3)  # after it, the plain corpus windows (copy_fraction 0)
    assert mask is None and np.array_equal(ids, PretrainBatches(train, 64, 16, seed=5).batch(3))


def test_copy_fraction_is_validated_and_pretraining_only():
    from hillclimb.errors import ConfigError
    from hillclimb.train.config import SFTConfig, TrainConfig

    with pytest.raises(ConfigError, match="copy_fraction"):
        TrainConfig(copy_fraction=1.5)
    assert SFTConfig(copy_fraction=0.25).copy_fraction == 0.25  # SFT keeps copying alive
    with pytest.raises(ConfigError, match="pre-training option"):
        SFTConfig(copy_warmup_steps=10)
    with pytest.raises(ConfigError, match="copy_warmup_steps"):
        TrainConfig(steps=10, copy_warmup_steps=11)
    from hillclimb.rl.config import RLConfig

    with pytest.raises(ConfigError, match="pre-training options"):
        RLConfig(copy_fraction=0.5)


def test_val_windows_and_unigram_baseline(tmp_path, tok):
    reader = ShardReader(write_shards(tmp_path))
    val = reader.split("val")
    w = val_windows(val, 16, 64)
    assert w.shape == (4, 17)
    assert np.array_equal(w[1, 0], np.asarray(val.tokens[16]))
    tb = np.asarray(tok.token_bytes + [0] * 64, dtype=np.float64)
    u = unigram_bpb(reader.split("train"), w[:, 1:], tb, tok.vocab_size + 64)
    assert 1.0 < u < 8.0  # a unigram byte model of English-ish text: a few bits per byte


def test_chat_mask_covers_exactly_the_assistant_turns(tok):
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "reasoning_content": "2 plus 3 is 5", "content": "5"},
        {"role": "user", "content": "and weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}
            ],
        },
        {"role": "tool", "content": "rain"},
        {"role": "assistant", "content": "It rains."},
    ]
    ex = S.encode_chat(tok, msgs)
    assert tok.decode(ex.ids) == tok.apply_chat_template(msgs)
    learned = tok.decode([t for t, m in zip(ex.ids, ex.mask, strict=True) if m])
    # (exact whitespace is the template's business; the mask must hold the three turns, no headers)
    assert learned.startswith("<think>\n2 plus 3 is 5\n</think>")
    assert (
        "5<|im_end|><tool_call>" in learned and '"name": "weather"' in learned and "Oslo" in learned
    )
    assert learned.endswith("</tool_call><|im_end|>It rains.<|im_end|>")
    assert (
        learned.count("<|im_end|>") == 3
        and "<|im_start|>" not in learned
        and "assistant" not in learned
    )
    ctx = tok.decode([t for t, m in zip(ex.ids, ex.mask, strict=True) if not m])
    assert "2+3?" in ctx and "rain" in ctx and "be brief" in ctx and "It rains" not in ctx
    with pytest.raises(Exception, match="no assistant"):
        S.encode_chat(tok, [{"role": "user", "content": "hi"}])


def test_fim_and_text_records(tok):
    ex = S.encode_record(
        tok, {"fim": {"prefix": "def f(x):\n", "middle": "    return x\n", "suffix": "\n"}}
    )
    assert tok.decode(ex.ids).startswith("<|fim_prefix|>def f(x):\n<|fim_suffix|>\n<|fim_middle|>")
    assert (
        tok.decode([t for t, m in zip(ex.ids, ex.mask, strict=True) if m])
        == "    return x\n<|endoftext|>"
    )
    t = S.encode_record(tok, {"text": "abc"})
    assert t.n_targets == len(t.ids) == 4
    with pytest.raises(Exception, match="none of"):
        S.encode_record(tok, {"foo": 1})


def test_fim_from_corpus_is_deterministic_and_reassembles(tmp_path):
    docs = tmp_path / "corpus" / "documents"
    docs.mkdir(parents=True)
    code = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y * 2\n\n" for i in range(30))
    recs = [
        {"id": "a", "text": code, "language": "python", "split": "train"},
        {"id": "b", "text": "plain prose\n" * 20, "language": "text", "split": "train"},
    ]
    (docs / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    a = S.fim_from_corpus(tmp_path / "corpus", 20, seed=3, max_chars=300)
    assert a == S.fim_from_corpus(tmp_path / "corpus", 20, seed=3, max_chars=300)
    assert len(a) == 20
    for r in a:
        f = r["fim"]
        assert (f["prefix"] + f["middle"] + f["suffix"]) in code and f["middle"]


def test_packing_and_sft_batches(tok):
    exs = [S.Example(list(range(1, n + 1)), [0] + [1] * (n - 1)) for n in (5, 7, 3, 9, 4, 6)]
    ids, mask = S.pack(exs, range(len(exs)), 12, pad_id=0)
    assert ids.shape[1] == 12
    # every example's tokens appear whole in exactly one row, in order
    assert int((ids != 0).sum()) == sum(len(e) for e in exs)
    assert int(mask.sum()) == sum(e.n_targets for e in exs)
    b = S.SFTBatches(exs, 11, 3, seed=0, pad_id=0)
    assert np.array_equal(b.batch(4)[0], S.SFTBatches(exs, 11, 3, seed=0, pad_id=0).batch(4)[0])
    rows = b.rows_per_epoch()
    # wrap across epochs: many steps later still full batches
    for s in range(0, 3 * rows):
        i, m = b.batch(s)
        assert i.shape == (3, 12) and m.shape == (3, 12)


def test_problem_examples_when_generators_exist(tok):
    P = pytest.importorskip("hillclimb.problems")
    fam = next(f for f, k in P.FAMILIES.items() if k == "reasoning")
    recs = S.problem_examples({"families": [fam], "tiers": [1], "n": 5}, seed=0)
    assert len(recs) == 5
    ex = S.encode_record(tok, recs[0])
    learned = tok.decode([t for t, m in zip(ex.ids, ex.mask, strict=True) if m])
    assert learned.startswith("<think>") and learned.endswith("<|im_end|>")


def test_verbose_fraction_writes_that_share_the_long_way_and_keeps_the_answer():
    """`verbose_fraction`: about that share of reasoning problems get the restated, worked-twice
    solution (same problems, same answers, only more tokens); 0 leaves the data as it was; the
    choice is a fixed function of (seed, problem), so a rebuild writes the same file."""
    pytest.importorskip("hillclimb.problems")
    from hillclimb.problems.render import VERBOSE_CHECK

    spec = {"families": ["arith", "logic"], "tiers": [1, 2], "n": 100}
    plain = S.problem_examples(spec, seed=3)
    half = S.problem_examples({**spec, "verbose_fraction": 0.5}, seed=3)
    assert [r["source"] for r in plain] == [r["source"] for r in half]
    assert not any(r.get("verbose") for r in plain)
    n = sum(bool(r.get("verbose")) for r in half)
    assert 0.4 * len(half) <= n <= 0.6 * len(half)
    for a, b in zip(plain, half, strict=True):
        ra, rb = a["messages"][1]["reasoning_content"], b["messages"][1]["reasoning_content"]
        assert a["messages"][1]["content"] == b["messages"][1]["content"]  # same final answer
        if b.get("verbose"):
            assert VERBOSE_CHECK in rb and rb.count(ra) == 2 and len(rb) > 2 * len(ra)
        else:
            assert ra == rb
    assert half == S.problem_examples({**spec, "verbose_fraction": 0.5}, seed=3)
    every = S.problem_examples({**spec, "verbose_fraction": 1.0}, seed=3)
    assert all(r.get("verbose") for r in every)
    with pytest.raises(HillclimbError, match="verbose_fraction"):
        S.problem_examples({**spec, "verbose_fraction": 1.5}, seed=3)


def test_copy_rows_mix_into_masked_batches_and_skip_specials():
    """SFT's use: rows that are not picked keep their ids and mask; picked rows are copy rows
    whose spans never contain a special id (the chat template's markers)."""
    from hillclimb.train.data import CopyRows, ordinary_ids

    vocab = ordinary_ids(np.array([5, 3, 3, 9, 0, 1, 7, 7, 12]), {0, 1})
    assert vocab.tolist() == [3, 5, 7, 9, 12]
    copies = CopyRows(vocab, 65, seed=2)
    ids = np.arange(32 * 65).reshape(32, 65) % 97
    mask = (np.arange(65) % 2)[None, :].repeat(32, axis=0)
    out, om = copies.mix(3, ids, mask, 0.5)
    picked = ~(out == ids).all(axis=1)
    assert 4 < picked.sum() < 28
    assert np.array_equal(om[~picked], mask[~picked]) and not np.array_equal(ids, out)
    assert set(out[picked].ravel().tolist()) <= set(vocab.tolist())
    again = copies.mix(3, ids, mask, 0.5)
    assert np.array_equal(again[0], out) and np.array_equal(again[1], om)
    assert copies.mix(3, ids, mask, 0.0)[0] is ids  # share 0: the batch untouched
    with pytest.raises(HillclimbError, match="seq_len"):
        CopyRows(vocab, 10, seed=0)


def test_ordinary_ids_counts_in_chunks_like_unique_would():
    from hillclimb.train.data import CopyRows, ordinary_ids

    a = np.random.default_rng(0).integers(0, 3000, size=10_003).astype(np.uint16)
    want = [i for i in np.unique(a).tolist() if i not in {0, 7, 2999}]
    for chunk in (1, 7, 4096, 1 << 24):  # chunk edges never lose or add an id
        assert ordinary_ids(a, {0, 7, 2999}, chunk=chunk).tolist() == want
    with pytest.raises(HillclimbError, match="2 distinct"):
        CopyRows(ordinary_ids(np.array([5, 5, 1]), {1}), 65, seed=0)


def test_distant_copy_rows_repeat_earlier_spans_from_far_back():
    """SFT's copy rows: every target is predictable from an earlier occurrence of the span it
    belongs to, and repeats reach back over hundreds of tokens, not only the adjacent span."""
    from hillclimb.train.data import CopyRows

    vocab = np.arange(10, 2000)
    width = 2049
    copies = CopyRows(vocab, width, seed=0, distant=True)
    rng = np.random.default_rng(1)
    far = 0
    for _ in range(4):
        ids, mask = copies.row(rng)
        assert ids.shape == mask.shape == (width,)
        assert 0.3 < mask.mean() < 0.7
        for i in np.flatnonzero(mask):
            # a target continues a repeat: the two tokens before it occur together earlier on
            prev = [j for j in range(1, i - 1) if ids[j - 1] == ids[i - 1] and ids[j] == ids[i]]
            assert prev, i
            far += (i - max(prev)) > 300
    assert far > 100  # distances spread over the row
    a, b = copies.row(np.random.default_rng(5)), copies.row(np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # pure of the rng
    adjacent, _ = CopyRows(vocab, width, seed=0).row(np.random.default_rng(5))
    assert not np.array_equal(adjacent, a[0])


def test_copy_distant_needs_copy_rows():
    from hillclimb.train import SFTConfig

    with pytest.raises(ConfigError, match="copy_distant"):
        SFTConfig(copy_distant=True)
    assert SFTConfig(copy_distant=True, copy_fraction=0.25).copy_distant


def test_length_buckets_keep_short_examples_in_short_rows():
    """Short examples are packed only into short rows (more of them a step), long ones into long
    rows; each step draws a bucket by (seed, step) with odds from the buckets' target tokens;
    batches are pure of the step, and an epoch of each bucket serves every example."""
    rng = np.random.default_rng(0)
    short = [S.Example([7] * n, [0] + [1] * (n - 1)) for n in rng.integers(5, 16, size=60)]
    long = [S.Example([9] * n, [0] + [1] * (n - 1)) for n in rng.integers(40, 64, size=12)]
    b = S.BucketedSFTBatches(short + long, 64, 2, seed=3, pad_id=0, short_seq_len=16)
    shapes = {}
    for step in range(200):
        ids, mask = b.batch(step)
        shapes[ids.shape] = shapes.get(ids.shape, 0) + 1
        if ids.shape == (8, 17):  # 2 * 64 // 16 rows of 16 + 1
            assert not (ids == 9).any()
        else:
            assert ids.shape == (2, 65) and not (ids == 7).any()
    assert set(shapes) == {(8, 17), (2, 65)}
    share = sum(e.n_targets for e in short) / sum(e.n_targets for e in short + long)
    assert abs(shapes[(8, 17)] / 200 - share) < 0.12
    again = S.BucketedSFTBatches(short + long, 64, 2, seed=3, pad_id=0, short_seq_len=16)
    for step in (150, 3, 77):  # any order: pure of the step
        assert all(
            np.array_equal(x, y) for x, y in zip(again.batch(step), b.batch(step), strict=True)
        )
    # the first steps of the short bucket cover an epoch of the short examples
    served = sum(int((b.batch(s)[1]).sum()) for s in range(200) if b.batch(s)[0].shape[1] == 17)
    assert served >= sum(e.n_targets for e in short)
    only_short = S.BucketedSFTBatches(short, 64, 2, seed=3, pad_id=0, short_seq_len=16)
    assert only_short.batch(5)[0].shape == (8, 17)
    with pytest.raises(HillclimbError, match="short_seq_len"):
        S.BucketedSFTBatches(short, 64, 2, seed=3, pad_id=0, short_seq_len=64)
    from hillclimb.train import SFTConfig

    with pytest.raises(ConfigError, match="short_seq_len"):
        SFTConfig(seq_len=256, short_seq_len=512)


def test_budget_notes_pick_the_longest_form_that_fits_and_render_the_served_note():
    """`budget_fraction`: that share of reasoning problems open with the server's budget note
    (byte-identical to `with_budget_note`, so training and serving agree), b within
    `budget_range`; the solution is the long form exactly when its reasoning fits b tokens, the
    answer never changes; rebuilds are identical; without a tokenizer it is a clear error."""
    pytest.importorskip("hillclimb.problems")
    from hillclimb import problems as P
    from hillclimb.serve.budget import with_budget_note

    def count(text: str) -> int:  # a stand-in tokenizer: one token per word
        return len(text.split())

    spec = {"families": ["arith", "logic", "code_function"], "tiers": [1, 2], "n": 60,
            "budget_fraction": 0.5, "budget_range": [4, 400]}  # fmt: skip
    recs = S.problem_examples(spec, seed=5, count_tokens=count)
    plain = {r["source"]: r for r in S.problem_examples({**spec, "budget_fraction": 0}, seed=5)}
    noted = [r for r in recs if "budget" in r]
    reasoning = [r for r in recs if P.FAMILIES[r["family"]] == "reasoning"]
    assert 0.35 * len(reasoning) <= len(noted) <= 0.65 * len(reasoning)
    assert all(P.FAMILIES[r["family"]] == "reasoning" for r in noted)  # code: never noted
    assert S.budget_noted(recs) == len(noted) and S.budget_noted(plain.values()) == 0
    every_long = S.problem_examples({**spec, "verbose_fraction": 1.0, "budget_fraction": 0}, 5)
    long = {x["source"]: x["messages"] for x in every_long}
    forms = set()
    for r in noted:
        b, base = r["budget"], plain[r["source"]]["messages"]
        assert 4 <= b <= 400
        fits = count(long[r["source"]][1]["reasoning_content"]) <= b
        want = long[r["source"]] if fits else base
        assert r["messages"] == with_budget_note(want, b)
        assert bool(r.get("verbose")) == fits
        forms.add(fits)
    assert forms == {True, False}  # both forms occur across the range
    assert recs == S.problem_examples(spec, seed=5, count_tokens=count)
    with pytest.raises(HillclimbError, match="tokenizer"):
        S.problem_examples(spec, seed=5)
    for bad in ([0, 10], [20, 10], "8-256", "12", [1], [8.5, 64], [True, 9], [4, 8, 16]):
        with pytest.raises(HillclimbError, match="budget_range"):
            S.problem_examples({**spec, "budget_range": bad}, seed=5, count_tokens=count)
    with pytest.raises(HillclimbError, match="budget_fraction"):
        S.problem_examples({**spec, "budget_fraction": 2}, seed=5, count_tokens=count)
    # a note that only looks like one is not counted; another writer's exact note is
    odd = {"messages": [{"role": "system", "content": "Think for at most many tokens."}]}
    theirs = {"messages": [{"role": "system", "content": "Think for at most 12 tokens.\n\nHi"}]}
    assert S.budget_noted([odd, {"text": "x"}, theirs]) == 1


def test_chat_records_in_every_openai_shape(tmp_path, tok):
    """Users' SFT files come in the API's shapes: content as text parts, a `developer` turn, an
    assistant turn with `null` content and tool calls. They encode as their plain-string form;
    shapes the template cannot render are one error naming file:line (was a jinja TypeError)."""
    plain = [{"role": "system", "content": "Be short."}, {"role": "user", "content": "2+2?"},
             {"role": "assistant", "content": "4"}]  # fmt: skip
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Be "},
                                              {"type": "text", "text": "short."}]},
             {"role": "user", "content": [{"type": "text", "text": "2+2?"}], "name": "bob"},
             {"role": "assistant", "content": [{"type": "text", "text": "4"}]}]  # fmt: skip
    call = {"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": '{"x": 1}'}}  # fmt: skip
    tools = [{"role": "user", "content": "go"},
             {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "c1", "content": "ok"},
             {"role": "assistant", "content": "done"}]  # fmt: skip
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"messages": m}) + "\n" for m in (plain, parts, tools)))
    recs = S.read_jsonl([f])
    a, b, c = (S.encode_record(tok, r) for r in recs)
    assert (a.ids, a.mask) == (b.ids, b.mask)
    assert c.n_targets > 0
    for bad, said in (
        ({"messages": [{"role": "robot", "content": "x"}]}, ":1: messages[0].role 'robot'"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "only text parts"),
        ({"messages": [{"role": "user", "content": 5}]}, "must be a string or a list"),
        ({"messages": [{"role": "user", "content": None}]}, "must be a string or a list"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "assistant", "content": "", "tool_calls": "f()"}]}, "tool_calls"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": "all"}, "tools must be"),
    ):
        f.write_text(json.dumps(bad) + "\n")
        with pytest.raises(HillclimbError, match=re.escape(said)):
            S.read_jsonl([f])


def test_a_familys_problem_examples_do_not_depend_on_the_other_families():
    """A family's SFT examples are a function of (seed, family): adding a family before it, or
    reordering the list, changed every later family's examples (seeded by list position until
    session 23), so two climbs that differ in one family differed in all of them."""
    pytest.importorskip("hillclimb.problems")
    spec = {"tiers": [1], "n": 6}
    alone = S.problem_examples({**spec, "families": ["logic"]}, seed=0)
    after = S.problem_examples({**spec, "families": ["arith", "logic"]}, seed=0)
    first = S.problem_examples({**spec, "families": ["logic", "arith"]}, seed=0)
    ids = [r["source"] for r in alone]
    assert ids == [r["source"] for r in after if r["family"] == "logic"]
    assert ids == [r["source"] for r in first if r["family"] == "logic"]
    assert ids != [r["source"] for r in S.problem_examples({**spec, "families": ["logic"]}, 1)]
