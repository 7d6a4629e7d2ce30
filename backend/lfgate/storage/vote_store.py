"""Votes on compare turns: one per turn (voting again replaces it), kept apart from the
message tree so the leaderboard reads one table.

A vote an older version stored from a chat it did not check (a provenance `model` that was a
number: issue 24, finding 7) does not read: its models are not all text, or its winner is no
slot of them. Every reader here leaves such a vote out (logged once per vote), as if it were
not there; voting on the turn again replaces it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from lfgate.storage.chat_store import new_id
from lfgate.storage.database import Database
from lfgate.storage.errors import UnknownChat
from lfgate.storage.tables import Chat, Vote, utcnow

logger = logging.getLogger(__name__)
TIE_WINNERS = ("tie", "both_bad")
COMPARE_ID_CHARS = 32  # tables.Vote.compare_id
_told: set[str] = set()  # unreadable votes already logged (by id)


def why_unreadable(models: Any, winner: Any) -> str | None:
    """Why a stored vote's (models in slot order, winner) cannot be counted, or None: the
    models must be text, and the winner a tie or one of their slots."""
    if not isinstance(models, list | tuple) or not models:
        return "its models are not a list of model ids"
    strange = [m for m in models if not isinstance(m, str)]
    if strange:
        return f"its models are not all model ids ({strange[0]!r} is not one)"
    if winner not in TIE_WINNERS and winner not in [str(i) for i in range(len(models))]:
        return f"its winner {winner!r} is no slot of its {len(models)} models"
    return None


def tell_once(key: str, what: str, why: str) -> None:
    """Log, once per gateway for each `key`, that a stored vote is left out and why."""
    if key not in _told:
        _told.add(key)
        logger.warning("%s is left out: %s (an older version stored it; voting on the "
                       "turn again replaces it)", what, why)


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
    reply_ids = row.reply_ids if isinstance(row.reply_ids, list) else []
    return VoteRecord(row.id, row.chat_id, row.compare_id, list(row.models),
                      [r for r in reply_ids if isinstance(r, str)], row.winner,
                      row.reason if isinstance(row.reason, str) else None, bool(row.blind),
                      row.created_at)


def _readable(rows: list[Vote]) -> list[VoteRecord]:
    kept = []
    for row in rows:
        why = why_unreadable(row.models, row.winner)
        if why is None:
            kept.append(_vote(row))
        else:
            tell_once(row.id, f"vote {row.id} (chat {row.chat_id}, compare {row.compare_id})",
                      why)
    return kept


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
            if row is not None and row.chat_id != chat_id:
                # A copy an older version imported shares its original's compare ids.
                raise ValueError(f"its compare id {compare_id!r} is also a turn of chat "
                                 f"{row.chat_id!r}, which has the vote on it")
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
            return _readable(list(rows.all()))

    async def outcomes(self) -> list[tuple[list[str], str]]:
        """(models in slot order, winner) of every vote that reads: only what the
        leaderboard reads, so thousands of votes cost no ORM objects on the event loop."""
        async with self._sessions() as session:
            rows = await session.execute(select(Vote.id, Vote.models, Vote.winner)
                                         .order_by(Vote.created_at, Vote.id))
            kept = []
            for vote_id, models, winner in rows.all():
                why = why_unreadable(models, winner)
                if why is None:
                    kept.append((list(models), winner))
                else:
                    tell_once(vote_id, f"vote {vote_id}", why)
            return kept

    async def every(self) -> list[VoteRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(select(Vote).order_by(Vote.created_at, Vote.id))
            return _readable(list(rows.all()))
