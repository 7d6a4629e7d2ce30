"""Bradley-Terry ratings against values computed by hand for small fixed vote sets."""

from __future__ import annotations

import asyncio
import math
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lfgate.services.evals import standings as standings_module
from lfgate.services.evals.leaderboard import Game, fit, games_of, leaderboard


def test_two_models_two_wins_to_one_rate_as_their_odds():
    # P(A beats B) = pA / (pA + pB) = 2/3 at the maximum likelihood, so pA / pB = 2; with
    # the geometric mean at 1: pA = sqrt(2), pB = 1/sqrt(2), ratings 1000 +- 200*log10(2).
    games = [Game("A", "B", 1), Game("A", "B", 1), Game("B", "A", 1)]
    ratings = fit(games, ["A", "B"], prior=0)
    assert ratings["A"] == pytest.approx(1000 + 200 * math.log10(2), abs=1e-6)  # 1060.206
    assert ratings["B"] == pytest.approx(1000 - 200 * math.log10(2), abs=1e-6)  # 939.794
    assert ratings["A"] - ratings["B"] == pytest.approx(120.412, abs=1e-3)


def test_a_cycle_and_ties_rate_everyone_the_same():
    cycle = [Game("A", "B", 1), Game("B", "C", 1), Game("C", "A", 1)]
    assert fit(cycle, "ABC", prior=0) == pytest.approx({"A": 1000, "B": 1000, "C": 1000})
    ties = [Game("A", "B", 0.5), Game("B", "C", 0.5)]
    assert fit(ties, "ABC", prior=0) == pytest.approx({"A": 1000, "B": 1000, "C": 1000})


def test_three_models_by_hand():
    # A beats B twice, B beats C twice, A and C tie once. At the maximum of the likelihood
    # every model's expected score, the sum over its games of p_i / (p_i + p_j), equals its
    # actual score (A 2.5, B 2, C 0.5): checked on the fitted strengths.
    games = [Game("A", "B", 1), Game("A", "B", 1), Game("B", "C", 1), Game("B", "C", 1),
             Game("A", "C", 0.5)]
    ratings = fit(games, "ABC", prior=0)
    p = {m: 10 ** ((r - 1000) / 400) for m, r in ratings.items()}
    won = {"A": 2.5, "B": 2.0, "C": 0.5}
    expected = {m: 0.0 for m in "ABC"}
    for g in games:
        expected[g.a] += p[g.a] / (p[g.a] + p[g.b])
        expected[g.b] += p[g.b] / (p[g.a] + p[g.b])
    assert expected == pytest.approx(won, abs=1e-9)
    assert ratings["A"] > ratings["B"] > ratings["C"]


def test_votes_become_games_and_a_model_against_itself_counts_for_nothing():
    assert games_of(["A", "B"], "0") == [Game("A", "B", 1.0)]
    assert games_of(["A", "B", "C"], "2") == [Game("C", "A", 1.0), Game("C", "B", 1.0)]
    assert games_of(["A", "B"], "both_bad") == [Game("A", "B", 0.5)]
    assert games_of(["A", "A"], "1") == []
    assert games_of(["A", "A", "B"], "tie") == [Game("A", "B", 0.5), Game("A", "B", 0.5)]


def test_the_leaderboard_counts_votes_and_win_rates_and_brackets_each_rating():
    votes = [(["base", "sft"], "1")] * 6 + [(["base", "sft"], "0")] * 2 + [
        (["base", "sft"], "tie")]
    board = leaderboard(votes)
    best, worst = board.standings
    assert (best.model, worst.model) == ("sft", "base")
    assert (best.wins, best.losses, best.ties, best.votes) == (6, 2, 1, 9)
    assert board.win_rate["sft"]["base"] == pytest.approx(6.5 / 9, abs=1e-4)
    assert board.win_rate["base"]["sft"] == pytest.approx(2.5 / 9, abs=1e-4)
    for standing in board.standings:
        assert standing.ci_low <= standing.rating <= standing.ci_high
    assert leaderboard(votes).standings == board.standings  # deterministic: the same twice
    assert leaderboard([]).standings == []


def test_an_interval_the_votes_cannot_support_is_marked_too_few_votes():
    # One vote (a bootstrap's interval was one number, "1218–1218"): too few, whatever width.
    one = leaderboard([(["base", "sft"], "1")]).standings
    assert [(s.model, s.decisive_votes, s.too_few_votes) for s in one] == [
        ("sft", 1, True), ("base", 1, True)]
    # Five decisive votes, not all alike: an interval with a width.
    mixed = [(["base", "sft"], "1")] * 3 + [(["base", "sft"], "0")] * 2
    for standing in leaderboard(mixed).standings:
        assert standing.decisive_votes == 5 and not standing.too_few_votes
        assert standing.ci_high - standing.ci_low >= 1
    # Four decisive votes and ties, or many votes all alike (sft never lost: how far above
    # base it is, the prior says, not the votes): still too few.
    four = leaderboard(mixed[1:] + [(["base", "sft"], "tie")] * 6).standings
    assert all(s.decisive_votes == 4 and s.too_few_votes for s in four)
    alike = leaderboard([(["base", "sft"], "1")] * 12).standings
    assert all(s.decisive_votes == 12 and s.too_few_votes for s in alike)
    # A third model decided in a three-column vote; the same model twice decides nothing.
    three = {s.model: s for s in leaderboard([(["a", "b", "c"], "0"),
                                              (["a", "a"], "1")]).standings}
    assert {m: s.decisive_votes for m, s in three.items()} == {"a": 1, "b": 1, "c": 1}


def mm_reference(games: list[Game], names: list[str], prior: float = 1.0) -> dict[str, float]:
    """Hunter's minorisation-maximisation (this module's fit until Newton replaced it), run
    to convergence: the reference the new fit must agree with."""
    strength = dict.fromkeys(names, 1.0)
    won = {m: prior * 0.5 for m in names}
    for g in games:
        won[g.a] += g.score
        won[g.b] += 1.0 - g.score
    for _ in range(200_000):
        against = {m: prior / (strength[m] + 1.0) for m in names}
        for g in games:
            shared = 1.0 / (strength[g.a] + strength[g.b])
            against[g.a] += shared
            against[g.b] += shared
        new = {m: won[m] / against[m] for m in names}
        change = max(abs(new[m] - strength[m]) / strength[m] for m in names)
        strength = new
        if change < 1e-13:
            break
    return {m: 1000 + 400 * math.log10(s) for m, s in strength.items()}


MODELS = ["a", "b", "c", "d"]
vote_sets = st.lists(
    st.tuples(st.lists(st.sampled_from(MODELS), min_size=2, max_size=4),
              st.sampled_from(["0", "1", "tie", "both_bad"])),
    min_size=1, max_size=25,
).map(lambda votes: [(models, w if w in ("tie", "both_bad") else str(int(w) % len(models)))
                     for models, w in votes])


@settings(max_examples=60, deadline=None)
@given(vote_sets)
def test_newton_agrees_with_minorisation_maximisation(votes):
    games = [g for models, winner in votes for g in games_of(models, winner)]
    names = sorted({m for models, _ in votes for m in models})
    ours = fit(games, names)
    reference = mm_reference(games, names)
    assert ours == pytest.approx(reference, abs=0.05)
    for standing in leaderboard(votes).standings:
        assert standing.ci_low <= standing.rating <= standing.ci_high
        assert math.isfinite(standing.ci_low) and math.isfinite(standing.ci_high)


def test_one_model_that_always_wins_converges_at_once_and_stays_finite():
    """The outside probe's case: 100 votes, one model always the winner (separable data, on
    which minorisation-maximisation crawled for 10,000 iterations per fit)."""
    votes = [(["base", "sft"], "1")] * 60 + [(["base", "other", "sft"], "2")] * 40
    board = leaderboard(votes)
    assert [s.model for s in board.standings] == ["sft", "other", "base"]
    games = [g for models, winner in votes for g in games_of(models, winner)]
    ratings = fit(games, ["base", "other", "sft"])
    assert ratings == pytest.approx(mm_reference(games, ["base", "other", "sft"]), abs=0.05)
    # At the maximum each model's expected score (games and the prior's tie) is its score.
    p = {m: 10 ** ((r - 1000) / 400) for m, r in ratings.items()}
    expected = {m: p[m] / (p[m] + 1) for m in p}
    actual = {m: 0.5 for m in p}
    for g in games:
        expected[g.a] += p[g.a] / (p[g.a] + p[g.b])
        expected[g.b] += p[g.b] / (p[g.a] + p[g.b])
        actual[g.a] += g.score
        actual[g.b] += 1 - g.score
    assert expected == pytest.approx(actual, abs=1e-8)
    assert all(s.too_few_votes for s in board.standings if s.model in ("sft", "base"))


def test_the_interval_is_the_wald_interval_of_the_fit():
    """Two models, n games: the information on their log-strengths is a 2x2 matrix whose
    inverse is their covariance; each interval is 1.96 standard errors of the model's
    log-strength relative to the field's mean, (θ_a - θ_b) / 2, each side."""
    votes = [(["base", "sft"], "1")] * 7 + [(["base", "sft"], "0")] * 3
    board = {s.model: s for s in leaderboard(votes).standings}
    per_log = 400 / math.log(10)
    theta = {m: (s.rating - 1000) / per_log for m, s in board.items()}
    sig = {m: 1 / (1 + math.exp(-t)) for m, t in theta.items()}
    p = 1 / (1 + math.exp(theta["base"] - theta["sft"]))
    w = 10 * p * (1 - p)
    prior = {m: s * (1 - s) for m, s in sig.items()}
    det = (w + prior["sft"]) * (w + prior["base"]) - w * w
    var_sft, var_base, cov = (w + prior["base"]) / det, (w + prior["sft"]) / det, w / det
    relative = (var_sft + var_base - 2 * cov) / 4  # Var((θ_sft - θ_base) / 2), the same for both
    var = {"sft": relative, "base": relative}
    for model, standing in board.items():
        half = 1.959963984540054 * math.sqrt(var[model]) * per_log
        assert standing.ci_low == pytest.approx(standing.rating - half, abs=1e-6)
        assert standing.ci_high == pytest.approx(standing.rating + half, abs=1e-6)
        assert not standing.too_few_votes


class Outcomes:
    """A vote store's outcomes(), and a run store's vote_outcomes(), from a list."""

    def __init__(self, votes: list[tuple[list[str], str]]) -> None:
        self.votes = votes

    async def outcomes(self) -> list[tuple[list[str], str]]:
        return list(self.votes)

    vote_outcomes = outcomes


def test_the_board_is_fitted_off_the_loop_once_per_set_of_votes(monkeypatch):
    """The fit runs in a worker thread (the event loop serves meanwhile), requests that
    overlap share one fit, and the same votes are not fitted again until they change."""
    threads: list[int] = []
    real = standings_module.leaderboard

    def traced(votes):
        threads.append(threading.get_ident())
        return real(votes)

    monkeypatch.setattr(standings_module, "leaderboard", traced)
    compare = Outcomes([(["base", "sft"], "1")] * 3)
    runs = Outcomes([(["base", "sft"], "0")])

    async def run():
        standings = standings_module.Standings(compare, runs)
        first, again = await asyncio.gather(standings.board(), standings.board())
        assert first is again and standings.fits == 1
        assert (await standings.board()) is first and standings.fits == 1
        compare.votes.append((["base", "sft"], "tie"))
        changed = await standings.board()
        assert standings.fits == 2 and changed.votes == 5 and first.votes == 4
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert len(threads) == 2 and loop_thread not in threads


def test_the_intervals_are_about_as_wide_as_a_bootstraps():
    """Arena-like votes (latent skills, noise, ties): each model's Wald interval, taken
    relative to the field, is about as wide as the spread of its rating over bootstrap
    resamples of the votes (the old module's method), neither far narrower nor far wider."""
    rng = random.Random(7)
    models = [f"m{i}" for i in range(6)]
    skill = {m: rng.gauss(0, 0.8) for m in models}
    votes = []
    for _ in range(400):
        pair = rng.sample(models, 2)
        if rng.random() < 0.1:
            votes.append((pair, "tie"))
        else:
            votes.append((pair, str(max((0, 1), key=lambda i: skill[pair[i]]
                                        + rng.gauss(0, 1)))))
    board = {s.model: s for s in leaderboard(votes).standings}
    samples: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(200):
        picked = [votes[rng.randrange(len(votes))] for _ in votes]
        for model, rating in fit([g for m, w in picked for g in games_of(m, w)], models).items():
            samples[model].append(rating)
    for model in models:
        ordered = sorted(samples[model])
        boot = ordered[194] - ordered[5]  # the 2.5th to the 97.5th percentile of 200
        wald = board[model].ci_high - board[model].ci_low
        assert 0.7 < wald / boot < 1.4, (model, wald, boot)
