"""Bradley-Terry ratings against values computed by hand for small fixed vote sets."""

from __future__ import annotations

import math

import pytest

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
    assert leaderboard(votes).standings == board.standings  # seeded: the same twice
    assert leaderboard([]).standings == []


def test_an_interval_the_votes_cannot_support_is_marked_too_few_votes():
    # One vote: every resampling is that vote, so the interval is one number ("1218–1218").
    one = leaderboard([(["base", "sft"], "1")]).standings
    assert [(s.model, s.decisive_votes, s.too_few_votes) for s in one] == [
        ("sft", 1, True), ("base", 1, True)]
    assert one[0].ci_high - one[0].ci_low < 1
    # Five decisive votes, not all alike: an interval with a width.
    mixed = [(["base", "sft"], "1")] * 3 + [(["base", "sft"], "0")] * 2
    for standing in leaderboard(mixed).standings:
        assert standing.decisive_votes == 5 and not standing.too_few_votes
        assert standing.ci_high - standing.ci_low >= 1
    # Four decisive votes and ties, or many votes all alike: still too few.
    four = leaderboard(mixed[1:] + [(["base", "sft"], "tie")] * 6).standings
    assert all(s.decisive_votes == 4 and s.too_few_votes for s in four)
    alike = leaderboard([(["base", "sft"], "1")] * 12).standings
    assert all(s.decisive_votes == 12 and s.too_few_votes for s in alike)
    # A third model decided in a three-column vote; the same model twice decides nothing.
    three = {s.model: s for s in leaderboard([(["a", "b", "c"], "0"),
                                              (["a", "a"], "1")]).standings}
    assert {m: s.decisive_votes for m, s in three.items()} == {"a": 1, "b": 1, "c": 1}
