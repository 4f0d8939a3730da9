"""The statement time budget (statement_timeout_seconds) and interrupted reads, through a real
server: a slow filter answers RESOURCE_EXHAUSTED within the budget while other reads go on, and a
call whose deadline passed, or that its client cancelled, gives its reader thread back at once."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest
import sqlalchemy as sa
from harness import running_server
from helpers import error_info, make_flow, make_run, service_stubs

from flowrpc.server.storage import tables as t
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr

# Each run's name against this pattern costs tens of milliseconds on either database (the match
# is tried at every position of the name), so 60 runs take seconds: a slow filter that a short
# pattern and a few rows make, within any request limit.
RUNS, NAME_LENGTH = 60, 20_000
PATTERN = "a_" * 499 + "b"  # 999 characters
SLOW = f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(name=f.FlowRunFilterName(like=PATTERN)))
QUICK = 1.0  # seconds: well under the slow query's time, well over a read's


async def served(database, budget: float):
    settings = database.model_copy(update={"statement_timeout_seconds": budget})
    with running_server(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = service_stubs(channel)
            flow = await make_flow(stubs)
            runs = await asyncio.gather(*(make_run(stubs, flow.id) for _ in range(RUNS)))
            # Long names written straight to the table: no request limit on names is in the way.
            await server.db.write(
                lambda conn: conn.execute(sa.update(t.flow_run).values(name="a" * NAME_LENGTH))
            )
            yield SimpleNamespace(stubs=stubs, run_id=runs[0].id)


@pytest.fixture
async def short_budget(database):
    async for served_ in served(database, budget=0.3):
        yield served_


@pytest.fixture
async def long_budget(database):
    async for served_ in served(database, budget=30.0):
        yield served_


def slow_count(stubs, **options):
    return stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest(filter=SLOW), **options)


async def quick_read(stubs, run_id: str) -> float:
    """Seconds a GetFlowRun takes."""
    started = time.monotonic()
    await stubs.flow_runs.GetFlowRun(fr.GetFlowRunRequest(id=run_id), timeout=10)
    return time.monotonic() - started


async def test_a_query_past_the_budget_answers_resource_exhausted_naming_the_setting(short_budget):
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await slow_count(short_budget.stubs)
    assert time.monotonic() - started < QUICK
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "statement_timeout_seconds" in raised.value.details()
    assert error_info(raised.value).reason == "STATEMENT_TIMEOUT"


async def test_other_reads_are_served_while_a_slow_query_runs(short_budget):
    stubs = short_budget.stubs
    slow = asyncio.ensure_future(slow_count(stubs))
    reads = [await quick_read(stubs, short_budget.run_id) for _ in range(10)]
    assert max(reads) < QUICK
    with pytest.raises(grpc.aio.AioRpcError):
        await slow


@pytest.mark.parametrize("stop", ["deadline", "cancel"])
async def test_a_call_whose_client_is_gone_frees_its_reader(long_budget, stop):
    """Two slow calls take both reader threads; once their deadline passes (or their client
    cancels them), the next read is served at once, not when the queries would have ended."""
    stubs = long_budget.stubs
    if stop == "deadline":
        calls = [slow_count(stubs, timeout=0.3) for _ in range(2)]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        calls = [slow_count(stubs) for _ in range(2)]
        await asyncio.sleep(0.3)
        for call in calls:
            call.cancel()
    assert await quick_read(stubs, long_budget.run_id) < QUICK


async def test_a_bulk_call_selecting_by_a_slow_filter_stops_and_writes_go_on(short_budget):
    """Bulk calls select their runs with budgeted reads: the slow filter stops the stream before
    any chunk is written, and the single writer keeps taking other writes meanwhile."""
    stubs = short_budget.stubs
    bulk = stubs.flow_runs.BulkDeleteFlowRuns(fr.BulkDeleteFlowRunsRequest(filter=SLOW))
    flow = await make_flow(stubs, name="other")
    started = time.monotonic()
    await make_run(stubs, flow.id)
    assert time.monotonic() - started < QUICK
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in bulk:
            pass
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    total = await stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert total.count == RUNS + 1
