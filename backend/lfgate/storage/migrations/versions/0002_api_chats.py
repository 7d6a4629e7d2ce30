"""Chats of the OpenAI API: where a chat came from, and a reply's conversation digest.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False,
                                   server_default="page"))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("thread_digest", sa.String(64), nullable=True))
    op.create_index("ix_messages_thread_digest", "messages", ["thread_digest"])


def downgrade() -> None:
    op.drop_index("ix_messages_thread_digest", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("thread_digest")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("source")
