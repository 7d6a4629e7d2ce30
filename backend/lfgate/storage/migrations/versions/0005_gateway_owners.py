"""Which gateway owns what is in flight: gateways sharing one database (PostgreSQL) each
recover only what no live gateway owns, and a run is driven by one gateway at a time.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
    with op.batch_alter_table("set_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
        batch.add_column(sa.Column("stop_requested", sa.Boolean, nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("set_runs") as batch:
        batch.drop_column("stop_requested")
        batch.drop_column("owner")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("owner")
    op.drop_table("gateways")
