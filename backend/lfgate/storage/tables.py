"""The schema. Messages form a tree (parent_id): editing or regenerating adds a sibling,
nothing is overwritten. Provenance says which model, adapter and settings wrote a reply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # An API reply: a digest of the conversation up to it, so the client's next request
    # (which sends it all again) continues this chat.
    thread_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
