"""ListFlowRuns: the nine sorts, limit and offset, and page tokens."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from helpers import (
    COMPLETED,
    RUNNING,
    T0,
    field_violations,
    hours,
    list_runs,
    make_flow,
    make_run,
    scheduled,
    set_state,
    state,
    strings,
)

from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_pb2 as frp
from flowrpc.v1 import flow_run_service_pb2 as fr


async def sort_setup(stubs):
    """Six runs with ties (names, expected start times) and NULLs (next scheduled, end time):

    run name expected  start (COALESCE)  next scheduled  end
    r1  b    T0+1h     T0+1h             T0+1h           -
    r2  a    T0+2h     T0+2h             T0+2h           -
    r3  a    T0+1h     T0+1h             T0+1h           -
    r4  c    now4      now4              -               now4
    r5  d    T0        now5 (ran)        -               -
    r6  e    now6      now6              -               now6
    """
    flow = await make_flow(stubs)
    r1 = await make_run(stubs, flow.id, name="b", state=scheduled(T0 + hours(1)))
    r2 = await make_run(stubs, flow.id, name="a", state=scheduled(T0 + hours(2)))
    r3 = await make_run(stubs, flow.id, name="a", state=scheduled(T0 + hours(1)))
    r4 = await make_run(stubs, flow.id, name="c", state=state(COMPLETED))
    r5 = await make_run(stubs, flow.id, name="d", state=scheduled(T0))
    assert (await set_state(stubs, r5.id, state(RUNNING))).state.type == RUNNING
    r6 = await make_run(stubs, flow.id, name="e", state=state(COMPLETED))
    return [r.id for r in (r1, r2, r3, r4, r5, r6)]


EXPECTED_ORDERS = {
    # Ties are broken by id in the sort's direction; a NULL key is the smallest (first
    # ascending, last descending), as flow_run.proto says.
    frp.FLOW_RUN_SORT_ID_DESC: [6, 5, 4, 3, 2, 1],
    frp.FLOW_RUN_SORT_START_TIME_ASC: [1, 3, 2, 4, 5, 6],
    frp.FLOW_RUN_SORT_START_TIME_DESC: [6, 5, 4, 2, 3, 1],
    frp.FLOW_RUN_SORT_EXPECTED_START_TIME_ASC: [5, 1, 3, 2, 4, 6],
    frp.FLOW_RUN_SORT_EXPECTED_START_TIME_DESC: [6, 4, 2, 3, 1, 5],
    frp.FLOW_RUN_SORT_NAME_ASC: [2, 3, 1, 4, 5, 6],
    frp.FLOW_RUN_SORT_NAME_DESC: [6, 5, 4, 1, 3, 2],
    frp.FLOW_RUN_SORT_NEXT_SCHEDULED_START_TIME_ASC: [4, 5, 6, 1, 3, 2],
    frp.FLOW_RUN_SORT_END_TIME_DESC: [6, 4, 5, 3, 2, 1],
}


def test_every_sort_is_covered():
    sorts = set(frp.FlowRunSort.values()) - {frp.FLOW_RUN_SORT_UNSPECIFIED}
    assert set(EXPECTED_ORDERS) == sorts


@pytest.mark.parametrize("sort", list(EXPECTED_ORDERS), ids=frp.FlowRunSort.Name)
async def test_sort_order(stubs, sort):
    ids = await sort_setup(stubs)
    got = [run.id for run in await list_runs(stubs, sort=sort)]
    assert got == [ids[n - 1] for n in EXPECTED_ORDERS[sort]]


async def test_unspecified_sort_is_id_desc(stubs):
    ids = await sort_setup(stubs)
    assert [run.id for run in await list_runs(stubs)] == ids[::-1]


@pytest.mark.parametrize("page_size", [1, 2])
@pytest.mark.parametrize("sort", list(EXPECTED_ORDERS), ids=frp.FlowRunSort.Name)
async def test_page_tokens_walk_every_run_once_in_sort_order(stubs, sort, page_size):
    # Page boundaries fall inside ties and between NULLs (see sort_setup).
    ids = await sort_setup(stubs)
    seen, token, pages = [], "", 0
    while True:
        response = await stubs.flow_runs.ListFlowRuns(
            fr.ListFlowRunsRequest(sort=sort, limit=page_size, page_token=token)
        )
        seen += [run.id for run in response.flow_runs]
        pages += 1
        token = response.next_page_token
        if not token:
            break
        assert pages < 10
    assert seen == [ids[n - 1] for n in EXPECTED_ORDERS[sort]]
    full_pages = 6 // page_size
    assert pages in (full_pages, full_pages + 1)  # possibly with a last empty page


async def test_page_tokens_with_a_filter(stubs):
    flow = await make_flow(stubs)
    tagged = [(await make_run(stubs, flow.id, name=f"r{i}", tags=["t"])).id for i in range(7)]
    for _ in range(3):
        await make_run(stubs, flow.id, name="untagged")
    filter_set = f.FlowRunFilterSet(
        flow_runs=f.FlowRunFilter(tags=f.FlowRunFilterTags(all_of=strings("t")))
    )
    seen, token = [], ""
    for _ in range(10):
        response = await stubs.flow_runs.ListFlowRuns(
            fr.ListFlowRunsRequest(
                filter=filter_set, sort=frp.FLOW_RUN_SORT_NAME_DESC, limit=3, page_token=token
            )
        )
        seen += [run.id for run in response.flow_runs]
        token = response.next_page_token
        if not token:
            break
    assert seen == tagged[::-1]


async def test_limit_default_is_200_and_the_rest_is_on_the_next_page(stubs):
    flow = await make_flow(stubs)
    created = await asyncio.gather(*(make_run(stubs, flow.id) for _ in range(203)))
    first = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest())
    assert len(first.flow_runs) == 200
    assert first.next_page_token
    rest = await stubs.flow_runs.ListFlowRuns(
        fr.ListFlowRunsRequest(page_token=first.next_page_token)
    )
    assert len(rest.flow_runs) == 3 and not rest.next_page_token
    listed = [run.id for run in [*first.flow_runs, *rest.flow_runs]]
    assert listed == sorted((run.id for run in created), reverse=True)


async def test_limit_zero_returns_nothing_and_offset_skips(stubs):
    ids = await sort_setup(stubs)
    response = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest(limit=0))
    assert list(response.flow_runs) == [] and response.next_page_token == ""
    name_asc = [ids[n - 1] for n in EXPECTED_ORDERS[frp.FLOW_RUN_SORT_NAME_ASC]]
    page = await list_runs(stubs, sort=frp.FLOW_RUN_SORT_NAME_ASC, limit=2, offset=2)
    assert [run.id for run in page] == name_asc[2:4]
    assert await list_runs(stubs, offset=6) == []
    everything = await list_runs(stubs, limit=200)
    assert len(everything) == 6


async def test_offset_then_page_token_continues_after_the_offset_page(stubs):
    ids = await sort_setup(stubs)
    name_asc = [ids[n - 1] for n in EXPECTED_ORDERS[frp.FLOW_RUN_SORT_NAME_ASC]]
    first = await stubs.flow_runs.ListFlowRuns(
        fr.ListFlowRunsRequest(sort=frp.FLOW_RUN_SORT_NAME_ASC, limit=2, offset=1)
    )
    assert [run.id for run in first.flow_runs] == name_asc[1:3]
    second = await stubs.flow_runs.ListFlowRuns(
        fr.ListFlowRunsRequest(
            sort=frp.FLOW_RUN_SORT_NAME_ASC, limit=10, page_token=first.next_page_token
        )
    )
    assert [run.id for run in second.flow_runs] == name_asc[3:]


async def invalid(stubs, request):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flow_runs.ListFlowRuns(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return field_violations(raised.value)


async def test_page_token_with_another_filter_or_sort_is_invalid(stubs):
    await sort_setup(stubs)
    first = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest(limit=2))
    token = first.next_page_token
    assert token
    other_filter = f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(name=f.FlowRunFilterName(like="a")))
    violations = await invalid(stubs, fr.ListFlowRunsRequest(filter=other_filter, page_token=token))
    assert "page_token" in violations
    violations = await invalid(
        stubs, fr.ListFlowRunsRequest(sort=frp.FLOW_RUN_SORT_NAME_ASC, page_token=token)
    )
    assert "page_token" in violations
    assert "page_token" in await invalid(stubs, fr.ListFlowRunsRequest(page_token="garbage!"))
    assert "offset" in await invalid(stubs, fr.ListFlowRunsRequest(page_token=token, offset=1))
    # The token still works with the query it came from.
    again = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest(limit=2, page_token=token))
    assert len(again.flow_runs) == 2
