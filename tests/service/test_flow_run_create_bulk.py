"""CreateFlowRuns: many runs in one bidirectional call, each created as its single create would
create it, results in order, failures per run, bounded messages."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from harness import running_server
from helpers import (
    COMPLETED,
    PENDING,
    RUNNING,
    SCHEDULED,
    T0,
    at,
    error_info,
    field_violations,
    get_run,
    make_flow,
    make_run,
    scheduled,
    service_stubs,
    state,
)

from flowrpc.settings import Settings
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import task_run_service_pb2 as tr

MAX_RUNS = 1000  # runs one message may carry (services/flow_runs.py MAX_CREATE_RUNS)
MISSING = "00000000-0000-7000-8000-000000000000"
BASIC, FULL = fr.CREATE_FLOW_RUNS_VIEW_BASIC, fr.CREATE_FLOW_RUNS_VIEW_FULL
# Fields the server sets at create time, which differ between any two creates.
PER_CREATE = {"id", "created", "updated", "name", "state_id", "state"}
PER_READ = {"estimated_run_time", "estimated_start_time_delta"}  # computed at each read


def of_flow(flow_id: str, **fields) -> fr.FlowRunCreate:
    return fr.FlowRunCreate(flow_run=fr.CreateFlowRunRequest(flow_id=flow_id, **fields))


def of_deployment(deployment_id: str, **fields) -> fr.FlowRunCreate:
    request = dp.CreateFlowRunFromDeploymentRequest(deployment_id=deployment_id, **fields)
    return fr.FlowRunCreate(from_deployment=request)


async def create_runs(
    stubs, *messages: list[fr.FlowRunCreate], views: tuple[int, ...] = ()
) -> list[fr.CreateFlowRunsResult]:
    """Sends each list of runs as one message (in the view of the same place in `views`, if
    any); returns every result, checked to be in order."""
    requests = [fr.CreateFlowRunsRequest(runs=runs) for runs in messages]
    for request, view in zip(requests, views, strict=False):
        request.view = view
    results = [r async for m in stubs.flow_runs.CreateFlowRuns(iter(requests)) for r in m.results]
    assert [r.index for r in results] == list(range(sum(map(len, messages))))
    return results


def outcome(result: fr.CreateFlowRunsResult) -> str:
    return result.WhichOneof("outcome")


async def make_deployment(stubs, flow_id: str, **fields) -> str:
    request = dp.CreateDeploymentRequest(deployment={"name": "d", "flow_id": flow_id, **fields})
    return (await stubs.deployments.CreateDeployment(request)).deployment.id


def comparable(run) -> dict:
    """A run's fields but those each create sets anew, times equal to its creation time as
    "created", and its state's type and name."""
    fields = {}
    for field, value in run.ListFields():
        if field.name not in PER_CREATE | PER_READ:
            fields[field.name] = "created" if value == run.created else value
    return {**fields, "state": (run.state.type, run.state.name)}


async def test_flows_and_deployments_mixed_in_order_with_failures_beside_successes(stubs):
    flow = await make_flow(stubs)
    deployment = await make_deployment(
        stubs, flow.id, parameters={"a": 1, "b": 2}, tags=["from-deployment"]
    )
    runs = [
        of_flow(flow.id, name="first", tags=["x"], parameters={"n": 1}),
        of_deployment(deployment, parameters={"b": 3}, tags=["mine"]),
        of_flow(MISSING),
        of_deployment(MISSING),
        of_flow(flow.id, state=state(0)),  # no state type
        of_flow("not-a-uuid"),
        fr.FlowRunCreate(),  # neither source
        of_flow(flow.id, name="last"),
    ]
    results = await create_runs(stubs, runs)
    assert [outcome(r) for r in results] == ["flow_run"] * 2 + ["error"] * 5 + ["flow_run"]

    first, from_deployment, last = results[0].flow_run, results[1].flow_run, results[7].flow_run
    assert (first.name, list(first.tags), dict(first.parameters)) == ("first", ["x"], {"n": 1})
    assert first.state.type == PENDING and results[0].created
    assert from_deployment.deployment_id == deployment and from_deployment.flow_id == flow.id
    assert dict(from_deployment.parameters) == {"a": 1, "b": 3}
    assert list(from_deployment.tags) == ["from-deployment", "mine"]
    assert from_deployment.state.type == SCHEDULED
    assert last.name == "last"

    errors = [r.error for r in results[2:7]]
    assert [(e.code, e.reason) for e in errors] == [
        (grpc.StatusCode.NOT_FOUND.value[0], "FLOW_NOT_FOUND"),
        (grpc.StatusCode.NOT_FOUND.value[0], "DEPLOYMENT_NOT_FOUND"),
        (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_ARGUMENT"),
        (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_ARGUMENT"),
        (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_ARGUMENT"),
    ]
    assert MISSING in errors[0].message and "not found" in errors[1].message
    assert [v.field for v in errors[2].field_violations] == ["flow_run.state.type"]
    assert [v.field for v in errors[3].field_violations] == ["flow_run.flow_id"]
    assert "must be a UUID" in errors[3].field_violations[0].description
    assert [v.field for v in errors[4].field_violations] == ["source"]
    assert not any(r.created for r in results[2:7])
    # Only the three good runs exist, each as the result says.
    listed = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest())
    assert {run.id for run in listed.flow_runs} == {first.id, from_deployment.id, last.id}
    assert comparable(await get_run(stubs, from_deployment.id)) == comparable(from_deployment)


async def test_each_initial_state_is_orchestrated_as_a_single_create_would(stubs):
    """The same requests, once in bulk and once one by one, leave the same runs: the forced
    first transition's bookkeeping (run count, start and end times, expected start) included."""
    flow = await make_flow(stubs)
    deployment = await make_deployment(stubs, flow.id)
    states = [
        state(RUNNING),
        state(COMPLETED),
        scheduled(T0, name="Late"),
        state(PENDING, message="hi"),
        None,
    ]
    singles, bulk = [], []
    for proposed in states:
        fields = {"state": proposed} if proposed is not None else {}
        singles.append(await make_run(stubs, flow.id, **fields))
        request = dp.CreateFlowRunFromDeploymentRequest(deployment_id=deployment, **fields)
        response = await stubs.deployments.CreateFlowRunFromDeployment(request)
        singles.append(response.flow_run)
        bulk += [of_flow(flow.id, **fields), of_deployment(deployment, **fields)]
    results = await create_runs(stubs, bulk)
    for single, result in zip(singles, results, strict=True):
        assert comparable(result.flow_run) == comparable(single)
        stored = await get_run(stubs, result.flow_run.id)
        assert comparable(stored) == comparable(single)
    running = results[0].flow_run
    assert running.run_count == 1 and at(running, "start_time") is not None
    assert running.state.state_details.flow_run_id == running.id  # set by the rules
    assert at(results[2].flow_run, "end_time") is not None  # COMPLETED
    assert results[4].flow_run.state_name == "Late"


async def test_the_basic_view_says_what_the_full_view_would(stubs):
    """The same runs in the BASIC view, then again in the FULL view: the same outcomes, errors
    and idempotent answers; each summary is the stored run's id, name and state."""
    flow = await make_flow(stubs)
    deployment = await make_deployment(stubs, flow.id)
    runs = [
        of_flow(flow.id, name="keyed", idempotency_key="k1"),
        of_deployment(deployment, idempotency_key="k2", state=state(RUNNING)),
        of_flow(MISSING),
        of_flow(flow.id, state=state(0)),  # no state type
        of_flow(flow.id, idempotency_key="k1", name="same key"),
        of_flow(flow.id, state=scheduled(T0, name="Late")),
        of_deployment(deployment),
        of_flow(flow.id, state=state(COMPLETED)),
    ]
    basic = await create_runs(stubs, runs, views=(BASIC,))
    assert [outcome(r) for r in basic] == ["summary"] * 2 + ["error"] * 2 + ["summary"] * 4
    assert [r.created for r in basic] == [True, True, False, False, False, True, True, True]
    assert basic[4].summary == basic[0].summary
    for result in basic:
        if outcome(result) == "summary":
            stored = await get_run(stubs, result.summary.id)
            assert (stored.name, stored.state.type, stored.state.name) == (
                result.summary.name,
                result.summary.state_type,
                result.summary.state_name,
            )
    summaries = [(r.summary.state_type, r.summary.state_name) for r in basic]
    assert summaries[:2] == [(PENDING, "Pending"), (RUNNING, "Running")]
    assert summaries[5:] == [
        (SCHEDULED, "Late"),
        (SCHEDULED, "Scheduled"),
        (COMPLETED, "Completed"),
    ]

    full = await create_runs(stubs, runs)  # the keyed runs exist now; the others are made anew
    assert [outcome(r) for r in full] == ["flow_run"] * 2 + ["error"] * 2 + ["flow_run"] * 4
    assert [r.created for r in full] == [False, False, False, False, False, True, True, True]
    assert [r.error for r in full[2:4]] == [r.error for r in basic[2:4]]
    for index in (0, 1, 4):
        assert full[index].flow_run.id == basic[index].summary.id
    for b, f in zip(basic, full, strict=True):
        if outcome(f) == "flow_run":
            assert (f.flow_run.state.type, f.flow_run.state.name) == (
                b.summary.state_type,
                b.summary.state_name,
            )
    again = await create_runs(stubs, runs[:2], views=(BASIC,))
    assert [(r.created, r.summary) for r in again] == [(False, r.summary) for r in basic[:2]]


async def test_each_message_is_answered_in_its_own_view(stubs):
    flow = await make_flow(stubs)
    runs = [of_flow(flow.id, name=f"run-{i}") for i in range(6)]
    results = await create_runs(stubs, runs[:2], runs[2:4], runs[4:], views=(BASIC, FULL))
    assert [outcome(r) for r in results] == ["summary"] * 2 + ["flow_run"] * 4
    assert [r.summary.name for r in results[:2]] + [r.flow_run.name for r in results[2:]] == [
        f"run-{i}" for i in range(6)
    ]
    count = await stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert count.count == len(runs)


async def test_a_subflow_run_mirrors_its_state_on_its_parent_task(stubs):
    flow = await make_flow(stubs)
    parent = await make_run(stubs, flow.id)
    task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=parent.id, task_key="k", dynamic_key="0")
        )
    ).task_run
    results = await create_runs(
        stubs, [of_flow(flow.id, parent_task_run_id=task.id, state=state(RUNNING))]
    )
    child = results[0].flow_run
    mirrored = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))).task_run
    assert mirrored.state.type == RUNNING
    assert mirrored.state.state_details.child_flow_run_id == child.id


async def test_idempotency_keys_within_a_call_across_messages_and_across_calls(stubs):
    flow = await make_flow(stubs)
    deployment = await make_deployment(stubs, flow.id)
    existing = await make_run(stubs, flow.id, idempotency_key="before")
    first = [
        of_flow(flow.id, idempotency_key="k1", name="one"),
        of_flow(flow.id, idempotency_key="k1", name="again"),  # same key, same message
        of_flow(flow.id, idempotency_key="before"),
        of_deployment(deployment, idempotency_key="k2"),
    ]
    second = [of_deployment(deployment, idempotency_key="k2"), of_flow(flow.id)]
    results = await create_runs(stubs, first, second)
    ids = [r.flow_run.id for r in results]
    assert [r.created for r in results] == [True, False, False, True, False, True]
    assert ids[1] == ids[0] and results[1].flow_run.name == "one"
    assert ids[2] == existing.id
    assert ids[4] == ids[3]
    # The whole call again: every keyed run is found, the unkeyed one made anew.
    again = await create_runs(stubs, first, second)
    assert [r.created for r in again] == [False] * 5 + [True]
    assert [r.flow_run.id for r in again][:5] == ids[:5]
    assert again[5].flow_run.id != ids[5]


async def test_a_call_larger_than_one_message_answers_every_run_in_order(stubs):
    flow = await make_flow(stubs)
    runs = [of_flow(flow.id, name=f"run-{i}") for i in range(2 * MAX_RUNS + 10)]
    messages = [runs[:MAX_RUNS], runs[MAX_RUNS : 2 * MAX_RUNS], [], runs[2 * MAX_RUNS :]]
    results = await create_runs(stubs, *messages)
    assert [r.flow_run.name for r in results] == [f"run-{i}" for i in range(len(runs))]
    assert len({r.flow_run.id for r in results}) == len(runs)
    count = await stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert count.count == len(runs)


async def test_too_many_runs_in_one_message_ends_the_call_after_earlier_results(stubs):
    flow = await make_flow(stubs)
    good = fr.CreateFlowRunsRequest(runs=[of_flow(flow.id)])
    too_many = fr.CreateFlowRunsRequest(runs=[of_flow(flow.id)] * (MAX_RUNS + 1))
    call = stubs.flow_runs.CreateFlowRuns(iter([good, too_many]))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for message in call:
            received += message.results
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "LIMIT_EXCEEDED"
    assert "1001 runs in one message" in field_violations(error)["runs"]
    assert [r.created for r in received] == [True]
    count = await stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert count.count == 1


@contextlib.asynccontextmanager
async def server_with(database: Settings, **limits):
    """Stubs on a server with these settings changed."""
    with running_server(database.model_copy(update=limits)) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield service_stubs(channel)


@pytest.fixture
async def small(database: Settings):
    """A server with small string and request limits."""
    async with server_with(database, max_string_length=50, max_request_bytes=200_000) as stubs:
        yield stubs


@pytest.fixture
async def roomy(database: Settings):
    """A server taking JSON fields of 1.2 MB: a run's budget is then about 1.7 MB."""
    async with server_with(database, max_json_bytes=1_200_000) as stubs:
        yield stubs


async def test_a_run_over_a_field_limit_fails_alone(small):
    flow = await make_flow(small)
    runs = [of_flow(flow.id), of_flow(flow.id, tags=["ok", "t" * 51]), of_flow(flow.id)]
    results = await create_runs(small, runs)
    assert [outcome(r) for r in results] == ["flow_run", "error", "flow_run"]
    error = results[1].error
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "LIMIT_EXCEEDED",
    )
    [violation] = error.field_violations
    assert violation.field == "flow_run.tags[1]"
    assert "over max_string_length (50; FLOWRPC_MAX_STRING_LENGTH)" in violation.description


async def test_a_message_over_max_request_bytes_is_refused(small):
    flow = await make_flow(small)
    runs = [of_flow(flow.id, parameters={"p": "x" * 100_000}) for _ in range(3)]
    call = small.flow_runs.CreateFlowRuns(iter([fr.CreateFlowRunsRequest(runs=runs)]))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        _ = [message async for message in call]
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_run_over_the_run_budget_fails_whole_and_alone(roomy):
    """A deployment's values are merged into its run inside the write: a run that comes out over
    the run budget is rolled back, nothing of it kept, and the next run is still created."""
    flow = await make_flow(roomy)
    big = {"p": "x" * 1_000_000}
    deployment = await make_deployment(roomy, flow.id, job_variables=big)
    runs = [
        of_deployment(deployment, idempotency_key="a"),
        of_deployment(deployment, idempotency_key="b", context=big),  # ~2 MB: over the budget
        of_flow(flow.id, idempotency_key="c"),
    ]
    results = await create_runs(roomy, [runs[0]], [runs[1], runs[2]])
    assert [outcome(r) for r in results] == ["flow_run", "error", "flow_run"]
    assert results[1].error.reason == "LIMIT_EXCEEDED"
    assert [v.field for v in results[1].error.field_violations] == ["from_deployment"]
    assert "without its state" in results[1].error.field_violations[0].description
    count = await roomy.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert count.count == 2


async def test_concurrent_calls_with_the_same_keys_create_each_run_once(stubs):
    """Calls racing on the same idempotency keys (on PostgreSQL they commit concurrently, and
    the loser of a key falls back to the exact per-run path): one run per key, every call
    answering it."""
    flow = await make_flow(stubs)
    runs = [of_flow(flow.id, idempotency_key=f"k{i}") for i in range(300)]
    calls = await asyncio.gather(*(create_runs(stubs, runs[:150], runs[150:]) for _ in range(3)))
    for i in range(len(runs)):
        answers = [results[i] for results in calls]
        assert len({r.flow_run.id for r in answers}) == 1
        assert sum(r.created for r in answers) == 1
    count = await stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert count.count == len(runs)


async def test_a_value_the_database_cannot_store_fails_that_run_alone(stubs, database):
    """PostgreSQL stores no NUL character: the database refuses the batch's insert, and the runs
    are created again one by one, the one with the NUL failing alone. SQLite stores it."""
    flow = await make_flow(stubs)
    runs = [of_flow(flow.id, name="a"), of_flow(flow.id, name="b\x00c"), of_flow(flow.id)]
    results = await create_runs(stubs, runs)
    if database.database_url.startswith("sqlite"):
        assert [outcome(r) for r in results] == ["flow_run"] * 3
        return
    assert [outcome(r) for r in results] == ["flow_run", "error", "flow_run"]
    assert results[1].error.reason == "INVALID_ARGUMENT"
    assert "NUL" in results[1].error.message
    count = await stubs.flow_runs.CountFlowRuns(fr.CountFlowRunsRequest())
    assert count.count == 2


async def test_text_that_copy_escapes_is_stored_as_sent(stubs):
    """On PostgreSQL a message's rows go through COPY, whose text format gives tabs, newlines,
    backslashes and \\N meanings of their own: each comes back as it was sent."""
    flow = await make_flow(stubs)
    awkward = ["tab\there", "new\nline", "back\\slash", "\\N", "", "quote'\"", "ünï\u2603"]
    runs = [
        of_flow(flow.id, name=text or "empty", tags=[text], parameters={"text": text, text: 1})
        for text in awkward
    ]
    results = await create_runs(stubs, runs)
    for text, result in zip(awkward, results, strict=True):
        run = await get_run(stubs, result.flow_run.id)
        assert run.name == (text or "empty")
        assert list(run.tags) == [text]
        assert dict(run.parameters) == {"text": text, text: 1}


async def test_an_undecodable_message_ends_the_call_with_invalid_argument(stubs):
    create_runs_raw = stubs.channel.stream_stream(
        "/flowrpc.v1.FlowRunService/CreateFlowRuns",
        request_serializer=lambda data: data,
        response_deserializer=fr.CreateFlowRunsResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        _ = [m async for m in create_runs_raw(iter([b"\xff\xff\xff"]))]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in raised.value.details()


async def test_a_client_may_wait_for_each_answer_before_sending_the_next_message(stubs):
    flow = await make_flow(stubs)
    call = stubs.flow_runs.CreateFlowRuns()
    answers = []
    for i in range(3):
        await call.write(fr.CreateFlowRunsRequest(runs=[of_flow(flow.id, name=f"m{i}")] * 2))
        answers.append(await call.read())
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert [[r.index for r in a.results] for a in answers] == [[0, 1], [2, 3], [4, 5]]
    assert [a.results[0].flow_run.name for a in answers] == ["m0", "m1", "m2"]
