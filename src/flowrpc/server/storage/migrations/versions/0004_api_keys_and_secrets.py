"""API keys with roles (hashed) and secrets shared by every replica

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("key_hash", sa.String(), nullable=False, unique=True),
        sa.Column("role", sa.String(), nullable=False),
    )
    op.create_table(
        "server_secret",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_secret")
    op.drop_table("api_key")
