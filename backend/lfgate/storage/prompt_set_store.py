"""Prompt sets in the database: a set and all its prompts are written in one transaction,
so a file is stored whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, select

from lfgate.storage.chat_store import new_id
from lfgate.storage.database import Database
from lfgate.storage.errors import UnknownPromptSet
from lfgate.storage.tables import PromptSet, SetPrompt, SetRun, as_utc


class PromptLike(Protocol):
    prompt: str
    system: str | None
    reference: str | None


@dataclass(frozen=True)
class PromptSetRecord:
    id: str
    name: str
    format: str
    count: int
    references: int
    created_at: datetime
    runs: int = 0


@dataclass(frozen=True)
class SetPromptRecord:
    index: int
    prompt: str
    system: str | None
    reference: str | None


def _set(row: PromptSet, runs: int = 0) -> PromptSetRecord:
    return PromptSetRecord(row.id, row.name, row.format, row.prompt_count, row.reference_count,
                           as_utc(row.created_at), runs)


class PromptSetStore:
    def __init__(self, database: Database) -> None:
        self._sessions = database.sessions

    async def create(self, *, name: str, format: str,
                     prompts: Sequence[PromptLike]) -> PromptSetRecord:
        row = PromptSet(id=new_id(), name=name[:200], format=format,
                        prompt_count=len(prompts),
                        reference_count=sum(1 for p in prompts if p.reference))
        async with self._sessions.begin() as session:
            session.add(row)
            await session.flush()
            session.add_all(SetPrompt(set_id=row.id, position=i, prompt=p.prompt,
                                      system=p.system, reference=p.reference)
                            for i, p in enumerate(prompts))
        return _set(row)

    async def get(self, *, set_id: str) -> PromptSetRecord:
        async with self._sessions() as session:
            row = await session.get(PromptSet, set_id)
            if row is None:
                raise UnknownPromptSet(f"unknown prompt set {set_id!r}")
            runs = await session.scalar(select(func.count()).select_from(SetRun)
                                        .where(SetRun.set_id == set_id))
            return _set(row, runs or 0)

    async def every(self) -> list[PromptSetRecord]:
        async with self._sessions() as session:
            counts = dict((await session.execute(
                select(SetRun.set_id, func.count()).group_by(SetRun.set_id))).all())
            rows = await session.scalars(select(PromptSet)
                                         .order_by(PromptSet.created_at.desc(), PromptSet.id))
            return [_set(row, counts.get(row.id, 0)) for row in rows.all()]

    async def prompts(self, *, set_id: str) -> list[SetPromptRecord]:
        await self.get(set_id=set_id)
        async with self._sessions() as session:
            rows = await session.scalars(select(SetPrompt).where(SetPrompt.set_id == set_id)
                                         .order_by(SetPrompt.position))
            return [SetPromptRecord(r.position, r.prompt, r.system, r.reference)
                    for r in rows.all()]

    async def delete(self, *, set_id: str) -> None:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(PromptSet).where(PromptSet.id == set_id))
            if not result.rowcount:
                raise UnknownPromptSet(f"unknown prompt set {set_id!r}")
