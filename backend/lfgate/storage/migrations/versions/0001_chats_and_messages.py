"""Chats and their message trees.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("model", sa.String(200), nullable=False, server_default="default"),
        sa.Column("system", sa.Text, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("active_leaf_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_chats_updated_at", "chats", ["updated_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("chat_id", sa.String(32), sa.ForeignKey("chats.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("parent_id", sa.String(32), sa.ForeignKey("messages.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provenance", sa.JSON, nullable=True),
    )
    op.create_index("ix_messages_chat_created", "messages", ["chat_id", "created_at"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("chats")
