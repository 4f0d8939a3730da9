"""baseline schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "work_pool",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column(
            "base_job_template",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("is_paused", sa.Boolean(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("default_queue_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "deployment",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("flow_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.String(), nullable=True),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "job_variables",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("work_queue_name", sa.String(), nullable=True),
        sa.Column("work_queue_id", sa.String(length=36), nullable=True),
        sa.Column("entrypoint", sa.String(), nullable=True),
        sa.Column("path", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["flow_id"], ["flow.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("flow_id", "name"),
    )
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deployment_flow_id"), ["flow_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deployment_name"), ["name"], unique=False)

    op.create_table(
        "flow_run",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("flow_id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=True),
        sa.Column("deployment_version", sa.String(), nullable=True),
        sa.Column("work_queue_name", sa.String(), nullable=True),
        sa.Column("work_queue_id", sa.String(length=36), nullable=True),
        sa.Column("flow_version", sa.String(), nullable=True),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "empirical_policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("parent_task_run_id", sa.String(length=36), nullable=True),
        sa.Column("state_id", sa.String(length=36), nullable=True),
        sa.Column("state_type", sa.String(), nullable=True),
        sa.Column("state_name", sa.String(), nullable=True),
        sa.Column("state_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("expected_start_time", sa.BigInteger(), nullable=True),
        sa.Column("next_scheduled_start_time", sa.BigInteger(), nullable=True),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("total_run_time", sa.BigInteger(), nullable=False),
        sa.Column("auto_scheduled", sa.Boolean(), nullable=False),
        sa.Column("infrastructure_document_id", sa.String(length=36), nullable=True),
        sa.Column("infrastructure_pid", sa.String(), nullable=True),
        sa.Column(
            "created_by",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "job_variables",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(["flow_id"], ["flow.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flow_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flow_run_deployment_id"), ["deployment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_flow_run_flow_id"), ["flow_id"], unique=False)
        batch_op.create_index("ix_flow_run_name_id", ["name", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flow_run_parent_task_run_id"), ["parent_task_run_id"], unique=False
        )
        batch_op.create_index(
            "ix_flow_run_state_name_next_start",
            ["state_name", "next_scheduled_start_time"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_flow_run_state_type"), ["state_type"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flow_run_work_queue_id"), ["work_queue_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flow_run_work_queue_name"), ["work_queue_name"], unique=False
        )
        batch_op.create_index(
            "uq_flow_run_flow_id_idempotency_key", ["flow_id", "idempotency_key"], unique=True
        )

    op.create_table(
        "work_queue",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("is_paused", sa.Boolean(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("work_pool_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["work_pool_id"], ["work_pool.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("work_pool_id", "name"),
    )
    with op.batch_alter_table("work_queue", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_work_queue_work_pool_id"), ["work_pool_id"], unique=False
        )

    op.create_table(
        "flow_run_state",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.String(), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "state_details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(["flow_run_id"], ["flow_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flow_run_state", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_run_state_run_timestamp", ["flow_run_id", "timestamp"], unique=False
        )

    op.create_table(
        "task_run",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("task_key", sa.String(), nullable=False),
        sa.Column("dynamic_key", sa.String(), nullable=False),
        sa.Column("cache_key", sa.String(), nullable=True),
        sa.Column("cache_expiration", sa.BigInteger(), nullable=True),
        sa.Column("task_version", sa.String(), nullable=True),
        sa.Column(
            "empirical_policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "task_inputs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("state_id", sa.String(length=36), nullable=True),
        sa.Column("state_type", sa.String(), nullable=True),
        sa.Column("state_name", sa.String(), nullable=True),
        sa.Column("state_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("flow_run_run_count", sa.Integer(), nullable=False),
        sa.Column("expected_start_time", sa.BigInteger(), nullable=True),
        sa.Column("next_scheduled_start_time", sa.BigInteger(), nullable=True),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("total_run_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["flow_run_id"], ["flow_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_run_state_type"), ["state_type"], unique=False)
        batch_op.create_index(
            "uq_task_run_flow_run_task_key", ["flow_run_id", "task_key", "dynamic_key"], unique=True
        )

    op.create_table(
        "task_run_state",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_run_id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.String(), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "state_details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(["task_run_id"], ["task_run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_run_state", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_run_state_run_timestamp", ["task_run_id", "timestamp"], unique=False
        )

    op.create_table(
        "task_run_state_cache",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("cache_key", sa.String(), nullable=False),
        sa.Column("cache_expiration", sa.BigInteger(), nullable=True),
        sa.Column("task_run_state_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["task_run_state_id"], ["task_run_state.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_run_state_cache", schema=None) as batch_op:
        batch_op.create_index("ix_task_run_state_cache_key", ["cache_key", "created"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_run_state_cache", schema=None) as batch_op:
        batch_op.drop_index("ix_task_run_state_cache_key")

    op.drop_table("task_run_state_cache")
    with op.batch_alter_table("task_run_state", schema=None) as batch_op:
        batch_op.drop_index("ix_task_run_state_run_timestamp")

    op.drop_table("task_run_state")
    with op.batch_alter_table("task_run", schema=None) as batch_op:
        batch_op.drop_index("uq_task_run_flow_run_task_key")
        batch_op.drop_index(batch_op.f("ix_task_run_state_type"))

    op.drop_table("task_run")
    with op.batch_alter_table("flow_run_state", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_run_state_run_timestamp")

    op.drop_table("flow_run_state")
    with op.batch_alter_table("work_queue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_queue_work_pool_id"))

    op.drop_table("work_queue")
    with op.batch_alter_table("flow_run", schema=None) as batch_op:
        batch_op.drop_index("uq_flow_run_flow_id_idempotency_key")
        batch_op.drop_index(batch_op.f("ix_flow_run_work_queue_name"))
        batch_op.drop_index(batch_op.f("ix_flow_run_work_queue_id"))
        batch_op.drop_index(batch_op.f("ix_flow_run_state_type"))
        batch_op.drop_index("ix_flow_run_state_name_next_start")
        batch_op.drop_index(batch_op.f("ix_flow_run_parent_task_run_id"))
        batch_op.drop_index("ix_flow_run_name_id")
        batch_op.drop_index(batch_op.f("ix_flow_run_flow_id"))
        batch_op.drop_index(batch_op.f("ix_flow_run_deployment_id"))

    op.drop_table("flow_run")
    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_name"))
        batch_op.drop_index(batch_op.f("ix_deployment_flow_id"))

    op.drop_table("deployment")
    op.drop_table("work_pool")
    op.drop_table("flow")
