"""Size limits through a real server: each request limit at its value (accepted) and over it
(refused, naming the setting); responses within what a default gRPC client accepts (4 MiB), list
pages shrinking to fit; errors quoting only a short prefix of a bad value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from harness import running_server
from helpers import (
    COMPLETED,
    RUNNING,
    error_info,
    field_violations,
    make_flow,
    make_run,
    rich_status,
    service_stubs,
    state,
    strings,
)

from flowrpc.settings import Settings
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import (
    flow_service_pb2_grpc,
    state_pb2,
    task_run_pb2,
)
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

MiB = 1024 * 1024
SMALL = {
    "max_string_length": 50,
    "max_json_bytes": 2_000,
    "max_list_length": 20,
    "max_like_length": 10,
    "max_request_bytes": 100_000,
}


@pytest.fixture
async def small(database: Settings) -> AsyncIterator[SimpleNamespace]:
    """Stubs on a server with small limits (SMALL), over a default gRPC channel."""
    with running_server(database.model_copy(update=SMALL)) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield service_stubs(channel)


async def refused(call: Any, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        result = call
        if hasattr(result, "__aiter__"):
            _ = [item async for item in result]
        else:
            await result
    assert raised.value.code() == code, raised.value.details()
    return raised.value


def over(error: grpc.aio.AioRpcError, field: str, setting: str) -> str:
    """The violation of `field`, checked to name the setting and its variable."""
    assert error_info(error).reason == "LIMIT_EXCEEDED"
    violation = field_violations(error)[field]
    assert f"over {setting} ({SMALL[setting]}; FLOWRPC_{setting.upper()})" in violation
    assert setting in error.details()
    return violation


def struct_of_size(size: int) -> struct_pb2.Struct:
    """A Struct whose encoded size is exactly `size` bytes (size >= 20)."""
    value = struct_pb2.Struct()
    value["k"] = ""
    value["k"] = "x" * (size - value.ByteSize() - 1)
    while value.ByteSize() > size:  # the string's length prefix grew by a byte
        value["k"] = value["k"][:-1]
    assert value.ByteSize() == size
    return value


# ---- each request limit: at it, accepted; over it, refused naming the setting ----


async def test_max_string_length_bounds_names_tags_and_nested_strings(small):
    flow = (await small.flows.CreateFlow(fl.CreateFlowRequest(name="n" * 50))).flow
    assert len(flow.name) == 50
    error = await refused(small.flows.CreateFlow(fl.CreateFlowRequest(name="n" * 51)))
    assert over(error, "name", "max_string_length").startswith("51 characters")

    await small.flows.CreateFlow(fl.CreateFlowRequest(name="tagged", tags=["a", "t" * 50]))
    error = await refused(
        small.flows.CreateFlow(fl.CreateFlowRequest(name="tagged2", tags=["a", "t" * 51]))
    )
    over(error, "tags[1]", "max_string_length")

    details = state_pb2.StateDetails(cache_key="c" * 51)
    request = fr.CreateFlowRunRequest(flow_id=flow.id, state=state(RUNNING, details=details))
    error = await refused(small.flow_runs.CreateFlowRun(request))
    over(error, "state.state_details.cache_key", "max_string_length")


async def test_max_like_length_bounds_like_patterns(small):
    def by_name(like: str) -> fr.CountFlowRunsRequest:
        name = f.FlowRunFilterName(like=like)
        return fr.CountFlowRunsRequest(
            filter=f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(name=name))
        )

    assert (await small.flow_runs.CountFlowRuns(by_name("a" * 10))).count == 0
    error = await refused(small.flow_runs.CountFlowRuns(by_name("a" * 11)))
    violation = over(error, "filter.flow_runs.name.like", "max_like_length")
    assert violation.startswith("11 characters")


async def test_max_list_length_bounds_every_list_and_map(small):
    await small.flows.CreateFlow(fl.CreateFlowRequest(name="ok", tags=[str(i) for i in range(20)]))
    error = await refused(
        small.flows.CreateFlow(fl.CreateFlowRequest(name="no", tags=[str(i) for i in range(21)]))
    )
    assert over(error, "tags", "max_list_length").startswith("21 items")

    def prefixes(n: int) -> fr.ListFlowRunsRequest:
        name = f.WorkQueueFilterName(startswith=strings(*(f"q{i}" for i in range(n))))
        queues = f.WorkQueueFilter(name=name)
        return fr.ListFlowRunsRequest(filter=f.FlowRunFilterSet(work_pool_queues=queues))

    await small.flow_runs.ListFlowRuns(prefixes(20))
    error = await refused(small.flow_runs.ListFlowRuns(prefixes(21)))
    over(error, "filter.work_pool_queues.name.startswith.values", "max_list_length")

    inputs = {f"i{i}": task_run_pb2.TaskRunInputs() for i in range(21)}
    request = tr.CreateTaskRunRequest(task_inputs=inputs)
    error = await refused(small.task_runs.CreateTaskRun(request))
    over(error, "task_inputs", "max_list_length")


async def test_max_json_bytes_bounds_each_json_field(small):
    flow = await make_flow(small, "json")
    run = await make_run(small, flow.id, parameters=struct_of_size(2_000))
    assert run.parameters.ByteSize() == 2_000
    error = await refused(
        small.flow_runs.CreateFlowRun(
            fr.CreateFlowRunRequest(flow_id=flow.id, parameters=struct_of_size(2_001))
        )
    )
    assert over(error, "parameters", "max_json_bytes").startswith("2001 bytes")

    data = struct_pb2.Value(string_value="d" * 3_000)
    proposal = fr.SetFlowRunStateRequest(flow_run_id=run.id, state=state(COMPLETED, data=data))
    error = await refused(small.flow_runs.SetFlowRunState(proposal))
    over(error, "state.data", "max_json_bytes")


async def test_free_text_is_bounded_by_max_json_bytes_in_utf8_bytes(small):
    # A description is prose, not a name: as large as a JSON field, counted in UTF-8 bytes.
    await small.work_pools.CreateWorkPool(
        wp.CreateWorkPoolRequest(name="ok", description="é" * 1_000)
    )
    error = await refused(
        small.work_pools.CreateWorkPool(
            wp.CreateWorkPoolRequest(name="no", description="é" * 1_001)
        )
    )
    assert over(error, "description", "max_json_bytes").startswith("2002 bytes")


async def test_max_request_bytes_bounds_the_whole_request(database):
    settings = database.model_copy(update={"max_request_bytes": 100_000})
    with running_server(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            tags = ["t" * 9_000] * 11
            request = fl.CreateFlowRequest(name="big", tags=tags)
            request.tags[-1] = "t" * (9_000 - (request.ByteSize() - 100_000))
            assert request.ByteSize() == 100_000
            assert (await flows.CreateFlow(request)).created
            request.name = "bigg"  # one byte more
            error = await refused(flows.CreateFlow(request), grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert "larger than max (100001 vs. 100000)" in error.details()


# ---- the probes, at the default limits ----


async def test_huge_requests_are_refused_with_the_right_status(stubs):
    flow = await make_flow(stubs)
    error = await refused(
        stubs.flows.CreateFlow(fl.CreateFlowRequest(name="n" * 60_000_000)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "Received message larger than max" in error.details()
    ten_mb = json_format.ParseDict({"blob": "x" * 10_000_000}, struct_pb2.Struct())
    request = fr.CreateFlowRunRequest(flow_id=flow.id, parameters=ten_mb)
    await refused(stubs.flow_runs.CreateFlowRun(request), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # Under the request limit, over the JSON one (Prefect's 512 KiB for parameters).
    request = fr.CreateFlowRunRequest(flow_id=flow.id, parameters=struct_of_size(512 * 1024 + 1))
    error = await refused(stubs.flow_runs.CreateFlowRun(request))
    assert (
        "over max_json_bytes (524288; FLOWRPC_MAX_JSON_BYTES)"
        in field_violations(error)["parameters"]
    )
    assert (await stubs.flows.GetFlow(fl.GetFlowRequest(id=flow.id))).flow.name == flow.name


async def test_errors_quote_only_a_short_prefix_of_a_bad_value(stubs):
    error = await refused(stubs.flows.GetFlow(fl.GetFlowRequest(id="f" * 7_000)))
    assert len(error.details()) < 100, error.details()
    assert field_violations(error)["id"] == "must be a UUID, got " + repr("f" * 40) + "..."
    error = await refused(
        stubs.work_pools.GetWorkPool(wp.GetWorkPoolRequest(name="p" * 7_000)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert len(error.details()) < 100, error.details()
    status = rich_status(error)
    assert len(status.SerializeToString()) < 1_000


# ---- responses within what a default client accepts ----


def half_mib_struct(seed: str) -> struct_pb2.Struct:
    return json_format.ParseDict({"v": seed * (500 * 1024)}, struct_pb2.Struct())


async def test_pages_of_large_runs_shrink_to_fit_and_continue_by_token(stubs):
    """Seven runs of 1.5 MiB each (three JSON fields just under the limit): more than a default
    client's 4 MiB in one page, so pages shrink and their tokens reach every run."""
    flow = await make_flow(stubs)
    made = set()
    for i in range(7):
        run = await make_run(
            stubs,
            flow.id,
            parameters=half_mib_struct("p"),
            context=half_mib_struct("c"),
            job_variables=half_mib_struct(str(i)),
        )
        made.add(run.id)
    seen, pages, token = [], 0, ""
    while True:
        page = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest(page_token=token))
        assert page.ByteSize() <= 4 * MiB
        assert page.flow_runs, "a page holds at least one run"
        seen.extend(run.id for run in page.flow_runs)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))
    assert pages >= 3
    assert all(len(run.parameters["v"]) == 500 * 1024 for run in page.flow_runs)


async def test_bulk_results_with_large_state_data_arrive_in_messages_that_fit(stubs):
    flow = await make_flow(stubs)
    ids = {(await make_run(stubs, flow.id)).id for _ in range(12)}
    data = struct_pb2.Value(string_value="d" * (500 * 1024))
    request = fr.BulkSetFlowRunStateRequest(state=state(RUNNING, data=data))
    messages = [m async for m in stubs.flow_runs.BulkSetFlowRunState(request)]
    assert len(messages) > 1
    assert {r.flow_run_id for m in messages for r in m.results} == ids


async def test_offset_lists_over_4_mib_fail_clearly_and_fit_with_a_smaller_limit(stubs):
    for i in range(10):
        labels = half_mib_struct(str(i))
        await stubs.flows.CreateFlow(fl.CreateFlowRequest(name=f"flow-{i}", labels=labels))
    error = await refused(
        stubs.flows.ListFlows(fl.ListFlowsRequest()), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert error_info(error).reason == "RESPONSE_TOO_LARGE"
    assert "ask for fewer items" in error.details()
    assert len((await stubs.flows.ListFlows(fl.ListFlowsRequest(limit=5))).flows) == 5


async def test_task_run_reads_over_4_mib_answer_in_fewer_or_without_data(stubs):
    """Ten task runs whose states carry 500 KiB of data each (results, as the SDK sends them):
    a page of ListTaskRuns holds fewer, with a token for the rest (test_task_run_service);
    GetFlowRunGraph leaves state data out, so it answers whole."""
    run = await make_run(stubs, (await make_flow(stubs)).id)
    data = struct_pb2.Value(string_value="r" * (500 * 1024))
    for i in range(10):
        request = tr.CreateTaskRunRequest(
            flow_run_id=run.id, task_key=f"t{i}", state=state(COMPLETED, data=data)
        )
        await stubs.task_runs.CreateTaskRun(request)
    page = await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest())
    assert 0 < len(page.task_runs) < 10 and page.next_page_token
    graph = await stubs.flow_runs.GetFlowRunGraph(fr.GetFlowRunGraphRequest(flow_run_id=run.id))
    assert len(graph.nodes) == 10


async def test_a_run_cannot_grow_past_what_one_response_holds(stubs):
    """Updates add to what the create brought: an update that would leave the run too large to
    read (with a full state) is refused and changes nothing; so is such a create."""
    flow = await make_flow(stubs)
    tags = [f"{i:04}" + "t" * 9_996 for i in range(320)]
    # 2.6 MB of tags: within the budget (4 MiB less two JSON fields of 512 KiB, less 64 KiB)
    run = await make_run(stubs, flow.id, tags=tags[:260])
    update = fr.UpdateFlowRunRequest(update_mask={"paths": ["parameters"]})
    update.flow_run.id = run.id
    update.flow_run.parameters.update({"v": "p" * (500 * 1024)})
    error = await refused(stubs.flow_runs.UpdateFlowRun(update))
    assert error_info(error).reason == "LIMIT_EXCEEDED"
    assert "without its state" in field_violations(error)["request"]
    stored = (await stubs.flow_runs.GetFlowRun(fr.GetFlowRunRequest(id=run.id))).flow_run
    assert len(stored.tags) == 260 and not stored.parameters
    error = await refused(make_run(stubs, flow.id, tags=tags))  # 3.2 MB
    assert error_info(error).reason == "LIMIT_EXCEEDED"


async def test_pages_sorted_by_long_names_continue_by_token(stubs):
    """A name sort's token holds the last run's name: with names of max_string_length characters
    outside ASCII, the token is long, yet the next request that carries it is accepted."""
    flow = await make_flow(stubs)
    for letter in "abc":
        await make_run(stubs, flow.id, name=letter + "\U0001f600" * 9_999)
    names, token = [], ""
    while True:
        request = fr.ListFlowRunsRequest(sort="FLOW_RUN_SORT_NAME_ASC", limit=1, page_token=token)
        page = await stubs.flow_runs.ListFlowRuns(request)
        names.extend(run.name[0] for run in page.flow_runs)
        token = page.next_page_token
        if not token:
            break
    assert names == ["a", "b", "c"]
