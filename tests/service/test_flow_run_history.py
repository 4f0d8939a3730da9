"""StreamFlowRunHistory and ReadFlowRunHistory: intervals, bucket placement, the 500 limit, state
summaries, validation. Every history here is asked for both ways and must come back the same."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from harness import running_server
from helpers import (
    RUNNING,
    SCHEDULED,
    T0,
    at,
    field_violations,
    get_run,
    hours,
    make_flow,
    make_run,
    now,
    scheduled,
    service_stubs,
    set_state,
    state,
    strings,
    ts,
)

from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr


def span(delta: timedelta) -> Duration:
    message = Duration()
    message.FromTimedelta(delta)
    return message


async def history(stubs, start, end, interval, **filter_set):
    """The streamed intervals, after checking that the one-response read gives the same (but
    for the sums of run time and lateness, which grow between the two calls)."""
    fields = {
        "history_start": ts(start),
        "history_end": ts(end),
        "history_interval": span(interval),
        "filter": f.FlowRunFilterSet(**filter_set),
    }
    request = fr.StreamFlowRunHistoryRequest(**fields)
    streamed = [message async for message in stubs.flow_runs.StreamFlowRunHistory(request)]
    read = await stubs.flow_runs.ReadFlowRunHistory(fr.ReadFlowRunHistoryRequest(**fields))
    assert [counts(i) for i in read.intervals] == [counts(i) for i in streamed]
    return streamed


async def ask(stubs, rpc, start, end, interval):
    """One history call by the named RPC (interval: a timedelta or a Duration); its intervals."""
    if isinstance(interval, timedelta):
        interval = span(interval)
    fields = {"history_start": ts(start), "history_end": ts(end), "history_interval": interval}
    if rpc == "StreamFlowRunHistory":
        request = fr.StreamFlowRunHistoryRequest(**fields)
        return [message async for message in stubs.flow_runs.StreamFlowRunHistory(request)]
    read = await stubs.flow_runs.ReadFlowRunHistory(fr.ReadFlowRunHistoryRequest(**fields))
    return list(read.intervals)


def counts(interval):
    """An interval's bounds and its (state type, state name, count) entries."""
    states = [(s.state_type, s.state_name, s.count_runs) for s in interval.states]
    return interval.interval_start, interval.interval_end, states


def summary(interval):
    """{(state type, state name): count} of one interval."""
    return {(s.state_type, s.state_name): s.count_runs for s in interval.states}


async def test_one_message_per_interval_including_empty_ones(stubs):
    await make_flow(stubs)
    intervals = await history(stubs, T0, T0 + hours(5), hours(1))
    assert [(at(i, "interval_start"), at(i, "interval_end")) for i in intervals] == [
        (T0 + hours(k), T0 + hours(k + 1)) for k in range(5)
    ]
    assert all(list(i.states) == [] for i in intervals)


async def test_the_last_interval_may_extend_past_the_end(stubs):
    intervals = await history(stubs, T0, T0 + timedelta(days=1), timedelta(minutes=66))
    assert len(intervals) == 22  # Prefect's example: 1 day by 66 minutes
    assert at(intervals[-1], "interval_end") == T0 + timedelta(minutes=66 * 22)
    assert len(await history(stubs, T0, T0 + timedelta(days=10), hours(25))) == 10


async def test_at_most_500_intervals(stubs):
    intervals = await history(stubs, T0, T0 + timedelta(minutes=500), timedelta(minutes=1))
    assert len(intervals) == 500
    assert at(intervals[-1], "interval_start") == T0 + timedelta(minutes=499)


@pytest.mark.parametrize("rpc", ["StreamFlowRunHistory", "ReadFlowRunHistory"])
async def test_more_intervals_than_the_limit_are_refused_not_cut_short(stubs, rpc):
    """Ten years by the second used to answer OK with only the first 500 intervals."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ask(stubs, rpc, T0, T0 + timedelta(days=3650), timedelta(seconds=1))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problem = field_violations(raised.value)["history_interval"]
    assert "315360000 intervals" in problem and "max_history_intervals" in problem
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ask(stubs, rpc, T0, T0 + timedelta(minutes=501), timedelta(minutes=1))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_interval_limit_is_a_setting(database):
    settings = database.model_copy(update={"max_history_intervals": 10})
    with running_server(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = service_stubs(channel)
            assert len(await history(stubs, T0, T0 + hours(10), hours(1))) == 10
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await history(stubs, T0, T0 + hours(11), hours(1))
    assert "more than the 10 allowed" in field_violations(raised.value)["history_interval"]


async def test_runs_are_counted_in_the_interval_of_their_expected_start_time(stubs):
    flow = await make_flow(stubs)
    for when in (
        T0 + timedelta(minutes=30),  # interval 0
        T0 + hours(2),  # interval 2: starts are inclusive
        T0 + hours(3) - timedelta(microseconds=1),  # interval 2: ends are exclusive
        T0 + hours(3),  # outside the history
        T0 - timedelta(seconds=1),  # before it
    ):
        await make_run(stubs, flow.id, state=scheduled(when))
    await make_run(stubs, flow.id, state=scheduled(T0 + hours(2) + timedelta(minutes=5), "Late"))
    running = await make_run(stubs, flow.id, state=scheduled(T0 + hours(1)))
    assert (await set_state(stubs, running.id, state(RUNNING))).state.type == RUNNING

    intervals = await history(stubs, T0, T0 + hours(3), hours(1))
    assert len(intervals) == 3
    assert summary(intervals[0]) == {(SCHEDULED, "Scheduled"): 1}
    assert summary(intervals[1]) == {(RUNNING, "Running"): 1}
    assert summary(intervals[2]) == {(SCHEDULED, "Scheduled"): 2, (SCHEDULED, "Late"): 1}


async def test_summaries_sum_run_time_and_lateness(stubs):
    flow = await make_flow(stubs)
    await make_run(stubs, flow.id, state=scheduled(T0 + timedelta(minutes=10)))
    running = await make_run(stubs, flow.id, state=scheduled(T0 + timedelta(minutes=20)))
    assert (await set_state(stubs, running.id, state(RUNNING))).state.type == RUNNING
    intervals = await history(stubs, T0, T0 + hours(1), hours(1))
    (only,) = intervals
    by_type = {s.state_type: s for s in only.states}
    late_by = now() - (T0 + timedelta(minutes=10))
    # Not started: late by now - expected; no run time.
    assert abs(by_type[SCHEDULED].sum_estimated_lateness.ToTimedelta() - late_by) < hours(0.01)
    assert by_type[SCHEDULED].sum_estimated_run_time.ToTimedelta() == timedelta(0)
    # Started: late by start - expected; run time grows while RUNNING.
    started = at(await get_run(stubs, running.id), "start_time")
    assert by_type[RUNNING].sum_estimated_lateness.ToTimedelta() == started - (
        T0 + timedelta(minutes=20)
    )
    assert timedelta(0) <= by_type[RUNNING].sum_estimated_run_time.ToTimedelta() < hours(0.01)
    assert {s.count_runs for s in only.states} == {1}


async def test_filters_narrow_the_runs(stubs):
    flow = await make_flow(stubs)
    await make_run(stubs, flow.id, state=scheduled(T0), tags=["a"])
    await make_run(stubs, flow.id, state=scheduled(T0), tags=["b"])
    await make_run(stubs, flow.id, state=scheduled(T0), tags=["a"])
    tagged = f.FlowRunFilter(tags=f.FlowRunFilterTags(all_of=strings("a")))
    (only,) = await history(stubs, T0, T0 + hours(1), hours(1), flow_runs=tagged)
    assert summary(only) == {(SCHEDULED, "Scheduled"): 2}
    (none,) = await history(stubs, T0, T0 + hours(1), hours(1), deployments=f.DeploymentFilter())
    assert list(none.states) == []


@pytest.mark.parametrize(
    "interval", [timedelta(0), timedelta(milliseconds=999), timedelta(seconds=-5)]
)
async def test_an_interval_under_one_second_is_invalid(stubs, interval):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await history(stubs, T0, T0 + hours(1), interval)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(raised.value)
    assert violations["history_interval"] == "History interval must not be less than 1 second."
    # Exactly one second is allowed.
    assert len(await history(stubs, T0, T0 + timedelta(seconds=3), timedelta(seconds=1))) == 3


async def test_missing_bounds_are_invalid(stubs):
    request = fr.StreamFlowRunHistoryRequest(history_interval=span(hours(1)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        _ = [m async for m in stubs.flow_runs.StreamFlowRunHistory(request)]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"history_start", "history_end"} <= set(field_violations(raised.value))


async def test_the_one_response_read_is_validated_alike(stubs):
    request = fr.ReadFlowRunHistoryRequest(
        history_start=ts(T0), history_end=ts(T0 + hours(1)), history_interval=span(timedelta(0))
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flow_runs.ReadFlowRunHistory(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(raised.value)) == {"history_interval"}


async def test_an_end_not_after_the_start_has_no_intervals(stubs):
    flow = await make_flow(stubs)
    await make_run(stubs, flow.id, state=scheduled(T0))
    assert await history(stubs, T0 + hours(1), T0, hours(1)) == []
    assert await history(stubs, T0, T0, hours(1)) == []


@pytest.mark.parametrize("rpc", ["StreamFlowRunHistory", "ReadFlowRunHistory"])
async def test_an_absurdly_long_interval_is_invalid(stubs, rpc):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ask(stubs, rpc, T0, T0 + hours(1), Duration(seconds=2**63 - 1))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value)["history_interval"].startswith(
        "must be a duration of at most 315576000000 s (10,000 years)"
    )
