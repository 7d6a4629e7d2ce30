"""The leaderboard of every vote (compare turns and prompt-set rows alike), fitted off the
event loop and kept until the votes change.

Why: the fit is CPU work. On the loop it once held every other request up (an outside probe
saw /api/health wait 46 s behind one leaderboard); in a worker thread the loop keeps
serving, and the same votes are never fitted twice, so a page that polls the board costs a
read of the votes and a comparison.
"""

from __future__ import annotations

import asyncio

from lfgate.services.evals.leaderboard import Leaderboard, leaderboard
from lfgate.storage.run_store import RunStore
from lfgate.storage.vote_store import VoteStore

Outcome = tuple[tuple[str, ...], str]


class Standings:
    """One per gateway (lifespan state): the last board and the votes it was fitted on."""

    def __init__(self, votes: VoteStore, runs: RunStore) -> None:
        self._votes = votes
        self._runs = runs
        self._fitting = asyncio.Lock()  # one fit at a time: requests meanwhile share it
        self._fitted_on: tuple[Outcome, ...] | None = None
        self._board: Leaderboard | None = None
        self.fits = 0  # how many times the votes were fitted (tests and the benchmark read it)

    async def board(self) -> Leaderboard:
        outcomes = tuple((tuple(models), winner) for models, winner in
                         [*await self._votes.outcomes(), *await self._runs.vote_outcomes()])
        async with self._fitting:
            if self._board is None or outcomes != self._fitted_on:
                self._board = await asyncio.to_thread(leaderboard, outcomes)
                self._fitted_on = outcomes
                self.fits += 1
            return self._board
