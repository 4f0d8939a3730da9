"""The flow-run change log that WatchFlowRuns reads

One row per flow-run state written; `position` numbers the rows in commit order
(storage/changes.py). Pruned by the leader after FLOWRPC_WATCH_RETENTION_SECONDS.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_run_change",
        # INTEGER PRIMARY KEY AUTOINCREMENT on SQLite (never reused); BIGSERIAL on PostgreSQL.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("state_id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_flow_run_change_position", "flow_run_change", ["position"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_flow_run_change_position", table_name="flow_run_change")
    op.drop_table("flow_run_change")
