"""Log records of runs; assets, their dependencies and materializations

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column(
            "flow_run_id",
            sa.String(length=36),
            sa.ForeignKey("flow_run.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "task_run_id",
            sa.String(length=36),
            sa.ForeignKey("task_run.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_log_flow_run_timestamp", "log", ["flow_run_id", "timestamp", "id"])
    op.create_index("ix_log_timestamp", "log", ["timestamp", "id"])
    op.create_index("ix_log_task_run_id", "log", ["task_run_id"])
    op.create_table(
        "asset",
        sa.Column("key", sa.String(length=512), primary_key=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "asset_dependency",
        sa.Column(
            "asset_key",
            sa.String(length=512),
            sa.ForeignKey("asset.key", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "upstream_key",
            sa.String(length=512),
            sa.ForeignKey("asset.key", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("created", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_asset_dependency_upstream_key", "asset_dependency", ["upstream_key"])
    op.create_table(
        "asset_materialization",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column(
            "asset_key",
            sa.String(length=512),
            sa.ForeignKey("asset.key", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("task_run_id", sa.String(length=36), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_asset_materialization_asset_time",
        "asset_materialization",
        ["asset_key", "timestamp", "id"],
    )
    op.create_index(
        "ix_asset_materialization_task_run_id", "asset_materialization", ["task_run_id"]
    )


def downgrade() -> None:
    op.drop_table("asset_materialization")
    op.drop_table("asset_dependency")
    op.drop_table("asset")
    op.drop_table("log")
