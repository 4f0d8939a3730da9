"""Filters with 10,000-entry lists (the longest a request may carry), on both databases: prefix
lists used to answer INTERNAL past 1,000 prefixes on SQLite (an OR as deep as the list) and cost
seconds and hundreds of megabytes; long any_of lists are bound as one parameter. Every answer
must be the one a short list gives."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from helpers import make_flow, make_run, matching, strings

from flowrpc.v1 import deployment_pb2
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

LONGEST = 10_000


def padded(*wanted: str, filler: str = "zz{}") -> f.StringList:
    """`wanted` among fillers that match nothing, LONGEST values in all."""
    fillers = [filler.format(i) for i in range(LONGEST - len(wanted))]
    return strings(*fillers[: len(fillers) // 2], *wanted, *fillers[len(fillers) // 2 :])


def padded_ids(*wanted: str) -> f.StringList:
    return strings(*(str(uuid.uuid4()) for _ in range(LONGEST - len(wanted))), *wanted)


@pytest.fixture
async def s(stubs):
    """Runs on queues "Alpha", "beta-1" and "default" (of a deployment), one without a queue,
    and a subflow run of a task run of the Alpha run."""
    flow = await make_flow(stubs, name="etl")
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    for queue in ("Alpha", "beta-1"):
        await stubs.work_pools.CreateWorkQueue(
            wp.CreateWorkQueueRequest(work_pool_name="pool", name=queue)
        )
    deployment = (
        await stubs.deployments.CreateDeployment(
            dp.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    name="nightly", flow_id=flow.id, work_pool_name="pool"
                )
            )
        )
    ).deployment
    request = dp.CreateFlowRunFromDeploymentRequest(deployment_id=deployment.id)
    deployed = (await stubs.deployments.CreateFlowRunFromDeployment(request)).flow_run
    alpha = await make_run(
        stubs, flow.id, name="a-run", work_pool_name="pool", work_queue_name="Alpha", tags=["x"]
    )
    beta = await make_run(stubs, flow.id, work_pool_name="pool", work_queue_name="beta-1")
    task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=alpha.id, name="t", task_key="t")
        )
    ).task_run
    subflow = await make_run(stubs, flow.id, parent_task_run_id=task.id)
    return SimpleNamespace(
        stubs=stubs,
        flow=flow,
        deployment=deployment,
        alpha=alpha.id,
        beta=beta.id,
        deployed=deployed.id,
        subflow=subflow.id,
        task=task.id,
    )


def queue_names(**name) -> f.WorkQueueFilter:
    return f.WorkQueueFilter(name=f.WorkQueueFilterName(**name))


@pytest.mark.parametrize(
    ("prefixes", "expected"),
    [
        (padded("AL"), {"alpha"}),  # case-insensitive
        (padded("bet", "DEFAULT"), {"beta", "deployed"}),
        (padded("beta-1x", "alphabet"), set()),  # longer than the names
        (padded("b_t"), {"beta"}),  # "_" and "%" are LIKE's wildcards, as in Prefect
        (padded("al", "de%lt", filler="zz_{}"), {"alpha", "deployed"}),  # 10,000 with wildcards
        (strings(""), {"alpha", "beta", "deployed"}),
        (strings(), set()),
    ],
    ids=["case", "two", "longer", "wildcard", "all-wildcards", "empty-prefix", "no-prefixes"],
)
async def test_ten_thousand_prefixes(s, prefixes, expected):
    queues = queue_names(startswith=prefixes)
    assert await matching(s.stubs, work_pool_queues=queues) == {getattr(s, x) for x in expected}
    runs = await s.stubs.flow_runs.CountFlowRuns(
        fr.CountFlowRunsRequest(filter=f.FlowRunFilterSet(work_pool_queues=queues))
    )
    assert runs.count == len(expected)


async def test_ten_thousand_prefixes_select_deployments(s):
    deployments = s.stubs.deployments.ListDeployments
    found = await deployments(
        dp.ListDeploymentsRequest(work_pool_queues=queue_names(startswith=padded("DEF")))
    )
    assert [d.id for d in found.deployments] == [s.deployment.id]
    found = await deployments(
        dp.ListDeploymentsRequest(work_pool_queues=queue_names(startswith=padded("x")))
    )
    assert list(found.deployments) == []


async def test_ten_thousand_values_in_flow_run_filters(s):
    stubs, runs = s.stubs, {s.alpha, s.beta, s.deployed, s.subflow}

    def where(**criteria):
        return matching(stubs, flow_runs=f.FlowRunFilter(**criteria))

    assert await where(id=f.FlowRunFilterId(any_of=padded_ids(s.alpha, s.beta))) == {
        s.alpha,
        s.beta,
    }
    assert await where(id=f.FlowRunFilterId(not_any_of=padded_ids(s.alpha))) == runs - {s.alpha}
    assert await where(name=f.FlowRunFilterName(any_of=padded("a-run"))) == {s.alpha}
    assert await where(tags=f.FlowRunFilterTags(any_of=padded("x"))) == {s.alpha}
    assert await where(tags=f.FlowRunFilterTags(all_of=strings(*["x"] * LONGEST))) == {s.alpha}
    assert await where(tags=f.FlowRunFilterTags(all_of=padded("x"))) == set()
    queue = f.FlowRunFilterWorkQueueName(any_of=padded("beta-1"))
    assert await where(work_queue_name=queue) == {s.beta}
    state = f.FlowRunFilterState(name=f.FlowRunFilterStateName(any_of=padded("Scheduled")))
    assert await where(state=state) == {s.deployed}
    parent = f.FlowRunFilterParentFlowRunId(any_of=padded_ids(s.alpha))
    assert await where(parent_flow_run_id=parent) == {s.subflow}
    deployment = f.FlowRunFilterDeploymentId(any_of=padded_ids(s.deployment.id))
    assert await where(deployment_id=deployment) == {s.deployed}
    pools = f.WorkPoolFilter(name=f.WorkPoolFilterName(any_of=padded("pool")))
    assert await matching(stubs, work_pools=pools) == {s.alpha, s.beta, s.deployed}
    assert await matching(stubs, work_pool_queues=queue_names(any_of=padded("Alpha"))) == {s.alpha}


async def test_ten_thousand_values_in_flow_deployment_and_task_run_filters(s):
    stubs = s.stubs
    flows = f.FlowFilter(name=f.FlowFilterName(any_of=padded("etl")))
    assert [
        x.id for x in (await stubs.flows.ListFlows(fl.ListFlowsRequest(flows=flows))).flows
    ] == [s.flow.id]
    deployments = f.DeploymentFilter(id=f.DeploymentFilterId(any_of=padded_ids(s.deployment.id)))
    found = await stubs.deployments.ListDeployments(
        dp.ListDeploymentsRequest(deployments=deployments)
    )
    assert [d.id for d in found.deployments] == [s.deployment.id]

    async def task_runs(**criteria):
        request = tr.ListTaskRunsRequest(task_runs=f.TaskRunFilter(**criteria))
        return [t.id for t in (await stubs.task_runs.ListTaskRuns(request)).task_runs]

    assert await task_runs(id=f.TaskRunFilterId(any_of=padded_ids(s.task))) == [s.task]
    of_run = f.TaskRunFilterFlowRunId(any_of=padded_ids(s.alpha))
    assert await task_runs(flow_run_id=of_run) == [s.task]
    assert await task_runs(id=f.TaskRunFilterId(any_of=padded_ids())) == []
