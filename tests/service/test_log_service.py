"""LogService and AssetService on the wire: bad input gets INVALID_ARGUMENT naming the field,
limits apply to every record, and pages of large records stay within 4 MiB."""

from __future__ import annotations

import grpc
import pytest
from harness import running_server
from helpers import RUNNING, error_info, field_violations, make_flow, make_run, service_stubs, state

from flowrpc.settings import Settings
from flowrpc.v1 import asset_service_pb2 as asp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import (
    log_pb2,
)
from flowrpc.v1 import log_service_pb2 as lsp
from flowrpc.v1 import task_run_service_pb2 as tr

MiB = 1024 * 1024


async def running_flow_run(stubs):
    flow = await make_flow(stubs)
    return await make_run(stubs, flow.id, state=state(RUNNING))


def create(*logs):
    return lsp.CreateLogsRequest(logs=list(logs))


async def refused(call, code=grpc.StatusCode.INVALID_ARGUMENT):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    return raised.value


async def test_bad_ids_and_times_name_the_record(stubs):
    run = await running_flow_run(stubs)
    good = log_pb2.LogCreate(flow_run_id=run.id, name="n", level=20, message="m")
    error = await refused(stubs.logs.CreateLogs(create(good, log_pb2.LogCreate(flow_run_id="x"))))
    assert "logs[1].flow_run_id" in field_violations(error)
    missing_run = log_pb2.LogCreate(name="n")
    error = await refused(stubs.logs.CreateLogs(create(missing_run)))
    assert "logs[0].flow_run_id" in field_violations(error)
    bad_time = log_pb2.LogCreate(flow_run_id=run.id, timestamp={"seconds": 2**62})
    error = await refused(stubs.logs.CreateLogs(create(bad_time)))
    assert "logs[0].timestamp" in field_violations(error)
    bad_task = log_pb2.LogCreate(flow_run_id=run.id, task_run_id="nope")
    error = await refused(stubs.logs.CreateLogs(create(bad_task)))
    assert "logs[0].task_run_id" in field_violations(error)


async def test_bad_reads_are_invalid_argument(stubs):
    error = await refused(stubs.logs.ListLogs(lsp.ListLogsRequest(sort=99)))
    assert "sort" in field_violations(error)
    bad_ids = log_pb2.LogFilter(
        flow_run_id=log_pb2.LogFilterFlowRunId(any_of=f.StringList(values=["x"]))
    )
    error = await refused(stubs.logs.ListLogs(lsp.ListLogsRequest(logs=bad_ids)))
    assert "logs.flow_run_id.any_of.values" in field_violations(error)
    await refused(stubs.logs.ListLogs(lsp.ListLogsRequest(offset=-1)))


async def test_a_log_of_an_unknown_flow_run_is_not_found(stubs):
    record = log_pb2.LogCreate(flow_run_id="00000000-0000-0000-0000-000000000001")
    error = await refused(stubs.logs.CreateLogs(create(record)), grpc.StatusCode.NOT_FOUND)
    assert error_info(error).reason == "FLOW_RUN_NOT_FOUND"


SMALL = {"max_string_length": 50, "max_json_bytes": 2_000, "max_list_length": 20}


async def test_limits_bound_every_record(database: Settings):
    """A message is free text (max_json_bytes), a logger name a string (max_string_length), a
    batch a list (max_list_length): each over its limit is refused, naming the setting."""
    with running_server(database.model_copy(update=SMALL)) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = service_stubs(channel)
            logs = stubs.logs
            run = await running_flow_run(stubs)
            fine = log_pb2.LogCreate(flow_run_id=run.id, name="n" * 50, message="m" * 2_000)
            assert (await logs.CreateLogs(create(fine))).created == 1
            for over, setting in (
                (log_pb2.LogCreate(flow_run_id=run.id, message="m" * 2_001), "max_json_bytes"),
                (log_pb2.LogCreate(flow_run_id=run.id, name="n" * 51), "max_string_length"),
            ):
                error = await refused(logs.CreateLogs(create(over)))
                assert error_info(error).reason == "LIMIT_EXCEEDED"
                assert setting in error.details() and "logs[0]" in error.details()
            error = await refused(logs.CreateLogs(create(*[fine] * 21)))
            assert "max_list_length" in error.details()


async def test_a_page_of_large_records_holds_fewer_and_the_rest_follow(stubs):
    """Twelve records of 500 KB (under the default max_json_bytes) weigh 6 MB: a page holds
    what fits in 4 MiB and the caller goes on from offset + what it got."""
    run = await running_flow_run(stubs)
    big = [
        log_pb2.LogCreate(flow_run_id=run.id, name="n", message=f"{i:03}" + "x" * 500_000)
        for i in range(12)
    ]
    for half in (big[:6], big[6:]):  # a request is at most 4 MiB too
        await stubs.logs.CreateLogs(create(*half))
    seen = []
    while True:
        page = (await stubs.logs.ListLogs(lsp.ListLogsRequest(offset=len(seen)))).logs
        if not page:
            break
        assert len(page) < 12
        seen += [log.message[:3] for log in page]
    assert seen == [f"{i:03}" for i in range(12)]
    # The same with page tokens: each continues after the last record its page holds.
    seen, token = [], ""
    while True:
        page = await stubs.logs.ListLogs(lsp.ListLogsRequest(page_token=token))
        seen += [log.message[:3] for log in page.logs]
        if not (token := page.next_page_token):
            break
    assert seen == [f"{i:03}" for i in range(12)]


async def test_asset_reads_with_bad_arguments_are_invalid(stubs):
    await refused(stubs.assets.ListAssets(asp.ListAssetsRequest(limit=-1)))
    await refused(stubs.assets.ListAssets(asp.ListAssetsRequest(materializations=-1)))
    run = await running_flow_run(stubs)
    task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="t")
        )
    ).task_run
    request = asp.CreateAssetMaterializationRequest(asset_keys=["a", ""], task_run_id=task.id)
    error = await refused(stubs.assets.CreateAssetMaterialization(request))
    assert "asset_keys[1]" in field_violations(error)
    request = asp.CreateAssetMaterializationRequest(asset_keys=["a"], task_run_id="x")
    error = await refused(stubs.assets.CreateAssetMaterialization(request))
    assert "task_run_id" in field_violations(error)


async def test_page_tokens_continue_only_their_own_query(stubs):
    run = await running_flow_run(stubs)
    await stubs.logs.CreateLogs(create(*[log_pb2.LogCreate(flow_run_id=run.id)] * 3))
    first = await stubs.logs.ListLogs(lsp.ListLogsRequest(limit=2))
    assert len(first.logs) == 2 and first.next_page_token
    rest = await stubs.logs.ListLogs(lsp.ListLogsRequest(limit=2, page_token=first.next_page_token))
    assert [log.id for log in rest.logs] == [
        log.id for log in (await stubs.logs.ListLogs(lsp.ListLogsRequest())).logs[2:]
    ]
    assert rest.next_page_token == ""
    token = first.next_page_token
    error = await refused(stubs.logs.ListLogs(lsp.ListLogsRequest(page_token=token, offset=1)))
    assert "offset" in field_violations(error)
    other_sort = lsp.ListLogsRequest(page_token=token, sort=log_pb2.LOG_SORT_TIMESTAMP_DESC)
    error = await refused(stubs.logs.ListLogs(other_sort))
    assert "another filter or sort" in field_violations(error)["page_token"]
    error = await refused(stubs.logs.ListLogs(lsp.ListLogsRequest(page_token="forged")))
    assert "page_token" in field_violations(error)
