"""Bradley–Terry ratings of arena votes, with bootstrap intervals.

Why Bradley–Terry and not running Elo: Elo updates depend on the order the votes arrived in and
on a step size; the Bradley–Terry maximum-likelihood fit uses every vote at once, is the same
whatever the order, and is what Chatbot Arena moved to for the same reasons. The model:
P(i beats j) = p_i / (p_i + p_j). Ratings are reported on the Elo scale,
`1000 + 400·log10(p_i)`, with the geometric mean of the strengths fixed at 1 (mean rating 1000),
so a 400-point gap is 10:1 odds.

Ties: a `tie` and a `both_bad` vote count as half a win for each side (as Chatbot Arena counts
"tie" and "tie (bothbad)"), not through a Davidson / Rao–Kupper tie parameter. Why: a tie carries
no information about *which* model is better, only that they are close, and half-wins keep the
fit the plain Bradley–Terry likelihood with fractional counts — one estimator, an exact closed
form for two models (odds = wins_a / wins_b) to test against. The cost: a tie-heavy pair is pulled
together a little more than Davidson's model would pull it; the share of ties is reported beside
the ratings so a reader can see it.

Fit: Hunter's (2004) MM algorithm, `p_i ← W_i / Σ_j N_ij / (p_i + p_j)`, run on a batch of win
matrices at once (the bootstrap replicates). The maximum-likelihood estimate is finite only when
the "beat" graph is strongly connected (every model beat and was beaten, through some chain); a
model that won every vote would get an infinite rating. So `prior` virtual tie games are added
between *every* pair of models (default 1 per pair: half a win each way): the fit stays finite and
connected, and it shrinks toward "all equal" by an amount that vanishes as votes accumulate.
`prior=0` is the plain MLE and refuses data where it does not exist.

Intervals: a seeded percentile bootstrap over votes (resampled with replacement, refitted), 95%
by default. It is the sampling error of these votes, not of the population of prompts or voters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hillclimb.errors import HillclimbError

SCALE = 400.0 / math.log(10.0)  # log-strength → Elo points
BASE = 1000.0
# Vote outcomes as seen from the (a, b) order a game is stored in.
A_WINS, B_WINS, TIE, BOTH_BAD = "a", "b", "tie", "both_bad"
OUTCOME_SCORE = {A_WINS: 1.0, B_WINS: 0.0, TIE: 0.5, BOTH_BAD: 0.5}


NO_FIT = (
    "no finite Bradley–Terry fit: some model never won or never lost against the others (the win "
    "graph is not strongly connected); use prior > 0"
)


@dataclass(frozen=True)
class Game:
    """One vote between two different models; `outcome` is one of OUTCOME_SCORE's keys."""

    a: str
    b: str
    outcome: str


@dataclass(frozen=True)
class RatingConfig:
    prior: float = 1.0  # virtual tie games added between every pair of models
    n_bootstrap: int = 500
    confidence: float = 0.95
    seed: int = 0
    tol: float = 1e-9  # largest change of a log-strength between MM steps at convergence
    max_iter: int = 20_000


@dataclass
class ModelRating:
    model: str
    rank: int
    rating: float
    ci_low: float | None
    ci_high: float | None
    games: int
    wins: int
    losses: int
    ties: int
    both_bad: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def interval_text(self, sep: str = "-") -> str:
        """The interval as shown: "-" without one; an end no finite bound reaches (`prior=0`
        resamples without a finite fit) as "-inf" / "+inf"."""
        if self.ci_low is None and self.ci_high is None:
            return "-"
        lo = "-inf" if self.ci_low is None else f"{self.ci_low:.0f}"
        hi = "+inf" if self.ci_high is None else f"{self.ci_high:.0f}"
        return f"{lo}{sep}{hi}"


def _check_games(models: Sequence[str], games: Sequence[Game]) -> dict[str, int]:
    if len(set(models)) != len(models):
        raise HillclimbError(f"duplicate model names in {list(models)}")
    if len(models) < 2:
        raise HillclimbError("ratings need at least 2 models")
    index = {m: i for i, m in enumerate(models)}
    for g in games:
        if g.a not in index or g.b not in index:
            raise HillclimbError(f"vote between unknown models {g.a!r} and {g.b!r}")
        if g.a == g.b:
            raise HillclimbError(f"a vote compares {g.a!r} with itself")
        if g.outcome not in OUTCOME_SCORE:
            raise HillclimbError(f"unknown vote outcome {g.outcome!r}")
    return index


def _contributions(models: Sequence[str], games: Sequence[Game]) -> np.ndarray:
    """[G, n·n]: the win-matrix entries each game adds (score to a over b, the rest to b)."""
    index = _check_games(models, games)
    n = len(models)
    c = np.zeros((len(games), n * n))
    for g_i, g in enumerate(games):
        i, j, s = index[g.a], index[g.b], OUTCOME_SCORE[g.outcome]
        c[g_i, i * n + j] += s
        c[g_i, j * n + i] += 1.0 - s
    return c


def win_matrix(models: Sequence[str], games: Sequence[Game]) -> np.ndarray:
    """W[i, j] = (fractional) wins of model i over model j; a tie is half a win each way."""
    n = len(models)
    return _contributions(models, games).sum(axis=0).reshape(n, n)


def _strongly_connected(w: np.ndarray) -> bool:
    n = w.shape[0]
    reach = (w > 0) | np.eye(n, dtype=bool)
    for k in range(n):  # Warshall's transitive closure
        reach |= reach[:, k : k + 1] & reach[k : k + 1, :]
    return bool(reach.all())


def fit_log_strengths(
    w: np.ndarray, prior: float = 1.0, *, tol: float = 1e-9, max_iter: int = 20_000
) -> np.ndarray:
    """Bradley–Terry log-strengths (mean 0) for one win matrix [n, n] or a batch [B, n, n]."""
    w = np.asarray(w, dtype=float)
    single = w.ndim == 2
    if single:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise HillclimbError(f"a win matrix must be square, got shape {w.shape}")
    if prior < 0 or not math.isfinite(prior):
        raise HillclimbError(f"prior must be a finite number >= 0, got {prior}")
    n = w.shape[1]
    off = 1.0 - np.eye(n)
    w = w * off + (prior / 2.0) * off  # `prior` virtual ties per pair = prior/2 wins each way
    if prior == 0:
        for b in range(w.shape[0]):
            if not _strongly_connected(w[b]):
                raise HillclimbError(NO_FIT)
    games = w + np.swapaxes(w, 1, 2)  # N_ij
    wins = w.sum(axis=2)  # W_i
    p = np.ones(w.shape[:2])
    for _ in range(max_iter):
        denom = (games / (p[:, :, None] + p[:, None, :])).sum(axis=2)
        new = wins / denom
        new /= np.exp(np.log(new).mean(axis=1, keepdims=True))
        delta = np.abs(np.log(new) - np.log(p)).max()
        p = new
        if delta < tol:
            break
    else:
        raise HillclimbError(f"the Bradley–Terry fit did not converge in {max_iter} iterations")
    logp = np.log(p)
    return logp[0] if single else logp


def _bootstrap_bounds(wb: np.ndarray, cfg: RatingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bounds per model over the bootstrap win matrices `wb` [B, n, n].

    With `prior=0` a resample can lack a finite fit even when the votes have one (4 votes 3:1 —
    a third of the resamples hold only the 3 wins): its ratings are infinite in some direction.
    Such a resample counts as -inf for the lower bound and +inf for the upper bound of every
    model (the conservative reading), so a bound it reaches is unbounded (None) rather than the
    whole rating refused — before, one such resample made `rate` raise "some model never won or
    never lost", which the votes themselves contradicted."""
    ok = np.array([cfg.prior > 0 or _strongly_connected(m) for m in wb])
    n = wb.shape[1]
    boot = np.zeros((len(wb), n))
    if ok.any():
        boot[ok] = to_elo(fit_log_strengths(wb[ok], cfg.prior, tol=cfg.tol, max_iter=cfg.max_iter))
    alpha = (1.0 - cfg.confidence) / 2.0
    if ok.all():
        return np.quantile(boot, alpha, axis=0), np.quantile(boot, 1.0 - alpha, axis=0)
    low = np.where(ok[:, None], boot, -np.inf)
    high = np.where(ok[:, None], boot, np.inf)
    # "lower"/"higher": never interpolate between a finite value and an infinite one
    return (
        np.quantile(low, alpha, axis=0, method="lower"),
        np.quantile(high, 1.0 - alpha, axis=0, method="higher"),
    )


# ratings closer than this (Elo points) are the same rating: the fit converges to ~1e-7
RANK_TOL = 1e-6


def _rank(point: np.ndarray, i: int) -> int:
    """1 + the number of models rated higher (competition ranking: 1, 1, 3). Why not the
    position in the sorted list: models the votes cannot tell apart (all ties, 1:1) got ranks 1
    and 2 by the alphabetical order of their names."""
    return 1 + int((point > point[i] + RANK_TOL).sum())


def _finite(bound: np.ndarray | None, i: int) -> float | None:
    """A bound as a float, None when there is no bootstrap or the bound is unbounded."""
    if bound is None or not math.isfinite(float(bound[i])):
        return None
    return float(bound[i])


def to_elo(log_strength: np.ndarray) -> np.ndarray:
    return BASE + SCALE * np.asarray(log_strength)


def rate(
    models: Sequence[str], games: Sequence[Game], cfg: RatingConfig | None = None
) -> list[ModelRating]:
    """Ratings (Elo scale) with bootstrap intervals, best first."""
    cfg = cfg or RatingConfig()
    if not 0 < cfg.confidence < 1:
        raise HillclimbError(f"confidence must be in (0, 1), got {cfg.confidence}")
    n = len(models)
    contrib = _contributions(models, games)
    w = contrib.sum(axis=0).reshape(n, n)
    point = to_elo(fit_log_strengths(w, cfg.prior, tol=cfg.tol, max_iter=cfg.max_iter))
    lo = hi = None
    if games and cfg.n_bootstrap > 0:
        rng = np.random.default_rng(cfg.seed)
        counts = rng.multinomial(len(games), np.full(len(games), 1.0 / len(games)), cfg.n_bootstrap)
        wb = (counts @ contrib).reshape(cfg.n_bootstrap, n, n)
        lo, hi = _bootstrap_bounds(wb, cfg)
    tallies = {m: {"games": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for m in models}
    for g in games:
        for m in (g.a, g.b):
            tallies[m]["games"] += 1
        if g.outcome in (TIE, BOTH_BAD):
            key = "ties" if g.outcome == TIE else "both_bad"
            tallies[g.a][key] += 1
            tallies[g.b][key] += 1
        else:
            winner, loser = (g.a, g.b) if g.outcome == A_WINS else (g.b, g.a)
            tallies[winner]["wins"] += 1
            tallies[loser]["losses"] += 1
    order = sorted(range(n), key=lambda i: (-point[i], models[i]))
    return [
        ModelRating(
            model=models[i],
            rank=_rank(point, i),
            rating=float(point[i]),
            ci_low=_finite(lo, i),
            ci_high=_finite(hi, i),
            **tallies[models[i]],
        )
        for r, i in enumerate(order)
    ]
