"""Outside checks of the engine internals (session 21): inputs the engine's authors had not
tried: invalid UTF-8 streams, a top_p below float32's range, a stop token after held-back text,
a negative gamma_max (micro models and the byte-level tokenizer only)."""

from __future__ import annotations

import random

import pytest
import torch

from hillclimb.errors import HillclimbError
from hillclimb.model.checkpoint import save_checkpoint
from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.detok import IncrementalDetokenizer
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.tokenizer.io import bytelevel_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def flash_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("s21engine") / "flash"
    save_checkpoint(build_model(get_preset("code-flash-micro"), seed=0), d)
    return d


@pytest.fixture(scope="module")
def flash(flash_ckpt):
    return Engine.from_checkpoint(flash_ckpt, device="cpu", max_batch=8, seed=0)


@pytest.fixture(scope="module")
def byte_tok():
    return bytelevel_tokenizer()


def _stream(decode, ids: list[int]) -> str:
    d = IncrementalDetokenizer(decode)
    return "".join(d.add(t) for t in ids) + d.flush()


@pytest.mark.parametrize(
    "data",
    [
        # stray continuation bytes, then a valid 3-byte character: the hold gave up after 4
        # tokens in the middle of 馂 and the character came out as U+FFFD (then was lost)
        b"+\xa3\xa5\xe9\xa6\x82\x0ea",
        b"\xff\xfe\xfd\xe4\xbd\xa0!",
        b"\x80\x80\x80\xf0\x9f\x98\x80 ok",
    ],
)
def test_detok_keeps_a_valid_character_after_invalid_bytes(byte_tok, data):
    assert _stream(byte_tok.decode, list(data)) == data.decode("utf-8", errors="replace")


def test_detok_stream_equals_one_decode_on_random_bytes(byte_tok):
    """Whatever bytes a (random-weight) model emits, the streamed text joins into exactly the
    text of one decode of all its tokens, so `GenerationOutput.text` matches `token_ids`."""
    rng = random.Random(0)
    alphabet = list(range(0x80, 0x100)) + list(b"ab \n") + list("é你😀".encode())
    for _ in range(2000):
        ids = [rng.choice(alphabet) for _ in range(rng.randrange(1, 14))]
        assert _stream(byte_tok.decode, ids) == byte_tok.decode(ids), ids


def test_generated_text_is_the_decode_of_the_generated_tokens(flash):
    """A random-weight model emits stray bytes all the time: every answer's text differed from
    the decode of its own token ids (a valid character after invalid bytes became U+FFFD)."""
    rng = random.Random(0)
    prompts = [[rng.randrange(3, 256) for _ in range(5)] for _ in range(16)]
    sp = SamplingParams(max_tokens=40, temperature=1.0, seed=1, ignore_eos=True)
    for o in flash.generate_batch(prompts, sp):
        assert o.text == flash.tokenizer.decode(o.token_ids)


@pytest.mark.parametrize("top_p", [1e-50, 5e-324])
def test_tiny_top_p_keeps_the_most_likely_token(flash, top_p):
    """top_p is legal anywhere in (0, 1]; one below float32's smallest number became 0 in the
    fp32 comparison, the nucleus dropped every token and the "probabilities" were NaN (a
    garbage draw). The nucleus always keeps the most likely token: the answer is greedy's."""
    from hillclimb.serve.sampling import warp_probs

    probs = warp_probs(torch.randn(3, 50), SamplingParams(top_p=top_p))
    assert torch.isfinite(probs).all() and torch.equal(probs.max(-1).values, torch.ones(3))
    p = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    greedy = flash.generate(p, SamplingParams(max_tokens=20, temperature=0, ignore_eos=True))
    sp = SamplingParams(max_tokens=20, seed=1, top_p=top_p, ignore_eos=True, policy_logprobs=True)
    o = flash.generate(p, sp)
    assert o.token_ids == greedy.token_ids
    assert o.policy_logprobs == [0.0] * 20


def test_stop_token_does_not_emit_a_held_back_stop_string(flash):
    """A stop token flushes the detokenizer's held-back text (an unfinished UTF-8 character,
    U+FFFD when it never completes) into the answer without looking for stop strings in it: with
    stop=["\\ufffd"] the answer ended in the stop string it had asked never to see."""
    tok = flash.tokenizer
    rng = random.Random(0)
    sp = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    for _ in range(30):
        prompt = [rng.randrange(3, 256) for _ in range(5)]
        ids = flash.generate(prompt, sp).token_ids
        d = IncrementalDetokenizer(tok.decode)
        for k, t in enumerate(ids[:-1]):
            d.add(t)
            held = tok.decode(d.ids[d.read_offset :]) if d.read_offset < len(d.ids) else ""
            if held and ids[k + 1] not in ids[: k + 1]:  # ids[k+1] as a stop token ends here
                stop = SamplingParams(
                    max_tokens=40,
                    temperature=0,
                    ignore_eos=True,
                    stop_token_ids=[ids[k + 1]],
                    stop=[held],
                )
                o = flash.generate(prompt, stop)
                assert o.finish_reason == "stop" and held not in o.text
                assert o.token_ids == ids[: k + 2]
                return
    pytest.fail("no answer held text back before a new token (the model changed?)")


@pytest.mark.parametrize("gamma_max", [-10, -1, 2.5])
def test_engine_refuses_a_gamma_max_that_shrinks_the_kv_slots(flash_ckpt, gamma_max):
    """Each slot stores context + gamma_max + 2 cells: gamma_max=-10 built an engine whose
    requests at the context limit failed near their end ("KV cache overflow")."""
    with pytest.raises(HillclimbError, match="gamma_max"):
        Engine.from_checkpoint(flash_ckpt, device="cpu", max_batch=1, gamma_max=gamma_max)


def test_gamma_max_zero_still_serves_the_whole_context(flash_ckpt):
    e = Engine.from_checkpoint(flash_ckpt, device="cpu", max_batch=1, gamma_max=0)
    prompt = [5, 6, 7]
    sp = SamplingParams(max_tokens=e.max_context - 3, temperature=0, ignore_eos=True)
    o = e.generate(prompt, sp)
    assert o.finish_reason == "length" and o.completion_tokens == e.max_context - 3
