"""Hostile values answer INVALID_ARGUMENT and do no lasting harm (issue 14, defects 4-6):
work-queue priorities at the int32 top, NaN/Infinity in Structs and Values, times outside what
the server stores, forged or mangled page tokens, huge retry policies, undecodable bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from contextlib import ExitStack
from datetime import UTC, datetime
from types import SimpleNamespace

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from harness import running_server
from helpers import (
    FAILED,
    PENDING,
    RUNNING,
    SCHEDULED,
    T0,
    at,
    field_violations,
    get_run,
    hours,
    make_flow,
    make_run,
    scheduled,
    set_state,
    state,
    ts,
)

from flowrpc.server.services.pages import PageTokens
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.shared_secrets import server_secret
from flowrpc.v1 import (
    deployment_pb2,
    flow_run_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    state_pb2,
    task_run_pb2,
)
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_pb2 as frp
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

MAX_INT32 = 2**31 - 1


async def invalid(call, request) -> dict[str, str]:
    """The field violations of a call that must answer INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        result = call(request)
        if hasattr(result, "__aiter__"):
            [_ async for _ in result]
        else:
            await result
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    return field_violations(raised.value)


def execute(settings, statement) -> None:
    """Changes the server's database behind its back (rows an older server could have left)."""
    engine = sa.create_engine(settings.resolved_database_url(), poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    finally:
        engine.dispose()


def on_postgres(settings) -> bool:
    return settings.resolved_database_url().startswith("postgresql")


# ---- defect 4: work-queue priority at the int32 top ----


async def queues(stubs, pool):
    request = wp.ListWorkQueuesRequest(work_pool_name=pool)
    return list((await stubs.work_pools.ListWorkQueues(request)).work_queues)


async def test_a_queue_after_one_with_the_highest_priority(stubs):
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    create = stubs.work_pools.CreateWorkQueue
    top = await create(
        wp.CreateWorkQueueRequest(work_pool_name="pool", name="top", priority=MAX_INT32)
    )
    assert top.work_queue.priority == MAX_INT32
    after = await create(wp.CreateWorkQueueRequest(work_pool_name="pool", name="after"))
    assert after.work_queue.priority == MAX_INT32  # the next priority, as far as it goes
    listed = await queues(stubs, "pool")
    assert [(q.name, q.priority) for q in listed] == [
        ("default", 1),
        ("after", MAX_INT32),
        ("top", MAX_INT32),
    ]
    # A queue created on the fly for a deployment (resolve_work_queue) goes the same way.
    flow = await make_flow(stubs)
    deployment = deployment_pb2.Deployment(
        name="d", flow_id=flow.id, work_pool_name="pool", work_queue_name="onthefly"
    )
    await stubs.deployments.CreateDeployment(dp.CreateDeploymentRequest(deployment=deployment))
    assert {q.name: q.priority for q in await queues(stubs, "pool")}["onthefly"] == MAX_INT32


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (wp.CreateWorkQueueRequest(work_pool_name="pool", name="q", priority=-1), "priority"),
        (
            wp.CreateWorkQueueRequest(work_pool_name="pool", name="q", concurrency_limit=-1),
            "concurrency_limit",
        ),
    ],
    ids=["priority", "concurrency_limit"],
)
async def test_negative_queue_numbers_are_invalid(stubs, request_, field):
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    assert field in await invalid(stubs.work_pools.CreateWorkQueue, request_)
    assert [q.name for q in await queues(stubs, "pool")] == ["default"]


async def test_a_negative_pool_concurrency_limit_is_invalid(stubs):
    request = wp.CreateWorkPoolRequest(name="pool", concurrency_limit=-1)
    assert "concurrency_limit" in await invalid(stubs.work_pools.CreateWorkPool, request)


async def test_stored_priorities_beyond_int32_still_list(stubs, database):
    if on_postgres(database):
        pytest.skip("PostgreSQL's INTEGER column cannot hold such a priority")
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    create = stubs.work_pools.CreateWorkQueue
    await create(wp.CreateWorkQueueRequest(work_pool_name="pool", name="huge"))
    execute(
        database,
        sa.update(t.work_queue).where(t.work_queue.c.name == "huge").values(priority=2**40),
    )
    listed = await queues(stubs, "pool")
    assert [(q.name, q.priority) for q in listed] == [("default", 1), ("huge", MAX_INT32)]
    after = await create(wp.CreateWorkQueueRequest(work_pool_name="pool", name="after"))
    assert after.work_queue.priority == MAX_INT32


# ---- defect 5: NaN and Infinity in Structs and Values ----


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


NAN, INF = float("nan"), float("inf")
NOT_FINITE = [
    (
        "flow-labels",
        "flows",
        "CreateFlow",
        lambda ids: fl.CreateFlowRequest(name="x", labels=struct({"x": NAN})),
        "labels.x",
    ),
    (
        "run-parameters-nested",
        "flow_runs",
        "CreateFlowRun",
        lambda ids: fr.CreateFlowRunRequest(
            flow_id=ids.flow, parameters=struct({"a": {"b": [1, INF]}})
        ),
        "parameters.a.b[1]",
    ),
    (
        "run-context",
        "flow_runs",
        "CreateFlowRun",
        lambda ids: fr.CreateFlowRunRequest(flow_id=ids.flow, context=struct({"c": -INF})),
        "context.c",
    ),
    (
        "run-state-data",
        "flow_runs",
        "CreateFlowRun",
        lambda ids: fr.CreateFlowRunRequest(
            flow_id=ids.flow,
            state=state_pb2.State(type=PENDING, data=struct_pb2.Value(number_value=NAN)),
        ),
        "state.data",
    ),
    (
        "set-state-data-in-a-list",
        "flow_runs",
        "SetFlowRunState",
        lambda ids: fr.SetFlowRunStateRequest(
            flow_run_id=ids.run,
            state=state_pb2.State(
                type=RUNNING,
                data=struct_pb2.Value(
                    list_value=struct_pb2.ListValue(values=[struct_pb2.Value(number_value=INF)])
                ),
            ),
        ),
        "state.data[0]",
    ),
    (
        "bulk-state-data",
        "flow_runs",
        "BulkSetFlowRunState",
        lambda ids: fr.BulkSetFlowRunStateRequest(
            state=state_pb2.State(type=RUNNING, data=struct_pb2.Value(number_value=NAN))
        ),
        "state.data",
    ),
    (
        "update-parameters",
        "flow_runs",
        "UpdateFlowRun",
        lambda ids: fr.UpdateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(id=ids.run, parameters=struct({"p": NAN})),
            update_mask=field_mask_pb2.FieldMask(paths=["parameters"]),
        ),
        "flow_run.parameters.p",
    ),
    (
        "deployment-job-variables",
        "deployments",
        "CreateDeployment",
        lambda ids: dp.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                name="d", flow_id=ids.flow, job_variables=struct({"j": INF})
            )
        ),
        "deployment.job_variables.j",
    ),
    (
        "pool-template",
        "work_pools",
        "CreateWorkPool",
        lambda ids: wp.CreateWorkPoolRequest(name="p", base_job_template=struct({"t": NAN})),
        "base_job_template.t",
    ),
    (
        "task-labels",
        "task_runs",
        "CreateTaskRun",
        lambda ids: tr.CreateTaskRunRequest(task_key="k", labels=struct({"l": INF})),
        "labels.l",
    ),
    (
        "task-state-data",
        "task_runs",
        "SetTaskRunState",
        lambda ids: tr.SetTaskRunStateRequest(
            task_run_id=ids.task,
            state=state_pb2.State(type=RUNNING, data=struct_pb2.Value(number_value=NAN)),
        ),
        "state.data",
    ),
]


class Ids:
    """A flow, a run and a task run for requests to point at."""

    flow: str
    run: str
    task: str


async def some_objects(stubs) -> Ids:
    ids = Ids()
    ids.flow = (await make_flow(stubs)).id
    run = await make_run(stubs, ids.flow, state=state(PENDING))
    ids.run = run.id
    request = tr.CreateTaskRunRequest(task_key="t", state=state(PENDING))
    ids.task = (await stubs.task_runs.CreateTaskRun(request)).task_run.id
    return ids


async def refused_and_unchanged(stubs, service, method, make_request) -> dict[str, str]:
    """The field violations of a call made on fresh objects, which it must leave as they were."""
    ids = await some_objects(stubs)
    before = await get_run(stubs, ids.run)
    violations = await invalid(getattr(getattr(stubs, service), method), make_request(ids))
    after = await get_run(stubs, ids.run)
    assert after.state.id == before.state.id and after.parameters == before.parameters
    return violations


@pytest.mark.parametrize(
    ("service", "method", "make_request", "field"),
    [case[1:] for case in NOT_FINITE],
    ids=[case[0] for case in NOT_FINITE],
)
async def test_nan_and_infinity_are_invalid_where_they_are(
    stubs, service, method, make_request, field
):
    violations = await refused_and_unchanged(stubs, service, method, make_request)
    assert field in violations, violations
    assert "finite" in violations[field]


# ---- defect 5: times outside what the server stores ----


def timestamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def window(interval: Duration) -> dict:
    return {"history_start": ts(T0), "history_end": ts(T0 + hours(1)), "history_interval": interval}


def expected_before(stamp: Timestamp) -> f.FlowRunFilterSet:
    return f.FlowRunFilterSet(
        flow_runs=f.FlowRunFilter(
            expected_start_time=f.FlowRunFilterExpectedStartTime(before=stamp)
        )
    )


YEAR_10000 = 253_402_300_800  # 10000-01-01T00:00:00Z in seconds
OUT_OF_RANGE = [
    (
        "filter-before-10^13-s",
        "flow_runs",
        "CountFlowRuns",
        lambda ids: fr.CountFlowRunsRequest(filter=expected_before(timestamp(10**13))),
        "filter.flow_runs.expected_start_time.before",
    ),
    (
        "filter-year-0",
        "flow_runs",
        "ListFlowRuns",
        lambda ids: fr.ListFlowRunsRequest(filter=expected_before(timestamp(-62_135_596_801))),
        "filter.flow_runs.expected_start_time.before",
    ),
    (
        "filter-negative-nanos",
        "flow_runs",
        "ListFlowRuns",
        lambda ids: fr.ListFlowRunsRequest(filter=expected_before(timestamp(0, -1))),
        "filter.flow_runs.expected_start_time.before",
    ),
    (
        "history-interval-2^63-1-s",
        "flow_runs",
        "ReadFlowRunHistory",
        lambda ids: fr.ReadFlowRunHistoryRequest(**window(Duration(seconds=2**63 - 1))),
        "history_interval",
    ),
    (
        "history-interval-mixed-signs",
        "flow_runs",
        "StreamFlowRunHistory",
        lambda ids: fr.StreamFlowRunHistoryRequest(**window(Duration(seconds=3600, nanos=-1))),
        "history_interval",
    ),
    (
        "history-end-year-10000",
        "flow_runs",
        "ReadFlowRunHistory",
        lambda ids: fr.ReadFlowRunHistoryRequest(
            history_start=ts(T0),
            history_end=timestamp(YEAR_10000),
            history_interval=Duration(seconds=3600),
        ),
        "history_end",
    ),
    (
        "scheduled-time-in-create",
        "flow_runs",
        "CreateFlowRun",
        lambda ids: fr.CreateFlowRunRequest(
            flow_id=ids.flow,
            state=state_pb2.State(
                type=SCHEDULED,
                state_details=state_pb2.StateDetails(scheduled_time=timestamp(10**13)),
            ),
        ),
        "state.state_details.scheduled_time",
    ),
    (
        "pause-timeout-in-set-state",
        "flow_runs",
        "SetFlowRunState",
        lambda ids: fr.SetFlowRunStateRequest(
            flow_run_id=ids.run,
            state=state_pb2.State(
                type=RUNNING,
                state_details=state_pb2.StateDetails(pause_timeout=timestamp(-(10**13))),
            ),
        ),
        "state.state_details.pause_timeout",
    ),
    (
        "cache-expiration-in-create",
        "task_runs",
        "CreateTaskRun",
        lambda ids: tr.CreateTaskRunRequest(task_key="k", cache_expiration=timestamp(10**15)),
        "cache_expiration",
    ),
    (
        "cache-expiration-in-state",
        "task_runs",
        "SetTaskRunState",
        lambda ids: tr.SetTaskRunStateRequest(
            task_run_id=ids.task,
            state=state_pb2.State(
                type=RUNNING,
                state_details=state_pb2.StateDetails(cache_expiration=timestamp(YEAR_10000)),
            ),
        ),
        "state.state_details.cache_expiration",
    ),
]


@pytest.mark.parametrize(
    ("service", "method", "make_request", "field"),
    [case[1:] for case in OUT_OF_RANGE],
    ids=[case[0] for case in OUT_OF_RANGE],
)
async def test_times_the_server_cannot_store_are_invalid(
    stubs, service, method, make_request, field
):
    violations = await refused_and_unchanged(stubs, service, method, make_request)
    assert field in violations, violations


async def test_the_first_and_last_instants_of_the_range_round_trip(stubs):
    flow = await make_flow(stubs)
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    first = datetime(1, 1, 1, tzinfo=UTC)
    for moment in (first, last):
        run = await make_run(stubs, flow.id, state=scheduled(moment))
        assert at(run.state.state_details, "scheduled_time") == moment
        assert at(await get_run(stubs, run.id), "expected_start_time") == moment
    for bound, runs in ((first, 1), (last, 2)):  # `before` includes its bound
        request = fr.CountFlowRunsRequest(filter=expected_before(ts(bound)))
        assert (await stubs.flow_runs.CountFlowRuns(request)).count == runs


# ---- defect 5: forged and mangled page tokens ----


def unkeyed_token(filter_: f.FlowRunFilterSet, sort: str, key, run_id) -> str:
    """A token as anyone could compute it when tokens carried an unkeyed digest."""
    data = filter_.SerializeToString(deterministic=True) + sort.encode()
    digest = hashlib.blake2b(data, digest_size=8).hexdigest()
    payload = json.dumps([digest, key, run_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


async def three_runs(stubs) -> list[str]:
    flow = await make_flow(stubs)
    return [
        (await make_run(stubs, flow.id, name=name, state=scheduled(T0 + hours(i)))).id
        for i, name in enumerate("abc")
    ]


FORGED = [
    ("ID_DESC", [1, 2]),
    ("ID_DESC", 10**30),
    ("EXPECTED_START_TIME_ASC", "text"),
    ("EXPECTED_START_TIME_ASC", 2**70),
    ("EXPECTED_START_TIME_ASC", 1.5),
    ("EXPECTED_START_TIME_ASC", True),
    ("NAME_ASC", 7),
    ("NAME_ASC", {"a": 1}),
    ("START_TIME_DESC", "a"),
]


@pytest.mark.parametrize(("sort", "key"), FORGED, ids=[f"{s}-{k!r}" for s, k in FORGED])
async def test_forged_page_tokens_are_invalid(stubs, sort, key):
    runs = await three_runs(stubs)
    number = getattr(frp, f"FLOW_RUN_SORT_{sort}")
    for run_id in (runs[0], 12, None, "not-an-id"):
        token = unkeyed_token(f.FlowRunFilterSet(), sort, key, run_id)
        request = fr.ListFlowRunsRequest(sort=number, limit=1, page_token=token)
        assert "page_token" in await invalid(stubs.flow_runs.ListFlowRuns, request)


def stored_secret(settings) -> bytes:
    engine = sa.create_engine(settings.resolved_database_url(), poolclass=sa.NullPool)
    with engine.connect() as conn:
        value = conn.execute(sa.select(t.server_secret.c.value)).scalar_one()
    engine.dispose()
    return bytes.fromhex(value)


@pytest.mark.parametrize(("sort", "key"), FORGED, ids=[f"{s}-{k!r}" for s, k in FORGED])
async def test_signed_tokens_holding_no_position_of_the_sort_are_invalid(
    stubs, database, sort, key
):
    """Were the secret to leak (or a token come from another server version), what a token
    holds is still checked before it reaches a query."""
    runs = await three_runs(stubs)
    tokens = PageTokens(stored_secret(database))
    number = getattr(frp, f"FLOW_RUN_SORT_{sort}")
    for run_id in (runs[0], 12, None, "not-an-id"):
        token = tokens.encode(f.FlowRunFilterSet(), sort, key, run_id)
        request = fr.ListFlowRunsRequest(sort=number, limit=1, page_token=token)
        violations = await invalid(stubs.flow_runs.ListFlowRuns, request)
        assert "page_token" in violations
    token = tokens.encode(f.FlowRunFilterSet(), "NAME_ASC", "a", runs[0])  # a genuine position
    request = fr.ListFlowRunsRequest(sort=frp.FLOW_RUN_SORT_NAME_ASC, limit=1, page_token=token)
    assert [r.name for r in (await stubs.flow_runs.ListFlowRuns(request)).flow_runs] == ["b"]


MANGLED = [
    lambda token: token[:-3],
    lambda token: token[:10],
    lambda token: token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1],
    lambda token: "X" + token,
    lambda token: token + "=",
    lambda token: "!!!",
    lambda token: base64.urlsafe_b64encode(b"\xff" * 40).decode(),
    lambda token: base64.urlsafe_b64encode(b"[]").decode(),
    lambda token: base64.urlsafe_b64encode(json.dumps(["x", 1, 2, 3]).encode()).decode(),
]


MANGLED_IDS = [
    "truncated",
    "prefix",
    "one-character-changed",
    "character-prepended",
    "padding-appended",
    "not-base64",
    "not-json",
    "empty-list",
    "four-items",
]


@pytest.mark.parametrize("mangle", MANGLED, ids=MANGLED_IDS)
async def test_mangled_page_tokens_are_invalid(stubs, mangle):
    await three_runs(stubs)
    request = fr.ListFlowRunsRequest(sort=frp.FLOW_RUN_SORT_NAME_ASC, limit=1)
    token = (await stubs.flow_runs.ListFlowRuns(request)).next_page_token
    assert token
    request.page_token = mangle(token)
    assert "page_token" in await invalid(stubs.flow_runs.ListFlowRuns, request)
    request.page_token = token  # the genuine token still continues
    assert [r.name for r in (await stubs.flow_runs.ListFlowRuns(request)).flow_runs] == ["b"]


def start_together(settings, count: int) -> tuple[ExitStack, list]:
    """`count` servers on one database, started at the same moment (replicas racing to mint
    the page-token secret)."""
    stack = ExitStack()
    servers: list = [None] * count
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def start(index: int) -> None:
        barrier.wait()
        try:
            servers[index] = stack.enter_context(running_server(settings))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        stack.close()
        raise errors[0]
    return stack, servers


async def test_replicas_that_start_together_accept_each_others_tokens(database):
    stack, servers = start_together(database, 2)
    with stack:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{s.port}") for s in servers]
        try:
            first = SimpleNamespace(
                flows=flow_service_pb2_grpc.FlowServiceStub(channels[0]),
                flow_runs=flow_run_service_pb2_grpc.FlowRunServiceStub(channels[0]),
            )
            await three_runs(first)
            lists = [flow_run_service_pb2_grpc.FlowRunServiceStub(c).ListFlowRuns for c in channels]
            for issuer, other in ((0, 1), (1, 0)):
                request = fr.ListFlowRunsRequest(sort=frp.FLOW_RUN_SORT_NAME_ASC, limit=1)
                request.page_token = (await lists[issuer](request)).next_page_token
                rest = await lists[other](request)
                assert [r.name for r in rest.flow_runs] == ["b"]
        finally:
            for channel in channels:
                await channel.close()
    engine = sa.create_engine(database.resolved_database_url(), poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(t.server_secret)))
    engine.dispose()
    assert len(rows) == 1 and rows[0].value


def test_replicas_minting_at_once_agree_on_one_secret(database):
    """Eight connections mint the page-token secret at the same moment: all read one value."""
    url = database.resolved_database_url()
    migrated = Database(url)
    migrated.migrate()
    migrated.close()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    barrier = threading.Barrier(8)
    secrets: list[bytes] = []

    def mint() -> None:
        with engine.connect() as conn:
            barrier.wait()
            with conn.begin():
                secrets.append(server_secret(conn, "page_tokens", 0))

    threads = [threading.Thread(target=mint) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert len(secrets) == 8 and len(set(secrets)) == 1
    assert len(secrets[0]) == 32


# ---- defect 5: retry policies ----


BAD_POLICY_NUMBERS = [1e300, INF, NAN, -1.0]


@pytest.mark.parametrize("value", BAD_POLICY_NUMBERS, ids=repr)
async def test_flow_run_retry_delay_seconds_out_of_range_is_invalid(stubs, value):
    flow = await make_flow(stubs)
    policy = flow_run_pb2.FlowRunPolicy(retries=1, retry_delay_seconds=value)
    request = fr.CreateFlowRunRequest(flow_id=flow.id, empirical_policy=policy)
    violations = await invalid(stubs.flow_runs.CreateFlowRun, request)
    assert "empirical_policy.retry_delay_seconds" in violations
    run = await make_run(stubs, flow.id)
    update = fr.UpdateFlowRunRequest(
        flow_run=flow_run_pb2.FlowRun(id=run.id, empirical_policy=policy),
        update_mask=field_mask_pb2.FieldMask(paths=["empirical_policy"]),
    )
    violations = await invalid(stubs.flow_runs.UpdateFlowRun, update)
    assert "flow_run.empirical_policy.retry_delay_seconds" in violations


@pytest.mark.parametrize("field", ["retry_delay_seconds", "retry_jitter_factor"])
@pytest.mark.parametrize("value", [1e308, INF, NAN, -0.5], ids=repr)
async def test_task_run_policy_numbers_out_of_range_are_invalid(stubs, field, value):
    policy = task_run_pb2.TaskRunPolicy(retries=1, **{field: value})
    request = tr.CreateTaskRunRequest(task_key="k", empirical_policy=policy)
    violations = await invalid(stubs.task_runs.CreateTaskRun, request)
    assert f"empirical_policy.{field}" in violations


async def test_the_largest_retry_delay_is_accepted(stubs):
    flow = await make_flow(stubs)
    policy = flow_run_pb2.FlowRunPolicy(retries=1, retry_delay_seconds=MAX_INT32)
    run = await make_run(stubs, flow.id, empirical_policy=policy, state=state(RUNNING))
    result = await set_state(stubs, run.id, state(FAILED))
    assert result.state.name == "AwaitingRetry"
    delay = result.state.state_details.scheduled_time.seconds - result.state.timestamp.seconds
    assert abs(delay - MAX_INT32) <= 1


@pytest.mark.parametrize("stored", [1e300, 1e20])
async def test_a_stored_huge_flow_retry_delay_still_fails_over_to_a_retry(stubs, database, stored):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    policy = {"retries": 1, "retry_delay_seconds": stored, "max_retries": 0, "pause_keys": []}
    execute(
        database,
        sa.update(t.flow_run).where(t.flow_run.c.id == run.id).values(empirical_policy=policy),
    )
    result = await set_state(stubs, run.id, state(FAILED))
    assert result.state.name == "AwaitingRetry"
    scheduled_time = at(result.state.state_details, "scheduled_time")
    assert scheduled_time is not None and scheduled_time.year < 2100  # at most the longest delay
    assert (await get_run(stubs, run.id)).state.name == "AwaitingRetry"


@pytest.mark.parametrize(
    "policy",
    [
        {"retries": 1, "retry_delay": 10, "retry_jitter_factor": 1e308},
        {"retries": 1, "retry_delay_seconds": 1e300, "retry_jitter_factor": 0.5},
        {"retries": 1, "retry_delay": [2**40], "retry_jitter_factor": 1e308},
    ],
    ids=["jitter", "delay-seconds", "delay-list"],
)
async def test_a_stored_huge_task_retry_policy_still_retries(stubs, database, policy):
    request = tr.CreateTaskRunRequest(task_key="k", state=state(RUNNING))
    task = (await stubs.task_runs.CreateTaskRun(request)).task_run
    execute(
        database,
        sa.update(t.task_run).where(t.task_run.c.id == task.id).values(empirical_policy=policy),
    )
    for _ in range(3):  # the jitter is random: several draws
        request = tr.SetTaskRunStateRequest(task_run_id=task.id, state=state(FAILED))
        result = (await stubs.task_runs.SetTaskRunState(request)).result
        assert result.state.name == "AwaitingRetry"
        assert at(result.state.state_details, "scheduled_time").year < 2100
        request = tr.SetTaskRunStateRequest(task_run_id=task.id, state=state(RUNNING), force=True)
        await stubs.task_runs.SetTaskRunState(request)
        execute(
            database, sa.update(t.task_run).where(t.task_run.c.id == task.id).values(run_count=1)
        )


# ---- defect 6: undecodable request bytes ----

UNDECODABLE = bytes.fromhex("0affffffff0f78")
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.mark.parametrize(
    "method",
    [
        "/flowrpc.v1.FlowService/GetFlow",
        "/flowrpc.v1.FlowRunService/StreamFlowRunHistory",
        "/flowrpc.v1.FlowRunService/BulkDeleteFlowRuns",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        REFLECTION,
    ],
)
async def test_undecodable_bytes_are_invalid_and_log_one_line(stubs, caplog, method):
    caplog.set_level(logging.DEBUG)
    streaming = any(word in method for word in ("Stream", "Bulk", "Watch", "Reflection"))
    if method == REFLECTION:  # requests stream in too
        call = lambda data: stubs.channel.stream_stream(method)(iter([data]))  # noqa: E731
    else:
        call = (stubs.channel.unary_stream if streaming else stubs.channel.unary_unary)(method)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        result = call(UNDECODABLE)
        if streaming:
            [_ async for _ in result]
        else:
            await result
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert "decode" in raised.value.details()
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text
    mentions = [r for r in caplog.records if method.rsplit("/", 1)[1] in r.getMessage()]
    assert len(mentions) == 1, caplog.text
    flow = await make_flow(stubs)  # the server serves on
    assert (await stubs.flows.GetFlow(fl.GetFlowRequest(id=flow.id))).flow.id == flow.id


# ---- NUL characters: SQLite keeps them; PostgreSQL cannot, and says so ----


async def test_nul_characters_are_kept_or_refused_by_the_database(stubs, database):
    on_postgres = database.resolved_database_url().startswith("postgresql")
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    data = struct_pb2.Value(string_value="a\x00b")
    # Each call, with what SQLite answers (None: OK).
    calls = [
        (stubs.flows.CreateFlow(fl.CreateFlowRequest(name="nul\x00flow")), None),
        (stubs.flows.GetFlowByName(fl.GetFlowByNameRequest(name="\x00")), "NOT_FOUND"),
        (
            stubs.flow_runs.SetFlowRunState(
                fr.SetFlowRunStateRequest(flow_run_id=run.id, state=state(RUNNING, data=data))
            ),
            None,
        ),
    ]
    for call, on_sqlite in calls:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            assert error.code().name == ("INVALID_ARGUMENT" if on_postgres else on_sqlite)
            if on_postgres:
                assert "NUL character" in field_violations(error)["request"]
        else:
            assert not on_postgres and on_sqlite is None
    stored = await get_run(stubs, run.id)
    if on_postgres:
        assert stored.state.type == PENDING  # nothing of the refused transition was kept
    else:
        assert stored.state.data.string_value == "a\x00b"
