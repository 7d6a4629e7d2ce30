"""The leaderboard of every vote (compare turns and prompt-set rows alike), fitted off the
event loop and kept until the votes change.

Why: the fit is CPU work. On the loop it once held every other request up (an outside probe
saw /api/health wait 46 s behind one leaderboard); in a worker thread the loop keeps
serving, and the same votes are never fitted twice, so a page that polls the board costs a
read of the votes and a comparison.

A stored vote that does not read (a model that is not text, a winner that is no slot of its
models: an older version stored it from a chat it imported unchecked, issue 24 finding 7) is
left out of the board, and said once in the log: it never fails the board.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lfgate.services.evals.leaderboard import Leaderboard, leaderboard
from lfgate.storage.run_store import RunStore
from lfgate.storage.vote_store import VoteStore, why_unreadable

Outcome = tuple[tuple[str, ...], str]
logger = logging.getLogger(__name__)


class Standings:
    """One per gateway (lifespan state): the last board and the votes it was fitted on."""

    def __init__(self, votes: VoteStore, runs: RunStore) -> None:
        self._votes = votes
        self._runs = runs
        self._fitting = asyncio.Lock()  # one fit at a time: requests meanwhile share it
        self._fitted_on: tuple[Outcome, ...] | None = None
        self._board: Leaderboard | None = None
        self.fits = 0  # how many times the votes were fitted (tests and the benchmark read it)
        self._told: set[tuple[str, ...]] = set()  # unreadable votes already logged

    async def board(self) -> Leaderboard:
        stored = [*await self._votes.outcomes(), *await self._runs.vote_outcomes()]
        outcomes = tuple((tuple(models), winner) for models, winner in self._readable(stored))
        async with self._fitting:
            if self._board is None or outcomes != self._fitted_on:
                self._board = await asyncio.to_thread(leaderboard, outcomes)
                self._fitted_on = outcomes
                self.fits += 1
            return self._board

    def _readable(self, stored: list[tuple[Any, Any]]) -> list[tuple[list[str], str]]:
        """The votes that can be counted; the others are logged once per set of them."""
        kept, left_out = [], []
        for models, winner in stored:
            why = why_unreadable(models, winner)
            if why is None:
                kept.append((models, winner))
            else:
                left_out.append(why)
        reasons = tuple(left_out)
        if reasons and reasons not in self._told:
            self._told.add(reasons)
            logger.warning("the leaderboard leaves out %d stored vote(s) it cannot count: %s",
                           len(reasons), "; ".join(sorted(set(reasons))[:5]))
        return kept
