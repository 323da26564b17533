"""Engine.sync_weights: after an optimizer step on the shared model, every generation path
(eager model forward, fast path, compiled single-slot step, compiled batched step) computes the
new weights' logits — not a mix of new and stale derived tensors."""

from __future__ import annotations

import pytest
import torch

from hillclimb.model.config import get_preset
from hillclimb.model.transformer import build_model
from hillclimb.serve.engine import Engine, SamplingParams
from hillclimb.tokenizer.io import bytelevel_tokenizer

PROMPTS = ["def f(x):", "The answer is", "12 + 30 ="]


@pytest.fixture(scope="module")
def model():
    cfg = get_preset("thinking-micro").replace(
        n_experts=8, n_shared_experts=1, n_dense_layers=1, n_layers=3, d_dense=96
    )
    m = build_model(cfg, seed=3)
    with torch.no_grad():  # a non-zero selection bias, as every pre-trained model has
        for layer in m.moe_layers():
            layer.gate.expert_bias.copy_(torch.linspace(-0.01, 0.01, layer.cfg.n_experts))
    return m


def _step(model: torch.nn.Module, seed: int) -> None:
    """One AdamW step with a large learning rate on a random batch, biases nudged too."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.cfg.vocab_size, (2, 17), generator=g)
    logits = model(ids[:, :-1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
    opt.step()
    with torch.no_grad():
        for layer in model.moe_layers():
            layer.gate.expert_bias.add_(0.003)


def _max_gap(engine: Engine, prompts: list[str], batched: bool) -> float:
    """Largest |engine logprob - model logprob| over the top-5 alternatives of every generated
    position (greedy), each prompt alone or all together (the batched decode step)."""
    tok = engine.tokenizer
    sp = SamplingParams(max_tokens=6, temperature=0.0, logprobs=5, ignore_eos=True)
    outs = (
        engine.generate_batch(prompts, sp) if batched else [engine.generate(p, sp) for p in prompts]
    )
    gap = 0.0
    model = engine.model
    with torch.no_grad():
        for p, o in zip(prompts, outs, strict=True):
            ids = tok.encode(p) + o.token_ids
            logits = model(torch.tensor([ids]))[0, :, : tok.vocab_size]  # real tokens only
            lp = torch.log_softmax(logits.float(), dim=-1)
            start = len(ids) - len(o.token_ids) - 1
            for j, entry in enumerate(o.logprobs):
                for alt in entry["top_logprobs"]:
                    gap = max(gap, abs(alt["logprob"] - float(lp[start + j, alt["token_id"]])))
    return gap


@pytest.mark.parametrize(
    "kind", ["eager", "fast", "compiled"], ids=["model-forward", "fast-path", "compiled"]
)
def test_engine_matches_model_after_optimizer_step(model, kind):
    tok = bytelevel_tokenizer()
    eng = Engine(
        model,
        tok,
        max_batch=4,
        seed=0,
        fast_path=kind != "eager",
        compile=kind == "compiled",
    )
    if kind == "compiled" and not (eng.compiled and eng.compiled_batch):
        pytest.skip(f"no compiler here: {eng.compile_error}")
    for batched in (False, True):
        assert _max_gap(eng, PROMPTS, batched) <= 1e-5
    _step(model, seed=1)
    assert model.training
    stale = max(_max_gap(eng, PROMPTS, b) for b in (False, True))
    info = eng.sync_weights()
    assert not model.training  # the engine puts the model back in eval mode
    assert info["in_place"] and info["seconds"] >= 0.0
    for batched in (False, True):
        assert _max_gap(eng, PROMPTS, batched) <= 1e-5, (kind, batched)
    if kind != "eager":
        assert stale > 1e-3  # without the sync the fast path really was stale
    if kind == "compiled":
        assert eng.compiled and eng.compiled_batch  # still compiled: synced, not rebuilt


def test_sync_refuses_a_busy_engine(model):
    from hillclimb.errors import HillclimbError

    eng = Engine(model, bytelevel_tokenizer(), max_batch=2, seed=0)
    eng._running.append(object())  # a request in flight
    with pytest.raises(HillclimbError, match="idle"):
        eng.sync_weights()
    eng._running.clear()


def test_bias_appearing_forces_a_rebuild():
    cfg = get_preset("thinking-micro")
    m = build_model(cfg, seed=0)
    eng = Engine(m, bytelevel_tokenizer(), max_batch=2, seed=0)
    assert all(r.bias is None for r in eng.fast.layers if r.is_moe)
    with torch.no_grad():
        for layer in m.moe_layers():
            layer.gate.expert_bias.copy_(torch.linspace(-0.02, 0.02, layer.cfg.n_experts))
    assert eng.sync_weights()["in_place"] is False
    assert all(r.bias is not None for r in eng.fast.layers if r.is_moe)
    assert _max_gap(eng, PROMPTS, False) <= 1e-5
