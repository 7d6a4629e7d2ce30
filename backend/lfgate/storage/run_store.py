"""Runs of prompt sets: the run, one cell per (prompt, model), and votes on its prompts.

A cell is written when it is sent to the box (running, attempts + 1) and when it ends, so
after a crash `mark_interrupted` finds exactly the cells that were in flight and puts them
back to pending; a complete cell is never asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update

from lfgate.storage.chat_store import new_id
from lfgate.storage.database import Database
from lfgate.storage.errors import UnknownPromptSet, UnknownRun
from lfgate.storage.presence import Presence
from lfgate.storage.storable import storable_text, storable_value
from lfgate.storage.tables import PromptSet, RunCell, RunVote, SetRun, as_utc, utcnow

CELL_STATUSES = ("pending", "running", "complete", "error", "stopped")


@dataclass(frozen=True)
class RunRecord:
    id: str
    set_id: str
    models: list[str]
    params: dict[str, Any]
    mode: str
    status: str
    error: dict[str, Any] | None
    elapsed_s: float
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CellRecord:
    index: int
    slot: int
    model: str
    status: str
    content: str
    provenance: dict[str, Any] | None
    scores: dict[str, float] | None
    attempts: int


@dataclass(frozen=True)
class RunVoteRecord:
    run_id: str
    index: int
    models: list[str]
    winner: str
    reason: str | None
    created_at: datetime


def _run(row: SetRun) -> RunRecord:
    return RunRecord(row.id, row.set_id, list(row.models), dict(row.params or {}), row.mode,
                     row.status, row.error, row.elapsed_s, as_utc(row.created_at),
                     as_utc(row.updated_at))


def _cell(row: RunCell) -> CellRecord:
    return CellRecord(row.position, row.slot, row.model, row.status, storable_text(row.content),
                      storable_value(row.provenance), row.scores, row.attempts)


def _vote(row: RunVote) -> RunVoteRecord:
    return RunVoteRecord(row.run_id, row.position, list(row.models), row.winner, row.reason,
                         as_utc(row.created_at))


class RunStore:
    def __init__(self, database: Database, presence: Presence | None = None) -> None:
        """`presence`: this gateway among those sharing the database (the runs it drives
        are its own); without one, a gateway of its own."""
        self._sessions = database.sessions
        self._presence = self.presence = presence or Presence(database)

    async def create(self, *, set_id: str, models: list[str], params: dict[str, Any],
                     mode: str, prompts: int) -> RunRecord:
        """The run and all its cells, pending, in one transaction; claimed by this gateway."""
        row = SetRun(id=new_id(), set_id=set_id, models=models, params=params, mode=mode,
                     status="running", elapsed_s=0.0, owner=self._presence.id,
                     stop_requested=False)
        async with self._sessions.begin() as session:
            if await session.get(PromptSet, set_id) is None:
                raise UnknownPromptSet(f"unknown prompt set {set_id!r}")
            session.add(row)
            await session.flush()
            session.add_all(RunCell(run_id=row.id, position=i, slot=slot, model=model,
                                    status="pending", content="", attempts=0)
                            for i in range(prompts) for slot, model in enumerate(models))
        return _run(row)

    async def get(self, *, run_id: str) -> RunRecord:
        async with self._sessions() as session:
            row = await session.get(SetRun, run_id)
            if row is None:
                raise UnknownRun(f"unknown run {run_id!r}")
            return _run(row)

    async def of_set(self, *, set_id: str | None) -> list[RunRecord]:
        """The runs of one set (None: of every set), newest first."""
        query = select(SetRun).order_by(SetRun.created_at.desc(), SetRun.id)
        if set_id is not None:
            query = query.where(SetRun.set_id == set_id)
        async with self._sessions() as session:
            return [_run(row) for row in (await session.scalars(query)).all()]

    async def update(self, *, run_id: str, **changes: Any) -> RunRecord:
        async with self._sessions.begin() as session:
            row = await session.get(SetRun, run_id)
            if row is None:
                raise UnknownRun(f"unknown run {run_id!r}")
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        return _run(row)

    def _unowned(self) -> Any:
        """A run no live gateway drives (its driver stopped or died; older versions': none)."""
        return or_(SetRun.status != "running", SetRun.owner.is_(None),
                   SetRun.owner.not_in(self._presence.live_ids()))

    async def claim(self, *, run_id: str, mode: str) -> bool:
        """Make this gateway the run's one driver, atomically: False if a live gateway (this
        one too) drives it now. Two resumes at once, here or on two gateways: one wins."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(SetRun).where(SetRun.id == run_id, self._unowned())
                .values(status="running", error=None, mode=mode, owner=self._presence.id,
                        stop_requested=False, updated_at=utcnow()))
            return result.rowcount == 1

    async def driver(self, *, run_id: str) -> str | None:
        """The gateway driving the run now (its id), None if none alive does."""
        async with self._sessions() as session:
            return await session.scalar(select(SetRun.owner).where(
                SetRun.id == run_id, SetRun.status == "running",
                SetRun.owner.in_(self._presence.live_ids())))

    async def request_stop(self, *, run_id: str) -> None:
        """Ask the run's driver, whichever gateway it is, to stop (it reads `stop_asked`)."""
        async with self._sessions.begin() as session:
            await session.execute(update(SetRun).where(SetRun.id == run_id,
                                                       SetRun.status == "running")
                                  .values(stop_requested=True))

    async def stop_asked(self, *, run_id: str) -> bool:
        async with self._sessions() as session:
            return bool(await session.scalar(select(SetRun.stop_requested)
                                             .where(SetRun.id == run_id)))

    async def delete(self, *, run_id: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(SetRun, run_id)
            if row is None:
                raise UnknownRun(f"unknown run {run_id!r}")
            await session.delete(row)

    async def cells(self, *, run_id: str) -> list[CellRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(RunCell).where(RunCell.run_id == run_id)
                                         .order_by(RunCell.position, RunCell.slot))
            return [_cell(row) for row in rows.all()]

    async def mark_asked(self, *, run_id: str, cells: list[tuple[int, int]]) -> None:
        """Cells sent to the box: running, one attempt more."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(RunCell).where(RunCell.run_id == run_id, _any_cell(cells))
                .values(status="running", content="", attempts=RunCell.attempts + 1,
                        updated_at=utcnow()))

    async def finish_cell(self, *, run_id: str, index: int, slot: int, status: str,
                          content: str, provenance: dict[str, Any] | None,
                          scores: dict[str, float] | None) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(RunCell).where(RunCell.run_id == run_id, RunCell.position == index,
                                      RunCell.slot == slot)
                .values(status=status, content=storable_text(content),
                        provenance=storable_value(provenance), scores=scores,
                        updated_at=utcnow()))

    async def requeue(self, *, run_id: str) -> None:
        """Cells of this run left running (their turn was cancelled): pending again."""
        async with self._sessions.begin() as session:
            await session.execute(update(RunCell).where(RunCell.run_id == run_id,
                                                        RunCell.status == "running")
                                  .values(status="pending", content="", updated_at=utcnow()))

    async def mark_interrupted(self) -> int:
        """Runs left running by a gateway that stopped or died become `interrupted`, and
        their cells in flight pending again (what they had streamed is dropped: they are
        asked again on resume): at start-up, and after each heartbeat (a gateway sharing the
        database died). A run a live gateway drives is its own. Returns how many runs."""
        async with self._sessions.begin() as session:
            orphans = select(SetRun.id).where(SetRun.status == "running", self._unowned())
            await session.execute(update(RunCell).where(RunCell.status == "running",
                                                        RunCell.run_id.in_(orphans))
                                  .values(status="pending", content="", updated_at=utcnow()))
            result = await session.execute(
                update(SetRun).where(SetRun.status == "running", self._unowned())
                .values(status="interrupted", updated_at=utcnow(),
                        error={"code": "gateway_restarted",
                               "message": "the gateway stopped while this run was going; "
                                          "resume it to ask what is left"}))
            return result.rowcount

    async def put_vote(self, *, run_id: str, index: int, models: list[str], winner: str,
                       reason: str | None) -> RunVoteRecord:
        async with self._sessions.begin() as session:
            row = await session.get(RunVote, (run_id, index))
            if row is None:
                row = RunVote(run_id=run_id, position=index)
                session.add(row)
            row.models, row.winner, row.reason, row.created_at = models, winner, reason, utcnow()
        return _vote(row)

    async def vote_outcomes(self) -> list[tuple[list[str], str]]:
        """(models in slot order, winner) of every prompt-set vote, for the leaderboard."""
        query = select(RunVote.models, RunVote.winner).order_by(
            RunVote.created_at, RunVote.run_id, RunVote.position)
        async with self._sessions() as session:
            return [(list(models), winner) for models, winner in
                    (await session.execute(query)).all()
                    if isinstance(models, list)]  # Standings checks the rest

    async def votes(self, *, run_id: str | None = None) -> list[RunVoteRecord]:
        query = select(RunVote).order_by(RunVote.created_at, RunVote.run_id, RunVote.position)
        if run_id is not None:
            query = query.where(RunVote.run_id == run_id)
        async with self._sessions() as session:
            return [_vote(row) for row in (await session.scalars(query)).all()]


def _any_cell(cells: list[tuple[int, int]]) -> Any:
    return or_(*(and_(RunCell.position == index, RunCell.slot == slot)
                 for index, slot in cells))
