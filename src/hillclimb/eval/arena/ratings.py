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

Fit: maximum likelihood by damped Newton on the log-strengths (the negative log-likelihood is
convex), run on a batch of win matrices at once (the bootstrap replicates). Hunter's (2004) MM
algorithm, used before, slowed to a crawl when strengths spread far apart (a small prior, one-sided
pairs) and then raised instead of rating; see `_newton`. The maximum-likelihood estimate is finite only when
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
    tol: float = 1e-9  # largest Newton step of a log-strength at convergence
    max_iter: int = 200


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
    w: np.ndarray, prior: float = 1.0, *, tol: float = 1e-9, max_iter: int = 200
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
    x = _newton(w, tol=tol, max_iter=max_iter)
    return x[0] if single else x


def _neg_loglik(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """−Σ_ij W_ij log σ(x_i − x_j) per batch row (log σ(d) = −log(1 + e^−d), overflow-free)."""
    d = x[:, :, None] - x[:, None, :]
    return (w * np.logaddexp(0.0, -d)).sum(axis=(1, 2))


def _newton(w: np.ndarray, *, tol: float, max_iter: int) -> np.ndarray:
    """Maximum-likelihood log-strengths (mean 0) of a batch of win matrices by damped Newton.

    Why Newton and not Hunter's MM (used before): MM converges linearly at a rate that tends to 1
    as strengths spread apart — with a small `prior` (0.01) and a chain of one-sided pairs
    (A beat B, B beat C, C beat D, 20 votes each) the bootstrap refits did not converge in 20 000
    iterations and `rate` raised, so the results page had no ratings at all for valid votes;
    and its stopping rule (a step below `tol`) left errors 1000× larger than `tol` there. The
    negative log-likelihood is convex in the log-strengths, so Newton steps with a backtracking
    line search converge from 0 in a few dozen iterations whatever the spread. The Hessian is
    singular along (1, …, 1) (ratings are relative); the gradient has no component there, so
    adding 11ᵀ/n makes it invertible without moving the mean."""
    b, n = w.shape[:2]
    games = w + np.swapaxes(w, 1, 2)  # N_ij
    x = np.zeros((b, n))
    ones = np.full((n, n), 1.0 / n)
    done = np.zeros(b, dtype=bool)
    for _ in range(max_iter):
        d = x[:, :, None] - x[:, None, :]
        sig = np.exp(-np.logaddexp(0.0, -d))  # σ(x_i − x_j), accurate near 0 and 1 alike
        sig_t = np.swapaxes(sig, 1, 2)  # σ(x_j − x_i) = 1 − σ(x_i − x_j), without cancellation
        # Σ_j N_ij σ_ij − W_ij, written so no two nearly equal numbers are subtracted (a model
        # winning 1000:0 has σ ≈ 1 − 1e-9: `N·σ − W` would keep 7 digits of the gradient)
        grad = (np.swapaxes(w, 1, 2) * sig - w * sig_t).sum(axis=2)
        curv = games * sig * sig_t
        hess = -curv + np.eye(n) * curv.sum(axis=2)[:, :, None] + ones
        try:
            step = -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            # curvatures underflowed (a prior like 1e-30 beside one-sided pairs): say so, not a
            # bare LinAlgError traceback
            raise HillclimbError(
                "the Bradley–Terry fit is numerically singular: strengths too far apart to fit "
                "(a prior this small beside one-sided votes); use a larger prior"
            ) from None
        step -= step.mean(axis=1, keepdims=True)
        small = np.abs(step).max(axis=1) < tol
        x = np.where((small & ~done)[:, None], x + step, x)
        done |= small
        if done.all():
            return x
        # backtracking (Armijo) line search per row: a full step can overshoot far from the
        # optimum. Near it the decrease is below the rounding of f itself; the slack lets the
        # (then exact) full Newton step through.
        f0, slope = _neg_loglik(w, x), (grad * step).sum(axis=1)
        slack = 8 * np.finfo(float).eps * (np.abs(f0) + 1.0)
        t = np.where(done, 0.0, 1.0)
        for _ in range(60):
            bad = _neg_loglik(w, x + t[:, None] * step) > f0 + 1e-4 * t * slope + slack
            if not bad.any():
                break
            t = np.where(bad, t / 2.0, t)
        # no decrease even for a step 2^-60 long: the row is at its optimum to within floating
        # point (when strengths are far apart the curvature is tiny and the step is noise)
        done |= bad
        x = x + np.where(bad, 0.0, t)[:, None] * step
        if done.all():
            return x
    raise HillclimbError(f"the Bradley–Terry fit did not converge in {max_iter} iterations")


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


def _no_zero_width(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """No interval (NaN → shown "-") where every resample gave the same rating.

    Why: when all of a pair's votes are alike (one vote; 3 wins of 3) every resample holds the
    same votes, so the percentile bootstrap gave a "95% interval" of zero width — the results
    page read `1169 – 1169` after three votes, certainty the votes do not have. The bootstrap
    cannot measure that uncertainty, so no interval is claimed (as with `--bootstrap 0`)."""
    flat = np.isfinite(lo) & np.isfinite(hi) & (hi - lo < RANK_TOL)
    return np.where(flat, np.nan, lo), np.where(flat, np.nan, hi)


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
        lo, hi = _no_zero_width(*_bootstrap_bounds(wb, cfg))
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
