"""Ratings from compare votes: a Bradley-Terry model, as FastChat's arena reports it (Elo
scale: 400 * log10 of strength, 1000 the reference), with 95% intervals and a win-rate
matrix.

Each vote becomes pairwise games between the models of its turn: the chosen slot beats each
other slot; a tie or "both bad" is a tie (half a win each) between every pair. Games
between a model and itself (the same model in two slots, to see sampling variance) say
nothing about strength and are left out. A weak prior (PRIOR_GAMES ties against a reference
player of strength 1) keeps a model that never lost finite and anchors the scale; with no
prior, the strengths are normalised to a geometric mean of 1.

Why Newton on pair counts, not minorisation-maximisation with a bootstrap (as this module
did until an outside probe froze the gateway for 46 s with 100 votes one model always won):
MM crawls on separable data (each step moves a never-beaten model a little further out), and
200 bootstrap refits multiplied that. The games are first summed per pair of models, so the
fit's cost grows with the models, not the votes; Newton's method on the log-strengths, with
the prior making the problem strictly concave, converges in a handful of steps whatever the
data; and the intervals come from the same fit's curvature (the observed information: the
Wald interval of each log-strength relative to the field's mean), not from refits. 10,000
votes over 50 models take about a tenth of a second (docs/benchmarks.md section 11), and
the caller runs it off the event loop.

An interval is only an interval when the votes can move it: a model with fewer than
MIN_DECISIVE_VOTES votes it won or lost (ties say little), or one that never lost or never
won a decided game (its rating's distance from the others is then the prior's, not the
votes'), is marked `too_few_votes`, and the page says so instead of showing a number as
certainty.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TIES = ("tie", "both_bad")
PRIOR_GAMES = 1.0
BASE_RATING, SCALE = 1000.0, 400.0
ELO_PER_LOG = SCALE / math.log(10)  # rating points per unit of log-strength
Z95 = 1.959963984540054
MIN_DECISIVE_VOTES = 5  # below this, a model's interval is not shown as one
MIN_INTERVAL_WIDTH = 1.0  # rating points: narrower reads as one number ("1218–1218")
MAX_NEWTON_STEPS = 100


@dataclass(frozen=True)
class Game:
    a: str
    b: str
    score: float  # for a: 1 a won, 0 b won, 0.5 a tie


@dataclass
class ModelStanding:
    model: str
    rating: float
    ci_low: float
    ci_high: float
    votes: int = 0  # votes of turns the model took part in
    wins: int = 0
    losses: int = 0
    ties: int = 0
    decisive_votes: int = 0  # votes it won or lost (not a tie, "both bad" or only itself)
    too_few_votes: bool = True  # its interval cannot be computed honestly yet


@dataclass
class Leaderboard:
    standings: list[ModelStanding]  # best first
    win_rate: dict[str, dict[str, float]] = field(default_factory=dict)  # a -> b -> a's share
    votes: int = 0


def games_of(models: Sequence[str], winner: str) -> list[Game]:
    """One vote's pairwise games."""
    games = []
    if winner in TIES:
        for i, a in enumerate(models):
            games += [Game(a, b, 0.5) for b in models[i + 1:] if b != a]
        return games
    best = models[int(winner)]
    return [Game(best, other, 1.0) for other in models if other != best]


@dataclass
class _Pairs:
    """The games summed per pair of models (i < j by index): how many, and i's score."""

    names: list[str]
    games: dict[tuple[int, int], float] = field(default_factory=dict)
    score: dict[tuple[int, int], float] = field(default_factory=dict)

    def add(self, a: str, b: str, score: float, weight: float, index: dict[str, int]) -> None:
        i, j = index[a], index[b]
        if i > j:
            i, j, score = j, i, 1.0 - score
        self.games[(i, j)] = self.games.get((i, j), 0.0) + weight
        self.score[(i, j)] = self.score.get((i, j), 0.0) + weight * score


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _log1pexp(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def _objective(theta: list[float], pairs: _Pairs, prior: float) -> float:
    """The log-posterior (up to a constant): the games' log-likelihood and the prior's."""
    total = 0.0
    for (i, j), n in pairs.games.items():
        d = theta[i] - theta[j]
        total += pairs.score[(i, j)] * d - n * _log1pexp(d)
    if prior:
        total += sum(prior * (0.5 * t - _log1pexp(t)) for t in theta)
    return total


def _gradient_and_information(theta: list[float], pairs: _Pairs, prior: float
                              ) -> tuple[list[float], list[list[float]]]:
    """The gradient and the observed information (minus the Hessian: positive definite
    with a prior) of the log-posterior."""
    n = len(theta)
    grad = [0.0] * n
    info = [[0.0] * n for _ in range(n)]
    for (i, j), games in pairs.games.items():
        p = _sigmoid(theta[i] - theta[j])
        g = pairs.score[(i, j)] - games * p
        grad[i] += g
        grad[j] -= g
        w = games * p * (1.0 - p)
        info[i][i] += w
        info[j][j] += w
        info[i][j] -= w
        info[j][i] -= w
    if prior:
        for i, t in enumerate(theta):
            p = _sigmoid(t)
            grad[i] += prior * (0.5 - p)
            info[i][i] += prior * p * (1.0 - p)
    return grad, info


def _cholesky(matrix: list[list[float]]) -> list[list[float]]:
    """L with L Lᵀ = matrix (symmetric positive definite), or ValueError."""
    n = len(matrix)
    lower = [[0.0] * n for _ in range(n)]
    for i in range(n):
        row_i = lower[i]
        for j in range(i + 1):
            row_j = lower[j]
            s = matrix[i][j] - _dot(row_i, row_j, j)
            if i == j:
                if s <= 1e-300:
                    raise ValueError("the ratings are not determined by these games")
                row_i[i] = math.sqrt(s)
            else:
                row_i[j] = s / row_j[j]
    return lower


def _dot(a: list[float], b: list[float], n: int) -> float:
    """a[:n] · b[:n] (map over slices: the loops above are the fit's hot path)."""
    return sum(map(operator.mul, a[:n], b[:n]))


def _solve(lower: list[list[float]], b: list[float]) -> list[float]:
    n = len(b)
    y = [0.0] * n
    for i in range(n):
        row = lower[i]
        y[i] = (b[i] - _dot(row, y, i)) / row[i]
    upper = [list(column) for column in zip(*lower, strict=True)]  # Lᵀ, row by row
    x = [0.0] * n
    for i in reversed(range(n)):
        row = upper[i]
        x[i] = (y[i] - sum(map(operator.mul, row[i + 1:], x[i + 1:]))) / row[i]
    return x


def _inverse_diagonal(lower: list[list[float]]) -> list[float]:
    """diag((L Lᵀ)⁻¹): entry i is the squared norm of column i of L⁻¹."""
    n = len(lower)
    out = [0.0] * n
    for col in range(n):  # column `col` of L⁻¹: forward substitution on the unit vector
        x = [0.0] * n
        x[col] = 1.0 / lower[col][col]
        for i in range(col + 1, n):
            row = lower[i]
            x[i] = -sum(map(operator.mul, row[col:i], x[col:i])) / row[i]
        out[col] = sum(v * v for v in x[col:])
    return out


def _relative_variances(lower: list[list[float]]) -> list[float]:
    """Var(θᵢ − mean θ) for each model, Σ being the inverse information (L Lᵀ)⁻¹.

    Relative to the field, not to the reference player: only the weak prior pins where the
    whole scale sits, and that uncertainty moves every rating together, so it says nothing
    about how the models stand against each other (with it, intervals came out about five
    times as wide as a bootstrap's; docs/benchmarks.md section 11). With s = Σ·1:
    Var(θᵢ − θ̄) = Σᵢᵢ − 2 sᵢ / n + (1ᵀ s) / n²."""
    n = len(lower)
    diagonal = _inverse_diagonal(lower)
    sums = _solve(lower, [1.0] * n)
    total = sum(sums)
    return [d - 2.0 * s / n + total / (n * n) for d, s in zip(diagonal, sums, strict=True)]


def _newton(pairs: _Pairs, prior: float, steps: int, tolerance: float
            ) -> tuple[list[float], list[list[float]] | None]:
    """The log-strengths at the posterior's maximum, and the information's Cholesky factor
    there (None without a prior: the scale is then pinned by a constraint, not the data)."""
    n = len(pairs.names)
    theta = [0.0] * n
    free = n if prior else n - 1  # without a prior the last model is pinned at 0 meanwhile
    lower = None
    current = _objective(theta, pairs, prior)
    for _ in range(steps):
        grad, info = _gradient_and_information(theta, pairs, prior)
        lower = _cholesky([row[:free] for row in info[:free]]) if free else None
        if lower is None:
            break
        step = _solve(lower, grad[:free])
        scale = 1.0
        while True:  # Newton's step, halved until it improves (rarely needed: concave)
            trial = [t + scale * s for t, s in zip(theta, step + [0.0] * (n - free),
                                                   strict=True)]
            value = _objective(trial, pairs, prior)
            if value >= current - 1e-12 or scale < 1e-6:
                break
            scale /= 2
        theta, current = trial, value
        if max((abs(s) * scale for s in step), default=0.0) < tolerance:
            break
    if not prior:
        mean = sum(theta) / n
        theta = [t - mean for t in theta]
        return theta, None
    _, info = _gradient_and_information(theta, pairs, prior)
    return theta, _cholesky(info)


def _pairs_of(weighted: Iterable[tuple[Game, float]], names: list[str]) -> _Pairs:
    index = {m: i for i, m in enumerate(names)}
    pairs = _Pairs(names)
    for game, weight in weighted:
        pairs.add(game.a, game.b, game.score, weight, index)
    return pairs


def fit(games: Iterable[Game], models: Iterable[str], *, prior: float = PRIOR_GAMES,
        iterations: int = MAX_NEWTON_STEPS, tolerance: float = 1e-10) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale, at the maximum of the posterior (with
    `prior` 0: of the likelihood, geometric mean of the strengths 1)."""
    names = sorted(set(models))
    if not names:
        return {}
    theta, _ = _newton(_pairs_of(((g, 1.0) for g in games), names), prior, iterations,
                       tolerance)
    return {m: BASE_RATING + ELO_PER_LOG * t for m, t in zip(names, theta, strict=True)}


@dataclass
class _Counts:
    """Per model (by index): its votes, decisive votes, games won, lost and tied."""

    votes: list[int]
    decisive: list[int]
    wins: list[int]
    losses: list[int]
    ties: list[int]


def _count(votes: Sequence[tuple[Sequence[str], str]], index: dict[str, int]
           ) -> tuple[_Pairs, _Counts]:
    """One pass over the votes: their games summed per pair (as games_of makes them, slot by
    slot), and each model's tallies. No Game objects: 10,000 votes are the hot path."""
    n = len(index)
    pairs = _Pairs(sorted(index, key=index.__getitem__))
    games, score = pairs.games, pairs.score
    counts = _Counts([0] * n, [0] * n, [0] * n, [0] * n, [0] * n)
    for models, winner in votes:
        slots = [index[m] for m in models]
        present = set(slots)
        for i in present:
            counts.votes[i] += 1
        if winner in TIES:
            for x, i in enumerate(slots):
                for j in slots[x + 1:]:
                    if i == j:
                        continue
                    key = (i, j) if i < j else (j, i)
                    games[key] = games.get(key, 0.0) + 1.0
                    score[key] = score.get(key, 0.0) + 0.5
                    counts.ties[i] += 1
                    counts.ties[j] += 1
            continue
        best = slots[int(winner)]
        for other in slots:
            if other == best:
                continue
            key = (best, other) if best < other else (other, best)
            games[key] = games.get(key, 0.0) + 1.0
            score[key] = score.get(key, 0.0) + (1.0 if best < other else 0.0)
            counts.wins[best] += 1
            counts.losses[other] += 1
        if len(present) > 1:
            for i in present:
                counts.decisive[i] += 1
    return pairs, counts


def leaderboard(votes: Sequence[tuple[Sequence[str], str]]) -> Leaderboard:
    """`votes`: (models in slot order, winner) per vote. Intervals: each rating's Wald 95%
    interval from the fit's curvature (deterministic: a page shows the same numbers twice)."""
    names = sorted({m for models, _ in votes for m in models})
    if not names:
        return Leaderboard([], {}, 0)
    index = {m: i for i, m in enumerate(names)}
    pairs, counts = _count(votes, index)
    theta, lower = _newton(pairs, PRIOR_GAMES, MAX_NEWTON_STEPS, 1e-10)
    variance = _relative_variances(lower) if lower is not None else [0.0] * len(names)
    standings = []
    for i, name in enumerate(names):
        rating = BASE_RATING + ELO_PER_LOG * theta[i]
        half = Z95 * math.sqrt(max(variance[i], 0.0)) * ELO_PER_LOG
        standing = ModelStanding(name, rating, rating - half, rating + half, counts.votes[i],
                                 counts.wins[i], counts.losses[i], counts.ties[i],
                                 counts.decisive[i])
        # Too few: under MIN_DECISIVE_VOTES decided votes, or never beaten or never a winner
        # (how far it stands from the others is then the prior's guess, not the votes').
        standing.too_few_votes = (standing.decisive_votes < MIN_DECISIVE_VOTES
                                  or not standing.wins or not standing.losses
                                  or 2 * half < MIN_INTERVAL_WIDTH)
        standings.append(standing)
    win_rate: dict[str, dict[str, float]] = defaultdict(dict)
    for (i, j), games in pairs.games.items():
        share = pairs.score[(i, j)] / games
        win_rate[names[i]][names[j]] = round(share, 4)
        win_rate[names[j]][names[i]] = round(1.0 - share, 4)
    standings.sort(key=lambda s: (-s.rating, s.model))
    return Leaderboard(standings, dict(win_rate), len(votes))
