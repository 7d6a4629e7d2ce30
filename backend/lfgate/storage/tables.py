"""The schema. Messages form a tree (parent_id): editing or regenerating adds a sibling,
nothing is overwritten. Provenance says which model, adapter and settings wrote a reply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC): say so, as PostgreSQL does."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, stored as UTC on every backend. SQLite keeps no offset: an imported
    `12:00+05:00` was stored as `12:00` and read back as 12:00Z (PostgreSQL: 07:00Z). Aware
    moments are converted to UTC before they are stored, naive ones taken as UTC, and what
    comes back is always aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    pass


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow,
                                                 index=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str] = mapped_column(String(200), default="default")
    system: Mapped[str | None] = mapped_column(Text, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active_leaf_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="page")  # "page" or "api"
    # A compare chat: {"slots": [{"model", "leaf_id"}], "blind"}; each slot is a branch of
    # the message tree (its own history), continued by the chat's next message.
    compare: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_chat_created", "chat_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="complete")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # An API reply: a digest of the conversation up to it, so the client's next request
    # (which sends it all again) continues this chat.
    thread_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # The gateway writing a `streaming` reply (a Gateway's id): another gateway on the same
    # database leaves it alone while that one is alive.
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Vote(Base):
    """A judgement of one compare turn: which slot's reply was best (or a tie, or both bad),
    with the models in slot order, so the leaderboard needs no other table."""

    __tablename__ = "votes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    compare_id: Mapped[str] = mapped_column(String(32), unique=True)  # one vote per turn
    models: Mapped[list[str]] = mapped_column(JSON)
    reply_ids: Mapped[list[str]] = mapped_column(JSON)
    winner: Mapped[str] = mapped_column(String(16))  # a slot's index, "tie" or "both_bad"
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PromptSet(Base):
    """A file of evaluation prompts, kept as it was imported (its prompts: SetPrompt)."""

    __tablename__ = "prompt_sets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(8))  # jsonl, json, csv or lines
    prompt_count: Mapped[int] = mapped_column(Integer)
    reference_count: Mapped[int] = mapped_column(Integer)  # prompts carrying a reference
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SetPrompt(Base):
    __tablename__ = "set_prompts"

    set_id: Mapped[str] = mapped_column(ForeignKey("prompt_sets.id", ondelete="CASCADE"),
                                        primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0-based, file order
    prompt: Mapped[str] = mapped_column(Text)
    system: Mapped[str | None] = mapped_column(Text, nullable=True)
    reference: Mapped[str | None] = mapped_column(Text, nullable=True)


class SetRun(Base):
    """A prompt set asked of one to four models with one set of parameters."""

    __tablename__ = "set_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    set_id: Mapped[str] = mapped_column(ForeignKey("prompt_sets.id", ondelete="CASCADE"),
                                        index=True)
    models: Mapped[list[str]] = mapped_column(JSON)  # in column (slot) order
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mode: Mapped[str] = mapped_column(String(16))  # batch, parallel or sequential
    # running, stopped, interrupted (the gateway stopped under it), complete or error
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)  # running time, all sittings
    # The gateway that drives it (claimed atomically: one driver, whichever gateway asks), and
    # a stop asked for on any gateway, which the driver reads.
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunCell(Base):
    """One prompt's reply from one model of a run: pending until asked, then running, then
    complete, error or stopped. `attempts` counts how often it was sent to the box."""

    __tablename__ = "run_cells"

    run_id: Mapped[str] = mapped_column(ForeignKey("set_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    content: Mapped[str] = mapped_column(Text, default="")
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    scores: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunVote(Base):
    """A vote on one prompt of a run, as a compare vote is on one turn (the leaderboard
    counts both)."""

    __tablename__ = "run_votes"

    run_id: Mapped[str] = mapped_column(ForeignKey("set_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    models: Mapped[list[str]] = mapped_column(JSON)
    winner: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Gateway(Base):
    """A gateway serving from this database, as long as it is alive: it says so every
    HEARTBEAT_S (lfgate.storage.presence). What a gateway owns (replies streaming, runs it
    drives) is recovered by another only once this row has gone quiet."""

    __tablename__ = "gateways"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
