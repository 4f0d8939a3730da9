"""Flow-run filter criteria are built once per filter set and reused."""

from __future__ import annotations

import uuid

import orjson
import sqlalchemy as sa

from flowrpc.server.storage import flow_runs
from flowrpc.server.storage.filters import REMEMBERED_FILTER_BYTES, flow_run_criteria
from flowrpc.server.storage.tables import metadata


def sql(conn, criteria) -> str:
    return str(criteria.compile(conn, compile_kwargs={"literal_binds": True}))


def test_equal_filter_sets_share_criteria_and_large_ones_are_built_each_time():
    with sa.create_engine("sqlite://").connect() as conn:
        late = {"flow_runs": {"state": {"name": {"any_of": ["Late"]}}, "operator": "OR"}}
        same = {"flow_runs": {"operator": "OR", "state": {"name": {"any_of": ["Late"]}}}}
        assert flow_run_criteria(conn, late) is flow_run_criteria(conn, same)
        scheduled = {"flow_runs": {"state": {"name": {"any_of": ["Scheduled"]}}}}
        assert "'Scheduled'" in sql(conn, flow_run_criteria(conn, scheduled))
        assert "'Late'" in sql(conn, flow_run_criteria(conn, late))

        ids = [str(uuid.UUID(int=i)) for i in range(200)]
        many = {"flow_runs": {"id": {"any_of": ids}}}
        assert len(orjson.dumps(many)) > REMEMBERED_FILTER_BYTES
        first, second = flow_run_criteria(conn, many), flow_run_criteria(conn, many)
        assert first is not second
        assert sql(conn, first) == sql(conn, second)
        assert ids[-1] in sql(conn, first)


def test_counts_of_large_filter_sets_keep_nothing():
    """A kept count statement would hold its filter's lists (10,000 ids) until 256 others came."""
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as conn:
        kept = flow_runs._count_of.cache_info().currsize
        for _ in range(3):
            many = {"flow_runs": {"id": {"any_of": [str(uuid.uuid4()) for _ in range(1000)]}}}
            assert flow_runs.count_flow_runs(conn, many) == 0
        assert flow_runs._count_of.cache_info().currsize == kept
        small = {"flow_runs": {"name": {"like": uuid.uuid4().hex}}}  # new to this process
        assert flow_runs.count_flow_runs(conn, small) == 0
        assert flow_runs._count_of.cache_info().currsize == kept + 1
