"""Votes on compare turns: one per turn (voting again replaces it), kept apart from the
message tree so the leaderboard reads one table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from lfgate.storage.chat_store import new_id
from lfgate.storage.database import Database
from lfgate.storage.errors import UnknownChat
from lfgate.storage.tables import Chat, Vote, utcnow


@dataclass(frozen=True)
class VoteRecord:
    id: str
    chat_id: str
    compare_id: str
    models: list[str]  # in slot order
    reply_ids: list[str]
    winner: str  # a slot's index ("0".."3"), "tie" or "both_bad"
    reason: str | None
    blind: bool
    created_at: datetime


def _vote(row: Vote) -> VoteRecord:
    return VoteRecord(row.id, row.chat_id, row.compare_id, list(row.models),
                      list(row.reply_ids), row.winner, row.reason, row.blind, row.created_at)


class VoteStore:
    def __init__(self, database: Database) -> None:
        self._sessions = database.sessions

    async def put(self, *, chat_id: str, compare_id: str, models: list[str],
                  reply_ids: list[str], winner: str, reason: str | None,
                  blind: bool) -> VoteRecord:
        async with self._sessions.begin() as session:
            if await session.get(Chat, chat_id) is None:
                raise UnknownChat(f"unknown chat {chat_id!r}")
            row = await session.scalar(select(Vote).where(Vote.compare_id == compare_id))
            if row is None:
                row = Vote(id=new_id(), chat_id=chat_id, compare_id=compare_id)
                session.add(row)
            row.models, row.reply_ids, row.winner = models, reply_ids, winner
            row.reason, row.blind, row.created_at = reason, blind, utcnow()
        return _vote(row)

    async def of_chat(self, *, chat_id: str) -> list[VoteRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Vote).where(Vote.chat_id == chat_id)
                                         .order_by(Vote.created_at))
            return [_vote(row) for row in rows.all()]

    async def outcomes(self) -> list[tuple[list[str], str]]:
        """(models in slot order, winner) of every vote: only what the leaderboard reads, so
        thousands of votes cost no ORM objects on the event loop."""
        async with self._sessions() as session:
            rows = await session.execute(select(Vote.models, Vote.winner)
                                         .order_by(Vote.created_at, Vote.id))
            return [(list(models), winner) for models, winner in rows.all()]

    async def every(self) -> list[VoteRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Vote).order_by(Vote.created_at, Vote.id))
            return [_vote(row) for row in rows.all()]
