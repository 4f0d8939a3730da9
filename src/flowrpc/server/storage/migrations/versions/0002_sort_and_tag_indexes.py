"""Indexes for the sorts (NULLs as the smallest key) and tag lists, per database

SQLite orders NULLs first ascending by nature; PostgreSQL indexes say NULLS FIRST so that one index
serves both directions. Tag lists get GIN indexes on PostgreSQL (SQLite's json_each needs none).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HISTORY_COLUMNS = ["state_type", "state_name", "start_time", "total_run_time", "state_timestamp"]
SORT_KEYS = {
    "ix_flow_run_expected_start_time_id": "expected_start_time",
    "ix_flow_run_next_scheduled_start_time_id": "next_scheduled_start_time",
    "ix_flow_run_end_time_id": "end_time",
    "ix_flow_run_start_id": "coalesce(start_time, expected_start_time)",
}
GIN = {"ix_flow_run_tags_gin": "flow_run", "ix_deployment_tags_gin": "deployment"}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, key in SORT_KEYS.items():
        # History reads only these columns, by expected start time: cover them.
        covered = HISTORY_COLUMNS if key == "expected_start_time" else []
        if postgres:
            column, name = sa.text(f"{key} NULLS FIRST"), f"{name}_pg"
        else:
            column = key if key.isidentifier() else sa.text(key)
        op.create_index(name, "flow_run", [column, "id", *covered])
    if postgres:
        for name, table in GIN.items():
            op.create_index(name, table, ["tags"], postgresql_using="gin")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in SORT_KEYS:
        op.drop_index(f"{name}_pg" if postgres else name, table_name="flow_run")
    if postgres:
        for name, table in GIN.items():
            op.drop_index(name, table_name=table)
