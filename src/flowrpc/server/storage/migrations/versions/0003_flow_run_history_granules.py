"""History sums per granule of expected start time, kept by triggers (SQLite)

A history over a million runs summed every run of its window (20-35 ms for a day of 33,000 runs);
from granules it reads 288 granules a day (a row per state in each) plus the runs of the granules
that an interval edge cuts or that hold now. SQLite only: on PostgreSQL every create and
transition of every replica would update the same few hot rows; there history keeps summing runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Five minutes in microseconds, as tables.HISTORY_GRANULE (the history tests compare both paths).
HISTORY_GRANULE = 300_000_000
TABLE = "flow_run_history_granule"
KEY = ("granule", "state_type", "state_name")
SUMS = (
    "count_runs",
    "total_run_time",
    "running",
    "running_since",
    "late_started",
    "unstarted",
    "unstarted_offset",
)
# The columns whose change moves a run's contribution (the update trigger fires on these only).
WATCHED = "expected_start_time, state_type, state_name, total_run_time, state_timestamp, start_time"


def contribution(run: str, sign: str = "") -> list[str]:
    """A run's row of the granule table (`run` is OLD, NEW or flow_run), its sums signed to add
    or to take away; see tables.FlowRunHistoryGranule."""
    granule_start = f"{run}.expected_start_time / {HISTORY_GRANULE} * {HISTORY_GRANULE}"
    # A RUNNING run without a state timestamp runs for no time yet (as convert._estimates says).
    running = f"{run}.state_type = 'RUNNING' AND {run}.state_timestamp IS NOT NULL"
    return [
        f"{run}.expected_start_time / {HISTORY_GRANULE}",
        f"coalesce({run}.state_type, '')",
        f"coalesce({run}.state_name, '')",
        f"{sign}1",
        f"{sign}{run}.total_run_time",
        f"CASE WHEN {running} THEN {sign}1 ELSE 0 END",
        f"CASE WHEN {running} THEN {sign}({run}.state_timestamp - {granule_start}) ELSE 0 END",
        f"CASE WHEN {run}.start_time > {run}.expected_start_time"
        f" THEN {sign}({run}.start_time - {run}.expected_start_time) ELSE 0 END",
        f"CASE WHEN {run}.start_time IS NULL THEN {sign}1 ELSE 0 END",
        f"CASE WHEN {run}.start_time IS NULL"
        f" THEN {sign}({run}.expected_start_time - {granule_start}) ELSE 0 END",
    ]


def add(run: str, sign: str = "") -> str:
    # An upsert's INSERT ... SELECT needs a WHERE before ON CONFLICT (SQLite's parsing rule).
    updates = ", ".join(f"{name} = {name} + excluded.{name}" for name in SUMS)
    return (
        f"INSERT INTO {TABLE} ({', '.join(KEY + SUMS)})"
        f" SELECT {', '.join(contribution(run, sign))}"
        f" WHERE {run}.expected_start_time IS NOT NULL"
        f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates};"
    )


TRIGGERS = {
    "flow_run_history_insert": f"AFTER INSERT ON flow_run BEGIN {add('NEW')} END",
    "flow_run_history_delete": f"AFTER DELETE ON flow_run BEGIN {add('OLD', '-')} END",
    "flow_run_history_update": (
        f"AFTER UPDATE OF {WATCHED} ON flow_run BEGIN {add('OLD', '-')} {add('NEW')} END"
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        TABLE,
        sa.Column("granule", sa.BigInteger(), nullable=False),
        sa.Column("state_type", sa.String(), nullable=False),
        sa.Column("state_name", sa.String(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS),
        sa.PrimaryKeyConstraint(*KEY),
        sqlite_with_rowid=False,
    )
    # The runs already stored add their contributions, as the insert trigger will for new ones.
    values = zip(contribution("flow_run"), KEY + SUMS, strict=True)
    named = ", ".join(f"{value} AS {name}" for value, name in values)
    op.execute(
        f"INSERT INTO {TABLE} ({', '.join(KEY + SUMS)})"
        f" SELECT {', '.join(KEY)}, {', '.join(f'sum({name})' for name in SUMS)}"
        f" FROM (SELECT {named} FROM flow_run WHERE expected_start_time IS NOT NULL)"
        f" GROUP BY {', '.join(KEY)}"
    )
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.drop_table(TABLE)
