"""Binoculars score: the math on small torch models, and the filter on real (random-init)
hillclimb checkpoints once the model package exists."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hillclimb.data.binoculars import BinocularsFilter, binoculars_scores  # noqa: E402
from hillclimb.data.config import AIContentConfig  # noqa: E402
from hillclimb.data.document import Document  # noqa: E402


def _reference(obs, perf, ids):
    """Direct per-position loops, independent of the vectorised implementation."""
    out = []
    for b in range(ids.shape[0]):
        nll, xent = 0.0, 0.0
        T = ids.shape[1]
        for t in range(T - 1):
            lp = torch.log_softmax(perf[b, t], -1)
            p_obs = torch.softmax(obs[b, t], -1)
            nll += -lp[ids[b, t + 1]].item()
            xent += -(p_obs * lp).sum().item()
        out.append(nll / xent)
    return out


def test_scores_match_reference_and_ignore_padding():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 6, 11, generator=g)
    perf = torch.randn(2, 6, 11, generator=g)
    ids = torch.randint(0, 11, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    got = binoculars_scores(obs, perf, ids, mask)
    assert torch.allclose(got, torch.tensor(_reference(obs, perf, ids)), atol=1e-5)
    # padding the second row's tail must equal scoring its prefix alone
    mask[1, 4:] = 0
    short = binoculars_scores(
        obs[1:, :4], perf[1:, :4], ids[1:, :4], torch.ones(1, 4, dtype=torch.long)
    )
    assert torch.allclose(binoculars_scores(obs, perf, ids, mask)[1], short[0], atol=1e-5)


def test_predictable_text_scores_lower():
    """A performer that is confident and right (like on machine text) gives a low ratio."""
    V = 8
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 1]])
    confident = torch.full((1, 8, V), -5.0)
    for t in range(7):
        confident[0, t, ids[0, t + 1]] = 5.0
    flat = torch.zeros(1, 8, V)
    mask = torch.ones(1, 8, dtype=torch.long)
    machine_like = binoculars_scores(flat, confident, ids, mask)
    surprising = binoculars_scores(flat, -confident, ids, mask)
    assert machine_like.item() < surprising.item()


def test_filter_disabled_without_paths():
    assert not BinocularsFilter.enabled(AIContentConfig())
    assert BinocularsFilter.enabled(AIContentConfig(observer="a", performer="b"))


def test_filter_on_real_checkpoints(tmp_path):
    pytest.importorskip("hillclimb.model.checkpoint")
    from hillclimb.cli import main

    for name, seed in (("obs", 0), ("perf", 1)):
        assert main(["init", "--preset", "thinking-micro", "--out", str(tmp_path / name),
                     "--seed", str(seed)]) == 0  # fmt: skip
    cfg = AIContentConfig(
        observer=str(tmp_path / "obs"), performer=str(tmp_path / "perf"), threshold=0.0
    )
    f = BinocularsFilter(cfg)
    docs = [Document("def f(x):\n    return x + 1\n", "s"), Document("Hello there, world.", "s")]
    assert f.apply_batch(docs) == [None, None]  # threshold 0 keeps everything
    scores = [d.meta["binoculars_score"] for d in docs]
    assert all(s > 0 for s in scores)
    f.cfg.threshold = 1e9
    assert f.apply_batch(docs) == ["below_threshold", "below_threshold"]
