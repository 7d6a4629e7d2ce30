"""The leaderboard's figure: the Bradley-Terry fit of every vote, against the fit it replaced.

Run by tests/bench/run.py (section 11 of docs/benchmarks.md), in this process: no gateway,
no box. Three vote sets, generated from a seeded `random.Random` (the same votes every run):

- `probe`: the outside probe's case, 100 votes of two models, one of them always the winner
  (separable data);
- `1k`: 1,000 votes over 10 models;
- `10k`: 10,000 votes over 50 models (500 over 10 in `--smoke`).

The `1k` and `10k` sets are arena-like: each vote shows 2, 3 or 4 distinct models (about
70/20/10%), about 10% of votes are a tie or "both bad", and otherwise the winner is the slot
whose latent skill plus Gumbel noise is highest (a Bradley-Terry / Plackett-Luce winner).

For each set: `lfgate.services.evals.leaderboard.leaderboard` timed `reps` times; the rival,
the pre-e9b8ae4 code copied below (`old_leaderboard`: Hunter's MM fit plus 200 bootstrap
refits), timed once in a subprocess that is stopped at the cap (60 s; 2 s in smoke), which
reports its point fit and each refit as they finish, so a stopped run still gives its point
ratings (the agreement) and the refits it got through (their intervals, marked partial).
On the 1,000 votes, where MM cannot finish its refits under the cap, the old bootstrap's very
resamples (its seed and draws) are also refitted by the new fit, which gives the old
intervals in full; and the Wald intervals about the mean of the field, which the module
reports, are also worked out here independently (`centred_wald_widths`) as a cross-check.

Then, off the loop: `Standings` (the gateway's cache of the board, which fits in a worker
thread) over stand-in stores holding the largest set, with a ticker on the same event loop
recording the largest gap between its 10 ms sleeps while the first, uncached board is fitted;
the same ticker with nothing else to do, and with the fit run on the loop itself (as before
standings.py), beside it.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfgate.services.evals.leaderboard import (
    BASE_RATING,
    ELO_PER_LOG,
    PRIOR_GAMES,
    Z95,
    fit,
    games_of,
    leaderboard,
)
from lfgate.services.evals.standings import Standings

ROOT = Path(__file__).resolve().parents[2]
Vote = tuple[list[str], str]
TICK_S = 0.01


# -- the vote sets ----------------------------------------------------------------------------

def probe_votes(seed: int = 1) -> list[Vote]:
    """100 votes of `base` and `sft`, `sft` always chosen (its slot varies)."""
    rng = random.Random(seed)
    votes = []
    for _ in range(100):
        models = ["base", "sft"]
        rng.shuffle(models)
        votes.append((models, str(models.index("sft"))))
    return votes


def arena_votes(n_votes: int, n_models: int, seed: int) -> list[Vote]:
    """Arena-like votes: 2/3/4 distinct models per vote, ~10% ties, winners by skill + noise."""
    rng = random.Random(seed)
    names = [f"model-{i:02d}" for i in range(n_models)]
    skill = {m: rng.gauss(0.0, 1.0) for m in names}  # log-strengths: ~170 Elo points per unit
    votes = []
    for _ in range(n_votes):
        slots = rng.choices((2, 3, 4), weights=(70, 20, 10))[0]
        models = rng.sample(names, min(slots, n_models))
        if rng.random() < 0.10:
            votes.append((models, rng.choice(("tie", "both_bad"))))
            continue
        drawn = [skill[m] - math.log(-math.log(rng.random() or 1e-300)) for m in models]
        votes.append((models, str(max(range(len(models)), key=drawn.__getitem__))))
    return votes


# -- the rival: the fit before e9b8ae4 ----------------------------------------------------------
# Kept here only as this benchmark's rival: backend/lfgate/services/evals/leaderboard.py as it
# was before commit e9b8ae4 (`git show e9b8ae4~1:backend/lfgate/services/evals/leaderboard.py`),
# Hunter's MM algorithm (up to 10,000 iterations per fit) with 200 bootstrap refits. Copied
# as it was, but for `progress`, a callback after the point fit and after each refit (so a run
# stopped at the cap still tells how far it got); the counting of wins, losses and the win
# rates after the refits is left out (the fits are the cost).

OLD_TIES = ("tie", "both_bad")
OLD_PRIOR_GAMES = 1.0
OLD_BOOTSTRAP_ROUNDS = 200
OLD_BASE_RATING, OLD_SCALE = 1000.0, 400.0


@dataclass(frozen=True)
class OldGame:
    a: str
    b: str
    score: float  # for a: 1 a won, 0 b won, 0.5 a tie


@dataclass
class OldStanding:
    model: str
    rating: float
    ci_low: float
    ci_high: float


@dataclass
class OldLeaderboard:
    standings: list[OldStanding]
    samples: dict[str, list[float]] = field(default_factory=dict)


def old_games_of(models: Sequence[str], winner: str) -> list[OldGame]:
    games = []
    if winner in OLD_TIES:
        for i, a in enumerate(models):
            games += [OldGame(a, b, 0.5) for b in models[i + 1:] if b != a]
        return games
    best = models[int(winner)]
    return [OldGame(best, other, 1.0) for other in models if other != best]


def old_fit(games: Iterable[OldGame], models: Iterable[str], *,
            prior: float = OLD_PRIOR_GAMES, iterations: int = 10_000,
            tolerance: float = 1e-12) -> dict[str, float]:
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
    return {m: OLD_BASE_RATING + OLD_SCALE * math.log10(strength[m]) for m in names}


def old_leaderboard(votes: Sequence[tuple[Sequence[str], str]], *,
                    rounds: int = OLD_BOOTSTRAP_ROUNDS, seed: int = 0,
                    progress: Callable[[str, dict[str, float]], None] | None = None
                    ) -> OldLeaderboard:
    per_vote = [old_games_of(models, winner) for models, winner in votes]
    names = sorted({m for models, _ in votes for m in models})
    if not names:
        return OldLeaderboard([])
    ratings = old_fit([g for games in per_vote for g in games], names)
    if progress:
        progress("point", ratings)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        picked = [per_vote[rng.randrange(len(per_vote))] for _ in per_vote]
        refit = old_fit([g for games in picked for g in games], names)
        for model, rating in refit.items():
            samples[model].append(rating)
        if progress:
            progress("round", refit)
    standings = [OldStanding(m, ratings[m], *old_interval(samples[m], ratings[m]))
                 for m in names]
    standings.sort(key=lambda s: (-s.rating, s.model))
    return OldLeaderboard(standings, dict(samples))


def old_interval(samples: list[float], point: float) -> tuple[float, float]:
    if not samples:
        return point, point
    ordered = sorted(samples)
    low = ordered[int(0.025 * (len(ordered) - 1))]
    high = ordered[math.ceil(0.975 * (len(ordered) - 1))]
    return low, high


# -- running the rival under a cap --------------------------------------------------------------

def _rival_child(votes_path: str, out_path: str) -> None:
    """In the subprocess: the old leaderboard on the votes, one JSON line per fit as it ends."""
    votes = json.loads(Path(votes_path).read_text())
    with open(out_path, "a") as out:
        print("ready", flush=True)
        started = time.perf_counter()

        def progress(kind: str, ratings: dict[str, float]) -> None:
            out.write(json.dumps({"kind": kind, "at_s": time.perf_counter() - started,
                                  "ratings": ratings}) + "\n")
            out.flush()

        old_leaderboard(votes, progress=progress)
        out.write(json.dumps({"kind": "end", "at_s": time.perf_counter() - started}) + "\n")


def run_rival(votes: list[Vote], cap_s: float) -> dict[str, Any]:
    """The old leaderboard on `votes` in a subprocess, stopped (killed: it is ours) `cap_s`
    after it says it is ready. Times are the child's own clock from just before the fit (its
    start-up, the imports, is left out)."""
    with tempfile.TemporaryDirectory(prefix="lfgate-bench-rival-") as tmp:
        votes_path, out_path = Path(tmp) / "votes.json", Path(tmp) / "fits.jsonl"
        votes_path.write_text(json.dumps(votes))
        out_path.touch()
        child = subprocess.Popen([sys.executable, "-m", "tests.bench.leaderboard", "--rival",
                                  str(votes_path), str(out_path)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()  # "ready": imported, votes read; the cap starts now
        started, killed = time.perf_counter(), False
        try:
            child.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            killed = True
        wall = time.perf_counter() - started
        lines = [json.loads(line) for line in out_path.read_text().splitlines() if line]
    if child.returncode != 0 and not killed:
        raise RuntimeError(f"the rival failed (exit {child.returncode})")
    point = next((x for x in lines if x["kind"] == "point"), None)
    refits = [x["ratings"] for x in lines if x["kind"] == "round"]
    end = next((x for x in lines if x["kind"] == "end"), None)
    return {"status": "done" if end else "stopped", "cap_s": cap_s,
            "total_s": end["at_s"] if end else None, "wall_s": wall,
            "point_s": point["at_s"] if point else None,
            "point": point["ratings"] if point else None,
            "last_at_s": lines[-1]["at_s"] if lines else None,
            "rounds_done": len(refits), "rounds": OLD_BOOTSTRAP_ROUNDS, "refits": refits}


# -- off the event loop ------------------------------------------------------------------------

class _Store:
    """A stand-in for the vote store and the run store: the rows, read as the gateway does."""

    def __init__(self, rows: list[Vote]) -> None:
        self.rows = rows

    async def outcomes(self) -> list[Vote]:
        return self.rows

    async def vote_outcomes(self) -> list[Vote]:
        return self.rows


class _Ticker:
    """Sleeps TICK_S at a time on the running loop and keeps the gaps between its wake-ups."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)  # the ticker starts before the work
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now

    @property
    def max_gap_s(self) -> float:
        return max(self.gaps, default=float("nan"))


async def _off_the_loop(votes: list[Vote]) -> dict[str, Any]:
    half = len(votes) // 2  # compare votes in one store, prompt-set votes in the other
    standings = Standings(_Store(votes[:half]), _Store(votes[half:]))  # type: ignore[arg-type]
    async with _Ticker() as idle:
        await asyncio.sleep(0.5)
    async with _Ticker() as first_ticker:
        started = time.perf_counter()
        board = await standings.board()
        first = time.perf_counter() - started
    async with _Ticker() as second_ticker:
        started = time.perf_counter()
        again = await standings.board()
        second = time.perf_counter() - started
    if again is not board or standings.fits != 1 or board.votes != len(votes):
        raise RuntimeError(f"the cached board was fitted again ({standings.fits} fits)")
    async with _Ticker() as on_loop:
        await asyncio.sleep(0)
        started = time.perf_counter()
        leaderboard(votes)  # on the loop itself, as before standings.py
        on_loop_s = time.perf_counter() - started
        await asyncio.sleep(0)
    return {"votes": len(votes), "models": len(board.standings), "first_s": first,
            "second_s": second, "fits": standings.fits,
            "max_gap_s": first_ticker.max_gap_s, "ticks": len(first_ticker.gaps),
            "second_max_gap_s": second_ticker.max_gap_s,
            "idle_max_gap_s": idle.max_gap_s, "idle_ticks": len(idle.gaps),
            "on_loop_s": on_loop_s, "on_loop_max_gap_s": on_loop.max_gap_s,
            "switch_interval_s": sys.getswitchinterval()}


# -- the section --------------------------------------------------------------------------------

def bootstrap_by_newton(votes: Sequence[tuple[Sequence[str], str]],
                        rounds: int = OLD_BOOTSTRAP_ROUNDS, seed: int = 0
                        ) -> list[dict[str, float]]:
    """The old leaderboard's bootstrap, the very same resamples (its seed and its draws), each
    refitted by the new fit (Newton) instead of MM: the old intervals, when MM is too slow to
    get through its 200 refits under the cap (the two fits agree to a fraction of a point)."""
    per_vote = [games_of(models, winner) for models, winner in votes]
    names = sorted({m for models, _ in votes for m in models})
    rng = random.Random(seed)
    refits = []
    for _ in range(rounds):
        picked = [per_vote[rng.randrange(len(per_vote))] for _ in per_vote]
        refits.append(fit([g for games in picked for g in games], names))
    return refits


def _widths(refits: list[dict[str, float]], point: dict[str, float]) -> list[float]:
    widths = []
    for model, rating in point.items():
        low, high = old_interval([r[model] for r in refits], rating)
        widths.append(high - low)
    return widths


def bench_leaderboard(reps: int, smoke: bool) -> dict[str, Any]:
    cap_s = 2.0 if smoke else 60.0
    big = (500, 10) if smoke else (10_000, 50)
    sets = [("probe", "the probe's case: one model always wins", probe_votes()),
            ("1k", "arena-like", arena_votes(1_000, 10, seed=2)),
            ("10k", "arena-like", arena_votes(*big, seed=3))]
    rows: list[dict[str, Any]] = []
    for key, label, votes in sets:
        times, board = [], None
        for _ in range(reps):
            started = time.perf_counter()
            board = leaderboard(votes)
            times.append(time.perf_counter() - started)
        assert board is not None
        ratings = {s.model: s.rating for s in board.standings}
        row: dict[str, Any] = {
            "key": key, "label": label, "votes": len(votes), "models": len(ratings),
            "slots": sorted({len(m) for m, _ in votes}),
            "ties": sum(w in OLD_TIES for _, w in votes), "new_s": times,
            "new_median_width": _median_width(board.standings),
            "centred_median_width": statistics.median(centred_wald_widths(votes, board)),
            "too_few_votes": sum(s.too_few_votes for s in board.standings)}
        before = rows[-1]["old"] if rows else None
        if key == "10k" and before and before["status"] != "done":
            old: dict[str, Any] = {"status": "skipped", "cap_s": cap_s, "after": "1k"}
        else:
            old = run_rival(votes, cap_s)
        if old.get("point"):
            old["point_diff"] = max(abs(ratings[m] - r) for m, r in old["point"].items())
        if old.get("refits"):
            old["median_width"] = statistics.median(_widths(old["refits"], old["point"]))
        if key == "1k":  # the old intervals in full: its resamples, refitted by Newton
            started = time.perf_counter()
            refits = bootstrap_by_newton(votes)
            row["newton_bootstrap_s"] = time.perf_counter() - started
            row["newton_bootstrap_width"] = statistics.median(_widths(refits, ratings))
            done = old.get("refits") or []
            if done:  # the same resamples by MM and by Newton, as far as MM got
                row["newton_vs_mm_refits"] = max(abs(a[m] - b[m]) for a, b in zip(
                    done, refits, strict=False) for m in a)
        old.pop("refits", None)
        old.pop("point", None)
        row["old"] = old
        rows.append(row)
        print(f"bench: leaderboard {key}: new {statistics.median(times) * 1000:.0f} ms, old "
              f"{old['status']} {old.get('total_s') or old.get('last_at_s') or 0:.1f} s",
              file=sys.stderr, flush=True)
    loop = asyncio.run(_off_the_loop(sets[-1][2]))
    return {"reps": reps, "smoke": smoke, "cap_s": cap_s, "sets": rows, "loop": loop}


def _median_width(board_standings: Iterable[Any]) -> float:
    return statistics.median(s.ci_high - s.ci_low for s in board_standings)


def centred_wald_widths(votes: Sequence[tuple[Sequence[str], str]], board: Any) -> list[float]:
    """Each model's Wald 95% interval width (rating points) for its rating *about the mean of
    the field*, from the same observed information at the new fit's ratings: what the
    bootstrap's intervals measured (its resamples moved the models against each other, never
    the prior that pins the scale). Worked out here from the votes and the board's ratings,
    independently of the module's internals."""
    names = [s.model for s in board.standings]
    index = {m: i for i, m in enumerate(names)}
    theta = [(s.rating - BASE_RATING) / ELO_PER_LOG for s in board.standings]
    k = len(names)
    info = [[0.0] * k for _ in range(k)]
    for models, winner in votes:
        for game in games_of(models, winner):
            i, j = index[game.a], index[game.b]
            p = 1.0 / (1.0 + math.exp(theta[j] - theta[i]))
            w = p * (1.0 - p)
            info[i][i] += w
            info[j][j] += w
            info[i][j] -= w
            info[j][i] -= w
    for i, t in enumerate(theta):
        p = 1.0 / (1.0 + math.exp(-t))
        info[i][i] += PRIOR_GAMES * p * (1.0 - p)
    cov = _inverse(info)
    row_means = [sum(row) / k for row in cov]
    grand = sum(row_means) / k
    return [2 * Z95 * math.sqrt(max(cov[i][i] - 2 * row_means[i] + grand, 0.0)) * ELO_PER_LOG
            for i in range(k)]


def _inverse(matrix: list[list[float]]) -> list[list[float]]:
    """Gauss-Jordan with partial pivoting (small, symmetric positive definite matrices)."""
    k = len(matrix)
    a = [[*row, *(1.0 if i == j else 0.0 for j in range(k))] for i, row in enumerate(matrix)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        head = a[col][col]
        a[col] = [v / head for v in a[col]]
        for r in range(k):
            if r != col and a[r][col]:
                factor = a[r][col]
                a[r] = [v - factor * h for v, h in zip(a[r], a[col], strict=True)]
    return [row[k:] for row in a]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rival"]:
        _rival_child(sys.argv[2], sys.argv[3])
    else:
        smoke = "--smoke" in sys.argv
        print(json.dumps(bench_leaderboard(1 if smoke else 7, smoke), indent=1, default=str))
