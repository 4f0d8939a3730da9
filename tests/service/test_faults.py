"""Faults a deployment meets: the server SIGKILLed under load, 64 concurrent writers, duplicate
creates racing, deadlines and cancelled bulk streams. Nothing acknowledged may be lost, no
caller may see "database is locked", and a bulk call cut short leaves whole chunks."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass, field

import grpc
from harness import server_process
from helpers import COMPLETED, FUTURE, PENDING, RUNNING, count, make_flow, make_run, scheduled
from helpers import state as proposed_state

from flowrpc.v1 import deployment_pb2 as dep
from flowrpc.v1 import deployment_service_pb2 as ds
from flowrpc.v1 import deployment_service_pb2_grpc as ds_grpc
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_run_service_pb2_grpc as fr_grpc
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import flow_service_pb2_grpc as fl_grpc
from flowrpc.v1 import orchestration_pb2 as orc
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import task_run_service_pb2_grpc as tr_grpc
from flowrpc.v1 import work_pool_service_pb2 as wp
from flowrpc.v1 import work_pool_service_pb2_grpc as wp_grpc

ACCEPT = orc.SET_STATE_STATUS_ACCEPT
KILLS, LOAD_SECONDS, LOADERS = 3, 1.5, 16
WRITERS, WRITES_EACH = 64, 10
BULK_CHUNK = 500  # runs per write transaction of a bulk call (services/flow_runs.py)


def flow_runs(channel: grpc.aio.Channel) -> fr_grpc.FlowRunServiceStub:
    return fr_grpc.FlowRunServiceStub(channel)


# ---- SIGKILL under load ----


@dataclass
class Acknowledged:
    """What the server answered OK to: runs created, and each run's accepted states in order."""

    states: dict[str, list[str]] = field(default_factory=dict)


async def load(address: str, flow_id: str, acked: Acknowledged, seconds: float) -> None:
    """Creates runs and moves each PENDING -> RUNNING -> COMPLETED until the server dies or
    `seconds` pass; records every acknowledged write."""
    stop = time.monotonic() + seconds

    async def loader() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = flow_runs(channel)
            while time.monotonic() < stop:
                request = fr.CreateFlowRunRequest(
                    flow_id=flow_id, state=proposed_state(PENDING), idempotency_key=uuid.uuid4().hex
                )
                try:
                    run = (await stub.CreateFlowRun(request, timeout=10)).flow_run
                    acked.states[run.id] = [run.state.id]
                    for next_state in (RUNNING, COMPLETED):
                        change = fr.SetFlowRunStateRequest(
                            flow_run_id=run.id, state=proposed_state(next_state)
                        )
                        result = (await stub.SetFlowRunState(change, timeout=10)).result
                        assert result.status == ACCEPT
                        acked.states[run.id].append(result.state.id)
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error  # the kill
                    return

    await asyncio.gather(*(loader() for _ in range(LOADERS)))


async def assert_kept(address: str, acked: Acknowledged) -> None:
    """Every acknowledged run and state is there, and each run's current state is its newest
    state row (a kill never leaves a run pointing at another state than its history's last)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = flow_runs(channel)
        await in_parallel([one_kept(stub, run_id, ids) for run_id, ids in acked.states.items()])


async def in_parallel(calls: list, at_once: int = 32) -> None:
    for start in range(0, len(calls), at_once):
        await asyncio.gather(*calls[start : start + at_once])


async def one_kept(stub, run_id: str, state_ids: list[str]) -> None:
    run = (await stub.GetFlowRun(fr.GetFlowRunRequest(id=run_id))).flow_run
    history = (await stub.ListFlowRunStates(fr.ListFlowRunStatesRequest(flow_run_id=run_id))).states
    ids = [s.id for s in history]
    assert ids[: len(state_ids)] == state_ids, run_id
    assert run.state.id == ids[-1], run_id
    assert run.state.type == history[-1].type, run_id


async def test_sigkill_under_load_loses_nothing_acknowledged(database_url, tmp_path):
    acked = Acknowledged()
    flow_id = None
    for kill in range(KILLS):
        with server_process(database_url, log=tmp_path / "server.log") as (process, address):
            if flow_id is None:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = fl_grpc.FlowServiceStub(channel)
                    flow_id = (await stub.CreateFlow(fl.CreateFlowRequest(name="kill"))).flow.id
            else:  # what the previous kill left must be there
                await assert_kept(address, acked)
            loading = asyncio.ensure_future(load(address, flow_id, acked, LOAD_SECONDS * 4))
            await asyncio.sleep(LOAD_SECONDS * (kill + 1) / KILLS + 0.3)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            await asyncio.wait_for(loading, 30)
    with server_process(database_url) as (_, address):
        await assert_kept(address, acked)
    assert len(acked.states) > 3 * LOADERS  # the load did run


# ---- many writers ----


async def test_64_concurrent_writers_never_see_a_locked_database(database_url, tmp_path):
    log = tmp_path / "server.log"
    with server_process(database_url, log=log) as (_, address):

        async def writer(number: int) -> None:
            async with grpc.aio.insecure_channel(address) as channel:
                flows, stub = fl_grpc.FlowServiceStub(channel), flow_runs(channel)
                flow = (await flows.CreateFlow(fl.CreateFlowRequest(name="shared"))).flow
                for i in range(WRITES_EACH):  # any failed call fails the test
                    request = fr.CreateFlowRunRequest(
                        flow_id=flow.id, name=f"w{number}-{i}", state=proposed_state(RUNNING)
                    )
                    run = (await stub.CreateFlowRun(request, timeout=60)).flow_run
                    done = fr.SetFlowRunStateRequest(
                        flow_run_id=run.id, state=proposed_state(COMPLETED)
                    )
                    assert (await stub.SetFlowRunState(done, timeout=60)).result.status == ACCEPT

        await asyncio.wait_for(asyncio.gather(*(writer(n) for n in range(WRITERS))), 120)
        async with grpc.aio.insecure_channel(address) as channel:
            total = await flow_runs(channel).CountFlowRuns(fr.CountFlowRunsRequest())
            assert total.count == WRITERS * WRITES_EACH
    assert "database is locked" not in log.read_text()


# ---- duplicate creates racing ----


async def test_racing_idempotent_creates_make_one_of_each(stubs, flowrpc_server):
    """64 callers on their own connections send the same create at once: one run (or task
    run, flow, deployment) is made and every caller gets it."""
    flow = await make_flow(stubs)
    deployment = await stubs.deployments.CreateDeployment(
        ds.CreateDeploymentRequest(deployment=dep.Deployment(flow_id=flow.id, name="d"))
    )
    parent = await make_run(stubs, flow.id, state=proposed_state(RUNNING))
    calls = {
        "run": lambda c: fr_grpc.FlowRunServiceStub(c).CreateFlowRun(
            fr.CreateFlowRunRequest(flow_id=flow.id, idempotency_key="race")
        ),
        "from deployment": lambda c: ds_grpc.DeploymentServiceStub(c).CreateFlowRunFromDeployment(
            ds.CreateFlowRunFromDeploymentRequest(
                deployment_id=deployment.deployment.id, idempotency_key="race-2"
            )
        ),
        "task run": lambda c: tr_grpc.TaskRunServiceStub(c).CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=parent.id, task_key="t", dynamic_key="0")
        ),
        "flow": lambda c: fl_grpc.FlowServiceStub(c).CreateFlow(fl.CreateFlowRequest(name="race")),
        "deployment": lambda c: ds_grpc.DeploymentServiceStub(c).CreateDeployment(
            ds.CreateDeploymentRequest(deployment=dep.Deployment(flow_id=flow.id, name="race"))
        ),
    }
    for kind, call in calls.items():
        responses = await race(flowrpc_server, call)
        made = [r.created for r in responses]
        ids = {getattr(r, r.DESCRIPTOR.fields[0].name).id for r in responses}
        assert sum(made) == 1 and len(ids) == 1, kind


async def test_racing_creates_of_one_name_make_one_and_refuse_the_rest(stubs, flowrpc_server):
    """A work pool or queue of a name taken by a racing call: ALREADY_EXISTS, never INTERNAL."""
    pools = lambda c: wp_grpc.WorkPoolServiceStub(c)  # noqa: E731
    calls = {
        "work pool": lambda c: pools(c).CreateWorkPool(wp.CreateWorkPoolRequest(name="race")),
        "work queue": lambda c: pools(c).CreateWorkQueue(
            wp.CreateWorkQueueRequest(work_pool_name="race", name="q")
        ),
    }
    for kind, call in calls.items():
        outcomes = await race(flowrpc_server, call, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert {e.code() for e in errors} <= {grpc.StatusCode.ALREADY_EXISTS}, (kind, errors[:1])
        assert len(outcomes) - len(errors) == 1, kind


async def race(address: str, call, return_exceptions: bool = False) -> list:
    """`call` on each of 64 connections at once."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(WRITERS)]
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        return await asyncio.gather(
            *(call(channel) for channel in channels), return_exceptions=return_exceptions
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


# ---- bulk calls cut short ----


async def many_runs(stubs, number: int) -> list[str]:
    flow = await make_flow(stubs, "bulk")
    ids: list[str] = []
    for start in range(0, number, 100):
        batch = [
            make_run(stubs, flow.id, state=scheduled(FUTURE))
            for _ in range(min(100, number - start))
        ]
        ids.extend(run.id for run in await asyncio.gather(*batch))
    return sorted(ids)


async def changed_runs(stubs, ids: list[str]) -> list[str]:
    """The runs (in id order) no longer Scheduled; each one's state is its newest state row."""
    changed: list[str] = []
    await in_parallel([changed_run(stubs, run_id, changed) for run_id in ids])
    return sorted(changed)


async def changed_run(stubs, run_id: str, changed: list[str]) -> None:
    try:
        run = (await stubs.flow_runs.GetFlowRun(fr.GetFlowRunRequest(id=run_id))).flow_run
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
        changed.append(run_id)
        return
    states = (
        await stubs.flow_runs.ListFlowRunStates(fr.ListFlowRunStatesRequest(flow_run_id=run_id))
    ).states
    assert run.state.id == states[-1].id
    if run.state.type != states[0].type:
        changed.append(run_id)


def assert_whole_chunks(changed: list[str], ids: list[str]) -> None:
    """Chunks are taken in id order: what changed is the first k chunks, whole."""
    assert len(changed) % BULK_CHUNK == 0 or len(changed) == len(ids), len(changed)
    assert changed == ids[: len(changed)]


async def settle(stubs) -> None:
    """Lets a write the server had already queued commit before the check reads."""
    await asyncio.sleep(0.5)
    await count(stubs)


async def test_a_cancelled_bulk_stream_leaves_whole_chunks(stubs):
    ids = await many_runs(stubs, 2 * BULK_CHUNK + 200)
    request = fr.BulkSetFlowRunStateRequest(
        filter=f.FlowRunFilterSet(), state=proposed_state(PENDING), force=True
    )
    stream = stubs.flow_runs.BulkSetFlowRunState(request)
    first = await stream.read()
    assert len(first.results) == BULK_CHUNK
    stream.cancel()
    await settle(stubs)
    changed = await changed_runs(stubs, ids)
    assert len(changed) >= BULK_CHUNK
    assert_whole_chunks(changed, ids)


async def test_a_bulk_call_past_its_deadline_leaves_whole_chunks(stubs):
    ids = await many_runs(stubs, 2 * BULK_CHUNK + 200)
    for request, call in (
        (
            fr.BulkSetFlowRunStateRequest(
                filter=f.FlowRunFilterSet(), state=proposed_state(PENDING), force=True
            ),
            stubs.flow_runs.BulkSetFlowRunState,
        ),
        (
            fr.BulkDeleteFlowRunsRequest(filter=f.FlowRunFilterSet()),
            stubs.flow_runs.BulkDeleteFlowRuns,
        ),
    ):
        try:
            async for _ in call(request, timeout=0.2):
                pass
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await settle(stubs)
        assert_whole_chunks(await changed_runs(stubs, ids), ids)
