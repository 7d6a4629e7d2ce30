"""Ratings from compare votes: a Bradley-Terry model, as FastChat's arena reports it (Elo
scale: 400 * log10 of strength, 1000 the reference), fitted by Hunter's MM algorithm (2004),
with bootstrap 95% intervals and a win-rate matrix.

Each vote becomes pairwise games between the models of its turn: the chosen slot beats each
other slot; a tie or "both bad" is a tie (half a win each) between every pair. Games
between a model and itself (the same model in two slots, to see sampling variance) say
nothing about strength and are left out. A weak prior (PRIOR_GAMES ties against a reference
player of strength 1) keeps a model that never won finite and anchors the scale; with no
prior, the strengths are normalised to a geometric mean of 1.

An interval is only an interval when the votes can move it: a model with fewer than
MIN_DECISIVE_VOTES votes it won or lost (ties say little), or whose resamples all gave one
rating (one vote; or every vote alike, which every resample repeats), is marked
`too_few_votes`, and the page says so instead of showing a width of zero as certainty.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TIES = ("tie", "both_bad")
PRIOR_GAMES = 1.0
BOOTSTRAP_ROUNDS = 200
BASE_RATING, SCALE = 1000.0, 400.0
MIN_DECISIVE_VOTES = 5  # below this, a model's bootstrap interval is not shown as one
MIN_INTERVAL_WIDTH = 1.0  # rating points: narrower reads as one number ("1218–1218")


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


def fit(games: Iterable[Game], models: Iterable[str], *, prior: float = PRIOR_GAMES,
        iterations: int = 10_000, tolerance: float = 1e-12) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale, by minorisation-maximisation."""
    names = sorted(set(models))
    games = list(games)
    strength = dict.fromkeys(names, 1.0)
    won: dict[str, float] = {m: prior * 0.5 for m in names}
    for game in games:
        won[game.a] += game.score
        won[game.b] += 1.0 - game.score
    for _ in range(iterations):
        against: dict[str, float] = {m: prior / (strength[m] + 1.0) for m in names}
        for game in games:
            shared = 1.0 / (strength[game.a] + strength[game.b])
            against[game.a] += shared
            against[game.b] += shared
        new = {m: (won[m] / against[m] if against[m] else 1.0) for m in names}
        if prior == 0:
            mean_log = sum(math.log(v) for v in new.values()) / len(new)
            new = {m: v / math.exp(mean_log) for m, v in new.items()}
        change = max(abs(new[m] - strength[m]) / strength[m] for m in names)
        strength = new
        if change < tolerance:
            break
    return {m: BASE_RATING + SCALE * math.log10(strength[m]) for m in names}


def leaderboard(votes: Sequence[tuple[Sequence[str], str]], *, rounds: int = BOOTSTRAP_ROUNDS,
                seed: int = 0) -> Leaderboard:
    """`votes`: (models in slot order, winner) per vote. Intervals: the 2.5th and 97.5th
    percentiles of the ratings refitted on `rounds` resamplings of the votes (seeded, so a
    page shows the same numbers twice)."""
    per_vote = [games_of(models, winner) for models, winner in votes]
    names = sorted({m for models, _ in votes for m in models})
    if not names:
        return Leaderboard([], {}, 0)
    ratings = fit([g for games in per_vote for g in games], names)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        picked = [per_vote[rng.randrange(len(per_vote))] for _ in per_vote]
        for model, rating in fit([g for games in picked for g in games], names).items():
            samples[model].append(rating)
    standings = {m: ModelStanding(m, ratings[m], *_interval(samples[m], ratings[m]))
                 for m in names}
    for models, _ in votes:
        for model in set(models):
            standings[model].votes += 1
    share: dict[tuple[str, str], list[float]] = defaultdict(list)
    for game in (g for games in per_vote for g in games):
        for me, other, score in ((game.a, game.b, game.score), (game.b, game.a, 1 - game.score)):
            share[(me, other)].append(score)
            mine = standings[me]
            if score == 1:
                mine.wins += 1
            elif score == 0:
                mine.losses += 1
            else:
                mine.ties += 1
    win_rate: dict[str, dict[str, float]] = defaultdict(dict)
    for (me, other), scores in share.items():
        win_rate[me][other] = round(sum(scores) / len(scores), 4)
    _mark_thin_evidence(standings, per_vote)
    ordered = sorted(standings.values(), key=lambda s: (-s.rating, s.model))
    return Leaderboard(ordered, dict(win_rate), len(votes))


def _mark_thin_evidence(standings: dict[str, ModelStanding],
                        per_vote: Sequence[Sequence[Game]]) -> None:
    """Count each model's decisive votes and mark those whose interval means nothing yet."""
    for games in per_vote:
        for model in {m for g in games if g.score != 0.5 for m in (g.a, g.b)}:
            standings[model].decisive_votes += 1
    for standing in standings.values():
        standing.too_few_votes = (standing.decisive_votes < MIN_DECISIVE_VOTES
                                  or standing.ci_high - standing.ci_low < MIN_INTERVAL_WIDTH)


def _interval(samples: list[float], point: float) -> tuple[float, float]:
    if not samples:
        return point, point
    ordered = sorted(samples)
    low = ordered[int(0.025 * (len(ordered) - 1))]
    high = ordered[math.ceil(0.975 * (len(ordered) - 1))]
    return low, high
