"""Compare chats (a chat's slots) and votes on their turns.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.add_column(sa.Column("compare", sa.JSON, nullable=True))
    op.create_table(
        "votes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("chat_id", sa.String(32), sa.ForeignKey("chats.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("compare_id", sa.String(32), nullable=False, unique=True),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("reply_ids", sa.JSON, nullable=False),
        sa.Column("winner", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("blind", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_votes_chat_id", "votes", ["chat_id"])


def downgrade() -> None:
    op.drop_table("votes")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("compare")
