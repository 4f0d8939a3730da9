"""GIN indexes on tag lists (PostgreSQL only; SQLite's json_each filters need none)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {"ix_flow_run_tags_gin": "flow_run", "ix_deployment_tags_gin": "deployment"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in INDEXES.items():
        op.create_index(name, table, ["tags"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in INDEXES.items():
        op.drop_index(name, table_name=table)
