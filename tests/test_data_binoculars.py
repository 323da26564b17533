"""Binoculars score: the math on small torch models, the filter with a given scorer (the data
library never loads a model), the build refusing a configured detector without one, and the
command's checkpoint scorer on real (random-init) hillclimb checkpoints."""

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


def test_filter_uses_the_given_scorer_in_batches():
    calls = []

    def scorer(texts):
        calls.append(len(texts))
        return [0.5 if "gpt" in t else 1.5 for t in texts]

    f = BinocularsFilter(AIContentConfig(observer="a", performer="b", batch_size=2), scorer)
    docs = [Document(t, "s") for t in ("human one", "gpt two", "human three")]
    assert f.apply_batch(docs) == [None, "below_threshold", None]
    assert calls == [2, 1] and f.stats["scored"] == 3
    assert [d.meta["binoculars_score"] for d in docs] == [1.5, 0.5, 1.5]


def test_build_refuses_a_configured_detector_without_a_scorer(tmp_path):
    from hillclimb.data.config import DataConfig, SourceConfig
    from hillclimb.data.pipeline import build
    from hillclimb.errors import HillclimbError

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    cfg = DataConfig(sources=[SourceConfig(kind="tree", name="s", path=str(tmp_path / "src"))])
    cfg.ai_content.observer, cfg.ai_content.performer = "obs", "perf"
    with pytest.raises(HillclimbError, match="no scorer"):
        build(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_data_modules_load_no_model():
    """Only the command (data/cli.py) loads checkpoints; the library takes a scorer."""
    import ast
    from pathlib import Path

    import hillclimb.data

    bad = []
    for path in sorted(Path(hillclimb.data.__file__).parent.glob("*.py")):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {a.name for a in node.names}
                if node.module.startswith("hillclimb.model") or (
                    node.module == "hillclimb" and names & {"load_model", "model"}
                ):
                    bad.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Import):
                bad += [f"{path.name}:{node.lineno}" for a in node.names
                        if a.name.startswith("hillclimb.model")]  # fmt: skip
    assert not bad, bad


def test_checkpoint_scorer_on_real_checkpoints(tmp_path):
    import pickle

    from hillclimb.cli import main
    from hillclimb.data.cli import checkpoint_scorer

    for name, seed in (("obs", 0), ("perf", 1)):
        assert main(["init", "--preset", "thinking-micro", "--out", str(tmp_path / name),
                     "--seed", str(seed)]) == 0  # fmt: skip
    cfg = AIContentConfig(
        observer=str(tmp_path / "obs"), performer=str(tmp_path / "perf"), threshold=0.0
    )
    assert checkpoint_scorer(AIContentConfig()) is None
    scorer = checkpoint_scorer(cfg)
    scorer = pickle.loads(pickle.dumps(scorer))  # what a parallel build's workers receive
    f = BinocularsFilter(cfg, scorer)
    docs = [Document("def f(x):\n    return x + 1\n", "s"), Document("Hello there, world.", "s")]
    assert f.apply_batch(docs) == [None, None]  # threshold 0 keeps everything
    scores = [d.meta["binoculars_score"] for d in docs]
    assert all(s > 0 for s in scores)
    f.cfg.threshold = 1e9
    assert f.apply_batch(docs) == ["below_threshold", "below_threshold"]
    assert pickle.loads(pickle.dumps(scorer))._loaded is None  # models never travel
